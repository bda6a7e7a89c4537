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

Memory
    SSIM and MS-SSIM are computed in tiles of :data:`TILE` pixels with a halo of the window's
    radius (every local statistic depends on its window only, so the values are those of the whole
    frame), and frames may be float32: a frame is never copied whole to float64. Stacks stream
    frame by frame through :class:`StackAccumulator` (one frame in memory at a time).

R^2
    The coefficient of determination ``1 - SS_res / SS_tot`` of `pred` as a prediction of `obs`
    (as ``sklearn.metrics.r2_score``); :func:`pearson_r2` is the squared Pearson correlation the
    paper's Fig. 19 reports, which ignores bias and scale errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# The metrics, their names and their order: the one definition every table, report, output and
# the worker use (issue 20). TABLE_III: those the paper's Table III reports, in its order.
METRICS = ("MAE", "MSE", "RMSE", "SSIM", "MS_SSIM", "PSNR", "R2")
TABLE_III = ("MAE", "MSE", "SSIM", "MS_SSIM", "PSNR")
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
MIN_SUPPORT = 0.5
TILE = 256  # SSIM tile side (pixels): ~20 float64 temporaries of (TILE + 10)^2 = 11 MB
STRIP = 1024  # rows per strip of the pixel-wise sums


def _float(a) -> np.ndarray:
    """`a` as a float array: float32 and float64 as they are (no copy), anything else float64."""
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype("float64")


