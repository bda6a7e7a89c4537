"""The memory budget (issue 8): parsing, windows, and every streamed algorithm giving the same
numbers with a tiny budget (many windows) as with a large one (one window), and staying under the
budget (tracemalloc: numpy reports its buffers to it)."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import tracemalloc

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from deformation_forecast.core import budget
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.run import Run
from deformation_forecast.core.stack import (
    StackInfo,
    StackWriter,
    iter_windows,
    read_info,
    read_stack,
    window_shape,
)
from tests.conftest import make_dates

X0, Y0, RES = 500000.0, 4300000.0, 20.0
TINY = 40_000  # float32 bytes of a window: several windows on every test stack


# -- parsing ------------------------------------------------------------------------------------------
def test_budget_explicit_env_default(monkeypatch):
    monkeypatch.delenv(budget.ENV, raising=False)
    assert budget.budget_mb() == budget.DEFAULT_MB == 2048
    assert budget.budget_mb(512) == 512
    assert budget.budget_mb(10) == budget.MIN_MB  # clamped
    monkeypatch.setenv(budget.ENV, "3000")
    assert budget.budget_mb() == 3000
    assert budget.budget_mb(1024) == 1024  # explicit wins over the variable
    assert budget.budget_mb(0) == 3000  # 0 = not set
    monkeypatch.setenv(budget.ENV, " 0 ")
    assert budget.budget_mb() == 2048
    monkeypatch.setenv(budget.ENV, "")
    assert budget.budget_bytes() == 2048 * 2**20


@pytest.mark.parametrize("bad", ["two GB", "-5", "nan", "inf", "1e999"])
def test_bad_variable_is_refused_with_the_fix(monkeypatch, bad):
    monkeypatch.setenv(budget.ENV, bad)
    with pytest.raises(InputError, match=rf"{budget.ENV}=.*number of MB"):
        budget.budget_mb()
    assert budget.budget_mb(700) == 700  # an explicit value does not read the variable


def test_working_bytes_and_gdal_cache_scale_with_the_budget():
    mb = 2**20
    assert budget.working_bytes(1, 2048) == (2048 - 256 - 256) * mb
    assert budget.working_bytes(16, 2048) == (2048 - 256 - 256) * mb // 16
    assert budget.gdal_cache_bytes(2048) == 256 * mb
    # a small budget keeps 5/8 for pixels (a quarter for the interpreter, an eighth for GDAL)
    assert budget.working_bytes(1, 64) == 40 * mb
    assert budget.gdal_cache_bytes(64) == 8 * mb
    assert budget.working_bytes(1e9, 64) == mb  # never below 1 MB
    import ctypes.util  # noqa: F401

    with budget.gdal_env(64):
        from rasterio.env import getenv

        assert int(getenv()["GDAL_CACHEMAX"]) == 8 * mb


# -- windows ------------------------------------------------------------------------------------------
def _info(h, w, count, block=(128, 128)):
    return StackInfo("x.tif", make_dates(count), None, Affine.identity(), w, h, block=block)


@pytest.mark.parametrize(
    "h,w,count,block,max_bytes",
    [
        (1000, 900, 50, (128, 128), 128 * 900 * 50 * 4 * 2),  # whole block rows, full width
        (1000, 900, 50, (128, 128), 128 * 256 * 50 * 4 + 7),  # one block row, two blocks across
        (1000, 900, 50, (128, 128), 5000),  # less than a block row
        (301, 257, 3, (1, 257), 257 * 3 * 4 * 10),  # striped file: strips of 10 rows
        (50, 40, 2, (0, 0), 10**9),  # unknown blocks, everything fits
    ],
)
def test_windows_tile_the_raster_once_within_the_bytes(h, w, count, block, max_bytes):
    info = _info(h, w, count, block)
    wins = iter_windows(info, max_bytes)
    cover = np.zeros((h, w), dtype=int)
    for win in wins:
        assert win.width * win.height * count * 4 <= max(max_bytes, count * 4)
        cover[win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width] += 1
    assert (cover == 1).all()
    rows, cols = window_shape(h, w, count * 4, max_bytes, block)
    if all(block) and max_bytes >= block[0] * block[1] * count * 4:
        assert rows % block[0] == 0 or rows == h
        assert cols % block[1] == 0 or cols == w


def test_windows_from_the_budget(monkeypatch):
    monkeypatch.setenv(budget.ENV, "64")
    info = _info(6000, 6000, 156)
    wins = iter_windows(info, copies=16)
    limit = budget.working_bytes(16)
    assert all(w.width * w.height * 156 * 4 <= limit for w in wins)
    big = iter_windows(info, copies=16, mb=4096)
    assert len(big) < len(wins)


# -- scenes -------------------------------------------------------------------------------------------
def _scene(n=18, h=150, w=170, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    bowl = np.exp(-(((yy - h / 2) / 30.0) ** 2 + ((xx - w / 2) / 40.0) ** 2))
    t = np.arange(n)[:, None, None]
    data = -60 * bowl * (1 - np.exp(-t / 12.0)) - 0.5 * t * bowl + rng.normal(scale=0.4, size=(n, h, w))
    data[:, :5, :7] = np.nan
    data[3, 40:45, 60:90] = np.nan
    return data.astype("float32")


def _write(path, data, dates=None, res=RES, origin=(X0, Y0), crs="EPSG:32647"):
    from deformation_forecast.core.stack import write_stack

    dates = dates or make_dates(data.shape[0])
    write_stack(str(path), data, dates, crs, Affine(res, 0, origin[0], 0, -res, origin[1]))
    return str(path)


def _incidence(path, h, w, res=RES, origin=(X0, Y0)):
    yy, xx = np.mgrid[:h, :w]
    theta = (30 + 10 * xx / w + 2 * yy / h).astype("float32")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="float32",
        crs="EPSG:32647",
        nodata=-9999,
        transform=Affine(res, 0, origin[0], 0, -res, origin[1]),
    ) as dst:
        dst.write(theta[None])
    return str(path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("budget")
    data = _scene()
    return {
        "dir": d,
        "data": data,
        "stack": _write(d / "stack.tif", data),
        # a coarser incidence raster on another grid (warped per window) and one on the stack's grid
        "inc_other": _incidence(d / "inc_other.tif", 70, 80, res=45.0, origin=(X0 - 30, Y0 + 25)),
        "inc_same": _incidence(d / "inc_same.tif", 150, 170),
    }


def _same(a, b, rtol=0.0):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b))
    if rtol:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0, equal_nan=True)
    else:
        np.testing.assert_array_equal(a, b)


def _count_windows(monkeypatch, module):
    seen = []
    real = module.iter_windows

    def spy(*a, **k):
        out = real(*a, **k)
        seen.append(len(out))
        return out

    monkeypatch.setattr(module, "iter_windows", spy)
    return seen


# -- every streamed algorithm: tiny budget == large budget ---------------------------------------------
@pytest.mark.parametrize("mode", ["linear", "annual"])
@pytest.mark.parametrize("inc", [None, "inc_other", "inc_same"])
def test_rates_tiny_budget_equals_large(scene, monkeypatch, mode, inc):
    from deformation_forecast.core import rates

    seen = _count_windows(monkeypatch, rates)
    d = scene["dir"]
    kw = dict(mode=mode, vertical=inc is not None, incidence_path=scene[inc] if inc else None)
    a = rates.deformation_rate(scene["stack"], str(d / f"r_big_{mode}_{inc}.tif"), run=Run(4096), **kw)
    b = rates.deformation_rate(scene["stack"], str(d / f"r_tiny_{mode}_{inc}.tif"), max_bytes=TINY, **kw)
    assert seen[0] == 1 and seen[1] > 10
    _same(read_stack(str(d / f"r_big_{mode}_{inc}.tif")), read_stack(str(d / f"r_tiny_{mode}_{inc}.tif")))
    assert a == b
    if mode == "linear" and inc is None:  # known answer: the in-memory least squares
        v, _ = rates.linear_velocity(scene["data"], rates.to_decimal_year(make_dates(18)))
        np.testing.assert_allclose(read_stack(str(d / f"r_tiny_{mode}_{inc}.tif"))[0], v, rtol=1e-5)


def test_los_vertical_tiny_budget_equals_large(scene):
    from deformation_forecast.core.los import convert_stack

    d = scene["dir"]
    for inc in ("inc_other", "inc_same"):
        a = convert_stack(
            scene["stack"], str(d / f"v_big_{inc}.tif"), incidence_path=scene[inc], run=Run(4096)
        )
        b = convert_stack(
            scene["stack"], str(d / f"v_tiny_{inc}.tif"), incidence_path=scene[inc], max_bytes=TINY
        )
        assert a == b
        _same(read_stack(str(d / f"v_big_{inc}.tif")), read_stack(str(d / f"v_tiny_{inc}.tif")))
    theta = 30 + 10 * np.mgrid[:150, :170][1] / 170 + 2 * np.mgrid[:150, :170][0] / 150
    want = scene["data"] / np.cos(np.radians(theta.astype("float32")))
    np.testing.assert_allclose(read_stack(str(d / "v_tiny_inc_same.tif")), want, rtol=1e-5)


def test_build_and_resample_tiny_budget_equal_large(scene, tmp_path):
    from deformation_forecast.core.build import Source, build_stack, resample_stack_file

    data = scene["data"][:4]
    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=12 * i) for i in range(4)]
    srcs = []
    for i in range(4):
        # the third raster on a grid shifted by 1.5 pixels: warped per window
        origin = (X0 + 30.0, Y0) if i == 2 else (X0, Y0)
        p = _write(tmp_path / f"d{i}.tif", data[i : i + 1], [dates[i]], origin=origin)
        srcs.append(Source(p, dates[i]))
    big = build_stack(srcs, str(tmp_path / "big.tif"), 1000.0, Run(4096))
    tiny = build_stack(srcs, str(tmp_path / "tiny.tif"), 1000.0, max_bytes=TINY // 10)
    _same(read_stack(big), read_stack(tiny))
    with rasterio.open(tiny) as raw:  # as written (random data: the reader would mask its > 500 mm spikes)
        np.testing.assert_allclose(raw.read()[[0, 1, 3]], data[[0, 1, 3]] * 1000, rtol=1e-6)
    n1 = resample_stack_file(scene["stack"], str(tmp_path / "rb.tif"), 5, Run(4096))
    n2 = resample_stack_file(scene["stack"], str(tmp_path / "rt.tif"), 5, max_bytes=TINY)
    assert n1 == n2 > 18
    _same(read_stack(str(tmp_path / "rb.tif")), read_stack(str(tmp_path / "rt.tif")))


def test_points_to_stack_tiny_budget_equals_whole_grid(tmp_path):
    from deformation_forecast.core.points import PointSeries, grid_for, grid_points, points_to_stack
    from deformation_forecast.core.run import Run

    rng = np.random.default_rng(5)
    n = 400
    x = X0 + rng.uniform(0, 3000, n)
    y = Y0 - rng.uniform(0, 2500, n)
    vals = rng.normal(size=(n, 6)).cumsum(axis=1)
    vals[::7, 2] = np.nan
    series = PointSeries(x=x, y=y, values=vals, dates=make_dates(6), crs=CRS.from_epsg(32647))
    for method in ("nearest", "idw"):
        tiny = points_to_stack(
            series, str(tmp_path / f"{method}_t.tif"), 25.0, method=method, radius=80, max_bytes=TINY // 4
        )
        big = points_to_stack(
            series, str(tmp_path / f"{method}_b.tif"), 25.0, method=method, radius=80, run=Run(budget_mb=4096)
        )
        assert tiny["filled"] == big["filled"] > 0
        _same(read_stack(str(tmp_path / f"{method}_t.tif")), read_stack(str(tmp_path / f"{method}_b.tif")))
        whole = grid_points(x, y, vals, grid_for(x, y, 25.0), method, 80.0)
        _same(read_stack(str(tmp_path / f"{method}_t.tif")), whole)


@pytest.mark.parametrize("mode", ["displacement", "velocity"])
def test_cross_orbit_tiny_budget_equals_large(scene, tmp_path, mode):
    from deformation_forecast.core.crossorbit import CrossOrbitOptions, Side, cross_orbit

    data = scene["data"]
    # B: 1.3 x the vertical of A, two days later, on a coarser grid (read through a WarpedVRT)
    b = data[:, ::2, ::2] * 1.3 + 4.0
    pb = _write(tmp_path / "b.tif", b, make_dates(18, start=dt.date(2018, 1, 3)), res=40.0)
    ia, ib = read_info(scene["stack"]), read_info(pb)
    a, b = Side(scene["stack"], ia, scene["inc_other"]), Side(pb, ib, 40.0)
    kw = dict(max_days=6, mode=mode, plot_points=3000)
    big = cross_orbit(a, b, CrossOrbitOptions(**kw), Run(4096))
    tiny = cross_orbit(a, b, CrossOrbitOptions(**kw, max_bytes=TINY // 4))
    assert len(big.rows) == len(tiny.rows)
    for r1, r2 in zip(big.rows, tiny.rows, strict=True):
        assert r1["n"] == r2["n"]
        for k in ("r", "slope", "intercept", "rmse", "bias", "max_abs"):
            assert r1[k] == pytest.approx(r2[k], rel=1e-9, abs=1e-12), k
    # the plot subsample does not depend on the windows
    _same(np.sort(big.sample_a), np.sort(tiny.sample_a))
    assert 3000 - len(big.pairs) < big.sample_a.size <= 3000  # a quota per date pair


def test_fault_lithology_tiny_budget_equals_large(scene, tmp_path):
    from dataclasses import replace

    from deformation_forecast.core.controls import ControlOptions, analyse_controls
    from deformation_forecast.core.faults import distance_grid, fault_profiles
    from deformation_forecast.core.lithology import rasterize_units, unit_stats
    from deformation_forecast.core.run import Run

    info = read_info(scene["stack"])
    fault = [np.array([[X0 + 900, Y0 + 10], [X0 + 1900, Y0 - 3100]])]
    poly = {
        "type": "Polygon",
        "coordinates": [[[X0, Y0], [X0 + 1500, Y0], [X0 + 1500, Y0 - 1800], [X0, Y0 - 1800], [X0, Y0]]],
    }
    poly2 = {
        "type": "Polygon",
        "coordinates": [[[X0 + 1500, Y0], [X0 + 3400, Y0], [X0 + 3400, Y0 - 3000], [X0 + 1500, Y0]]],
    }
    kw = dict(faults=[fault], unit_geometries=[poly, poly2], units=["soft", "hard"])
    opts = ControlOptions(
        bin_width=100.0, max_distance=800.0, history=True, plot_samples=500, unit_values=True
    )
    big, names = analyse_controls(
        scene["stack"],
        info,
        17,
        options=replace(opts, distance_path=str(tmp_path / "db.tif")),
        run=Run(budget_mb=4096),
        **kw,
    )
    tiny, _ = analyse_controls(
        scene["stack"],
        info,
        17,
        options=replace(opts, distance_path=str(tmp_path / "dt.tif"), max_bytes=TINY),
        **kw,
    )
    assert names == ["soft", "hard"]
    assert big.profiles[0].rows == tiny.profiles[0].rows and big.profiles[0].step == tiny.profiles[0].step
    assert big.unit_rows == tiny.unit_rows
    _same(big.history_means, tiny.history_means)
    _same(read_stack(str(tmp_path / "db.tif")), read_stack(str(tmp_path / "dt.tif")))
    _same(np.sort(big.fault_samples[0][1]), np.sort(tiny.fault_samples[0][1]))
    # known answer: the whole-array functions
    values = scene["data"][17]
    dist, idx, along = distance_grid([fault], info.transform, info.width, info.height)
    whole = fault_profiles(values, dist, idx, along, 1, 100.0, 800.0)[0]
    for r1, r2 in zip(whole.rows, tiny.profiles[0].rows, strict=True):
        assert r1["n"] == r2["n"]
        for k in ("mean", "median", "std", "min", "max"):
            assert r1[k] == pytest.approx(r2[k], rel=1e-12, nan_ok=True)
    np.testing.assert_allclose(read_stack(str(tmp_path / "dt.tif"))[0], dist, rtol=1e-6)
    labels, _ = rasterize_units([poly, poly2], ["soft", "hard"], info.transform, info.width, info.height)
    for r1, r2 in zip(unit_stats(values, labels, names, 400.0), tiny.unit_rows, strict=True):
        for k, v in r1.items():
            assert v == pytest.approx(r2[k], rel=1e-12, nan_ok=True), k


def test_evaluation_streamed_equals_in_memory(scene, tmp_path):
    from deformation_forecast.core import evaluation as ev

    obs = scene["data"]
    pred = obs + np.random.default_rng(2).normal(scale=0.8, size=obs.shape).astype("float32")
    pred[:, 100:, :3] = np.nan
    pp = _write(tmp_path / "pred.tif", pred)
    pairs = [(i, i) for i in range(2, 18)]
    res = ev.evaluate_files(pp, scene["stack"], pairs, errors_path=str(tmp_path / "err.tif"))
    dates = make_dates(18)[2:]
    rows, total, L = ev.per_date_rows(pred[2:], obs[2:], dates)
    assert res.data_range == L
    for got, want in zip([*res.rows, res.total], [*rows, total], strict=True):
        for k in (*ev.mt.METRICS, "N"):
            assert got[k] == pytest.approx(want[k], rel=1e-12), k
    np.testing.assert_allclose(read_stack(str(tmp_path / "err.tif")), np.abs(pred[2:] - obs[2:]), rtol=1e-6)
    page = ev.evaluation_report_html(res.rows, res.total, res.figures, dates, L)
    assert page.count("data:image/png;base64,") == 3


def test_comparison_streamed_equals_in_memory(scene, tmp_path):
    from deformation_forecast.core import baselines as bl
    from deformation_forecast.core import evaluation as ev
    from deformation_forecast.core.comparison import StreamedComparison
    from deformation_forecast.core.run import Run
    from tests import inmemory_comparison as imc

    names = ["persistence", "linear-trend", "svr", "mlp"]
    opts = bl.BaselineOptions(svr_samples=300, mlp_samples=3000, mlp_max_epochs=8)
    out = {}
    for tag, kw in (("big", {"run": Run(budget_mb=4096)}), ("tiny", {"max_bytes": TINY * 4})):
        work = tmp_path / tag
        work.mkdir()
        cmp = StreamedComparison(scene["stack"], str(work), 4, 6, 0.2, 0, **kw)
        runs = cmp.run_baselines(names, opts)
        os.makedirs(work / "errors")
        rows, L, figs = cmp.score(runs, errors_dir=str(work / "errors"))
        out[tag] = (cmp, runs, rows, L)
        assert len(cmp.windows) == (1 if tag == "big" else len(cmp.windows)) and len(figs) == 4
    assert len(out["tiny"][0].windows) > 4
    for r1, r2 in zip(out["big"][2], out["tiny"][2], strict=True):
        for k in ev.mt.METRICS:
            assert r1[k] == pytest.approx(r2[k], rel=1e-6, nan_ok=True), (r1["model"], k)
    # known answer: the in-memory comparison of the same stack
    mem = imc.prepare_comparison(scene["data"], make_dates(18), 4, 6, 0.2)
    fs = [imc.run_baseline(bl.make_baseline(n, 4, opts), mem.frames, mem.dates, mem.split) for n in names]
    rows, L = imc.comparison_rows(fs, mem.observed_test)
    assert out["tiny"][3] == pytest.approx(L)
    for r1, r2 in zip(rows, out["tiny"][2], strict=True):
        assert (r1["model"], r1["mode"]) == (r2["model"], r2["mode"])
        for k in ev.mt.METRICS:
            assert r1[k] == pytest.approx(r2[k], rel=1e-5, nan_ok=True), (r1["model"], k)
    svr = out["tiny"][1][2]
    assert svr.extra["fit_samples"] == 300 and "subsample of 300" in svr.notes
    one = read_stack(svr.one_step)
    np.testing.assert_allclose(one, fs[2].one_step, rtol=1e-5, atol=1e-4, equal_nan=True)


def test_network_predictions_stream_from_the_npz(scene, tmp_path):
    from deformation_forecast.core import baselines as bl
    from deformation_forecast.core.comparison import StreamedComparison, npz_frames

    cmp = StreamedComparison(scene["stack"], str(tmp_path), 4, 6, 0.2, 0, max_bytes=TINY * 4)
    cmp.run_baselines([])
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(6, 150, 170)).astype("float32")
    p = tmp_path / "p.npz"
    np.savez(
        p,
        one_step=arr,
        iterative=arr + 1,
        targets=arr,
        test_dates=np.array([d.isoformat() for d in cmp.test_dates]),
        train_seconds=np.float64(2.5),
        predict_seconds=np.float64(0.5),
        device=np.array("CPU"),
    )
    assert np.array_equal(np.stack(list(npz_frames(str(p), "iterative"))), arr + 1)
    run = cmp.add_network("cnn-lstm", str(p))
    assert run.train_seconds == 2.5 and run.device == "CPU" and not run.notes
    _same(read_stack(run.one_step), arr)
    rows, _, _ = cmp.score([run])
    assert [r["mode"] for r in rows] == ["one-step", "iterative"]
    np.savez(
        p,
        one_step=arr,
        iterative=arr,
        targets=arr,
        test_dates=np.array(["2000-01-01"]),
        train_seconds=np.float64(1),
        predict_seconds=np.float64(1),
        device=np.array("CPU"),
    )
    with pytest.raises(ValueError, match="split is not the same"):
        cmp.add_network("cnn-lstm", str(p))
    assert bl.NO_FINITE_PREDICTION


# -- tracemalloc: the peak of traced allocations stays under a 64 MB budget on a ~200 MB stack ---------
@pytest.fixture(scope="module")
def big_stack(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    n, h, w = 100, 700, 720  # 100 x 700 x 720 float32 = 201.6 MB
    path = str(d / "big.tif")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    bowl = np.exp(-(((yy - h / 2) / 150.0) ** 2 + ((xx - w / 2) / 200.0) ** 2)).astype("float32")
    with StackWriter(path, make_dates(n), "EPSG:32647", Affine(RES, 0, X0, 0, -RES, Y0), w, h) as wr:
        for i in range(n):
            wr.write_band(i, -0.8 * i * bowl + rng.normal(scale=0.5, size=(h, w)).astype("float32"))
    return path


def _box(x0, y0, x1, y1) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def test_controls_refuse_a_raster_whose_kept_values_exceed_the_budget(tmp_path):
    """The values a statistic keeps (one float32 per pixel for the units, one for the faults) are
    set aside before any window is read; when they alone need over half the budget the run is
    refused up front, naming the budget that would do."""
    from deformation_forecast.core.controls import analyse_controls
    from deformation_forecast.core.run import Run

    h = w = 1800  # 2 x 4 x 1800^2 = 24.7 MB kept against 40 MB usable of a 64 MB budget
    path = _write(tmp_path / "wide.tif", np.zeros((1, h, w), "float32"))
    info = read_info(path)
    kw = dict(
        faults=[[np.array([[X0 + 10, Y0 - 10], [X0 + w * RES, Y0 - h * RES]])]],
        unit_geometries=[_box(X0 - 1, Y0 + 1, X0 + w * RES + 1, Y0 - h * RES - 1)],
        units=["u"],
    )
    with pytest.raises(InputError, match=r"25 MB for this 1800 x 1800 raster.*at least (\d+) MB") as e:
        analyse_controls(path, info, 0, run=Run(budget_mb=64), **kw)
    need = int(re.search(r"at least (\d+) MB", str(e.value)).group(1))
    assert 64 < need < 128
    with pytest.raises(InputError):
        analyse_controls(path, info, 0, run=Run(budget_mb=need - 2), **kw)
    res, _ = analyse_controls(path, info, 0, run=Run(budget_mb=need), **kw)  # the budget it names is enough
    assert res.unit_rows[0]["valid"] == h * w


def _peak(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_peak_memory_under_a_64_mb_budget(big_stack, tmp_path, monkeypatch):
    from deformation_forecast.core import evaluation as ev
    from deformation_forecast.core.controls import ControlOptions, analyse_controls
    from deformation_forecast.core.crossorbit import CrossOrbitOptions, Side, cross_orbit
    from deformation_forecast.core.profiles import extract_profiles
    from deformation_forecast.core.rates import deformation_rate

    monkeypatch.setenv(budget.ENV, "64")
    limit = budget.budget_bytes()
    info = read_info(big_stack)
    assert info.count * info.height * info.width * 4 > 3 * limit
    peaks = {
        "rates": _peak(lambda: deformation_rate(big_stack, str(tmp_path / "r.tif"), "linear")),
        "crossorbit": _peak(
            lambda: cross_orbit(
                Side(big_stack, info, 34.0), Side(big_stack, info, 34.0), CrossOrbitOptions(mode="velocity")
            )
        ),
        "evaluation": _peak(
            lambda: ev.evaluate_files(
                big_stack, big_stack, [(i, i) for i in range(0, 100, 11)], errors_path=str(tmp_path / "e.tif")
            )
        ),
        "profiles": _peak(
            lambda: extract_profiles(
                big_stack, [("I", [np.array([[X0 + 10, Y0 - 10], [X0 + 14000, Y0 - 13000]])])]
            )
        ),
        # a unit over the whole raster and a fault through it: every pixel's value is kept twice,
        # with the history (all 100 bands per window) and the box plot's statistics
        "controls": _peak(
            lambda: analyse_controls(
                big_stack,
                info,
                99,
                faults=[[np.array([[X0 + 10, Y0 - 10], [X0 + 14000, Y0 - 13000]])]],
                unit_geometries=[_box(X0 - 100, Y0 + 100, X0 + 30000, Y0 - 30000)],
                units=["all"],
                options=ControlOptions(
                    max_distance=20000.0,
                    bin_width=1000.0,
                    history=True,
                    unit_values=True,
                    plot_samples=1000,
                    distance_path=str(tmp_path / "d.tif"),
                ),
            )
        ),
    }
    for name, peak in peaks.items():
        assert peak < limit, f"{name}: peak {peak / 2**20:.1f} MB over the {limit / 2**20:.0f} MB budget"
    assert math.isfinite(read_stack(str(tmp_path / "r.tif"), bands=[0]).mean())
