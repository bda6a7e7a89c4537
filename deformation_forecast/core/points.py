"""Point time series (PS/SBAS points) -> deformation stack.

Inputs are tables with one row per point: either one numeric column per date (``D20170903``,
``20170903``, ``d_20170903``, case-insensitive; DePSI exports are of this kind, in metres) or the
StaMPS Visualizer export (header ``export_res_1..N``; first data row = reference lon, lat, NaN and
the dates as MATLAB datenum - 1; then lon, lat, mean velocity, displacement in mm per date).

Points are projected (GDAL through ``rasterio.warp.transform``) and gridded on a regular grid with
a k-d tree: ``nearest`` takes the series of the nearest point, ``idw`` the inverse-distance (power
2) mean of all points within the radius; cells with no point within the radius are NaN. The grid
is the points' bounding box padded by half a pixel, so the outermost points sit on cell centres.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from . import validity
from .dates import check_increasing, date_fields
from .errors import InputError
from .run import QUIET, Run

FORMATS = ("auto", "fields", "stamps")
UNITS = ("auto", "mm", "cm", "m")
UNIT_FACTORS = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
METHODS = ("nearest", "idw")

# (x, y, lon/lat-like) candidates for CSV coordinate columns, first match wins.
COORD_PAIRS: tuple[tuple[str, str, bool], ...] = (
    ("x", "y", False),
    ("lon", "lat", True),
    ("longitude", "latitude", True),
    ("lng", "lat", True),
    ("easting", "northing", False),
    ("east", "north", False),
    ("pnt_lon", "pnt_lat", True),
)
_STAMPS_HEADER = re.compile(r"^export_res_\s*\d+$", re.IGNORECASE)
_NULLS = {"", "nan", "-nan", "na", "n/a", "null", "none"}
# Largest stack this module builds (cells x dates): a guard against a mistyped PIXEL_SIZE; the stack
# is written window by window in bounded memory, so this is about disk (40 GB of float32).
MAX_CELLS = 10_000_000_000


@dataclass
class PointSeries:
    """Points with one displacement series each (mm), in the CRS `crs`."""

    x: np.ndarray
    y: np.ndarray
    values: np.ndarray  # (points, dates), mm, NaN = missing
    dates: list[dt.date]
    crs: CRS
    source: str = ""
    fmt: str = "fields"
    units: str = "mm"  # units of the input values (converted to mm in `values`)
    skipped: int = 0  # rows dropped because all their values were NaN
    null_geometry: int = 0  # layer features dropped because they had no geometry
    outside: int = 0  # points dropped: outside the area of use of their CRS (a minority)
    reference: tuple[float, float] | None = None  # StaMPS reference point (lon, lat)
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.x.size)


def to_float(value: Any) -> float:
    """A cell as float: numbers as they are, empty / NaN / NULL as NaN; raise ValueError otherwise."""
    if value is None:
        return math.nan
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return float(value)
    s = str(value).strip()
    if s.lower() in _NULLS:
        return math.nan
    return float(s)


@contextlib.contextmanager
def open_csv_table(path: str) -> Iterator[tuple[list[str], Iterator[list[str]]]]:
    """Header and a row iterator of a delimited text file (``,``, ``;`` or tab, detected from the
    header). Rows are read one at a time (blank ones skipped): a PS export may hold millions of
    points, whose cells as Python strings would take ten times their values' memory."""
    if not path or not os.path.isfile(path):
        raise InputError(f"INPUT_CSV: the file {path!r} does not exist; give the path of a CSV file.")
    name = os.path.basename(path)

    def decode_error(e: UnicodeDecodeError) -> InputError:
        return InputError(f"INPUT_CSV: {name!r} is not a UTF-8 text file ({e}).")

    with open(path, encoding="utf-8-sig", newline="") as f:
        try:
            first = f.readline()
            delim = max((",", ";", "\t"), key=first.count)
            f.seek(0)
            reader = csv.reader(f, delimiter=delim)
            header = next(reader, None)
        except UnicodeDecodeError as e:
            raise decode_error(e) from e
        if not header:
            raise InputError(f"INPUT_CSV: {name!r} is empty; it needs a header and one row per point.")

        def rows() -> Iterator[list[str]]:
            try:
                for r in reader:
                    if r and any(c.strip() for c in r):
                        yield r
            except UnicodeDecodeError as e:
                raise decode_error(e) from e

        yield [h.strip() for h in header], rows()


