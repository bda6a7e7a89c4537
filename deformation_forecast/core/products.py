"""InSAR time-series products (HDF5) -> deformation stacks: MintPy and LiCSBAS, detected by content.

Layouts, from the tools' own documentation and source:

- **MintPy** ``timeseries*.h5`` / ``geo_timeseries*.h5`` (MintPy docs, "api/data_structure"; the
  MintPy-tutorial notebook ``io/read_hdf5.ipynb``): dataset ``timeseries`` (dates x rows x cols,
  float32, metres by default: attribute ``UNIT``), dataset ``date`` (bytes ``YYYYMMDD``), attributes as
  strings. Geocoded files carry ``X_FIRST``/``Y_FIRST`` (upper-left corner of the first pixel),
  ``X_STEP``/``Y_STEP``, ``EPSG`` or ``UTM_ZONE`` (else geographic WGS84), ``REF_DATE``,
  ``REF_LAT``/``REF_LON`` or ``REF_Y``/``REF_X``. Files in radar geometry have no ``X_FIRST``.
  ``geometryGeo.h5`` holds ``incidenceAngle`` (degrees) on the same grid.
- **LiCSBAS** ``cum.h5`` / ``cum_filt.h5`` (written by ``LiCSBAS13_sb_inv.py``): datasets ``cum``
  (dates x rows x cols, mm), ``imdates`` (int ``YYYYMMDD``), ``corner_lat``, ``corner_lon``,
  ``post_lat``, ``post_lon`` (corner_* is the centre of the first pixel, GAMMA's EQA convention),
  ``refarea`` (``x1:x2/y1:y2``); EPSG:4326; cumulative displacement relative to the first date.

Both tools give positive = toward the satellite (LOS), the stack's convention: values keep their sign.
Pixels are read in row strips (h5py slicing) sized from the memory budget (core.budget).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .dates import check_increasing, format_date, parse_date
from .errors import InputError
from .run import QUIET, Run

MINTPY = "MintPy"
LICSBAS = "LiCSBAS"
UNIT_FACTORS = {"m": 1000.0, "cm": 10.0, "mm": 1.0, "meter": 1000.0, "meters": 1000.0, "metre": 1000.0}
SIGN_NOTE = "positive = toward the satellite (LOS), as in the product"


@dataclass
class Product:
    """What an HDF5 product is, without its pixels."""

    path: str
    processor: str  # MINTPY or LICSBAS
    dataset: str  # the 3-D dataset of cumulative displacement
    dates: list[dt.date]
    crs: CRS
    transform: Affine
    width: int
    height: int
    unit: str  # the product's unit
    factor: float  # multiplier to mm
    ref_date: dt.date | None
    ref_point: str
    notes: list[str] = field(default_factory=list)

    def tags(self) -> dict[str, str]:
        """Metadata kept in the output stack's tags."""
        return {
            "PRODUCT": os.path.basename(self.path),
            "PROCESSOR": self.processor,
            "PRODUCT_DATASET": self.dataset,
            "PRODUCT_UNIT": self.unit,
            "PRODUCT_REFERENCE_DATE": format_date(self.ref_date) if self.ref_date else "",
            "PRODUCT_REFERENCE_POINT": self.ref_point,
            "SIGN": SIGN_NOTE,
        }

    def describe(self) -> str:
        return (
            f"{os.path.basename(self.path)}: {self.processor} time series {self.dataset!r}, "
            f"{len(self.dates)} dates {self.dates[0]} to {self.dates[-1]}, {self.height} x {self.width} "
            f"pixels, unit {self.unit!r} (x {self.factor:g} to mm), reference date "
            f"{self.ref_date or 'unknown'}, reference point {self.ref_point or 'unknown'}, "
            f"CRS {self.crs.to_string()}; sign {SIGN_NOTE}."
        )


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is a pinned dependency
        raise InputError(
            "Reading HDF5 products needs the Python package h5py: install it (Debian: apt install "
            "python3-h5py; pip: pip install h5py) in QGIS's Python or in the worker's Python."
        ) from e
    return h5py


def _text(value) -> str:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace").strip()
    if isinstance(value, np.ndarray):
        if value.shape == ():
            return _text(value[()])
        return " ".join(_text(v) for v in value.ravel())
    return str(value).strip()


def _scalar(f, name: str, path: str) -> float:
    try:
        return float(np.asarray(f[name][()]).ravel()[0])
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise InputError(
            f"INPUT: {os.path.basename(path)!r} looks like a LiCSBAS cum.h5 but its dataset {name!r} "
            "is missing or not a number; give the cum.h5 written by LiCSBAS13_sb_inv.py."
        ) from e


def _date(token, what: str) -> dt.date:
    text = _text(token)
    d = parse_date(text[:8]) if len(text) >= 8 else None
    if d is None:
        raise InputError(f"{what}: {text!r} is not a date (YYYYMMDD).")
    return d


