"""The PhLSTM cell against a plain NumPy implementation of eqs. 5-10, and its save/load."""

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_phlstm(x, kernel, recurrent, peephole, bias):
    """Eqs. 5-10 written out, one time step at a time; returns all h_t."""
    b, t, _ = x.shape
    u = recurrent.shape[0]
    h = np.zeros((b, u))
    c = np.zeros((b, u))
    wx = {g: kernel[:, k * u : (k + 1) * u] for k, g in enumerate("ifco")}
    wh = {g: recurrent[:, k * u : (k + 1) * u] for k, g in enumerate("ifco")}
    bb = {g: bias[k * u : (k + 1) * u] for k, g in enumerate("ifco")}
    w_ci, w_cf, w_co = peephole
    out = []
    for s in range(t):
        xt = x[:, s]
        f = _sigmoid(xt @ wx["f"] + h @ wh["f"] + w_cf * c + bb["f"])  # (5)
        i = _sigmoid(xt @ wx["i"] + h @ wh["i"] + w_ci * c + bb["i"])  # (6)
        c_tilde = np.tanh(xt @ wx["c"] + h @ wh["c"] + bb["c"])  # (7)
        c = f * c + i * c_tilde  # (8)
        o = _sigmoid(xt @ wx["o"] + h @ wh["o"] + w_co * c + bb["o"])  # (9)
        h = o * np.tanh(c)  # (10)
        out.append(h)
    return np.stack(out, axis=1)


def test_cell_matches_numpy_equations():
    import keras

    from deformation_forecast.ml.peephole import phlstm

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 5)).astype("float32")
    layer = phlstm(4, return_sequences=True)
    layer(x)  # build
    cell = layer.cell
    weights = [
        rng.normal(scale=0.5, size=w.shape).astype("float32")
        for w in (cell.kernel, cell.recurrent_kernel, cell.peephole, cell.bias)
    ]
    cell.kernel.assign(weights[0])
    cell.recurrent_kernel.assign(weights[1])
    cell.peephole.assign(weights[2])
    cell.bias.assign(weights[3])
    got = keras.ops.convert_to_numpy(layer(x))
    want = numpy_phlstm(x.astype("float64"), *[w.astype("float64") for w in weights])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the peepholes matter: zeroing them changes the output
    cell.peephole.assign(np.zeros_like(weights[2]))
    assert not np.allclose(keras.ops.convert_to_numpy(layer(x)), want, atol=1e-3)


def test_cell_saves_and_loads_in_safe_mode(tmp_path):
    import keras

    from deformation_forecast.ml.peephole import phlstm

    rng = np.random.default_rng(1)
    inp = keras.Input((6, 3))
    out = keras.layers.Dense(1)(phlstm(8)(inp))
    model = keras.Model(inp, out)
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))


def test_loss_ms_ssim_matches_tensorflow_and_has_finite_gradients():
    import tensorflow as tf

    from deformation_forecast.ml.network import make_loss, ms_ssim_tf

    rng = np.random.default_rng(3)
    a = rng.uniform(size=(2, 64, 64, 1)).astype("float32")
    b = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1).astype("float32")
    power = (0.0448, 0.2856, 0.3001)
    power = tuple(w / sum(power) for w in power)
    want = tf.image.ssim_multiscale(a, b, 1.0, power_factors=power, filter_size=11)
    np.testing.assert_allclose(ms_ssim_tf(a, b, 1.0, power, 11), want, rtol=1e-4)
    # anti-correlated images: the library's gradient is NaN there, ours stays finite
    x = tf.Variable(1.0 - a)
    y_true = np.concatenate([a * 2 - 1, np.ones_like(a)], -1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(make_loss(0.7, 64)(y_true, x * 2 - 1))
    assert np.isfinite(tape.gradient(loss, x).numpy()).all()
