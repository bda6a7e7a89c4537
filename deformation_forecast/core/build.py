"""Build a deformation stack from single-date rasters: dates, alignment to one grid, sorting."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject

from .dates import check_increasing, parse_date
from .errors import InputError
from .stack import StackWriter


@dataclass
class Source:
    path: str
    date: dt.date
    band: int = 1


def sources_with_dates(paths: Sequence[str], dates: Sequence[dt.date] | None = None) -> list[Source]:
    """Pair each raster with its date (explicit `dates`, else from its band description or name),
    sorted by date. Duplicate dates are refused."""
    if not paths:
        raise InputError("LAYERS: no rasters given; select one raster per acquisition date.")
    if dates is not None and len(dates) != len(paths):
        raise InputError(
            f"DATES: {len(dates)} dates given for {len(paths)} rasters; give one date per raster "
            "in the order of the layers, or none to read them from the file names."
        )
    out = []
    for i, p in enumerate(paths):
        if dates is not None:
            d = dates[i]
        else:
            d = None
            with rasterio.open(p) as src:
                d = parse_date(src.descriptions[0] or "") or parse_date(src.tags(1).get("DATE", ""))
            d = d or parse_date(os.path.basename(p))
        if d is None:
            raise InputError(
                f"LAYERS: no date in the name of {os.path.basename(p)!r} (nor in its band "
                "description). Rename it with YYYYMMDD or YYYY-MM-DD, or give DATES."
            )
        out.append(Source(p, d))
    out.sort(key=lambda s: s.date)
    check_increasing([s.date for s in out], "the rasters given")
    return out


def build_stack(
    sources: Sequence[Source],
    out_path: str,
    units_factor: float = 1.0,
    log: Callable[[str], None] = lambda s: None,
    progress: Callable[[float], None] = lambda p: None,
    is_canceled: Callable[[], bool] = lambda: False,
) -> str:
    """Write the stack of `sources` on the grid of the first one; others are warped onto it
    (bilinear) when their CRS, size or transform differ. Values are multiplied by `units_factor`."""
    with rasterio.open(sources[0].path) as ref:
        crs, transform, width, height = ref.crs, ref.transform, ref.width, ref.height
    if crs is None:
        raise InputError(
            f"LAYERS: {os.path.basename(sources[0].path)!r} has no CRS; assign one before stacking."
        )
    with StackWriter(out_path, [s.date for s in sources], crs, transform, width, height) as w:
        for i, s in enumerate(sources):
            if is_canceled():
                raise InputError("Cancelled; nothing was written.")
            with rasterio.open(s.path) as src:
                nodata = src.nodata
                if src.crs is None:
                    raise InputError(
                        f"LAYERS: {os.path.basename(s.path)!r} has no CRS, so it cannot be aligned "
                        "to the first raster; assign its CRS first."
                    )
                same = (
                    CRS.from_user_input(src.crs) == CRS.from_user_input(crs)
                    and src.width == width
                    and src.height == height
                    and np.allclose(np.array(src.transform)[:6], np.array(transform)[:6])
                )
                data = src.read(s.band, out_dtype="float32")
                if nodata is not None and not np.isnan(nodata):
                    data[data == np.float32(nodata)] = np.nan
                if not same:
                    log(
                        f"{os.path.basename(s.path)}: grid differs from the first raster "
                        f"({src.crs}, {src.width}x{src.height}); warped onto it (bilinear)."
                    )
                    dst = np.full((height, width), np.nan, dtype="float32")
                    try:
                        reproject(
                            data,
                            dst,
                            src_transform=src.transform,
                            src_crs=src.crs,
                            dst_transform=transform,
                            dst_crs=crs,
                            src_nodata=np.nan,
                            dst_nodata=np.nan,
                            resampling=Resampling.bilinear,
                        )
                    except rasterio.errors.RasterioError as e:
                        raise InputError(
                            f"LAYERS: {os.path.basename(s.path)!r} cannot be aligned to the first "
                            f"raster ({e}); reproject it first."
                        ) from e
                    if not np.isfinite(dst).any():
                        raise InputError(
                            f"LAYERS: {os.path.basename(s.path)!r} does not overlap the first raster "
                            "at all; check its CRS and extent."
                        )
                    data = dst
            w.write_band(i, data * units_factor)
            progress(100.0 * (i + 1) / len(sources))
    return out_path


def resample_stack_file(
    src_path: str,
    dst_path: str,
    interval_days: int,
    max_bytes: int = 256 * 2**20,
    is_canceled: Callable[[], bool] = lambda: False,
) -> int:
    """Resample the stack at `src_path` to a regular interval (linear in time, gaps filled),
    strip by strip, into `dst_path`; returns the number of dates written."""
    from .resample import interpolate_time, regular_grid
    from .stack import iter_row_windows, read_info, read_stack

    info = read_info(src_path)
    grid = regular_grid(info.dates, interval_days)
    if len(grid) < 2:
        raise InputError(
            f"INTERVAL_DAYS: the stack spans {(info.dates[-1] - info.dates[0]).days} days, too short "
            f"for an interval of {interval_days} days."
        )
    with StackWriter(dst_path, grid, info.crs, info.transform, info.width, info.height, info.units) as w:
        for win in iter_row_windows(info, max_bytes // 2):
            if is_canceled():
                raise InputError("Cancelled; nothing was written.")
            w.write(interpolate_time(read_stack(src_path, win), info.dates, grid), window=win)
    return len(grid)
