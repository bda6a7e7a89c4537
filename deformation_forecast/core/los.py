"""Line of sight to vertical (paper §III-A/§V-A): ``dv = dLOS / cos(theta)``.

theta is the radar incidence angle in degrees, measured from the vertical. The conversion assumes
that the ground moves vertically only (no horizontal motion): a LOS displacement is then the
projection of the vertical one, dLOS = dv * cos(theta), hence the division (multiplying, as is
sometimes done, shrinks the signal instead of restoring it).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import rasterio
from rasterio.warp import Resampling

from . import validity
from .dates import format_date
from .errors import InputError
from .stack import StackInfo, StackWriter, budget_gdal_cache, iter_windows, read_info, read_stack, same_grid

DEFAULT_INCIDENCE = 34.17  # Sentinel-1 track 128 ascending over Jinchuan (the paper)


def check_incidence(theta: float, what: str = "INCIDENCE") -> float:
    """A constant incidence angle in degrees, strictly between 0 and 90."""
    theta = float(theta)
    if not (0.0 < theta < 90.0):
        raise InputError(
            f"{what}: the incidence angle must lie strictly between 0 and 90 degrees (from the "
            f"vertical), not {theta:g}. Sentinel-1 IW angles are about 29-46 degrees."
        )
    validity.check_angle_range(theta, theta, what)
    return theta


def check_incidence_array(theta: np.ndarray, what: str = "INCIDENCE_RASTER") -> np.ndarray:
    """An incidence raster in degrees: every finite value strictly between 0 and 90 (NaN allowed)."""
    theta = np.asarray(theta, dtype="float64")
    stats = IncidenceStats()
    stats.add(theta)
    stats.check(what)
    return theta


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


class IncidenceGrid:
    """An incidence raster (degrees) read window by window on a stack's grid: directly when it is
    on that grid, else through a rasterio WarpedVRT (bilinear), so that no whole band is held.

    Use as a context manager; `check()` reads it once, window by window, and refuses bad angles
    (as :func:`check_incidence_array`); `read(window)` gives float32 with NaN as nodata.
    """

    def __init__(self, path: str, info: StackInfo, band: int = 1, what: str = "INCIDENCE_RASTER"):
        from rasterio.vrt import WarpedVRT

        self.path, self.info, self.band, self.what = path, info, band, what
        inc = read_info(path, require_dates=False)
        self.resampled = not same_grid(inc, info)
        if self.resampled and (inc.crs is None or info.crs is None):
            raise InputError(
                f"{what}: {os.path.basename(path)!r} is not on the stack's grid and one of the "
                "two has no CRS, so it cannot be resampled; assign the CRS first."
            )
        self._src = rasterio.open(path)
        self._nodata = self._src.nodata
        self._ds, self._band = self._src, band
        if self.resampled:  # every undeclared sentinel as nodata (core.validity.warp_source)
            self._warp_src, self._band = validity.warp_source(self._src, band)
            self._ds = WarpedVRT(
                self._warp_src,
                crs=info.crs,
                transform=info.transform,
                width=info.width,
                height=info.height,
                resampling=Resampling.bilinear,
                src_nodata=validity.warp_nodata(self._warp_src, self._band),
                nodata=np.nan,
                dtype="float32",
            )
        self.min = self.max = float("nan")

    def read(self, window=None) -> np.ndarray:
        arr = self._ds.read(self._band, window=window, out_dtype="float32")
        if not self.resampled:  # nodata, GDAL masks, undeclared sentinels (core.validity)
            return validity.clean_block(arr, self._src, self.band, window=window, length=False)
        return validity.mask_sentinels(arr, self._src.name)

    def check(self, mb: float | None = None) -> IncidenceGrid:
        """Read every window once and refuse the raster if an angle is outside (0, 90)."""
        from .stack import iter_windows

        stats = IncidenceStats()
        for win in iter_windows(self.info, bands=1, copies=4, mb=mb):
            stats.add(self.read(win))
        stats.check(self.what)
        self.min, self.max = stats.min, stats.max
        return self

    def close(self) -> None:
        if self._ds is not self._src:
            self._ds.close()
        self._src.close()

    def __enter__(self) -> IncidenceGrid:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def los_to_vertical(dlos: np.ndarray, theta_deg) -> np.ndarray:
    """dv = dLOS / cos(theta); `theta_deg` a scalar or an array broadcastable to `dlos`."""
    return np.asarray(dlos, dtype="float64") / np.cos(np.deg2rad(theta_deg))


def incidence_on_grid(path: str, info: StackInfo, band: int = 1) -> tuple[np.ndarray, bool]:
    """The whole incidence raster on the stack's grid (float32, NaN = no data) and whether it had
    to be resampled (bilinear) because its grid differs from the stack's. Holds a whole band: the
    algorithms use :class:`IncidenceGrid` window by window instead."""
    with IncidenceGrid(path, info, band) as grid:
        arr = grid.read()
        check_incidence_array(arr)
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
    progress: Callable[[float], None] | None = None,
    mb: float | None = None,
    max_bytes: int | None = None,
) -> dict:
    """Write ``dLOS / cos(theta)`` of every band of `path` to `out_path`, keeping band dates/labels.

    Give either a constant `incidence` (degrees) or an `incidence_path` raster. Streams by windows
    sized from the memory budget `mb` (core.budget; `max_bytes` overrides it), the incidence raster
    too. Returns {"resampled": bool, "incidence_min": .., "incidence_max": ..}.
    """
    import contextlib

    info = read_info(path, require_dates=False)
    labels = band_labels(path, info)
    # the window (float32), its float64 quotient and the float32 copy written
    windows = iter_windows(info, max_bytes, copies=5, mb=mb)
    with contextlib.ExitStack() as stack:
        grid = None
        if incidence_path:
            grid = stack.enter_context(IncidenceGrid(incidence_path, info)).check(mb)
            theta, resampled, tmin, tmax = None, grid.resampled, grid.min, grid.max
        else:
            theta = check_incidence(DEFAULT_INCIDENCE if incidence is None else incidence)
            resampled, tmin, tmax = False, theta, theta
        with StackWriter(
            out_path,
            labels,
            info.crs,
            info.transform,
            info.width,
            info.height,
            units=info.units,
            tags={"LOS_TO_VERTICAL": "dv = dLOS / cos(incidence)"},
        ) as w:
            for k, win in enumerate(windows):
                v = read_stack(path, window=win).astype("float64")  # dLOS / cos, in place
                th = grid.read(win)[None] if grid is not None else np.float64(theta)
                v /= np.cos(np.deg2rad(th))
                w.write(v.astype("float32"), window=win)
                del v
                if progress is not None:
                    progress((k + 1) / len(windows))
    return {"resampled": resampled, "incidence_min": tmin, "incidence_max": tmax}
