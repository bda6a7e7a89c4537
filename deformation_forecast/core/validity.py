"""Which values read from a file are valid: declared nodata, GDAL masks, undeclared sentinels, units.

Every reader of the package passes what it read through :func:`clean_block` (rasters) or
:func:`clean_series` (tables), so that

- a declared nodata value, a GDAL per-dataset mask (``GDAL_TIFF_INTERNAL_MASK``, a ``.msk`` file)
  or an alpha band marks a pixel as NaN;
- an **undeclared nodata sentinel** (-9999, -32768, 9999, ...: exact round values no deformation
  series takes) becomes NaN too, and is counted so that the algorithm can warn about it
  (:func:`take_warnings`);
- a value that jumps by more than :data:`SPIKE_MM` from both neighbouring dates and back (a fill
  value at no round number, a corrupt sample) becomes NaN, counted and reported
  (:func:`mask_spikes`);
- a band whose unit is declared as metres or centimetres is converted to millimetres
  (:func:`unit_scale`), the package's unit.

The values each run turned into NaN that way (undeclared sentinels, GDAL masks, spikes: not the
declared nodata) are counted per thread (:func:`masked_count`): algorithms return the number.

No function here imports QGIS; the Processing layer reports :func:`take_warnings` to the user.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

from .errors import InputError

# Exact values used as "no data" by InSAR and GIS software (ISCE, GAMMA, SNAP, StaMPS exports,
# ArcGIS, int16/int32 and float32 extremes). A cumulative displacement in mm never takes them
# exactly, so they are masked wherever they appear and reported. -999 (1 m) is left alone: it is
# a plausible displacement in a stack stored as whole millimetres.
SENTINELS = (
    -9999.0,
    9999.0,
    -99999.0,
    99999.0,
    -999999.0,
    999999.0,
    -32768.0,
    -32767.0,
    32767.0,
    65535.0,
    -2147483648.0,
    2147483647.0,
    -3.4028234663852886e38,
    3.4028234663852886e38,
    -1e20,
    1e20,
    -1e30,
    1e30,
)
_SENTINELS32 = np.array(SENTINELS, dtype="float32")
_SMALLEST = np.float32(min(abs(v) for v in SENTINELS))

# unit labels (lower case) and their factor to millimetres
UNIT_TO_MM = {
    "mm": 1.0,
    "millimeter": 1.0,
    "millimetre": 1.0,
    "millimeters": 1.0,
    "millimetres": 1.0,
    "cm": 10.0,
    "centimeter": 10.0,
    "centimetre": 10.0,
    "centimeters": 10.0,
    "centimetres": 10.0,
    "m": 1000.0,
    "meter": 1000.0,
    "metre": 1000.0,
    "meters": 1000.0,
    "metres": 1000.0,
}

_lock = threading.Lock()
# per thread: QGIS runs algorithms in parallel background threads, each reading in its own thread
_found: dict[int, dict[tuple[str, float], int]] = {}
# per thread: (source, what was read) -> values turned into NaN (a block read twice counts once)
_masked: dict[int, dict[tuple, int]] = {}
# per thread: source -> [{what was read: spikes} (counted reads only), an example value, its band]
_spikes: dict[int, dict[str, list]] = {}
# per thread: what (a parameter) -> features dropped (no geometry)
_dropped: dict[int, dict[str, int]] = {}

# mm between consecutive dates, away and back: no ground motion InSAR can follow does this (a
# Sentinel-1 pixel unwraps at most ~14 mm per 6-12 days; mining subsidence reaches ~100 mm)
SPIKE_MM = 500.0
# a spike beyond this (100 m, core.stack.MAX_ABS_MM) is not masked: the stack check refuses the file
# ("not a plausible displacement; check the units and the nodata value")
SPIKE_MAX_MM = 1e5


def unit_scale(unit: str | None) -> float:
    """Factor from `unit` to millimetres (1 for mm, unknown or empty labels)."""
    return UNIT_TO_MM.get((unit or "").strip().lower(), 1.0)


def is_length_unit(unit: str | None) -> bool:
    return (unit or "").strip().lower() in UNIT_TO_MM


SENTINEL_CHUNK = 2**22  # values of a block :func:`sentinel_mask` looks at together


def sentinel_mask(arr: np.ndarray) -> np.ndarray:
    """True where `arr` holds exactly one of :data:`SENTINELS` (compared as float32)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fiu":
        return np.zeros(a.shape, dtype=bool)
    flat = np.ravel(a.astype("float32", copy=False))
    out = np.zeros(flat.shape, dtype=bool)
    # a few million values at a time: np.abs of a whole block was a float32 copy of it (+1 block)
    for i in range(0, flat.size, SENTINEL_CHUNK):
        part = flat[i : i + SENTINEL_CHUNK]
        with np.errstate(invalid="ignore"):
            big = np.abs(part) >= _SMALLEST  # one cheap pass; sentinels are rare
        if big.any():
            out[i : i + SENTINEL_CHUNK][big] = np.isin(part[big], _SENTINELS32)
    return out.reshape(a.shape)


