"""Deformation profiles along lines (paper Fig. 11): densify, sample a stack, tabulate.

Lines come in as plain coordinate arrays already in the stack's CRS (the Processing adapter
reprojects them). Sampling reads only small rasterio windows around runs of consecutive samples,
never the whole stack, so a few lines through a 3000 x 3000 x 156 stack touch a few MB of pixels.

Pixel convention: a raster's inverse affine transform maps a map coordinate to fractional pixel
coordinates (col, row) in which pixel (r, c) covers [c, c + 1) x [r, r + 1); its value belongs to its
centre (c + 0.5, r + 0.5). Nearest takes the pixel that contains the point; bilinear interpolates
between the four surrounding centres (edge pixels are replicated in the outer half pixel). A sample
whose interpolation touches a NaN pixel is NaN; a sample outside the raster is NaN and counted.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from . import validity
from .dates import format_date
from .errors import InputError
from .run import QUIET, Run
from .stack import atomic_path, file_block

INTERPOLATIONS = ("nearest", "bilinear")

# A line is a sequence of parts, each an (n, 2) array of x, y in the stack's CRS.
Line = Sequence[np.ndarray]


@dataclass
class Profile:
    """Samples of one line: positions, distance along the line and values per date."""

    name: str
    x: np.ndarray
    y: np.ndarray
    distance: np.ndarray
    part: np.ndarray
    values: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # (dates, samples)
    outside: int = 0  # samples that fall outside the raster (NaN)

    @property
    def size(self) -> int:
        return int(self.x.size)


def _clean_part(part: np.ndarray) -> np.ndarray:
    xy = np.asarray(part, dtype="float64").reshape(-1, 2)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if len(xy) > 1:  # drop repeated vertices: zero-length segments carry no distance
        keep = np.ones(len(xy), dtype=bool)
        keep[1:] = np.any(np.diff(xy, axis=0) != 0, axis=1)
        xy = xy[keep]
    return xy


def densify(
    parts: Line, spacing: float, scale: tuple[float, float] = (1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points every `spacing` along each part, plus each part's end point.

    Returns x, y, distance, part. Distance runs along the line across its vertices, from the start
    of the first part; for a multipart line it continues from one part to the next without counting
    the gap between them. Lengths are map units, or metres on the ground with `scale` = metres per
    map unit along x and y (core.metric.ground_scale: a geographic stack).
    """
    kx, ky = (float(v) for v in scale)
    if not spacing > 0 or not math.isfinite(spacing):
        raise InputError(f"SPACING must be a positive distance, not {spacing}.")
    xs, ys, ds, ps = [], [], [], []
    offset = 0.0
    for k, raw in enumerate(parts):
        xy = _clean_part(raw)
        if len(xy) == 0:
            continue
        seg = np.hypot(*(np.diff(xy, axis=0) * (kx, ky)).T) if len(xy) > 1 else np.zeros(0)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        length = float(cum[-1])
        if length == 0.0:
            s = np.zeros(1)
        else:
            n = int(math.floor(length / spacing + 1e-9))
            if n + 1 > 5_000_000:
                raise InputError(
                    f"SPACING {spacing:g} gives {n + 1} samples on a line {length:g} map units long; "
                    "choose a larger spacing."
                )
            s = np.arange(n + 1, dtype="float64") * spacing
            if length - s[-1] > 1e-9 * max(length, 1.0):
                s = np.append(s, length)
        xs.append(np.interp(s, cum, xy[:, 0]) if length else np.full(1, xy[0, 0]))
        ys.append(np.interp(s, cum, xy[:, 1]) if length else np.full(1, xy[0, 1]))
        ds.append(s + offset)
        ps.append(np.full(s.size, k, dtype="int32"))
        offset += length
    if not xs:
        empty = np.zeros(0)
        return empty, empty, empty, np.zeros(0, dtype="int32")
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ds), np.concatenate(ps)


