"""End to end in the worker's code: train a tiny network on a moving, deepening bowl, beat
persistence on the test set; model file round trip; iterative forecast; refusals."""

import dataclasses
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tests.ml.scene import bowl_scene

pytestmark = pytest.mark.tf
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {
    "epochs": 6,
    "gru_epochs": 20,
    "test_count": 8,
    "device": "cpu",
    "seed": 7,
    "width": 8,
}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from affine import Affine

    from deformation_forecast.core.stack import write_stack

    folder = tmp_path_factory.mktemp("scene")
    data, dates = bowl_scene(56, 32)
    path = str(folder / "stack.tif")
    write_stack(path, data, dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    return folder, path, data, dates


@pytest.fixture(scope="module")
def trained(scene):
    from deformation_forecast.ml.train import run_train

    folder, path, _, _ = scene
    params = dict(
        TINY,
        input=path,
        output_model=str(folder / "m.dfmodel"),
        output_report=str(folder / "report.html"),
        predictions=str(folder / "pred.npz"),
    )
    return params, run_train(params)


def test_training_beats_persistence_and_writes_everything(trained):
    params, res = trained
    assert os.path.isfile(params["output_model"])
    assert not os.path.exists(params["output_model"] + ".checkpoint")
    assert res["epochs_run"] >= 1
    assert res["test_metrics"]["MAE"] < 0.8 * res["persistence_metrics"]["MAE"], res
    assert res["test_metrics"]["SSIM"] > 0.95
    # issue 17: the iterative backtest per horizon, next to persistence and the trend line
    bt = res["backtest"]
    assert len(bt["network_mae"]) == len(bt["persistence_mae"]) == len(bt["trend_mae"]) == 8
    assert bt["skill_vs_persistence"] == pytest.approx(
        1 - bt["network_overall_mae"] / bt["persistence_overall_mae"]
    )
    assert bt["persistence_mae"][-1] > bt["persistence_mae"][0]  # the bowl deepens: holding it lags
    assert bt["skill_vs_persistence"] > 0.3  # the trend-residual network beats holding a deepening bowl
    # issue 17: the forecast's base line (weighted, its shrinkage chosen on the validation dates)
    from deformation_forecast.ml.modelfile import read_model_meta
    from deformation_forecast.ml.trend import SHRINK_CANDIDATES

    line = read_model_meta(params["output_model"]).trend_line
    assert line["weighted"] is True and line["shrink"] in SHRINK_CANDIDATES
    html = open(params["output_report"], encoding="utf-8").read()
    assert html.count("data:image/png;base64,") >= 3 and "persistence" in html
    pred = np.load(params["predictions"])
    assert pred["one_step"].shape == pred["iterative"].shape == pred["targets"].shape == (8, 32, 32)
    assert len(pred["test_dates"]) == 8 and str(pred["test_dates"][0]).count("-") == 2
    assert np.isnan(pred["one_step"][:, 0, 0]).all() and np.isnan(pred["targets"][:, 0, 0]).all()
    assert float(pred["train_seconds"]) > 0 and str(pred["device"]) == "CPU"


def test_model_file_round_trip_identical_predictions(trained, scene):
    from deformation_forecast.ml.dataset import predict_frames
    from deformation_forecast.ml.modelfile import load_model, read_meta, save_model

    params, _ = trained
    net, gru, meta = load_model(params["output_model"])
    rng = np.random.default_rng(0)
    assert meta.residual == "trend" and len(net.inputs) == 2  # the default: residual over the trend
    x = rng.uniform(-1, 1, size=(2, meta.time_step, 32, 32, 3)).astype("float32")
    line = rng.uniform(-1, 1, size=(2, 32, 32)).astype("float32")
    a = predict_frames(net, x, meta.tile, meta.overlap, trend=line)
    copy = os.path.join(os.path.dirname(params["output_model"]), "copy.dfmodel")
    save_model(copy, net, gru, meta)
    net2, gru2, meta2 = load_model(copy)
    assert meta2 == meta  # the typed description round-trips
    np.testing.assert_array_equal(a, predict_frames(net2, x, meta2.tile, meta2.overlap, trend=line))
    z = rng.normal(size=(3, meta.compressor_time_step, 2)).astype("float32")
    np.testing.assert_array_equal(
        np.asarray(gru([z[..., :1], z[..., 1:]])), np.asarray(gru2([z[..., :1], z[..., 1:]]))
    )
    assert read_meta(copy)["grid"]["width"] == 32


def test_forecast_command_and_refusals(trained, scene, tmp_path):
    from deformation_forecast.core.errors import InputError
    from deformation_forecast.core.stack import read_info, read_stack, write_stack
    from deformation_forecast.ml.forecast import run_forecast
    from deformation_forecast.ml.modelfile import read_meta

    params, _ = trained
    folder, path, data, dates = scene
    out = str(tmp_path / "fc.tif")
    rate = str(tmp_path / "rate.tif")
    res = run_forecast(
        {
            "input": path,
            "model": params["output_model"],
            "steps": 40,
            "device": "cpu",
            "output": out,
            "output_rate": rate,
        }
    )
    info = read_info(out)
    assert info.count == 40 and info.dates[0] > dates[-1]
    assert (info.dates[1] - info.dates[0]).days == 12
    fc = read_stack(out)
    assert np.isnan(fc[:, 0, 0]).all() and np.isfinite(fc[:, 20, 20]).all()
    # the bowl keeps deepening
    assert np.nanmin(fc[-1]) < np.nanmin(data[-1])
    assert read_info(rate).count == 2 and res["rate_dates"]
    # another grid is refused with the reason
    other = str(tmp_path / "other.tif")
    from affine import Affine

    write_stack(other, data[:, :16, :16], dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    with pytest.raises(InputError, match="32 x 32 grid"):
        run_forecast({"input": other, "model": params["output_model"], "device": "cpu", "output": out})
    # not a model of ours
    junk = str(tmp_path / "junk.dfmodel")
    with zipfile.ZipFile(junk, "w") as z:
        z.writestr("meta.json", json.dumps({"format": "something else"}))
        z.writestr("network.keras", b"")
        z.writestr("compressor.keras", b"")
    with pytest.raises(InputError, match="not a deformation forecast model"):
        read_meta(junk)
    open(junk, "wb").write(b"\x80\x04pickle")
    with pytest.raises(InputError, match="not a deformation forecast model"):
        read_meta(junk)
    # a truncated copy of a real model
    whole = open(params["output_model"], "rb").read()
    open(junk, "wb").write(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="damaged or truncated"):
        read_meta(junk)
    # a stack at three times the model's interval
    sparse = str(tmp_path / "sparse.tif")
    write_stack(sparse, data[::3], dates[::3], "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    with pytest.raises(InputError, match="more than twice the model's interval"):
        run_forecast(
            {"input": sparse, "model": params["output_model"], "device": "cpu", "output": out + "2.tif"}
        )
    assert not os.path.exists(out + "2.tif")


def test_cpu_runs_are_reproducible(scene, tmp_path):
    """Two runs with the same SEED on the CPU give the same weights (separate worker processes)."""
    _, path, _, _ = scene
    preds = []
    for k in range(2):
        params = dict(
            TINY,
            input=path,
            output_model=str(tmp_path / f"m{k}.dfmodel"),
            epochs=1,
            gru_epochs=2,
            predictions=str(tmp_path / f"p{k}.npz"),
        )
        pfile = tmp_path / f"p{k}.json"
        pfile.write_text(json.dumps(params))
        env = dict(os.environ, PYTHONPATH=ROOT)
        p = subprocess.run(
            [sys.executable, "-m", "deformation_forecast.ml", "train", "--params", str(pfile)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        assert '"progress"' in p.stdout and "epoch 1/1" in p.stdout
        preds.append(np.load(params["predictions"])["one_step"])
    np.testing.assert_array_equal(preds[0], preds[1])


def test_forecast_bounds_from_the_models_calibration(trained, scene, tmp_path):
    """Issue 17: the model carries per-horizon conformal quantiles from its test backtest; the forecast
    writes lower/upper stacks around it (tagged), NaN where it is NaN, wider at longer horizons;
    a model without calibration (an older file) still forecasts but refuses the bounds, saying why."""
    import rasterio

    from deformation_forecast.core.errors import InputError
    from deformation_forecast.core.stack import read_info, read_stack
    from deformation_forecast.ml.forecast import run_forecast
    from deformation_forecast.ml.modelfile import load_model, read_meta, save_model

    params, _ = trained
    _, path, _, _ = scene
    cal = read_meta(params["output_model"])["calibration"]
    assert len(cal["quantiles"]) == 8 and min(cal["counts"]) > 500
    q = np.array(cal["quantiles"])
    assert (np.diff(q, axis=0) >= 0).all() and (np.diff(q, axis=1) >= 0).all() and q[0, 0] > 0
    out, lo_p, hi_p = (str(tmp_path / f"{k}.tif") for k in ("fc", "lo", "hi"))
    base = {"input": path, "model": params["output_model"], "steps": 12, "device": "cpu", "output": out}
    res = run_forecast(dict(base, output_lower=lo_p, output_upper=hi_p, confidence=0.8))
    assert res["confidence"] == 0.8 and res["calibrated_horizons"] == 8
    fc, lo, hi = read_stack(out), read_stack(lo_p), read_stack(hi_p)
    assert read_info(lo_p).dates == read_info(out).dates
    np.testing.assert_array_equal(np.isnan(fc), np.isnan(lo))
    np.testing.assert_array_equal(np.isnan(fc), np.isnan(hi))
    ok = np.isfinite(fc)
    assert ok.sum() > 0.9 * fc.size and (lo[ok] < fc[ok]).all() and (fc[ok] < hi[ok]).all()
    # symmetric about the forecast, never narrower at a longer horizon
    np.testing.assert_allclose((hi - fc)[ok], (fc - lo)[ok], atol=1e-3)
    width = hi - lo
    assert (np.diff(width[:, 20, 20]) >= -1e-3).all() and width[-1, 20, 20] > width[0, 20, 20]
    with rasterio.open(hi_p) as src:
        tags = src.tags()
    assert tags["INTERVAL"] == "upper" and tags["CONFIDENCE"] == "0.8"
    # a wider level gives a wider band
    run_forecast(dict(base, output_upper=hi_p, confidence=0.95))
    assert (read_stack(hi_p)[ok] - fc[ok] >= (hi - fc)[ok] - 1e-4).all()
    # an older model file (no calibration): forecasts, but refuses the bounds with the fix
    net, gru, meta = load_model(params["output_model"])
    old = str(tmp_path / "old.dfmodel")
    save_model(old, net, gru, dataclasses.replace(meta, calibration=None))
    run_forecast(dict(base, model=old))
    with pytest.raises(InputError, match="no interval calibration.*TEST_COUNT"):
        run_forecast(dict(base, model=old, output_lower=lo_p))


def test_default_test_count_fits_short_series():
    """TEST_COUNT -1 (the default): the smaller of 20 and a fifth of the dates, not half a short series."""
    from deformation_forecast.jobs import TrainJob
    from deformation_forecast.ml.train import DEFAULTS, test_count_of

    def job(**kw):
        return TrainJob(input="stack.tif", output_model="m.dfmodel", **kw)

    assert DEFAULTS["test_count"] == -1 == job().test_count
    assert test_count_of(job(), 40) == 8
    assert test_count_of(job(test_count=-1), 156) == 20
    assert test_count_of(job(test_count=5), 40) == 5 and test_count_of(job(test_count=0), 40) == 0


def test_forecast_methods_from_the_backtest(trained, scene, tmp_path):
    """Issue 17: METHOD persistence holds the last (regularized) date, trend extrapolates the line,
    best takes the least iterative backtest MAE; each with its own calibrated bounds."""
    from deformation_forecast.core.errors import InputError
    from deformation_forecast.core.stack import read_stack
    from deformation_forecast.ml.forecast import run_forecast
    from deformation_forecast.ml.modelfile import load_model, read_meta, save_model

    params, _ = trained
    _, path, data, _ = scene
    bt = read_meta(params["output_model"])["backtest"]
    assert set(bt["calibration"]) == {"persistence", "trend"}
    out, lo_p, hi_p = (str(tmp_path / f"{k}.tif") for k in ("fc", "lo", "hi"))
    base = {"input": path, "model": params["output_model"], "steps": 6, "device": "cpu", "output": out}
    res = run_forecast(dict(base, method="persistence", output_lower=lo_p, output_upper=hi_p))
    fc = read_stack(out)
    assert res["method"] == "persistence"
    np.testing.assert_allclose(fc[:, 20, 20], data[-1, 20, 20], atol=1e-4)  # 12-day data: no resampling
    assert (read_stack(lo_p)[:, 20, 20] < fc[:, 20, 20]).all() and np.isnan(fc[:, 0, 0]).all()
    run_forecast(dict(base, method="trend"))
    tr = read_stack(out)[:, 20, 20]
    np.testing.assert_allclose(np.diff(np.diff(tr)), 0, atol=1e-3)  # a straight line
    res = run_forecast(dict(base, method="best"))
    maes = {k: bt[f"{k}_overall_mae"] for k in ("network", "persistence", "trend")}
    assert res["method"] == min(maes, key=maes.get)
    net, gru, meta = load_model(params["output_model"])
    old = str(tmp_path / "old.dfmodel")
    save_model(old, net, gru, dataclasses.replace(meta, backtest=None))
    with pytest.raises(InputError, match="METHOD: .*no iterative backtest"):
        run_forecast(dict(base, model=old, method="best"))