def read_csv_table(path: str) -> tuple[list[str], list[list[str]]]:
    """Header and all rows of a delimited text file (see :func:`open_csv_table`)."""
    with open_csv_table(path) as (header, rows):
        return header, list(rows)


def detect_format(names: Sequence[str]) -> str:
    """``stamps`` when every column is named ``export_res_N``, else ``fields``."""
    if names and all(_STAMPS_HEADER.match(n.strip()) for n in names if n.strip()):
        return "stamps"
    return "fields"


def find_coordinate_columns(names: Sequence[str]) -> tuple[int, int, bool] | None:
    """Indexes of the (x, y) columns and whether they are lon/lat; None when there are none."""
    lower = [n.strip().lower() for n in names]
    for xn, yn, lonlat in COORD_PAIRS:
        if xn in lower and yn in lower:
            return lower.index(xn), lower.index(yn), lonlat
    return None


def stamps_date(value: float) -> dt.date:
    """A StaMPS Visualizer export date (MATLAB datenum - 1) as a date."""
    return dt.date.fromordinal(int(round(value)) + 1 - 366)


def _cell(value: Any, column: str, line: int, what: str) -> float:
    try:
        return to_float(value)
    except (TypeError, ValueError):
        raise InputError(
            f"{what}: field {column!r} in row {line} holds {str(value)!r}, which is not a number; "
            "fix or empty that cell (empty and NaN cells count as missing)."
        ) from None


def _check_crs(crs: CRS | str | None, what: str) -> CRS | None:
    if crs is None or crs == "":
        return None
    try:
        return CRS.from_user_input(crs)
    except Exception as e:  # rasterio raises CRSError (a ValueError) or others from GDAL
        raise InputError(f"{what}: {crs!r} is not a coordinate reference system ({e}).") from e


@dataclass
class _Layout:
    """Where a table holds what: the date columns, the coordinate columns (when read from the
    table), the units and CRS of the input, and the line number of the first point row."""

    dates: list[dt.date]
    date_cols: list[int]
    in_units: str
    crs: CRS | None
    first_line: int
    xcol: int = 0
    ycol: int = 1
    reference: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)


