"""Residual over a per-pixel linear trend: the inputs and the target of the default networks.

The default ``cnn-phlstm`` / ``cnn-lstm`` (``residual = "trend"``) do not predict the next frame
from scratch. For a window ending before date t, a least-squares line is fitted at every pixel to
the last ``trend_window`` dates (fewer when fewer exist) and extrapolated one step to t; the network
sees, per input date, three channels:

0. the frame compressed by eq. 3 (the paper's extremum compression: observed extremes for observed
   dates, the GRU's predicted extremes for forecast dates fed back);
1. the residual of the frame over the line, divided by ``residual_scale`` (a global constant of the
   training data: the RMS of the one-step residuals), so the channel is of order 1;
2. the line's increment per step, divided by ``residual_scale``;

plus the line's value at t (divided by the global ``frame_scale``) as a second input, and predicts
the frame at t as ``line(t) + residual_scale * out`` (in units of ``frame_scale``). The last layer
starts at zero, so an untrained network IS the linear-trend forecast, and training has to earn every
deviation from it on the validation loss (early stopping keeps the best weights).

Why not eq. 4 on the output: eq. 3/4 scale each date by its own extremes, and positive and negative
pixels by different factors. A pixel that does not move, or moves on a straight line, is then not
constant or straight in the compressed frames and must be re-learned by the network (persistence is
not even an identity through compress -> decompress with predicted extremes). A single global scale
keeps persistence and the trend exact. The compressor is still fitted and still used: it compresses
the shape channel (0), observed and fed-back frames alike.

During an iterative forecast (Fig. 8) the line is the one fitted at the forecast origin (the last
``trend_window`` observed dates); the residual window is the observed residuals followed by the
predicted ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.baselines import TREND_CANDIDATES, TREND_HORIZON, choose_trend_window, trend_window_errors

if TYPE_CHECKING:
    from .modelfile import TrendParams

EPS = 1e-6
CHANNELS = 3


def fit_line(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel least-squares line through (n, ...) dates at unit steps: (value at the last date, slope)."""
    n = hist.shape[0]
    if n < 2:
        return hist[-1].astype("float32"), np.zeros(hist.shape[1:], "float32")
    u = np.arange(n, dtype="float64") - (n - 1) / 2.0
    h = hist.astype("float64")
    slope = np.tensordot(u, h, axes=(0, 0)) / float((u * u).sum())
    last = h.mean(axis=0) + slope * u[-1]
    return last.astype("float32"), slope.astype("float32")


def line_at(last: np.ndarray, slope: np.ndarray, offsets) -> np.ndarray:
    """The line at date offsets relative to its last fitted date (0 = that date, 1 = the next)."""
    off = np.asarray(offsets, dtype="float32").reshape((-1,) + (1,) * last.ndim)
    return last[None] + slope[None] * off


def window_inputs(
    comp_win: np.ndarray, mm_win: np.ndarray, last: np.ndarray, slope: np.ndarray, residual_scale: float
) -> np.ndarray:
    """(T, ..., 3) network input of a window: compressed frames, residuals over the line, slope.

    `last` is the line at the window's last date; `mm_win` the window's frames in mm.
    """
    ts = mm_win.shape[0]
    line = line_at(last, slope, np.arange(-(ts - 1), 1))
    res = (mm_win - line) / residual_scale
    slope_ch = np.broadcast_to(slope / residual_scale, mm_win.shape)
    return np.stack([comp_win, res, slope_ch], axis=-1).astype("float32")


def label_inputs(
    reg: np.ndarray,
    comp: np.ndarray,
    t: int,
    time_step: int,
    trend: TrendParams,
    rows: slice = slice(None),
    cols: slice = slice(None),
) -> tuple[np.ndarray, np.ndarray]:
    """(x (T, h, w, 3), line at t / frame_scale (h, w)) for the window before label t, on a crop."""
    hist = reg[t - time_step : t, rows, cols]
    last, slope = fit_line(reg[max(0, t - int(trend.trend_window)) : t, rows, cols])
    x = window_inputs(
        comp[t - time_step : t, rows, cols], hist[-time_step:], last, slope, trend.residual_scale
    )
    return x, (line_at(last, slope, [1])[0] / trend.frame_scale).astype("float32")


def scales(
    reg: np.ndarray, mask: np.ndarray, labels: np.ndarray, time_step: int, trend_window: int
) -> tuple[float, float]:
    """(frame_scale, residual_scale) in mm from the training labels: max |frame| and the RMS of the
    one-step residuals over the line."""
    z = np.where(mask, reg, 0.0)
    frame_scale = float(max(np.abs(z[: int(labels.max()) + 1]).max(), EPS)) if len(labels) else 1.0
    sq, cnt = residual_sums(z[:, mask], labels, trend_window)
    return frame_scale, residual_scale_of(sq, cnt, frame_scale)


