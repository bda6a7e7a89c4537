"""The GRU extremum compressor: eq. 3/4 round trip, and the next extremes of a known trend."""

import numpy as np
import pytest

from deformation_forecast.ml.compressor import ExtremumGRU, compress, decompress, frame_extremes


def test_compress_decompress_round_trip():
    rng = np.random.default_rng(0)
    frames = rng.normal(scale=30, size=(6, 8, 9)).astype("float32")
    frames[2, 1, 1] = np.nan
    fmin, fmax = frame_extremes(frames)
    c = compress(frames, fmin, fmax)
    assert np.nanmin(c) >= -1 - 1e-6 and np.nanmax(c) <= 1 + 1e-6
    assert np.isclose(np.nanmin(c[0]), -1) and np.isclose(np.nanmax(c[0]), 1)
    back = decompress(c, fmin, fmax)
    np.testing.assert_allclose(back, frames, rtol=1e-5, atol=1e-4)
    assert np.isnan(back[2, 1, 1])


@pytest.mark.tf
def test_gru_predicts_next_extremes_of_a_trend():
    import keras

    keras.utils.set_random_seed(0)
    t = np.arange(80, dtype="float64")
    rng = np.random.default_rng(1)
    fmin = -5.0 - 2.0 * t - 0.01 * t**2 + rng.normal(scale=0.3, size=t.size)  # deepening, accelerating
    fmax = 3.0 + 0.1 * t + rng.normal(scale=0.1, size=t.size)
    train = 60
    gru = ExtremumGRU(time_step=10, units=8, epochs=40, batch_size=16, learning_rate=3e-3)
    hist = gru.fit(fmin[:train], fmax[:train])
    assert hist["loss"][-1] < hist["loss"][0]
    pmin, pmax = gru.iterate(fmin[:train], fmax[:train], 20)
    # 20 steps ahead within 5 % of the true minimum, 1 mm of the maximum
    np.testing.assert_allclose(pmin, fmin[train:], rtol=0.05)
    np.testing.assert_allclose(pmax, fmax[train:], atol=1.0)
    one_min, one_max = gru.one_step(fmin, fmax, np.arange(train, 80))
    assert np.abs(one_min - fmin[train:]).max() < 2.0
