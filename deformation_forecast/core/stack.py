"""Deformation stacks: multi-band GeoTIFFs, band i = cumulative LOS displacement (mm) at date i.

The date of each band is kept in its description (ISO ``YYYY-MM-DD``) and in a ``DATE`` band tag;
NaN marks incoherent pixels. Reads are windowed (rasterio windows) so that callers touch only the
pixels they need; writes go to a temporary file beside the target and are renamed on success.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Interleaving
from rasterio.windows import Window

from . import validity
from .budget import open_for_reads
from .dates import check_increasing, format_date, parse_date
from .errors import InputError
from .run import Run

DATE_TAG = "DATE"
UNITS_TAG = "UNITS"


@dataclass(frozen=True)
class StackInfo:
    """What a stack is, without its pixels."""

    path: str
    dates: list[dt.date]
    crs: CRS | None
    transform: Affine
    width: int
    height: int
    nodata: float | None = None
    units: str = "mm"
    tags: dict[str, str] = field(default_factory=dict)
    block: tuple[int, int] = (0, 0)  # (rows, cols) of the file's blocks (tiles or strips); 0 = unknown
    interleave: str = "band"  # "pixel": one block holds every band; "band": a block per band

    @property
    def count(self) -> int:
        return len(self.dates)

    @property
    def res(self) -> tuple[float, float]:
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.count, self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return rasterio.transform.array_bounds(self.height, self.width, self.transform)[::1]


def _band_dates(src: rasterio.DatasetReader) -> list[dt.date | None]:
    out: list[dt.date | None] = []
    for b in range(1, validity.band_count(src) + 1):  # trailing alpha bands: a mask, no date
        d = parse_date(src.descriptions[b - 1] or "")
        if d is None:
            tags = src.tags(b)
            for key in (DATE_TAG, "ACQUISITION_DATE", "date"):
                if key in tags:
                    d = parse_date(tags[key])
                    if d:
                        break
        out.append(d)
    return out


def file_block(src: rasterio.DatasetReader) -> tuple[int, int]:
    """(rows, cols) of the blocks GDAL decodes when `src` is read: its own block shape, except for a
    VRT whose sources all share one block shape and lie on its grid unshifted (a VRT of single-date
    GeoTIFFs, gdalbuildvrt -separate): then the sources' blocks (a VRT's own 128 px blocks would cut
    each source tile of 256 or 512 px into pieces, each decoding the whole tile: issue 22)."""
    bh, bw = (int(v) for v in src.block_shapes[0])
    if src.driver != "VRT" or not os.path.isfile(src.name):
        return bh, bw
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(src.name).getroot()
    except (ET.ParseError, OSError):
        return bh, bw
    shapes = set()
    for source in root.iter():
        if not source.tag.endswith("Source"):
            continue
        props, srect, drect = (source.find(t) for t in ("SourceProperties", "SrcRect", "DstRect"))
        if props is None or srect is None or drect is None or srect.attrib != drect.attrib:
            return bh, bw
        if drect.attrib != {"xOff": "0", "yOff": "0", "xSize": str(src.width), "ySize": str(src.height)}:
            return bh, bw
        shapes.add((int(props.get("BlockYSize", 0)), int(props.get("BlockXSize", 0))))
    if len(shapes) == 1 and all(next(iter(shapes))):
        return next(iter(shapes))
    return bh, bw


def read_info(path: str, require_dates: bool = True) -> StackInfo:
    """Open `path` and describe it; with `require_dates`, every band must carry a date.

    Dates come from the band descriptions, then band tags (``DATE``), then a dataset tag
    ``DATES`` (comma-separated), then, for a single band, the file name.
    """
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"Cannot open raster {path!r}: {e}") from e
    with src:
        dates = _band_dates(src)
        ds_tags = src.tags()
        if any(d is None for d in dates) and "DATES" in ds_tags:
            listed = [parse_date(t) for t in ds_tags["DATES"].split(",")]
            if len(listed) == validity.band_count(src) and all(listed):
                dates = listed
        if validity.band_count(src) == 1 and dates[0] is None:
            dates = [parse_date(os.path.basename(path))]
        if require_dates and any(d is None for d in dates):
            bad = [i + 1 for i, d in enumerate(dates) if d is None]
            raise InputError(
                f"Raster {os.path.basename(path)!r}: band(s) {bad[:10]} carry no date. A deformation "
                "stack needs the acquisition date (YYYYMMDD or YYYY-MM-DD) in each band description; "
                "use 'Build deformation stack' to make one from single-date rasters."
            )
        if require_dates:
            _check_labels(src, path)
            check_increasing(dates, f"raster {os.path.basename(path)!r}")  # type: ignore[arg-type]
        nodata = src.nodata
        units = src.units[0] if src.units and src.units[0] else ds_tags.get(UNITS_TAG, "mm")
        if validity.unit_scale(units) != 1.0 and validity.is_dated(src):
            units = "mm"  # read_stack converts m / cm to mm (core.validity)
        return StackInfo(
            path=path,
            dates=dates,  # type: ignore[arg-type]
            crs=src.crs,
            transform=src.transform,
            width=src.width,
            height=src.height,
            nodata=nodata,
            units=units or "mm",
            tags=dict(ds_tags),
            block=file_block(src),
            interleave="pixel" if _is_pixel_interleaved(src) else "band",
        )


def _check_labels(src: rasterio.DatasetReader, path: str) -> None:
    """Band labels that are date pairs (interferograms) are refused (core.validity)."""
    validity.check_not_interferograms(list(src.descriptions), f"raster {os.path.basename(path)!r}")


def read_stack(
    path: str,
    window: Window | None = None,
    bands: Sequence[int] | None = None,
) -> np.ndarray:
    """Pixels as float32 (bands, rows, cols), nodata as NaN. `bands` are 0-based indexes. A pass
    over many windows opens one :class:`StackReader` instead."""
    with StackReader(path) as reader:
        return reader.read(window, bands)


# open StackReaders of compressed pixel-interleaved files (see StackWriter._flush). A count for the
# whole process, not per pass or thread, because what it protects is too: GDAL's block cache, in
# which any writer's unwritten blocks push out the tiles such a reader decoded
_PACKED_READERS = [0]


class StackReader:
    """One open dataset for a pass of windowed reads of a stack, each read cleaned as
    :func:`read_stack` cleans it. Reopening the file for each window of a pass made reads of a
    compressed pixel-interleaved file 3-4 times slower while a stack was being written (its cache
    of decoded tiles dropped at each close); an uncompressed pixel-interleaved file is read with
    direct I/O (core.budget.open_for_reads)."""

    def __init__(self, path: str):
        self.path = path
        self.src = open_for_reads(path)
        self.count = validity.band_count(self.src)
        src = self.src
        # a compressed pixel-interleaved file: StackWriter writes its windows out while it is open
        self.packed = _is_pixel_interleaved(src) and src.compression is not None
        if self.packed:
            _PACKED_READERS[0] += 1

    def read(self, window: Window | None = None, bands: Sequence[int] | None = None) -> np.ndarray:
        """Pixels as float32 (bands, rows, cols), nodata as NaN; `bands` are 0-based indexes."""
        idx = [b + 1 for b in bands] if bands is not None else list(range(1, self.count + 1))
        arr = self.src.read(idx, window=window, out_dtype="float32", boundless=False)
        # nodata, GDAL masks (internal, .msk, alpha), undeclared sentinels, m/cm -> mm
        return validity.clean_block(arr, self.src, idx, window=window)

    def close(self) -> None:
        if self.packed and not self.src.closed:
            _PACKED_READERS[0] -= 1
        self.src.close()

    def __enter__(self) -> StackReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_windows(
    path: str, windows: Sequence[Window], bands: Sequence[int] | None = None
) -> Iterator[tuple[Window, np.ndarray]]:
    """(window, its pixels as :func:`read_stack` reads them) for each of `windows`, in order, all
    read through one :class:`StackReader`: the loop of a streamed algorithm."""
    with StackReader(path) as reader:
        for win in windows:
            yield win, reader.read(win, bands)


def budget_gdal_cache(fn):
    """Decorator: run `fn` with GDAL's block cache sized from its memory budget (core.budget): its
    `run` argument's (core.run.Run), else its `mb` argument, so that a streamed algorithm called
    directly (not through Processing, which does the same) does not let GDAL cache up to 5 % of the
    RAM of decoded blocks."""
    import functools
    import inspect

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .budget import gdal_env

        bound = sig.bind_partial(*args, **kwargs).arguments
        run = bound.get("run")
        with gdal_env(run.budget_mb if run is not None else bound.get("mb")):
            return fn(*args, **kwargs)

    return wrapper


def window_shape(
    height: int, width: int, px_bytes: int, max_bytes: int, block: tuple[int, int] = (0, 0)
) -> tuple[int, int]:
    """(rows, cols) of windows of a `height` x `width` raster whose pixels take `px_bytes` each and
    must fit in `max_bytes`, aligned to the file's `block` (rows, cols) where possible: whole rows
    of blocks, full width when such a strip fits, else a whole number of blocks across, so that
    every block of the file is decoded once."""
    bh, bw = (max(1, int(block[0])), max(1, int(block[1]))) if all(block) else (1, width)
    bh, bw = min(bh, height), min(bw, width)
    px_bytes = max(1, int(px_bytes))
    row_bytes = width * px_bytes
    if max_bytes >= row_bytes * bh:  # full-width strips of whole block rows
        rows = int(max_bytes // row_bytes)
        rows = max(bh, rows // bh * bh)
        return min(rows, height), width
    if max_bytes >= bh * bw * px_bytes:  # one block row high, several blocks across
        cols = int(max_bytes // (bh * px_bytes)) // bw * bw
        return bh, min(max(bw, cols), width)
    if max_bytes >= row_bytes and bw >= width:  # strips thinner than the file's strips
        return max(1, min(int(max_bytes // row_bytes), height)), width
    if max_bytes >= bw * px_bytes:  # part of a block row, one block wide
        return max(1, min(int(max_bytes // (bw * px_bytes)), bh)), bw
    # not even one block-wide row fits: part of a row
    return 1, max(1, min(int(max_bytes // px_bytes), width))


def iter_windows(
    info: StackInfo,
    max_bytes: int | None = None,
    bands: int | None = None,
    copies: float = 4.0,
    mb: float | None = None,
    run: Run | None = None,
) -> list[Window]:
    """Windows covering the raster, row-major, each holding at most `max_bytes` of float32 pixels
    for `bands` bands (default all), aligned to the file's blocks (see :func:`window_shape`).

    Without `max_bytes` the size comes from the memory budget: `run`'s (core.run.Run), else the
    budget `mb` (else $DEFORMATION_FORECAST_MEMORY_MB, else 2 GB), shared by `copies` arrays of a
    window's size (core.budget.working_bytes). New code passes `run`; `mb` is kept for callers
    that have not moved to the run context yet.
    """
    run = run if run is not None else Run(budget_mb=mb)
    if max_bytes is None:
        max_bytes = run.working_bytes(copies)
    nb = info.count if bands is None else max(1, int(bands))
    rows, cols = window_shape(info.height, info.width, 4 * nb, int(max_bytes), info.block)
    _warn_cut_blocks(info, rows, cols, run)
    return [
        Window(c0, r0, min(cols, info.width - c0), min(rows, info.height - r0))
        for r0 in range(0, info.height, rows)
        for c0 in range(0, info.width, cols)
    ]


def _is_pixel_interleaved(src: rasterio.DatasetReader) -> bool:
    """Whether each block of the open `src` carries every band."""
    return src.count > 1 and src.interleaving == Interleaving.pixel


def pixel_interleaved(path: str) -> bool:
    """Whether a read of one band decodes the pixels of every band (a pixel-interleaved GeoTIFF: one
    tile or strip carries all bands), so that reading several bands at once costs what one does."""
    try:
        with rasterio.open(path) as src:
            return _is_pixel_interleaved(src)
    except rasterio.errors.RasterioIOError:  # not a file (a StackInfo describing a grid): no
        return False


def _warn_cut_blocks(info: StackInfo, rows: int, cols: int, run: Run) -> None:
    """Log (once per call) when windows of `rows` x `cols` cut the file's blocks and one block (all
    the bands it carries) is larger than GDAL's block cache of the budget: each block is then
    decoded once per window that touches it."""
    from .budget import budget_for_cache

    bh, bw = (min(int(info.block[0]), info.height), min(int(info.block[1]), info.width))
    if not all(info.block) or (rows >= bh and cols >= bw):
        return
    block = bh * bw * 4 * (info.count if pixel_interleaved(info.path) else 1)
    if block <= run.gdal_cache_bytes():
        return
    need = budget_for_cache(block)
    raise_budget = f"raise the memory budget to at least {need} MB, or " if need is not None else ""
    LOG.warning(
        "%r: its blocks (%d x %d pixels, %.0f MB decoded) do not fit in GDAL's block cache of the "
        "memory budget, so each is decoded several times; %srewrite the stack in the plugin's "
        "layout: gdal_translate %s",
        os.path.basename(info.path), bh, bw, block / 2**20, raise_budget, PREFERRED_LAYOUT_OPTIONS,
    )  # fmt: skip


def window_slices(win: Window) -> tuple[slice, slice]:
    """(rows, cols) slices of `win` into an array that covers the whole raster."""
    r0, c0 = int(win.row_off), int(win.col_off)
    return slice(r0, r0 + int(win.height)), slice(c0, c0 + int(win.width))


def partial_paths(path: str) -> list[str]:
    """The temporary files :func:`atomic_path` may have left for `path` when its process was killed
    (SIGKILL gives no chance to clean up): ``.<name>.<random>.partial<ext>`` beside it."""
    import glob

    folder = os.path.dirname(os.path.abspath(path)) or "."
    base, ext = os.path.splitext(os.path.basename(path))
    pattern = os.path.join(glob.escape(folder), f".{glob.escape(base)}.*.partial{glob.escape(ext)}")
    return sorted(glob.glob(pattern) + glob.glob(pattern + ".aux.xml"))


def check_free_space(folder: str, need: int, what: str, hint: str) -> None:
    """Refuse up front (InputError) when the file system of `folder` has less than `need` bytes
    free, rather than failing with "No space left on device" after minutes of work. `what` names
    the file, `hint` says where else it could go."""
    import shutil

    probe = os.path.abspath(folder)
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if free < need:
        raise InputError(
            f"Not enough free disk space for {what}: it needs about {need / 2**30:.1f} GiB in "
            f"{folder!r} and {free / 2**30:.1f} GiB are free; free some space or {hint}."
        )


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it to `path` on success, remove it on error.

    Nothing half-written is ever visible under the final name.
    """
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = _mkstemp(path, prefix=f".{base}.", suffix=f".partial{ext}", dir=folder)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield tmp
        _finish(tmp, path)
        os.replace(tmp, path)
        aux = tmp + ".aux.xml"
        if os.path.exists(aux):
            os.replace(aux, path + ".aux.xml")
    except BaseException as e:
        for p in (tmp, tmp + ".aux.xml"):
            with contextlib.suppress(OSError):
                os.unlink(p)
        _raise_disk_error(path, e)
        raise


