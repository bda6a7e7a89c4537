"""The intervals' calibration backtests of ml/scoring.py (issue 17) with known answers, no network:
persistence's band follows each pixel's recent rate (format 3, ``motion_from`` "trend"), and rolling
origins pool several target dates per horizon."""

from __future__ import annotations

import numpy as np
import pytest

from deformation_forecast.core import intervals as iv
from deformation_forecast.ml.forecast import Bands, band_motion_frames, baseline_frames
from deformation_forecast.ml.scoring import (
    BaselineCalibration,
    CalibrationSample,
    calibration_origins,
    origin_offsets,
    origins_held_acquisitions,
)

N_TEST = 20  # the test span calibrated on (its dates are the last of the history)
TW = 20  # the trend window of the backtest's line
SIDE = 40


def bowl_scene(seed: int, n_hist: int = 80, steps: int = 20):
    """A bowl sinking linearly (up to 2 mm per date at its centre) in stable ground, N(0, 1 mm)
    noise on every date: (history (n_hist, SIDE, SIDE), future observations (steps, ...), moving area)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    r = np.hypot(yy - SIDE / 2, xx - SIDE / 2)
    rate = np.where(r < 12, -2.0 * (1 - r / 12), 0.0)
    t = np.arange(n_hist + steps)[:, None, None]
    obs = (rate[None] * t + rng.normal(0.0, 1.0, t.shape[:1] + rate.shape)).astype("float32")
    return obs[:n_hist], obs[n_hist:], np.abs(rate) > 0.5


def baseline_calibration(hist: np.ndarray) -> dict:
    """What ScoreSums gathers on one block: the rolling-origin backtests of the last N_TEST dates."""
    tl = np.arange(hist.shape[0] - N_TEST, hist.shape[0])
    mask = np.isfinite(hist).all(axis=0)
    base = BaselineCalibration(N_TEST, 1, 0, TW)
    base.add(hist, mask, tl, [iv.pixel_scale(hist[: int(t)]) for t in tl])
    return base.result()


def forecast_band(hist: np.ndarray, cal: dict, method: str, steps: int):
    """The forecast by `method` and its 90 % band as ml/forecast.py writes them (interval_setup's
    quantiles, the sink's motion frames, write_bounds' core.intervals.bounds)."""
    frames = baseline_frames(hist, steps, {"method": method, "trend_window": TW})
    groups = iv.group_quantiles(cal, 0.9, steps)
    q = groups if groups is not None else iv.horizon_quantiles(cal, 0.9, steps)
    bands = Bands(0.9, q, cal["floor"], N_TEST, iv.motion_of(cal), iv.motion_from(cal))
    moving = band_motion_frames(bands, {"trend_window": TW}, lambda: hist, steps)
    lower, upper = iv.bounds(frames, iv.pixel_scale(hist), bands.quantiles, bands.floor, bands.motion, moving)
    return frames, lower, upper


@pytest.mark.parametrize("seed", [0, 1])
def test_persistence_band_covers_a_linearly_sinking_bowl(seed):
    hist, future, moving = bowl_scene(seed)
    cal = baseline_calibration(hist)["persistence"]
    assert cal["motion_from"] == "trend" and cal["motion"] > 0.3 and cal["origins"] == N_TEST
    _, lower, upper = forecast_band(hist, cal, "persistence", future.shape[0])
    cov_moving, width_moving, _ = iv.coverage_width(future[:, moving], lower[:, moving], upper[:, moving])
    cov_stable, width_stable, _ = iv.coverage_width(future[:, ~moving], lower[:, ~moving], upper[:, ~moving])
    # a band on the pixel's dispersion alone (the persistence calibration before format 3) covers
    # about 0.4 of the bowl here and 0.99 of the stable ground
    assert 0.85 <= cov_moving <= 0.95
    assert 0.85 <= cov_stable <= 0.95
    assert width_moving > 3 * width_stable  # the bowl's band is wide because it moves
    # and the band at the last step follows the rate: wider at the bowl's centre than at its rim
    half = (upper - lower)[-1]
    assert half[SIDE // 2, SIDE // 2] > 2 * half[SIDE // 2, SIDE // 2 + 9] > 0


def test_trend_band_on_the_same_bowl_stays_calibrated():
    hist, future, moving = bowl_scene(3)
    cal = baseline_calibration(hist)["trend"]
    assert cal["motion_from"] == "forecast"
    _, lower, upper = forecast_band(hist, cal, "trend", future.shape[0])
    cov, _, _ = iv.coverage_width(future, lower, upper)
    assert 0.85 <= cov <= 0.95


def test_origin_offsets():
    assert origin_offsets(20, 5) == [0, 4, 8, 12, 16]
    assert origin_offsets(7, 5) == [0, 2, 4, 6]
    assert origin_offsets(3, 5) == [0, 1, 2]
    assert origin_offsets(20, 20) == list(range(20))


def common_mode_scene(seed: int, n: int = 400, pixels: int = 2000):
    """Stable ground whose every date carries one offset common to all pixels (an atmospheric
    screen, N(0, 3 mm)) over N(0, 0.3 mm) pixel noise: (n, pixels) observations."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, 3.0, (n, 1)) + rng.normal(0.0, 0.3, (n, pixels))).astype("float32")