def record(source: str, values: np.ndarray) -> None:
    """Count the sentinels among `values` (already known to be sentinels) found in `source`."""
    vals, counts = np.unique(np.asarray(values, dtype="float32"), return_counts=True)
    with _lock:
        mine = _found.setdefault(threading.get_ident(), {})
        for v, n in zip(vals.tolist(), counts.tolist(), strict=True):
            key = (source, float(v))
            mine[key] = mine.get(key, 0) + int(n)


def mask_sentinels(arr: np.ndarray, source: str) -> np.ndarray:
    """Set the sentinels of float array `arr` to NaN in place (counting them); returns `arr`."""
    hit = sentinel_mask(arr)
    if hit.any():
        record(source, arr[hit])
        arr[hit] = np.nan
    return arr


def take_warnings() -> list[str]:
    """One sentence per (source, sentinel) and per source with spikes found by this thread since
    its last call; clears them and the thread's :func:`masked_count`."""
    me = threading.get_ident()
    with _lock:
        items = sorted(_found.pop(me, {}).items())
        spikes = sorted(_spikes.pop(me, {}).items())
        _masked.pop(me, None)
        _dropped.pop(me, None)
    out = [
        f"{_name(src)}: values equal to {fmt_value(v)} (an undeclared nodata sentinel) "
        "were treated as nodata; declare it as the file's nodata value to silence this warning."
        for (src, v), _n in items
    ]
    out += [
        f"{_name(src)}: {sum(n.values()) or 'some'} value(s) jump by more than {SPIKE_MM:g} mm from both "
        f"neighbouring dates and back (e.g. {example:.6g} mm in band {band}): no ground motion does that; "
        "they were treated as nodata. Check the file's nodata value and units."
        for src, (n, example, band) in spikes
    ]
    return out


def masked_count() -> int:
    """Values this thread turned into NaN since the run began (undeclared sentinels, GDAL masks,
    spikes; a block read twice counted once): the number an algorithm reports."""
    with _lock:
        return int(sum(_masked.get(threading.get_ident(), {}).values()))


def count_dropped(what: str, n: int) -> None:
    """Note that `n` features of `what` (a parameter) were dropped (no geometry) in this run."""
    with _lock:
        mine = _dropped.setdefault(threading.get_ident(), {})
        mine[what] = mine.get(what, 0) + int(n)


def dropped_count() -> int:
    """Features this thread dropped since the run began (:func:`count_dropped`)."""
    with _lock:
        return int(sum(_dropped.get(threading.get_ident(), {}).values()))


def count_masked(key: tuple, n: int) -> None:
    with _lock:
        _masked.setdefault(threading.get_ident(), {})[key] = n


def dropped_summary(what: str, reasons: dict[str, int]) -> tuple[int, str]:
    """(total, one sentence for the log naming each reason's count) of the items an algorithm
    dropped, e.g. dropped_summary("Points", {"without geometry": 2}) -> (2, "Points dropped: 2 (2
    without geometry)."). Nothing is ever dropped in silence: the total is an output number."""
    total = int(sum(reasons.values()))
    if not total:
        return 0, f"{what} dropped: none."
    parts = ", ".join(f"{int(n)} {reason}" for reason, n in reasons.items() if n)
    return total, f"{what} dropped: {total} ({parts})."


def _name(source: str) -> str:
    return repr(os.path.basename(source)) if os.path.exists(source) else source


def fmt_value(v: float) -> str:
    return f"{v:.0f}" if abs(v) < 1e15 else f"{v:.7g}"


