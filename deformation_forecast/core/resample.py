"""Resampling: a deformation stack in time, and a raster in space onto a stack's grid.

In time: irregular acquisitions are put on a regular grid of `interval_days` (the network needs a
fixed time step), linear in time, per pixel; NaN samples of a pixel are filled from its valid
neighbours in time. Pure numpy.

In space: :class:`OnGrid` reads a raster window by window on another raster's grid (bilinear).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .dates import to_ordinal
from .errors import InputError

if TYPE_CHECKING:
    from .stack import StackInfo


def regular_grid(dates: Sequence[dt.date], interval_days: int, anchor: str = "end") -> list[dt.date]:
    """Regular dates every `interval_days` inside [first, last] of `dates`.

    With ``anchor="end"`` the grid ends on the last acquisition (so a forecast starts right after
    the last real observation); with ``"start"`` it begins on the first.
    """
    if interval_days <= 0:
        raise InputError(f"INTERVAL_DAYS must be a positive number of days, not {interval_days}.")
    first, last = dates[0], dates[-1]
    n = (last - first).days // interval_days
    if anchor == "end":
        return [last - dt.timedelta(days=interval_days * k) for k in range(n, -1, -1)]
    return [first + dt.timedelta(days=interval_days * k) for k in range(n + 1)]


def interpolation_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(len(dst), len(src)) weights of linear interpolation in `src` (clamped at both ends)."""
    w = np.zeros((len(dst), len(src)), dtype="float64")
    if len(src) == 1:
        w[:, 0] = 1.0
        return w
    j = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, len(src) - 2)
    t = np.clip((dst - src[j]) / (src[j + 1] - src[j]), 0.0, 1.0)
    rows = np.arange(len(dst))
    w[rows, j] = 1.0 - t
    w[rows, j + 1] += t
    return w


def interpolate_time(data: np.ndarray, dates: Sequence[dt.date], new_dates: Sequence[dt.date]) -> np.ndarray:
    """Values of each pixel of `data` (T, ...) at `new_dates`, linear in time over its valid samples.

    NaN samples are ignored (gaps are filled from the neighbours; before the first / after the last
    valid sample the end value is held). A pixel without any valid sample stays NaN.
    """
    data = np.asarray(data, dtype="float32")
    if data.shape[0] != len(dates):
        raise ValueError(f"{data.shape[0]} bands but {len(dates)} dates")
    src = to_ordinal(dates)
    dst = to_ordinal(new_dates)
    flat = data.reshape(data.shape[0], -1)
    out = np.full((len(dst), flat.shape[1]), np.nan, dtype="float32")
    valid = np.isfinite(flat)
    full = valid.all(axis=0)
    if full.any():
        out[:, full] = (interpolation_matrix(src, dst) @ flat[:, full].astype("float64")).astype("float32")
    partial = np.flatnonzero(~full & valid.any(axis=0))
    if partial.size:
        # one matrix per distinct pattern of valid samples
        patterns, inverse = np.unique(valid[:, partial].T, axis=0, return_inverse=True)
        for k, pat in enumerate(patterns):
            cols = partial[inverse.ravel() == k]
            w = interpolation_matrix(src[pat], dst)
            out[:, cols] = (w @ flat[pat][:, cols].astype("float64")).astype("float32")
    return out.reshape((len(dst),) + data.shape[1:])


def fill_gaps(data: np.ndarray, dates: Sequence[dt.date]) -> np.ndarray:
    """`data` with NaN samples of partly valid pixels filled linearly in time."""
    return interpolate_time(data, dates, dates)


def resample_regular(
    data: np.ndarray, dates: Sequence[dt.date], interval_days: int, anchor: str = "end"
) -> tuple[np.ndarray, list[dt.date]]:
    """`data` (T, H, W) on a regular grid of `interval_days` (see :func:`regular_grid`)."""
    grid = regular_grid(dates, interval_days, anchor)
    if len(grid) < 2:
        raise InputError(
            f"The stack spans {(dates[-1] - dates[0]).days} days: too short for an interval of "
            f"{interval_days} days."
        )
    return interpolate_time(data, dates, grid), grid


# ---------------------------------------------------------------- in space: a raster on a stack's grid


class OnGrid:
    """Bands of raster `path` read window by window on the grid of `target`: directly when the
    grids agree, else through a rasterio WarpedVRT (bilinear; NaN outside `path`'s footprint), so
    that no whole band is held. The one way the package reads a raster on another raster's grid
    (a second stack, an incidence or heading raster).

    `info` describes `path` (read when not given). With `length` (a displacement), bands declared in
    m or cm are converted to mm; an angle is read as it is. `what` names the input in errors.
    A context manager; ``read(bands, window)`` gives float32 (bands, rows, cols), bands 0-based;
    ``read_band(window)`` the first band (rows, cols). Nodata, GDAL masks and undeclared sentinels
    read as NaN (core.validity).
    """

    def __init__(
        self, path: str, target: StackInfo, info: StackInfo | None = None, length: bool = True, what: str = ""
    ):
        import rasterio
        from rasterio.vrt import WarpedVRT
        from rasterio.warp import Resampling

        from . import validity
        from .stack import read_info, same_grid

        info = info if info is not None else read_info(path, require_dates=False)
        self.path, self.target, self.length = path, target, length
        self.same = same_grid(info, target)
        if not self.same and (info.crs is None or target.crs is None):
            raise InputError(
                f"{what + ': ' if what else ''}{os.path.basename(path)!r} is on another grid than "
                f"{os.path.basename(target.path)!r} and one of them has no CRS, so it cannot be "
                "resampled; assign the CRS first (or resample one onto the other's grid)."
            )
        self._src = rasterio.open(path)
        self._ds = self._src
        if not self.same:
            # a raster with several undeclared sentinels (or a mask) is warped from a copy where
            # each is NaN (core.validity.warp_source_bands), not only the most frequent one
            warp_src = validity.warp_source_bands(self._src, range(1, validity.band_count(self._src) + 1))
            self._ds = WarpedVRT(
                warp_src,
                crs=target.crs,
                transform=target.transform,
                width=target.width,
                height=target.height,
                resampling=Resampling.bilinear,
                src_nodata=validity.warp_nodata(warp_src),
                nodata=np.nan,
                dtype="float32",
            )

    @property
    def resampled(self) -> bool:
        """Whether the raster is read through the WarpedVRT (its grid differs from the target's)."""
        return not self.same

    def read(self, bands: Sequence[int], window=None) -> np.ndarray:
        from . import validity

        idx = [b + 1 for b in bands]
        arr = self._ds.read(idx, window=window, out_dtype="float32")
        if self.same:  # nodata, GDAL masks, undeclared sentinels, m/cm -> mm (core.validity)
            return validity.clean_block(arr, self._src, idx, window=window, length=self.length)
        arr = validity.mask_sentinels(arr, self._src.name)
        return validity.to_mm(arr, self._src, idx) if self.length else arr

    def read_band(self, window=None) -> np.ndarray:
        """The first band, float32 (rows, cols)."""
        return self.read([0], window)[0]

    def close(self) -> None:
        if self._ds is not self._src:
            self._ds.close()
        self._src.close()

    def __enter__(self) -> OnGrid:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