def line_errors(z: np.ndarray, o: int, steps: int):
    """The trend line's forecast from origin `o` of `z` (n, pixels) and its errors at o..o+steps-1."""
    frames = baseline_frames(z[:o, :, None], steps, {"method": "trend", "trend_window": TW})[:, :, 0]
    return frames, frames - z[o : o + steps]


def score_future(z: np.ndarray, cal: dict, first: int, horizons: int) -> float:
    """Coverage of the 90 % band over horizons 1..`horizons` of 12 forecasts from origins first,
    first + 20, ... (many future dates, so one unlucky date does not decide)."""
    acc = iv.CoverageAccumulator()
    q = iv.horizon_quantiles(cal, 0.9, horizons)
    for o in range(first, first + 12 * 20, 20):
        frames, _ = line_errors(z, o, horizons)
        scale = iv.pixel_scale(z[:o])
        lower, upper = iv.bounds(frames[:, :, None], scale[:, None], q, cal["floor"], iv.motion_of(cal))
        acc.add(z[o : o + horizons, :, None], lower, upper)
    return acc.overall()[0]


def calibrations(z: np.ndarray, first: int) -> tuple[dict, dict]:
    """The line's calibration on the test span first..first + N_TEST - 1 of `z`: from its first date
    only, and from every date of it as a rolling origin (as BaselineCalibration does)."""
    one = CalibrationSample(N_TEST, 1, 0, 1)
    frames, err = line_errors(z, first, N_TEST)
    one.add(err, iv.pixel_scale(z[:first]), frames)
    rolling = CalibrationSample(N_TEST, 1, 0, N_TEST)
    for j in range(N_TEST):
        frames, err = line_errors(z, first + j, N_TEST - j)
        rolling.add(err, iv.pixel_scale(z[: first + j]), frames)
    return one.result(), rolling.result()


def test_rolling_origins_calibrate_what_one_origin_cannot():
    """With an error common to every pixel of a date, one origin gives each horizon one date's luck:
    over 8 scenes its 90 % band covers on average 0.30 away from 90 % of later dates (0.29 .. 0.81);
    rolling origins pool 11 or more dates per horizon and land within 0.06 on average."""
    cov_one, cov_rolling = [], []
    for seed in range(8):
        z = common_mode_scene(seed)
        cal_one, cal_rolling = calibrations(z, 100)
        assert cal_rolling["origins"] == N_TEST and cal_rolling["counts"][0] == N_TEST * z.shape[1]
        assert cal_rolling["counts"][-1] == z.shape[1]  # the last horizon: from the first origin only
        cov_one.append(score_future(z, cal_one, 140, 10))  # horizons 1..10: >= 11 origins each
        cov_rolling.append(score_future(z, cal_rolling, 140, 10))
    dev_one = np.abs(np.array(cov_one) - 0.9).mean()
    dev_rolling = np.abs(np.array(cov_rolling) - 0.9).mean()
    assert dev_one > 0.2, cov_one
    assert dev_rolling < 0.08, cov_rolling
    assert 0.85 <= np.mean(cov_rolling) <= 0.93, cov_rolling