def _mkstemp(path: str, **kw) -> tuple[int, str]:
    try:
        return tempfile.mkstemp(**kw)
    except OSError as e:
        _raise_disk_error(path, e)
        raise


def _raise_disk_error(path: str, e: BaseException) -> None:
    """A full or read-only disk while writing `path` becomes an InputError saying so (core.outputs)."""
    from .outputs import DISK_ERRNOS, write_error

    if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
        raise write_error(path, e) from e
    if isinstance(e, rasterio.errors.RasterioIOError) and any(
        k in str(e) for k in ("No space left", "Read-only", "Permission denied")
    ):
        raise write_error(path, OSError(0, str(e))) from e


def _finish(tmp: str, path: str) -> None:
    """fsync the temporary file before its rename (core.outputs); a disk error names `path`."""
    from .outputs import finish_file, write_error

    try:
        finish_file(tmp)
    except OSError as e:
        raise write_error(path, e) from e


def _profile(count: int, height: int, width: int, crs: CRS | str | None, transform: Affine) -> dict:
    big = count * height * width * 4 > 3.5 * 2**30
    prof = dict(
        driver="GTiff",
        count=count,
        height=height,
        width=width,
        dtype="float32",
        crs=CRS.from_user_input(crs) if crs else None,
        transform=transform,
        nodata=float("nan"),
        compress="deflate",
        zlevel=1,  # fast: level 6 is ~4x slower for a few % smaller float stacks
        # no predictor: the floating-point one (3) made displacement stacks 2-11 % smaller (a mostly
        # masked one 20 % larger) and doubled the decoding of every later read (README, issue 22)
        interleave="band",
        BIGTIFF="YES" if big else "IF_SAFER",
    )
    if width >= 128 and height >= 128:
        # small tiles: a profile or a benchmark decodes 128 x 128 pixels per band it touches, not
        # 256 x 256 (measured with bench/bench_profiles.py: 64-128 px tiles are 3-6x faster there)
        prof.update(tiled=True, blockxsize=128, blockysize=128)
    return prof


