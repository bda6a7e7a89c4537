"""Baselines, the shared split and the comparison report (no QGIS, no TensorFlow)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from deformation_forecast.core import baselines as bl
from deformation_forecast.core import evaluation as ev
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.split import make_split, observed_on_grid, regular_stack, windows
from tests import inmemory_comparison as imc
from tests.conftest import make_dates


def bowl_scene(n=40, h=24, w=28, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    bowl = np.exp(-(((yy - 12) / 6.0) ** 2 + ((xx - 14) / 8.0) ** 2))
    t = np.arange(n)[:, None, None]
    data = -60 * bowl * (1 - np.exp(-t / 25.0)) - 0.4 * t * bowl + rng.normal(scale=noise, size=(n, h, w))
    return data.astype("float32"), make_dates(n)


# -- split ---------------------------------------------------------------------------------------------
def test_split_counts_and_order():
    s = make_split(40, time_step=5, test_count=20, val_fraction=0.2)
    assert (len(s.train), len(s.val), len(s.test)) == (12, 3, 20)
    assert s.train[0] == 5 and s.test[-1] == 39 and s.first_test == 20
    assert s.train[-1] < s.val[0] < s.val[-1] < s.test[0]
    x, y = windows(np.arange(40)[:, None], s.test, 5)
    assert x.shape == (20, 5, 1) and (x[:, -1, 0] + 1 == y[:, 0]).all()
    assert "test 20" in s.describe()


def test_split_too_short_says_what_to_do():
    with pytest.raises(InputError, match="Lower TEST_COUNT"):
        make_split(25, time_step=5, test_count=20)
    with pytest.raises(InputError):
        make_split(30, time_step=0)


def test_regular_stack_and_observed_on_grid():
    data, dates = bowl_scene(n=12)
    data[3, 0, 0] = np.nan
    frames, grid, interval = regular_stack(data, dates)
    assert interval == 12 and grid == dates
    assert np.isfinite(frames[3, 0, 0])  # gap filled for the models
    obs, n_interp = observed_on_grid(data, dates, grid, frames)
    assert n_interp == 0 and np.isnan(obs[3, 0, 0])  # but not in the observations


# -- baselines -------------------------------------------------------------------------------------------
def _run(name, data, dates, ts=5, test=8, **opt):
    cmp = imc.prepare_comparison(data, dates, ts, test, 0.2)
    f = imc.run_baseline(
        bl.make_baseline(name, ts, bl.BaselineOptions(**opt)), cmp.frames, cmp.dates, cmp.split
    )
    return cmp, f


def test_persistence_on_a_static_scene_scores_zero():
    rng = np.random.default_rng(1)
    frame = rng.normal(size=(20, 22)).cumsum(0) * 5
    data = np.repeat(frame[None], 30, axis=0).astype("float32")
    cmp, f = _run("persistence", data, make_dates(30))
    rows, _ = imc.comparison_rows([f], cmp.observed_test)
    for r in rows:
        assert r["MAE"] == 0 and r["MSE"] == 0 and r["PSNR"] == math.inf
        assert r["SSIM"] == pytest.approx(1.0) and r["MS_SSIM"] == pytest.approx(1.0)


def test_linear_trend_is_exact_on_a_linear_scene_with_irregular_dates():
    rng = np.random.default_rng(2)
    rate = rng.uniform(-0.5, 0.1, size=(18, 20))  # mm/day
    offset = rng.normal(size=(18, 20))
    # irregular acquisitions: the comparison resamples them to a regular grid, linear in time
    days = np.cumsum(np.r_[0, rng.choice([6, 12, 18], size=39)])
    dates = [dt.date(2019, 1, 1) + dt.timedelta(days=int(d)) for d in days]
    data = (offset + rate * days[:, None, None]).astype("float32")
    cmp, f = _run("linear-trend", data, dates, trend_window=4)
    for pred in (f.one_step, f.iterative):
        np.testing.assert_allclose(pred, cmp.observed_test, atol=2e-3)
    assert cmp.interpolated > 0


def test_iterative_persistence_holds_the_last_observed_frame():
    data, dates = bowl_scene()
    cmp, f = _run("persistence", data, dates)
    last = cmp.frames[cmp.split.first_test - 1]
    assert all(np.array_equal(it, last) for it in f.iterative)
    np.testing.assert_array_equal(f.one_step, cmp.frames[cmp.split.test - 1])


@pytest.mark.parametrize("name", bl.BASELINES)
def test_every_baseline_gives_finite_metrics(name):
    data, dates = bowl_scene()
    data[:, :2, :2] = np.nan  # incoherent corner: NaN in the predictions, ignored by the metrics
    data[10, 5, 5] = np.nan
    cmp, f = _run(name, data, dates, svr_samples=500, mlp_samples=5000, mlp_max_epochs=20)
    assert f.one_step.shape == f.iterative.shape == cmp.observed_test.shape
    assert np.isnan(f.one_step[:, 0, 0]).all()
    rows, _ = imc.comparison_rows([f], cmp.observed_test)
    for r in rows:
        for k in ("MAE", "MSE", "RMSE", "SSIM", "MS_SSIM", "PSNR", "R2"):
            assert np.isfinite(r[k]), (name, r["mode"], k)
    assert f.train_seconds >= 0 and f.predict_seconds > 0 and f.device == "CPU"


def test_lagged_regressors_learn_a_steady_subsidence():
    """Steady per-pixel velocities: the rate features let SVR/MLP extrapolate deeper than training."""
    rng = np.random.default_rng(3)
    rate = rng.uniform(-2, 0, size=(16, 16))
    data = (rate * np.arange(40)[:, None, None] + rng.normal(scale=0.05, size=(40, 16, 16))).astype("float32")
    for name in ("svr", "mlp"):
        cmp, f = _run(name, data, make_dates(40), svr_samples=800, mlp_samples=20000, mlp_max_epochs=40)
        _, pers = _run("persistence", data, make_dates(40))
        mae = ev.mt.mae(f.one_step, cmp.observed_test)
        assert mae < 0.3 * ev.mt.mae(pers.one_step, cmp.observed_test), name


def test_svr_states_its_subsample():
    data, dates = bowl_scene()
    _, f = _run("svr", data, dates, svr_samples=300)
    assert "subsample of 300" in f.notes and "every pixel" in f.notes
    assert f.extra["fit_samples"] == 300


def test_cancel_stops():
    data, dates = bowl_scene()
    cmp = imc.prepare_comparison(data, dates, 5, 8, 0.2)
    with pytest.raises(bl.Cancelled):
        imc.run_baseline(
            bl.make_baseline("mlp", 5), cmp.frames, cmp.dates, cmp.split, should_stop=lambda: True
        )


def test_progress_is_reported_in_order():
    data, dates = bowl_scene()
    cmp = imc.prepare_comparison(data, dates, 5, 8, 0.2)
    seen = []
    imc.run_baseline(
        bl.make_baseline("linear-trend", 5), cmp.frames, cmp.dates, cmp.split, lambda f, m: seen.append(f)
    )
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_unknown_model():
    with pytest.raises(InputError):
        bl.make_baseline("arima", 5)


def test_network_predictions_npz(tmp_path):
    dates = make_dates(3)
    p = tmp_path / "p.npz"
    arr = np.zeros((3, 4, 4), "float32")
    np.savez(
        p,
        one_step=arr,
        iterative=arr + 1,
        targets=arr,
        test_dates=np.array([d.isoformat() for d in dates]),
        train_seconds=np.float64(2.5),
        predict_seconds=np.float64(0.5),
        device=np.array("CPU"),
    )
    f = bl.load_network_predictions(str(p), "cnn-lstm", dates)
    assert f.train_seconds == 2.5 and f.device == "CPU" and f.iterative.max() == 1 and not f.notes
    nan = np.full_like(arr, np.nan)
    np.savez(
        p,
        one_step=nan,
        iterative=nan,
        targets=arr,
        test_dates=np.array([d.isoformat() for d in dates]),
        train_seconds=np.float64(2.5),
        predict_seconds=np.float64(0.5),
        device=np.array("CPU"),
    )
    assert bl.load_network_predictions(str(p), "cnn-lstm", dates).notes == bl.NO_FINITE_PREDICTION
    with pytest.raises(ValueError, match="split is not the same"):
        bl.load_network_predictions(str(p), "cnn-lstm", make_dates(3, step=6))


# -- tables and report ------------------------------------------------------------------------------------
def test_match_dates():
    pred = [dt.date(2021, 1, 1), dt.date(2021, 1, 13), dt.date(2021, 3, 1)]
    obs = [dt.date(2021, 1, 3), dt.date(2021, 1, 12), dt.date(2021, 2, 1)]
    assert ev.match_dates(pred, obs, 6) == [(0, 0), (1, 1)]
    assert ev.match_dates(pred, obs[:1], 30) == [(0, 0)]  # one observation serves one prediction
    assert ev.match_dates(pred, obs, 0) == []


def test_comparison_report_and_csv(tmp_path):
    data, dates = bowl_scene()
    cmp = imc.prepare_comparison(data, dates, 5, 8, 0.2)
    fs = [
        imc.run_baseline(bl.make_baseline(m, 5), cmp.frames, cmp.dates, cmp.split)
        for m in ("persistence", "linear-trend")
    ]
    rows, L = imc.comparison_rows(fs, cmp.observed_test)
    assert [(r["model"], r["mode"]) for r in rows] == [
        ("persistence", "one-step"),
        ("persistence", "iterative"),
        ("linear-trend", "one-step"),
        ("linear-trend", "iterative"),
    ]
    shown = ev.pick_dates(len(cmp.test_dates))
    figures = [ev.model_figures(f, cmp.observed_test, shown) for f in fs]
    timeline = ev.Timeline.of(cmp.dates, cmp.observed, cmp.test_dates)
    page = ev.comparison_report_html(rows, figures, timeline, L, "split")
    assert page.count("data:image/png;base64,") == 5 and "Linear trend" in page and "3.7414" in page
    csv_path = ev.write_csv(rows, str(tmp_path / "t.csv"), ev.TABLE_FIELDS)
    assert open(csv_path).read().splitlines()[0].startswith("model,mode,MAE")
    txt = ev.text_table(rows)
    assert "Persistence" in txt and "paper" not in txt
    per, total, _ = ev.per_date_rows(fs[1].one_step, cmp.observed_test, cmp.test_dates)
    figs = [ev.frame_figures(p, o) for p, o in zip(fs[1].one_step, cmp.observed_test, strict=True)]
    html = ev.evaluation_report_html(per, total, figs, cmp.test_dates, L)
    assert html.count("data:image/png;base64,") == 3


def test_metrics_csv_writes_numpy_numbers_as_plain_numbers(tmp_path):
    """numpy scalars reach the CSV as plain numbers that read back exactly (numpy 2's repr would
    write "np.float64(0.1)"), NaN as an empty cell."""
    rows = [
        {"model": "svr", "mode": "one-step", "MAE": np.float64(0.1), "MSE": np.float32(0.25),
         "RMSE": np.float64("nan"), "SSIM": np.int64(3), "PSNR": 1 / 3},
    ]  # fmt: skip
    path = ev.write_csv(
        rows, str(tmp_path / "m.csv"), ["model", "mode", "MAE", "MSE", "RMSE", "SSIM", "PSNR"]
    )
    lines = open(path).read().splitlines()
    assert lines[1] == f"svr,one-step,0.1,0.25,,3,{1 / 3!r}"


def test_svr_fast_decision_function_equals_sklearn():
    data, dates = bowl_scene()
    cmp = imc.prepare_comparison(data, dates, 5, 8, 0.2)
    m = bl.make_baseline("svr", 5, bl.BaselineOptions(svr_samples=400))
    m.fit(cmp.frames, bl.times_of(cmp.dates), cmp.split)
    x = np.random.default_rng(0).normal(size=(1000, 4))
    np.testing.assert_allclose(m._predict_scaled(x), m.model.predict(x), atol=1e-10)


def _line_scene(n=100, slope=0.15, noise=1.0, seed=4):
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None, None]
    return (slope * t + rng.normal(scale=noise, size=(n, 12, 14))).astype("float32"), make_dates(n)


def _iterative_mae(name, data, dates, **opt):
    cmp, f = _run(name, data, dates, test=20, **opt)
    rows, _ = imc.comparison_rows([f], cmp.observed_test)
    return {r["mode"]: r["MAE"] for r in rows}["iterative"], f


def test_trend_window_chosen_on_validation_beats_persistence_iteratively():
    """Issue 17: a slow, steady trend under noise: the line over the chosen window (40 frames here)
    ranks above persistence over 20 iterative steps; the old fixed 5-frame line does not."""
    data, dates = _line_scene()
    pers, _ = _iterative_mae("persistence", data, dates)
    chosen, f = _iterative_mae("linear-trend", data, dates)
    five, _ = _iterative_mae("linear-trend", data, dates, trend_window=5)
    assert "last 40 frames" in f.notes and "chosen on the validation dates" in f.notes
    assert chosen < 0.75 * pers
    assert five > pers  # why the window must be chosen: the 5-frame line is a strawman


def test_trend_window_choice_is_persistence_on_a_random_walk():
    rng = np.random.default_rng(5)
    data = rng.normal(size=(100, 8, 8)).cumsum(axis=0).astype("float32")
    lt = bl.LinearTrend(0)
    cmp = imc.prepare_comparison(data, make_dates(100), 5, 20, 0.2)
    lt.fit(cmp.frames, bl.times_of(cmp.dates), cmp.split)
    assert lt.window in (1, 5)  # a walk has no trend to extrapolate


def test_trend_annual_follows_a_seasonal_line_where_the_line_cannot():
    t = np.arange(100)[:, None, None] * 12.0
    data = (-0.02 * t + 6.0 * np.sin(2 * np.pi * t / 365.25) + np.zeros((1, 6, 7))).astype("float32")
    dates = make_dates(100)
    seasonal, f = _iterative_mae("trend-annual", data, dates)
    line, _ = _iterative_mae("linear-trend", data, dates)
    assert seasonal < 1e-2 and line > 1.0
    assert "61 frames" in f.notes  # two years of 12-day frames