def test_format_2_calibration_gives_the_bounds_it_always_gave():
    """A model file of format 2 (no motion groups, the forecast's own motion, one origin) gets
    forecast -/+ q_h sqrt(s^2 + (k m_h)^2), exactly as before format 3."""
    hist, _, _ = bowl_scene(5)
    cal = baseline_calibration(hist)["trend"]
    old = {k: v for k, v in cal.items() if k not in ("groups", "motion_from", "origins")} | {"format": 2}
    assert iv.group_quantiles(old, 0.9, 30) is None and iv.motion_from(old) == "forecast"
    frames = baseline_frames(hist, 30, {"method": "trend", "trend_window": TW})
    q = iv.horizon_quantiles(old, 0.9, 30)
    lower, upper = iv.bounds(frames, iv.pixel_scale(hist), q, old["floor"], iv.motion_of(old))
    s = np.maximum(iv.pixel_scale(hist), old["floor"])
    m = iv.forecast_motion(frames)
    half = q[:, None, None] * np.sqrt(s[None] ** 2 + (old["motion"] * m) ** 2)
    np.testing.assert_allclose(upper - frames, half, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(frames - lower, half, rtol=1e-4, atol=1e-4)


def irregular_scene(seed: int, n_hist: int = 100, steps: int = 20):
    """Stable ground observed every 3 or 4 grid dates (N(0, 1 mm) noise on each acquisition, the last
    grid date one) and linearly interpolated on the regular grid between them, as ml/source.py's
    work file is: (history on the grid (n_hist, SIDE, SIDE), its grid dates, the acquisition dates,
    future acquisitions at every grid date after the last (steps, ...))."""
    import datetime as dt

    from deformation_forecast.core.resample import interpolation_matrix

    rng = np.random.default_rng(seed)
    acq = [n_hist - 1]
    while acq[-1] > 0:
        acq.append(max(0, acq[-1] - int(rng.integers(3, 5))))
    acq = np.array(sorted(set(acq) | {n_hist - N_TEST - 1}))  # the first origin holds one too
    values = rng.normal(0.0, 1.0, (acq.size, SIDE * SIDE))
    w = interpolation_matrix(acq.astype("float64"), np.arange(n_hist, dtype="float64"))
    hist = (w @ values).reshape(n_hist, SIDE, SIDE).astype("float32")
    future = rng.normal(0.0, 1.0, (steps, SIDE, SIDE)).astype("float32")
    day0 = dt.date(2020, 1, 1)
    grid = [day0 + dt.timedelta(days=int(k)) for k in range(n_hist)]
    return hist, grid, [grid[int(k)] for k in acq], future


def test_persistence_calibrated_from_origins_that_hold_an_acquisition():
    """On an irregular stack resampled to the regular grid most rolling origins hold an interpolated
    value, whose noise is smaller than an acquisition's, while the forecast's own origin (the last
    acquisition) carries a full acquisition's noise into every horizon: calibrated from every origin,
    persistence's 90 % band covers about 0.83 of the future acquisitions; from the origins that hold an
    acquisition, 0.85-0.95 (3 scenes: 0.852, 0.823, 0.837 against 0.883, 0.857, 0.868). The rest of
    the gap is the targets: most are interpolated too, while the future ones are acquisitions."""
    covs_all, covs_acq = [], []
    for seed in range(3):
        hist, grid, acquisitions, future = irregular_scene(seed)
        tl = np.arange(hist.shape[0] - N_TEST, hist.shape[0])
        acquired = origins_held_acquisitions(grid, acquisitions, tl)
        assert 0.2 < acquired.mean() < 0.45 and acquired[0]
        offsets = calibration_origins(acquired, N_TEST)
        assert all(acquired[j] for j in offsets) and len(offsets) < N_TEST
        mask = np.ones(hist.shape[1:], bool)
        scales = [iv.pixel_scale(hist[: int(t)]) for t in tl]
        for offs, covs in ((None, covs_all), (offsets, covs_acq)):
            base = BaselineCalibration(N_TEST, 1, 0, TW, offs)
            base.add(hist, mask, tl, scales)
            cal = base.result()["persistence"]
            assert cal["origins"] == (N_TEST if offs is None else len(offsets))
            _, lower, upper = forecast_band(hist, cal, "persistence", future.shape[0])
            covs.append(iv.coverage_width(future, lower, upper)[0])
    assert np.mean(covs_all) < 0.85, covs_all
    assert 0.85 <= np.mean(covs_acq) <= 0.95, covs_acq


def test_calibration_origins_on_a_regular_stack_are_the_rolling_origins_as_before():
    assert calibration_origins(np.ones(20, bool), 5) == origin_offsets(20, 5)
    assert calibration_origins(np.ones(20, bool), 20) == list(range(20))
    # no origin after the first holds an acquisition: every origin, as before
    assert calibration_origins(np.zeros(7, bool), 5) == origin_offsets(7, 5)
    acquired = np.zeros(14, bool)
    acquired[[11, 13]] = True
    assert calibration_origins(acquired, 14) == [0, 11, 13]
    assert calibration_origins(acquired, 2) == [0, 13]
