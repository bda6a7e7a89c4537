"""Calibrated prediction intervals for forecasts (issue 17): split-conformal, spatially adaptive.

Method (pure numpy, no model needed):

1. Every pixel gets a *scale* s(p): the robust dispersion of its own observed series, the MAD of its
   one-step differences about their median (x 1.4826 / sqrt(2), the standard deviation of white noise
   on top of any straight line), over its last ``SCALE_DATES`` dates before the forecast origin. A
   floor (``FLOOR_FRACTION`` of the median scale) keeps perfectly flat pixels from getting a zero band.
2. Every pixel and horizon get a *motion* m_h(p): how far the forecast itself moves the pixel by
   horizon h, ``max_{j<=h} |f_j - f_1| + |f_2 - f_1|`` (h |rate| for a straight line; it never
   shrinks with h). A forecast that extrapolates a fast motion inherits an error that grows with it
   (a few % of a rate wrong, an acceleration missed). The pixel's spread at horizon h is
   S_h(p) = sqrt(s(p)^2 + (k m_h(p))^2), k the ``motion`` coefficient fitted on the backtest: least
   squares of the squared errors on [s^2, m^2] (non-negative), k = sqrt(c_m / c_s).
3. Calibration: a backtest forecasts the held-out end of the observed series from an origin before it
   (rolling origin, horizons 1..H); the normalized scores r = |forecast - observed| / S_h(p) of every
   pixel at horizon h give the conformal quantile q_h(c) = the ceil((n + 1) c)-th smallest of the n
   scores (split conformal), for a grid of confidence levels ``LEVELS``.
   The quantiles never shrink with the horizon (isotonic regression over h, per level).
4. Bounds: forecast -/+ q_h(c) S_h(p). Beyond the calibrated horizons, S_h keeps growing with each
   pixel's own forecast motion, and q_h = q_H (h / H)^b with b fitted per level on the last half of
   the calibrated horizons (log-log least squares, bounded to [GROWTH_MIN, GROWTH_MAX]): the growth
   the backtest showed, an extrapolation the help says is not calibrated.

Calibrations of format 1 (model files written before the motion term): no motion (k = 0) and
q_h = q_H sqrt(h / H) beyond H, exactly as those files gave their bounds.

Assumption: after division by S_h(p), the forecast errors at a horizon are exchangeable across pixels
and between the backtest and the future (the ground keeps behaving as in the held-out dates). The
band is marginal over pixels: about c of all pixel-dates fall inside, not c of every single pixel.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .run import QUIET, Run

SCALE_DATES = 40  # the last dates of a series whose one-step differences give its scale
FLOOR_FRACTION = 0.1  # the scale is at least this fraction of the median scale of the scene
LEVELS = tuple(round(0.5 + 0.01 * k, 2) for k in range(50))  # 0.50 .. 0.99
MAD_TO_SIGMA = 1.4826 / math.sqrt(2.0)  # MAD of differences of white noise -> its sigma
FORMAT = 2  # of the calibration's dict in the model file (1: no motion term, sqrt extrapolation)
GROWTH_MIN, GROWTH_MAX = 0.0, 1.5  # bounds of the fitted exponent of q_h beyond the calibrated horizons
SQRT_GROWTH = 0.5  # the exponent of format 1, and of a calibration too short to fit one
MOTION_MAX = 10.0  # the largest motion coefficient k (the error as 10 times the forecast's motion)


def pixel_scale(hist: np.ndarray, dates: int = SCALE_DATES) -> np.ndarray:
    """(H, W) robust dispersion of each pixel's last `dates` dates of `hist` (n, H, W); NaN where
    fewer than two finite differences exist. See the module's docstring."""
    z = np.asarray(hist, dtype="float64")[-int(dates) :]
    d = np.diff(z, axis=0)
    with warnings.catch_warnings():  # all-NaN pixels: NaN, said by `enough` below
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(d, axis=0)
        mad = np.nanmedian(np.abs(d - med), axis=0)
    enough = np.isfinite(d).sum(axis=0) >= 2
    return np.where(enough, mad * MAD_TO_SIGMA, np.nan).astype("float32")


