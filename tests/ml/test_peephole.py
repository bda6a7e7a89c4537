"""The PhLSTM cell against a plain NumPy implementation of eqs. 5-10, and its save/load."""

import os

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


DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.mark.parametrize("time_step", [None, 7], ids=["loop", "unrolled"])
def test_cell_matches_numpy_equations(time_step):
    import keras

    from deformation_forecast.ml.peephole import phlstm

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 5)).astype("float32")
    layer = phlstm(4, return_sequences=True, time_step=time_step)
    assert layer.unroll is (time_step is not None)
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


def test_unrolled_and_looped_layers_agree_in_value_and_gradient():
    import tensorflow as tf

    from deformation_forecast.ml.peephole import UNROLL_MAX_STEPS, phlstm, unroll_for

    assert unroll_for(5) and unroll_for(UNROLL_MAX_STEPS)
    assert not unroll_for(UNROLL_MAX_STEPS + 1) and not unroll_for(None)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(6, 5, 3)).astype("float32"))
    looped, unrolled = phlstm(8, time_step=None), phlstm(8, time_step=5)
    looped(x), unrolled(x)
    for a, b in zip(looped.weights, unrolled.weights, strict=True):
        b.assign(a)
    grads = []
    for layer in (looped, unrolled):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.range(1.0, 9.0))
        grads.append((y, tape.gradient(loss, [x] + layer.trainable_weights)))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    for g0, g1 in zip(grads[0][1], grads[1][1], strict=True):
        assert np.abs(g0.numpy()).max() > 0  # every weight (peepholes included) gets a gradient
        np.testing.assert_allclose(g0, g1, rtol=1e-4, atol=1e-6)
    # and the gradient is the equations': a central difference on one peephole weight
    cell = looped.cell
    eps = 1e-2
    w = cell.peephole.numpy()
    f = []
    for d in (eps, -eps):
        w2 = w.copy()
        w2[2, 3] += d
        cell.peephole.assign(w2)
        f.append(float(tf.reduce_sum(looped(x) * tf.range(1.0, 9.0))))
    cell.peephole.assign(w)
    np.testing.assert_allclose(grads[0][1][3][2, 3], (f[0] - f[1]) / (2 * eps), rtol=2e-2, atol=1e-4)


def test_model_file_written_by_the_first_cell_still_loads_and_predicts_the_same():
    """tests/ml/data/phlstm_5e35b62.keras: two PhLSTM layers and a Dense head saved by the cell of
    commit 5e35b62 (gates by slicing, no unroll); the .npz holds its input and prediction."""
    import keras

    from deformation_forecast.ml import peephole

    model = keras.saving.load_model(os.path.join(DATA, "phlstm_5e35b62.keras"), safe_mode=True)
    ref = np.load(os.path.join(DATA, "phlstm_5e35b62.npz"))
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=1e-6)
    layer = model.get_layer("ph1")
    assert isinstance(layer.cell, peephole.PeepholeLSTMCell) and not layer.unroll
    # the weights sit where the equations expect them: the NumPy eqs. on the loaded weights agree
    cell = layer.cell
    want = numpy_phlstm(
        ref["x"].astype("float64"),
        *[
            keras.ops.convert_to_numpy(w).astype("float64")
            for w in (cell.kernel, cell.recurrent_kernel, cell.peephole, cell.bias)
        ],
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(ref["x"])), want, rtol=1e-5, atol=1e-5)


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
