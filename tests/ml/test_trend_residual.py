"""The default networks predict the residual over a per-pixel linear trend (ml/trend.py): untrained,
they ARE the linear-trend forecast, so they cannot start worse than it."""

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def _linear_scene(n=60, size=32, seed=3, noise=0.5):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype("float64")
    rate = -3.0 * np.exp(-((xx - 12) ** 2 + (yy - 18) ** 2) / 60.0) + 0.2  # mm per step
    t = np.arange(n, dtype="float64")[:, None, None]
    data = (rate[None] * t + rng.normal(scale=noise, size=(n, size, size))).astype("float32")
    data[:, :2, :3] = np.nan
    return data, rate


def _numpy_trend(hist, steps, window):
    from deformation_forecast.ml.trend import fit_line

    last, slope = fit_line(np.nan_to_num(hist[-window:], nan=0.0))
    return last[None] + slope[None] * np.arange(1, steps + 1, dtype="float32")[:, None, None]


def test_fit_line_is_least_squares():
    from deformation_forecast.ml.trend import fit_line

    rng = np.random.default_rng(0)
    y = rng.normal(size=(9, 4))
    last, slope = fit_line(y)
    for j in range(4):
        b, a = np.polyfit(np.arange(9), y[:, j], 1)
        assert slope[j] == pytest.approx(b, abs=1e-5)
        assert last[j] == pytest.approx(a + 8 * b, abs=1e-5)


def test_untrained_default_network_is_the_linear_trend():
    import keras

    from deformation_forecast.ml.compressor import ExtremumGRU, frame_extremes
    from deformation_forecast.ml.forecast import Predictor, forecast_stack
    from deformation_forecast.ml.modelfile import TrendParams
    from deformation_forecast.ml.network import build_network
    from deformation_forecast.ml.train import DEFAULTS
    from deformation_forecast.ml.trend import choose_window, scales

    assert DEFAULTS["architecture"] == "cnn-phlstm" and DEFAULTS["residual"] == "auto"
    keras.utils.set_random_seed(1)
    data, rate = _linear_scene()
    hist = data[:48]
    steps, ts = 12, 5
    mask = np.isfinite(hist).all(axis=0)
    # on a linear scene with noise the validation picks a long line, not persistence
    window, errors = choose_window(np.nan_to_num(hist), mask, 40, 48)
    assert window >= 20 and errors[window] < errors[1], errors
    fscale, rscale = scales(np.where(mask, hist, 0.0), mask, np.arange(ts, len(hist)), ts, window)
    assert 0.3 < rscale < 1.0  # the noise, not the deformation
    net = build_network("cnn-phlstm", ts, 32, 4, residual="trend", out_scale=rscale / fscale)
    fmin, fmax = frame_extremes(hist)
    gru = ExtremumGRU(time_step=5, units=4, epochs=1)
    gru.fit(fmin, fmax)
    trend = TrendParams(window, rscale, fscale)
    frames, _, _ = forecast_stack(Predictor(net, ts, 32, 8, trend), gru, hist, steps)
    expected = _numpy_trend(hist, steps, window)
    ok = mask
    np.testing.assert_allclose(frames[:, ok], expected[:, ok], atol=1e-3 * fscale)
    assert np.isnan(frames[:, ~mask]).all()
    # and it beats persistence on the noise-free future of the linear scene
    t = np.arange(48, 48 + steps, dtype="float32")[:, None, None]
    future_truth = rate[None] * t
    err_fc = np.abs(frames[:, ok] - future_truth[:, ok]).mean()
    err_pers = np.abs(hist[-1][ok][None] - future_truth[:, ok]).mean()
    assert err_fc < 0.5 * err_pers


