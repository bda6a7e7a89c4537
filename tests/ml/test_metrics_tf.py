"""core.metrics' SSIM and MS-SSIM against TensorFlow's (what the networks' loss uses)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from deformation_forecast.core import metrics as mt  # noqa: E402

pytestmark = pytest.mark.tf


def _pair(kind: str, shape, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "random":
        obs = rng.uniform(-20, 20, size=shape)
        pred = obs + rng.normal(scale=4, size=shape)
    elif kind == "bowl":
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        bowl = -120 * np.exp(-(((yy - 90) / 30.0) ** 2 + ((xx - 100) / 40.0) ** 2))
        obs = bowl + rng.normal(scale=1, size=shape)
        pred = 0.95 * np.roll(bowl, 3, axis=0) + rng.normal(scale=1, size=shape)
    else:
        obs = rng.normal(size=shape).cumsum(0).cumsum(1) / 10
        pred = obs + rng.normal(scale=2, size=shape)
    return pred, obs


def _tf(fn, pred, obs, L):
    a = tf.constant(pred[None, ..., None], dtype=tf.float64)
    b = tf.constant(obs[None, ..., None], dtype=tf.float64)
    return float(fn(a, b, max_val=L).numpy()[0])


@pytest.mark.parametrize("kind", ["random", "bowl", "smooth"])
@pytest.mark.parametrize("shape", [(200, 200), (177, 230)])  # even and odd sides (padding)
def test_ms_ssim_matches_tensorflow(kind, shape):
    pred, obs = _pair(kind, shape)
    L = float(obs.max() - obs.min())
    assert mt.ms_ssim_scales(shape) == 5
    assert mt.ms_ssim(pred, obs) == pytest.approx(_tf(tf.image.ssim_multiscale, pred, obs, L), abs=1e-6)
    assert mt.ms_ssim(pred, obs, 2 * L) == pytest.approx(
        _tf(tf.image.ssim_multiscale, pred, obs, 2 * L), abs=1e-6
    )


@pytest.mark.parametrize("kind", ["random", "bowl"])
def test_ssim_matches_tensorflow(kind):
    pred, obs = _pair(kind, (64, 90), seed=1)
    L = float(obs.max() - obs.min())
    assert mt.ssim(pred, obs) == pytest.approx(_tf(tf.image.ssim, pred, obs, L), abs=1e-6)
