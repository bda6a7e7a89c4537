"""Issue 17: the forecast must not add noise where the ground is stable.

The default network predicts the residual over a per-pixel least-squares line; on noisy stable
ground that line's slope is noise, and extrapolating it is what cost the forecast its whole-scene
SSIM on the sample scene. The forecast's base line (ml/trend.py ``stable_line``) is weighted by each
date's noise and its slope is shrunk by its significance; these tests check it on a scene of
stable ground under a per-date atmosphere of varying strength, plus a subsidence bowl.
"""

from __future__ import annotations

import numpy as np
import pytest

N, SIZE, WINDOW, STEPS = 60, 48, 40, 20


def atmosphere_scene(seed: int = 0):
    """(observed (N, S, S), future truth (STEPS, S, S), bowl mask, each date's atmosphere strength
    (mm)): zero on stable ground, a bowl
    sinking 1.5 mm per date at its centre; each date gets a smooth atmosphere of its own strength
    (1-9 mm, lognormal) and 1 mm of white noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    t = np.arange(N + STEPS, dtype="float64")[:, None, None]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype("float64")
    shape = np.exp(-((yy - 12) ** 2 + (xx - 12) ** 2) / (2 * 5.0**2))
    truth = (-1.5 * t * shape).astype("float32")
    noise = np.empty((N, SIZE, SIZE), "float32")
    amp = 3.0 * np.exp(0.6 * np.clip(rng.standard_normal(N), -2, 2))
    for k in range(N):
        field = gaussian_filter(rng.standard_normal((SIZE, SIZE)), 6.0, mode="wrap")
        noise[k] = amp[k] * field / field.std() + rng.standard_normal((SIZE, SIZE))
    noise[0], amp[0] = 0.0, 0.0  # the reference date
    return truth[:N] + noise, truth[N:], shape > 0.2, amp


def test_weighted_line_is_least_squares_with_equal_noise():
    from deformation_forecast.ml.trend import fit_line, stable_line

    rng = np.random.default_rng(1)
    y = rng.normal(size=(12, 5, 4)).astype("float32") + np.arange(12, dtype="float32")[:, None, None]
    last0, slope0 = fit_line(y)
    last1, slope1 = stable_line(y, np.full(12, 2.5), shrink=0.0)
    np.testing.assert_allclose(last1, last0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(slope1, slope0, rtol=1e-5, atol=1e-6)


def test_noisy_dates_count_less_and_insignificant_slopes_shrink():
    """Known answers: the per-date noise (date_noise) finds the loud dates; the weighted line's
    slope error on stable ground is well below the plain line's; shrinkage removes most of what is
    left there and keeps a clear slope."""
    from deformation_forecast.ml.trend import date_noise, fit_line, stable_line

    obs, _, bowl, amp = atmosphere_scene(seed=2)
    hist, amp = obs[-WINDOW:], amp[-WINDOW:]
    var, n = date_noise(hist)
    assert n == SIZE * SIZE
    order = np.argsort(amp)
    assert var[order[-5:]].min() > 3 * var[order[:5]].max()
    assert np.corrcoef(np.sqrt(var), amp)[0, 1] > 0.9
    stable = ~bowl
    _, s_ols = fit_line(hist)
    _, s_w = stable_line(hist, var, 0.0)
    _, s_shrunk = stable_line(hist, var, 2.0)
    rms = {
        k: float(np.sqrt((s[stable] ** 2).mean()))
        for k, s in (("ols", s_ols), ("w", s_w), ("shrunk", s_shrunk))
    }
    assert rms["w"] < 0.8 * rms["ols"], rms
    assert rms["shrunk"] < 0.8 * rms["w"], rms
    centre = (12, 12)
    assert s_shrunk[centre] == pytest.approx(-1.5, rel=0.05)  # the bowl keeps its rate


@pytest.mark.tf
def test_forecast_adds_no_noise_on_stable_ground():
    """An untrained trend network (its output is its line) forecast 20 dates ahead with the base
    line of a model trained now (trend_line: weighted, shrunk) and as before (no trend_line): on
    stable ground the new forecast is closer to the truth (zero), adds no fine-scale speckle and
    scores a higher SSIM; on the bowl it is no worse. Fails with the plain line (equal)."""
    from scipy.ndimage import gaussian_filter

    from deformation_forecast.core.metrics import ssim
    from deformation_forecast.ml.compressor import frame_extremes
    from deformation_forecast.ml.forecast import Extremes, Predictor, forecast_window
    from tests.ml.test_forecast_blocks import OVERLAP, TILE, TS, make_parts

    obs, truth, bowl, _ = atmosphere_scene(seed=3)
    net, gru, trend = make_parts(obs, trend_window=WINDOW, kernel_scale=0.0)  # the untrained network
    fmin, fmax = frame_extremes(obs)
    pmin, pmax = gru.iterate(fmin, fmax, STEPS)
    ext = Extremes(fmin, fmax, pmin, pmax)
    plain = forecast_window(Predictor(net, TS, TILE, OVERLAP, trend), obs[-WINDOW:], ext, STEPS)
    line = {"weighted": True, "shrink": 2.0}
    new = forecast_window(Predictor(net, TS, TILE, OVERLAP, trend, line=line), obs[-WINDOW:], ext, STEPS)
    stable = ~bowl

    def stable_rms(f):
        return float(np.sqrt(((f - truth)[:, stable] ** 2).mean()))

    def fine_energy(f):  # what a 2-pixel Gaussian removes, on stable ground
        fine = np.stack([fr - gaussian_filter(fr, 2.0) for fr in f])
        return float((fine[:, stable] ** 2).mean())

    assert stable_rms(new) < 0.7 * stable_rms(plain)
    # weighting by date averages the white noise over fewer effective dates: the fine-scale energy
    # may grow by a few % (here +1 %) while the error falls by 40 %; shrink factors drawn pixel by
    # pixel without smoothing (speckle) gave +9 %
    assert fine_energy(new) <= 1.05 * fine_energy(plain)
    L = float(truth.max() - truth.min())
    s_new = np.mean([ssim(new[k], truth[k], L) for k in range(STEPS)])
    s_plain = np.mean([ssim(plain[k], truth[k], L) for k in range(STEPS)])
    assert s_new > s_plain
    assert np.abs(new - truth)[:, bowl].mean() <= 1.05 * np.abs(plain - truth)[:, bowl].mean()


@pytest.mark.tf
def test_blocks_weigh_the_dates_alike():
    """forecast's first pass gathers the dates' noise over the whole raster (NoiseTail): a forecast
    cut into 4 blocks equals the one-block forecast; with each block's own noise it would not."""
    from deformation_forecast.ml.blocks import BlockPlan, split_axis
    from deformation_forecast.ml.compressor import frame_extremes
    from deformation_forecast.ml.forecast import Extremes, ForecastPlan, NoiseTail, Predictor, forecast_blocks
    from tests.ml.test_forecast_blocks import OVERLAP, TILE, TS, make_parts

    obs, _, _, _ = atmosphere_scene(seed=4)
    net, gru, trend = make_parts(obs, trend_window=WINDOW, kernel_scale=0.0)
    model = Predictor(net, TS, TILE, OVERLAP, trend, line={"weighted": True, "shrink": 2.0})
    fmin, fmax = frame_extremes(obs)
    pmin, pmax = gru.iterate(fmin, fmax, STEPS)

    class Tail:  # the first pass writes two row strips
        def write(self, win, data):
            pass

    seen = NoiseTail(Tail(), model)
    seen.write(None, obs[-WINDOW:, : SIZE // 2])
    seen.write(None, obs[-WINDOW:, SIZE // 2 :])
    ext = Extremes(fmin, fmax, pmin, pmax, seen.sums.result())

    def run(core):
        axis = split_axis(SIZE, core, TILE - OVERLAP, TILE, TILE - OVERLAP)
        p = BlockPlan(axis, axis)
        out = np.zeros((STEPS, SIZE, SIZE), "float32")

        def sink(win, frames):
            r, c = int(win.row_off), int(win.col_off)
            out[:, r : r + int(win.height), c : c + int(win.width)] = frames

        def read(win):
            r, c = int(win.row_off), int(win.col_off)
            return obs[-WINDOW:, r : r + int(win.height), c : c + int(win.width)].copy()

        forecast_blocks(ForecastPlan(model, p, ext, STEPS), read, sink)
        return out, p.n_blocks

    one, n1 = run(SIZE)
    four, n4 = run(24)
    assert (n1, n4) == (1, 4)
    np.testing.assert_allclose(four, one, atol=0.01)  # mm (each block's own noise: 1.3 mm)