class StackWriter:
    """Write a stack window by window into a temporary file; `close()` publishes it.

    Use as a context manager: on an exception nothing is left under the final name.
    """

    _dst: rasterio.io.DatasetWriter  # the temporary file, reopened for update by _flush

    def __init__(
        self,
        path: str,
        dates: Sequence[dt.date | str],
        crs: CRS | str | None,
        transform: Affine,
        width: int,
        height: int,
        units: str = "mm",
        tags: dict[str, str] | None = None,
    ):
        self.path = path
        self._open(len(dates), _profile(len(dates), height, width, crs, transform))
        labels = [d if isinstance(d, str) else format_date(d) for d in dates]
        for i, lab in enumerate(labels, start=1):
            self._dst.set_band_description(i, lab)
            self._dst.update_tags(i, **{DATE_TAG: lab})
            self._dst.set_band_unit(i, units)
        self._dst.update_tags(**{UNITS_TAG: units, **(tags or {})})

    def write(self, data: np.ndarray, window: Window | None = None) -> None:
        self._dst.write(np.asarray(data, dtype="float32"), window=window)
        if _PACKED_READERS[0] and window is not None and self._whole_tiles(window):
            self._flush()

    def _whole_tiles(self, win: Window) -> bool:
        """Whether `win` covers only whole tiles of the output (its edges on tile edges or on the
        raster's): written out now, none of them is written twice."""
        (bh, bw), h, w = self._dst.block_shapes[0], self._dst.height, self._dst.width
        r0, c0 = int(win.row_off), int(win.col_off)
        r1, c1 = r0 + int(win.height), c0 + int(win.width)
        return r0 % bh == 0 and c0 % bw == 0 and (r1 % bh == 0 or r1 == h) and (c1 % bw == 0 or c1 == w)

    def _flush(self) -> None:
        """Write the window's blocks out of GDAL's block cache (close, reopen for update): a cache
        full of the output's unwritten blocks made the next window's read of a compressed
        pixel-interleaved input decode each tile once per band (losvertical on 128 px LZW tiles
        5-8x slower, bench_layouts.py). Only while such an input is open (a StackReader of one):
        elsewhere reopening costs more than it saves (losvertical 29 -> 51 CPU s at 3000 x 3000 x 60
        from an uncompressed input)."""
        self._dst.close()
        self._dst = rasterio.open(self._tmp, "r+")

    def write_band(self, index: int, data: np.ndarray, window: Window | None = None) -> None:
        """Write one band (0-based `index`) of the stack."""
        self._dst.write(np.asarray(data, dtype="float32"), index + 1, window=window)

    def _open(self, count: int, profile: dict) -> None:
        """Refuse impossible band counts, then open the temporary file with GDAL's errors
        collected (core.outputs): a full disk fails the run instead of leaving a corrupt file."""
        from .outputs import GdalErrors

        validity.check_bands_limit(count, os.path.basename(self.path))
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._errors = GdalErrors().__enter__()
        try:
            self._dst = rasterio.open(self._tmp, "w", **profile)
        except BaseException as e:
            self._errors.__exit__(None, None, None)
            with contextlib.suppress(BaseException):
                self._atomic.__exit__(type(e), e, None)
            raise

    def set_band_units(self, units: Sequence[str]) -> None:
        """Per-band units (one per band), for outputs whose bands are different quantities."""
        for i, u in enumerate(units, start=1):
            self._dst.set_band_unit(i, u)

    def close(self) -> None:
        from .outputs import verify_raster

        try:
            self._dst.close()
            self._errors.raise_if_any(self.path)
            verify_raster(self._tmp, self.path)
        except BaseException as e:
            self._errors.__exit__(None, None, None)
            with contextlib.suppress(BaseException):
                self._atomic.__exit__(type(e), e, None)
            raise
        self._errors.__exit__(None, None, None)
        self._atomic.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        with contextlib.suppress(BaseException):
            self._dst.close()
        self._errors.__exit__(None, None, None)
        with contextlib.suppress(BaseException):
            self._atomic.__exit__(type(exc) if exc else RuntimeError, exc, None)

    def __enter__(self) -> StackWriter:
        return self

    def __exit__(self, et, ev, tb) -> None:
        if et is None:
            self.close()
        else:
            self.abort(ev)


