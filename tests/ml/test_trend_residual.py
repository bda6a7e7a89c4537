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
    from deformation_forecast.ml.forecast import forecast_stack
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
    trend = {"trend_window": window, "residual_scale": rscale, "frame_scale": fscale}
    frames, _, _ = forecast_stack(net, gru, hist, ts, steps, 32, 8, trend=trend)
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
    import json
    import zipfile

    from deformation_forecast.ml.forecast import trend_params
    from deformation_forecast.ml.modelfile import FORMAT, VERSION, read_meta

    assert VERSION == 2
    for version, meta in ((1, {"architecture": "cnn-phlstm"}), (2, {"residual": "trend"})):
        path = tmp_path / f"v{version}.dfmodel"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("meta.json", json.dumps({"format": FORMAT, "version": version, **meta}))
            z.writestr("network.keras", b"")
            z.writestr("compressor.keras", b"")
        assert read_meta(str(path))["version"] == version
    assert trend_params({"architecture": "cnn-phlstm"}) is None  # format 1: compressed pipeline
