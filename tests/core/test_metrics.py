"""core.metrics against independent implementations (scikit-image, scikit-learn, numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import mean_absolute_error, r2_score

from deformation_forecast.core import metrics as mt


def _images(kind: str, shape=(96, 120), seed=0):
    rng = np.random.default_rng(seed)
    if kind == "random":
        obs = rng.uniform(-50, 10, size=shape)
        pred = obs + rng.normal(scale=5, size=shape)
    elif kind == "structured":  # a subsidence bowl, predicted a little too shallow and shifted
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        bowl = -300 * np.exp(-(((yy - 40) / 18.0) ** 2 + ((xx - 60) / 25.0) ** 2))
        obs = bowl + rng.normal(scale=2, size=shape)
        pred = 0.9 * np.roll(bowl, 2, axis=1) + rng.normal(scale=2, size=shape)
    else:  # smooth random field
        obs = rng.normal(size=shape).cumsum(0).cumsum(1)
        pred = obs + rng.normal(scale=4, size=shape)
    return pred, obs


def _sk_ssim(pred, obs, L):
    return structural_similarity(
        obs, pred, data_range=L, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )


@pytest.mark.parametrize("kind", ["random", "structured", "smooth"])
def test_ssim_psnr_match_scikit_image(kind):
    pred, obs = _images(kind)
    L = obs.max() - obs.min()
    assert mt.default_data_range(obs) == pytest.approx(L)
    assert mt.ssim(pred, obs) == pytest.approx(_sk_ssim(pred, obs, L), abs=1e-10)
    assert mt.psnr(pred, obs) == pytest.approx(peak_signal_noise_ratio(obs, pred, data_range=L), abs=1e-10)
    assert mt.mse(pred, obs) == pytest.approx(mean_squared_error(obs, pred))
    assert mt.mae(pred, obs) == pytest.approx(mean_absolute_error(obs.ravel(), pred.ravel()))
    assert mt.rmse(pred, obs) == pytest.approx(math.sqrt(mean_squared_error(obs, pred)))
    assert mt.r2(pred, obs) == pytest.approx(r2_score(obs.ravel(), pred.ravel()))
    assert mt.pearson_r2(pred, obs) == pytest.approx(np.corrcoef(obs.ravel(), pred.ravel())[0, 1] ** 2)


def test_explicit_data_range_is_used():
    pred, obs = _images("smooth", seed=3)
    assert mt.ssim(pred, obs, 500.0) == pytest.approx(_sk_ssim(pred, obs, 500.0), abs=1e-10)
    assert mt.psnr(pred, obs, 500.0) == pytest.approx(peak_signal_noise_ratio(obs, pred, data_range=500.0))
    with pytest.raises(ValueError):
        mt.psnr(pred, obs, 0)


def test_identical_images():
    _, obs = _images("structured")
    assert mt.mae(obs, obs) == 0
    assert mt.psnr(obs, obs) == math.inf
    assert mt.ssim(obs, obs) == pytest.approx(1.0)
    assert mt.ms_ssim(obs, obs) == pytest.approx(1.0)
    assert mt.r2(obs, obs) == pytest.approx(1.0)


def test_nan_pixels_are_ignored():
    pred, obs = _images("structured", seed=1)
    ok = np.ones(obs.shape, bool)
    ok[10:30, 50:90] = False  # an incoherent patch
    ok[::7, ::5] = False
    p = np.where(ok, pred, np.nan)
    o = obs.copy()
    o[60:70, 5:15] = np.nan
    ok &= np.isfinite(o)
    assert mt.mae(p, o) == pytest.approx(np.abs(pred - obs)[ok].mean())
    assert mt.mse(p, o) == pytest.approx(((pred - obs) ** 2)[ok].mean())
    assert mt.r2(p, o) == pytest.approx(r2_score(obs[ok], pred[ok]))
    L = obs[ok].max() - obs[ok].min()
    assert mt.default_data_range(o, p) == pytest.approx(L)
    assert mt.psnr(p, o) == pytest.approx(10 * np.log10(L**2 / ((pred - obs) ** 2)[ok].mean()))
    s = mt.ssim(p, o)
    full = _sk_ssim(pred, obs, L)
    assert np.isfinite(s) and abs(s - full) < 0.05  # local stats from the valid pixels only
    assert np.isfinite(mt.ms_ssim(p, o))
    # the values put under the NaNs do not matter
    p2 = np.where(ok, pred, 1e6)
    p2[~ok] = np.nan
    assert mt.ssim(p2, o) == pytest.approx(s)


def test_ssim_nan_block_equals_ssim_of_the_rest():
    """A NaN block along one edge: the SSIM equals the SSIM of the image cropped to the rest."""
    pred, obs = _images("smooth", seed=4)
    p, o = pred.copy(), obs.copy()
    p[:, :30] = np.nan
    L = 100.0
    crop = mt.ssim(pred[:, 30:], obs[:, 30:], L)
    # windows that straddle the edge use valid pixels only, so they differ a little from a crop
    assert mt.ssim(p, o, L) == pytest.approx(crop, abs=0.02)


def test_all_nan_gives_nan():
    a = np.full((20, 20), np.nan)
    b = np.zeros((20, 20))
    for fn in (mt.mae, mt.mse, mt.rmse, mt.ssim, mt.ms_ssim, mt.psnr, mt.r2):
        assert math.isnan(fn(a, b)), fn.__name__


def test_ms_ssim_properties_without_tensorflow():
    pred, obs = _images("structured", shape=(200, 210))
    v = mt.ms_ssim(pred, obs)
    assert 0 < v <= 1
    assert mt.ms_ssim_scales((200, 210)) == 5
    assert mt.ms_ssim_scales((40, 40)) == 2
    assert mt.ms_ssim_scales((12, 12)) == 1
    # a small image: scales that fit, weights renormalized; single scale = SSIM
    small_p, small_o = pred[34:46, 54:66], obs[34:46, 54:66]  # inside the bowl
    assert mt.ssim(small_p, small_o) > 0
    assert mt.ms_ssim(small_p, small_o) == pytest.approx(mt.ssim(small_p, small_o))
    assert 0 < mt.ms_ssim(pred[:40, :40], obs[:40, :40]) <= 1
    # noisier prediction scores lower
    worse = obs + (pred - obs) * 3
    assert mt.ms_ssim(worse, obs) < v


def test_tiny_images_use_a_smaller_window():
    rng = np.random.default_rng(2)
    o = rng.normal(size=(6, 8))
    assert np.isfinite(mt.ssim(o + 0.1, o))


def test_flat_observation_range_fallback():
    o = np.full((16, 16), -5.0)
    assert mt.default_data_range(o) == 5.0
    assert mt.default_data_range(np.zeros((4, 4))) == 1.0
    assert mt.default_data_range(np.full((4, 4), np.nan)) == 1.0


def test_stack_metrics_per_date_and_overall():
    rng = np.random.default_rng(5)
    obs = rng.normal(size=(4, 40, 50)).cumsum(0) * 10
    pred = obs + rng.normal(scale=2, size=obs.shape)
    pred[2, :5, :5] = np.nan
    per, overall = mt.stack_metrics(pred, obs)
    L = obs.max() - obs.min()
    assert len(per) == 4
    for i, d in enumerate(per):
        assert d["DATA_RANGE"] == pytest.approx(L)
        assert d["SSIM"] == pytest.approx(mt.ssim(pred[i], obs[i], L))
        assert d["PSNR"] == pytest.approx(mt.psnr(pred[i], obs[i], L))
    ok = np.isfinite(pred)
    assert overall["MAE"] == pytest.approx(np.abs(pred - obs)[ok].mean())
    assert overall["SSIM"] == pytest.approx(np.mean([d["SSIM"] for d in per]))
    assert overall["PSNR"] == pytest.approx(10 * np.log10(L**2 / ((pred - obs) ** 2)[ok].mean()))
    assert overall["N"] == ok.sum()
    err = mt.abs_error_stack(pred, obs)
    assert err.dtype == np.float32 and np.isnan(err[2, 0, 0])
    assert set(mt.METRICS) <= set(overall)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        mt.mae(np.zeros((3, 3)), np.zeros((3, 4)))