def extent_window(info: StackInfo, bounds: tuple[float, float, float, float], what: str = "EXTENT") -> Window:
    """The whole-pixel window of the stack covering `bounds` (xmin, ymin, xmax, ymax in the stack's
    CRS), clipped to the raster; InputError when they do not overlap it or cover less than 2 x 2."""
    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    inv = ~info.transform
    cols, rows = zip(*(inv * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)), strict=True)
    c0, c1 = max(0, int(np.floor(min(cols) + 1e-9))), min(info.width, int(np.ceil(max(cols) - 1e-9)))
    r0, r1 = max(0, int(np.floor(min(rows) + 1e-9))), min(info.height, int(np.ceil(max(rows) - 1e-9)))
    if c1 - c0 < 2 or r1 - r0 < 2:
        b = info.bounds
        raise InputError(
            f"{what} ({xmin:.6g}, {ymin:.6g}, {xmax:.6g}, {ymax:.6g}) covers "
            f"{max(c1 - c0, 0)} x {max(r1 - r0, 0)} pixels of the stack, whose extent is "
            f"({b[0]:.6g}, {b[1]:.6g}, {b[2]:.6g}, {b[3]:.6g}); choose an area inside it."
        )
    return Window(c0, r0, c1 - c0, r1 - r0)


def crop_stack(
    info: StackInfo, window: Window, out_path: str, mb: float | None = None, run: Run | None = None
) -> StackInfo:
    """Copy `window` of the stack to a new stack at `out_path` (dates, units and tags kept), in row
    strips sized from the memory budget of `run` (else `mb`, for callers not on the run context
    yet); returns its StackInfo."""
    from rasterio.windows import transform as window_transform

    run = run if run is not None else Run(budget_mb=mb)
    c0, r0, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    rows = max(1, min(h, run.working_bytes(3) // max(1, 4 * info.count * w)))
    tags = {k: v for k, v in info.tags.items() if k != UNITS_TAG}
    with StackWriter(
        out_path, info.dates, info.crs, window_transform(window, info.transform), w, h, info.units, tags
    ) as wr:
        strips = [Window(c0, r0 + k, w, min(rows, h - k)) for k in range(0, h, rows)]
        for win, data in read_windows(info.path, strips):
            wr.write(data, window=Window(0, int(win.row_off) - r0, w, int(win.height)))
    return read_info(out_path)


def write_stack(
    path: str,
    data: np.ndarray,
    dates: Sequence[dt.date | str],
    crs: CRS | str | None,
    transform: Affine,
    units: str = "mm",
    tags: dict[str, str] | None = None,
) -> str:
    """Write a whole (bands, rows, cols) array as a stack; returns `path`."""
    if data.ndim == 2:
        data = data[None]
    if data.shape[0] != len(dates):
        raise ValueError(f"{data.shape[0]} bands but {len(dates)} dates")
    with StackWriter(path, dates, crs, transform, data.shape[2], data.shape[1], units, tags) as w:
        w.write(data)
    return path


def same_grid(a: StackInfo, b: StackInfo, tol: float = 1e-6) -> bool:
    """True when both rasters share CRS, size and transform (to `tol` of a pixel)."""
    if (a.width, a.height) != (b.width, b.height):
        return False
    if (a.crs or CRS()) != (b.crs or CRS()):
        return False
    ta, tb = np.array(a.transform)[:6], np.array(b.transform)[:6]
    return bool(np.allclose(ta, tb, atol=tol * max(a.res)))


def require_crs(info: StackInfo) -> None:
    if info.crs is None:
        raise InputError(
            f"Raster {os.path.basename(info.path)!r} has no CRS; assign one (Raster > Projections > "
            "Assign Projection) before using it."
        )


def pixel_index(info: StackInfo, x: float, y: float) -> tuple[int, int] | None:
    """(row, col) of the pixel containing map coordinate (x, y) in the stack's CRS, or None outside."""
    col, row = ~info.transform * (x, y)
    r, c = int(np.floor(row)), int(np.floor(col))
    if 0 <= r < info.height and 0 <= c < info.width:
        return r, c
    return None


def read_pixel_series(path: str, x: float, y: float) -> tuple[list[dt.date], np.ndarray] | None:
    """The dates and values (float32, NaN kept) of the pixel at (x, y), reading only that pixel;
    None when (x, y) is outside the raster."""
    info = read_info(path)
    rc = pixel_index(info, x, y)
    if rc is None:
        return None
    vals = read_stack(path, Window(rc[1], rc[0], 1, 1))[:, 0, 0]
    return info.dates, vals


def read_decimated(path: str, band: int = -1, max_side: int = 512) -> np.ndarray:
    """One band (0-based, -1 = the last) read decimated by GDAL to at most `max_side` pixels a side
    (nearest), float32 with NaN as nodata: a preview in bounded memory (never the whole band)."""
    with rasterio.open(path) as src:
        b = validity.band_count(src) + band if band < 0 else band
        scale = max(1.0, max(src.height, src.width) / max_side)
        shape = (max(1, int(round(src.height / scale))), max(1, int(round(src.width / scale))))
        arr = src.read(b + 1, out_shape=shape, out_dtype="float32")
        return validity.clean_block(arr, src, b + 1, out_shape=shape)


MAX_ABS_MM = 1e5  # 100 m of displacement: anything beyond is a unit or nodata mistake


# the input check reads at most this many bytes of float32 pixels and this many whole blocks (all
# bands of each in one read) (issue 22): a bounded, deterministic sample of the file's own blocks,
# never a decimated pass over whole bands (which decodes every tile once per band). A stack of up
# to 64 MB is checked whole.
CHECK_BLOCKS = 1024
CHECK_BYTES = 64 * 2**20


def sample_blocks(
    info: StackInfo, max_blocks: int = CHECK_BLOCKS, max_bytes: int = CHECK_BYTES
) -> list[Window]:
    """Windows of whole blocks (tiles or strips) of the file, all bands of each taking at most
    `max_bytes` together and at most `max_blocks` blocks read (a window of a band-interleaved file
    reads one block per band: 60 one-row strips for a row of 60 dates): every block when they fit,
    else a deterministic pseudo-random choice (core.streaming keys of the block index), in file
    order. A block larger than `max_bytes` alone (a strip holding the whole band) is cut to its
    first rows."""
    from .streaming import hash_keys

    bh, bw = (int(v) for v in info.block) if all(info.block) else (1, info.width)
    bh, bw = max(1, min(bh, info.height)), max(1, min(bw, info.width))
    px = 4 * max(1, info.count)
    rows_fit = max(1, int(max_bytes // (bw * px)))
    nr, nc = -(-info.height // bh), -(-info.width // bw)
    per_window = 1 if info.interleave == "pixel" else max(1, info.count)  # blocks read per window
    k = max(1, min(nr * nc, int(max_blocks) // per_window, int(max_bytes // (min(bh, rows_fit) * bw * px))))
    chosen = np.sort(np.argsort(hash_keys(np.arange(nr * nc)), kind="stable")[:k])
    out = []
    for i in chosen.tolist():
        r0, c0 = (i // nc) * bh, (i % nc) * bw
        out.append(Window(c0, r0, min(bw, info.width - c0), min(bh, rows_fit, info.height - r0)))
    return out


def _check_block(info: StackInfo, arr: np.ndarray, what: str) -> None:
    """Refuse infinities and implausible magnitudes in `arr` (bands, rows, cols) of the stack."""
    name = os.path.basename(info.path)
    finite = np.isfinite(arr)
    bad = ~finite & ~np.isnan(arr)
    big = finite & (np.abs(np.where(finite, arr, 0)) > MAX_ABS_MM)
    for mask, inf in ((bad, True), (big, False)):
        per_band = mask.reshape(mask.shape[0], -1).any(axis=1)
        if not per_band.any():
            continue
        b = int(np.argmax(per_band))
        label = info.dates[b].isoformat() if info.dates and info.dates[b] else f"band {b + 1}"
        if inf:
            raise InputError(
                f"{what}: {name!r} has infinite values at {label}; set them to NaN (nodata) first."
            )
        top = float(np.abs(arr[b][mask[b]]).max())
        raise InputError(
            f"{what}: {name!r} has values up to {top:.3g} {info.units} at {label}, "
            "which is not a plausible displacement; check the units and the nodata value."
        )


def _read_checked(src, window: Window, bands: list[int] | None = None) -> np.ndarray:
    """Bands (all by default) of `window` with nodata, GDAL masks and sentinels as NaN, in mm."""
    indexes = bands or list(range(1, validity.band_count(src) + 1))
    arr = src.read(indexes, window=window, out_dtype="float32")
    return validity.clean_block(arr, src, indexes, window=window, count=False)  # a sample: not counted


LOG = logging.getLogger("deformation_forecast")
# the layout the plugin writes (see _profile and the README), as gdal_translate options
PREFERRED_LAYOUT_OPTIONS = (
    "-co TILED=YES -co BLOCKXSIZE=128 -co BLOCKYSIZE=128 -co INTERLEAVE=BAND "
    "-co COMPRESS=DEFLATE -co ZLEVEL=1 -co BIGTIFF=IF_SAFER"
)
# a compressed block that decodes to more than this (all the bands it carries) makes small windows
# (profiles) decode far more than they use: one strip per band (1500 x 1500: 130x slower profiles in
# bench_layouts.py), large pixel-interleaved tiles (COG, 512 px x 30 dates: 5x). Uncompressed
# blocks are read in part (GDAL's direct I/O, strip chopping)
SLOW_BLOCK_BYTES = 8 * 2**20


def layout_advice(path: str) -> str | None:
    """A sentence naming what makes the file at `path` slow to stream and the command that rewrites
    it in the plugin's layout, or None for a layout read efficiently (issue 22, bench_layouts.py)."""
    with rasterio.open(path) as src:
        if src.driver != "GTiff" or src.count < 2:
            return None
        bh, bw = src.block_shapes[0]
        pixel = src.interleaving == Interleaving.pixel
        block = bh * bw * 4 * (src.count if pixel else 1)
        compressed = src.compression is not None
    # pixel-interleaved files with reasonable blocks are read within 2x of the plugin's layout
    # (windows of whole blocks, frames in groups: bench_layouts.py), so they are not named
    if block <= SLOW_BLOCK_BYTES or not compressed:
        return None
    kind = "strip" if bw == src.width else "tile"
    what = f"each {kind} ({bh} x {bw} pixels{' x every band' if pixel else ''}) decodes to {block / 2**20:.3g} MB"
    name = os.path.basename(path)
    out = os.path.splitext(name)[0] + "_plugin_layout.tif"
    return (
        f"{name!r} is slow to read: {what}. Rewrite it once in the plugin's layout (band-interleaved, "
        f"128 px tiles, deflate): gdal_translate {PREFERRED_LAYOUT_OPTIONS} {name} {out}"
    )


def check_values(info: StackInfo, what: str = "INPUT", max_side: int = 512) -> None:
    """Refuse stacks whose values are garbage: infinities or implausible magnitudes in a bounded
    sample of the file's own blocks (:func:`sample_blocks`: each read once, all bands at a time, so
    a pixel-interleaved or large-tiled file is not walked once per band), or no valid pixel at all
    in the last band (then every remaining block of the last band is read, each once, until one
    valid pixel is found). `max_side` is kept for callers; the sample is bounded by CHECK_BLOCKS
    and CHECK_BYTES."""
    del max_side
    advice = layout_advice(info.path)
    if advice:
        LOG.warning("%s: %s", what, advice)
    wins = sample_blocks(info, CHECK_BLOCKS, CHECK_BYTES)
    name = os.path.basename(info.path)
    last_valid = False
    dates = sorted({0, (info.count - 1) // 2, info.count - 1})
    kept: list[np.ndarray] = []  # first, middle and last dates of the sample: undeclared fill values
    with rasterio.open(info.path) as src:
        for win in wins:
            arr = _read_checked(src, win)
            _check_block(info, arr, what)
            last_valid = last_valid or bool(np.isfinite(arr[-1]).any())
            kept.append(arr[dates].reshape(len(dates), -1))
        validity.check_repeated_fill(info.path, list(np.concatenate(kept, axis=1)), what)
        validity.warn_if_metres(info.path, np.concatenate(kept, axis=1), info.units, what)
        if not last_valid:
            bh, bw = file_block(src)
            # blocks the sample read whole (a block cut to its first rows is read again)
            seen = {(w.row_off, w.col_off) for w in wins if w.height == min(bh, info.height - w.row_off)}
            for r0 in range(0, info.height, bh):
                for c0 in range(0, info.width, bw):
                    if (r0, c0) in seen:
                        continue
                    win = Window(c0, r0, min(bw, info.width - c0), min(bh, info.height - r0))
                    if np.isfinite(_read_checked(src, win, [validity.band_count(src)])).any():
                        return
            b = info.count - 1
            label = info.dates[b].isoformat() if info.dates and info.dates[b] else f"band {b + 1}"
            raise InputError(
                f"{what}: {name!r} has no valid pixel at {label} (all NaN/nodata); "
                "choose a stack with coherent pixels."
            )
