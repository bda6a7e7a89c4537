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
   A forecast that does not move (persistence) takes m_h from the per-pixel line over the trend
   window instead (h |recent rate|; ``motion_from`` "trend"): a held value on a bowl that keeps
   sinking is wrong by about that much.
3. Calibration: backtests forecast the held-out end of the observed series from rolling origins
   (the first held-out date and later ones, horizons 1..H from each; ml/scoring.py), so that a
   horizon's quantile pools several target dates, not one date's luck; the normalized scores
   r = |forecast - observed| / S_h(p) of every pixel and origin at horizon h give the conformal
   quantile q_h(c) = the ceil((n + 1) c)-th smallest of the n scores (split conformal), for a grid of
   confidence levels ``LEVELS``. The pooled quantiles never shrink with the horizon (isotonic
   regression over h, per level). With a motion term they are also computed per *motion group*
   (Mondrian conformal; groups by the motion in units of the pixel's noise, m_h / s, ``RATIO_EDGES``):
   a fast bowl whose error is mostly its motion and stable ground whose error is noise have
   differently shaped score distributions, and each group gets the nominal coverage on its own.
   Each group's table is isotonic in h too, in units of the group's typical half-width (q_h times
   the median S_h / s of the group at h; weighted by the group's scores per horizon): a raw
   per-horizon quantile is the luck of the few dates the origins reach there, and as the band
   never narrows, a raw table would carry a pixel's worst horizon so far to every later one.
4. Bounds: forecast -/+ q_h(c) S_h(p), q_h of the pixel-horizon's motion group. Beyond the
   calibrated horizons, S_h keeps growing with each pixel's motion, and q_h = q_H (h / H)^b with b
   fitted per level (and group) on the last half of the calibrated horizons (log-log least squares,
   bounded to [GROWTH_MIN, GROWTH_MAX]): the growth the backtest showed, an extrapolation the help
   says is not calibrated.

Calibrations of format 1 (model files written before the motion term): no motion (k = 0) and
q_h = q_H sqrt(h / H) beyond H, exactly as those files gave their bounds. Format 2: no motion
groups, the motion always the forecast's own, one origin. Format 3 adds ``groups``, ``motion_from``
and ``origins``; format 4 only computes the group tables differently (fitted over h) and is read as
format 3. Older files give the bounds they always gave (their stored tables are used as they are).

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
FORMAT = 4  # of the calibration's dict (1: no motion term, sqrt growth; 2: no motion groups, no motion_from;
# 3: raw motion-group tables; 4: fitted ones (group_tables), read as format 3)
GROWTH_MIN, GROWTH_MAX = 0.0, 1.5  # bounds of the fitted exponent of q_h beyond the calibrated horizons
SQRT_GROWTH = 0.5  # the exponent of format 1, and of a calibration too short to fit one
MOTION_MAX = 10.0  # the largest motion coefficient k (the error as 10 times the forecast's motion)
RATIO_EDGES = (1.0, 4.0)  # motion groups by m_h / s, the motion in units of the pixel's noise (format 3)
GROUP_MIN = 200  # the fewest scores of a group at a horizon for its own quantile (else the pooled one)


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


def monotone_in_horizon(table: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per level (column), the least-squares non-decreasing fit over the horizons (rows): isotonic
    regression, which averages a dip instead of carrying one bad date's quantile (the running
    maximum would) to every later horizon; `weights` (rows,): how much each horizon's quantile
    counts (its number of scores: a horizon reached from more rolling origins rests on more dates;
    None: equal). Infinite quantiles stay infinite."""
    from sklearn.isotonic import IsotonicRegression

    out = np.array(table, dtype="float64")
    h = np.arange(out.shape[0], dtype="float64")
    w = None if weights is None else np.maximum(np.asarray(weights, dtype="float64"), 1.0)
    for j in range(out.shape[1]):
        col = out[:, j]
        if np.isfinite(col).all() and col.size > 1:
            out[:, j] = IsotonicRegression(increasing=True).fit_transform(h, col, sample_weight=w)
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


def quantile_table(r: np.ndarray) -> np.ndarray:
    """(H, len(LEVELS)) conformal quantiles of the scores `r` (H, n) per horizon and level (NaN
    scores left out), isotonic in the horizon and never narrower at a higher level."""
    table = np.array([[conformal_quantile(row, c) for c in LEVELS] for row in r])
    return np.maximum.accumulate(monotone_in_horizon(table), axis=1)


def motion_ratio(motion: np.ndarray, scale: np.ndarray, floor: float) -> np.ndarray:
    """m_h / max(s, floor): how far the pixel moves by horizon h in units of its noise (NaN stays NaN)."""
    s = floored(scale, floor).astype("float64")
    with np.errstate(all="ignore"):
        return np.asarray(motion, "float64") / s


def group_tables(
    r: np.ndarray, ratio: np.ndarray, pooled: np.ndarray, widening: np.ndarray
) -> list[np.ndarray]:
    """Per motion group (`ratio` = m_h / s binned by RATIO_EDGES) the quantile table of the scores of
    the pixel-horizons in it (Mondrian conformal: each group calibrated on its own, so a
    fast bowl and stable ground both get the nominal coverage); a horizon with fewer than
    GROUP_MIN scores in a group takes the pooled row. The raw quantile of a horizon is the luck of
    the few dates the origins reach there, and :func:`bounds` never lets a pixel's band narrow, so
    a raw table carried each pixel's worst horizon so far to every later one (format 3; see the
    README). Each table is therefore fitted like the pooled one, isotonic in the horizon (weighted
    by the group's scores per horizon), but in units of the group's typical half-width: q_h G_h,
    G_h the median `widening` S_h / max(s, floor) of the group's pixel-horizons at h (never
    shrinking), the fit then divided by G_h. A typical pixel's band never narrows, while the
    multiplier may fall where the spread grows faster than the errors (a fast bowl's)."""
    group = np.digitize(np.nan_to_num(ratio, nan=0.0), RATIO_EDGES)
    out = []
    for g in range(len(RATIO_EDGES) + 1):
        rg = np.where(group == g, r, np.nan)
        n = np.isfinite(rg).sum(axis=1)
        raw = np.array([[conformal_quantile(row, c) for c in LEVELS] for row in rg])
        raw[n < GROUP_MIN] = pooled[n < GROUP_MIN]  # a stand-in that weighs as little as the group's scores
        with warnings.catch_warnings():  # a horizon without pixels in the group: no widening there
            warnings.simplefilter("ignore", RuntimeWarning)
            wide = np.nanmedian(np.where(group == g, widening, np.nan), axis=1)
        wide = np.maximum.accumulate(np.where(np.isfinite(wide), wide, 1.0))[:, None]
        out.append(np.maximum.accumulate(monotone_in_horizon(raw * wide, n) / wide, axis=1))
    return out


def calibrate(
    errors: np.ndarray,
    scale: np.ndarray,
    floor: float | None = None,
    forecast: np.ndarray | None = None,
    motion_from: str = "forecast",
    origins: int = 1,
) -> dict[str, Any]:
    """The calibration of a backtest: `errors` (H, ...) forecast - observed at horizons 1..H (NaN
    where a horizon was not reached), `scale` (...) the pixels' scale at the backtest's origin
    (:func:`pixel_scale`), `forecast` (H, ...) the frames whose motion widens the band
    (:func:`forecast_motion`; none: k = 0): the backtest's forecast itself, or (`motion_from`
    "trend") the per-pixel line over the trend window at the same origin, for a forecast that does
    not move (persistence). `origins`: how many rolling origins the columns pool. Returns the
    JSON-ready dict the model file stores: per-horizon quantiles at LEVELS (pooled, and per motion
    group), their growth exponents beyond H, the motion coefficient, the scale floor and the counts."""
    e = np.asarray(errors, dtype="float64")
    if floor is None:
        floor = scale_floor(scale)
    motion = None if forecast is None else forecast_motion(forecast)
    k = 0.0 if motion is None else motion_coefficient(e, floored(scale, floor), motion)
    sp = spread(scale, floor, motion, k)
    with np.errstate(all="ignore"):
        r = (np.abs(e) / sp).reshape(e.shape[0], -1)
    table = quantile_table(r)
    counts = np.isfinite(r).sum(axis=1)
    out: dict[str, Any] = {
        "format": FORMAT,
        "method": "split-conformal, |error| / sqrt(scale^2 + (motion x forecast motion)^2), scale = MAD of "
        "one-step differences; per motion group; beyond the calibrated horizons q_H (h / H)^growth",
        "scale_dates": SCALE_DATES,
        "floor": float(floor),
        "motion": float(k),
        "motion_from": motion_from,
        "origins": int(origins),
        "levels": [float(c) for c in LEVELS],
        "quantiles": [[float(v) for v in row] for row in table],
        "growth": growth_exponents(table),
        "counts": [int(n) for n in counts],
    }
    if k:
        assert motion is not None
        ratio = motion_ratio(motion, scale, floor).reshape(e.shape[0], -1)
        widening = (sp / floored(scale, floor)[None]).reshape(e.shape[0], -1)
        tables = group_tables(r, ratio, table, widening)
        out["groups"] = {
            "edges": [float(v) for v in RATIO_EDGES],
            "quantiles": [[[float(v) for v in row] for row in t] for t in tables],
            "growth": [growth_exponents(t) for t in tables],
        }
    return out


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
    return _extend(
        calibration, calibration["quantiles"], growth_exponent(calibration, confidence), confidence, steps
    )


def group_quantiles(calibration: dict[str, Any], confidence: float, steps: int) -> np.ndarray | None:
    """(groups, steps) multipliers per motion group (:func:`group_tables`) like
    :func:`horizon_quantiles`; None for a calibration without groups (formats 1 and 2, or k = 0)."""
    check_confidence(confidence)
    groups = calibration.get("groups")
    if not groups:
        return None
    levels = np.asarray(calibration["levels"], "float64")
    rows = []
    for table, growth in zip(groups["quantiles"], groups["growth"], strict=True):
        b = float(np.interp(float(confidence), levels, growth))
        rows.append(_extend(calibration, table, b, confidence, steps))
    return np.stack(rows)


def _extend(
    calibration: dict[str, Any], quantiles: Any, b: float, confidence: float, steps: int
) -> np.ndarray:
    """The (steps,) quantiles of one table at `confidence`, grown by (h / H)^b beyond its H horizons."""
    levels = np.asarray(calibration["levels"], dtype="float64")
    table = np.asarray(quantiles, dtype="float64")
    if table.ndim != 2 or not table.shape[0]:
        raise ValueError("the calibration holds no horizon")
    q = np.array([np.interp(float(confidence), levels, row) for row in table])
    n_cal = q.size
    if steps <= n_cal:
        return q[:steps].astype("float32")
    h = np.arange(n_cal + 1, steps + 1, dtype="float64")
    return np.concatenate([q, q[-1] * (h / n_cal) ** b]).astype("float32")


def motion_from(calibration: dict[str, Any]) -> str:
    """Whose motion widens the band: "forecast" (the forecast's own; formats 1 and 2) or "trend"
    (the per-pixel line over the backtest's trend window, for persistence)."""
    return str(calibration.get("motion_from") or "forecast")


def motion_of(calibration: dict[str, Any]) -> float:
    """The calibration's motion coefficient k (0 for format 1, which has none)."""
    return float(calibration.get("motion") or 0.0)


def bounds(
    frames: np.ndarray,
    scale: np.ndarray,
    quantiles: np.ndarray,
    floor: float,
    motion: float = 0.0,
    moving: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of `frames` (steps, H, W): frames -/+ q_h * S_h, S_h =
    sqrt(max(scale, floor)^2 + (motion * forecast_motion(moving)_h)^2) (motion 0: max(scale, floor);
    `moving` defaults to `frames`); `quantiles` (steps,), or (groups, steps) per motion group
    (:func:`group_quantiles`, chosen per pixel and horizon by m_h / max(scale, floor)); the
    half-width never shrinks with the horizon; NaN where the frame or the scale is NaN."""
    f = np.asarray(frames, dtype="float32")
    moved = forecast_motion(f if moving is None else moving) if motion else None
    sp = spread(scale, floor, moved, motion)
    q = np.asarray(quantiles, dtype="float32")
    if q.ndim == 2:
        assert moved is not None
        group = np.digitize(np.nan_to_num(motion_ratio(moved, scale, floor), nan=0.0), RATIO_EDGES)
        q = np.take_along_axis(q[:, :, None, None], group[None], axis=0)[0]
    else:
        q = q[:, None, None]
    half = q * sp
    if half.shape[0] > 1:  # never narrower at a longer horizon (a pixel may change motion group)
        half = np.fmax.accumulate(half, axis=0)
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