def scale_floor(scale: np.ndarray) -> float:
    """The least scale: FLOOR_FRACTION of the median finite positive scale (a tiny number if none)."""
    s = np.asarray(scale, dtype="float64")
    s = s[np.isfinite(s) & (s > 0)]
    return float(FLOOR_FRACTION * np.median(s)) if s.size else 1e-6


def floored(scale: np.ndarray, floor: float) -> np.ndarray:
    """`scale` with every finite value at least `floor` (NaN stays NaN)."""
    s = np.asarray(scale, dtype="float32")
    return np.where(np.isfinite(s), np.maximum(s, np.float32(floor)), np.nan).astype("float32")


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile of the finite `scores` at confidence `level`: the
    ceil((n + 1) level)-th smallest score (infinite when n is too small for that level)."""
    s = np.sort(np.asarray(scores, dtype="float64")[np.isfinite(scores)])
    n = s.size
    k = math.ceil((n + 1) * float(level))
    if n == 0 or k > n:
        return math.inf
    return float(s[max(k, 1) - 1])


def monotone_in_horizon(table: np.ndarray) -> np.ndarray:
    """Per level (column), the least-squares non-decreasing fit over the horizons (rows): isotonic
    regression, which averages a dip instead of carrying one bad date's quantile (the running
    maximum would) to every later horizon. Infinite quantiles stay infinite."""
    from sklearn.isotonic import IsotonicRegression

    out = np.array(table, dtype="float64")
    h = np.arange(out.shape[0], dtype="float64")
    for j in range(out.shape[1]):
        col = out[:, j]
        if np.isfinite(col).all() and col.size > 1:
            out[:, j] = IsotonicRegression(increasing=True).fit_transform(h, col)
        else:
            out[:, j] = np.maximum.accumulate(col)
    return out


def forecast_motion(frames: np.ndarray) -> np.ndarray:
    """(steps, ...) how far the forecast `frames` (steps, ...) moves each pixel by each horizon:
    max_{j<=h} |f_j - f_1| + |f_2 - f_1| (h |rate| on a straight line; never shrinks with h; 0 for a
    single step; NaN where the frame is NaN, a NaN difference counting 0). See the module's docstring."""
    f = np.asarray(frames, dtype="float64")
    if f.shape[0] < 2:
        return np.where(np.isfinite(f), 0.0, np.nan)
    d = np.nan_to_num(np.abs(f - f[:1]), nan=0.0)
    moved = np.maximum.accumulate(d, axis=0) + d[1][None]
    return np.where(np.isfinite(f), moved, np.nan)


def motion_coefficient(errors: np.ndarray, scale: np.ndarray, motion: np.ndarray) -> float:
    """k of S_h = sqrt(s^2 + (k m_h)^2): least squares of errors^2 on [s^2, m^2] with non-negative
    coefficients (c_s, c_m), k = sqrt(c_m / c_s), at most MOTION_MAX; 0 without motion."""
    e2 = np.asarray(errors, dtype="float64") ** 2
    s2 = np.broadcast_to(np.asarray(scale, dtype="float64")[None] ** 2, e2.shape)
    m2 = np.asarray(motion, dtype="float64") ** 2
    ok = np.isfinite(e2) & np.isfinite(s2) & np.isfinite(m2)
    x, y, z = s2[ok], m2[ok], e2[ok]
    if not x.size or not (y > 0).any():
        return 0.0
    a = np.array([[x @ x, x @ y], [x @ y, y @ y]])
    c_s, c_m = np.linalg.lstsq(a, np.array([x @ z, y @ z]), rcond=None)[0]
    if c_m <= 0:
        return 0.0
    if c_s <= 0:  # all of the error from the motion: refit it alone
        c_s, c_m = 0.0, float(y @ z / (y @ y))
    return float(min(math.sqrt(c_m / c_s), MOTION_MAX)) if c_s > 0 else MOTION_MAX


def spread(scale: np.ndarray, floor: float, motion: np.ndarray | None, k: float) -> np.ndarray:
    """(steps, ...) S_h = sqrt(max(s, floor)^2 + (k m_h)^2), float32 (the floored scale alone,
    (1, ...), when k is 0 or there is no motion); NaN where the scale or the motion is NaN."""
    s = floored(scale, floor)[None].astype("float64")
    if motion is None or not k:
        return s.astype("float32")
    return np.sqrt(s * s + (float(k) * np.asarray(motion, dtype="float64")) ** 2).astype("float32")