def test_model_format_2_and_format_1_still_read(tmp_path):
    import dataclasses
    import json
    import zipfile

    from deformation_forecast.ml.modelfile import FORMAT, VERSION, ModelMeta, read_meta

    assert VERSION == 2
    base = {"architecture": "cnn-phlstm", "time_step": 5, "interval_days": 12, "tile": 16, "overlap": 4}
    base |= {"grid": {"width": 8, "height": 8}, "compressor": {"time_step": 15}}
    trend = {"residual": "trend", "trend_window": 10, "residual_scale": 0.5, "frame_scale": 9.0}
    for version, meta in ((1, base), (2, base | trend)):
        path = tmp_path / f"v{version}.dfmodel"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("meta.json", json.dumps({"format": FORMAT, "version": version, **meta}))
            z.writestr("network.keras", b"")
            z.writestr("compressor.keras", b"")
        assert read_meta(str(path))["version"] == version
        typed = ModelMeta.from_json(read_meta(str(path)))
        assert typed.format_version == version
        # format 1: the compressed pipeline, no trend; format 2: the trend settings at the top level
        assert (typed.trend is None) == (version == 1) and typed.residual == meta.get("residual")
        # written back in the current format with the same content
        assert ModelMeta.from_json(typed.to_json()) == dataclasses.replace(typed, format_version=VERSION)
        written = typed.to_json()
        assert written["version"] == VERSION and {k: written[k] for k in meta} == meta


@pytest.mark.parametrize("kind", ["line", "walk", "bowl", "quadratic"])
def test_network_and_comparison_pick_the_same_trend_window(kind, tmp_path):
    """Issue 20 / 17: one choice of the trend window (core.baselines) for comparemodels' linear-trend
    baseline and the default networks' trend: on the same series and split, the baseline
    (LinearTrend, real time), ml.trend.choose_window and the training's streamed, sampled path
    (ml.train.trend_settings over the work file) pick the same window with the same errors."""
    import datetime as dt

    from affine import Affine

    from deformation_forecast.core import baselines as bl
    from deformation_forecast.core.run import Run
    from deformation_forecast.core.split import make_split
    from deformation_forecast.core.stack import read_info, write_stack
    from deformation_forecast.ml.dataset import split_windows
    from deformation_forecast.ml.source import WorkStack, prepare
    from deformation_forecast.ml.train import TrainingData, train_job, trend_settings
    from deformation_forecast.ml.trend import choose_window
    from tests.ml.scene import bowl_scene

    n, rng = 70, np.random.default_rng(4)
    if kind == "line":
        data, _ = _linear_scene(n, 16, seed=1)
    elif kind == "walk":
        data = rng.normal(size=(n, 16, 16)).cumsum(axis=0).astype("float32")
    elif kind == "bowl":
        data, _ = bowl_scene(n, 16, seed=2)
    else:
        t = np.arange(n, dtype="float64")[:, None, None]
        data = (0.01 * t**2 + rng.normal(scale=0.3, size=(n, 16, 16))).astype("float32")
    dates = [dt.date(2019, 1, 1) + dt.timedelta(days=12 * k) for k in range(n)]
    ts, test_count, val = 5, 12, 0.2
    split = split_windows(n, ts, test_count, val)
    core_split = make_split(n, ts, test_count, val)
    assert core_split.first_test == int(split.test[0]) and int(core_split.val[0]) == int(split.val[0])
    mask = np.isfinite(data).all(axis=0)
    frames = np.where(mask, data, np.nan)
    lt = bl.LinearTrend(0)
    lt.fit(frames, bl.times_of(dates), core_split)
    first_val, first_test = int(split.val[0]), int(split.test[0])
    window, errors = choose_window(np.nan_to_num(data[:first_test]), mask, first_val, first_test)
    assert window == lt.window
    maes = {w: e / c for w, (e, c) in lt.errors.items()}
    assert errors == pytest.approx(maes, rel=1e-9)
    path = str(tmp_path / "stack.tif")
    write_stack(path, data, dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    info = read_info(path)
    prep = prepare(info, 12, str(tmp_path / "work"))
    job = train_job({"input": path, "output_model": str(tmp_path / "m.dfmodel"), "trend_window": 0})
    with WorkStack(prep) as work:
        trend, _ = trend_settings(job, TrainingData(info, prep, work, split), 3, Run())
    assert trend.trend_window == window
