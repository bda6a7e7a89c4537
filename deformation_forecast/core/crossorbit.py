"""Cross-orbit consistency (paper §V-A-2, Fig. 15b): two LOS stacks (e.g. ascending and
descending) converted to vertical, paired by date, compared pixel by pixel on one grid.

Also holds the small pieces the validation tools share: nearest-date pairing and streaming
correlation/regression statistics (LOS -> vertical and the check of an incidence angle live in
core.los, re-exported here; a raster read on another grid is core.resample.OnGrid).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .dates import to_decimal_year
from .errors import InputError

# dv = dLOS / cos(theta) and the check of an incidence angle, shared with `losvertical`
from .los import check_incidence, los_to_vertical, open_incidence
from .resample import OnGrid
from .run import QUIET, Run
from .stack import StackInfo, StackReader, budget_gdal_cache, iter_windows
from .streaming import BottomK, hash_keys, pixel_index

__all__ = ["los_to_vertical", "check_incidence", "cross_orbit", "nearest_pairs", "PairStats"]

# ---------------------------------------------------------------- dates


def nearest_pairs(
    a: Sequence[dt.date], b: Sequence[dt.date], max_days: float, one_to_one: bool = False
) -> list[tuple[int, int, int]]:
    """For each date of `a`, the nearest date of `b` within `max_days`: (i, j, |days|) sorted by i.

    Ties go to the earlier date of `b`. With `one_to_one`, a date of `b` claimed by several dates
    of `a` stays with the closest one only.
    """
    if not len(b):
        return []
    ob = np.array([d.toordinal() for d in b])
    out = []
    for i, d in enumerate(a):
        gaps = np.abs(ob - d.toordinal())
        j = int(np.argmin(gaps))
        if gaps[j] <= max_days:
            out.append((i, j, int(gaps[j])))
    if one_to_one:
        best: dict[int, tuple[int, int, int]] = {}
        for p in out:
            if p[1] not in best or p[2] < best[p[1]][2]:
                best[p[1]] = p
        out = sorted(best.values())
    return out


# ---------------------------------------------------------------- statistics


@dataclass
class PairStats:
    """Streaming statistics of pairs (x, y): Pearson r, least-squares line y = a x + b, RMSE and
    mean of y - x. Batches combine exactly (Chan et al.), so memory does not grow with n."""

    n: int = 0
    mx: float = 0.0
    my: float = 0.0
    cxx: float = 0.0
    cyy: float = 0.0
    cxy: float = 0.0
    sdd: float = 0.0  # sum (y - x)^2
    maxabs: float = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, dtype="float64").ravel()
        y = np.asarray(y, dtype="float64").ravel()
        nb = x.size
        if nb == 0:
            return
        mxb, myb = x.mean(), y.mean()
        dxb, dyb = x - mxb, y - myb
        cxxb, cyyb, cxyb = float(dxb @ dxb), float(dyb @ dyb), float(dxb @ dyb)
        n = self.n + nb
        ddx, ddy = mxb - self.mx, myb - self.my
        f = self.n * nb / n
        self.cxx += cxxb + ddx * ddx * f
        self.cyy += cyyb + ddy * ddy * f
        self.cxy += cxyb + ddx * ddy * f
        self.mx += ddx * nb / n
        self.my += ddy * nb / n
        self.n = n
        d = y - x
        self.sdd += float(d @ d)
        self.maxabs = max(self.maxabs, float(np.max(np.abs(d))))

    def merge(self, other: PairStats) -> None:
        """Add the pairs another PairStats has seen (exact combination)."""
        if other.n == 0:
            return
        if self.n == 0:
            self.__dict__.update(other.__dict__)
            return
        nb = other.n
        n = self.n + nb
        ddx, ddy = other.mx - self.mx, other.my - self.my
        f = self.n * nb / n
        self.cxx += other.cxx + ddx * ddx * f
        self.cyy += other.cyy + ddy * ddy * f
        self.cxy += other.cxy + ddx * ddy * f
        self.mx += ddx * nb / n
        self.my += ddy * nb / n
        self.n = n
        self.sdd += other.sdd
        self.maxabs = max(self.maxabs, other.maxabs)

    def result(self) -> dict:
        nan = float("nan")
        n = self.n
        r = slope = intercept = nan
        if n >= 2 and self.cxx > 0:
            slope = self.cxy / self.cxx
            intercept = self.my - slope * self.mx
            if self.cyy > 0:
                r = self.cxy / np.sqrt(self.cxx * self.cyy)
        return dict(
            n=n,
            r=float(r),
            slope=float(slope),
            intercept=float(intercept),
            rmse=float(np.sqrt(self.sdd / n)) if n else nan,
            bias=float(self.my - self.mx) if n else nan,
            max_abs=float(self.maxabs) if n else nan,
            mean_a=float(self.mx) if n else nan,
            mean_b=float(self.my) if n else nan,
        )


# ---------------------------------------------------------------- the comparison

MODES = ("displacement", "velocity")


@dataclass
class CrossOrbitResult:
    mode: str
    pairs: list[tuple[dt.date, dt.date]]
    reference: tuple[dt.date, dt.date] | None
    rows: list[dict]  # one per compared pair (displacement) or one (velocity), plus "all"
    overall: dict
    sample_a: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample_b: np.ndarray = field(default_factory=lambda: np.empty(0))


# arrays of a window's size (float32 units, all paired dates of one stack) alive at once: both
# stacks' windows (float32) and their float64 vertical values, the differences of one pair
CROSS_COPIES = 12


@dataclass(frozen=True)
class Side:
    """One stack of the comparison and its incidence angle in degrees: a number, the path of an
    incidence raster (read on A's grid window by window), or an array on A's grid."""

    path: str
    info: StackInfo
    incidence: float | str | np.ndarray


@dataclass(frozen=True)
class CrossOrbitOptions:
    """How the stacks are paired and compared (see :func:`cross_orbit`)."""

    max_days: float = 6
    mode: str = "displacement"
    plot_points: int = 20000
    seed: int = 0
    max_bytes: int | None = None  # float32 bytes of one window of A's paired dates (tests); None: the budget


@budget_gdal_cache
def cross_orbit(
    a: Side, b: Side, options: CrossOrbitOptions = CrossOrbitOptions(), run: Run = QUIET
) -> CrossOrbitResult:
    """Compare the vertical deformation of stack `b` with stack `a` on A's grid.

    Dates of A are paired with the nearest date of B within `options.max_days` (one to one). Both
    series are set to zero at the first pair. Mode "displacement": every (pixel, later pair) is
    one sample of (vertical A, vertical B); mode "velocity": per pixel, the least-squares vertical
    rate (mm/yr) over the paired dates of each stack is one sample. Returns per-pair and overall
    r, slope and intercept of B = slope * A + intercept, RMSE and mean of B - A, and a random
    subsample for a plot.

    Both stacks are read window by window on A's grid (B through a WarpedVRT when its grid
    differs), windows sized from the memory budget of `run` (`options.max_bytes` overrides it);
    statistics combine exactly across windows and the plot subsample does not depend on the
    windows (core.streaming). `run` reports progress and cancels.
    """
    if options.mode not in MODES:
        raise InputError(f"Unknown comparison mode {options.mode!r}; use one of {MODES}.")
    for side, label in ((a, "incidence angle of stack A"), (b, "incidence angle of stack B")):
        if not isinstance(side.incidence, str):
            check_incidence(side.incidence, label)
    pairs = _pairs(a.info, b.info, options.max_days)
    windows = iter_windows(a.info, options.max_bytes, bands=len(pairs), copies=CROSS_COPIES, run=run)
    with contextlib.ExitStack() as es:
        vertical = _Vertical(es, a, b, pairs, run)
        compare = _displacement if options.mode == "displacement" else _velocity
        rows, total, samples, reference = compare(vertical, windows, options, run)
    overall = total.result()
    if overall["n"] == 0:
        raise InputError("The two stacks share no coherent pixel at the paired dates.")
    rows.append(dict(date_a=None, date_b=None, gap_days=None, **overall))
    picked = [s.result() for s in samples]
    return CrossOrbitResult(
        mode=options.mode,
        pairs=vertical.date_pairs,
        reference=reference,
        rows=rows,
        overall=overall,
        sample_a=np.concatenate([p["x"] for p in picked if p]) if any(picked) else np.empty(0),
        sample_b=np.concatenate([p["y"] for p in picked if p]) if any(picked) else np.empty(0),
    )


def _pairs(info_a: StackInfo, info_b: StackInfo, max_days: float) -> list[tuple[int, int, int]]:
    """The one-to-one date pairs of the comparison; at least two, else InputError."""
    pairs = nearest_pairs(info_a.dates, info_b.dates, max_days, one_to_one=True)
    if len(pairs) < 2:
        ra = f"{info_a.dates[0]}..{info_a.dates[-1]}"
        rb = f"{info_b.dates[0]}..{info_b.dates[-1]}"
        raise InputError(
            f"Only {len(pairs)} date(s) of stack A ({ra}) have a date of stack B ({rb}) within "
            f"{max_days:g} days; at least two are needed. Raise MAX_DAYS or choose overlapping stacks."
        )
    return pairs


class _Vertical:
    """The vertical values of both stacks at their paired dates, window by window of A's grid."""

    def __init__(
        self, es: contextlib.ExitStack, a: Side, b: Side, pairs: list[tuple[int, int, int]], run: Run
    ):
        self.a, self.b, self.pairs = a, b, pairs
        self.ia = [i for i, _, _ in pairs]
        self.jb = [j for _, j, _ in pairs]
        self.date_pairs = [(a.info.dates[i], b.info.dates[j]) for i, j, _ in pairs]
        self.theta_a = open_incidence(es, a.incidence, a.info, "INCIDENCE_RASTER (stack A)", run)
        self.theta_b = open_incidence(es, b.incidence, a.info, "INCIDENCE_RASTER_B (stack B)", run)
        self.b_grid = es.enter_context(OnGrid(b.path, a.info, b.info))
        self.a_stack = es.enter_context(StackReader(a.path))

    def __call__(self, win) -> tuple[np.ndarray, np.ndarray]:
        th_a = np.asarray(self.theta_a.read(win), dtype="float64")
        th_b = np.asarray(self.theta_b.read(win), dtype="float64")
        va = los_to_vertical(self.a_stack.read(win, self.ia), th_a)
        vb = los_to_vertical(self.b_grid.read(self.jb, win), th_b)
        return va, vb


