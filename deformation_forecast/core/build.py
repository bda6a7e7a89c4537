"""Build a deformation stack from single-date rasters: dates, alignment to one grid, sorting."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.warp import Resampling

from . import validity
from .dates import check_increasing, parse_date, parse_year_doy
from .errors import InputError
from .run import QUIET, Run
from .stack import StackWriter, budget_gdal_cache


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
            # YYYYMMDD / YYYY-MM-DD, else year + day of year (GMTSAR: disp_2017246.grd)
            d = d or parse_date(os.path.basename(p)) or parse_year_doy(os.path.basename(p))
        if d is None:
            raise InputError(
                f"LAYERS: no date in the name of {os.path.basename(p)!r} (nor in its band "
                "description). Rename it with YYYYMMDD, YYYY-MM-DD or YYYYDDD (year + day of year), "
                "or give DATES."
            )
        out.append(Source(p, d))
    out.sort(key=lambda s: s.date)
    check_increasing([s.date for s in out], "the rasters given")
    return out


@budget_gdal_cache
def build_stack(
    sources: Sequence[Source],
    out_path: str,
    units_factor: float = 1.0,
    run: Run = QUIET,
    max_bytes: int | None = None,
) -> str:
    """Write the stack of `sources` on the grid of the first one; others are warped onto it
    (bilinear, through a rasterio WarpedVRT) when their CRS, size or transform differ (said in a
    message of `run`). Values are multiplied by `units_factor`. Each raster is read and written
    window by window, the windows sized from the memory budget of `run` (`max_bytes` overrides
    it: tests); `run` reports progress (one step per raster) and cancels."""
    from .stack import StackInfo, iter_windows

    with rasterio.open(sources[0].path) as ref:  # CRS: declared or lon/lat axes (core.validity)
        crs, transform, width, height = validity.crs_of(ref), ref.transform, ref.width, ref.height
    # windows of the output grid, whole rows of its 128 x 128 tiles where they fit
    grid = StackInfo(out_path, [], crs, transform, width, height, block=(128, 128))
    windows = iter_windows(grid, max_bytes, bands=1, copies=4, run=run)
    with StackWriter(out_path, [s.date for s in sources], crs, transform, width, height) as w:
        for i, s in enumerate(sources):
            run.check_cancelled()
            _write_source(s, grid, windows, _BandSink(w, i, units_factor), run)
            run.progress((i + 1) / len(sources))
    return out_path


@dataclass(frozen=True)
class _BandSink:
    """Band `index` of the stack being written, its values multiplied by `factor`."""

    writer: StackWriter
    index: int
    factor: float

    def write(self, data: np.ndarray, window) -> None:
        if self.factor != 1.0:
            data *= np.float32(self.factor)
        self.writer.write_band(self.index, data, window=window)


def _write_source(s: Source, grid, windows, sink: _BandSink, run: Run) -> None:
    """Read band `s.band` of `s` window by window on `grid` (warped when its grid differs) into
    `sink`; refuse a raster without CRS, one that cannot be read or aligned, or one that does not
    overlap the first raster."""
    with rasterio.open(s.path) as src:
        src_crs = validity.crs_of(src)  # declared, or lon/lat axes (GMT grids); else refused
        same = (
            CRS.from_user_input(src_crs) == CRS.from_user_input(grid.crs)
            and src.width == grid.width
            and src.height == grid.height
            and np.allclose(np.array(src.transform)[:6], np.array(grid.transform)[:6])
        )
        if not same:
            run.message(
                f"{os.path.basename(s.path)}: grid differs from the first raster "
                f"({src.crs}, {src.width}x{src.height}); warped onto it (bilinear)."
            )
        ds, band = (src, s.band) if same else _warped(src, src_crs, s, grid)
        overlap = False
        try:
            for win in windows:
                try:
                    data = ds.read(band, window=win, out_dtype="float32")
                except rasterio.errors.RasterioError as e:
                    raise InputError(
                        f"LAYERS: {os.path.basename(s.path)!r} cannot be read"
                        + (" and aligned to the first raster" if not same else "")
                        + f" ({e}); check the file"
                        + (" or reproject it first." if not same else ".")
                    ) from e
                if same:  # nodata, GDAL masks, undeclared sentinels (core.validity)
                    data = validity.clean_block(data, src, s.band, window=win, length=False)
                if not same and not overlap:
                    overlap = bool(np.isfinite(data).any())
                sink.write(data, win)
        finally:
            if ds is not src:
                ds.close()
        if not same and not overlap:
            raise InputError(
                f"LAYERS: {os.path.basename(s.path)!r} does not overlap the first raster "
                "at all; check its CRS and extent."
            )


def _warped(src, src_crs, s: Source, grid):
    """(WarpedVRT, band) of band `s.band` of `src` on `grid` (bilinear, NaN outside its footprint;
    every undeclared sentinel as nodata, core.validity.warp_source)."""
    from rasterio.vrt import WarpedVRT

    try:
        wsrc, wband = validity.warp_source(src, s.band)
        vrt = WarpedVRT(
            wsrc,
            src_crs=src_crs,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=Resampling.bilinear,
            src_nodata=validity.warp_nodata(wsrc, wband),
            nodata=np.nan,
            dtype="float32",
        )
        return vrt, wband
    except rasterio.errors.RasterioError as e:
        raise InputError(
            f"LAYERS: {os.path.basename(s.path)!r} cannot be aligned to the first "
            f"raster ({e}); reproject it first."
        ) from e


@budget_gdal_cache
def resample_stack_file(
    src_path: str,
    dst_path: str,
    interval_days: int,
    run: Run = QUIET,
    max_bytes: int | None = None,
) -> int:
    """Resample the stack at `src_path` to a regular interval (linear in time, gaps filled),
    window by window, into `dst_path`; returns the number of dates written. Windows are sized from
    the memory budget of `run` or `max_bytes` (float32 bytes of one window's input: tests); `run`
    reports progress and cancels."""
    from .resample import interpolate_time, regular_grid
    from .stack import iter_windows, read_info, read_windows

    info = read_info(src_path)
    grid = regular_grid(info.dates, interval_days)
    if len(grid) < 2:
        raise InputError(
            f"INTERVAL_DAYS: the stack spans {(info.dates[-1] - info.dates[0]).days} days, too short "
            f"for an interval of {interval_days} days."
        )
    # the input window and its float64 copies in interpolate_time, the output and its float64 product
    windows = iter_windows(info, max_bytes, copies=4 + 4 * max(1.0, len(grid) / info.count), run=run)
    with StackWriter(dst_path, grid, info.crs, info.transform, info.width, info.height, info.units) as w:
        for k, (win, block) in enumerate(read_windows(src_path, windows)):
            run.check_cancelled()
            w.write(interpolate_time(block, info.dates, grid), window=win)
            run.progress((k + 1) / len(windows))
    return len(grid)
