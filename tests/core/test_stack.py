import datetime as dt
import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rasterio.windows import Window

from deformation_forecast.core.errors import InputError
from deformation_forecast.core.stack import (
    StackWriter,
    atomic_path,
    read_info,
    read_pixel_series,
    read_stack,
    write_stack,
)
from tests.conftest import make_dates, plain_raster

GRID_10M = Affine(10, 0, 0, 0, -10, 0)  # the grid of the plain rasters written below


def test_round_trip_keeps_values_dates_grid(write_stack):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 30, 40)).astype("float32")
    data[2, 3, 4] = np.nan
    path = write_stack(data)
    info = read_info(path)
    assert info.dates == make_dates(5)
    assert info.shape == (5, 30, 40)
    assert info.crs.to_epsg() == 32647
    assert info.res == (20.0, 20.0)
    back = read_stack(path)
    np.testing.assert_array_equal(back, data)
    # windowed read of two bands
    part = read_stack(path, Window(4, 3, 5, 2), bands=[1, 2])
    np.testing.assert_array_equal(part, data[1:3, 3:5, 4:9])
    with rasterio.open(path) as src:
        assert src.descriptions[0] == "2018-01-01"
        assert np.isnan(src.nodata)
        assert src.tags(1)["DATE"] == "2018-01-01"


def test_nodata_value_becomes_nan(tmp_path):
    path = plain_raster(
        tmp_path / "nd.tif",
        [[[1, -9999, 3], [4, 5, 6]]],
        transform=GRID_10M,
        nodata=-9999,
        descriptions=["20200101"],
    )
    arr = read_stack(path)
    assert np.isnan(arr[0, 0, 1]) and arr[0, 0, 0] == 1


def test_no_dates_is_refused_with_the_fix(tmp_path):
    path = plain_raster(tmp_path / "nodates.tif", np.zeros((2, 2, 3)), transform=GRID_10M)
    with pytest.raises(InputError, match=r"band\(s\) \[1, 2\] carry no date.*Build deformation stack"):
        read_info(path)
    assert read_info(path, require_dates=False).dates == [None, None]


def test_dates_from_dataset_tag_and_file_name(tmp_path):
    path = plain_raster(
        tmp_path / "x.tif",
        np.zeros((2, 2, 2)),
        transform=GRID_10M,
        tags={"DATES": "2019-01-01,2019-01-13"},
    )
    assert read_info(path).dates == [dt.date(2019, 1, 1), dt.date(2019, 1, 13)]
    single = plain_raster(tmp_path / "cum_20190125.tif", np.zeros((1, 2, 2)), transform=GRID_10M)
    assert read_info(single).dates == [dt.date(2019, 1, 25)]


def test_unsorted_or_duplicate_dates_refused(write_stack):
    d = make_dates(3)
    with pytest.raises(InputError, match="not in time order"):
        read_info(write_stack(np.zeros((3, 2, 2)), [d[0], d[2], d[1]], name="u.tif"))
    with pytest.raises(InputError, match="Duplicate date"):
        read_info(write_stack(np.zeros((3, 2, 2)), [d[0], d[0], d[1]], name="d.tif"))


def test_writer_failure_leaves_nothing(tmp_path):
    out = str(tmp_path / "out.tif")
    with pytest.raises(RuntimeError):
        with StackWriter(out, make_dates(2), "EPSG:32647", Affine(10, 0, 0, 0, -10, 0), 4, 4) as w:
            w.write_band(0, np.zeros((4, 4)))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_atomic_path_publishes_only_on_success(tmp_path):
    target = tmp_path / "f.txt"
    with atomic_path(str(target)) as tmp:
        open(tmp, "w").write("x")
        assert not target.exists()
    assert target.read_text() == "x"
    with pytest.raises(ValueError):
        with atomic_path(str(tmp_path / "g.txt")) as tmp:
            open(tmp, "w").write("y")
            raise ValueError
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hnp.arrays(
        "float32",
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=12),
        elements=st.floats(-1e4, 1e4, width=32) | st.just(float("nan")),
    ),
    st.integers(1, 30),
)
def test_round_trip_property(tmp_path_factory, data, step):
    dates = make_dates(data.shape[0], step=step)
    path = str(tmp_path_factory.mktemp("rt") / "s.tif")
    write_stack(path, data, dates, "EPSG:4326", Affine(0.001, 0, 100, 0, -0.001, 30))
    info = read_info(path)
    assert info.dates == dates
    # exact nodata sentinels (-9999, 9999, ...; core.validity) and then spikes (away by more than
    # SPIKE_MM from both neighbouring dates and back) read back as NaN, nothing else changes
    from deformation_forecast.core.validity import sentinel_mask, spike_mask

    expected = np.where(sentinel_mask(data), np.float32(np.nan), data)
    expected[spike_mask(expected)] = np.nan
    np.testing.assert_array_equal(read_stack(path), expected)


def test_read_pixel_series_reads_the_clicked_pixel(write_stack):
    data = np.arange(3 * 4 * 5, dtype="float32").reshape(3, 4, 5)
    path = write_stack(data, res=10.0, origin=(1000.0, 2000.0))
    # pixel (row 2, col 3) spans x 1030..1040, y 1980..1970
    dates, vals = read_pixel_series(path, 1035.0, 1975.0)
    np.testing.assert_array_equal(vals, data[:, 2, 3])
    assert dates == make_dates(3)
    assert read_pixel_series(path, 999.0, 1975.0) is None
    assert read_pixel_series(path, 1035.0, 2000.5) is None


def test_crop_to_an_extent_equals_the_array_slice(tmp_path):
    """extent_window snaps map bounds outwards to whole pixels and clips them to the raster;
    crop_stack copies that window in strips (a tiny budget: many) with the dates, units and a
    shifted transform; an extent off the raster is refused with both extents."""
    from deformation_forecast.core.stack import crop_stack, extent_window, write_stack

    rng = np.random.default_rng(5)
    data = rng.normal(size=(7, 60, 50)).astype("float32")
    data[2, 30:33, 20:22] = np.nan
    tr = Affine(20, 0, 500000, 0, -20, 4300000)
    path = str(tmp_path / "s.tif")
    write_stack(path, data, make_dates(7), "EPSG:32647", tr)
    info = read_info(path)
    # x 500410..500790 -> cols 20.5..39.5 -> 20..40; y 4299390..4299010 -> rows 30.5..49.5 -> 30..50
    win = extent_window(info, (500410.0, 4299010.0, 500790.0, 4299390.0))
    assert (win.col_off, win.row_off, win.width, win.height) == (20, 30, 20, 20)
    out = crop_stack(info, win, str(tmp_path / "c.tif"), mb=64)
    np.testing.assert_array_equal(read_stack(out.path), data[:, 30:50, 20:40])
    assert out.dates == info.dates and out.units == info.units and out.crs == info.crs
    assert out.transform == Affine(20, 0, 500400, 0, -20, 4299400)
    # partly outside: clipped to the raster
    win = extent_window(info, (499000.0, 4298000.0, 500100.0, 4299900.0))
    assert (win.col_off, win.row_off, win.width, win.height) == (0, 5, 5, 55)
    with pytest.raises(InputError, match=r"EXTENT .* covers 0 x \d+ pixels .* choose an area inside"):
        extent_window(info, (600000.0, 4299000.0, 601000.0, 4299500.0))