def series_from_table(
    names: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    what: str = "INPUT",
    fmt: str = "auto",
    units: str = "auto",
    crs: CRS | str | None = None,
    xy: Any = None,
    first_line: int = 2,
) -> PointSeries:
    """Parse a table (header `names`, `rows` of cells, read once, row by row) into a PointSeries.

    `xy` (points, 2) gives the coordinates from a layer's geometries (then no coordinate columns
    are needed and `crs` is the layer's CRS); it is read only after every row was, so a generator
    of rows may fill a list `xy` as it goes. `first_line` is the line number of ``rows[0]`` in
    error messages (2 for a CSV with one header line). `what` names the input in messages.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}")
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}")
    names = [str(n).strip() for n in names]
    crs_in = _check_crs(crs, "CSV_CRS" if xy is None else what)
    if fmt == "auto":
        fmt = detect_format(names)
    rows = iter(rows)
    if fmt == "stamps":
        lay = _stamps_layout(names, rows, what, units, crs_in, first_line)
    else:
        lay = _fields_layout(names, what, units, crs_in, first_line, xy is None)
    if lay.crs is None:
        raise InputError(f"{what}: the layer has no coordinate reference system; assign one first.")
    values, coords, n = _read_cells(names, rows, lay, what, xy is None)
    if fmt == "stamps" and n == 0:
        raise InputError(
            f"{what}: not a StaMPS Visualizer export: it needs columns lon, lat, velocity and one "
            "per date, a first row with the reference point and the dates, and one row per point."
        )
    if xy is not None:
        coords = np.asarray(xy, dtype="float64")
        if fmt == "stamps":
            coords = coords[1:]
        if coords.shape != (n, 2):
            raise ValueError(f"xy has shape {coords.shape}, expected {(n, 2)}")
    values, coords, skipped, outside = _keep_points(values, coords, names, lay, what, xy is None)
    values *= UNIT_FACTORS[lay.in_units]
    if units == "auto" and lay.in_units == "mm":
        typical = float(np.nanpercentile(np.abs(values), 99))
        if 0 < typical < 0.5:
            lay.notes.append(
                f"Warning: 99% of the values are below {typical:.3g} in magnitude; if they are metres, "
                "set UNITS to m."
            )
    return PointSeries(
        x=coords[:, 0].copy(),
        y=coords[:, 1].copy(),
        values=values,
        dates=lay.dates,
        crs=lay.crs,
        fmt=fmt,
        units=lay.in_units,
        skipped=skipped,
        outside=outside,
        reference=lay.reference,
        notes=lay.notes,
    )


def _stamps_layout(
    names: list[str],
    rows: Iterator[Sequence[Any]],
    what: str,
    units: str,
    crs_in: CRS | None,
    first_line: int,
) -> _Layout:
    """The layout of a StaMPS Visualizer export; reads its first row (reference point, dates)."""
    first = next(rows, None)
    if len(names) < 4 or first is None:
        raise InputError(
            f"{what}: not a StaMPS Visualizer export: it needs columns lon, lat, velocity and one "
            "per date, a first row with the reference point and the dates, and one row per point."
        )
    head = [_cell(v, names[j], first_line, what) for j, v in enumerate(first)]
    if len(head) < len(names) or any(math.isnan(v) for v in head[3 : len(names)]):
        raise InputError(
            f"{what}: the first data row of a StaMPS export must hold the reference lon, lat, NaN "
            "and one date (MATLAB datenum - 1) per acquisition; it has missing cells."
        )
    try:
        dates = [stamps_date(v) for v in head[3 : len(names)]]
    except (ValueError, OverflowError):
        raise InputError(
            f"{what}: the first data row of a StaMPS export must hold the dates as MATLAB datenums "
            f"(about 7.3e5); found {head[3:6]}..."
        ) from None
    return _Layout(
        dates=dates,
        date_cols=list(range(3, len(names))),
        in_units="mm" if units == "auto" else units,
        crs=crs_in if crs_in is not None else CRS.from_epsg(4326),
        first_line=first_line + 1,
        reference=(head[0], head[1]),
    )


def _fields_layout(
    names: list[str], what: str, units: str, crs_in: CRS | None, first_line: int, coordinates: bool
) -> _Layout:
    """The layout of a table with one field per date; with `coordinates`, finds their columns."""
    pairs = date_fields(names)
    if not pairs:
        raise InputError(
            f"{what}: no date fields found among {names[:12]}{'...' if len(names) > 12 else ''}. "
            "A point time series needs one numeric field per acquisition named DYYYYMMDD, "
            "YYYYMMDD or d_YYYYMMDD (e.g. D20170903), or choose FORMAT 'StaMPS export' for a "
            "StaMPS Visualizer export."
        )
    pairs.sort(key=lambda p: p[1])
    dates = [d for _, d in pairs]
    check_increasing(dates, f"the date fields of {what}")
    lay = _Layout(dates, [names.index(n) for n, _ in pairs], units, crs_in, first_line)
    lower = {n.lower() for n in names}
    depsi = "pnt_lat" in lower and "pnt_lon" in lower
    if units == "auto":
        lay.in_units = "m" if depsi else "mm"
        lay.notes.append(
            f"Units: {lay.in_units} ({'DePSI layout (pnt_lat/pnt_lon), displacements in metres' if depsi else 'default'}); "
            "set UNITS to override."
        )
    if not coordinates:
        return lay
    from .coordinates import choose_columns

    found = choose_columns(names, COORD_PAIRS, crs_in)
    if found is None:
        raise InputError(
            f"{what}: no coordinate columns found; name them x/y, lon/lat, longitude/latitude, "
            "easting/northing or pnt_lon/pnt_lat (any case), or load the file as a point layer "
            "and give it as INPUT."
        )
    lay.xcol, lay.ycol, lonlat = found
    if crs_in is None:
        if not lonlat:
            raise InputError(
                f"{what}: the coordinates in columns {names[lay.xcol]!r}/{names[lay.ycol]!r} are not "
                "longitude/latitude; give their coordinate reference system in CSV_CRS."
            )
        lay.crs = CRS.from_epsg(4326)
    return lay


def _read_cells(
    names: list[str], rows: Iterator[Sequence[Any]], lay: _Layout, what: str, coordinates: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """(values (rows, dates), coordinates (rows, 2; NaN unless `coordinates`), row count), read
    in chunks of 4096 rows so that no Python list of all the cells is ever held."""
    width = max(lay.date_cols) + 1
    chunk = 4096
    parts_v: list[np.ndarray] = []
    parts_c: list[np.ndarray] = []
    buf_v = np.full((chunk, len(lay.dates)), np.nan, dtype="float64")
    buf_c = np.full((chunk, 2), np.nan, dtype="float64")
    n = k_ = 0
    for i, row in enumerate(rows):
        line = lay.first_line + i
        if len(row) < width:
            raise InputError(
                f"{what}: row {line} has {len(row)} cells but the header has {len(names)}; "
                "every row needs a value (or an empty cell) for each column."
            )
        k_ = i % chunk
        if k_ == 0 and i:
            parts_v.append(buf_v.copy())
            parts_c.append(buf_c.copy())
            buf_v.fill(np.nan)
            buf_c.fill(np.nan)
        for k, j in enumerate(lay.date_cols):
            buf_v[k_, k] = _cell(row[j], names[j], line, what)
        if coordinates:
            buf_c[k_, 0] = _cell(row[lay.xcol], names[lay.xcol], line, what)
            buf_c[k_, 1] = _cell(row[lay.ycol], names[lay.ycol], line, what)
        n = i + 1
    if n:
        parts_v.append(buf_v[: k_ + 1])
        parts_c.append(buf_c[: k_ + 1])
    del buf_v, buf_c
    values = np.concatenate(parts_v) if parts_v else np.empty((0, len(lay.dates)))
    coords = np.concatenate(parts_c) if parts_c else np.empty((0, 2))
    return values, coords, n


def _keep_points(
    values: np.ndarray, coords: np.ndarray, names: list[str], lay: _Layout, what: str, coordinates: bool
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Drop the points without any value (sentinels masked first) and the minority outside the
    area of use of their CRS; refuse a kept point without coordinates, and a table without any
    point. Returns (values, coords, skipped, outside)."""
    n = values.shape[0]
    lay.notes.extend(_mask_sentinel_cells(values))
    keep = ~np.all(np.isnan(values), axis=1)
    skipped = int(n - keep.sum())
    bad_xy = keep & ~np.all(np.isfinite(coords), axis=1)
    if bad_xy.any():
        i = int(np.argmax(bad_xy))
        raise InputError(
            f"{what}: the point in row {lay.first_line + i} has no coordinates; give both coordinates "
            "of every point (or remove the row)."
        )
    values, coords = values[keep], coords[keep]
    outside = 0
    if coordinates and values.shape[0]:
        from .coordinates import check_inside, outside_area

        assert lay.crs is not None
        columns = f"{names[lay.xcol]!r}/{names[lay.ycol]!r}"
        lay.notes.append(f"Coordinates from columns {columns} in {lay.crs.to_string()}.")
        outside = check_inside(coords[:, 0], coords[:, 1], lay.crs, columns, what)
        if outside:  # a minority (a majority is refused): wrong coordinates, dropped and counted
            inside = ~outside_area(coords[:, 0], coords[:, 1], lay.crs)
            values, coords = values[inside], coords[inside]
            lay.notes.append(
                f"Warning: {outside} point(s) in columns {columns} lie outside the area of use of "
                f"{lay.crs.to_string()}: dropped."
            )
    if values.shape[0] == 0:
        raise InputError(
            f"{what}: no point with a displacement value ({n} rows, "
            f"{'all NaN' if n else 'none'}); give a file or layer with at least one point."
        )
    if skipped:
        lay.notes.append(f"{skipped} point(s) without any value (incoherent) skipped.")
    return values, coords, skipped, outside


