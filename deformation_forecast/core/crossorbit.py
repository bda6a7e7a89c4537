"""Cross-orbit consistency (paper §V-A-2, Fig. 15b): two LOS stacks (e.g. ascending and
descending) converted to vertical, paired by date, compared pixel by pixel on one grid.

Also holds the small pieces the validation tools share: LOS -> vertical (``dv = dLOS / cos(theta)``,
paper §V-A-1), the check of an incidence angle, an incidence raster brought onto a stack's grid,
nearest-date pairing, and streaming correlation/regression statistics.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .dates import to_decimal_year
from .errors import InputError
from .los import los_to_vertical  # dv = dLOS / cos(theta), shared with `losvertical`
from .stack import StackInfo, read_stack, same_grid

__all__ = ["los_to_vertical", "check_incidence", "cross_orbit", "nearest_pairs", "PairStats"]

# ---------------------------------------------------------------- LOS geometry


def check_incidence(theta, what: str = "incidence angle") -> None:
    """Raise InputError unless every finite angle (degrees) lies strictly between 0 and 90."""
    a = np.asarray(theta, dtype="float64")
    fin = a[np.isfinite(a)]
    if fin.size == 0:
        raise InputError(f"The {what} has no value (only NaN).")
    bad = fin[(fin <= 0) | (fin >= 90)]
    if bad.size:
        raise InputError(
            f"The {what} must lie between 0 and 90 degrees (exclusive); got {float(bad[0]):g}. "
            "Give the radar incidence angle in degrees from the vertical (e.g. 34.17 for the paper's "
            "Sentinel-1 ascending track)."
        )


def read_band_on_grid(path: str, info: StackInfo, band: int, target: StackInfo) -> np.ndarray:
    """Band `band` (0-based) of raster `path` on the grid of `target` (bilinear where the grids
    differ; NaN outside `path`'s footprint), float64 (rows, cols)."""
    if same_grid(info, target):
        return read_stack(path, bands=[band])[0].astype("float64")
    import rasterio
    from rasterio.warp import Resampling, reproject

    if info.crs is None or target.crs is None:
        raise InputError(
            f"{os.path.basename(path)!r} is on another grid than {os.path.basename(target.path)!r} "
            "and one of them has no CRS; assign a CRS or resample one onto the other's grid."
        )
    src = read_stack(path, bands=[band])[0]
    dst = np.full((target.height, target.width), np.nan, dtype="float32")
    with rasterio.Env():
        reproject(
            src,
            dst,
            src_transform=info.transform,
            src_crs=info.crs,
            src_nodata=np.nan,
            dst_transform=target.transform,
            dst_crs=target.crs,
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    return dst.astype("float64")


def incidence_grid(path: str, target: StackInfo) -> np.ndarray:
    """An incidence-angle raster (degrees, band 1) on `target`'s grid; checked to lie in (0, 90)."""
    from .stack import read_info

    info = read_info(path, require_dates=False)
    grid = read_band_on_grid(path, info, 0, target)
    check_incidence(grid, f"incidence raster {os.path.basename(path)!r}")
    return grid


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


def cross_orbit(
    path_a: str,
    info_a: StackInfo,
    incidence_a,
    path_b: str,
    info_b: StackInfo,
    incidence_b,
    max_days: float = 6,
    mode: str = "displacement",
    plot_points: int = 20000,
    progress: Callable[[float], None] | None = None,
    seed: int = 0,
) -> CrossOrbitResult:
    """Compare the vertical deformation of stack B with stack A on A's grid.

    `incidence_a` / `incidence_b`: a number (degrees) or an array on A's grid. Dates of A are
    paired with the nearest date of B within `max_days` (one to one). Both series are set to zero
    at the first pair. mode "displacement": every (pixel, later pair) is one sample of
    (vertical A, vertical B); mode "velocity": per pixel, the least-squares vertical rate (mm/yr)
    over the paired dates of each stack is one sample. Returns per-pair and overall r, slope and
    intercept of B = slope * A + intercept, RMSE and mean of B - A, and a random subsample for a plot.
    """
    if mode not in MODES:
        raise InputError(f"Unknown comparison mode {mode!r}; use one of {MODES}.")
    check_incidence(incidence_a, "incidence angle of stack A")
    check_incidence(incidence_b, "incidence angle of stack B")
    pairs = nearest_pairs(info_a.dates, info_b.dates, max_days, one_to_one=True)
    if len(pairs) < 2:
        ra = f"{info_a.dates[0]}..{info_a.dates[-1]}"
        rb = f"{info_b.dates[0]}..{info_b.dates[-1]}"
        raise InputError(
            f"Only {len(pairs)} date(s) of stack A ({ra}) have a date of stack B ({rb}) within "
            f"{max_days:g} days; at least two are needed. Raise MAX_DAYS or choose overlapping stacks."
        )
    rng = np.random.default_rng(seed)
    inc_a = np.asarray(incidence_a, dtype="float64")
    inc_b = np.asarray(incidence_b, dtype="float64")

    def vert_a(i):
        return los_to_vertical(read_stack(path_a, bands=[i])[0], inc_a)

    def vert_b(j):
        return los_to_vertical(read_band_on_grid(path_b, info_b, j, info_a), inc_b)

    total = PairStats()
    rows: list[dict] = []
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    date_pairs = [(info_a.dates[i], info_b.dates[j]) for i, j, _ in pairs]

    def keep_sample(x, y, quota):
        if x.size > quota:
            pick = rng.choice(x.size, size=quota, replace=False)
            x, y = x[pick], y[pick]
        xs.append(x)
        ys.append(y)

    if mode == "displacement":
        i0, j0, _ = pairs[0]
        ref_a, ref_b = vert_a(i0), vert_b(j0)
        if not np.any(np.isfinite(ref_a) & np.isfinite(ref_b)):
            raise InputError(
                "The two stacks share no coherent pixel (their footprints do not overlap, or every "
                "pixel is NaN in one of them at the reference date)."
            )
        quota = max(1, plot_points // (len(pairs) - 1))
        for k, (i, j, gap) in enumerate(pairs[1:], start=1):
            x = vert_a(i) - ref_a
            y = vert_b(j) - ref_b
            ok = np.isfinite(x) & np.isfinite(y)
            x, y = x[ok], y[ok]
            st = PairStats()
            st.add(x, y)
            total.add(x, y)
            rows.append(dict(date_a=info_a.dates[i], date_b=info_b.dates[j], gap_days=gap, **st.result()))
            keep_sample(x, y, quota)
            if progress:
                progress(100.0 * k / (len(pairs) - 1))
        reference = date_pairs[0]
    else:
        t_a = to_decimal_year([info_a.dates[i] for i, _, _ in pairs])
        t_b = to_decimal_year([info_b.dates[j] for _, j, _ in pairs])
        acc = {}
        for name in ("a", "b"):
            acc[name] = [np.zeros((info_a.height, info_a.width)) for _ in range(5)]  # n, st, stt, sv, stv
        for k, (i, j, _) in enumerate(pairs):
            for name, v, t in (("a", vert_a(i), t_a[k]), ("b", vert_b(j), t_b[k])):
                ok = np.isfinite(v)
                n, st_, stt, sv, stv = acc[name]
                n += ok
                st_ += np.where(ok, t, 0)
                stt += np.where(ok, t * t, 0)
                sv += np.where(ok, v, 0)
                stv += np.where(ok, t * v, 0)
            if progress:
                progress(100.0 * (k + 1) / len(pairs))
        rates = {}
        for name in ("a", "b"):
            n, st_, stt, sv, stv = acc[name]
            with np.errstate(invalid="ignore", divide="ignore"):
                den = n * stt - st_**2
                rate = (n * stv - st_ * sv) / den
            rate[(n < 2) | ~(np.abs(den) > 1e-12)] = np.nan
            rates[name] = rate
        ok = np.isfinite(rates["a"]) & np.isfinite(rates["b"])
        x, y = rates["a"][ok], rates["b"][ok]
        st = PairStats()
        st.add(x, y)
        total = st
        rows.append(dict(date_a=date_pairs[0][0], date_b=date_pairs[0][1], gap_days=None, **st.result()))
        keep_sample(x, y, plot_points)
        reference = None
    overall = total.result()
    if overall["n"] == 0:
        raise InputError("The two stacks share no coherent pixel at the paired dates.")
    rows.append(dict(date_a=None, date_b=None, gap_days=None, **overall))
    return CrossOrbitResult(
        mode=mode,
        pairs=date_pairs,
        reference=reference,
        rows=rows,
        overall=overall,
        sample_a=np.concatenate(xs) if xs else np.empty(0),
        sample_b=np.concatenate(ys) if ys else np.empty(0),
    )


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
