import datetime as dt
import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from qgis.core import QgsProcessingException

from deformation_forecast.core.stack import read_info, read_stack


def _single(path, value, crs="EPSG:32647"):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=6,
        height=5,
        count=1,
        dtype="float32",
        crs=crs,
        transform=Affine(20, 0, 500000, 0, -20, 4300000),
    ) as dst:
        dst.write(np.full((1, 5, 6), value, dtype="float32"))
    return str(path)


def test_buildstack_from_names(run_alg, tmp_path):
    a = _single(tmp_path / "cum_20180125.tif", 3.0)
    b = _single(tmp_path / "cum_20180101.tif", 1.0)
    c = _single(tmp_path / "cum_20180113.tif", 2.0)
    out = str(tmp_path / "stack.tif")
    res = run_alg("buildstack", {"LAYERS": [a, b, c], "UNITS": 1, "OUTPUT": out})
    assert res["OUTPUT"] == out
    info = read_info(out)
    assert info.dates == [dt.date(2018, 1, 1), dt.date(2018, 1, 13), dt.date(2018, 1, 25)]
    np.testing.assert_array_equal(read_stack(out)[:, 2, 3], [1000, 2000, 3000])  # m -> mm


def test_buildstack_explicit_dates(run_alg, tmp_path):
    a = _single(tmp_path / "first.tif", 1.0)
    b = _single(tmp_path / "second.tif", 2.0)
    out = str(tmp_path / "s.tif")
    run_alg("buildstack", {"LAYERS": [a, b], "DATES": "2019-03-01, 20190313", "OUTPUT": out})
    assert read_info(out).dates == [dt.date(2019, 3, 1), dt.date(2019, 3, 13)]


def test_buildstack_bad_inputs_write_nothing(run_alg, tmp_path):
    a = _single(tmp_path / "nodate.tif", 1.0)
    out = str(tmp_path / "bad.tif")
    with pytest.raises(QgsProcessingException, match="no date in the name of 'nodate.tif'"):
        run_alg("buildstack", {"LAYERS": [a], "OUTPUT": out})
    with pytest.raises(QgsProcessingException, match="not a date"):
        run_alg("buildstack", {"LAYERS": [a], "DATES": "yesterday", "OUTPUT": out})
    dup1 = _single(tmp_path / "x_20180101.tif", 1.0)
    dup2 = _single(tmp_path / "y_20180101.tif", 1.0)
    with pytest.raises(QgsProcessingException, match="Duplicate date 2018-01-01"):
        run_alg("buildstack", {"LAYERS": [dup1, dup2], "OUTPUT": out})
    assert not os.path.exists(out)
    assert not [f for f in os.listdir(tmp_path) if "partial" in f]


def test_buildstack_resamples_irregular_dates(run_alg, tmp_path):
    # 0, 10, 30 days with values 0, 10, 30: linear in time, so any regular grid reads its own day
    for day, v in (("20200101", 0.0), ("20200111", 10.0), ("20200131", 30.0)):
        _single(tmp_path / f"c_{day}.tif", v)
    layers = sorted(str(p) for p in tmp_path.glob("c_*.tif"))
    out = str(tmp_path / "reg.tif")
    run_alg("buildstack", {"LAYERS": layers, "INTERVAL_DAYS": 6, "OUTPUT": out})
    info = read_info(out)
    assert info.dates[-1] == dt.date(2020, 1, 31)
    assert all((b - a).days == 6 for a, b in zip(info.dates, info.dates[1:], strict=False))
    expected = [(d - dt.date(2020, 1, 1)).days for d in info.dates]
    np.testing.assert_allclose(read_stack(out)[:, 0, 0], expected, atol=1e-4)
    assert [f for f in os.listdir(tmp_path) if f.startswith("tmp")] == []
