"""LOS -> vertical: dv = dLOS / cos(theta), constant or raster angle, bad angles refused."""

import math

import numpy as np
import pytest
import rasterio
from affine import Affine

from deformation_forecast.core.errors import InputError
from deformation_forecast.core.los import (
    check_incidence,
    convert_stack,
    incidence_on_grid,
    los_to_vertical,
)
from deformation_forecast.core.stack import read_info, read_stack
from tests.conftest import plain_raster


def test_divides_by_cosine():
    assert los_to_vertical(-10.0, 60.0) == pytest.approx(-20.0)
    assert los_to_vertical(np.array([1.0]), 34.17)[0] == pytest.approx(1 / math.cos(math.radians(34.17)))


@pytest.mark.parametrize("theta", [0, 90, -5, 95, float("nan")])
def test_incidence_outside_0_90_is_refused(theta):
    with pytest.raises(InputError, match=r"strictly between 0 and 90"):
        check_incidence(theta)


def test_convert_stack_keeps_dates(write_stack, tmp_path):
    data = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 4) - 10
    data[1, 0, 0] = np.nan
    path = write_stack(data)
    out = str(tmp_path / "v.tif")
    res = convert_stack(path, out, incidence=34.17)
    assert res["resampled"] is False
    assert read_info(out).dates == read_info(path).dates
    np.testing.assert_allclose(read_stack(out), data / math.cos(math.radians(34.17)), rtol=1e-6)


def test_convert_single_raster_without_date(tmp_path):
    p = plain_raster(tmp_path / "velocity.tif", np.full((1, 2, 3), -8.0), descriptions=["velocity"])
    out = str(tmp_path / "vv.tif")
    convert_stack(p, out, incidence=60)
    np.testing.assert_allclose(read_stack(out), -16.0)
    with rasterio.open(out) as src:
        assert src.descriptions[0] == "velocity"


def _incidence(path, values, res=20.0, origin=(500000.0, 4300000.0), crs="EPSG:32647"):
    return plain_raster(
        path, values, transform=Affine(res, 0, origin[0], 0, -res, origin[1]), crs=crs, nodata=-9999
    )


def test_incidence_raster_same_grid_and_resampled(write_stack, tmp_path):
    data = np.full((2, 6, 8), -10.0, dtype="float32")
    path = write_stack(data)
    theta = np.linspace(30, 45, 48).reshape(6, 8)
    inc = _incidence(tmp_path / "inc.tif", theta)
    out = str(tmp_path / "v.tif")
    assert convert_stack(path, out, incidence_path=inc)["resampled"] is False
    np.testing.assert_allclose(
        read_stack(out), np.repeat(-10.0 / np.cos(np.radians(theta))[None], 2, 0), rtol=1e-5
    )

    # a coarser incidence grid covering the stack: resampled onto the stack's grid
    coarse = _incidence(
        tmp_path / "coarse.tif", np.full((4, 5), 40.0), res=50.0, origin=(499950.0, 4300050.0)
    )
    info = read_info(path)
    arr, resampled = incidence_on_grid(coarse, info)
    assert resampled and arr.shape == (6, 8)
    np.testing.assert_allclose(arr, 40.0, rtol=1e-6)


def test_incidence_raster_outside_range_and_radians(write_stack, tmp_path):
    path = write_stack(np.zeros((2, 2, 2)))
    info = read_info(path)
    bad = _incidence(tmp_path / "bad.tif", [[30, 30], [95, -9999]])
    with pytest.raises(InputError, match=r"1 pixel\(s\) have an incidence angle outside \(0, 90\)"):
        incidence_on_grid(bad, info)
    rad = _incidence(tmp_path / "rad.tif", [[0.6, 0.6], [0.7, 0.7]])
    with pytest.raises(InputError, match="radians"):
        incidence_on_grid(rad, info)
