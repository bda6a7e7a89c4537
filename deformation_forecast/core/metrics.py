"""Forecast quality metrics (Table III of the paper): MAE, MSE, RMSE, SSIM, MS-SSIM, PSNR, R^2.

One implementation used by every algorithm, the bench and the tests. All functions take
``fn(pred, obs, data_range=None)`` on 2-D arrays (one date); the stack helpers
:func:`frame_metrics` and :func:`stack_metrics` give all of them per date and overall.

NaN handling
    A pixel counts only where both `pred` and `obs` are finite. MAE/MSE/RMSE/R^2 average over those
    pixels. SSIM and MS-SSIM use *normalized convolution*: every local Gaussian mean, variance and
    covariance is computed from the valid pixels of the window only (``G(m*x) / G(m)`` with ``m`` the
    validity mask), and the SSIM map is averaged over valid pixels whose window holds at least half of
    its Gaussian weight in valid pixels. Without NaNs this is exactly the standard SSIM. A frame with
    no valid pixel gives NaN for every metric.

Data range ``L`` (SSIM's constants ``(k1 L)^2``, ``(k2 L)^2`` and PSNR's peak)
    Default: the observed finite range, ``max(obs) - min(obs)``, of the frames compared in the call:
    the one frame for the 2-D functions, the whole observed stack for :func:`stack_metrics` (so every
    date uses the same ``L`` and per-date values are comparable). A flat observation falls back to
    ``max|obs|``, then 1. PSNR is ``10 log10(L^2 / MSE)`` with this ``L``, not the ``2^n - 1`` of n-bit
    images (deformation in mm has no bit depth); it is ``inf`` when MSE is 0. Give ``data_range``
    explicitly to compare numbers across scenes.

SSIM (Wang et al. 2004, the paper's eq. 14)
    Gaussian window 11 x 11, sigma 1.5, k1 = 0.01, k2 = 0.03, population (not sample) covariances,
    map averaged over the pixels whose window lies fully inside the image ("valid" convolution).
    This equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L)`` and ``tf.image.ssim(..., max_val=L)``.

MS-SSIM (Wang et al. 2003, the paper's eq. 15)
    As ``tf.image.ssim_multiscale`` (what the networks' loss uses): five scales with weights
    (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2 x 2 average down-sampling (an odd side is first padded
    by repeating its last row/column), contrast-structure at every scale, luminance at the last,
    negative terms clipped to 0. Images too small for five scales (a side < 11 * 2^4) use the scales
    that fit, with the first weights renormalized to sum 1; images smaller than the window use a
    window of the image's smaller (odd) side.

R^2
    The coefficient of determination ``1 - SS_res / SS_tot`` of `pred` as a prediction of `obs`
    (as ``sklearn.metrics.r2_score``); :func:`pearson_r2` is the squared Pearson correlation the
    paper's Fig. 19 reports, which ignores bias and scale errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

METRICS = ("MAE", "MSE", "RMSE", "SSIM", "MS_SSIM", "PSNR", "R2")
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
MIN_SUPPORT = 0.5


def _pair(pred, obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype="float64")
    o = np.asarray(obs, dtype="float64")
    if p.shape != o.shape:
        raise ValueError(f"prediction {p.shape} and observation {o.shape} differ in shape")
    return p, o, np.isfinite(p) & np.isfinite(o)


def default_data_range(obs, pred=None) -> float:
    """``max - min`` of the finite observed values (where `pred` is finite too, if given).

    A flat observation gives ``max|obs|``, and 1.0 if that is 0 or nothing is finite.
    """
    o = np.asarray(obs, dtype="float64")
    ok = np.isfinite(o)
    if pred is not None:
        ok &= np.isfinite(np.asarray(pred, dtype="float64"))
    if not ok.any():
        return 1.0
    v = o[ok]
    rng = float(v.max() - v.min())
    if rng > 0:
        return rng
    peak = float(np.abs(v).max())
    return peak if peak > 0 else 1.0


def _range(pred, obs, data_range) -> float:
    if data_range is None:
        return default_data_range(obs, pred)
    L = float(data_range)
    if not L > 0:
        raise ValueError(f"data_range must be positive, not {data_range}")
    return L


def mae(pred, obs, data_range=None) -> float:
    """Mean absolute error over pixels finite in both (NaN if none). `data_range` is unused."""
    p, o, ok = _pair(pred, obs)
    return float(np.abs(p[ok] - o[ok]).mean()) if ok.any() else math.nan


def mse(pred, obs, data_range=None) -> float:
    """Mean squared error over pixels finite in both (NaN if none). `data_range` is unused."""
    p, o, ok = _pair(pred, obs)
    return float(((p[ok] - o[ok]) ** 2).mean()) if ok.any() else math.nan


def rmse(pred, obs, data_range=None) -> float:
    """Root mean squared error over pixels finite in both."""
    return math.sqrt(mse(pred, obs)) if np.isfinite(mse(pred, obs)) else math.nan


def psnr_from_mse(m: float, data_range: float) -> float:
    if not np.isfinite(m):
        return math.nan
    if m == 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / m)


def psnr(pred, obs, data_range=None) -> float:
    """``10 log10(L^2 / MSE)`` in dB with ``L`` the data range (module docstring); inf if MSE is 0."""
    L = _range(pred, obs, data_range)
    return psnr_from_mse(mse(pred, obs), L)


def r2(pred, obs, data_range=None) -> float:
    """Coefficient of determination of `pred` for `obs` (NaN if < 2 pixels or `obs` is flat)."""
    p, o, ok = _pair(pred, obs)
    if ok.sum() < 2:
        return math.nan
    o, p = o[ok], p[ok]
    ss_tot = float(((o - o.mean()) ** 2).sum())
    if ss_tot == 0:
        return math.nan
    return 1.0 - float(((o - p) ** 2).sum()) / ss_tot


def pearson_r2(pred, obs, data_range=None) -> float:
    """Squared Pearson correlation of the valid pixels (Fig. 19 of the paper)."""
    p, o, ok = _pair(pred, obs)
    if ok.sum() < 2:
        return math.nan
    o, p = o[ok], p[ok]
    if o.std() == 0 or p.std() == 0:
        return math.nan
    return float(np.corrcoef(p, o)[0, 1] ** 2)


# -- SSIM ----------------------------------------------------------------------------------------
def _gauss(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype="float64") - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation with `g`, keeping only the 'valid' part (window fully inside)."""
    r = len(g) // 2
    out = ndimage.correlate1d(a, g, axis=0, mode="constant", cval=0.0)
    out = ndimage.correlate1d(out, g, axis=1, mode="constant", cval=0.0)
    return out[r : a.shape[0] - r, r : a.shape[1] - r]