def mintpy_crs(attrs: dict[str, str]) -> CRS:
    """CRS of a geocoded MintPy file: EPSG, else UTM_ZONE (e.g. 11N / 33S), else WGS84."""
    epsg = attrs.get("EPSG", "").strip()
    if epsg and epsg.lower() not in ("none", "nan"):
        return CRS.from_epsg(int(float(epsg)))
    zone = attrs.get("UTM_ZONE", "").strip().upper()
    if zone and zone not in ("NONE", "NAN"):
        num, hemi = int("".join(c for c in zone if c.isdigit())), zone[-1]
        return CRS.from_epsg((32700 if hemi == "S" else 32600) + num)
    return CRS.from_epsg(4326)


def _mintpy(f, path: str) -> Product:
    name = os.path.basename(path)
    attrs = {k: _text(v) for k, v in f.attrs.items()}
    ds = f["timeseries"]
    if ds.ndim != 3:
        raise InputError(f"INPUT: {name!r}: dataset 'timeseries' has {ds.ndim} dimensions, not 3.")
    if "X_FIRST" not in attrs or "Y_FIRST" not in attrs:
        raise InputError(
            f"INPUT: {name!r} is a MintPy time series in radar geometry (no X_FIRST/Y_FIRST "
            "attributes); geocode it first with MintPy's geocode.py (e.g. geocode.py "
            f"{name} -l inputs/geometryRadar.h5) and import the geo_{name} it writes."
        )
    dates = [_date(d, f"INPUT: {name!r} dataset 'date'") for d in f["date"][:]]
    transform = Affine(
        float(attrs["X_STEP"]),
        0.0,
        float(attrs["X_FIRST"]),
        0.0,
        float(attrs["Y_STEP"]),
        float(attrs["Y_FIRST"]),
    )
    unit = attrs.get("UNIT", "m") or "m"
    if unit.lower() not in UNIT_FACTORS:
        raise InputError(
            f"INPUT: {name!r} has UNIT={unit!r}; a displacement time series in m, cm or mm is expected."
        )
    ref = ""
    if "REF_LAT" in attrs and "REF_LON" in attrs:
        ref = f"lat {attrs['REF_LAT']}, lon {attrs['REF_LON']}"
    if "REF_Y" in attrs and "REF_X" in attrs:
        ref = (ref + "; " if ref else "") + f"row {attrs['REF_Y']}, col {attrs['REF_X']}"
    ref_date = parse_date(attrs["REF_DATE"]) if attrs.get("REF_DATE") else dates[0]
    return Product(
        path, MINTPY, "timeseries", dates, mintpy_crs(attrs), transform, int(ds.shape[2]),
        int(ds.shape[1]), unit, UNIT_FACTORS[unit.lower()], ref_date, ref,
    )  # fmt: skip


def _licsbas(f, path: str) -> Product:
    name = os.path.basename(path)
    ds = f["cum"]
    if ds.ndim != 3:
        raise InputError(f"INPUT: {name!r}: dataset 'cum' has {ds.ndim} dimensions, not 3.")
    if "corner_lat" not in f:
        raise InputError(
            f"INPUT: {name!r} is a LiCSBAS cum.h5 without corner_lat/corner_lon (not geocoded); "
            "run LiCSBAS on the geocoded (GEOC) LiCSAR products."
        )
    dates = [_date(d, f"INPUT: {name!r} dataset 'imdates'") for d in f["imdates"][:]]
    lat, lon = _scalar(f, "corner_lat", path), _scalar(f, "corner_lon", path)
    dlat, dlon = _scalar(f, "post_lat", path), _scalar(f, "post_lon", path)
    # corner_* is the centre of the first pixel: the GeoTIFF origin is half a post before it
    transform = Affine(dlon, 0.0, lon - dlon / 2.0, 0.0, dlat, lat - dlat / 2.0)
    ref = f"refarea {_text(f['refarea'][()])} (x1:x2/y1:y2, pixels)" if "refarea" in f else ""
    return Product(
        path, LICSBAS, "cum", dates, CRS.from_epsg(4326), transform, int(ds.shape[2]), int(ds.shape[1]),
        "mm", 1.0, dates[0], ref,
    )  # fmt: skip