def pixel_coords(transform, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, col) of map coordinates; pixel (r, c) covers [r, r+1) x [c, c+1)."""
    inv = ~transform
    cols = inv.a * x + inv.b * y + inv.c
    rows = inv.d * x + inv.e * y + inv.f
    return np.asarray(rows, dtype="float64"), np.asarray(cols, dtype="float64")


def inside(rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    return (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)


def _support(rows: np.ndarray, cols: np.ndarray, method: str, height: int, width: int):
    """Integer row/col indexes (clipped to the raster) and weights each sample reads."""
    if method == "nearest":
        r = np.clip(np.floor(rows).astype("int64"), 0, height - 1)
        c = np.clip(np.floor(cols).astype("int64"), 0, width - 1)
        return [(r, c, np.ones_like(rows))]
    if method != "bilinear":
        raise InputError(f"INTERPOLATION must be one of {INTERPOLATIONS}, not {method!r}.")
    rr, cc = rows - 0.5, cols - 0.5
    r0, c0 = np.floor(rr), np.floor(cc)
    fr, fc = rr - r0, cc - c0
    r0, c0 = r0.astype("int64"), c0.astype("int64")
    ra, rb = np.clip(r0, 0, height - 1), np.clip(r0 + 1, 0, height - 1)
    ca, cb = np.clip(c0, 0, width - 1), np.clip(c0 + 1, 0, width - 1)
    return [
        (ra, ca, (1 - fr) * (1 - fc)),
        (ra, cb, (1 - fr) * fc),
        (rb, ca, fr * (1 - fc)),
        (rb, cb, fr * fc),
    ]


def sample_array(arr: np.ndarray, rows: np.ndarray, cols: np.ndarray, method: str = "bilinear") -> np.ndarray:
    """Sample a (bands, height, width) array at fractional pixel coordinates -> (bands, n) float64.

    Outside the array: NaN. Bilinear: NaN as soon as a pixel with a positive weight is NaN.
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    bands, height, width = arr.shape
    rows, cols = np.asarray(rows, dtype="float64"), np.asarray(cols, dtype="float64")
    out = np.full((bands, rows.size), np.nan)
    ok = inside(rows, cols, height, width)
    if not ok.any():
        return out
    acc = np.zeros((bands, int(ok.sum())))
    bad = np.zeros_like(acc, dtype=bool)
    for r, c, w in _support(rows[ok], cols[ok], method, height, width):
        v = arr[:, r, c].astype("float64")
        used = w > 0
        nan = np.isnan(v)
        bad |= nan & used
        acc += np.where(used & ~nan, v * w, 0.0)
    acc[bad] = np.nan
    out[:, ok] = acc
    return out


def _runs(part: np.ndarray, n: int, per_run: int) -> list[tuple[int, int]]:
    """Split sample indexes [0, n) into consecutive runs of at most `per_run`, breaking at parts."""
    starts = [0] + [int(i) for i in np.flatnonzero(np.diff(part)) + 1]
    ends = starts[1:] + [n]
    runs = []
    for a, b in zip(starts, ends, strict=False):
        for s in range(a, b, per_run):
            runs.append((s, min(s + per_run, b)))
    return runs


def _to_nan(arr: np.ndarray, nodata: float | None) -> np.ndarray:
    if nodata is not None and not np.isnan(nodata):
        arr[arr == np.float32(nodata)] = np.nan
    return arr


@dataclass
class ReadStats:
    windows: int = 0
    pixels: int = 0  # pixels read, all bands counted

    @property
    def bytes(self) -> int:
        return self.pixels * 4


@dataclass(frozen=True)
class ProfileOptions:
    """What to sample: `spacing` in map units, or metres on the ground with `scale` (metres per map
    unit along x and y, core.metric: a geographic stack) (default: the pixel size); `bands` are
    0-based indexes (default all); `method` one of INTERPOLATIONS."""

    spacing: float | None = None
    bands: Sequence[int] | None = None
    method: str = "bilinear"
    scale: tuple[float, float] = (1.0, 1.0)