def _mask_sentinel_cells(values: np.ndarray) -> list[str]:
    """Undeclared nodata sentinels (-9999, ...; core.validity) in the value cells become NaN, in
    place; returns the warning to log (none when there were none)."""
    hit = validity.sentinel_mask(values)
    if not hit.any():
        return []
    found = ", ".join(validity.fmt_value(v) for v in np.unique(values[hit]).tolist())
    validity.count_masked(("points", values.shape), int(hit.sum()))
    values[hit] = np.nan
    return [
        f"Warning: {int(hit.sum())} value(s) equal to {found} (undeclared nodata) treated as "
        "missing; write missing values as empty cells or NaN."
    ]


def read_points_csv(
    path: str, fmt: str = "auto", units: str = "auto", crs: CRS | str | None = None
) -> PointSeries:
    """Read a CSV point time series (date fields, DePSI or StaMPS export)."""
    with open_csv_table(path) as (names, rows):
        s = series_from_table(
            names, rows, what=f"INPUT_CSV {os.path.basename(path)!r}", fmt=fmt, units=units, crs=crs
        )
    s.source = path
    return s


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone holding (lon, lat): 326zz north, 327zz south."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def output_crs_for(series: PointSeries) -> CRS:
    """The input CRS when projected, else the UTM zone of the points' centre."""
    if series.crs.is_projected:
        return series.crs
    lon, lat = series.x, series.y
    if not series.crs.is_geographic:
        raise InputError("The points' CRS is neither projected nor geographic; choose OUTPUT_CRS.")
    if series.crs.to_epsg() != 4326:
        lon, lat = warp_transform(series.crs, CRS.from_epsg(4326), lon.tolist(), lat.tolist())
    lon, lat = np.asarray(lon), np.asarray(lat)
    cx = (float(lon.min()) + float(lon.max())) / 2
    cy = (float(lat.min()) + float(lat.max())) / 2
    return CRS.from_epsg(utm_epsg(cx, cy))


