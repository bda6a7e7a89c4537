"""Benchmarks core: CSV forms, circle means, pairing, and known-noise accuracy."""

import datetime as dt

import numpy as np
import pytest

from deformation_forecast.core.benchmarks import (
    benchmarks_from_table,
    compare,
    plot_comparison,
    read_benchmarks,
    sample_circles,
)
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.stack import read_info
from tests.conftest import make_dates

ORIGIN = (500000.0, 4300000.0)
RES = 20.0


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_wide_and_long_forms_agree(tmp_path):
    wide = _write(tmp_path / "w.csv", "id,x,y,D20180101,D20180113\nA,1,2,0,-3.5\nB,3,4,0,\n")
    long = _write(
        tmp_path / "l.csv",
        "name;easting;northing;date;value\nA;1;2;2018-01-01;0\nA;1;2;2018-01-13;-3.5\nB;3;4;2018-01-01;0\n",
    )
    a, b = read_benchmarks(wide), read_benchmarks(long)
    assert a.form == "wide" and b.form == "long"
    for bm in (a, b):
        assert bm.ids == ["A", "B"]
        assert bm.dates == [dt.date(2018, 1, 1), dt.date(2018, 1, 13)]
        np.testing.assert_array_equal(bm.x, [1, 3])
        np.testing.assert_array_equal(bm.values[0], [0, -3.5])
        assert np.isnan(bm.values[1, 1])
    geo = read_benchmarks(_write(tmp_path / "g.csv", "ID,Lon,Lat,20180101\n1,102.1,38.5,0\n"))
    assert geo.geographic and geo.coord_columns == ("Lon", "Lat")


def test_csv_without_coordinates_or_dates(tmp_path):
    with pytest.raises(InputError, match="no coordinate columns"):
        read_benchmarks(_write(tmp_path / "a.csv", "id,east_m,D20180101\n1,2,3\n"))
    with pytest.raises(InputError, match="no survey dates"):
        read_benchmarks(_write(tmp_path / "b.csv", "id,x,y,first,second\n1,2,3,4,5\n"))
    with pytest.raises(InputError, match="not a number"):
        read_benchmarks(_write(tmp_path / "c.csv", "id,x,y,D20180101\n1,2,3,abc\n"))
    bm = benchmarks_from_table(["id", "D20180101"], [["p", 1.0]], xy=[(5.0, 6.0)])
    assert bm.x[0] == 5.0 and bm.values[0, 0] == 1.0


def _grid_xy(col, row):
    return ORIGIN[0] + (col + 0.5) * RES, ORIGIN[1] - (row + 0.5) * RES


def test_circle_mean_nearest_fallback_outside_and_nan(write_stack):
    h, w = 20, 20
    data = np.zeros((2, h, w), dtype="float32")
    data[1] = np.arange(h * w).reshape(h, w)
    data[:, 15:, 15:] = np.nan
    path = write_stack(data)
    info = read_info(path)
    x0, y0 = _grid_xy(5, 5)
    xs = np.array([x0, x0 + 3, ORIGIN[0] - 100, *_grid_xy(17, 17)[:1]])
    ys = np.array([y0, y0 + 2, y0, _grid_xy(17, 17)[1]])
    s = sample_circles(path, info, xs, ys, radius=20.0)  # a pixel centre and its 4 neighbours
    assert s.method == ["circle", "circle", "outside", "nan"]
    assert s.pixels[0] == 5
    assert s.values[0, 1] == pytest.approx(data[1, 5, 5])
    s2 = sample_circles(path, info, np.array([x0 + 7, x0 + 4]), np.array([y0 + 2, y0]), radius=5.0)
    assert s2.method == ["nearest", "circle"]
    assert s2.pixels.tolist() == [1, 1]
    assert s2.values[0, 1] == pytest.approx(data[1, 5, 5])
    assert np.isnan(s.values[2]).all() and np.isnan(s.values[3]).all()