@dataclass(frozen=True)
class ReadTuning:
    """How to read (the benchmarks' knobs): windows span at most about `max_window` pixels each
    way; `threads` is GDAL_NUM_THREADS; `cache_budget` bytes of decoded tiles kept (default: the
    GDAL cache of the run's memory budget)."""

    max_window: int = 64
    threads: str | int = 1
    cache_budget: int | None = None


@dataclass
class _Grid:
    """What the sampling needs to know of the raster."""

    transform: Any
    height: int
    width: int
    count: int
    bounds: Any

    @classmethod
    def read(cls, path: str) -> _Grid:
        with rasterio.open(path) as src:
            return cls(src.transform, src.height, src.width, validity.band_count(src), src.bounds)

    def resolution(self, scale: tuple[float, float]) -> float:
        """A pixel's side on the ground (the shorter one)."""
        t = self.transform
        res = min(abs(t.a), abs(t.e)) if t.b == 0 == t.d else math.hypot(t.a, t.d)
        return res * min(float(v) for v in scale)


def extract_profiles(
    path: str,
    lines: Sequence[tuple[str, Line]],
    options: ProfileOptions = ProfileOptions(),
    run: Run = QUIET,
    tuning: ReadTuning = ReadTuning(),
    stats: ReadStats | None = None,
) -> list[Profile]:
    """Sample the stack at `path` along each named line (coordinates in the stack's CRS), as
    `options` says (ProfileOptions).

    Samples are read in runs whose window spans at most about ``tuning.max_window`` pixels each
    way. Every line is checked before anything is read: a line wholly outside the raster raises
    InputError; samples outside it are NaN and counted in ``Profile.outside``. `run` takes the
    progress (one step per line), the cancel button and the memory budget; `stats` counts the
    windows and pixels read.

    GDAL decodes whole tiles; those of the recent windows stay in its block cache so that
    neighbouring windows and lines do not decode them again, and the file is reopened (which
    empties the cache) before the tiles held would exceed ``tuning.cache_budget`` bytes, so memory
    stays flat however many lines there are; the cache budget defaults to the GDAL cache of the
    run's memory budget (core.budget), and the sampled values of all lines (float64, dates x
    samples) must fit in the budget too. ``tuning.threads`` is GDAL_NUM_THREADS (default 1: GDAL
    3.6, Debian 12's, fails to decode multi-threaded reads of band-interleaved stacks with many
    bands - "Bad value for ExtraSamples" - and qgis_process then crashed). With more threads GDAL
    may decode the tiles of one window in parallel.
    """
    if options.method not in INTERPOLATIONS:
        raise InputError(f"INTERPOLATION must be one of {INTERPOLATIONS}, not {options.method!r}.")
    if not lines:
        raise InputError("LINES: no line features given.")
    grid = _Grid.read(path)
    res = grid.resolution(options.scale)
    step = float(options.spacing) if options.spacing else res
    bands = options.bands
    idx = [b + 1 for b in bands] if bands is not None else list(range(1, grid.count + 1))
    if not idx:
        raise InputError("DATES: no date selected.")
    planned = _plan(grid, lines, step, len(idx), options.scale, run)
    cache_budget = tuning.cache_budget if tuning.cache_budget is not None else run.gdal_cache_bytes()
    sampler = _Sampler(path, idx, options.method, grid, cache_budget, stats)
    per_run = max(1, int(tuning.max_window * res / step))
    # GTIFF_DIRECT_IO: from an uncompressed GeoTIFF GDAL reads only the pixels of each small window
    # instead of whole tiles (ignored for compressed files): on 512 px pixel-interleaved tiles the
    # profiles of bench_layouts.py take 1.3 CPU s instead of 8.5 (issue 22)
    with rasterio.Env(
        GDAL_NUM_THREADS=str(tuning.threads),
        GDAL_CACHEMAX=int(max(cache_budget, 2**20)),
        GTIFF_DIRECT_IO="YES",
    ):
        sampler.open()
        try:
            for i, (prof, rows, cols, ok) in enumerate(planned):
                for a, b in _runs(prof.part, prof.size, per_run):
                    sampler.sample(prof, rows, cols, ok, slice(a, b))
                run.progress((i + 1) / len(planned))
                run.check_cancelled()
        finally:
            sampler.close()
    return [p[0] for p in planned]