def project(x: np.ndarray, y: np.ndarray, src: CRS, dst: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates from `src` to `dst` (GDAL, x = easting / longitude)."""
    if src == dst:
        return np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    xs, ys = warp_transform(src, dst, np.asarray(x).tolist(), np.asarray(y).tolist())
    xs, ys = np.asarray(xs, dtype="float64"), np.asarray(ys, dtype="float64")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise InputError(
            f"Some points cannot be projected from {src.to_string()} to {dst.to_string()}; check "
            "the input CRS (CSV_CRS) and OUTPUT_CRS."
        )
    return xs, ys


class Grid(NamedTuple):
    """A regular grid: its transform, width and height (unpacks as ``transform, width, height``)."""

    transform: Affine
    width: int
    height: int


def grid_for(x: np.ndarray, y: np.ndarray, pixel_size: float) -> Grid:
    """Transform, width, height of the grid over the points, padded by half a pixel.

    The westernmost and northernmost points sit on cell centres.
    """
    if not (pixel_size > 0 and math.isfinite(pixel_size)):
        raise InputError(f"PIXEL_SIZE must be a positive number, not {pixel_size}.")
    x0 = float(np.min(x)) - pixel_size / 2
    y1 = float(np.max(y)) + pixel_size / 2
    width = int(math.floor((float(np.max(x)) - x0) / pixel_size)) + 1
    height = int(math.floor((y1 - float(np.min(y))) / pixel_size)) + 1
    return Grid(Affine(pixel_size, 0.0, x0, 0.0, -pixel_size, y1), width, height)


def _centres(
    transform: Affine, width: int, r0: int, r1: int, c0: int = 0, c1: int | None = None
) -> np.ndarray:
    cols = np.arange(c0, width if c1 is None else c1, dtype="float64")
    rows = np.arange(r0, r1, dtype="float64")
    cx = transform.c + (cols + 0.5) * transform.a
    cy = transform.f + (rows + 0.5) * transform.e
    xx, yy = np.meshgrid(cx, cy)
    return np.column_stack([xx.ravel(), yy.ravel()])


# arrays of a window's size (float32 units, all dates) alive at once while gridding: the float64
# IDW numerator (divided in place) and denominator, the mask, the transposed float32 copy written
# and the writer's own buffer
GRID_COPIES = 8


class _Gridder:
    """The k-d tree of the points and the values a window's cells take from them."""

    def __init__(self, x, y, values: np.ndarray, method: str, radius: float | None, pixel: float):
        from scipy.spatial import cKDTree

        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}")
        self.method, self.pixel = method, pixel
        self.values = np.asarray(values, dtype="float64")
        self.radius = 2.0 * pixel if radius is None or radius <= 0 else float(radius)
        self.pts = np.column_stack([np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")])
        self.tree = cKDTree(self.pts)
        valid = np.isfinite(self.values)
        self.filled = np.where(valid, self.values, 0.0)
        self.valid_f = valid.astype("float64") if method == "idw" else None

    def max_cells(self, max_bytes: int) -> int:
        """Cells of one window: its dates fit in `max_bytes`; for IDW at most about 5e6 (cell,
        point) pairs."""
        npts, ndates = self.values.shape
        max_cells = max_bytes // (4 * max(ndates, 1))
        if self.method == "idw" and npts > 1:
            pts, pixel, radius = self.pts, self.pixel, self.radius
            area = max(float(np.ptp(pts[:, 0])) * float(np.ptp(pts[:, 1])), pixel * pixel)
            pairs_per_cell = max(1.0, npts / area * math.pi * radius * radius)
            max_cells = min(max_cells, int(5_000_000 / pairs_per_cell))
        return max(1, int(max_cells))

    def block(self, cells: np.ndarray, used: np.ndarray | None) -> np.ndarray:
        """(cells, dates) float64 values of the cells at `cells` (x, y)."""
        if self.method == "nearest":
            d, idx = self.tree.query(cells, k=1, distance_upper_bound=self.radius * (1 + 1e-12))
            hit = np.isfinite(d)
            block = np.full((cells.shape[0], self.values.shape[1]), np.nan)
            block[hit] = self.values[idx[hit]]
            if used is not None:
                used[idx[hit]] = True
            return block
        return self._idw(cells, used)

    def _idw(self, cells: np.ndarray, used: np.ndarray | None) -> np.ndarray:
        from scipy import sparse

        lists = self.tree.query_ball_point(cells, r=self.radius)
        lengths = np.fromiter((len(v) for v in lists), dtype="int64", count=len(lists))
        cell_idx = np.repeat(np.arange(len(lists)), lengths)
        pt_idx = (
            np.concatenate([np.asarray(v, dtype="int64") for v in lists])
            if lengths.sum()
            else np.zeros(0, dtype="int64")
        )
        if used is not None:
            used[pt_idx] = True
        d2 = np.sum((cells[cell_idx] - self.pts[pt_idx]) ** 2, axis=1)
        exact = d2 <= (1e-9 * self.pixel) ** 2
        has_exact = np.zeros(len(lists), dtype=bool)
        has_exact[cell_idx[exact]] = True
        w = np.where(has_exact[cell_idx], exact.astype("float64"), 1.0 / np.maximum(d2, 1e-300))
        wm = sparse.csr_matrix((w, (cell_idx, pt_idx)), shape=(len(lists), self.pts.shape[0]))
        block = wm @ self.filled  # numerator, divided in place (IDW memory: about 5 copies)
        den = wm @ self.valid_f
        has = den > 0
        np.divide(block, den, out=block, where=has)
        block[~has] = np.nan
        return block


def iter_grid_blocks(
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    grid: Grid,
    method: str = "nearest",
    radius: float | None = None,
    max_bytes: int | None = None,
    used: np.ndarray | None = None,
):
    """Grid point series `values` (points, dates) window by window: yields (window, block) with
    block a (dates, rows, cols) float32 array, windows aligned to the output's 128 x 128 tiles,
    each holding at most `max_bytes` of float32 pixels for all dates (default: the default memory
    budget's share, core.budget; callers pass ``run.working_bytes(GRID_COPIES)``). See
    :func:`grid_points` for the methods. `used` (a boolean array, one per point) is set where a
    point's series entered at least one cell."""
    from rasterio.windows import Window

    from .stack import window_shape

    transform, width, height = grid
    gridder = _Gridder(x, y, values, method, radius, abs(transform.a))
    ndates = gridder.values.shape[1]
    if max_bytes is None:
        max_bytes = QUIET.working_bytes(GRID_COPIES)
    rows, cols = window_shape(height, width, 1, gridder.max_cells(max_bytes), (128, 128))
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        for c0 in range(0, width, cols):
            c1 = min(width, c0 + cols)
            block = gridder.block(_centres(transform, width, r0, r1, c0, c1), used)
            win = Window(c0, r0, c1 - c0, r1 - r0)
            yield win, block.T.astype("float32").reshape(ndates, r1 - r0, c1 - c0)


def grid_points(
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    grid: Grid,
    method: str = "nearest",
    radius: float | None = None,
    run: Run = QUIET,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Grid point series `values` (points, dates) onto a (dates, height, width) float32 array.

    ``nearest``: each cell takes the series of its nearest point within `radius`.
    ``idw``: each cell takes, date by date, the mean of the valid values of all points within
    `radius` weighted by 1 / distance**2 (a point on the cell centre gives its value exactly).
    Cells with no point within `radius` are NaN. `radius` defaults to 2 pixels. The whole grid is
    returned: :func:`points_to_stack` writes it window by window instead (:func:`iter_grid_blocks`).
    """
    _, width, height = grid
    ndates = np.asarray(values).shape[1]
    out = np.full((ndates, height, width), np.nan, dtype="float32")
    done = 0
    if max_bytes is None:
        max_bytes = run.working_bytes(GRID_COPIES)
    for win, block in iter_grid_blocks(x, y, values, grid, method, radius, max_bytes):
        run.check_cancelled()
        r0, c0 = int(win.row_off), int(win.col_off)
        out[:, r0 : r0 + block.shape[1], c0 : c0 + block.shape[2]] = block
        done += block.shape[1] * block.shape[2]
        run.progress(done / (height * width))
    run.progress(1.0)
    return out


def check_grid(series: PointSeries, xs, ys, pixel_size: float, grid: Grid, run: Run = QUIET) -> None:
    """Refuse a grid under 2 x 2 cells from more than a handful of points (coordinates read in the
    wrong CRS or columns, or a PIXEL_SIZE far too large); log the points' median spacing."""
    from .coordinates import median_spacing

    _, width, height = grid
    spacing = median_spacing(xs, ys)
    if np.isfinite(spacing):
        run.message(
            f"Median nearest-neighbour spacing of the points: {spacing:.3g} m; a PIXEL_SIZE near it "
            f"keeps about one point per cell (given: {pixel_size:g} m)."
        )
    if (width < 2 or height < 2) and series.count > 4:
        raise InputError(
            f"PIXEL_SIZE {pixel_size:g} m puts the {series.count} points into a {width} x {height} grid "
            f"(they span {float(np.ptp(xs)):.3g} x {float(np.ptp(ys)):.3g} m in {series.crs.to_string()} "
            "read from the coordinate columns): check CSV_CRS and the coordinate columns, or choose "
            "a smaller PIXEL_SIZE."
        )
    if width * height * len(series.dates) > MAX_CELLS:
        raise InputError(
            f"PIXEL_SIZE {pixel_size:g} gives a grid of {width} x {height} cells x {len(series.dates)} "
            f"dates, more than this tool builds ({MAX_CELLS:,} values); use a larger pixel size "
            f"(the points span {np.ptp(xs):.6g} x {np.ptp(ys):.6g} m)."
        )


def points_to_stack(
    series: PointSeries,
    out_path: str,
    pixel_size: float,
    out_crs: CRS | str | None = None,
    method: str = "nearest",
    radius: float | None = None,
    run: Run = QUIET,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Grid `series` and write the stack to `out_path` (mm, NaN nodata, dates in band descriptions)
    window by window, the windows sized from the run's memory budget (core.budget; `max_bytes`,
    float32 bytes of one window's dates, overrides it: tests). `run` takes the messages, the
    progress and the cancel button (core.errors.Cancelled: nothing is written).

    Returns a summary: crs, width, height, points, dates, filled (cells with a value at any date).
    """
    from .budget import gdal_env
    from .metric import ground_scale
    from .stack import StackWriter

    dst = _check_crs(out_crs, "OUTPUT_CRS") or output_crs_for(series)
    xs, ys = project(series.x, series.y, series.crs, dst)
    # PIXEL_SIZE and RADIUS are metres on the ground: grid in coordinates scaled to metres, then
    # give the stack the transform back in the CRS's units (degrees: cells square on the ground)
    scale = ground_scale(dst, (float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys))))
    if scale.note:
        run.message(scale.note + " PIXEL_SIZE and RADIUS are metres; the cells are square on the ground.")
        xs, ys = xs * scale.kx, ys * scale.ky
    grid = grid_for(xs, ys, pixel_size)
    transform, width, height = grid
    check_grid(series, xs, ys, pixel_size, grid, run)
    radius = 2.0 * pixel_size if radius is None or radius <= 0 else float(radius)
    run.message(
        f"{series.count} points, {len(series.dates)} dates {series.dates[0]}..{series.dates[-1]}; "
        f"grid {width} x {height} cells of {pixel_size:g} m in {dst.to_string()}, {method} within {radius:g} m."
    )
    tags = {"SOURCE_FORMAT": series.fmt, "GRIDDING": f"{method} radius={radius:g} m"}
    filled = done = 0
    used = np.zeros(series.count, dtype=bool)
    crs_transform = Affine.scale(1.0 / scale.kx, 1.0 / scale.ky) * transform
    window_bytes = max_bytes if max_bytes is not None else run.working_bytes(GRID_COPIES)
    with (
        gdal_env(run.budget_mb),  # GDAL's block cache sized from the budget for the writes
        StackWriter(out_path, series.dates, dst, crs_transform, width, height, units="mm", tags=tags) as w,
    ):
        for win, block in iter_grid_blocks(xs, ys, series.values, grid, method, radius, window_bytes, used):
            run.check_cancelled()
            w.write(block, window=win)
            filled += int(np.any(np.isfinite(block), axis=0).sum())
            done += block.shape[1] * block.shape[2]
            run.progress(0.95 * done / (width * height))
        run.check_cancelled()
    run.progress(1.0)
    run.message(f"{filled} of {width * height} cells have a value.")
    merged = series.count - int(used.sum())
    if merged:
        run.message(
            f"{merged} of {series.count} point(s) did not enter the grid: their cells took the series "
            "of a point nearer the cell centre (METHOD nearest); a smaller PIXEL_SIZE or METHOD IDW "
            "keeps them."
        )
    return {
        "crs": dst,
        "width": width,
        "height": height,
        "points": series.count - merged,
        "merged": merged,
        "dates": len(series.dates),
        "filled": filled,
        "transform": crs_transform,
    }