def test_circles_report_progress_and_stop_on_cancel(write_stack):
    """sample_circles takes a core.run.Run: progress per benchmark up to 1, Cancelled when cancelled;
    a small budget reads a window's bands in groups with the same means."""
    from deformation_forecast.core.errors import Cancelled
    from deformation_forecast.core.run import Run

    data = np.arange(6 * 20 * 20, dtype="float32").reshape(6, 20, 20)
    path = write_stack(data)
    info = read_info(path)
    xs, ys = zip(*(_grid_xy(c, c) for c in (3, 9, 14)), strict=True)
    seen = []
    s = sample_circles(path, info, xs, ys, 20.0, run=Run(report=lambda f, m: seen.append(f)))
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(s.values[1], data[:, 9, 9])  # the mean of a centre and its 4 neighbours
    with pytest.raises(Cancelled):
        sample_circles(path, info, xs, ys, 20.0, run=Run(cancelled=lambda: True))


def _scene(write_stack, rng, noise, n_bm=15, inc=34.17):
    """A LOS stack from a vertical truth, and benchmarks = truth at survey dates + noise."""
    h, w, n = 60, 60, 30
    dates = make_dates(n)
    yy, xx = np.mgrid[0:h, 0:w]
    bowl = -np.exp(-((xx - 30) ** 2 + (yy - 30) ** 2) / (2 * 12.0**2))
    t = np.arange(n) / (n - 1)
    vert = 150 * bowl[None] * t[:, None, None]  # up to 150 mm of subsidence
    los = vert * np.cos(np.radians(inc)) + 5.0  # arbitrary LOS reference offset
    path = write_stack(los.astype("float32"), dates=dates)
    cols = rng.integers(10, 50, n_bm)
    rows = rng.integers(10, 50, n_bm)
    surveys = [dates[k] + dt.timedelta(days=int(rng.integers(-3, 4))) for k in range(0, n, 3)]
    ks = list(range(0, n, 3))
    header = ["id", "x", "y"] + ["D" + d.strftime("%Y%m%d") for d in surveys]
    table = []
    for b in range(n_bm):
        x, y = _grid_xy(cols[b], rows[b])
        truth = vert[ks, rows[b], cols[b]]
        table.append([f"BM{b}", x, y] + list(truth + 20.0 + rng.normal(0, noise, len(ks))))
    return path, header, table


def test_known_noise_gives_known_mae_and_r(write_stack):
    rng = np.random.default_rng(5)
    noise = 2.0
    path, header, table = _scene(write_stack, rng, noise)
    bms = benchmarks_from_table(header, table)
    info = read_info(path)
    s = sample_circles(path, info, bms.x, bms.y, radius=1.0)  # single pixel: no smoothing bias
    cmp = compare(bms, s, info.dates, 34.17, max_days=6)
    ov = cmp.overall
    # the difference of two noisy values (reference and later survey): sd = noise * sqrt(2)
    expected_mae = noise * np.sqrt(2) * np.sqrt(2 / np.pi)
    assert ov["n"] == 15 * 9
    assert ov["mae"] == pytest.approx(expected_mae, rel=0.25)
    assert ov["r"] > 0.98
    assert abs(ov["bias"]) < 1.5
    assert all(r["diff"] == 0 for r in cmp.rows if r["reference"])
    assert len(cmp.summary) == 15 and all(s["status"] == "ok" for s in cmp.summary)


def test_reference_date_and_skips(write_stack, tmp_path):
    rng = np.random.default_rng(6)
    path, header, table = _scene(write_stack, rng, 0.0, n_bm=4)
    table[1][1] = ORIGIN[0] - 1000  # outside
    bms = benchmarks_from_table(header, table)
    info = read_info(path)
    s = sample_circles(path, info, bms.x, bms.y, radius=1.0)
    cmp = compare(bms, s, info.dates, 34.17, max_days=6, reference_date=bms.dates[3])
    assert cmp.overall["skipped"] == 1
    assert any("outside the raster" in w for w in cmp.warnings)
    assert cmp.overall["mae"] < 1e-3
    refs = [r for r in cmp.rows if r["reference"]]
    assert {r["survey_date"] for r in refs} == {bms.dates[3]}
    with pytest.raises(InputError, match="reference date"):
        compare(bms, s, info.dates, 34.17, max_days=6, reference_date=dt.date(2000, 1, 1))
    with pytest.raises(InputError, match="between 0 and 90"):
        compare(bms, s, info.dates, 0.0)
    out = plot_comparison(cmp, str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").stat().st_size > 1000 and out.endswith("fig.png")
