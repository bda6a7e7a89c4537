"""comparemodels and evaluateforecast inside qgis_process.bin (a separate program, no GUI)."""

from __future__ import annotations

import csv
import datetime as dt
import math
import os

import numpy as np
import pytest

from tests.conftest import make_dates

pytestmark = pytest.mark.e2e


def _scene(n=30, h=18, w=20):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    bowl = np.exp(-(((yy - 9) / 5.0) ** 2 + ((xx - 10) / 6.0) ** 2))
    t = np.arange(n)[:, None, None]
    return (-40 * bowl * (1 - np.exp(-t / 20.0)) + rng.normal(scale=0.3, size=(n, h, w))).astype("float32")


def _csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_comparemodels_baselines_e2e(qgis_process, write_stack, tmp_path):
    stack = write_stack(_scene())
    res = qgis_process(
        "run",
        "deformation_forecast:comparemodels",
        "--",
        f"INPUT={stack}",
        "MODELS=0,1,2,3,6",
        "TIME_STEP=4",
        "TEST_COUNT=5",
        "SVR_SAMPLES=300",
        "MLP_SAMPLES=3000",
        f"OUTPUT_TABLE={tmp_path / 'table.csv'}",
        f"OUTPUT_REPORT={tmp_path / 'report.html'}",
        f"OUTPUT_ERRORS={tmp_path / 'errors'}",
    )["results"]
    rows = _csv(tmp_path / "table.csv")
    models = {"persistence", "linear-trend", "svr", "mlp", "trend-annual"}
    assert {r["model"] for r in rows} == models
    assert all(math.isfinite(float(r["MAE"])) and math.isfinite(float(r["SSIM"])) for r in rows)
    assert all(float(r["SKILL"]) == 0 for r in rows if r["model"] == "persistence")
    for m in ("PERSISTENCE", "LINEAR_TREND", "SVR", "MLP", "TREND_ANNUAL"):
        assert math.isfinite(float(res[f"MAE_{m}"]))
    assert res["BEST_MODEL"] in models and res["BEST_MODEL_ITERATIVE"] in models
    assert "base64," in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert len(os.listdir(tmp_path / "errors")) == 10


def test_evaluateforecast_e2e(qgis_process, write_stack, tmp_path):
    obs = _scene(n=8)
    dates = make_dates(8)
    pred = obs[-3:] + 0.5
    pdates = [d + dt.timedelta(days=1) for d in dates[-3:]]
    p = write_stack(pred, pdates, name="pred.tif")
    o = write_stack(obs, dates, name="obs.tif")
    res = qgis_process(
        "run",
        "deformation_forecast:evaluateforecast",
        "--",
        f"PREDICTED={p}",
        f"OBSERVED={o}",
        "MAX_DAYS=2",
        f"OUTPUT_TABLE={tmp_path / 'm.csv'}",
        f"OUTPUT_ERRORS={tmp_path / 'err.tif'}",
        f"OUTPUT_REPORT={tmp_path / 'r.html'}",
    )["results"]
    assert float(res["MAE"]) == pytest.approx(0.5, abs=1e-4)
    assert int(res["MATCHED_DATES"]) == 3
    assert [r["date"] for r in _csv(tmp_path / "m.csv")][-1] == "overall"
    assert os.path.exists(tmp_path / "err.tif") and os.path.exists(tmp_path / "r.html")
    # issue 17: a band of +-0.6 around a forecast 0.5 off covers everything, +-0.4 nothing
    for half, cover in ((0.6, 1.0), (0.4, 0.0)):
        lo = write_stack(pred - half, pdates, name=f"lo{half}.tif")
        hi = write_stack(pred + half, pdates, name=f"hi{half}.tif")
        res = qgis_process(
            "run",
            "deformation_forecast:evaluateforecast",
            "--",
            f"PREDICTED={p}",
            f"OBSERVED={o}",
            f"LOWER={lo}",
            f"UPPER={hi}",
            "MAX_DAYS=2",
            f"OUTPUT_TABLE={tmp_path / f'b{half}.csv'}",
        )["results"]
        assert float(res["COVERAGE"]) == pytest.approx(cover)
        assert float(res["MEAN_WIDTH"]) == pytest.approx(2 * half, abs=1e-4)


@pytest.mark.tf
@pytest.mark.slow
def test_comparemodels_with_cnn_lstm_e2e(qgis_process, write_stack, tmp_path):
    stack = write_stack(_scene(n=26, h=16, w=16))
    res = qgis_process(
        "run",
        "deformation_forecast:comparemodels",
        "--",
        f"INPUT={stack}",
        "MODELS=0,4",
        "TIME_STEP=3",
        "TEST_COUNT=4",
        "EPOCHS=1",
        "DEVICE=2",
        f"OUTPUT_TABLE={tmp_path / 't.csv'}",
        timeout=900,
    )["results"]
    assert math.isfinite(float(res["MAE_CNN_LSTM"]))
    rows = _csv(tmp_path / "t.csv")
    assert {r["model"] for r in rows} == {"persistence", "cnn-lstm"}
    assert {r["device"] for r in rows if r["model"] == "cnn-lstm"} == {"CPU"}


def test_comparemodels_extent_e2e(qgis_process, write_stack, tmp_path):
    """EXTENT through qgis_process's text form (xmin,xmax,ymin,ymax [CRS]), given in another CRS
    than the stack's: the left half of the scene is static, so persistence is exact there."""
    from rasterio.warp import transform as warp

    rng = np.random.default_rng(2)
    n, h, w = 20, 16, 24
    data = np.repeat((rng.normal(size=(h, w)).cumsum(1) * 3)[None], n, axis=0).astype("float32")
    data[:, :, 12:] += rng.normal(scale=2.0, size=(n, h, 12)).cumsum(0).astype("float32")
    stack = write_stack(data)  # EPSG:32647, 20 m pixels from (500000, 4300000)
    # columns 1..10, rows 2..13 of the stack, as longitude/latitude
    lon, lat = warp("EPSG:32647", "EPSG:4326", [500030.0, 500210.0], [4299730.0, 4299950.0])
    extent = f"{min(lon)},{max(lon)},{min(lat)},{max(lat)} [EPSG:4326]"
    res = qgis_process(
        "run",
        "deformation_forecast:comparemodels",
        "--",
        f"INPUT={stack}",
        "MODELS=0",
        "TIME_STEP=3",
        "TEST_COUNT=5",
        f"EXTENT={extent}",
        f"OUTPUT_TABLE={tmp_path / 'table.csv'}",
    )["results"]
    assert float(res["MAE_PERSISTENCE"]) == 0.0
