"""Line of sight to vertical (paper §III-A/§V-A): ``dv = dLOS / cos(theta)``.

theta is the radar incidence angle in degrees, measured from the vertical. The conversion assumes
that the ground moves vertically only (no horizontal motion): a LOS displacement is then the
projection of the vertical one, dLOS = dv * cos(theta), hence the division (multiplying, as is
sometimes done, shrinks the signal instead of restoring it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from . import validity
from .dates import format_date
from .errors import InputError
from .resample import OnGrid
from .run import QUIET, Run
from .stack import StackInfo, StackWriter, budget_gdal_cache, iter_windows, read_info, read_windows

DEFAULT_INCIDENCE = 34.17  # Sentinel-1 track 128 ascending over Jinchuan (the paper)


def check_incidence(theta, what: str = "INCIDENCE"):
    """The one check of an incidence angle in the package (rates, losvertical, crossorbit,
    decompose, benchmarks): degrees from the vertical, every finite value strictly between 0 and 90
    and plausible (not radians, not grazing: core.validity.check_angle_range). `theta` is a number
    (returned as a float; NaN refused) or an array (returned as float64; NaN = no value, at least
    one value needed). `what` (the parameter, or the input) starts the InputError's message. An
    incidence raster read window by window is checked by :class:`IncidenceStats`
    (:func:`check_incidence_raster`), which counts the bad pixels."""
    arr = np.asarray(theta, dtype="float64")
    fin = arr[np.isfinite(arr)]
    if arr.ndim and fin.size == 0:
        raise InputError(f"{what}: the incidence angle has no value (only NaN).")
    inside = (arr > 0.0) & (arr < 90.0)
    bad = arr[~inside] if arr.ndim == 0 else arr[~inside & ~np.isnan(arr)]  # a NaN number is bad
    if bad.size:
        raise InputError(
            f"{what}: the incidence angle must lie strictly between 0 and 90 degrees (from the "
            f"vertical), not {float(bad.ravel()[0]):g}. Sentinel-1 IW angles are about 29-46 degrees."
        )
    validity.check_angle_range(float(fin.min()), float(fin.max()), what)
    return float(arr) if arr.ndim == 0 else arr


class IncidenceStats:
    """What the check of an incidence raster needs, accumulated window by window."""

    def __init__(self) -> None:
        self.finite = 0
        self.bad = 0
        self.min = np.inf
        self.max = -np.inf

    def add(self, theta: np.ndarray) -> None:
        theta = np.asarray(theta)
        finite = np.isfinite(theta)
        n = int(np.count_nonzero(finite))
        if not n:
            return
        vals = theta[finite]
        self.finite += n
        self.bad += int(np.count_nonzero((vals <= 0) | (vals >= 90)))
        self.min = min(self.min, float(vals.min()))
        self.max = max(self.max, float(vals.max()))

    def check(self, what: str = "INCIDENCE_RASTER") -> None:
        if not self.finite:
            raise InputError(f"{what}: the incidence raster holds no valid value over the stack.")
        if self.bad:
            hint = (
                " Its values look like radians; convert them to degrees (x 57.2958)."
                if self.max < np.pi / 2 + 1e-6
                else ""
            )
            raise InputError(
                f"{what}: {self.bad} pixel(s) have an incidence angle outside (0, 90) degrees "
                f"(range {self.min:g} to {self.max:g}).{hint} Set those pixels to nodata or "
                "fix the raster."
            )
        if self.max < np.pi / 2:
            # all values below 1.57: degrees this small are implausible for a SAR incidence angle
            raise InputError(
                f"{what}: all incidence angles are below 1.571 degrees; the raster is probably in "
                "radians. Convert it to degrees (x 57.2958)."
            )
        validity.check_angle_range(self.min, self.max, what)


def check_incidence_raster(grid: OnGrid, what: str, run: Run = QUIET) -> tuple[float, float]:
    """Read the incidence raster `grid` (degrees, on a stack's grid) once, window by window, and
    refuse it if an angle is outside (0, 90), counting the bad pixels (:class:`IncidenceStats`); returns its
    (min, max)."""
    from .stack import iter_windows

    stats = IncidenceStats()
    for win in iter_windows(grid.target, bands=1, copies=4, run=run):
        stats.add(grid.read_band(win))
    stats.check(what)
    return stats.min, stats.max


@dataclass(frozen=True)
class Angles:
    """An incidence angle as the streamed algorithms read it, window by window of the stack's grid:
    `read(window)` gives a number (degrees) or float32 (rows, cols) from a raster (NaN = nodata)."""

    read: Callable[[Window | None], Any]
    resampled: bool  # a raster on another grid, read through a WarpedVRT
    min: float
    max: float


def open_incidence(
    es: contextlib.ExitStack,
    incidence: float | str | np.ndarray | None,
    info: StackInfo,
    what: str,
    run: Run = QUIET,
) -> Angles:
    """The incidence angle `incidence` of the stack `info`: a number of degrees (None: the paper's
    DEFAULT_INCIDENCE), the path of a raster (read on the stack's grid, checked in one windowed
    pass) or an array on the stack's grid. Every angle is checked (:func:`check_incidence`,
    :func:`check_incidence_raster`, `what` naming the input); a raster stays open in `es`."""
    from .stack import window_slices

    if isinstance(incidence, str):
        grid = es.enter_context(OnGrid(incidence, info, length=False, what=what))
        lo, hi = check_incidence_raster(grid, what, run)
        return Angles(grid.read_band, grid.resampled, lo, hi)
    theta = check_incidence(DEFAULT_INCIDENCE if incidence is None else incidence, what)
    if np.ndim(theta) == 0:
        return Angles(lambda win: theta, False, theta, theta)
    return Angles(
        lambda win: theta if win is None else theta[window_slices(win)],
        False,
        float(np.nanmin(theta)),
        float(np.nanmax(theta)),
    )


def los_to_vertical(dlos: np.ndarray, theta_deg) -> np.ndarray:
    """dv = dLOS / cos(theta); `theta_deg` a scalar or an array broadcastable to `dlos`."""
    return np.asarray(dlos, dtype="float64") / np.cos(np.deg2rad(theta_deg))


def incidence_on_grid(path: str, info: StackInfo, band: int = 1) -> tuple[np.ndarray, bool]:
    """The whole incidence raster on the stack's grid (float32, NaN = no data) and whether it had
    to be resampled (bilinear) because its grid differs from the stack's. Holds a whole band: the
    algorithms use :func:`open_incidence` window by window instead."""
    with OnGrid(path, info, length=False, what="INCIDENCE_RASTER") as grid:
        arr = grid.read([band - 1])[0]
        stats = IncidenceStats()
        stats.add(arr)
        stats.check("INCIDENCE_RASTER")
        return arr, grid.resampled


def band_labels(path: str, info: StackInfo) -> list[str]:
    """What each band of `path` is called: its date (ISO) when it has one, else its description."""
    with rasterio.open(path) as src:
        descs = list(src.descriptions)
    return [
        format_date(d) if d is not None else (descs[i] or f"band_{i + 1}") for i, d in enumerate(info.dates)
    ]


@budget_gdal_cache
def convert_stack(
    path: str,
    out_path: str,
    incidence: float | None = None,
    incidence_path: str | None = None,
    run: Run = QUIET,
    max_bytes: int | None = None,
) -> dict:
    """Write ``dLOS / cos(theta)`` of every band of `path` to `out_path`, keeping band dates/labels.

    Give either a constant `incidence` (degrees) or an `incidence_path` raster. Streams by windows
    sized from the memory budget of `run` (`max_bytes`, float32 bytes of one window, overrides it:
    tests), the incidence raster too; `run` reports progress and cancels.
    Returns {"resampled": bool, "incidence_min": .., "incidence_max": ..}.
    """
    info = read_info(path, require_dates=False)
    labels = band_labels(path, info)
    # the window (float32), its float64 quotient and the float32 copy written
    windows = iter_windows(info, max_bytes, copies=5, run=run)
    with contextlib.ExitStack() as es:
        what = "INCIDENCE_RASTER" if incidence_path else "INCIDENCE"
        angles = open_incidence(es, incidence_path or incidence, info, what, run)
        tags = {"LOS_TO_VERTICAL": "dv = dLOS / cos(incidence)"}
        grid = (info.crs, info.transform, info.width, info.height)
        with StackWriter(out_path, labels, *grid, units=info.units, tags=tags) as w:
            for k, (win, block) in enumerate(read_windows(path, windows)):
                run.check_cancelled()
                v = block.astype("float64")  # dLOS / cos, in place
                v /= np.cos(np.deg2rad(angles.read(win)))  # a raster's float32, as written
                w.write(v.astype("float32"), window=win)
                del v
                run.progress((k + 1) / len(windows))
    return {"resampled": angles.resampled, "incidence_min": angles.min, "incidence_max": angles.max}
