"""Format-faithful MintPy and LiCSBAS HDF5 files for the tests, written with h5py.

MintPy ``geo_timeseries*.h5`` follows MintPy's documentation of its HDF5 layout
(https://mintpy.readthedocs.io/en/latest/api/data_structure/, and the MintPy-tutorial notebook
io/read_hdf5.ipynb): datasets ``date`` (bytes YYYYMMDD), ``bperp`` and ``timeseries`` (float32,
dates x rows x cols, metres, zero at REF_DATE); attributes stored as strings (FILE_TYPE, UNIT, LENGTH,
WIDTH, X_FIRST/Y_FIRST = upper-left corner of the first pixel, X_STEP/Y_STEP, X_UNIT/Y_UNIT,
REF_DATE, REF_LAT/REF_LON, REF_Y/REF_X, EPSG or UTM_ZONE for projected products (HyP3)).
``geometryGeo.h5`` has ``incidenceAngle`` (degrees) on the same grid.

LiCSBAS ``cum.h5`` follows what ``LiCSBAS13_sb_inv.py`` writes (github.com/yumorishita/LiCSBAS):
datasets ``imdates`` (int32 YYYYMMDD), ``cum`` (float32, dates x rows x cols, mm, zero at the first
date), ``vel``, ``corner_lat``/``corner_lon`` (centre of the first pixel, GAMMA EQA
convention), ``post_lat`` (negative)/``post_lon``, ``refarea`` ('x1:x2/y1:y2').
"""

from __future__ import annotations

import datetime as dt

import numpy as np

DATES = [dt.date(2019, 1, 6), dt.date(2019, 1, 18), dt.date(2019, 1, 30), dt.date(2019, 2, 11)]


def series(n_dates: int = 4, rows: int = 5, cols: int = 6, ref: int = 0, seed: int = 0) -> np.ndarray:
    """Cumulative displacement (arbitrary units) zero at date `ref`, with a NaN pixel."""
    rng = np.random.default_rng(seed)
    data = np.cumsum(rng.normal(0, 1, (n_dates, rows, cols)), axis=0).astype("float32")
    data -= data[ref : ref + 1]
    data[:, 1, 2] = np.nan
    return data


def write_mintpy(
    path,
    data_m: np.ndarray,
    dates=DATES,
    geo: str = "geographic",
    ref: int = 0,
    radar: bool = False,
) -> dict[str, str]:
    """A MintPy (geo_)timeseries.h5 with `data_m` in metres; `geo` = geographic | epsg | utm_zone.
    Returns the attributes written."""
    import h5py

    n, rows, cols = data_m.shape
    attrs = {
        "FILE_TYPE": "timeseries",
        "UNIT": "m",
        "LENGTH": str(rows),
        "WIDTH": str(cols),
        "PROCESSOR": "isce",
        "ORBIT_DIRECTION": "ASCENDING",
        "REF_DATE": dates[ref].strftime("%Y%m%d"),
        "REF_Y": "3",
        "REF_X": "4",
    }
    if not radar:
        if geo == "geographic":
            attrs.update(X_FIRST="139.95", Y_FIRST="35.95", X_STEP="0.000833334", Y_STEP="-0.000833334")
            attrs.update(X_UNIT="degrees", Y_UNIT="degrees", REF_LAT="35.9475", REF_LON="139.9535")
        else:
            attrs.update(X_FIRST="500010.0", Y_FIRST="4300020.0", X_STEP="30.0", Y_STEP="-30.0")
            attrs.update(X_UNIT="meters", Y_UNIT="meters")
            if geo == "epsg":
                attrs["EPSG"] = "32611"
            else:
                attrs["UTM_ZONE"] = "11N"
    with h5py.File(str(path), "w") as f:
        f.create_dataset("date", data=np.array([d.strftime("%Y%m%d").encode() for d in dates], dtype="S8"))
        f.create_dataset("bperp", data=np.linspace(-50, 50, n).astype("float32"))
        f.create_dataset("timeseries", data=data_m.astype("float32"), chunks=(n, 2, cols))
        for k, v in attrs.items():
            f.attrs[k] = v
    return attrs


def write_geometry(path, rows: int, cols: int, attrs: dict[str, str]) -> np.ndarray:
    import h5py

    inc = np.linspace(30, 45, rows * cols, dtype="float32").reshape(rows, cols)
    with h5py.File(str(path), "w") as f:
        f.create_dataset("incidenceAngle", data=inc)
        f.create_dataset("height", data=np.zeros((rows, cols), "float32"))
        f.attrs["FILE_TYPE"] = "geometry"
        for k in ("X_FIRST", "Y_FIRST", "X_STEP", "Y_STEP", "LENGTH", "WIDTH"):
            if k in attrs:
                f.attrs[k] = attrs[k]
    return inc


LICSBAS_CORNER = (35.95, 139.95)  # lat, lon of the centre of the first pixel
LICSBAS_POST = (-0.001, 0.00125)


def write_licsbas(path, data_mm: np.ndarray, dates=DATES) -> None:
    import h5py

    with h5py.File(str(path), "w") as f:
        f.create_dataset("imdates", data=[np.int32(d.strftime("%Y%m%d")) for d in dates])
        f.create_dataset("cum", data=data_mm.astype("float32"), compression="gzip")
        f.create_dataset("vel", data=(data_mm[-1] / 0.1).astype("float32"))
        f.create_dataset("corner_lat", data=LICSBAS_CORNER[0])
        f.create_dataset("corner_lon", data=LICSBAS_CORNER[1])
        f.create_dataset("post_lat", data=LICSBAS_POST[0])
        f.create_dataset("post_lon", data=LICSBAS_POST[1])
        f.create_dataset("refarea", data="2:3/1:2")