def residual_sums(series: np.ndarray, labels: np.ndarray, trend_window: int) -> tuple[float, int]:
    """(sum of squares, count) of the one-step residuals over the line at `labels`, for pixel series
    (T, ...) whose dates start at index 0; sums over pixel subsets add up (streamed training)."""
    sq, cnt = 0.0, 0
    for t in labels:
        last, slope = fit_line(series[max(0, int(t) - int(trend_window)) : int(t)])
        r = series[t] - last - slope
        sq += float((r.astype("float64") ** 2).sum())
        cnt += r.size
    return sq, cnt


def residual_scale_of(sq: float, cnt: int, frame_scale: float) -> float:
    return float(max(np.sqrt(sq / max(cnt, 1)), frame_scale * 1e-4, EPS))


# the trend window's choice is core.baselines' (one implementation for the networks and the
# linear-trend baseline of comparemodels)
WINDOW_CANDIDATES = TREND_CANDIDATES


def choose_window(
    reg: np.ndarray,
    mask: np.ndarray,
    first_origin: int,
    end: int,
    horizon: int = TREND_HORIZON,
    candidates: tuple[int, ...] = WINDOW_CANDIDATES,
) -> tuple[int, dict[int, float]]:
    """The trend window (dates) whose line forecasts the dates [first_origin, end) best, 1..horizon
    steps ahead from every origin in that range (mean absolute error over the mask); 1 = persistence.

    Only dates before `end` (the first test date) are used. Returns (window, {window: error}).
    """
    z = np.where(mask, reg, 0.0).astype("float32")[:, mask]
    return pick_window(window_error_sums(z, first_origin, end, horizon, candidates), candidates)


def window_error_sums(
    series: np.ndarray,
    first_origin: int,
    end: int,
    horizon: int = TREND_HORIZON,
    candidates: tuple[int, ...] = WINDOW_CANDIDATES,
) -> dict[int, tuple[float, int]]:
    """core.baselines.trend_window_errors over pixel series (T, n) at unit steps (the regular
    dates, from index 0); sums over pixel subsets add up (core.baselines.add_errors)."""
    times = np.arange(series.shape[0], dtype="float64")
    return trend_window_errors(series, times, first_origin, end, candidates, horizon)


def pick_window(
    sums: dict[int, tuple[float, int]], candidates: tuple[int, ...] = WINDOW_CANDIDATES
) -> tuple[int, dict[int, float]]:
    """(best window, {window: mean absolute error}) of :func:`window_error_sums`; persistence (the
    shortest candidate) when no window could be scored."""
    return choose_trend_window(sums, min(candidates))


# -- the forecast's base line on noisy ground (issue 17: no noise added where the ground is stable) --
#
# The per-pixel least-squares line through the last ``trend_window`` dates carries the noise of those
# dates into its slope, and the forecast extrapolates that slope: on the sample scene (per-date
# atmosphere of 2-6 mm) the line's error on stable ground grows to ~5.5 mm RMS at 61 steps, which is
# where the network's whole-scene SSIM was lost (its own residual there is 0.3 mm). Two standard
# remedies, keyed on the model file's ``trend_line`` (absent: the plain line, as before):
#
# - weighted least squares with per-date weights 1 / (noise variance of that date), the variance
#   being the robust spatial variance of the date's residual over the per-pixel lines (a date with
#   a strong atmosphere counts less, in every pixel alike: the atmosphere is a property of the date);
# - James-Stein (positive part) shrinkage of each pixel's slope toward zero by its own significance,
#   slope * max(0, 1 - shrink / t^2): a slope within the noise is not extrapolated, a deforming
#   pixel (t of 20 on the sample scene) keeps its slope. ``shrink`` is chosen on the validation dates.

MEDIAN_CHI2_1 = 0.4549364  # the median of a chi-square with one degree of freedom
SHRINK_CANDIDATES = (0.0, 1.0, 2.0, 4.0, 8.0)


def _centred(n: int, ndim: int) -> np.ndarray:
    u = np.arange(n, dtype="float64") - (n - 1) / 2.0
    return u.reshape((n,) + (1,) * (ndim - 1))


def date_noise(hist: np.ndarray) -> tuple[np.ndarray, int]:
    """(per-date noise variance (n,), pixels used) of the dates (n, ...) of `hist`: the median over
    the pixels finite at every date of the squared residual over each pixel's least-squares line,
    divided by the median of chi-square(1) (a robust variance: deforming pixels that bend away from
    their line are outvoted by the rest)."""
    n = hist.shape[0]
    flat = np.asarray(hist, dtype="float64").reshape(n, -1)
    flat = flat[:, np.isfinite(flat).all(axis=0)]
    if n < 3 or not flat.shape[1]:
        return np.ones(n), 0
    u = _centred(n, 2)
    m = flat.mean(axis=0)
    slope = (u * (flat - m)).sum(axis=0) / float((u * u).sum())
    r = flat - m - slope * u
    return np.median(r * r, axis=1) / MEDIAN_CHI2_1, int(flat.shape[1])