def growth_exponents(table: np.ndarray) -> list[float]:
    """Per level (column of `table`, horizons in rows), the exponent b of q_h = a h^b fitted by
    least squares in log-log on the last half of the horizons (from ceil(H / 2), at least two),
    bounded to [GROWTH_MIN, GROWTH_MAX]; SQRT_GROWTH when fewer than two usable horizons."""
    t = np.asarray(table, dtype="float64")
    n = t.shape[0]
    h = np.arange(1, n + 1, dtype="float64")
    first = max(0, min(math.ceil(n / 2) - 1, n - 2))
    out = []
    for j in range(t.shape[1]):
        col, hh = t[first:, j], h[first:]
        ok = np.isfinite(col) & (col > 0)
        if ok.sum() < 2:
            out.append(SQRT_GROWTH)
            continue
        b = np.polyfit(np.log(hh[ok]), np.log(col[ok]), 1)[0]
        out.append(float(np.clip(b, GROWTH_MIN, GROWTH_MAX)))
    return out


def calibrate(
    errors: np.ndarray, scale: np.ndarray, floor: float | None = None, forecast: np.ndarray | None = None
) -> dict[str, Any]:
    """The calibration of a backtest: `errors` (H, ...) forecast - observed at horizons 1..H, `scale`
    (...) the pixels' scale at the backtest's origin (:func:`pixel_scale`), `forecast` (H, ...) the
    backtest's forecast (its motion widens the band, :func:`forecast_motion`; none: k = 0). Returns
    the JSON-ready dict the model file stores: per-horizon quantiles at LEVELS, their growth exponents
    beyond H, the motion coefficient, the scale floor and the counts."""
    e = np.asarray(errors, dtype="float64")
    if floor is None:
        floor = scale_floor(scale)
    motion = None if forecast is None else forecast_motion(forecast)
    k = 0.0 if motion is None else motion_coefficient(e, floored(scale, floor), motion)
    with np.errstate(all="ignore"):
        r = np.abs(e) / spread(scale, floor, motion, k)
    table = np.array([[conformal_quantile(r[h], c) for c in LEVELS] for h in range(e.shape[0])])
    table = np.maximum.accumulate(monotone_in_horizon(table), axis=1)  # and never narrower at a higher level
    counts = np.isfinite(r.reshape(e.shape[0], -1)).sum(axis=1)
    return {
        "format": FORMAT,
        "method": "split-conformal, |error| / sqrt(scale^2 + (motion x forecast motion)^2), scale = MAD of "
        "one-step differences; beyond the calibrated horizons q_H (h / H)^growth",
        "scale_dates": SCALE_DATES,
        "floor": float(floor),
        "motion": float(k),
        "levels": [float(c) for c in LEVELS],
        "quantiles": [[float(v) for v in row] for row in table],
        "growth": growth_exponents(table),
        "counts": [int(n) for n in counts],
    }


def check_confidence(confidence: float) -> None:
    """ValueError unless LEVELS[0] <= confidence <= LEVELS[-1]."""
    if not LEVELS[0] <= float(confidence) <= LEVELS[-1]:
        raise ValueError(f"CONFIDENCE must be between {LEVELS[0]} and {LEVELS[-1]}, not {confidence}.")


def growth_exponent(calibration: dict[str, Any], confidence: float) -> float:
    """The exponent of q_h beyond the calibrated horizons at `confidence`: the calibration's fitted
    ``growth`` interpolated between LEVELS, or SQRT_GROWTH for a format-1 calibration (none stored)."""
    growth = calibration.get("growth")
    if not growth:
        return SQRT_GROWTH
    return float(np.interp(float(confidence), np.asarray(calibration["levels"], "float64"), growth))