def detect(path: str) -> Product:
    """Recognise a product by its content (datasets and attributes), not its name."""
    h5py = _h5py()
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise InputError(f"INPUT: {path!r} is not a file.")
    if not h5py.is_hdf5(path):
        raise InputError(
            f"INPUT: {name!r} is not an HDF5 file. importproduct reads MintPy timeseries*.h5 and "
            "LiCSBAS cum*.h5; for single-date GeoTIFF/NetCDF grids use 'Build deformation stack', "
            "for point tables 'Points to deformation stack'."
        )
    with h5py.File(path, "r") as f:
        if "timeseries" in f and "date" in f:
            prod = _mintpy(f, path)
        elif "cum" in f and "imdates" in f:
            prod = _licsbas(f, path)
        else:
            found = ", ".join(sorted(f.keys())[:12]) or "none"
            raise InputError(
                f"INPUT: {name!r} is an HDF5 file but neither a MintPy time series (datasets "
                f"'timeseries' and 'date') nor a LiCSBAS cum.h5 (datasets 'cum' and 'imdates'); "
                f"its datasets: {found}. Give MintPy's (geo_)timeseries*.h5 or LiCSBAS's cum*.h5."
            )
        layers = int(f[prod.dataset].shape[0])
    if len(prod.dates) != layers:
        raise InputError(
            f"INPUT: {name!r} lists {len(prod.dates)} dates for {layers} layers of "
            f"{prod.dataset!r}; the file is inconsistent."
        )
    check_increasing(prod.dates, f"INPUT {name!r}")
    return prod


def reference_index(prod: Product, date: dt.date | None) -> int | None:
    """Index of the re-reference `date` among the product's dates (None: keep the product's)."""
    if date is None:
        return None
    if date not in prod.dates:
        near = min(prod.dates, key=lambda d: abs((d - date).days))
        raise InputError(
            f"REFERENCE_DATE: {date} is not an acquisition of {os.path.basename(prod.path)!r} "
            f"(closest: {near}); give one of its dates ({prod.dates[0]} to {prod.dates[-1]})."
        )
    return prod.dates.index(date)


