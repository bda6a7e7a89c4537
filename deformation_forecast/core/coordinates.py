"""Point coordinates without silent mistakes: which columns, inside the CRS's area of use, and the
spacing of the points (issue 14, section 2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rasterio.crs import CRS

from .errors import InputError

OUTSIDE_MARGIN_DEG = 1.0  # the area of use's bounding box, widened by this much


def area_of_use(crs: CRS) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) in degrees of the EPSG area of use of `crs`, None when unknown."""
    epsg = crs.to_epsg()
    if not epsg:
        return None
    try:
        from osgeo import osr
    except ImportError:  # GDAL's Python bindings are optional here
        return None
    srs = osr.SpatialReference()
    if srs.ImportFromEPSG(int(epsg)) != 0:
        return None
    a = srs.GetAreaOfUse()
    if a is None:
        return None
    return (a.west_lon_degree, a.south_lat_degree, a.east_lon_degree, a.north_lat_degree)


def outside_area(x: np.ndarray, y: np.ndarray, crs: CRS) -> np.ndarray:
    """Boolean mask of points outside the area of use of `crs` (or not valid coordinates at all)."""
    from rasterio.warp import transform as warp_transform

    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    if crs.is_geographic:
        lon, lat = x, y
    else:
        with np.errstate(all="ignore"):
            try:
                lon, lat = (
                    np.asarray(v, dtype="float64")
                    for v in warp_transform(crs, "EPSG:4326", x.tolist(), y.tolist())
                )
            except Exception:  # noqa: BLE001 - GDAL refuses coordinates it cannot invert
                return np.ones(x.shape, dtype=bool)
    bad = ~(np.isfinite(lon) & np.isfinite(lat)) | (np.abs(lat) > 90) | (np.abs(lon) > 360)
    box = area_of_use(crs)
    if box is not None:
        w, s, e, n = box
        m = OUTSIDE_MARGIN_DEG
        lon_ok = (lon >= w - m) & (lon <= e + m) if w <= e else (lon >= w - m) | (lon <= e + m)
        bad |= ~lon_ok | (lat < s - m) | (lat > n + m)
    return bad


def check_inside(x, y, crs: CRS, columns: str, what: str) -> int:
    """Refuse (InputError) when most points lie outside the area of use of `crs`, naming `columns`
    and the CRS; returns how many lie outside (a few may, near its border)."""
    bad = outside_area(x, y, crs)
    n = int(bad.sum())
    if n and n * 2 > bad.size:
        i = int(np.argmax(bad))
        box = area_of_use(crs)
        where = f" (area of use lon {box[0]:g}..{box[2]:g}, lat {box[1]:g}..{box[3]:g})" if box else ""
        raise InputError(
            f"{what}: {n} of {bad.size} points in columns {columns} lie outside the area of use of "
            f"{crs.to_string()}{where}, e.g. ({float(np.asarray(x)[i]):.6g}, {float(np.asarray(y)[i]):.6g}). "
            "Give the CRS those columns are in (CSV_CRS), or the other coordinate columns."
        )
    return n


def choose_columns(
    names: Sequence[str], pairs: Sequence[tuple[str, str, bool]], crs: CRS | None
) -> tuple[int, int, bool] | None:
    """The (x, y) column pair for `crs`: with both lon/lat-like and projected pairs present (EPSG
    layouts: latitude, longitude, easting, northing), a geographic CRS takes the lon/lat pair and a
    projected one the other; without a CRS, the first pair of `pairs` found."""
    lower = [n.strip().lower() for n in names]
    found = [(lower.index(xn), lower.index(yn), ll) for xn, yn, ll in pairs if xn in lower and yn in lower]
    if not found:
        return None
    if crs is not None:
        for f in found:
            if f[2] == bool(crs.is_geographic):
                return f
    return found[0]


def median_spacing(x: np.ndarray, y: np.ndarray) -> float:
    """Median distance from each point to its nearest neighbour (CRS units); NaN under 2 points."""
    from scipy.spatial import cKDTree

    pts = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    if len(pts) < 2:
        return float("nan")
    d, _ = cKDTree(pts).query(pts, k=2)
    d = d[:, 1]
    d = d[d > 0]
    return float(np.median(d)) if d.size else float("nan")