def horizon_quantiles(calibration: dict[str, Any], confidence: float, steps: int) -> np.ndarray:
    """(steps,) multipliers q_h of the pixel spread at `confidence` for horizons 1..steps: the
    calibrated ones (interpolated between LEVELS), then q_H (h / H)^b beyond the last one, b from
    :func:`growth_exponent` (0.5, a square root, for a format-1 calibration)."""
    check_confidence(confidence)
    levels = np.asarray(calibration["levels"], dtype="float64")
    table = np.asarray(calibration["quantiles"], dtype="float64")
    if table.ndim != 2 or not table.shape[0]:
        raise ValueError("the calibration holds no horizon")
    q = np.array([np.interp(float(confidence), levels, row) for row in table])
    n_cal = q.size
    if steps <= n_cal:
        return q[:steps].astype("float32")
    h = np.arange(n_cal + 1, steps + 1, dtype="float64")
    b = growth_exponent(calibration, confidence)
    return np.concatenate([q, q[-1] * (h / n_cal) ** b]).astype("float32")


def motion_of(calibration: dict[str, Any]) -> float:
    """The calibration's motion coefficient k (0 for format 1, which has none)."""
    return float(calibration.get("motion") or 0.0)


def bounds(
    frames: np.ndarray, scale: np.ndarray, quantiles: np.ndarray, floor: float, motion: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of `frames` (steps, H, W): frames -/+ quantiles[h] * S_h, S_h =
    sqrt(max(scale, floor)^2 + (motion * forecast_motion(frames)_h)^2) (motion 0: max(scale, floor));
    NaN where the frame or the scale is NaN."""
    f = np.asarray(frames, dtype="float32")
    moved = forecast_motion(f) if motion else None
    half = np.asarray(quantiles, dtype="float32")[:, None, None] * spread(scale, floor, moved, motion)
    return (f - half).astype("float32"), (f + half).astype("float32")


def coverage_width(observed: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[float, float, int]:
    """(fraction of the observations inside [lower, upper], mean upper - lower, pixel-dates) over
    the entries finite in all three; NaNs (and 0) when there is none."""
    o, lo, hi = (np.asarray(a, dtype="float64") for a in (observed, lower, upper))
    ok = np.isfinite(o) & np.isfinite(lo) & np.isfinite(hi)
    n = int(ok.sum())
    if not n:
        return math.nan, math.nan, 0
    inside = (o[ok] >= lo[ok]) & (o[ok] <= hi[ok])
    return float(inside.mean()), float((hi[ok] - lo[ok]).mean()), n


class CoverageAccumulator:
    """Coverage and mean width of a band pooled over frames (pixel-dates finite in all three)."""

    def __init__(self):
        self.inside = 0
        self.width = 0.0
        self.n = 0

    def add(self, observed: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[float, float, int]:
        cov, width, n = coverage_width(observed, lower, upper)
        if n:
            self.inside += int(round(cov * n))
            self.width += width * n
            self.n += n
        return cov, width, n

    def overall(self) -> tuple[float, float, int]:
        if not self.n:
            return math.nan, math.nan, 0
        return self.inside / self.n, self.width / self.n, self.n


def band_coverage_files(
    lower_path: str, upper_path: str, obs_path: str, pairs, run: Run = QUIET
) -> tuple[list[tuple[float, float, int]], tuple[float, float, int]]:
    """Per paired date (lower/upper band index, observed band index) and overall: (coverage, mean
    width, pixel-dates) of the band in the stacks at `lower_path`/`upper_path` against the observed
    stack, one frame of each in memory at a time; each frame cleaned as a read of all dates
    (core.validity.DatedFrames: sentinels, masks and spikes against the neighbouring dates as NaN,
    counted); progress to `run` per date, cancelling raises core.errors.Cancelled."""
    from .validity import iter_dated_frames

    acc = CoverageAccumulator()
    rows = []
    max_bytes = run.working_bytes(4)
    frames = zip(
        iter_dated_frames(lower_path, [i for i, _ in pairs], max_bytes),
        iter_dated_frames(upper_path, [i for i, _ in pairs], max_bytes),
        iter_dated_frames(obs_path, [j for _, j in pairs], max_bytes),
        strict=True,
    )
    for k, ((_, lo), (_, hi), (_, obs)) in enumerate(frames):
        run.check_cancelled()
        rows.append(acc.add(obs, lo, hi))
        run.progress((k + 1) / len(pairs))
    return rows, acc.overall()