def _displacement(vertical: _Vertical, windows, options: CrossOrbitOptions, run: Run):
    """Mode "displacement": one PairStats and one plot sample per later pair."""
    npairs, width = len(vertical.pairs), vertical.a.info.width
    per_pair = [PairStats() for _ in range(npairs - 1)]
    quota = max(1, options.plot_points // (npairs - 1))
    samples = [BottomK(quota) for _ in range(npairs - 1)]
    shared_reference = False
    for k, win in enumerate(windows):
        run.check_cancelled()
        va, vb = vertical(win)
        ref_a, ref_b = va[0], vb[0]
        shared_reference |= bool(np.any(np.isfinite(ref_a) & np.isfinite(ref_b)))
        pix = pixel_index(win, width)
        for p in range(1, npairs):
            x = va[p] - ref_a
            y = vb[p] - ref_b
            ok = np.isfinite(x) & np.isfinite(y)
            x, y = x[ok], y[ok]
            per_pair[p - 1].add(x, y)
            samples[p - 1].add(hash_keys(pix[ok], options.seed * 1_000_003 + p), x=x, y=y)
        del va, vb
        run.progress((k + 1) / len(windows))
    if not shared_reference:
        raise InputError(
            "The two stacks share no coherent pixel (their footprints do not overlap, or every "
            "pixel is NaN in one of them at the reference date)."
        )
    rows: list[dict] = []
    total = PairStats()
    dates_a, dates_b = vertical.a.info.dates, vertical.b.info.dates
    for p, st in enumerate(per_pair, start=1):
        (i, j, gap) = vertical.pairs[p]
        rows.append(dict(date_a=dates_a[i], date_b=dates_b[j], gap_days=gap, **st.result()))
        total.merge(st)
    return rows, total, samples, vertical.date_pairs[0]


def _velocity(vertical: _Vertical, windows, options: CrossOrbitOptions, run: Run):
    """Mode "velocity": one sample per pixel, the vertical rates of both stacks."""
    t_a = to_decimal_year([vertical.a.info.dates[i] for i in vertical.ia])[:, None, None]
    t_b = to_decimal_year([vertical.b.info.dates[j] for j in vertical.jb])[:, None, None]
    total = PairStats()
    samples = [BottomK(options.plot_points)]
    for k, win in enumerate(windows):
        run.check_cancelled()
        va, vb = vertical(win)
        rates = [_rate(va, t_a), _rate(vb, t_b)]
        del va, vb
        ok = np.isfinite(rates[0]) & np.isfinite(rates[1])
        x, y = rates[0][ok], rates[1][ok]
        total.add(x, y)
        samples[0].add(hash_keys(pixel_index(win, vertical.a.info.width)[ok], options.seed), x=x, y=y)
        run.progress((k + 1) / len(windows))
    first = vertical.date_pairs[0]
    rows = [dict(date_a=first[0], date_b=first[1], gap_days=None, **total.result())]
    return rows, total, samples, None


def _rate(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per pixel least-squares slope of `v` (dates, rows, cols) over `t` (dates, 1, 1), NaN-aware
    (the sums n, St, Stt, Sv, Stv over valid dates); NaN with fewer than 2 valid dates."""
    ok = np.isfinite(v)
    n = ok.sum(axis=0).astype("float64")
    tt = np.broadcast_to(t, v.shape)
    st_ = np.where(ok, tt, 0.0).sum(axis=0)
    stt = np.where(ok, tt * tt, 0.0).sum(axis=0)
    sv = np.where(ok, v, 0.0).sum(axis=0)
    stv = np.where(ok, tt * v, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = n * stt - st_**2
        rate = (n * stv - st_ * sv) / den
    rate[(n < 2) | ~(np.abs(den) > 1e-12)] = np.nan
    return rate


def plot_cross_orbit(result: CrossOrbitResult, path: str, label_a: str = "A", label_b: str = "B") -> str:
    """Fig. 15b: scatter of vertical B vs A with the 1:1 line and the regression line (PNG/SVG/PDF
    by extension), written atomically."""
    from matplotlib.figure import Figure

    from .stack import atomic_path

    ov = result.overall
    unit = "mm/yr" if result.mode == "velocity" else "mm"
    fig = Figure(figsize=(6, 6), dpi=120)
    ax = fig.add_subplot(111)
    x, y = result.sample_a, result.sample_b
    if x.size > 5000:
        hb = ax.hexbin(x, y, gridsize=80, bins="log", mincnt=1, cmap="viridis")
        fig.colorbar(hb, ax=ax, label="pixels (log)")
    else:
        ax.scatter(x, y, s=4, alpha=0.5)
    if x.size:
        lo = float(min(np.min(x), np.min(y)))
        hi = float(max(np.max(x), np.max(y)))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="1:1")
        if np.isfinite(ov["slope"]):
            ax.plot(
                [lo, hi],
                [ov["slope"] * lo + ov["intercept"], ov["slope"] * hi + ov["intercept"]],
                "r-",
                lw=1.2,
                label=f"y = {ov['slope']:.3f} x {ov['intercept']:+.2f}",
            )
    ax.set_xlabel(f"vertical {result.mode}, {label_a} ({unit})")
    ax.set_ylabel(f"vertical {result.mode}, {label_b} ({unit})")
    ax.set_title(f"Cross-orbit: r = {ov['r']:.3f}, RMSE = {ov['rmse']:.2f} {unit}, n = {ov['n']}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=ext)
    return path