def _window_for(shape: tuple[int, ...]) -> int:
    side = min(shape)
    if side >= WINDOW:
        return WINDOW
    return max(1, side if side % 2 else side - 1)


def _ssim_parts(
    x: np.ndarray, y: np.ndarray, m: np.ndarray, L: float, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Luminance map, contrast-structure map and the pixels to average (all 'valid'-sized)."""
    g = _gauss(size, SIGMA)
    mf = m.astype("float64")
    x0 = np.where(m, x, 0.0)
    y0 = np.where(m, y, 0.0)
    w = _filter_valid(mf, g)
    safe = np.where(w > 0, w, 1.0)
    mx = _filter_valid(x0, g) / safe
    my = _filter_valid(y0, g) / safe
    sxx = _filter_valid(x0 * x0, g) / safe - mx * mx
    syy = _filter_valid(y0 * y0, g) / safe - my * my
    sxy = _filter_valid(x0 * y0, g) / safe - mx * my
    c1 = (K1 * L) ** 2
    c2 = (K2 * L) ** 2
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    r = size // 2
    centre = m[r : m.shape[0] - r, r : m.shape[1] - r]
    use = centre & (w >= MIN_SUPPORT - 1e-9)
    return lum, cs, use


def ssim(pred, obs, data_range=None) -> float:
    """Mean structural similarity of two 2-D frames (see the module docstring for window and NaNs)."""
    p, o, ok = _pair(pred, obs)
    if p.ndim != 2:
        raise ValueError(f"ssim needs 2-D frames, not shape {p.shape}")
    if not ok.any():
        return math.nan
    L = _range(p, o, data_range)
    lum, cs, use = _ssim_parts(p, o, ok, L, _window_for(p.shape))
    if not use.any():
        return math.nan
    return float((lum * cs)[use].mean())


def ssim_map(pred, obs, data_range=None) -> np.ndarray:
    """The local SSIM of every pixel, NaN where not defined (borders, invalid pixels)."""
    p, o, ok = _pair(pred, obs)
    L = _range(p, o, data_range)
    size = _window_for(p.shape)
    lum, cs, use = _ssim_parts(p, o, ok, L, size)
    out = np.full(p.shape, np.nan)
    r = size // 2
    out[r : p.shape[0] - r, r : p.shape[1] - r] = np.where(use, lum * cs, np.nan)
    return out


def _downsample(a: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2 x 2 average of the valid pixels; an odd side is padded by repeating its last row/column."""
    ph, pw = a.shape[0] % 2, a.shape[1] % 2
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw)), mode="symmetric")
        m = np.pad(m, ((0, ph), (0, pw)), mode="symmetric")
    h, w = a.shape[0] // 2, a.shape[1] // 2
    mf = m.astype("float64")
    s = np.where(m, a, 0.0).reshape(h, 2, w, 2).sum(axis=(1, 3))
    n = mf.reshape(h, 2, w, 2).sum(axis=(1, 3))
    return np.where(n > 0, s / np.where(n > 0, n, 1.0), 0.0), n > 0


