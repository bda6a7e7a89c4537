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
from rasterio.warp import Resampling, reproject

from .dates import format_date
from .errors import InputError
from .stack import StackInfo, StackWriter, iter_row_windows, read_info, read_stack, same_grid

DEFAULT_INCIDENCE = 34.17  # Sentinel-1 track 128 ascending over Jinchuan (the paper)


def check_incidence(theta: float, what: str = "INCIDENCE") -> float:
    """A constant incidence angle in degrees, strictly between 0 and 90."""
    theta = float(theta)
    if not (0.0 < theta < 90.0):
        raise InputError(
            f"{what}: the incidence angle must lie strictly between 0 and 90 degrees (from the "
            f"vertical), not {theta:g}. Sentinel-1 IW angles are about 29-46 degrees."
        )
    return theta


def check_incidence_array(theta: np.ndarray, what: str = "INCIDENCE_RASTER") -> np.ndarray:
    """An incidence raster in degrees: every finite value strictly between 0 and 90 (NaN allowed)."""
    theta = np.asarray(theta, dtype="float64")
    finite = np.isfinite(theta)
    if not finite.any():
        raise InputError(f"{what}: the incidence raster holds no valid value over the stack.")
    bad = finite & ((theta <= 0) | (theta >= 90))
    if bad.any():
        vals = theta[finite]
        hint = (
            " Its values look like radians; convert them to degrees (x 57.2958)."
            if np.nanmax(vals) < np.pi / 2 + 1e-6
            else ""
        )
        raise InputError(
            f"{what}: {int(bad.sum())} pixel(s) have an incidence angle outside (0, 90) degrees "
            f"(range {np.nanmin(vals):g} to {np.nanmax(vals):g}).{hint} Set those pixels to nodata or "
            "fix the raster."
        )
    if np.nanmax(theta) < np.pi / 2:
        # all values below 1.57: degrees this small are implausible for a SAR incidence angle
        raise InputError(
            f"{what}: all incidence angles are below 1.571 degrees; the raster is probably in "
            "radians. Convert it to degrees (x 57.2958)."
        )
    return theta


def los_to_vertical(dlos: np.ndarray, theta_deg) -> np.ndarray:
    """dv = dLOS / cos(theta); `theta_deg` a scalar or an array broadcastable to `dlos`."""
    return np.asarray(dlos, dtype="float64") / np.cos(np.deg2rad(theta_deg))


def incidence_on_grid(path: str, info: StackInfo, band: int = 1) -> tuple[np.ndarray, bool]:
    """The incidence raster on the stack's grid (float32, NaN = no data) and whether it had to be
    resampled (bilinear, rasterio.warp.reproject) because its grid differs from the stack's."""
    inc = read_info(path, require_dates=False)
    if same_grid(inc, info):
        arr = read_stack(path, bands=[band - 1])[0]
        return check_incidence_array(arr).astype("float32"), False
    if inc.crs is None or info.crs is None:
        raise InputError(
            f"INCIDENCE_RASTER: {os.path.basename(path)!r} is not on the stack's grid and one of the "
            "two has no CRS, so it cannot be resampled; assign the CRS first."
        )
    dst = np.full((info.height, info.width), np.nan, dtype="float32")
    with rasterio.open(path) as src:
        reproject(
            source=rasterio.band(src, band),
            destination=dst,
            src_nodata=src.nodata,
            dst_transform=info.transform,
            dst_crs=info.crs,
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    return check_incidence_array(dst).astype("float32"), True


def band_labels(path: str, info: StackInfo) -> list[str]:
    """What each band of `path` is called: its date (ISO) when it has one, else its description."""
    with rasterio.open(path) as src:
        descs = list(src.descriptions)
    return [
        format_date(d) if d is not None else (descs[i] or f"band_{i + 1}") for i, d in enumerate(info.dates)
    ]


def convert_stack(
    path: str,
    out_path: str,
    incidence: float | None = None,
    incidence_path: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict:
    """Write ``dLOS / cos(theta)`` of every band of `path` to `out_path`, keeping band dates/labels.

    Give either a constant `incidence` (degrees) or an `incidence_path` raster. Streams by row
    windows. Returns {"resampled": bool, "incidence_min": .., "incidence_max": ..}.
    """
    info = read_info(path, require_dates=False)
    if incidence_path:
        theta, resampled = incidence_on_grid(incidence_path, info)
        tmin, tmax = float(np.nanmin(theta)), float(np.nanmax(theta))
    else:
        theta = check_incidence(DEFAULT_INCIDENCE if incidence is None else incidence)
        resampled, tmin, tmax = False, theta, theta
    labels = band_labels(path, info)
    windows = list(iter_row_windows(info, max_bytes=64 * 2**20))
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
            data = read_stack(path, window=win)
            if np.ndim(theta):
                t = theta[win.row_off : win.row_off + win.height, :][None]
            else:
                t = theta
            w.write(los_to_vertical(data, t).astype("float32"), window=win)
            if progress is not None:
                progress((k + 1) / len(windows))
    return {"resampled": resampled, "incidence_min": tmin, "incidence_max": tmax}
