"""Format-faithful GMTSAR SBAS time-series grids for the tests (issue 14).

GMTSAR's ``sbas`` (gmtsar/sbas_utils.c, ``write_output_ts``) writes one grid per acquisition through
``GMT_Write_Data`` with GMT's default grid format (``nf``: netCDF-4, COARDS/CF): the file is named
``disp_`` + the scene id of ``scene.tab`` printed ``%07lld`` (year and day of year, ``2017246``) +
``.grd``; the values are the cumulative LOS displacement in **mm** (``-79.58 * wavelength * disp``),
NaN where the pixel was incoherent; the title is ``Displacement Time Series 001`` (1-based), the
remark ``Displacement Time Series (mm)``. ``sbas`` works in radar coordinates (x = range, y =
azimuth, no CRS); GMTSAR's ``proj_ra2ll.csh`` turns each into ``disp_2017246_ll.grd`` on a
longitude/latitude grid. GMT stores a grid as ``z(y, x)`` float32 with 1-D coordinate variables
``x``/``y`` (``lon``/``lat`` for geographic grids), **y increasing** (the first row is the
southernmost), gridline registration (the coordinates are those of the nodes), ``_FillValue`` NaN
and ``actual_range`` attributes. Written here with GDAL's multidimensional netCDF API.
"""

from __future__ import annotations

import datetime as dt

import numpy as np


def scene_id(date: dt.date) -> str:
    """GMTSAR's scene id: year and day of year, %07d (2017-09-03 -> '2017246')."""
    return f"{date.year:04d}{date.timetuple().tm_yday:03d}"


def write_grd(
    path: str,
    z: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    index: int = 1,
    geographic: bool = True,
) -> str:
    """A GMT netCDF-4 grid as GMTSAR writes it. `z` is (rows, cols) with row 0 at the NORTH (as a
    GeoTIFF); `x`/`y` are the node coordinates of the columns and of those rows (y decreasing):
    the file stores them south to north, as GMT does."""
    from osgeo import gdal

    gdal.UseExceptions()
    xs, ys = ("lon", "lat") if geographic else ("x", "y")
    drv = gdal.GetDriverByName("netCDF")
    ds = drv.CreateMultiDimensional(str(path), [], ["FORMAT=NC4"])
    root = ds.GetRootGroup()
    for key, value in (
        ("Conventions", "CF-1.7"),
        ("title", f"Displacement Time Series {index:03d}"),
        ("history", "sbas intf.tab scene.tab 88 28 700 1000 -smooth 5.0 -wavelength 0.0554658"),
        ("description", "Displacement Time Series (mm)"),
        ("GMT_version", "6.4.0 [64-bit]"),
    ):
        root.CreateAttribute(key, [], gdal.ExtendedDataType.CreateString()).Write(value)
    dx = root.CreateDimension(xs, "HORIZONTAL_X" if geographic else None, None, len(x))
    dy = root.CreateDimension(ys, "HORIZONTAL_Y" if geographic else None, None, len(y))
    f64 = gdal.ExtendedDataType.Create(gdal.GDT_Float64)
    north_up = np.asarray(y, dtype="float64")
    for dim, name, values, long_name, unit in (
        (dx, xs, np.asarray(x, "float64"), "longitude" if geographic else "x", "degrees_east"),
        (dy, ys, north_up[::-1].copy(), "latitude" if geographic else "y", "degrees_north"),
    ):
        var = root.CreateMDArray(name, [dim], f64)
        var.Write(values)
        _attr(var, "long_name", long_name)
        if geographic:  # GMT 6 marks geographic axes the CF way
            _attr(var, "units", unit)
            _attr(var, "standard_name", long_name)
            _attr(var, "axis", "X" if name == xs else "Y")
        rng = var.CreateAttribute("actual_range", [2], f64)
        rng.Write([float(values.min()), float(values.max())])
    zvar = root.CreateMDArray("z", [dy, dx], gdal.ExtendedDataType.Create(gdal.GDT_Float32))
    zvar.SetNoDataValueDouble(float("nan"))  # _FillValue = NaN
    south_up = np.ascontiguousarray(np.asarray(z, "float32")[::-1])
    zvar.Write(south_up)
    _attr(zvar, "long_name", "z")
    finite = south_up[np.isfinite(south_up)]
    rng = zvar.CreateAttribute("actual_range", [2], f64)
    rng.Write([float(finite.min()), float(finite.max())] if finite.size else [np.nan, np.nan])
    del zvar, root, ds
    return str(path)


def _attr(var, key: str, value: str) -> None:
    from osgeo import gdal

    var.CreateAttribute(key, [], gdal.ExtendedDataType.CreateString()).Write(value)
