"""core.failure: known answers (Voight creep with a known failure date), no alarm on stable,
linear, seasonal and decelerating fields with correlated noise, and the plumbing around them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from deformation_forecast.core import failure as F
from deformation_forecast.core import failure_synthetic as S
from deformation_forecast.core.errors import InputError

START = dt.date(2019, 1, 1)


def _scene(dates, lead, v_end, rng, size=20, patch=8, white=2.0, ar=1.0):
    """A linear/noisy field with a `patch` x `patch` block of Voight creep failing `lead` days after
    the last acquisition; returns (values (points, dates), patch mask)."""
    d = S.field("linear", dates, size, rng)
    fail = dates[-1] + dt.timedelta(days=lead)
    creep = -S.voight_series(dates, fail, v_end, lead)
    noise = S.correlated_noise((len(dates), patch, patch), rng, white=white, ar=ar, atmo=0.0)
    d[:, :patch, :patch] = creep[:, None, None] + noise
    sel = np.zeros((size, size), bool)
    sel[:patch, :patch] = True
    return d.reshape(len(dates), -1).T, sel.ravel()


def _check_known_answer(res, sel, lead):
    tf = res.t_fail[sel]
    assert np.isfinite(tf).mean() >= 0.9, "most creep pixels get a forecast"
    # the forecast (median over the slide's pixels) within 10 % of the remaining time
    assert abs(np.nanmedian(tf) - lead) <= 0.1 * lead, np.nanmedian(tf)
    # the early/late range holds the true date for (nearly) every forecast
    ok = np.isfinite(tf)
    inside = (res.t_early[sel][ok] <= lead) & (lead <= res.t_late[sel][ok])
    assert inside.mean() >= 0.9, inside.mean()
    assert (res.alert[sel] >= 1).all()
    # class 2 exactly where the forecast falls within HORIZON_DAYS (90), most of the slide
    assert ((res.alert[sel][ok] == 2) == (tf[ok] <= F.HORIZON_DAYS)).all()
    assert (res.alert[sel] == 2).mean() >= 0.8
    assert (res.alert[~sel] >= 2).sum() == 0  # no forecast outside the slide
    # motion away from the satellite (negative): velocity and acceleration both negative
    assert (res.velocity[sel] < 0).all() and (res.acceleration[sel][ok] < 0).all()


def test_voight_known_answer_regular_dates():
    rng = np.random.default_rng(11)
    dates = S.regular_dates(START, 100, 6)
    vals, sel = _scene(dates, 60, 2.0, rng)
    _check_known_answer(F.analyse(vals, dates), sel, 60)


def test_voight_known_answer_irregular_dates_and_gaps():
    rng = np.random.default_rng(12)
    dates = S.irregular_dates(START, 80, rng, gap=(40, 5))  # 6/12-day steps, a 60-day outage
    vals, sel = _scene(dates, 60, 2.0, rng)
    vals[:, 50:52] = np.nan  # two acquisitions missing everywhere
    vals[sel.nonzero()[0][:5], 70] = np.nan  # and scattered missing values
    _check_known_answer(F.analyse(vals, dates), sel, 60)


def test_false_alarm_rate_below_one_percent():
    """200 x 200 fields of each kind with white, AR(1) and atmospheric noise: < 1 % alert."""
    rng = np.random.default_rng(5)
    dates = S.regular_dates(START, 62, 12)  # two years of 12-day acquisitions
    for kind in S.KINDS:
        vals = S.field(kind, dates, 200, rng).reshape(len(dates), -1).T
        res = F.analyse(vals, dates)
        rate = float((res.alert > 0).mean())
        assert rate < 0.01, (kind, rate)
        assert (res.alert >= 2).sum() <= 0.001 * res.alert.size, kind
        if kind == "decelerating":
            assert rate < 0.001


def test_decelerating_never_significant_without_noise():
    rng = np.random.default_rng(1)
    dates = S.regular_dates(START, 60, 12)
    vals = S.field("decelerating", dates, 20, rng, noise=False).reshape(len(dates), -1).T
    vals = vals + rng.normal(0, 0.3, vals.shape)
    res = F.analyse(vals, dates)
    assert not res.significant.any()
    # acceleration opposes the (negative) velocity: positive
    assert (res.acceleration[res.analysed] > 0).all()


def test_min_velocity_filters_slow_points():
    rng = np.random.default_rng(2)
    dates = S.regular_dates(START, 60, 12)
    vals = S.field("linear", dates, 10, rng).reshape(len(dates), -1).T
    res = F.analyse(vals, dates, F.Params(min_velocity=1e6))
    assert not res.analysed.any() and (res.alert == 0).all()
    assert np.isnan(res.acceleration).all() and np.isfinite(res.velocity).all()


def test_local_velocities_exact_on_irregular_dates():
    dates = [START + dt.timedelta(days=d) for d in (0, 6, 18, 24, 36, 60, 66, 72)]
    t = F.days_from_last(dates)
    vals = (3.0 + 0.5 * t)[None, :].copy()
    vals[0, 3] = np.nan
    v, tau, _ = F.local_velocities(vals, t, 4)
    assert np.allclose(v[0], 0.5)
    assert tau[0, 0] == pytest.approx(np.mean(t[[0, 1, 2]]))


def test_voight_fit_recovers_noise_free_failure_time():
    t = np.arange(-120.0, 1.0, 6.0)
    y = 5.0 - 40.0 * np.log(45.0 - t)  # failure 45 days after the last date
    theta, early, late, k = F.voight_fit(y[None, :], t, 0.99)
    assert theta[0] == pytest.approx(45.0, rel=0.011)
    assert k[0] == pytest.approx(40.0, rel=0.02)
    assert early[0] <= 45.0 * 1.011 and late[0] >= 45.0 / 1.011  # grid steps of 1 %
    # steady motion: no finite failure time
    theta, *_ = F.voight_fit((2.0 * t + np.sin(t))[None, :], t, 0.99)
    assert np.isnan(theta[0])


def test_too_short_series_is_refused():
    dates = S.regular_dates(START, 10, 12)
    with pytest.raises(InputError, match="FIT_WINDOW"):
        F.analyse(np.zeros((2, 10)), dates)
