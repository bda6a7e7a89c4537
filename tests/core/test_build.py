import datetime as dt
import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from deformation_forecast.core.build import build_stack, sources_with_dates
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.run import Run
from deformation_forecast.core.stack import read_info, read_stack


def _single(path, value, crs="EPSG:32647", transform=Affine(20, 0, 500000, 0, -20, 4300000), shape=(10, 12)):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=shape[1],
        height=shape[0],
        count=1,
        dtype="float32",
        crs=crs,
        transform=transform,
    ) as dst:
        dst.write(np.asarray(value, dtype="float32").reshape(1, *shape))
    return str(path)


def test_dates_from_names_sorted(tmp_path):
    b = _single(tmp_path / "cum_20180113.tif", np.full((10, 12), 2.0))
    a = _single(tmp_path / "cum_2018-01-01.tif", np.full((10, 12), 1.0))
    src = sources_with_dates([b, a])
    assert [s.date for s in src] == [dt.date(2018, 1, 1), dt.date(2018, 1, 13)]
    out = build_stack(src, str(tmp_path / "stack.tif"), units_factor=1000.0)
    info = read_info(out)
    assert info.dates == [dt.date(2018, 1, 1), dt.date(2018, 1, 13)]
    np.testing.assert_array_equal(read_stack(out)[:, 0, 0], [1000.0, 2000.0])


def test_misaligned_raster_is_warped_onto_the_first(tmp_path):
    yy, xx = np.mgrid[0:10, 0:12]
    plane = (xx * 2.0 + yy).astype("float32")
    a = _single(tmp_path / "a_20180101.tif", plane)
    # same plane, on a grid shifted by exactly one pixel: warping must give the same values
    shifted = _single(
        tmp_path / "b_20180113.tif", plane + 2.0, transform=Affine(20, 0, 500020, 0, -20, 4300000)
    )
    logs = []
    run = Run(report=lambda fraction, message: logs.append(message) if message else None)
    out = build_stack(sources_with_dates([a, shifted]), str(tmp_path / "s.tif"), run=run)
    assert any("warped" in m for m in logs)
    arr = read_stack(out)
    np.testing.assert_allclose(arr[1, :, 1:], plane[:, 1:], atol=1e-4)
    assert np.isnan(arr[1, :, 0]).all()


def test_bad_inputs_name_the_culprit(tmp_path):
    x = _single(tmp_path / "nodate.tif", np.zeros((10, 12)))
    with pytest.raises(InputError, match="no date in the name of 'nodate.tif'"):
        sources_with_dates([x])
    with pytest.raises(InputError, match="2 dates given for 1 rasters"):
        sources_with_dates([x], [dt.date(2018, 1, 1), dt.date(2018, 1, 2)])
    far = _single(
        tmp_path / "far_20180113.tif", np.zeros((10, 12)), transform=Affine(20, 0, 900000, 0, -20, 1000)
    )
    ok = _single(tmp_path / "ok_20180101.tif", np.zeros((10, 12)))
    with pytest.raises(InputError, match="does not overlap"):
        build_stack(sources_with_dates([ok, far]), str(tmp_path / "o.tif"))
    assert not os.path.exists(tmp_path / "o.tif")
    assert not [f for f in os.listdir(tmp_path) if "partial" in f]
