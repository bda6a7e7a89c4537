"""Shared test helpers. Core tests need neither QGIS nor TensorFlow; see tests/processing,
tests/e2e and tests/ml for the fixtures of the other layers."""

from __future__ import annotations

import datetime as dt
import os
import sys

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def shared_data() -> str:
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def make_dates(n: int, start: dt.date = dt.date(2018, 1, 1), step: int = 12) -> list[dt.date]:
    return [start + dt.timedelta(days=step * i) for i in range(n)]


def plain_raster(
    path,
    data,
    transform=None,
    crs: str | None = "EPSG:32647",
    nodata: float | None = None,
    descriptions: list[str] | None = None,
    tags: dict[str, str] | None = None,
    dtype: str = "float32",
) -> str:
    """Write `data` ((rows, cols) or (bands, rows, cols)) as a plain GeoTIFF with rasterio, not as a
    stack: no dates unless given as band `descriptions` or dataset `tags`. `transform` defaults to
    the write_stack fixture's grid (20 m, upper-left corner (500000, 4300000)); crs=None writes no
    CRS, nodata=None no nodata value. Returns the path as a string."""
    import rasterio
    from affine import Affine

    data = np.asarray(data, dtype=dtype)
    if data.ndim == 2:
        data = data[None]
    if transform is None:
        transform = Affine(20, 0, 500000, 0, -20, 4300000)
    with rasterio.open(
        str(path),
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
        for band, text in enumerate(descriptions or [], start=1):
            dst.set_band_description(band, text)
        if tags:
            dst.update_tags(**tags)
    return str(path)


@pytest.fixture
def write_stack(tmp_path):
    """Factory: write_stack(data, dates=None, name='stack.tif', crs='EPSG:32647', res=20, origin=(500000, 4300000))."""
    from affine import Affine

    from deformation_forecast.core.stack import write_stack as _write

    def factory(data, dates=None, name="stack.tif", crs="EPSG:32647", res=20.0, origin=(500000.0, 4300000.0)):
        data = np.asarray(data, dtype="float32")
        if data.ndim == 2:
            data = data[None]
        dates = dates or make_dates(data.shape[0])
        path = str(tmp_path / name)
        _write(path, data, dates, crs, Affine(res, 0, origin[0], 0, -res, origin[1]))
        return path

    return factory