class NoiseSums:
    """:func:`date_noise` gathered over pieces of a raster (row strips): the per-date medians of
    the pieces averaged with their pixel counts (exact for one piece)."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, hist: np.ndarray) -> None:
        var, n = date_noise(hist)
        if n:
            self.total = var * n if self.total is None else self.total + var * n
            self.count += n

    def result(self) -> np.ndarray | None:
        return None if self.total is None else self.total / self.count


def stable_line(
    hist: np.ndarray, noise: np.ndarray | None = None, shrink: float = 0.0, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(value at the last date, slope) of the per-pixel line through the dates (n, ...) of `hist`
    (finite), weighted by 1 / `noise` (per-date variances, :func:`date_noise`; None: from `hist`
    itself), the slope shrunk toward zero by its significance (see the comment above). On a
    raster (n, H, W) with its `mask` of valid pixels the shrink factors are smoothed over
    SHRINK_SMOOTH_PX (a factor drawn pixel by pixel from noisy t values would itself be speckle)."""
    n = hist.shape[0]
    if n < 3:
        return fit_line(hist)
    h = np.asarray(hist, dtype="float64")
    var = date_noise(h)[0] if noise is None else np.asarray(noise, dtype="float64")
    top = float(np.max(var)) if var.size and np.isfinite(var).all() else 0.0
    w = 1.0 / np.maximum(var, top * 1e-3) if top > 0 else np.ones(n)
    u = _centred(n, 1)
    ub = float((w * u).sum() / w.sum())
    du = (u - ub).reshape((n,) + (1,) * (h.ndim - 1))
    wk = w.reshape(du.shape)
    mb = (wk * h).sum(axis=0) / w.sum()
    sww = float((w * (u - ub) ** 2).sum())
    slope = (wk * du * (h - mb)).sum(axis=0) / sww
    if shrink > 0:
        # var(slope) = c^2 / sum(w du^2), c^2 this pixel's noise relative to the dates' variances
        res = h - mb - slope * du
        c2 = (wk * res * res).sum(axis=0) / (n - 2) if top > 0 else (res * res).sum(axis=0) / (n - 2)
        t2 = slope * slope * sww / np.maximum(c2, EPS * EPS)
        factor = np.clip(1.0 - shrink / np.maximum(t2, EPS), 0.0, 1.0)
        slope = slope * (_smooth(factor, mask) if mask is not None and h.ndim == 3 else factor)
    last = mb + slope * ((n - 1) / 2.0 - ub)
    return last.astype("float32"), slope.astype("float32")


SHRINK_SMOOTH_PX = 1.5


def _smooth(factor: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`factor` (H, W) averaged over the valid pixels of a Gaussian of SHRINK_SMOOTH_PX."""
    from scipy.ndimage import gaussian_filter

    m = mask.astype("float64")
    num = gaussian_filter(np.where(mask, factor, 0.0), SHRINK_SMOOTH_PX, mode="nearest")
    den = gaussian_filter(m, SHRINK_SMOOTH_PX, mode="nearest")
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), factor)


def shrink_error_sums(
    series: np.ndarray,
    first_origin: int,
    end: int,
    window: int,
    horizon: int = TREND_HORIZON,
    candidates: tuple[float, ...] = SHRINK_CANDIDATES,
) -> dict[float, tuple[float, int]]:
    """Per shrink candidate: (sum of |error|, count) of :func:`stable_line` over the `window` dates
    before every origin in [first_origin, end), 1..horizon steps ahead (never reaching `end`), over
    the pixel series (T, n) finite in the window and the targets (the dates at unit steps)."""
    out = {k: (0.0, 0) for k in candidates}
    for o in range(max(first_origin, 3), end):
        hist = series[max(0, o - window) : o]
        ok = np.isfinite(hist).all(axis=0)
        if hist.shape[0] < 3 or not ok.any():
            continue
        hist = hist[:, ok]
        h = min(horizon, end - o)
        target = series[o : o + h][:, ok]
        noise = date_noise(hist)[0]
        steps = np.arange(1, h + 1, dtype="float32")[:, None]
        for k in candidates:
            last, slope = stable_line(hist, noise, k)
            e = np.abs(last[None] + slope[None] * steps - target)
            fin = np.isfinite(e)
            s, c = out[k]
            out[k] = (s + float(e[fin].sum()), c + int(fin.sum()))
    return out
