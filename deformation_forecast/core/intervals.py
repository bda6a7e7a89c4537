"""Calibrated prediction intervals for forecasts (issue 17): split-conformal, spatially adaptive.

Method (pure numpy, no model needed):

1. Every pixel gets a *scale* s(p): the robust dispersion of its own observed series, the MAD of its
   one-step differences about their median (x 1.4826 / sqrt(2), the standard deviation of white noise
   on top of any straight line), over its last ``SCALE_DATES`` dates before the forecast origin. A
   floor (``FLOOR_FRACTION`` of the median scale) keeps perfectly flat pixels from getting a zero band.
2. Calibration: a backtest forecasts the held-out end of the observed series from an origin before it
   (rolling origin, horizons 1..H); the normalized scores r = |forecast - observed| / s(p) of every
   pixel at horizon h give the conformal quantile q_h(c) = the ceil((n + 1) c)-th smallest of the n
   scores (split conformal), for a grid of confidence levels ``LEVELS``.
   The quantiles never shrink with the horizon (isotonic regression over h, per level).
3. Bounds: forecast -/+ q_h(c) s(p). Beyond the calibrated horizons, q grows with sqrt(h / H) (the
   growth of a random walk's spread), an extrapolation the help says is not calibrated.

Assumption: after division by s(p), the forecast errors at a horizon are exchangeable across pixels
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
FORMAT = 1  # of the calibration's dict in the model file


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


def calibrate(errors: np.ndarray, scale: np.ndarray, floor: float | None = None) -> dict[str, Any]:
    """The calibration of a backtest: `errors` (H, ...) forecast - observed at horizons 1..H, `scale`
    (...) the pixels' scale at the backtest's origin (:func:`pixel_scale`). Returns the JSON-ready
    dict the model file stores: per-horizon quantiles at LEVELS, the scale floor and the counts."""
    e = np.asarray(errors, dtype="float64")
    if floor is None:
        floor = scale_floor(scale)
    s = np.asarray(floored(scale, floor), dtype="float64")
    with np.errstate(all="ignore"):
        r = np.abs(e) / s[None]
    table = np.array([[conformal_quantile(r[h], c) for c in LEVELS] for h in range(e.shape[0])])
    table = np.maximum.accumulate(monotone_in_horizon(table), axis=1)  # and never narrower at a higher level
    counts = np.isfinite(r.reshape(e.shape[0], -1)).sum(axis=1)
    return {
        "format": FORMAT,
        "method": "split-conformal, |error| / pixel scale (MAD of one-step differences)",
        "scale_dates": SCALE_DATES,
        "floor": float(floor),
        "levels": [float(c) for c in LEVELS],
        "quantiles": [[float(v) for v in row] for row in table],
        "counts": [int(n) for n in counts],
    }


def check_confidence(confidence: float) -> None:
    """ValueError unless LEVELS[0] <= confidence <= LEVELS[-1]."""
    if not LEVELS[0] <= float(confidence) <= LEVELS[-1]:
        raise ValueError(f"CONFIDENCE must be between {LEVELS[0]} and {LEVELS[-1]}, not {confidence}.")


def horizon_quantiles(calibration: dict[str, Any], confidence: float, steps: int) -> np.ndarray:
    """(steps,) multipliers q_h of the pixel scale at `confidence` for horizons 1..steps: the
    calibrated ones (interpolated between LEVELS), then q_H sqrt(h / H) beyond the last one."""
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
    return np.concatenate([q, q[-1] * np.sqrt(h / n_cal)]).astype("float32")


def bounds(
    frames: np.ndarray, scale: np.ndarray, quantiles: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of `frames` (steps, H, W): frames -/+ quantiles[h] * max(scale, floor);
    NaN where the frame or the scale is NaN."""
    half = np.asarray(quantiles, dtype="float32")[:, None, None] * floored(scale, floor)[None]
    f = np.asarray(frames, dtype="float32")
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