def _pair(pred, obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = _float(pred)
    o = _float(obs)
    if p.shape != o.shape:
        raise ValueError(f"prediction {p.shape} and observation {o.shape} differ in shape")
    return p, o, np.isfinite(p) & np.isfinite(o)


def _strips(shape: tuple[int, ...]):
    """Slices along the first axis of ~STRIP rows (a stack: one date at a time)."""
    if len(shape) == 3:
        for i in range(shape[0]):
            for r in range(0, shape[1], STRIP):
                yield (i, slice(r, r + STRIP))
    else:
        for r in range(0, shape[0], STRIP):
            yield (slice(r, r + STRIP),)


@dataclass
class Sums:
    """Pixel-wise sums of a pair of images over their valid pixels, merged exactly (Chan et al.):
    what MAE, MSE and R^2 need. The observation's spread is kept as (mean, M2)."""

    n: int = 0
    abs_err: float = 0.0
    sq_err: float = 0.0
    o_mean: float = 0.0
    o_m2: float = 0.0

    @classmethod
    def of(cls, p: np.ndarray, o: np.ndarray, ok: np.ndarray) -> Sums:
        out = cls()
        for sl in _strips(ok.shape):
            m = ok[sl]
            if not m.any():
                continue
            pv = p[sl][m].astype("float64")
            ov = o[sl][m].astype("float64")
            d = pv - ov
            part = cls(int(ov.size), float(np.abs(d).sum()), float((d * d).sum()))
            part.o_mean = float(ov.mean())
            part.o_m2 = float(((ov - part.o_mean) ** 2).sum())
            out.merge(part)
        return out

    def merge(self, other: Sums) -> None:
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.o_mean - self.o_mean
        self.o_m2 += other.o_m2 + delta * delta * self.n * other.n / n
        self.o_mean += delta * other.n / n
        self.n = n
        self.abs_err += other.abs_err
        self.sq_err += other.sq_err

    @property
    def mae(self) -> float:
        return self.abs_err / self.n if self.n else math.nan

    @property
    def mse(self) -> float:
        return self.sq_err / self.n if self.n else math.nan

    @property
    def r2(self) -> float:
        if self.n < 2 or self.o_m2 == 0:
            return math.nan
        return 1.0 - self.sq_err / self.o_m2


def default_data_range(obs, pred=None) -> float:
    """``max - min`` of the finite observed values (where `pred` is finite too, if given).

    A flat observation gives ``max|obs|``, and 1.0 if that is 0 or nothing is finite.
    """
    o = _float(obs)
    p = None if pred is None else _float(pred)
    lo, hi = math.inf, -math.inf
    for sl in _strips(o.shape):
        ok = np.isfinite(o[sl])
        if p is not None:
            ok &= np.isfinite(p[sl])
        if ok.any():
            v = o[sl][ok]
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    return range_from(lo, hi)


def range_from(lo: float, hi: float) -> float:
    """The data range of observations between `lo` and `hi` (see :func:`default_data_range`)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 1.0
    rng = hi - lo
    if rng > 0:
        return rng
    peak = max(abs(lo), abs(hi))
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
    return Sums.of(*_pair(pred, obs)).mae


def mse(pred, obs, data_range=None) -> float:
    """Mean squared error over pixels finite in both (NaN if none). `data_range` is unused."""
    return Sums.of(*_pair(pred, obs)).mse


def rmse(pred, obs, data_range=None) -> float:
    """Root mean squared error over pixels finite in both."""
    m = mse(pred, obs)
    return math.sqrt(m) if np.isfinite(m) else math.nan


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
    return Sums.of(*_pair(pred, obs)).r2


def pearson_r2(pred, obs, data_range=None) -> float:
    """Squared Pearson correlation of the valid pixels (Fig. 19 of the paper)."""
    p, o, ok = _pair(pred, obs)
    if ok.sum() < 2:
        return math.nan
    o, p = o[ok].astype("float64"), p[ok].astype("float64")
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
    x0 = np.where(m, x.astype("float64", copy=False), 0.0)
    y0 = np.where(m, y.astype("float64", copy=False), 0.0)
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


def _ssim_sums(
    x: np.ndarray, y: np.ndarray, m: np.ndarray, L: float, size: int, tile: int = TILE
) -> tuple[float, float, int]:
    """Sums over the averaged pixels of the SSIM map and of the contrast-structure map, and their
    count, computed tile by tile: each tile of the 'valid' output reads its input with a halo of
    the window's radius, so its local statistics are those of the whole image."""
    r = size // 2
    H, W = m.shape
    s_ssim = s_cs = 0.0
    count = 0
    for a in range(0, max(H - 2 * r, 0), tile):
        b = min(a + tile, H - 2 * r)
        for c in range(0, max(W - 2 * r, 0), tile):
            d = min(c + tile, W - 2 * r)
            sl = (slice(a, b + 2 * r), slice(c, d + 2 * r))
            lum, cs, use = _ssim_parts(x[sl], y[sl], m[sl], L, size)
            n = int(np.count_nonzero(use))
            if n:
                s_cs += float(cs[use].sum())
                s_ssim += float((lum * cs)[use].sum())
                count += n
    return s_ssim, s_cs, count


def ssim(pred, obs, data_range=None) -> float:
    """Mean structural similarity of two 2-D frames (see the module docstring for window and NaNs)."""
    p, o, ok = _pair(pred, obs)
    if p.ndim != 2:
        raise ValueError(f"ssim needs 2-D frames, not shape {p.shape}")
    if not ok.any():
        return math.nan
    L = _range(p, o, data_range)
    s_ssim, _, n = _ssim_sums(p, o, ok, L, _window_for(p.shape))
    if not n:
        return math.nan
    return s_ssim / n


def _downsample(a: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2 x 2 average of the valid pixels; an odd side is padded by repeating its last row/column.
    Done in strips of rows (float64 output, a quarter of the input)."""
    H, W = a.shape
    h, w = (H + 1) // 2, (W + 1) // 2
    out = np.empty((h, w), dtype="float64")
    out_m = np.empty((h, w), dtype=bool)
    step = max(1, STRIP // 2)
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        sa = a[2 * r0 : 2 * r1].astype("float64")
        sm = m[2 * r0 : 2 * r1]
        ph, pw = 2 * (r1 - r0) - sa.shape[0], W % 2
        if ph or pw:
            sa = np.pad(sa, ((0, ph), (0, pw)), mode="symmetric")
            sm = np.pad(sm, ((0, ph), (0, pw)), mode="symmetric")
        mf = sm.astype("float64")
        s_ = np.where(sm, sa, 0.0).reshape(r1 - r0, 2, w, 2).sum(axis=(1, 3))
        n = mf.reshape(r1 - r0, 2, w, 2).sum(axis=(1, 3))
        out[r0:r1] = np.where(n > 0, s_ / np.where(n > 0, n, 1.0), 0.0)
        out_m[r0:r1] = n > 0
    return out, out_m


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
        s_ssim, s_cs, count = _ssim_sums(p, o, ok, L, size)
        if not count:
            return math.nan
        if k < n - 1:
            vals.append(max(s_cs / count, 0.0))
        else:
            vals.append(max(s_ssim / count, 0.0))
    return float(np.prod(np.power(np.array(vals), weights)))


# -- all metrics, per frame and per stack -------------------------------------------------------
def frame_metrics(pred, obs, data_range=None) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one frame, plus ``N`` (valid pixels) and ``DATA_RANGE``."""
    return _frame_metrics(*_pair(pred, obs), data_range)[0]


def _frame_metrics(p, o, ok, data_range=None) -> tuple[dict[str, float], Sums]:
    L = _range(p, o, data_range)
    sums = Sums.of(p, o, ok)
    m = sums.mse
    return {
        "MAE": sums.mae,
        "MSE": m,
        "RMSE": math.sqrt(m) if np.isfinite(m) else math.nan,
        "SSIM": ssim(p, o, L),
        "MS_SSIM": ms_ssim(p, o, L),
        "PSNR": psnr_from_mse(m, L),
        "R2": sums.r2,
        "N": sums.n,
        "DATA_RANGE": L,
    }, sums


class StackAccumulator:
    """Per-date and overall metrics of frames added one at a time (bounded memory).

    ``add(pred, obs)`` scores one 2-D frame with the data range `data_range` (the same for every
    date: give the observed range of all frames, e.g. from :class:`RangeAccumulator`) and returns
    its metrics; ``overall()`` pools MAE/MSE/RMSE/R^2 over every valid pixel, PSNR from the pooled
    MSE, SSIM and MS-SSIM as the mean over the dates that have a value (as :func:`stack_metrics`).
    """

    def __init__(self, data_range: float):
        self.L = float(data_range)
        if not self.L > 0:
            raise ValueError(f"data_range must be positive, not {data_range}")
        self.per: list[dict[str, float]] = []
        self.sums = Sums()

    def add(self, pred, obs) -> dict[str, float]:
        p, o, ok = _pair(pred, obs)
        if p.ndim != 2:
            raise ValueError(f"frames must be 2-D, not shape {p.shape}")
        row, sums = _frame_metrics(p, o, ok, self.L)
        self.sums.merge(sums)
        self.per.append(row)
        return row

    def overall(self) -> dict[str, float]:
        def mean_of(key: str) -> float:
            v = np.array([d[key] for d in self.per], dtype="float64")
            v = v[np.isfinite(v)]
            return float(v.mean()) if v.size else math.nan

        m = self.sums.mse
        return {
            "MAE": self.sums.mae,
            "MSE": m,
            "RMSE": math.sqrt(m) if np.isfinite(m) else math.nan,
            "SSIM": mean_of("SSIM"),
            "MS_SSIM": mean_of("MS_SSIM"),
            "PSNR": psnr_from_mse(m, self.L),
            "R2": self.sums.r2,
            "N": self.sums.n,
            "DATA_RANGE": self.L,
        }


class RangeAccumulator:
    """The default data range of a stack, frame by frame: observed min/max where both are finite."""

    def __init__(self) -> None:
        self.lo, self.hi = math.inf, -math.inf

    def add(self, pred, obs) -> None:
        p, o, ok = _pair(pred, obs)
        for sl in _strips(ok.shape):
            m = ok[sl]
            if m.any():
                v = o[sl][m]
                self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))

    def value(self) -> float:
        return range_from(self.lo, self.hi)