def _row_strips(prod: Product, run: Run, max_bytes: int | None) -> list[tuple[int, int]]:
    limit = max_bytes if max_bytes is not None else run.working_bytes(3)
    rows = max(1, int(limit // max(1, 4 * len(prod.dates) * prod.width)))
    return [(r0, min(prod.height, r0 + rows)) for r0 in range(0, prod.height, rows)]


def import_product(
    prod: Product,
    out_path: str,
    ref_index: int | None = None,
    run: Run = QUIET,
    max_bytes: int | None = None,
) -> float:
    """Write `prod` as a stack (mm, NaN nodata) at `out_path`, strip by strip (sized from the
    memory budget of `run`; `max_bytes` overrides it: tests); with `ref_index`, every pixel is
    re-referenced to that date (said in a message of `run`). Returns the largest |value| written
    (mm). `run` reports progress and cancels."""
    from rasterio.windows import Window

    from .stack import StackWriter

    tags = prod.tags()
    if ref_index is not None:
        tags["REFERENCE_DATE"] = format_date(prod.dates[ref_index])
        run.message(
            f"Re-referenced every pixel to {prod.dates[ref_index]} (its value at that date subtracted)."
        )
    elif prod.ref_date:
        tags["REFERENCE_DATE"] = format_date(prod.ref_date)
    biggest = 0.0
    strips = _row_strips(prod, run, max_bytes)
    with _h5py().File(prod.path, "r") as f:
        ds = f[prod.dataset]
        with StackWriter(
            out_path, prod.dates, prod.crs, prod.transform, prod.width, prod.height, "mm", tags
        ) as w:
            for i, (r0, r1) in enumerate(strips):
                run.check_cancelled()
                block = np.asarray(ds[:, r0:r1, :], dtype="float32") * np.float32(prod.factor)
                if ref_index is not None:
                    block -= block[ref_index : ref_index + 1]
                finite = block[np.isfinite(block)]
                if finite.size:
                    biggest = max(biggest, float(np.abs(finite).max()))
                w.write(block, window=Window(0, r0, prod.width, r1 - r0))
                run.progress((i + 1) / len(strips))
    return biggest


def write_incidence(
    geometry: str, prod: Product, out_path: str, log: Callable[[str], None] = lambda s: None
) -> str:
    """Write the ``incidenceAngle`` of a MintPy geometry file (degrees) as a one-band GeoTIFF on the
    product's grid; refused when the geometry file is on another grid."""
    import rasterio

    from .stack import atomic_path

    name = os.path.basename(geometry)
    h5py = _h5py()
    if not os.path.isfile(geometry) or not h5py.is_hdf5(geometry):
        raise InputError(f"GEOMETRY: {geometry!r} is not an HDF5 file; give MintPy's geometryGeo.h5.")
    with h5py.File(geometry, "r") as f:
        if "incidenceAngle" not in f:
            raise InputError(
                f"GEOMETRY: {name!r} has no dataset 'incidenceAngle'; give MintPy's geometryGeo.h5."
            )
        ds = f["incidenceAngle"]
        attrs = {k: _text(v) for k, v in f.attrs.items()}
        shape = tuple(int(v) for v in ds.shape[-2:])
        same = shape == (prod.height, prod.width)
        if same and "X_FIRST" in attrs:
            same = np.allclose(
                [float(attrs["X_FIRST"]), float(attrs["Y_FIRST"])],
                [prod.transform.c, prod.transform.f],
                atol=1e-6 * abs(prod.transform.a),
            )
        if not same:
            raise InputError(
                f"GEOMETRY: {name!r} ({shape[0]} x {shape[1]}) is not on the grid of the time series "
                f"({prod.height} x {prod.width}); give the geometryGeo.h5 geocoded with the same "
                "lookup table (mintpy/geo/geo_geometryRadar.h5 or geometryGeo.h5)."
            )
        data = np.asarray(ds[...], dtype="float32").reshape(shape)
    data[(data <= 0) | (data >= 90)] = np.nan
    profile = dict(
        driver="GTiff", count=1, height=prod.height, width=prod.width, dtype="float32",
        crs=prod.crs, transform=prod.transform, nodata=float("nan"), compress="deflate",
    )  # fmt: skip
    with atomic_path(out_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)
        dst.set_band_description(1, "incidence angle")
        dst.set_band_unit(1, "degrees")
        dst.update_tags(UNITS="degrees", SOURCE=name)
    log(f"Incidence angle (degrees) from {name} written to {out_path}.")
    return out_path


PLAUSIBLE_MM = 1.0  # a whole stack within +-1 mm is more likely metres labelled as mm


def run_import(
    params: dict,
    log: Callable[[str], None] = lambda s: None,
    progress: Callable[[float], None] = lambda p: None,
    is_canceled: Callable[[], bool] = lambda: False,
) -> dict:
    """:func:`import_stack` for a caller with callbacks (the worker's ``importproduct``): `progress`
    receives 0..100, the budget is ``params["mb"]``."""

    def report(fraction: float | None, message: str | None) -> None:
        if message:
            log(message)
        if fraction is not None:
            progress(100.0 * fraction)

    return import_stack(params, log, Run(budget_mb=params.get("mb"), report=report, cancelled=is_canceled))


def import_stack(params: dict, log: Callable[[str], None] = lambda s: None, run: Run = QUIET) -> dict:
    """The whole import, for the Processing adapter and the worker alike. `params`: ``input``,
    ``output``, optional ``geometry`` + ``output_incidence``, ``reference_date`` (text); `run`
    gives the memory budget, progress and cancel. Log lines that start with "Warning" are
    warnings. Returns the algorithm's outputs."""
    text = str(params.get("reference_date") or "").strip()
    ref_date = parse_date(text) if text else None
    if text and ref_date is None:
        raise InputError(f"REFERENCE_DATE: {text!r} is not a date; write YYYYMMDD or YYYY-MM-DD.")
    prod = detect(params["input"])
    log("Recognised " + prod.describe())
    ref_index = reference_index(prod, ref_date)
    geometry, inc_out = params.get("geometry") or "", params.get("output_incidence") or ""
    if inc_out and not geometry:
        raise InputError("OUTPUT_INCIDENCE needs GEOMETRY (MintPy's geometryGeo.h5).")
    if geometry and not inc_out:
        log("Warning: GEOMETRY is given but OUTPUT_INCIDENCE is not: no incidence written.")
    if geometry and inc_out:
        # checked (and written) first: a bad GEOMETRY leaves no stack behind
        write_incidence(geometry, prod, inc_out, log)
    biggest = import_product(prod, params["output"], ref_index, run)
    if 0 < biggest <= PLAUSIBLE_MM:
        log(
            f"Warning: every value lies within +-{biggest:.3g} mm after converting from the "
            f"product's unit {prod.unit!r}; if the file is in metres although it says "
            f"{prod.unit!r}, fix its UNIT attribute (MintPy) and import again."
        )
    used = prod.dates[ref_index] if ref_index is not None else prod.ref_date
    out = {
        "OUTPUT": params["output"],
        "PROCESSOR": prod.processor,
        "DATES": ",".join(format_date(d) for d in prod.dates),
        "FIRST_DATE": format_date(prod.dates[0]),
        "LAST_DATE": format_date(prod.dates[-1]),
        "REFERENCE_DATE_USED": format_date(used) if used else "",
        "DATE_COUNT": len(prod.dates),
    }
    if geometry and inc_out:
        out["OUTPUT_INCIDENCE"] = inc_out
    return out


def h5py_usable() -> bool:
    """Whether h5py works in this process. Inside qgis_process / QGIS, a pip wheel of h5py (which
    bundles its own libhdf5) clashes with the libhdf5 GDAL already loaded ("Not a datatype"):
    the import then runs in the worker's Python instead (Debian's python3-h5py has no clash)."""
    try:
        import h5py

        h5py.h5t.py_create("f4")
    except (ImportError, ValueError, AttributeError, TypeError):
        return False
    return True