def has_gdal_mask(src) -> bool:
    """True when a rasterio dataset carries a per-dataset mask or an alpha band (masks that a
    nodata value alone would not express)."""
    from rasterio.enums import MaskFlags

    return any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in src.mask_flag_enums)


def band_count(src) -> int:
    """Bands that hold data: all but the trailing alpha bands (GDAL writes alpha last; it is read
    as the mask of every band by :func:`clean_block`, not as a date)."""
    from rasterio.enums import ColorInterp

    n = src.count
    while n > 1 and src.colorinterp[n - 1] == ColorInterp.alpha:
        n -= 1
    return n


def data_bands(src) -> list[int]:
    """1-based indexes of the bands that hold data (alpha bands excluded)."""
    from rasterio.enums import ColorInterp

    return [b for b in range(1, src.count + 1) if src.colorinterp[b - 1] != ColorInterp.alpha]


def clean_block(
    arr: np.ndarray,
    src,
    indexes: Sequence[int] | int,
    window=None,
    out_shape=None,
    length: bool = True,
    count: bool = True,
    spikes: bool = True,
) -> np.ndarray:
    """Turn what `src.read(indexes, window=window, out_shape=out_shape, out_dtype="float32")`
    returned into valid values: nodata, GDAL masks and sentinels as NaN; with `length` (a
    displacement, not an angle), values of a band declared in m or cm converted to mm and, with
    `spikes` too, spikes along consecutive dates (:func:`mask_spikes`) as NaN. The values masked
    are counted (:func:`masked_count`) unless `count` is False or the read was decimated
    (`out_shape`: a preview or a sample). `arr` (float32) is modified in place and returned."""
    nodata = src.nodata
    if nodata is not None and not np.isnan(nodata):
        arr[arr == np.float32(nodata)] = np.nan
    before = int(np.isfinite(arr).sum())
    if has_gdal_mask(src):
        kw = {"window": window}
        if out_shape is not None:
            kw["out_shape"] = out_shape
        m = src.read_masks(indexes, **kw)
        arr[m == 0] = np.nan
    if band_count(src) < src.count:  # a trailing alpha band GDAL does not take as the mask
        shape = None if out_shape is None else tuple(out_shape)[-2:]
        alpha = src.read(band_count(src) + 1, window=window, out_shape=shape)
        arr[..., alpha == 0] = np.nan
    mask_sentinels(arr, src.name)
    idx = (indexes,) if isinstance(indexes, int) else tuple(int(i) for i in indexes)
    where = None if window is None else tuple(int(v) for v in window.flatten())
    key = (src.name, idx, where) if count and out_shape is None else None
    if length:
        arr = to_mm(arr, src, indexes)
        if spikes and arr.ndim == 3 and is_dated(src):
            mask_spikes(arr, src.name, idx[0], key=key)
    if key is not None:
        count_masked(key, before - int(np.isfinite(arr).sum()))
    return arr


