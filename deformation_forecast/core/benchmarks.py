"""Leveling benchmarks vs InSAR (paper §V-A-1, Fig. 15a).

A benchmark table gives, per benchmark, its position and its cumulative vertical displacement (mm)
at each survey date, in one of two forms:

- wide: ``id, x, y, D20170903, D20171003, ...`` (one column per survey date; ``DYYYYMMDD``,
  ``YYYYMMDD``, ``d_YYYYMMDD`` as for the stack tools);
- long: ``id, x, y, date, value`` (one row per benchmark and survey).

Coordinates come from ``x``/``y``, ``lon``/``lat`` (also ``longitude``/``latitude``) or
``easting``/``northing`` columns, or from a point layer's geometry. The InSAR value at a
benchmark is the mean of the pixels whose centres fall within RADIUS of it (20 m in the paper); when
no centre does, the pixel under the benchmark is used instead, and the benchmark is flagged.
Benchmarks outside the raster or on NaN pixels are reported and skipped, never averaged as zeros.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import validity
from .crossorbit import los_to_vertical, nearest_pairs
from .dates import date_fields, parse_date
from .errors import InputError
from .los import check_incidence
from .run import QUIET, Run
from .stack import StackInfo

COORD_PAIRS = [
    ("x", "y", False),
    ("easting", "northing", False),
    ("east", "north", False),
    ("xcoord", "ycoord", False),
    ("x_coord", "y_coord", False),
    ("point_x", "point_y", False),
    ("lon", "lat", True),
    ("long", "lat", True),
    ("lng", "lat", True),
    ("longitude", "latitude", True),
]
ID_NAMES = ("id", "name", "benchmark", "bm", "point", "point_id", "station", "code", "fid")
DATE_NAMES = ("date", "survey_date", "survey", "time", "epoch")
VALUE_NAMES = (
    "value",
    "vertical",
    "dv",
    "displacement",
    "deformation",
    "leveling",
    "levelling",
    "subsidence",
    "mm",
    "dz",
    "height_change",
)
_MISSING = {"", "na", "nan", "null", "none", "-", "n/a"}


@dataclass
class Benchmarks:
    """Benchmarks with their vertical displacement per survey date (NaN = not surveyed)."""

    ids: list[str]
    x: np.ndarray
    y: np.ndarray
    dates: list[dt.date]
    values: np.ndarray  # (benchmarks, dates) mm
    coord_columns: tuple[str, str] | None = None
    geographic: bool = False  # the coordinates came from lon/lat columns
    form: str = "wide"


# ---------------------------------------------------------------- reading


def read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a delimited text file (delimiter sniffed among , ; tab and space)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except OSError as e:
        raise InputError(f"Cannot read the benchmark file {path!r}: {e}") from e
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(f"The benchmark file {os.path.basename(path)!r} is empty.")
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t ")
        delim = dialect.delimiter
    except csv.Error:
        delim = ","
    rows = list(csv.reader(lines, delimiter=delim, skipinitialspace=True))
    header = [h.strip() for h in rows[0]]
    return header, [[c.strip() for c in r] for r in rows[1:]]


def _find(header: Sequence[str], names: Sequence[str]) -> int | None:
    low = [h.strip().lower() for h in header]
    for n in names:
        if n in low:
            return low.index(n)
    return None


def find_coordinate_columns(header: Sequence[str]) -> tuple[int, int, bool] | None:
    """(x index, y index, geographic) of the first known coordinate column pair, or None."""
    low = [h.strip().lower() for h in header]
    for xn, yn, geo in COORD_PAIRS:
        if xn in low and yn in low:
            return low.index(xn), low.index(yn), geo
    return None


def _number(text: str, where: str) -> float:
    t = (text or "").strip()
    if t.lower() in _MISSING:
        return float("nan")
    try:
        return float(t.replace(",", ".")) if t.count(",") == 1 and "." not in t else float(t)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number.") from None


@dataclass(frozen=True)
class _Table:
    """A benchmark table being read: its header, where coordinates and ids come from, its name."""

    header: list[str]
    xy: Sequence[tuple[float, float]] | None
    coords: tuple[int, int, bool] | None
    id_col: int | None
    source: str

    def where(self, r: int, col: int) -> str:
        return f"{self.source}, row {r + 2}, column {self.header[col]!r}"

    def coord(self, r: int, row) -> tuple[float, float]:
        if self.xy is not None:
            return float(self.xy[r][0]), float(self.xy[r][1])
        assert self.coords is not None
        xi, yi, _ = self.coords
        return _number(str(row[xi]), self.where(r, xi)), _number(str(row[yi]), self.where(r, yi))

    def ident(self, r: int, row) -> str:
        if self.id_col is not None and self.id_col < len(row) and str(row[self.id_col]).strip():
            return str(row[self.id_col]).strip()
        return str(r + 1)


# (ids, x, y, dates, values (benchmarks, dates)) of a table in one form
_Parsed = tuple[list[str], list[float], list[float], list[dt.date], np.ndarray]


def _blank(row) -> bool:
    return not any(str(c).strip() for c in row)


def _wide(t: _Table, rows: Sequence[Sequence], wide: list[tuple[str, dt.date]]) -> _Parsed:
    """One column per survey date."""
    cols = sorted(wide, key=lambda p: p[1])
    idx = [t.header.index(c) for c, _ in cols]
    dates = [d for _, d in cols]
    if len(set(dates)) != len(dates):
        raise InputError(f"{t.source}: two columns carry the same survey date.")
    ids, xs, ys, vals = [], [], [], []
    for r, row in enumerate(rows):
        if _blank(row):
            continue
        if len(row) < len(t.header):
            row = list(row) + [""] * (len(t.header) - len(row))
        x, y = t.coord(r, row)
        ids.append(t.ident(r, row))
        xs.append(x)
        ys.append(y)
        vals.append([_number(str(row[i]) if row[i] is not None else "", t.where(r, i)) for i in idx])
    return ids, xs, ys, dates, np.array(vals, dtype="float64").reshape(len(ids), len(dates))


def _long(t: _Table, rows: Sequence[Sequence]) -> _Parsed:
    """One row per benchmark and survey (``id, x, y, date, value``)."""
    dcol, vcol = _find(t.header, DATE_NAMES), _find(t.header, VALUE_NAMES)
    if dcol is None or vcol is None:
        raise InputError(
            f"{t.source} has no survey dates: give one column per date (D20170903, 20170903, "
            "d_20170903) or a long table with 'date' and 'value' columns (one row per benchmark "
            f"and survey); found columns {list(t.header)[:12]}."
        )
    order: dict[str, int] = {}
    pos: list[tuple[float, float]] = []
    recs: list[tuple[int, dt.date, float]] = []
    for r, row in enumerate(rows):
        if _blank(row):
            continue
        if t.id_col is None:
            raise InputError(f"{t.source}: a long table needs an 'id' column naming the benchmark.")
        name = t.ident(r, row)
        d = parse_date(str(row[dcol]))
        if d is None:
            raise InputError(
                f"{t.source}, row {r + 2}: {row[dcol]!r} is not a date (YYYY-MM-DD or YYYYMMDD)."
            )
        if name not in order:
            order[name] = len(order)
            pos.append(t.coord(r, row))
        recs.append((order[name], d, _number(str(row[vcol]), t.where(r, vcol))))
    dates = sorted({d for _, d, _ in recs})
    di = {d: k for k, d in enumerate(dates)}
    values = np.full((len(order), len(dates)), np.nan)
    for b, d, v in recs:
        values[b, di[d]] = v
    return list(order), [p[0] for p in pos], [p[1] for p in pos], dates, values


def benchmarks_from_table(
    header: Sequence[str],
    rows: Sequence[Sequence],
    xy: Sequence[tuple[float, float]] | None = None,
    source: str = "the benchmark table",
) -> Benchmarks:
    """Benchmarks from a table (CSV rows or a layer's attributes).

    `xy`: one (x, y) per row from a layer's geometry; without it, coordinates come from columns.
    """
    header = [str(h) for h in header]
    coords = None
    if xy is None:
        coords = find_coordinate_columns(header)
        if coords is None:
            raise InputError(
                f"{source} has no coordinate columns. Expected a pair among "
                + ", ".join(f"{a}/{b}" for a, b, _ in COORD_PAIRS[:2] + COORD_PAIRS[6:7] + COORD_PAIRS[9:])
                + f"; found columns {list(header)[:12]}."
            )
    elif len(xy) != len(rows):
        raise ValueError("one (x, y) per row")
    table = _Table(header, xy, coords, _find(header, ID_NAMES), source)
    wide = date_fields(header)
    ids, xs, ys, dates, values = _wide(table, rows, wide) if wide else _long(table, rows)
    if not ids:
        raise InputError(f"{source} holds no benchmark.")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"{source}: benchmark {dup!r} appears twice.")
    return Benchmarks(
        ids=ids,
        x=np.array(xs, dtype="float64"),
        y=np.array(ys, dtype="float64"),
        dates=dates,
        values=validity.clean_series(values, source),  # sentinels as NaN, counted (masked_count)
        coord_columns=(header[coords[0]], header[coords[1]]) if coords else None,
        geographic=bool(coords[2]) if coords else False,
        form="wide" if wide else "long",
    )


def read_benchmarks(path: str) -> Benchmarks:
    header, rows = read_csv(path)
    return benchmarks_from_table(header, rows, source=f"Benchmark file {os.path.basename(path)!r}")


# ---------------------------------------------------------------- sampling the stack


@dataclass
class Sampled:
    """LOS values of a stack at benchmarks: (benchmarks, bands), with how each was taken."""

    values: np.ndarray
    pixels: np.ndarray  # pixels averaged per benchmark
    method: list[str]  # "circle" | "nearest" | "outside" | "nan"


def sample_circles(
    path: str,
    info: StackInfo,
    x,
    y,
    radius: float,
    scale: tuple[float, float] = (1.0, 1.0),
    run: Run = QUIET,
) -> Sampled:
    """Mean of the pixels whose centres lie within `radius` of each point, per band. With `scale`
    (metres per CRS unit along x and y, core.metric), `radius` is in metres on the ground.

    Reads only a small window around each point (in groups of bands when the window of all bands
    would not fit in the memory budget of `run`, core.budget). Falls back to the pixel under the
    point when no centre is within the radius ("nearest"); points off the raster are "outside";
    points whose pixels are NaN at every date are "nan". Both of the latter get NaN values.
    Progress goes to `run` per point; cancelling raises core.errors.Cancelled.
    """
    import rasterio

    from .budget import gdal_env

    if not radius >= 0:
        raise InputError(f"The radius must be zero or positive, not {radius}.")
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    out = Sampled(np.full((x.size, info.count), np.nan), np.zeros(x.size, dtype=np.int64), [])
    # float32 read, its float64 copy and the selection: about 4 copies of a window's bands
    circle = _Circle(info, radius, scale, run.working_bytes(4))
    with gdal_env(run.budget_mb), rasterio.open(path) as src:
        for k in range(x.size):
            run.check_cancelled()
            how = circle.sample(src, float(x[k]), float(y[k]))
            out.method.append(how[0])
            if how[1] is not None:
                out.values[k], out.pixels[k] = how[1], how[2]
            run.progress((k + 1) / x.size)
    return out


@dataclass(frozen=True)
class _Circle:
    """The circle of `radius` around one point at a time, on the grid of `info` (see sample_circles)."""

    info: StackInfo
    radius: float
    scale: tuple[float, float]
    limit: int  # bytes a window's bands may take

    def window(self, x: float, y: float):
        """The window around (x, y) that holds every centre within the radius, or None off the raster."""
        from rasterio.windows import Window

        info = self.info
        if not (np.isfinite(x) and np.isfinite(y)):
            return None
        col, row = ~info.transform * (x, y)
        if not (0 <= col < info.width and 0 <= row < info.height):
            return None
        rx, ry = info.res
        pc, pr = self.radius / (rx * self.scale[0]) + 1, self.radius / (ry * self.scale[1]) + 1
        c0, c1 = max(0, math.floor(col - pc)), min(info.width, math.ceil(col + pc))
        r0, r1 = max(0, math.floor(row - pr)), min(info.height, math.ceil(row + pr))
        return Window(c0, r0, c1 - c0, r1 - r0), int(row) - r0, int(col) - c0

    def pixels(self, win, x: float, y: float, under: tuple[int, int]) -> tuple[np.ndarray, str]:
        """The window's pixels to average (the centres within the radius, else the one under the point)."""
        from .faults import pixel_centres

        npx = int(win.width * win.height)
        if npx * 2 * 4 * 2 > self.limit:  # one band of the window and its centre coordinates
            raise InputError(
                f"RADIUS {self.radius:g} covers about {npx:,} pixels around each benchmark, more than "
                "the memory budget allows; choose a smaller radius (or raise the memory budget)."
            )
        cx, cy = pixel_centres(self.info.transform, self.info.width, self.info.height, win)
        inside = ((cx - x) * self.scale[0]) ** 2 + ((cy - y) * self.scale[1]) ** 2 <= self.radius**2
        if inside.any():
            return inside, "circle"
        inside = np.zeros_like(inside)
        inside[under] = True
        return inside, "nearest"

    def sample(self, src, x: float, y: float) -> tuple[str, np.ndarray | None, int]:
        """(method, mean per band or None, pixels averaged) at one point."""
        found = self.window(x, y)
        if found is None:
            return "outside", None, 0
        win, row, col = found
        inside, how = self.pixels(win, x, y, (row, col))
        count = self.info.count
        per = max(1, int(self.limit // (int(win.width * win.height) * 4)))  # bands read at once
        sums = np.zeros(count)
        counts = np.zeros(count, dtype=np.int64)
        for b0 in range(0, count, per):
            idx = list(range(b0 + 1, min(count, b0 + per) + 1))
            block = src.read(idx, window=win, out_dtype="float32")
            block = validity.clean_block(block, src, idx, window=win, count=False)  # nodata, masks, units
            vals = block[:, inside].astype("float64")  # (bands, pixels)
            del block
            sums[b0 : b0 + len(idx)] = np.nansum(vals, axis=1)
            counts[b0 : b0 + len(idx)] = np.isfinite(vals).sum(axis=1)
        if not counts.any():
            return "nan", None, 0
        with np.errstate(invalid="ignore"):
            return how, np.where(counts > 0, sums / counts, np.nan), int(inside.sum())


def incidence_at(path: str, x, y, crs=None) -> np.ndarray:
    """Band 1 of an incidence raster at points (x, y) given in `crs` (the raster's own if None);
    NaN off the raster. Reads only the pixels under the points (rasterio's sample)."""
    import rasterio
    from rasterio.warp import transform as warp_transform

    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    out = np.full(x.size, np.nan)
    with rasterio.open(path) as src:
        if crs is not None and src.crs is not None and src.crs != crs and x.size:
            xx, yy = warp_transform(crs, src.crs, list(x), list(y))
            x, y = np.array(xx), np.array(yy)
        inv = ~src.transform
        inside = []
        for k in range(x.size):
            col, row = inv * (x[k], y[k])
            if 0 <= col < src.width and 0 <= row < src.height:
                inside.append(k)
        if inside:
            got = np.array(
                [v[0] for v in src.sample([(x[k], y[k]) for k in inside], indexes=1, masked=False)],
                dtype="float64",
            )
            if src.nodata is not None and not np.isnan(src.nodata):
                got[got == np.float64(np.float32(src.nodata))] = np.nan
                got[got == np.float64(src.nodata)] = np.nan
            out[inside] = got
    return out


# ---------------------------------------------------------------- comparing


def series_stats(lev: np.ndarray, ins: np.ndarray) -> dict:
    """n, MAE, RMSE, max |diff|, bias (mean of InSAR - leveling) and Pearson r of paired values."""
    lev = np.asarray(lev, dtype="float64")
    ins = np.asarray(ins, dtype="float64")
    d = ins - lev
    n = int(d.size)
    nan = float("nan")
    if n == 0:
        return dict(n=0, mae=nan, rmse=nan, max_abs=nan, bias=nan, r=nan)
    r = nan
    if n >= 3 and np.std(lev) > 0 and np.std(ins) > 0:
        r = float(np.corrcoef(lev, ins)[0, 1])
    return dict(
        n=n,
        mae=float(np.mean(np.abs(d))),
        rmse=float(np.sqrt(np.mean(d**2))),
        max_abs=float(np.max(np.abs(d))),
        bias=float(np.mean(d)),
        r=r,
    )


@dataclass
class Comparison:
    rows: list[dict]  # benchmark, survey_date, acquisition_date, gap_days, leveling, insar, diff, reference
    summary: list[dict]  # benchmark, x, y, method, pixels, incidence, status, n, mae, rmse, max_abs, bias, r
    overall: dict  # n, mae, rmse, max_abs, bias, r, benchmarks, skipped
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Pairing:
    """What every benchmark's comparison shares (see :func:`compare`)."""

    bms: Benchmarks
    sampled: Sampled
    acquisition_dates: Sequence[dt.date]
    pairs: list  # (survey index, acquisition index, gap in days), from nearest_pairs
    ref_pair: int | None  # the pair of the reference date, None: each benchmark's first common pair
    vert: np.ndarray  # (benchmarks, bands) vertical InSAR values
    inc: np.ndarray  # incidence per benchmark (NaN for a vertical stack)

    def status(self, b: int, both: np.ndarray) -> tuple[str, int | None]:
        """("ok", the reference pair) or (why benchmark `b` is skipped, None)."""
        method = self.sampled.method[b]
        if method == "outside":
            return "outside the raster", None
        if method == "nan":
            return "on NaN (incoherent) pixels", None
        if self.ref_pair is not None:
            if both[self.ref_pair]:
                return "ok", self.ref_pair
            return "no leveling or InSAR value at the reference date", None
        if both.any():
            return "ok", int(np.argmax(both))
        return "no survey paired with a coherent acquisition", None

    def one(self, b: int, out: Comparison) -> tuple[np.ndarray, np.ndarray] | None:
        """Compare benchmark `b`: its rows, summary and warnings go to `out`; returns its
        (leveling, InSAR) values for the statistics, None when it is skipped."""
        name = self.bms.ids[b]
        info = dict(
            benchmark=name,
            x=float(self.bms.x[b]),
            y=float(self.bms.y[b]),
            method=self.sampled.method[b],
            pixels=int(self.sampled.pixels[b]),
            incidence=float(self.inc[b]),
        )
        lev = np.array([self.bms.values[b, i] for i, _, _ in self.pairs])
        ins = np.array([self.vert[b, j] for _, j, _ in self.pairs])
        both = np.isfinite(lev) & np.isfinite(ins)
        status, r0 = self.status(b, both)
        if r0 is None:
            out.warnings.append(f"Benchmark {name!r} skipped: {status}.")
            out.summary.append(dict(**info, status=status, **series_stats(np.empty(0), np.empty(0))))
            return None
        if self.sampled.method[b] == "nearest":
            out.warnings.append(
                f"Benchmark {name!r}: no pixel centre within the radius; the pixel under it is used."
            )
        lev0, ins0 = lev - lev[r0], ins - ins[r0]
        use = both.copy()
        use[r0] = False
        for k, (i, j, gap) in enumerate(self.pairs):
            if both[k]:
                out.rows.append(
                    dict(
                        benchmark=name,
                        survey_date=self.bms.dates[i],
                        acquisition_date=self.acquisition_dates[j],
                        gap_days=gap,
                        leveling=float(lev0[k]),
                        insar=float(ins0[k]),
                        diff=float(ins0[k] - lev0[k]),
                        reference=(k == r0),
                    )
                )
        st = series_stats(lev0[use], ins0[use])
        if st["n"] == 0:  # too few dates: skipped (BENCHMARKS_SKIPPED), never silent
            out.warnings.append(f"Benchmark {name!r} skipped: too few dates (only the reference date pairs).")
            out.summary.append(dict(**info, status="too few dates", **st))
            return None
        out.summary.append(dict(**info, status="ok", **st))
        return lev0[use], ins0[use]


def _reference_pair(
    bms: Benchmarks, pairs: list, reference_date: dt.date | None, max_days: float
) -> int | None:
    """The index in `pairs` of the survey nearest `reference_date` (None without one)."""
    if reference_date is None:
        return None
    gaps = [abs((bms.dates[i] - reference_date).days) for i, _, _ in pairs]
    k = int(np.argmin(gaps))
    if gaps[k] > max_days:
        raise InputError(
            f"The reference date {reference_date} is not within {max_days:g} days of any survey "
            "that has an InSAR acquisition; choose one of the survey dates."
        )
    return k


def compare(
    bms: Benchmarks,
    sampled: Sampled,
    acquisition_dates: Sequence[dt.date],
    incidence,
    max_days: float = 12,
    reference_date: dt.date | None = None,
) -> Comparison:
    """Pair each survey with the nearest acquisition within `max_days`, convert the InSAR LOS
    values to vertical (dv = dLOS / cos(incidence)), set both series to zero at the reference pair
    (the survey nearest `reference_date`, default each benchmark's first pair where both have a
    value), and measure InSAR - leveling. The reference pair is listed (difference 0 by
    construction) but left out of the statistics. With `incidence` None the values are vertical
    already (e.g. from ``decompose``) and are compared as they are.
    """
    if incidence is None:  # the stack is vertical already (e.g. from `decompose`)
        inc = np.full(len(bms.ids), np.nan)
        vert = np.asarray(sampled.values, dtype="float64")
    else:
        inc = np.broadcast_to(np.asarray(incidence, dtype="float64"), (len(bms.ids),))
        check_incidence(inc, "incidence angle")
        vert = los_to_vertical(sampled.values, inc[:, None])
    pairs = nearest_pairs(bms.dates, acquisition_dates, max_days)
    if not pairs:
        raise InputError(
            f"No survey date ({bms.dates[0]}..{bms.dates[-1]}) has an InSAR acquisition "
            f"({acquisition_dates[0]}..{acquisition_dates[-1]}) within {max_days:g} days; "
            "raise MAX_DAYS or check the dates."
        )
    pairing = _Pairing(
        bms,
        sampled,
        acquisition_dates,
        pairs,
        _reference_pair(bms, pairs, reference_date, max_days),
        vert,
        inc,
    )
    out = Comparison([], [], {}, [])
    compared = [got for b in range(len(bms.ids)) if (got := pairing.one(b, out)) is not None]
    skipped = len(bms.ids) - len(compared)
    lev_all = np.concatenate([lev for lev, _ in compared]) if compared else np.empty(0)
    ins_all = np.concatenate([ins for _, ins in compared]) if compared else np.empty(0)
    out.overall = series_stats(lev_all, ins_all)
    out.overall.update(benchmarks=len(bms.ids) - skipped, skipped=skipped)
    if out.overall["n"] == 0:
        w = out.warnings
        raise InputError(
            "No benchmark could be compared: " + "; ".join(w[:5]) + (" ..." if len(w) > 5 else "")
        )
    return out


def plot_comparison(cmp: Comparison, path: str, max_panels: int = 12) -> str:
    """Fig. 15a: leveling and InSAR series per benchmark (up to `max_panels`), and a scatter of
    all pairs with the 1:1 line. Format by extension (png, svg, pdf); written atomically."""
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    from .stack import atomic_path

    names = [s["benchmark"] for s in cmp.summary if s["status"] == "ok"][:max_panels]
    ncol = 4
    nrow = max(1, math.ceil(len(names) / ncol)) + 1
    fig = Figure(figsize=(4 * ncol, 3 * nrow), dpi=100)
    for p, name in enumerate(names):
        ax = fig.add_subplot(nrow, ncol, p + 1)
        rs = [r for r in cmp.rows if r["benchmark"] == name]
        d = [r["survey_date"] for r in rs]
        ax.plot(d, [r["leveling"] for r in rs], "o-", ms=3, label="leveling")
        ax.plot(d, [r["insar"] for r in rs], "s--", ms=3, label="InSAR vertical")
        ax.set_title(str(name), fontsize=9)
        loc = mdates.AutoDateLocator(maxticks=5)
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if p == 0:
            ax.legend(fontsize=7)
            ax.set_ylabel("cumulative vertical (mm)", fontsize=8)
    ax = fig.add_subplot(nrow, 2, 2 * nrow - 1)
    lev = np.array([r["leveling"] for r in cmp.rows if not r["reference"]])
    ins = np.array([r["insar"] for r in cmp.rows if not r["reference"]])
    ax.scatter(lev, ins, s=8, alpha=0.6)
    if lev.size:
        lo, hi = float(min(lev.min(), ins.min())), float(max(lev.max(), ins.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="1:1")
        ax.legend(fontsize=8)
    ov = cmp.overall
    ax.set_xlabel("leveling (mm)")
    ax.set_ylabel("InSAR vertical (mm)")
    ax.set_title(
        f"MAE {ov['mae']:.2f} mm, RMSE {ov['rmse']:.2f} mm, r = {ov['r']:.3f}, n = {ov['n']}", fontsize=9
    )
    ax.grid(alpha=0.3)
    ax2 = fig.add_subplot(nrow, 2, 2 * nrow)
    diffs = np.array([r["diff"] for r in cmp.rows if not r["reference"]])
    if diffs.size:
        ax2.hist(diffs, bins=30)
    ax2.set_xlabel("InSAR - leveling (mm)")
    ax2.set_ylabel("pairs")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=ext)
    return path
