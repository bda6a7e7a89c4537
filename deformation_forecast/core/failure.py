"""Acceleration and time of failure by the inverse-velocity method (Fukuzono 1985, Voight 1988).

For each point (a row of ``values``, mm, one column per acquisition, NaN = missing):

1. **Background model** on the whole series, least squares on the real dates (years):
   ``d = c0 + c1 t [+ s sin 2 pi t + c cos 2 pi t] + a h(t)`` with ``h = max(0, t - ts)^2 / 2``;
   ``ts`` is the start of the recent span (the last ``VELOCITY_WINDOW + FIT_WINDOW - 1``
   acquisitions), so ``a`` (mm/yr^2) is the acceleration of the recent span relative to a linear
   (+ annual, when the series spans at least 1.5 years) background. The recent velocity is the
   model's trend velocity at the last acquisition ``c1 + a (t_last - ts)`` (mm/yr).
   Its standard error accounts for correlated noise: the variance of the estimate under the
   residuals' autocorrelation pooled over the scene (median over the points, lags up to the
   span; :func:`pooled_acf`, :func:`correlated_variance`), and the Student-t test uses the
   effective degrees of freedom. The acceleration is
   *significant* when it points in the direction of motion and ``|a| / se`` exceeds the two-sided
   Student-t quantile at ``CONFIDENCE``, scaled by a calibration on the scene itself
   (:func:`null_scale`). The direction of motion is the sign of the whole series' straight-line
   velocity (the recent velocity's sign would correlate with the recent acceleration's noise).
   Decelerating motion (Knothe-like subsidence after extraction) has ``a`` opposite to the
   velocity and never alerts.
2. **Failure time** where the acceleration is significant: Voight's relation with alpha = 2,
   ``1/v = (tf - t) / k`` (inverse velocity linear in time), fitted to the displacement of the
   same recent span in its integrated form ``d = c + k ln(1 / (tf - t))`` (:func:`voight_fit`):
   this uses the displacements directly instead of differentiating them into noisy local
   velocities. ``tf`` is where the fitted inverse velocity reaches zero; its early/late range is
   the profile-likelihood interval at ``CONFIDENCE`` (widened for correlated noise). No date is
   given where that interval is unbounded (1/v does not decrease significantly).
3. **Local velocities** over ``VELOCITY_WINDOW`` consecutive acquisitions (least-squares slopes on
   the real dates) are what the inverse-velocity chart draws, with the fitted line.
   :func:`inverse_velocity_fit` is the classic weighted regression of 1/v of the last
   ``FIT_WINDOW`` local velocities on time, kept as a cross-check (bench/bench_failuretime.py
   compares both).

Alert classes: 0 none (or not analysed: recent velocity below ``MIN_VELOCITY``), 1 significant
acceleration, 2 failure forecast within ``HORIZON_DAYS`` of the last acquisition, 3 forecast date
already reached at the last acquisition (the best Voight fit puts the failure within a day of
it: the fit needs tf after the last date). Forecasts (and classes 2-3) need both the significant
acceleration and the significant decrease of 1/v.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .errors import InputError
from .rates import linear_velocity

YEAR = 365.25
VELOCITY_WINDOW = 5  # acquisitions per local velocity: 24-48 days of 6-12 day Sentinel-1
FIT_WINDOW = 12  # velocity windows in the fit: 16 acquisitions, 96-192 days of 6-12 day Sentinel-1
MIN_VELOCITY = 10.0  # mm/yr
HORIZON_DAYS = 90.0
CONFIDENCE = 0.99
SEASONAL_MIN_YEARS = 1.5
ALERT_NAMES = {
    0: "none",
    1: "significant acceleration",
    2: "failure forecast within horizon",
    3: "forecast failure date reached",
}


@dataclass(frozen=True)
class Params:
    velocity_window: int = VELOCITY_WINDOW
    fit_window: int = FIT_WINDOW
    min_velocity: float = MIN_VELOCITY  # mm/yr
    horizon_days: float = HORIZON_DAYS
    confidence: float = CONFIDENCE

    def check(self, n_dates: int) -> None:
        if self.velocity_window < 3:
            raise InputError("VELOCITY_WINDOW must be at least 3 acquisitions.")
        if self.fit_window < 3:
            raise InputError("FIT_WINDOW must be at least 3 velocity windows.")
        if not 0.5 < self.confidence < 1:
            raise InputError("CONFIDENCE must lie between 0.5 and 1 (e.g. 0.99).")
        need = self.velocity_window + self.fit_window + 2
        if n_dates < need:
            raise InputError(
                f"The series has {n_dates} acquisitions; VELOCITY_WINDOW {self.velocity_window} and "
                f"FIT_WINDOW {self.fit_window} need at least {need} (window + fit + 2 for the "
                "background). Lower them or give a longer series."
            )


@dataclass
class FailureResult:
    """Per point (1-D arrays of the points' count); times in days from the last acquisition."""

    velocity: np.ndarray  # mm/yr, signed, trend velocity at the last acquisition
    velocity_se: np.ndarray
    acceleration: np.ndarray  # mm/yr^2, signed
    acceleration_se: np.ndarray
    significant: np.ndarray  # bool: acceleration significant in the direction of motion
    analysed: np.ndarray  # bool: |velocity| >= MIN_VELOCITY and enough data
    t_fail: np.ndarray  # days from the last acquisition, NaN = no forecast
    t_early: np.ndarray
    t_late: np.ndarray
    alert: np.ndarray  # int8, 0..3
    t_fail_short: np.ndarray  # the same forecast with FIT_WINDOW - 2 windows
    t_fail_long: np.ndarray  # with FIT_WINDOW + 2 windows
    direction: np.ndarray | None = None  # +1 / -1: the sign of the motion (whole-series velocity)
    k: np.ndarray | None = None  # Voight fit: 1/v = (t_fail - t) / k, k in mm
    kappa: float = 1.0  # scene calibration factor of the acceleration test (null_scale)


def days_from_last(dates: Sequence[dt.date]) -> np.ndarray:
    """Days of each date from the last one (<= 0), float64."""
    last = dates[-1].toordinal()
    return np.array([d.toordinal() - last for d in dates], dtype="float64")


def masked_lstsq(y: np.ndarray, m: np.ndarray, x: np.ndarray):
    """Per row least squares of y (N, n) on the columns of x (n, p) over the mask m (N, n).

    Returns (coef (N, p), inverse normal matrix (N, p, p), residuals (N, n; 0 where masked),
    valid counts (N,)). Rank-deficient rows get the pseudo-inverse's minimum-norm answer.
    """
    n, p = x.shape
    mf = m.astype("float64")
    outer = (x[:, :, None] * x[:, None, :]).reshape(n, p * p)
    g = (mf @ outer).reshape(-1, p, p)
    rhs = (np.where(m, y, 0.0)) @ x
    ginv = np.linalg.pinv(g, hermitian=True)
    coef = np.einsum("npq,nq->np", ginv, rhs)
    resid = np.where(m, y - coef @ x.T, 0.0)
    return coef, ginv, resid, mf.sum(axis=1)


def pooled_acf(resid: np.ndarray, m: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation of the residuals at index lags 0..max_lag, the median over the rows (the
    noise of a scene shares its correlation structure; the median is robust to the few moving
    points whose residuals carry signal). Negative values are set to 0 (conservative)."""
    den = (resid * resid).sum(axis=1)
    rows = den > 0
    acf = np.zeros(max_lag + 1)
    acf[0] = 1.0
    if not rows.any():
        return acf
    r, d = resid[rows], den[rows]
    for k in range(1, min(max_lag, r.shape[1] - 1) + 1):
        acf[k] = max(0.0, float(np.median((r[:, k:] * r[:, :-k]).sum(axis=1) / d)))
    return acf


def correlated_variance(g: np.ndarray, acf: np.ndarray) -> np.ndarray:
    """sum_ij g_i g_j acf(|i - j|) per row of g (N, n): the variance (in units of the noise
    variance) of the linear estimate g . y under the correlation `acf`."""
    out = (g * g).sum(axis=1)
    for k in range(1, min(acf.size, g.shape[1])):
        if acf[k] > 0:
            out += 2.0 * acf[k] * (g[:, k:] * g[:, :-k]).sum(axis=1)
    return out


def design(t_days: np.ndarray, ts: float, seasonal: bool, t0_year: float) -> np.ndarray:
    """Columns [1, t, (sin, cos), h] with t in years from the last acquisition."""
    t = t_days / YEAR
    cols = [np.ones_like(t), t]
    if seasonal:
        phase = 2 * np.pi * (t + t0_year)
        cols += [np.sin(phase), np.cos(phase)]
    cols.append(np.maximum(0.0, t - ts / YEAR) ** 2 / 2.0)
    return np.column_stack(cols)


@dataclass
class Background:
    coef: np.ndarray
    velocity: np.ndarray
    velocity_se: np.ndarray
    acceleration: np.ndarray
    acceleration_se: np.ndarray
    dof: np.ndarray
    sigma: np.ndarray  # residual standard deviation (mm)
    seasonal: np.ndarray  # (N, n) the fitted annual term (0 without)
    acf: np.ndarray  # pooled residual autocorrelation at lags 0..max_lag


def background_fit(
    values: np.ndarray, t_days: np.ndarray, ts: float, t0_year: float, max_lag: int = 12
) -> Background:
    """The background model of the module doc for every row of `values` (N, n)."""
    m = np.isfinite(values)
    seasonal = (t_days[-1] - t_days[0]) / YEAR >= SEASONAL_MIN_YEARS
    x = design(t_days, ts, seasonal, t0_year)
    p = x.shape[1]
    coef, ginv, resid, n = masked_lstsq(values, m, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma2 = (resid * resid).sum(axis=1) / (n - p)
        acf = pooled_acf(resid, m, max_lag)
        lever = -ts / YEAR  # years from ts to the last acquisition
        grad = np.zeros(p)
        grad[1], grad[-1] = 1.0, lever
        mf = m.astype("float64")
        g_v = (np.einsum("p,npq->nq", grad, ginv) @ x.T) * mf
        g_a = (ginv[:, -1, :] @ x.T) * mf
        a_var = sigma2 * correlated_variance(g_a, acf)
        v_var = sigma2 * correlated_variance(g_v, acf)
        # effective degrees of freedom: the series' length over the integrated correlation
        dof = n / (1.0 + 2.0 * acf[1:].sum()) - p
    ok = n >= p + 3
    nan = np.where(ok, 1.0, np.nan)
    season = coef[:, 2:4] @ x[:, 2:4].T if seasonal else np.zeros_like(values)
    return Background(
        coef=coef,
        velocity=(coef[:, 1] + coef[:, -1] * lever) * nan,
        velocity_se=np.sqrt(v_var) * nan,
        acceleration=coef[:, -1] * nan,
        acceleration_se=np.sqrt(a_var) * nan,
        dof=np.maximum(dof, 1.0) * nan,
        sigma=np.sqrt(sigma2) * nan,
        seasonal=season,
        acf=acf,
    )


def local_velocities(values: np.ndarray, t_days: np.ndarray, window: int):
    """Least-squares slopes (mm/day) over every run of `window` consecutive acquisitions.

    Returns (velocity (N, k), time of each window = mean valid date (N, k), Sxx (N, k)) with
    k = n - window + 1; NaN where a window holds fewer than 3 valid values.
    """
    m = np.isfinite(values)
    y = np.where(m, values, 0.0)
    mf = m.astype("float64")
    t = np.broadcast_to(t_days, values.shape)

    def wsum(a: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros((a.shape[0], 1)), np.cumsum(a, axis=1)], axis=1)
        return c[:, window:] - c[:, :-window]

    s0, st, sy = wsum(mf), wsum(mf * t), wsum(y * t)
    stt, sty_ = wsum(mf * t * t), wsum(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        tbar = st / s0
        sxx = stt - st * tbar
        v = (sy - tbar * sty_) / sxx
    bad = (s0 < 3) | ~(sxx > 0)
    v[bad] = np.nan
    tbar[bad] = np.nan
    return v, tbar, np.where(bad, np.nan, sxx)


def critical_t(confidence: float, dof: np.ndarray) -> np.ndarray:
    """Two-sided Student-t quantile at `confidence`."""
    return stats.t.ppf(0.5 + confidence / 2.0, np.maximum(dof, 1.0))


def last_columns(a: np.ndarray, count: int) -> np.ndarray:
    return a[:, max(0, a.shape[1] - count) :]


def inverse_velocity_fit(
    v_dir: np.ndarray, tau: np.ndarray, sxx: np.ndarray, fit: int, window: int, confidence: float
):
    """WLS of 1/v on time over the last `fit` windows (module doc, step 3).

    `v_dir` (N, k) velocities in the direction of motion (mm/day), `tau` their times (days),
    `sxx` the sum of squared centred times of each window (a velocity's variance is
    sigma^2 / Sxx). Returns (t_fail, t_early, t_late, A, B) in days; NaN where there is no
    significant decrease of 1/v.
    """
    v, tt, sx = (last_columns(a, fit) for a in (v_dir, tau, sxx))
    ok = np.isfinite(v) & np.isfinite(tt) & (sx > 0)
    wrong_way = (ok & (v <= 0)).any(axis=1)
    ok &= v > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        u = np.where(ok, 1.0 / v, 0.0)
        w = np.where(ok, v**4 * sx, 0.0)
        t = np.where(ok, tt, 0.0)
        n = ok.sum(axis=1).astype("float64")
        sw, swt, swtt = w.sum(1), (w * t).sum(1), (w * t * t).sum(1)
        swu, swtu = (w * u).sum(1), (w * t * u).sum(1)
        det = sw * swtt - swt * swt
        b = (sw * swtu - swt * swu) / det
        a = (swu - b * swt) / sw
        chi2 = (w * (u - a[:, None] - b[:, None] * t) ** 2 * ok).sum(1) / (n - 2)
        overlap = max(1.0, fit * window / (fit + window - 1.0))
        scale = chi2 * overlap
        vaa, vbb, vab = swtt / det * scale, sw / det * scale, -swt / det * scale
        k2 = critical_t(confidence, n - 2) ** 2
        qa = b * b - k2 * vbb
        qb = a * b - k2 * vab
        qc = a * a - k2 * vaa
        root = np.sqrt(np.maximum(qb * qb - qa * qc, 0.0))
        early, late = (-qb - root) / qa, (-qb + root) / qa
        t_fail = -a / b
    good = (n >= 3) & ~wrong_way & (b < 0) & (qa > 0) & np.isfinite(t_fail)
    nan = np.where(good, 1.0, np.nan)
    return t_fail * nan, early * nan, late * nan, a, b


NULL_EPOCHS = 6
NULL_ROWS = 4000
# candidate failure times (days after the last acquisition) of the Voight fit: 0.5 day to 20
# years, 1 % apart; the upper end stands for "no finite failure time" (1/v not decreasing)
THETA_GRID = np.geomspace(0.5, 7305.0, int(np.log(7305.0 / 0.5) / np.log(1.01)) + 1)
CHUNK = 256  # points per block of the Voight fit (their (points, grid, span) arrays)


def voight_fit(
    y: np.ndarray, t_days: np.ndarray, confidence: float, inflation: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Failure time by Voight's relation with alpha = 2 (1/v linear in time) fitted to the
    displacement itself: ``y = c + k ln(1 / (tf - t))`` (y in the direction of motion, mm; t in
    days from the last acquisition), which is what integrating ``1/v = (tf - t) / k`` gives.

    For each candidate ``theta = tf`` of THETA_GRID the model is linear in (c, k): its residual sum
    of squares SSR(theta) profiles the likelihood. The forecast is the best theta with k > 0; its
    early/late range is where ``SSR <= SSR_min (1 + inflation F(confidence; 1, n - 3) / (n - 3))``
    (the profile-likelihood interval; `inflation` widens it for correlated noise). The forecast
    exists only when that interval is bounded: at the grid's far end (1/v constant, steady motion)
    the fit must be significantly worse. Returns (theta, early, late, k) in days and mm; NaN where
    there is none. `y` (N, n) may hold NaN; it needs at least 5 valid values.
    """
    m = np.isfinite(y)
    n = m.sum(axis=1).astype("float64")
    out = [np.full(y.shape[0], np.nan) for _ in range(4)]
    if y.shape[0] == 0:
        return out[0], out[1], out[2], out[3]
    yv = np.where(m, y, 0.0)
    lg = -np.log(THETA_GRID[:, None] - t_days[None, :])  # (G, n)
    for a in range(0, y.shape[0], CHUNK):
        sl = slice(a, a + CHUNK)
        mf, yy, nn = m[sl].astype("float64"), yv[sl], n[sl]
        sx = mf @ lg.T  # (P, G)
        sxx = mf @ (lg * lg).T
        sxy = yy @ lg.T
        sy, syy = yy.sum(1)[:, None], (yy * yy).sum(1)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            cxx = sxx - sx * sx / nn[:, None]
            k = (sxy - sx * sy / nn[:, None]) / cxx
            ssr = np.maximum(syy - sy * sy / nn[:, None] - k * (sxy - sx * sy / nn[:, None]), 0.0)
        ssr = np.where((k > 0) & (cxx > 0), ssr, np.inf)
        best = np.argmin(ssr, axis=1)
        rows = np.arange(ssr.shape[0])
        smin = ssr[rows, best]
        dof = np.maximum(nn - 3, 1)
        fcrit = stats.f.ppf(confidence, 1, dof)
        limit = smin * (1 + inflation * fcrit / dof)
        inside = ssr <= limit[:, None]
        bounded = ~inside[:, -1] & np.isfinite(smin) & (nn >= 5) & (best < THETA_GRID.size - 1)
        lo = np.argmax(inside, axis=1)
        hi = THETA_GRID.size - 1 - np.argmax(inside[:, ::-1], axis=1)
        nan = np.where(bounded, 1.0, np.nan)
        out[0][sl] = THETA_GRID[best] * nan
        out[1][sl] = THETA_GRID[lo] * nan
        out[2][sl] = THETA_GRID[hi] * nan
        out[3][sl] = k[rows, best] * nan
    return out[0], out[1], out[2], out[3]


def null_scale(values: np.ndarray, t_days: np.ndarray, span: int, t0_year: float) -> float:
    """Scene calibration of the acceleration test: the robust spread (1.4826 MAD) over all rows of
    the acceleration t statistics computed at up to NULL_EPOCHS earlier epochs (the series cut
    `span` // 2 acquisitions apart before the last one). Correlated noise of any structure that the
    nominal standard error misses widens this spread; the few moving points barely move the
    median. Never below 1 (the nominal test is never made more liberal)."""
    n = values.shape[1]
    if values.shape[0] > NULL_ROWS:  # an even subsample of the rows is enough for a spread
        values = values[:: -(-values.shape[0] // NULL_ROWS)]
    step = max(1, span // 2)
    stats_: list[np.ndarray] = []
    for j in range(1, NULL_EPOCHS + 1):
        end = n - j * step
        if end < span + 8:
            break
        sub, td = values[:, :end], t_days[:end] - t_days[end - 1]
        bg = background_fit(sub, td, td[max(0, end - span)], t0_year, span)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = bg.acceleration / bg.acceleration_se
        stats_.append(t[np.isfinite(t)])
    if not stats_:
        return 1.0
    t = np.concatenate(stats_)
    if t.size < 20:
        return 1.0
    mad = float(np.median(np.abs(t - np.median(t))))
    return max(1.0, 1.4826 * mad)


def analyse(
    values: np.ndarray,
    dates: Sequence[dt.date],
    params: Params | None = None,
    calibrate: bool = True,
) -> FailureResult:
    """Acceleration, failure forecast and alert class of every row of `values` (N, n) in mm."""
    params = params or Params()
    values = np.asarray(values, dtype="float64")
    if values.ndim != 2 or values.shape[1] != len(dates):
        raise ValueError(f"values {values.shape} do not match {len(dates)} dates")
    params.check(len(dates))
    t_days = days_from_last(dates)
    w, f = params.velocity_window, params.fit_window
    span = w + f - 1
    ts = t_days[max(0, len(dates) - span)]
    first = dates[0]
    t0_year = (dates[-1] - dt.date(first.year, 1, 1)).days / YEAR  # phase of the last date
    bg = background_fit(values, t_days, ts, t0_year, span)
    kappa = null_scale(values, t_days, span, t0_year) if calibrate else 1.0
    # the direction of motion from the whole series' straight-line velocity: taking the sign of
    # the recent velocity would correlate it with the recent acceleration's noise
    direction = np.sign(linear_velocity(values.T, t_days)[0])
    analysed = np.abs(bg.velocity) >= params.min_velocity
    with np.errstate(invalid="ignore"):
        tstat = direction * bg.acceleration / (bg.acceleration_se * kappa)
        significant = analysed & (tstat > critical_t(params.confidence, bg.dof))
    y_dir = values * direction[:, None]
    inflation = float(1.0 + 2.0 * bg.acf[1:].sum())
    forecasts = {}
    sig_rows = np.flatnonzero(significant)
    for fit in sorted({max(3, f - 2), f, f + 2}):
        cut = max(0, len(dates) - (w + fit - 1))
        res = [np.full(values.shape[0], np.nan) for _ in range(4)]
        fc = voight_fit(y_dir[sig_rows, cut:], t_days[cut:], params.confidence, inflation)
        for r, part in zip(res, fc, strict=True):
            r[sig_rows] = part
        forecasts[fit] = res
    tf, te, tl, k = forecasts[f]
    alert = significant.astype("int8")
    alert[np.isfinite(tf) & (tf <= params.horizon_days)] = 2
    alert[np.isfinite(tf) & (tf <= THETA_GRID[0] * 2.0)] = 3
    gone = ~analysed
    return FailureResult(
        velocity=bg.velocity,
        velocity_se=bg.velocity_se,
        acceleration=np.where(gone, np.nan, bg.acceleration),
        acceleration_se=np.where(gone, np.nan, bg.acceleration_se),
        significant=significant,
        analysed=analysed,
        t_fail=tf,
        t_early=te,
        t_late=tl,
        alert=alert,
        t_fail_short=forecasts[max(3, f - 2)][0],
        t_fail_long=forecasts[f + 2][0],
        direction=direction,
        k=k,
        kappa=kappa,
    )


def to_date(last: dt.date, days: float) -> dt.date | None:
    """`last` + `days` (rounded to whole days); None for NaN."""
    if not np.isfinite(days):
        return None
    try:
        return last + dt.timedelta(days=int(round(float(days))))
    except OverflowError:
        return None