def _plan(
    grid: _Grid, lines: Sequence[tuple[str, Line]], step: float, n_bands: int, scale, run: Run
) -> list[tuple[Profile, np.ndarray, np.ndarray, np.ndarray]]:
    """Densify and check every line before anything is read: (profile, rows, cols, inside)."""
    planned = []
    total = 0
    for name, parts in lines:
        x, y, dist, part = densify(parts, step, scale)
        if x.size == 0:
            raise InputError(f"LINES: line {name!r} has no vertices (empty geometry).")
        rows, cols = pixel_coords(grid.transform, x, y)
        ok = inside(rows, cols, grid.height, grid.width)
        if not ok.any():
            b = grid.bounds
            raise InputError(
                f"LINES: line {name!r} lies wholly outside the raster (raster extent "
                f"{b.left:.6g}, {b.bottom:.6g} : {b.right:.6g}, {b.top:.6g}; line "
                f"extent {x.min():.6g}, {y.min():.6g} : {x.max():.6g}, {y.max():.6g} in the raster's "
                "CRS). Check that the line layer and the raster cover the same area and that both "
                "CRS are set correctly."
            )
        total += x.size
        need = total * n_bands * 8
        if need > run.working_bytes(2):
            raise InputError(
                f"LINES: sampling every {step:g} map units gives {total:,} samples x {n_bands} dates "
                f"({need / 2**20:,.0f} MB) so far, more than the memory budget allows; choose a larger "
                "SPACING, fewer DATES or fewer lines (or raise the memory budget)."
            )
        prof = Profile(name, x, y, dist, part, np.full((n_bands, x.size), np.nan), int((~ok).sum()))
        planned.append((prof, rows, cols, ok))
    return planned


