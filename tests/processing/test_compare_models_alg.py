"""comparemodels and evaluateforecast through processing.run (pytest-qgis)."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsVectorLayer

from deformation_forecast.core.baselines import LABELS
from deformation_forecast.core.stack import read_info, read_stack
from tests.conftest import make_dates

BASELINES = [0, 1, 2, 3]  # persistence, linear trend, SVR, MLP


def scene(n=34, h=20, w=24, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    bowl = np.exp(-(((yy - 10) / 5.0) ** 2 + ((xx - 12) / 7.0) ** 2))
    t = np.arange(n)[:, None, None]
    data = -50 * bowl * (1 - np.exp(-t / 20.0)) - 0.3 * t * bowl + rng.normal(scale=0.3, size=(n, h, w))
    data[:, 0, :3] = np.nan
    return data.astype("float32")


def _rows(layer_or_path):
    layer = (
        layer_or_path
        if isinstance(layer_or_path, QgsVectorLayer)
        else QgsVectorLayer(layer_or_path, "t", "ogr")
    )
    assert layer.isValid()
    names = [f.name() for f in layer.fields()]
    return [dict(zip(names, f.attributes(), strict=False)) for f in layer.getFeatures()]


def test_comparemodels_baselines(run_alg, write_stack, tmp_path):
    path = write_stack(scene())
    res = run_alg(
        "comparemodels",
        {
            "INPUT": path,
            "MODELS": BASELINES,
            "TIME_STEP": 4,
            "TEST_COUNT": 6,
            "SVR_SAMPLES": 300,
            "MLP_SAMPLES": 3000,
            "OUTPUT_TABLE": str(tmp_path / "table.csv"),
            "OUTPUT_REPORT": str(tmp_path / "report.html"),
            "OUTPUT_ERRORS": str(tmp_path / "errors"),
        },
    )
    rows = _rows(res["OUTPUT_TABLE"])
    assert [(r["model"], r["mode"]) for r in rows] == [
        (m, mode) for m in ("persistence", "linear-trend", "svr", "mlp") for mode in ("one-step", "iterative")
    ]
    for r in rows:
        for k in ("MAE", "MSE", "RMSE", "SSIM", "MS_SSIM", "PSNR", "R2", "train_seconds", "predict_seconds"):
            assert r[k] is not None and math.isfinite(float(r[k])), (r["model"], k)
        assert r["device"] == "CPU"
    for m in ("PERSISTENCE", "LINEAR_TREND", "SVR", "MLP"):
        assert math.isfinite(res[f"MAE_{m}"]) and 0 < res[f"SSIM_{m}"] <= 1
    assert res.get("MAE_CNN_LSTM") is None
    assert res["BEST_MODEL"] in ("persistence", "linear-trend", "svr", "mlp")
    assert res["TEST_DATES"] == 6 and res["DATA_RANGE_USED"] > 0
    html = open(res["OUTPUT_REPORT"], encoding="utf-8").read()
    assert html.count("data:image/png;base64,") == 5 and "subsample of 300" in html
    # issue 17 §2: the report's one-step and iterative tables carry the table's SKILL column
    by_key = {(r["model"], r["mode"]): r for r in rows}
    one_step, iterative = _report_tables(res["OUTPUT_REPORT"])[:2]
    for mode, table in (("one-step", one_step), ("iterative", iterative)):
        assert [r["mode"] for r in table] == [mode] * 4
        for r in table:
            want = by_key[({v: k for k, v in LABELS.items()}[r["model"]], mode)]
            assert float(r["SKILL"]) == pytest.approx(float(want["SKILL"]), abs=6e-5), (r["model"], mode)
            assert float(r["MAE"]) == pytest.approx(float(want["MAE"]), abs=6e-5)
        assert float(table[0]["SKILL"]) == 0 and table[0]["model"] == "Persistence"
        assert any(float(r["SKILL"]) != 0 for r in table[1:])
    err = os.path.join(res["OUTPUT_ERRORS"], "abs_error_svr_one_step.tif")
    info = read_info(err)
    assert info.count == 6 and info.dates == make_dates(34)[-6:]
    assert np.isnan(read_stack(err)[:, 0, 0]).all()
    assert "tensorflow" not in sys.modules


def test_persistence_static_scene_mae_zero_and_trend_exact(run_alg, write_stack, tmp_path):
    rng = np.random.default_rng(4)
    frame = rng.normal(size=(16, 18)).cumsum(1) * 3
    static = write_stack(np.repeat(frame[None], 20, axis=0), name="static.tif")
    res = run_alg(
        "comparemodels",
        {
            "INPUT": static,
            "MODELS": [0],
            "TIME_STEP": 3,
            "TEST_COUNT": 5,
            "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
            "OUTPUT_REPORT": "",
        },
    )
    assert res["MAE_PERSISTENCE"] == 0
    assert res["PSNR_PERSISTENCE"] is None  # infinite: no error at all
    rate = rng.uniform(-1, 0, size=(16, 18))
    linear = write_stack(rate * np.arange(20)[:, None, None] * 12 + frame, name="linear.tif")
    res = run_alg(
        "comparemodels",
        {
            "INPUT": linear,
            "MODELS": [1],
            "TIME_STEP": 3,
            "TEST_COUNT": 5,
            "TREND_WINDOW": 3,
            "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
        },
    )
    assert res["MAE_LINEAR_TREND"] < 1e-3
    rows = _rows(res["OUTPUT_TABLE"] if not isinstance(res["OUTPUT_TABLE"], str) else res["OUTPUT_TABLE"])
    assert all(r["MAE"] < 1e-3 for r in rows)


def test_comparemodels_short_stack_fails_clearly(run_alg, write_stack):
    path = write_stack(scene(n=12))
    with pytest.raises(QgsProcessingException, match="TEST_COUNT"):
        run_alg("comparemodels", {"INPUT": path, "MODELS": [0], "OUTPUT_TABLE": "TEMPORARY_OUTPUT"})


def test_comparemodels_cancel(run_alg, write_stack):
    from qgis.core import QgsProcessingFeedback

    fb = QgsProcessingFeedback()
    fb.cancel()
    with pytest.raises(QgsProcessingException, match="Cancel"):
        run_alg(
            "comparemodels",
            {
                "INPUT": write_stack(scene()),
                "MODELS": [3],
                "TIME_STEP": 4,
                "TEST_COUNT": 6,
                "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
            },
            feedback=fb,
        )


def test_comparemodels_on_an_extent_scores_only_that_area(run_alg, write_stack, tmp_path):
    """Known answer: the left half of the scene is static, the right half moves, so persistence
    is exact on an EXTENT over the left half only (given in the stack's CRS) and not on the whole."""
    rng = np.random.default_rng(8)
    n, h, w = 20, 16, 24
    data = np.repeat((rng.normal(size=(h, w)).cumsum(1) * 3)[None], n, axis=0)
    data[:, :, 12:] += rng.normal(scale=2.0, size=(n, h, 12)).cumsum(0)
    path = write_stack(data)  # 20 m pixels from (500000, 4300000)
    params = {
        "INPUT": path,
        "MODELS": [0],
        "TIME_STEP": 3,
        "TEST_COUNT": 5,
        "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
    }
    whole = run_alg("comparemodels", params)
    assert whole["MAE_PERSISTENCE"] > 0.5
    # columns 0..11 (x 500000..500240), rows 2..13, given a little inside the pixel edges
    left = run_alg("comparemodels", {**params, "EXTENT": "500005,500235,4299725,4299955 [EPSG:32647]"})
    assert left["MAE_PERSISTENCE"] == 0
    with pytest.raises(QgsProcessingException, match=r"EXTENT .* choose an area inside"):
        run_alg("comparemodels", {**params, "EXTENT": "600000,600500,4299000,4299500 [EPSG:32647]"})


def test_comparemodels_refuses_networks_beyond_the_budget_up_front(run_alg, write_stack, monkeypatch):
    """At a 256 MB budget the worker may hold ~1.3 MB of test predictions (12 bytes per pixel and
    test date): a 200 x 200 stack with 6 test dates is refused before any worker starts, naming
    the EXTENT that would do; an EXTENT still too large is refused the same way."""
    from deformation_forecast.core import budget

    monkeypatch.setenv(budget.ENV, "256")
    path = write_stack(scene(n=30, h=200, w=200))
    params = {
        "INPUT": path,
        "MODELS": [0, 5],
        "TIME_STEP": 3,
        "TEST_COUNT": 6,
        "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
    }
    side = int((budget.worker_pixel_bytes(256) // 3 // (12 * 6)) ** 0.5)
    with pytest.raises(
        QgsProcessingException, match=rf"this stack of 200 x 200 .* at most about {side} x {side}"
    ):
        run_alg("comparemodels", params)
    with pytest.raises(QgsProcessingException, match="this EXTENT of 150 x 150 pixels"):
        run_alg("comparemodels", {**params, "EXTENT": "500000,503000,4297000,4300000 [EPSG:32647]"})
    assert "tensorflow" not in sys.modules


@pytest.mark.tf
@pytest.mark.slow
def test_comparemodels_with_cnn_lstm_in_the_worker(run_alg, write_stack, tmp_path):
    path = write_stack(scene(n=30, h=16, w=16))
    res = run_alg(
        "comparemodels",
        {
            "INPUT": path,
            "MODELS": [0, 4],
            "TIME_STEP": 3,
            "TEST_COUNT": 4,
            "EPOCHS": 1,
            "DEVICE": 2,
            "OUTPUT_TABLE": str(tmp_path / "t.csv"),
            "OUTPUT_REPORT": str(tmp_path / "r.html"),
        },
    )
    assert math.isfinite(res["MAE_CNN_LSTM"]) and math.isfinite(res["SSIM_CNN_LSTM"])
    rows = _rows(res["OUTPUT_TABLE"])
    assert {r["model"] for r in rows} == {"persistence", "cnn-lstm"}
    assert "tensorflow" not in sys.modules


# -- evaluateforecast ---------------------------------------------------------------------------------------
def test_evaluateforecast(run_alg, write_stack, tmp_path):
    obs = scene(n=10)
    dates = make_dates(10)
    pred = obs + np.random.default_rng(1).normal(scale=1.0, size=obs.shape).astype("float32")
    pred[:, 5, 5] = np.nan
    # the forecast covers the last 4 dates, each 2 days off the acquisitions
    import datetime as dt

    pdates = [d + dt.timedelta(days=2) for d in dates[-4:]]
    p_path = write_stack(pred[-4:], pdates, name="pred.tif")
    o_path = write_stack(obs, dates, name="obs.tif")
    res = run_alg(
        "evaluateforecast",
        {
            "PREDICTED": p_path,
            "OBSERVED": o_path,
            "MAX_DAYS": 3,
            "OUTPUT_TABLE": str(tmp_path / "m.csv"),
            "OUTPUT_ERRORS": str(tmp_path / "err.tif"),
            "OUTPUT_REPORT": str(tmp_path / "r.html"),
        },
    )
    assert res["MATCHED_DATES"] == 4
    ok = np.isfinite(pred[-4:])
    assert res["MAE"] == pytest.approx(np.abs(pred[-4:] - obs[-4:])[ok].mean(), rel=1e-5)
    assert 0 < res["SSIM"] <= 1 and 0 < res["MS_SSIM"] <= 1 and res["R2"] > 0.9
    rows = _rows(res["OUTPUT_TABLE"])
    assert [r["date"] for r in rows] == [d.isoformat() for d in pdates] + ["overall"]
    assert rows[0]["observed_date"] == dates[-4].isoformat()
    err = read_stack(res["OUTPUT_ERRORS"])
    assert err.shape == (4, 20, 24) and np.isnan(err[:, 5, 5]).all()
    assert read_info(res["OUTPUT_ERRORS"]).dates == pdates
    assert open(res["OUTPUT_REPORT"], encoding="utf-8").read().count("base64,") == 3
    with pytest.raises(QgsProcessingException, match="MAX_DAYS"):
        run_alg(
            "evaluateforecast",
            {"PREDICTED": p_path, "OBSERVED": o_path, "MAX_DAYS": 1, "OUTPUT_TABLE": "TEMPORARY_OUTPUT"},
        )


def test_evaluateforecast_needs_the_same_grid(run_alg, write_stack):
    a = write_stack(scene(n=4), name="a.tif")
    b = write_stack(scene(n=4), name="b.tif", res=30.0)
    with pytest.raises(QgsProcessingException, match="same grid"):
        run_alg("evaluateforecast", {"PREDICTED": a, "OBSERVED": b, "OUTPUT_TABLE": "TEMPORARY_OUTPUT"})


def test_evaluateforecast_interval_coverage_and_width(run_alg, write_stack, tmp_path):
    """Issue 17: with LOWER/UPPER, COVERAGE = the fraction of observations inside the band and
    MEAN_WIDTH its mean width; a bound alone is refused."""
    obs = scene(n=6)
    dates = make_dates(6)
    pred = obs + np.random.default_rng(2).normal(scale=1.0, size=obs.shape).astype("float32")
    pred[:, 5, 5] = np.nan
    lo, hi = pred - 1.645, pred + 1.645  # the 90 % band of the known N(0, 1) error
    paths = [
        write_stack(a, dates, name=f"{k}.tif") for k, a in (("p", pred), ("o", obs), ("l", lo), ("h", hi))
    ]
    base = {"PREDICTED": paths[0], "OBSERVED": paths[1], "MAX_DAYS": 0, "OUTPUT_TABLE": "TEMPORARY_OUTPUT"}
    res = run_alg("evaluateforecast", {**base, "LOWER": paths[2], "UPPER": paths[3]})
    ok = np.isfinite(pred) & np.isfinite(obs)
    expected = ((obs >= lo) & (obs <= hi))[ok].mean()
    assert res["COVERAGE"] == pytest.approx(expected, abs=1e-6) and 0.86 < res["COVERAGE"] < 0.94
    assert res["MEAN_WIDTH"] == pytest.approx(2 * 1.645, rel=1e-4)
    with pytest.raises(QgsProcessingException, match="UPPER: give both"):
        run_alg("evaluateforecast", {**base, "LOWER": paths[2]})


def _report_tables(path) -> list[list[dict]]:
    """The tables of an HTML report: rows as {header: cell text}."""
    import re

    text = open(path, encoding="utf-8").read()
    tables = []
    for body in re.findall(r"<table>(.*?)</table>", text, re.S):
        head = re.findall(r"<th>(.*?)</th>", body)
        cells = [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", body)]
        tables.append([dict(zip(head, c, strict=True)) for c in cells if c])
    return tables


def test_comparemodels_ranks_a_strong_trend_above_persistence_iteratively(run_alg, write_stack):
    """Issue 17: the trend's window is chosen on the validation dates (not 5 frames), the table has
    SKILL against persistence, BEST_MODEL_ITERATIVE names the best iterative model."""
    rng = np.random.default_rng(4)
    t = np.arange(100)[:, None, None]
    data = (0.15 * t + rng.normal(size=(100, 12, 14))).astype("float32")
    res = run_alg(
        "comparemodels",
        {
            "INPUT": write_stack(data, make_dates(100)),
            "MODELS": [0, 1, 6],  # persistence, linear trend, trend + annual
            "TIME_STEP": 5,
            "TEST_COUNT": 20,
            "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
            "OUTPUT_REPORT": "",
        },
    )
    rows = {(r["model"], r["mode"]): r for r in _rows(res["OUTPUT_TABLE"])}
    trend, pers = rows[("linear-trend", "iterative")], rows[("persistence", "iterative")]
    assert trend["MAE"] < 0.75 * pers["MAE"]
    assert trend["SKILL"] == pytest.approx(1 - trend["MAE"] / pers["MAE"], rel=1e-6) and pers["SKILL"] == 0
    assert res["BEST_MODEL_ITERATIVE"] in ("linear-trend", "trend-annual")
    assert math.isfinite(res["MAE_TREND_ANNUAL"])
