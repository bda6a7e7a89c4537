"""Point time series -> stack, without QGIS: real StaMPS and DePSI exports, synthetic grids."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from deformation_forecast.core.errors import Cancelled, InputError
from deformation_forecast.core.points import (
    Grid,
    grid_for,
    grid_points,
    points_to_stack,
    read_points_csv,
    series_from_table,
    stamps_date,
    utm_epsg,
)
from deformation_forecast.core.run import Run
from deformation_forecast.core.stack import read_info, read_stack


def stamps_csv(shared):
    return os.path.join(shared, "maoxian_stamps", "Maoxian_SBAS.csv")


def depsi_csv(shared):
    return os.path.join(shared, "amsterdam_depsi", "example.csv")


# -- real files ----------------------------------------------------------------------------------


def test_stamps_export_loads(shared_data):
    s = read_points_csv(stamps_csv(shared_data))
    assert s.fmt == "stamps"
    assert s.count == 608
    assert len(s.dates) == 38
    assert s.dates[0] == dt.date(2014, 11, 26) and s.dates[-1] == dt.date(2017, 6, 19)
    assert s.crs.to_epsg() == 4326
    assert s.reference == pytest.approx((103.6858, 32.0086))
    # first point of the file: lon, lat, velocity, then the series (mm, kept as is)
    assert (s.x[0], s.y[0]) == pytest.approx((103.658, 32.07503))
    assert s.values[0, 0] == pytest.approx(-21.47769)
    assert s.values[0, -1] == pytest.approx(6.472936)


def test_stamps_date_conversion():
    assert stamps_date(735928) == dt.date(2014, 11, 26)
    assert stamps_date(736864) == dt.date(2017, 6, 19)


def test_depsi_export_loads_metres_to_mm(shared_data):
    s = read_points_csv(depsi_csv(shared_data))
    assert s.fmt == "fields" and s.units == "m"
    assert s.count == 2500
    assert len(s.dates) == 11
    assert s.dates[0] == dt.date(2016, 3, 27) and s.dates[-1] == dt.date(2016, 7, 15)
    # point L00003234P00006283 (first row): d_20160407 = 0.0018 m, d_20160623 = -0.00381 m
    assert (s.x[0], s.y[0]) == pytest.approx((4.91159904, 52.34548473))
    assert s.values[0, 1] == pytest.approx(1.8)
    assert s.values[0, 8] == pytest.approx(-3.81)
    assert np.all(s.values[:, 0] == 0)  # first date is the reference
    # a_*/h2ph_* columns are not dates
    assert s.values.shape == (2500, 11)


def test_depsi_units_can_be_overridden(shared_data):
    s = read_points_csv(depsi_csv(shared_data), units="mm")
    assert s.values[0, 1] == pytest.approx(0.0018)


def test_real_files_grid_to_utm(shared_data, tmp_path):
    s = read_points_csv(stamps_csv(shared_data))
    out = str(tmp_path / "maoxian.tif")
    res = points_to_stack(s, out, 20.0, method="idw")
    assert res["crs"].to_epsg() == 32648  # 103.7E, 32.1N
    info = read_info(out)
    assert info.dates == s.dates and info.crs.to_epsg() == 32648 and info.units == "mm"
    arr = read_stack(out)
    assert np.isfinite(arr).any() and np.isnan(arr).any()
    assert np.nanmin(arr) >= s.values.min() - 1e-3 and np.nanmax(arr) <= s.values.max() + 1e-3

    d = read_points_csv(depsi_csv(shared_data))
    res = points_to_stack(d, str(tmp_path / "ams.tif"), 10.0)
    assert res["crs"].to_epsg() == 32631  # 4.9E, 52.3N


def test_utm_zones():
    assert utm_epsg(103.7, 32.1) == 32648
    assert utm_epsg(4.9, 52.3) == 32631
    assert utm_epsg(-70.6, -33.4) == 32719
    assert utm_epsg(-180.0, 0.0) == 32601
    assert utm_epsg(179.99, 10.0) == 32660


# -- synthetic -----------------------------------------------------------------------------------


def _table(xs, ys, values, dates, names=("x", "y")):
    header = [names[0], names[1]] + ["D" + d.strftime("%Y%m%d") for d in dates]
    # plain Python floats: numpy 2 spells repr(np.float64(1.5)) "np.float64(1.5)"
    rows = [[float(x), float(y), *map(float, v)] for x, y, v in zip(xs, ys, values, strict=True)]
    return header, rows


DATES = [dt.date(2020, 1, 1) + dt.timedelta(days=12 * i) for i in range(4)]


def test_nearest_round_trips_a_grid_exactly(tmp_path):
    rng = np.random.default_rng(3)
    ps, x0, y1 = 25.0, 500_000.0, 4_300_000.0
    truth = rng.normal(size=(4, 7, 9)).astype("float32")
    truth[:, 2, 3] = np.nan  # an incoherent point -> skipped -> NaN cell
    r, c = np.mgrid[0:7, 0:9]
    xs = (x0 + (c + 0.5) * ps).ravel()
    ys = (y1 - (r + 0.5) * ps).ravel()
    header, rows = _table(xs, ys, truth.reshape(4, -1).T, DATES)
    s = series_from_table(header, rows, crs="EPSG:32647")
    assert s.skipped == 1 and s.count == 62
    out = str(tmp_path / "grid.tif")
    res = points_to_stack(s, out, ps, method="nearest", radius=0.5 * ps)
    assert (res["width"], res["height"]) == (9, 7)
    info = read_info(out)
    assert info.transform.almost_equals(Affine(ps, 0, x0, 0, -ps, y1))
    assert info.crs.to_epsg() == 32647
    np.testing.assert_array_equal(read_stack(out), truth)


def test_idw_of_linear_field_is_linear():
    # points on a fine jittered grid sampling f = 2x - 3y + 5; IDW within a symmetric
    # neighbourhood of a linear field reproduces it up to the sampling asymmetry
    rng = np.random.default_rng(0)
    px = rng.uniform(0, 1000, 20_000)
    py = rng.uniform(0, 1000, 20_000)
    f = lambda x, y: 0.02 * x - 0.03 * y + 5  # noqa: E731
    vals = np.stack([f(px, py), 2 * f(px, py)], axis=1)
    transform, w, h = grid_for(np.array([100.0, 900.0]), np.array([100.0, 900.0]), 50.0)
    out = grid_points(px, py, vals, Grid(transform, w, h), method="idw", radius=60.0)
    cy, cx = np.mgrid[0:h, 0:w]
    gx = transform.c + (cx + 0.5) * transform.a
    gy = transform.f + (cy + 0.5) * transform.e
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], f(gx, gy), atol=0.25)  # field spans 50 units; seen: 0.14
    np.testing.assert_allclose(out[1], 2 * f(gx, gy), atol=0.5)


def _brute_idw(px, py, vals, transform, w, h, radius):
    out = np.full((vals.shape[1], h, w), np.nan)
    for r in range(h):
        for c in range(w):
            cx = transform.c + (c + 0.5) * transform.a
            cy = transform.f + (r + 0.5) * transform.e
            d = np.hypot(px - cx, py - cy)
            near = d <= radius
            if not near.any():
                continue
            if np.any(d[near] == 0):
                near &= d == 0
                wts = np.ones(near.sum())
            else:
                wts = 1.0 / d[near] ** 2
            for k in range(vals.shape[1]):
                v = vals[near, k]
                ok = np.isfinite(v)
                if ok.any():
                    out[k, r, c] = np.sum(wts[ok] * v[ok]) / np.sum(wts[ok])
    return out


def test_idw_matches_brute_force():
    rng = np.random.default_rng(7)
    px = rng.uniform(0, 300, 150)
    py = rng.uniform(0, 200, 150)
    vals = rng.normal(size=(150, 3)) * 10
    vals[rng.random(vals.shape) < 0.1] = np.nan  # missing dates of some points
    transform, w, h = grid_for(px, py, 10.0)
    px[0], py[0] = transform.c + 5 * 10.0 + 5.0, transform.f - 3 * 10.0 - 5.0  # exactly on a centre
    got = grid_points(px, py, vals, Grid(transform, w, h), method="idw", radius=17.0)
    want = _brute_idw(px, py, vals, transform, w, h, 17.0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert np.isnan(got).any()  # the radius leaves holes


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(8)
    px, py = rng.uniform(0, 300, 80), rng.uniform(0, 300, 80)
    vals = rng.normal(size=(80, 2))
    transform, w, h = grid_for(px, py, 7.0)
    got = grid_points(px, py, vals, Grid(transform, w, h), method="nearest", radius=14.0)
    for r in range(0, h, 5):
        for c in range(0, w, 3):
            cx, cy = transform.c + (c + 0.5) * 7.0, transform.f - (r + 0.5) * 7.0
            d = np.hypot(px - cx, py - cy)
            if d.min() > 14.0:
                assert np.isnan(got[:, r, c]).all()
            else:
                np.testing.assert_allclose(got[:, r, c], vals[np.argmin(d)], rtol=1e-6)


# -- bad input -----------------------------------------------------------------------------------


def test_csv_without_date_fields(tmp_path):
    p = tmp_path / "nodates.csv"
    p.write_text("x,y,velocity\n1,2,3\n")
    with pytest.raises(InputError, match="no date fields"):
        read_points_csv(str(p), crs="EPSG:32647")


def test_csv_without_coordinates(tmp_path):
    p = tmp_path / "nocoords.csv"
    p.write_text("id,D20200101,D20200113\n1,0,1\n")
    with pytest.raises(InputError, match="no coordinate columns"):
        read_points_csv(str(p))


def test_projected_csv_needs_crs(tmp_path):
    p = tmp_path / "xy.csv"
    p.write_text("X,Y,D20200101,D20200113\n500000,4300000,0,1\n")
    with pytest.raises(InputError, match="CSV_CRS"):
        read_points_csv(str(p))
    assert read_points_csv(str(p), crs="EPSG:32647").count == 1


def test_non_numeric_cell_names_field_and_row(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("lon,lat,d_20200101,d_20200113\n10,50,0,1\n10.1,50,0,oops\n")
    with pytest.raises(InputError, match=r"'d_20200113' in row 3 holds 'oops'"):
        read_points_csv(str(p))


def test_semicolon_csv_lower_case_and_nan(tmp_path):
    p = tmp_path / "semi.csv"
    p.write_text("Longitude;Latitude;20200113;20200101\n10;50;1;0\n10.1;50;NaN;\n10.2;50.1;2;NaN\n")
    s = read_points_csv(str(p))
    assert s.dates == [dt.date(2020, 1, 1), dt.date(2020, 1, 13)]  # sorted
    assert s.count == 2 and s.skipped == 1
    np.testing.assert_array_equal(s.values[1], [np.nan, 2.0])


def test_duplicate_dates_rejected():
    with pytest.raises(InputError, match="Duplicate date"):
        series_from_table(["lon", "lat", "D20200101", "d_20200101"], [[1, 2, 0, 0]])


def test_all_rows_empty():
    with pytest.raises(InputError, match="no point with a displacement"):
        series_from_table(["lon", "lat", "D20200101"], [[1, 2, "NaN"]])


def test_too_fine_pixel_size_rejected(tmp_path):
    s = series_from_table(["x", "y", "D20200101"], [[5e5, 4.3e6, 1], [6e5, 4.4e6, 2]], crs="EPSG:32647")
    out = tmp_path / "huge.tif"
    with pytest.raises(InputError, match="PIXEL_SIZE"):
        points_to_stack(s, str(out), 0.5)
    assert not out.exists()


def test_cancel_writes_nothing(tmp_path):
    # coordinates inside the area of use of UTM 47N (points far outside it are refused)
    s = series_from_table(
        ["x", "y", "D20200101"], [[500000, 4300000, 1], [500100, 4300100, 2]], crs="EPSG:32647"
    )
    out = tmp_path / "c.tif"
    with pytest.raises(Cancelled):
        points_to_stack(s, str(out), 10.0, run=Run(cancelled=lambda: True))
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tif")]


def test_output_is_a_valid_geotiff(tmp_path):
    s = series_from_table(
        ["x", "y", "D20200101", "D20200201"],
        [[500000, 4300000, 1, 2], [500030, 4300000, 3, 4]],
        crs="EPSG:32647",
    )
    out = str(tmp_path / "o.tif")
    points_to_stack(s, out, 10.0)
    with rasterio.open(out) as src:
        assert src.count == 2 and np.isnan(src.nodata)
        assert src.descriptions == ("2020-01-01", "2020-02-01")
        assert src.read(1)[0, 0] == 1 and src.read(2)[0, 3] == 4


def _write_csv(path, header, rows, delim=","):
    with open(path, "w", encoding="utf-8") as f:
        f.write(delim.join(header) + "\n")
        for r in rows:
            f.write(
                delim.join("" if isinstance(v, float) and np.isnan(v) else repr(float(v)) for v in r) + "\n"
            )


def test_csv_is_read_row_by_row_across_chunks_and_within_its_values_memory(tmp_path):
    """9001 points (two full chunks of 4096 rows and a part) x 60 dates: the series equals what
    was written, row order kept, and reading it takes about the values' own memory (as strings
    the cells would take ~8x that)."""
    import tracemalloc

    rng = np.random.default_rng(7)
    n, nd = 9001, 60
    dates = [dt.date(2019, 1, 1) + dt.timedelta(days=6 * i) for i in range(nd)]
    xs = rng.uniform(5e5, 6e5, n).round(2)
    ys = rng.uniform(4.3e6, 4.4e6, n).round(2)
    vals = rng.normal(-5, 3, size=(n, nd)).round(3)
    vals[4095, :] = np.nan  # incoherent, at a chunk's last row: skipped
    vals[4096, 7] = np.nan  # one missing cell at the next chunk's first row
    header, rows = _table(xs, ys, vals, dates)
    path = str(tmp_path / "many.csv")
    _write_csv(path, header, rows)
    del rows
    tracemalloc.start()
    try:
        s = read_points_csv(path, crs="EPSG:32647", units="mm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    keep = np.ones(n, bool)
    keep[4095] = False
    assert s.count == n - 1 and s.skipped == 1 and s.dates == dates
    np.testing.assert_array_equal(s.x, xs[keep])
    np.testing.assert_array_equal(s.y, ys[keep])
    np.testing.assert_array_equal(s.values, vals[keep])
    values_bytes = n * nd * 8
    assert peak < 3.5 * values_bytes, (
        f"peak {peak / 2**20:.1f} MB for {values_bytes / 2**20:.1f} MB of values"
    )


def test_stamps_layout_with_layer_coordinates_given_as_the_rows_are_read():
    """A layer's coordinates arrive as its rows are read (a generator filling a list): the StaMPS
    reference row's point is dropped with it."""
    header = ["lon", "lat", "v", "export_res_1", "export_res_2"]
    head = [100.0, 30.0, float("nan"), 737000.0, 737012.0]
    data = [[100.1, 30.1, -1.0, 0.0, -2.0], [100.2, 30.2, -3.0, 0.0, -4.0]]
    xy: list[tuple[float, float]] = []
    pts = [(0.0, 0.0), (10.0, 20.0), (30.0, 40.0)]

    def rows():
        for p, r in zip(pts, [head, *data], strict=True):
            xy.append(p)
            yield r

    s = series_from_table(header, rows(), fmt="stamps", crs="EPSG:32647", xy=xy, first_line=1)
    np.testing.assert_array_equal(np.column_stack([s.x, s.y]), [[10, 20], [30, 40]])
    np.testing.assert_array_equal(s.values, [[0.0, -2.0], [0.0, -4.0]])
    assert s.dates == [stamps_date(737000.0), stamps_date(737012.0)]
    with pytest.raises(InputError, match="StaMPS"):
        series_from_table(header, iter([head]), fmt="stamps", crs="EPSG:4326")