class _Sampler:
    """Reads the window of each run of samples, reopening the file (which drops its decoded tiles
    from GDAL's block cache) before the tiles held would exceed `cache_budget` bytes."""

    def __init__(self, path: str, idx: list[int], method: str, grid: _Grid, cache_budget: int, stats):
        self.path, self.idx, self.method, self.grid = path, idx, method, grid
        self.cache_budget, self.stats = cache_budget, stats
        self.src: Any = None
        self.cached: set[tuple[int, int]] = set()

    def open(self) -> None:
        self.src = rasterio.open(self.path)
        bh, bw = file_block(self.src)
        self.block = (bh, bw)
        self.tile_bytes = bh * bw * 4 * len(self.idx)

    def close(self) -> None:
        if self.src is not None:
            self.src.close()

    def _tiles(self, r_lo: int, r_hi: int, c_lo: int, c_hi: int) -> set[tuple[int, int]]:
        bh, bw = self.block
        return {
            (tr, tc)
            for tr in range(r_lo // bh, (r_hi - 1) // bh + 1)
            for tc in range(c_lo // bw, (c_hi - 1) // bw + 1)
        }

    def sample(self, prof: Profile, rows: np.ndarray, cols: np.ndarray, ok: np.ndarray, sel: slice) -> None:
        """Fill ``prof.values`` for the samples `sel` (one run) that lie inside the raster."""
        okr = ok[sel]
        if not okr.any():
            return
        r_, c_ = rows[sel][okr], cols[sel][okr]
        sup = _support(r_, c_, self.method, self.grid.height, self.grid.width)
        r_lo = min(int(s[0].min()) for s in sup)
        r_hi = max(int(s[0].max()) for s in sup) + 1
        c_lo = min(int(s[1].min()) for s in sup)
        c_hi = max(int(s[1].max()) for s in sup) + 1
        tiles = self._tiles(r_lo, r_hi, c_lo, c_hi)
        if len(self.cached | tiles) * self.tile_bytes > self.cache_budget and self.cached - tiles:
            # closing the dataset drops its decoded tiles from GDAL's block cache
            self.src.close()
            self.src = rasterio.open(self.path)
            self.cached = set()
        self.cached |= tiles
        win = Window(c_lo, r_lo, c_hi - c_lo, r_hi - r_lo)
        block = self.src.read(self.idx, window=win, out_dtype="float32")
        block = validity.clean_block(block, self.src, self.idx, window=win)  # nodata, masks, units
        if self.stats is not None:
            self.stats.windows += 1
            self.stats.pixels += block.size
        a = sel.start or 0
        prof.values[:, np.flatnonzero(okr) + a] = sample_array(block, r_ - r_lo, c_ - c_lo, self.method)


def long_rows(profiles: Sequence[Profile], dates: Sequence[dt.date]):
    """(profile, part, distance, x, y, date, value-or-None) rows, profile by profile, date by date."""
    for p in profiles:
        for k, d in enumerate(dates):
            label = format_date(d)
            for j in range(p.size):
                v = p.values[k, j]
                yield (
                    p.name,
                    int(p.part[j]),
                    float(p.distance[j]),
                    float(p.x[j]),
                    float(p.y[j]),
                    label,
                    None if np.isnan(v) else float(v),
                )


def write_csv(path: str, profiles: Sequence[Profile], dates: Sequence[dt.date]) -> str:
    """Long-form CSV (profile, part, distance, x, y, date, value); NaN is an empty cell."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["profile", "part", "distance", "x", "y", "date", "value"])
        for row in long_rows(profiles, dates):
            name, part, d, x, y, label, v = row
            w.writerow(
                [name, part, f"{d:.6f}", f"{x:.6f}", f"{y:.6f}", label, "" if v is None else f"{v:.6g}"]
            )
    return path


def read_csv(path: str) -> tuple[list[Profile], list[dt.date]]:
    """Read back a long-form CSV written by `write_csv` (for the plot dock and tests)."""
    from .dates import parse_date

    table: dict[str, dict[tuple[int, float], dict[dt.date, float]]] = {}
    xy: dict[tuple[str, int, float], tuple[float, float]] = {}
    dates: set[dt.date] = set()
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            d = parse_date(row["date"])
            if d is None:
                raise InputError(f"{path}: bad date {row['date']!r}")
            dates.add(d)
            key = (int(row["part"]), float(row["distance"]))
            table.setdefault(row["profile"], {}).setdefault(key, {})[d] = (
                float(row["value"]) if row["value"] != "" else np.nan
            )
            xy[(row["profile"], *key)] = (float(row["x"]), float(row["y"]))
    order = sorted(dates)
    return [
        profile_from_table(name, rows, order, [xy[(name, *k)] for k in sorted(rows)])
        for name, rows in table.items()
    ], order


def profile_from_table(name, rows: dict, dates: Sequence[dt.date], xy=None) -> Profile:
    keys = sorted(rows)
    values = np.array([[rows[k].get(d, np.nan) for k in keys] for d in dates], dtype="float64")
    pts = np.asarray(xy if xy is not None else np.full((len(keys), 2), np.nan), dtype="float64")
    return Profile(
        name,
        pts[:, 0],
        pts[:, 1],
        np.array([k[1] for k in keys], dtype="float64"),
        np.array([k[0] for k in keys], dtype="int32"),
        values.reshape(len(dates), len(keys)),
    )