def ms_ssim_scales(shape: tuple[int, ...], size: int = WINDOW) -> int:
    """How many of the five MS-SSIM scales an image of `shape` supports (at least 1)."""
    h, w = shape[:2]
    k = 1
    while k < len(MS_SSIM_WEIGHTS):
        h, w = (h + 1) // 2, (w + 1) // 2
        if min(h, w) < size:
            break
        k += 1
    return k


def ms_ssim(pred, obs, data_range=None) -> float:
    """Multi-scale SSIM of two 2-D frames, as ``tf.image.ssim_multiscale`` (module docstring)."""
    p, o, ok = _pair(pred, obs)
    if p.ndim != 2:
        raise ValueError(f"ms_ssim needs 2-D frames, not shape {p.shape}")
    if not ok.any():
        return math.nan
    L = _range(p, o, data_range)
    size = _window_for(p.shape)
    n = ms_ssim_scales(p.shape, size)
    weights = np.array(MS_SSIM_WEIGHTS[:n], dtype="float64")
    if n < len(MS_SSIM_WEIGHTS):  # the five published weights sum to 1.0001: keep them as they are
        weights /= weights.sum()
    vals = []
    for k in range(n):
        if k > 0:
            p, ok_p = _downsample(p, ok)
            o, _ = _downsample(o, ok)
            ok = ok_p
        lum, cs, use = _ssim_parts(p, o, ok, L, size)
        if not use.any():
            return math.nan
        if k < n - 1:
            vals.append(max(float(cs[use].mean()), 0.0))
        else:
            vals.append(max(float((lum * cs)[use].mean()), 0.0))
    return float(np.prod(np.power(np.array(vals), weights)))


# -- all metrics, per frame and per stack -------------------------------------------------------
def frame_metrics(pred, obs, data_range=None) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one frame, plus ``N`` (valid pixels) and ``DATA_RANGE``."""
    p, o, ok = _pair(pred, obs)
    L = _range(p, o, data_range)
    m = mse(p, o)
    return {
        "MAE": mae(p, o),
        "MSE": m,
        "RMSE": math.sqrt(m) if np.isfinite(m) else math.nan,
        "SSIM": ssim(p, o, L),
        "MS_SSIM": ms_ssim(p, o, L),
        "PSNR": psnr_from_mse(m, L),
        "R2": r2(p, o),
        "N": int(ok.sum()),
        "DATA_RANGE": L,
    }


def stack_metrics(pred, obs, data_range=None) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per-date and overall metrics of two (dates, rows, cols) stacks.

    ``L`` defaults to the observed range over the whole stack, the same for every date. Overall:
    MAE/MSE/RMSE/R^2 pool all valid pixels of all dates, PSNR uses the pooled MSE, SSIM and MS-SSIM
    are the mean of the per-date values (dates without a valid pixel are skipped).
    """
    p, o, ok = _pair(pred, obs)
    if p.ndim == 2:
        p, o, ok = p[None], o[None], ok[None]
    if p.ndim != 3:
        raise ValueError(f"stack_metrics needs (dates, rows, cols) stacks, not shape {p.shape}")
    L = _range(p, o, data_range)
    per = [frame_metrics(p[i], o[i], L) for i in range(p.shape[0])]
    m = mse(p, o)

    def mean_of(key: str) -> float:
        v = np.array([d[key] for d in per], dtype="float64")
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else math.nan

    overall = {
        "MAE": mae(p, o),
        "MSE": m,
        "RMSE": math.sqrt(m) if np.isfinite(m) else math.nan,
        "SSIM": mean_of("SSIM"),
        "MS_SSIM": mean_of("MS_SSIM"),
        "PSNR": psnr_from_mse(m, L),
        "R2": r2(p, o),
        "N": int(ok.sum()),
        "DATA_RANGE": L,
    }
    return per, overall


def abs_error_stack(pred, obs) -> np.ndarray:
    """Per-pixel ``|pred - obs|`` as float32, NaN where either is missing."""
    p, o, ok = _pair(pred, obs)
    return np.where(ok, np.abs(p - o), np.nan).astype("float32")


def format_metrics(values: dict[str, float], keys: Sequence[str] = METRICS) -> str:
    """``MAE=1.42 MSE=7.38 ...`` for logs."""
    return " ".join(f"{k}={values[k]:.5g}" for k in keys if k in values)