def spike_mask(arr: np.ndarray, limit: float = SPIKE_MM) -> np.ndarray:
    """True where a value of `arr` (dates, ...) differs by more than `limit` from the nearest valid
    values before and after it, in the same direction, while those two agree within `limit` / 2:
    a value that jumps away and back. NaN gaps are skipped; the first and last valid dates of a
    series have one neighbour only and are never flagged, nor are values beyond SPIKE_MAX_MM (the
    stack check refuses those). Only the series whose range exceeds
    `limit` (two cheap reductions) are examined further, so a block costs little extra memory."""
    a = np.asarray(arr)
    out = np.zeros(a.shape, dtype=bool)
    n = a.shape[0]
    if n < 3 or a.size == 0:
        return out
    flat = a.reshape(n, -1)
    with np.errstate(invalid="ignore"):
        wide = np.fmax.reduce(flat, axis=0) - np.fmin.reduce(flat, axis=0) > limit
    cols = np.flatnonzero(wide)
    # the wide series a few at a time: _spikes_of holds ~60 bytes per value (float64 and int64
    # temporaries), 15 times the float32 block, when a deforming area makes most series wide
    step = max(1, SPIKE_CHUNK // n)
    for i in range(0, cols.size, step):
        part = cols[i : i + step]
        out.reshape(n, -1)[:, part] = _spikes_of(flat[:, part].astype("float64"), limit)
    return out


# values of the wide series given to _spikes_of at once (about 120 MB of its temporaries)
SPIKE_CHUNK = 2**21


def _spikes_of(a: np.ndarray, limit: float) -> np.ndarray:
    """:func:`spike_mask` of series `a` (dates, series)."""
    n = a.shape[0]
    valid = np.isfinite(a)
    t = np.arange(n)[:, None]
    prev_i = np.maximum.accumulate(np.where(valid, t, -1), axis=0)  # last valid index <= t
    next_i = np.flip(np.minimum.accumulate(np.flip(np.where(valid, t, n), 0), axis=0), 0)
    before = np.vstack([np.full((1, a.shape[1]), -1), prev_i[:-1]])
    after = np.vstack([next_i[1:], np.full((1, a.shape[1]), n)])
    has = valid & (before >= 0) & (after < n)
    vb = np.take_along_axis(a, np.clip(before, 0, n - 1), axis=0)
    va = np.take_along_axis(a, np.clip(after, 0, n - 1), axis=0)
    with np.errstate(invalid="ignore"):
        up = (a - vb > limit) & (a - va > limit)
        down = (vb - a > limit) & (va - a > limit)
        back = np.abs(va - vb) < limit / 2
    return has & (up | down) & back & (np.abs(a) <= SPIKE_MAX_MM)


def mask_spikes(
    arr: np.ndarray, source: str, first_band: int = 1, limit: float = SPIKE_MM, key: tuple | None = ()
) -> np.ndarray:
    """Set the spikes of `arr` (dates, rows, cols; mm) to NaN in place (:func:`spike_mask`), noted
    for the warning of :func:`take_warnings`; `first_band` is the band of arr[0]. `key` names what
    was read (a block read twice is counted once); None: a sample, warned about but not counted.
    Returns `arr`."""
    if arr.shape[0] < 3:
        return arr
    hit = spike_mask(arr, limit)
    if hit.any():
        k = int(np.argmax(hit.reshape(-1)))
        band = first_band + int(np.unravel_index(k, hit.shape)[0])
        note_spikes(source, key, int(hit.sum()), float(arr.reshape(-1)[k]), band)
        arr[hit] = np.nan
    return arr


def note_spikes(source: str, key: tuple | None, n: int, example: float, band: int) -> None:
    """Note `n` spikes found in `source` by the read `key` (see :func:`mask_spikes`) for the
    warning of :func:`take_warnings`; `example` is one of them, in 1-based `band`."""
    with _lock:
        mine = _spikes.setdefault(threading.get_ident(), {})
        entry = mine.setdefault(source, [{}, example, band])
        if key is not None:
            entry[0][key or len(entry[0])] = int(n)


class DatedFrames:
    """Whole frames of the stack at `path`, one date at a time, cleaned as :func:`clean_block`
    cleans a read of every date at once: nodata, masks, sentinels and units, and the **spikes**
    (:func:`spike_mask`: a value more than SPIKE_MM away from the nearest valid values before and
    after it, which agree) found with the neighbouring dates. Readers that score one date at a
    time (evaluateforecast, the interval coverage) see the same values as the readers of windows
    of all dates, whatever the file's layout.

    Each date's neighbours come from a small cache of frames (the previous and next dates; from a
    pixel-interleaved file `max_bytes` of consecutive frames per read, from the date before);
    only the few pixels that differ from an immediate neighbour by about SPIKE_MM, or whose
    neighbour is NaN, are followed further, through reads of the window that holds them. The
    values each :meth:`frame` turned into NaN are counted once per date (:func:`masked_count`)."""

    def __init__(self, path: str, max_bytes: int, limit: float = SPIKE_MM):
        import rasterio
        from rasterio.enums import Interleaving

        # no direct I/O (core.budget.open_for_reads): the reads around candidate spikes would
        # fetch the whole pixel-interleaved file again each time instead of the cached blocks
        self.src = rasterio.open(path)
        self.n = band_count(self.src)
        self.limit = float(limit)
        self.dated = is_dated(self.src)
        frame_bytes = max(1, 4 * self.src.width * self.src.height)
        pixel = self.n > 1 and self.src.interleaving == Interleaving.pixel
        self.chunk = max(1, int(max_bytes // frame_bytes)) if pixel else 1
        self.cache: dict[int, tuple[np.ndarray, int]] = {}  # band -> (cleaned frame, valid before cleaning)

    def __enter__(self) -> DatedFrames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.cache.clear()
        self.src.close()

    def _read(self, bands: Sequence[int], window=None) -> tuple[np.ndarray, np.ndarray]:
        """(cleaned values, values not declared nodata per band) of 0-based `bands`, no spikes
        masked, nothing counted."""
        idx = [b + 1 for b in bands]
        arr = self.src.read(idx, window=window, out_dtype="float32")
        nodata = self.src.nodata
        if nodata is not None and not np.isnan(nodata):
            arr[arr == np.float32(nodata)] = np.nan
        before = np.isfinite(arr).reshape(len(idx), -1).sum(axis=1)
        return clean_block(arr, self.src, idx, window=window, count=False, spikes=False), before

    def _cached(self, b: int) -> tuple[np.ndarray, int]:
        if b not in self.cache:
            # from a pixel-interleaved file, the group starts at the date before: the neighbour
            # the first frame's spike test asks for next is not a second decode of the file
            b0 = max(0, b - 1) if self.chunk > 2 else b
            group = list(range(b0, min(self.n, b0 + self.chunk)))
            arr, before = self._read(group)
            for k, g in enumerate(group):
                self.cache[g] = (arr[k], int(before[k]))
            keep = set(range(b0 - 2, b0 + self.chunk + 1))  # t - 1 stays while t + 1 is read
            for old in [k for k in self.cache if k not in keep]:
                del self.cache[old]
        return self.cache[b]

    def frame(self, b: int) -> np.ndarray:
        """The cleaned frame of 0-based band `b` (a new float32 array), its spikes NaN."""
        a, before = self._cached(b)
        a = a.copy()
        if self.dated and 0 < b < self.n - 1:
            flat = self._spikes(b, a)
            if flat.size:
                k = int(flat[0])
                note_spikes(
                    self.src.name, (self.src.name, (b + 1,), None), flat.size, float(a.flat[k]), b + 1
                )
                a.flat[flat] = np.nan
        count_masked((self.src.name, (b + 1,), None), before - int(np.isfinite(a).sum()))
        return a

    def _spikes(self, t: int, a: np.ndarray) -> np.ndarray:
        """Flat indexes of the spikes of frame `a` (band `t`), as spike_mask over all dates."""
        lim = self.limit
        with np.errstate(invalid="ignore"):
            cand = np.isfinite(a) & (np.abs(a) <= SPIKE_MAX_MM)
            for s in (t - 1, t + 1):  # float32 pre-filter; the exact test below is in float64
                cand &= ~(np.abs(a - self._cached(s)[0]) < lim - 1.0)
        idx = np.flatnonzero(cand)
        if not idx.size:
            return idx
        av = a.reshape(-1)[idx].astype("float64")
        vb = self._nearest(t, -1, idx)
        keep = np.abs(av - vb) > lim  # NaN (no valid date before): never a spike
        idx, av, vb = idx[keep], av[keep], vb[keep]
        va = self._nearest(t, 1, idx)
        up = (av - vb > lim) & (av - va > lim)
        down = (vb - av > lim) & (va - av > lim)
        return idx[(up | down) & (np.abs(va - vb) < lim / 2)]

    def _nearest(self, t: int, step: int, idx: np.ndarray) -> np.ndarray:
        """Float64 values at flat pixels `idx` of the nearest date before (`step` -1) or after (1)
        band `t` where each is valid; NaN where none is."""
        out = np.full(idx.size, np.nan)
        todo = np.arange(idx.size)
        s = t + step
        while todo.size and 0 <= s < self.n:
            vals = self._values(s, idx[todo])
            hit = np.isfinite(vals)
            out[todo[hit]] = vals[hit]
            todo = todo[~hit]
            s += step
        return out

    def _values(self, s: int, flat: np.ndarray) -> np.ndarray:
        """Cleaned values of band `s` at flat pixels `flat`: from the cache, else a read of the
        window around them."""
        from rasterio.windows import Window

        if s in self.cache:
            return self.cache[s][0].reshape(-1)[flat].astype("float64")
        rows, cols = np.divmod(flat, self.src.width)
        r0, c0 = int(rows.min()), int(cols.min())
        win = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
        arr = self._read([s], window=win)[0][0]
        return arr[rows - r0, cols - c0].astype("float64")


def iter_dated_frames(path: str, bands: Sequence[int], max_bytes: int):
    """Yield (band, frame) for the 0-based `bands` of the stack at `path`, each frame cleaned with
    its spikes masked as in a read of all dates (:class:`DatedFrames`)."""
    with DatedFrames(path, max_bytes) as frames:
        for b in bands:
            yield b, frames.frame(b)


def band_unit(src, index: int) -> str:
    """The unit of band `index` (1-based): the band's unit, else the dataset tag UNITS, else ''."""
    u = src.units[index - 1] if src.units else ""
    return u or src.tags().get("UNITS", "")


def clean_series(values: np.ndarray, source: str) -> np.ndarray:
    """Float64 copy of table values (points, benchmarks) with sentinels as NaN, counted."""
    out = np.array(values, dtype="float64", copy=True)
    before = int(np.isfinite(out).sum())
    mask_sentinels(out, source)
    count_masked((source, "series", out.shape), before - int(np.isfinite(out).sum()))
    return out


def check_bands_limit(count: int, what: str = "OUTPUT") -> None:
    """A GeoTIFF holds at most 65535 bands: refuse more before anything is computed."""
    if count > 65535:
        raise InputError(
            f"{what}: {count} bands are more than a GeoTIFF can hold (65535); choose fewer dates "
            "(a larger interval, fewer STEPS) or split the period."
        )


def check_not_interferograms(labels: Sequence[str | None], what: str) -> None:
    """Refuse band labels that are date pairs (``20150302_20150314``): interferograms, not the
    cumulative displacement at one date each."""
    import re

    pair = re.compile(r"(?<!\d)(\d{8})\D{1,3}(\d{8})(?!\d)")
    pairs = [lab for lab in labels if lab and pair.search(lab)]
    if pairs:
        raise InputError(
            f"{what}: band label(s) such as {pairs[0]!r} are date pairs: this is a stack of "
            "interferograms (one displacement between two dates each), not a cumulative "
            "displacement stack (one date per band). Invert it to a time series first (e.g. "
            "LiCSBAS, MintPy or SBAS) and use its cumulative displacement."
        )


def warp_nodata(src, band: int = 1):
    """The nodata value to give a WarpedVRT reading `src`: the declared one, else an undeclared
    sentinel found in a decimated read of `band` (so that bilinear resampling never blends a
    sentinel into valid pixels), else NaN for float rasters and None for integer ones."""
    if src.nodata is not None:
        return src.nodata
    scale = max(1.0, max(src.height, src.width) / 512)
    shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
    arr = src.read(band, out_shape=shape, out_dtype="float32")
    hit = sentinel_mask(arr)
    if hit.any():
        vals, counts = np.unique(arr[hit], return_counts=True)
        v = float(vals[int(np.argmax(counts))])
        record(src.name, np.array([v], dtype="float32"))
        return v
    return np.nan if np.dtype(src.dtypes[band - 1]).kind == "f" else None


def crs_of(src, what: str = "LAYERS"):
    """The CRS of rasterio dataset `src`: its own; else WGS 84 when its axes are declared longitude
    and latitude (a netCDF grid without a grid mapping, e.g. GMT's lon/lat grids, which GDAL leaves
    without a CRS); else an InputError naming the file (and, for a grid in radar coordinates as
    GMTSAR's sbas writes it, GMTSAR's geocoding step)."""
    from rasterio.crs import CRS

    if src.crs is not None:
        return src.crs
    tags = {k.lower(): str(v).lower() for k, v in src.tags().items()}
    units = {k.split("#")[0]: v for k, v in tags.items() if k.endswith("#units")}
    if "degrees_east" in units.values() and "degrees_north" in units.values():
        return CRS.from_epsg(4326)
    name = os.path.basename(src.name)
    if src.driver == "netCDF" and {"x#long_name", "y#long_name"} <= set(tags):
        raise InputError(
            f"{what}: {name!r} is a grid in radar coordinates (range, azimuth: GMTSAR's sbas output), "
            "with no map coordinates. Geocode each grid first (GMTSAR: proj_ra2ll.csh trans.dat "
            f"{name} {os.path.splitext(name)[0]}_ll.grd) and stack the *_ll.grd files."
        )
    raise InputError(f"{what}: {name!r} has no CRS; assign one before stacking.")


def warp_source(src, band: int = 1, rows: int = 256):
    """(dataset, band) to give a WarpedVRT instead of (`src`, `band`): `src` itself when GDAL can
    be told its nodata (declared, or at most one undeclared sentinel, no GDAL mask or alpha);
    otherwise a temporary single-band float32 copy with every sentinel and masked pixel as NaN, so
    that no second sentinel is blended into valid pixels by the resampling. The band is scanned
    whole, `rows` rows at a time; the copy (a file, not memory) is removed when it is closed."""
    out = warp_source_bands(src, [band], rows)
    return (src, band) if out is src else (out, 1)


def warp_source_bands(src, bands: Sequence[int], rows: int = 256):
    """The dataset to give a WarpedVRT reading `bands` (1-based) of `src`: `src` itself when GDAL
    can be told its nodata (see :func:`warp_source`), else a temporary float32 copy of those bands,
    in that order (band k of the copy is bands[k - 1]), every sentinel and masked pixel NaN. Read
    `rows` rows at a time (fewer when the bands are many: at most 32 MB a read)."""
    import tempfile
    import weakref

    import rasterio
    from rasterio.windows import Window

    idx = [int(b) for b in bands]
    rows = max(1, min(rows, 2**25 // max(1, src.width * len(idx) * 4)))
    wins = [Window(0, r0, src.width, min(rows, src.height - r0)) for r0 in range(0, src.height, rows)]
    found: set[float] = set()
    for win in wins:
        arr = src.read(idx, window=win, out_dtype="float32")
        found.update(np.unique(arr[sentinel_mask(arr)]).tolist())
    masked = has_gdal_mask(src) or band_count(src) < src.count
    if len(found) <= 1 and not (masked and src.nodata is None):
        return src
    folder = tempfile.mkdtemp(prefix="deformation_forecast_warp_")
    path = os.path.join(folder, "clean.tif")
    prof = dict(driver="GTiff", width=src.width, height=src.height, count=len(idx), dtype="float32")
    prof.update(crs=crs_of(src), transform=src.transform, nodata=np.nan, tiled=True, interleave="band")
    with rasterio.open(path, "w", **prof) as dst:
        for win in wins:
            arr = src.read(idx, window=win, out_dtype="float32")
            dst.write(clean_block(arr, src, idx, window=win, length=False), window=win)
    out = rasterio.open(path)
    weakref.finalize(out, lambda: __import__("shutil").rmtree(folder, ignore_errors=True))
    return out


def to_mm(arr: np.ndarray, src, indexes: Sequence[int] | int) -> np.ndarray:
    """Multiply the bands of `arr` read from dated raster `src` whose unit is m or cm into mm
    (in place); undated rasters (distances, angles) are left alone."""
    idx = [indexes] if isinstance(indexes, int) else list(indexes)
    units = src.units or ("",) * src.count
    default = None
    labels = []
    for i in idx:
        u = units[i - 1]
        if not u:
            default = src.tags().get("UNITS", "") if default is None else default
            u = default
        labels.append(u)
    scales = np.asarray([unit_scale(u) for u in labels], dtype="float32")
    if np.all(scales == 1.0) or not is_dated(src):
        return arr  # millimetres, or not a displacement stack
    arr *= scales[0] if arr.ndim == 2 else scales[:, None, None]
    return arr


MAX_INCIDENCE = 80.0  # 1 / cos(80 deg) = 5.8: beyond, dv = dLOS / cos(theta) amplifies noise wildly
MIN_INCIDENCE = 1.6  # below: radians (pi / 2 = 1.571), not a SAR incidence angle in degrees


def check_angle_range(lo: float, hi: float, what: str) -> None:
    """Incidence angles (degrees) already inside (0, 90): refuse those that are plausibly radians
    (all below 1.6) or so close to grazing (> 80) that 1 / cos(theta) explodes."""
    if hi < MIN_INCIDENCE:
        raise InputError(
            f"{what}: incidence angle(s) up to {hi:g} degrees are implausibly small for a radar "
            "(Sentinel-1: 29-46); they look like radians: convert them to degrees (x 57.2958)."
        )
    if hi > MAX_INCIDENCE:
        raise InputError(
            f"{what}: incidence angle(s) up to {hi:g} degrees (lowest {lo:g}); beyond "
            f"{MAX_INCIDENCE:g} degrees 1 / cos(theta) exceeds {1 / np.cos(np.deg2rad(MAX_INCIDENCE)):.1f} "
            "and the vertical displacement is noise. Give the incidence angle from the vertical "
            "(not the elevation angle 90 - theta) and set grazing pixels to nodata."
        )


def is_dated(src) -> bool:
    """True when the raster's bands carry dates (descriptions, DATE tags or a DATES dataset tag):
    a displacement stack, whose length unit is converted to mm; other rasters keep their values."""
    from .dates import parse_date

    if src.tags().get("DATES"):
        return True
    for b in range(1, src.count + 1):
        if parse_date(src.descriptions[b - 1] or "") or parse_date(src.tags(b).get("DATE", "")):
            return True
    return False


MAX_MODEL_BYTES = 4 * 2**30  # what a model file may expand to (ours are tens of MB)
MAX_ZIP_RATIO = 200  # deflate reaches ~3-10x on float weights; 1000x is a zip bomb


def check_zip_sizes(z, what: str, max_total: int = MAX_MODEL_BYTES, max_ratio: float = MAX_ZIP_RATIO) -> None:
    """Refuse an archive (a zipfile.ZipFile) that would expand far beyond its size before anything
    is extracted: more than `max_total` bytes in all, or a large member compressed more than
    `max_ratio` times (a zip bomb). `what` names the file in the message."""
    total = 0
    for info in z.infolist():
        total += info.file_size
        big = info.file_size > 16 * 2**20
        if big and info.file_size > max_ratio * max(info.compress_size, 1):
            raise InputError(
                f"{what}: member {info.filename!r} expands from {info.compress_size:,} to "
                f"{info.file_size:,} bytes ({info.file_size / max(info.compress_size, 1):,.0f}x): not a "
                "model written by this plugin (a zip bomb?); nothing was extracted."
            )
    if total > max_total:
        raise InputError(
            f"{what}: the archive would expand to {total / 2**30:,.1f} GiB (the limit is "
            f"{max_total / 2**30:,.0f} GiB): not a model written by this plugin; nothing was extracted."
        )


METRES_MAX_ABS = 1.0  # mm: a whole stack within +-1 mm is far more likely metres than mm


def warn_if_metres(path: str, values: np.ndarray, units: str, what: str = "INPUT") -> bool:
    """Warn (through the package's logger, shown in the algorithm's log) when every finite value
    of `values` (a sample of the stack, in mm) lies within +-METRES_MAX_ABS although the file's
    unit is mm or undeclared: metres that nothing declared. Returns whether it warned."""
    import logging

    finite = np.abs(values[np.isfinite(values)])
    if unit_scale(units) != 1.0 or not finite.size:
        return False
    top = float(finite.max())
    if not 0 < top <= METRES_MAX_ABS:
        return False
    name = os.path.basename(path)
    logging.getLogger("deformation_forecast").warning(
        f"{what}: every value of {name!r} lies within +-{top:.3g} mm: if the stack is in metres, declare "
        f"it: set its UNITS metadata (or the band unit) to m, e.g. gdal_edit -mo UNITS=m {name}, and run "
        "again (metres are converted to mm). Kept as mm."
    )
    return True


FILL_MIN_ABS = 500.0  # mm: a fill value this large, constant in time over many pixels, is no motion


def check_repeated_fill(path: str, arrs: Sequence[np.ndarray], what: str = "INPUT") -> None:
    """Refuse a stack where many pixels hold one exact value of at least FILL_MIN_ABS in magnitude
    at the first, middle and last dates (`arrs`: those dates' cleaned values over the same sampled
    pixels, e.g. the blocks core.stack.check_values samples): a nodata value that is neither
    declared nor one of :data:`SENTINELS` (e.g. -10000, -999)."""
    first = arrs[0]
    same = np.isfinite(first) & (np.abs(first) >= FILL_MIN_ABS)
    for a in arrs[1:]:
        same &= a == first
    if not same.any():
        return
    vals, counts = np.unique(first[same], return_counts=True)
    k = int(np.argmax(counts))
    valid = int(np.isfinite(first).sum())
    if counts[k] >= max(3, 0.005 * valid):
        v = fmt_value(float(vals[k]))
        raise InputError(
            f"{what}: {os.path.basename(path)!r} holds exactly {v} at {int(counts[k])} of {valid} sampled "
            f"pixels at every sampled date: an undeclared nodata value, not a displacement. Declare it "
            f"as the raster's nodata value (Raster > Conversion > Translate, or gdal_edit -a_nodata {v}) "
            "and run again."
        )