def stack_metrics(pred, obs, data_range=None) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per-date and overall metrics of two (dates, rows, cols) stacks.

    ``L`` defaults to the observed range over the whole stack, the same for every date. Overall:
    MAE/MSE/RMSE/R^2 pool all valid pixels of all dates, PSNR uses the pooled MSE, SSIM and MS-SSIM
    are the mean of the per-date values (dates without a valid pixel are skipped). Frame by frame
    (:class:`StackAccumulator`): no whole-stack temporary.
    """
    p, o, _ = _pair(pred, obs)
    if p.ndim == 2:
        p, o = p[None], o[None]
    if p.ndim != 3:
        raise ValueError(f"stack_metrics needs (dates, rows, cols) stacks, not shape {p.shape}")
    L = _range(p, o, data_range)
    acc = StackAccumulator(L)
    for i in range(p.shape[0]):
        acc.add(p[i], o[i])
    return acc.per, acc.overall()


def abs_error_stack(pred, obs) -> np.ndarray:
    """Per-pixel ``|pred - obs|`` as float32, NaN where either is missing (in strips of rows: no
    whole float64 temporary)."""
    p, o, _ = _pair(pred, obs)
    out = np.empty(p.shape, dtype="float32")
    with np.errstate(invalid="ignore"):
        for sl in _strips(p.shape):
            out[sl] = np.abs(p[sl].astype("float64") - o[sl])
    return out


def format_metrics(values: dict[str, float], keys: Sequence[str] = METRICS) -> str:
    """``MAE=1.42 MSE=7.38 ...`` for logs."""
    return " ".join(f"{k}={values[k]:.5g}" for k in keys if k in values)
