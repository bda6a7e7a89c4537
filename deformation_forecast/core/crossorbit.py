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

from . import validity
from .dates import to_decimal_year
from .errors import InputError
from .los import los_to_vertical  # dv = dLOS / cos(theta), shared with `losvertical`
from .stack import StackInfo, budget_gdal_cache, read_stack, same_grid

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
    validity.check_angle_range(float(fin.min()), float(fin.max()), f"The {what}")


class OnGrid:
    """Bands of raster `path` read window by window on the grid of `target`: directly when the
    grids agree, else through a rasterio WarpedVRT (bilinear; NaN outside `path`'s footprint).
    A context manager; ``read(bands, window)`` gives float32 (bands, rows, cols), bands 0-based."""

    def __init__(self, path: str, info: StackInfo, target: StackInfo):
        import rasterio
        from rasterio.vrt import WarpedVRT
        from rasterio.warp import Resampling

        self.same = same_grid(info, target)
        if not self.same and (info.crs is None or target.crs is None):
            raise InputError(
                f"{os.path.basename(path)!r} is on another grid than {os.path.basename(target.path)!r} "
                "and one of them has no CRS; assign a CRS or resample one onto the other's grid."
            )
        self._src = rasterio.open(path)
        self._nodata = self._src.nodata
        self._ds = self._src
        if not self.same:
            self._ds = WarpedVRT(
                self._src,
                crs=target.crs,
                transform=target.transform,
                width=target.width,
                height=target.height,
                resampling=Resampling.bilinear,
                src_nodata=validity.warp_nodata(self._src),
                nodata=np.nan,
                dtype="float32",
            )

    def read(self, bands: Sequence[int], window=None) -> np.ndarray:
        idx = [b + 1 for b in bands]
        arr = self._ds.read(idx, window=window, out_dtype="float32")
        if self.same:  # nodata, GDAL masks, undeclared sentinels, m/cm -> mm (core.validity)
            return validity.clean_block(arr, self._src, idx, window=window)
        arr = validity.mask_sentinels(arr, self._src.name)
        return validity.to_mm(arr, self._src, idx)

    def close(self) -> None:
        if self._ds is not self._src:
            self._ds.close()
        self._src.close()

    def __enter__(self) -> OnGrid:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_band_on_grid(path: str, info: StackInfo, band: int, target: StackInfo) -> np.ndarray:
    """Band `band` (0-based) of raster `path` on the grid of `target` (bilinear where the grids
    differ; NaN outside `path`'s footprint), float64 (rows, cols). A whole band: the comparison
    itself reads window by window (:class:`OnGrid`)."""
    with OnGrid(path, info, target) as g:
        return g.read([band])[0].astype("float64")


def incidence_grid(path: str, target: StackInfo) -> str:
    """An incidence-angle raster (degrees, band 1) for `target`'s grid, checked to lie in (0, 90)
    in one windowed pass; returns `path` (the comparison reads it window by window)."""
    from .los import IncidenceGrid

    with IncidenceGrid(path, target, what=f"incidence raster {os.path.basename(path)!r}") as g:
        g.check()
    return path


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


@budget_gdal_cache
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
    mb: float | None = None,
    max_bytes: int | None = None,
) -> CrossOrbitResult:
    """Compare the vertical deformation of stack B with stack A on A's grid.

    `incidence_a` / `incidence_b`: a number (degrees), the path of an incidence raster (read on
    A's grid window by window), or an array on A's grid. Dates of A are paired with the nearest
    date of B within `max_days` (one to one). Both series are set to zero at the first pair. mode
    "displacement": every (pixel, later pair) is one sample of (vertical A, vertical B); mode
    "velocity": per pixel, the least-squares vertical rate (mm/yr) over the paired dates of each
    stack is one sample. Returns per-pair and overall r, slope and intercept of
    B = slope * A + intercept, RMSE and mean of B - A, and a random subsample for a plot.

    Both stacks are read window by window on A's grid (B through a WarpedVRT when its grid
    differs), windows sized from the memory budget `mb` (core.budget; `max_bytes`, float32 bytes of
    one window of A's paired dates, overrides it); statistics combine exactly across windows and
    the plot subsample does not depend on the windows (core.streaming).
    """
    import contextlib

    from .los import IncidenceGrid
    from .stack import iter_windows, window_slices
    from .streaming import BottomK, hash_keys, pixel_index

    if mode not in MODES:
        raise InputError(f"Unknown comparison mode {mode!r}; use one of {MODES}.")
    for inc, label in (
        (incidence_a, "incidence angle of stack A"),
        (incidence_b, "incidence angle of stack B"),
    ):
        if not isinstance(inc, str):
            check_incidence(inc, label)
    pairs = nearest_pairs(info_a.dates, info_b.dates, max_days, one_to_one=True)
    if len(pairs) < 2:
        ra = f"{info_a.dates[0]}..{info_a.dates[-1]}"
        rb = f"{info_b.dates[0]}..{info_b.dates[-1]}"
        raise InputError(
            f"Only {len(pairs)} date(s) of stack A ({ra}) have a date of stack B ({rb}) within "
            f"{max_days:g} days; at least two are needed. Raise MAX_DAYS or choose overlapping stacks."
        )
    ia = [i for i, _, _ in pairs]
    jb = [j for _, j, _ in pairs]
    npairs = len(pairs)
    date_pairs = [(info_a.dates[i], info_b.dates[j]) for i, j, _ in pairs]
    windows = iter_windows(info_a, max_bytes, bands=npairs, copies=CROSS_COPIES, mb=mb)

    with contextlib.ExitStack() as stack:

        def theta_of(inc, what):
            if isinstance(inc, str):
                g = stack.enter_context(IncidenceGrid(inc, info_a, what=what)).check(mb)
                return lambda win: g.read(win).astype("float64")
            arr = np.asarray(inc, dtype="float64")
            if arr.ndim == 0:
                return lambda win: arr
            return lambda win: arr[window_slices(win)]

        th_a = theta_of(incidence_a, "INCIDENCE_RASTER (stack A)")
        th_b = theta_of(incidence_b, "INCIDENCE_RASTER_B (stack B)")
        b_grid = stack.enter_context(OnGrid(path_b, info_b, info_a))

        def vertical(win):
            va = los_to_vertical(read_stack(path_a, window=win, bands=ia), th_a(win))
            vb = los_to_vertical(b_grid.read(jb, win), th_b(win))
            return va, vb

        if mode == "displacement":
            per_pair = [PairStats() for _ in range(npairs - 1)]
            quota = max(1, plot_points // (npairs - 1))
            samples = [BottomK(quota) for _ in range(npairs - 1)]
            shared_reference = False
            for k, win in enumerate(windows):
                va, vb = vertical(win)
                ref_a, ref_b = va[0], vb[0]
                shared_reference |= bool(np.any(np.isfinite(ref_a) & np.isfinite(ref_b)))
                pix = pixel_index(win, info_a.width)
                for p in range(1, npairs):
                    x = va[p] - ref_a
                    y = vb[p] - ref_b
                    ok = np.isfinite(x) & np.isfinite(y)
                    x, y = x[ok], y[ok]
                    per_pair[p - 1].add(x, y)
                    samples[p - 1].add(hash_keys(pix[ok], seed * 1_000_003 + p), x=x, y=y)
                del va, vb
                if progress:
                    progress(100.0 * (k + 1) / len(windows))
            if not shared_reference:
                raise InputError(
                    "The two stacks share no coherent pixel (their footprints do not overlap, or every "
                    "pixel is NaN in one of them at the reference date)."
                )
            rows: list[dict] = []
            total = PairStats()
            for p, st in enumerate(per_pair, start=1):
                (i, j, gap) = pairs[p]
                rows.append(dict(date_a=info_a.dates[i], date_b=info_b.dates[j], gap_days=gap, **st.result()))
                total.merge(st)
            reference = date_pairs[0]
        else:
            t_a = to_decimal_year([info_a.dates[i] for i in ia])[:, None, None]
            t_b = to_decimal_year([info_b.dates[j] for j in jb])[:, None, None]
            total = PairStats()
            samples = [BottomK(plot_points)]
            for k, win in enumerate(windows):
                va, vb = vertical(win)
                rates = [_rate(va, t_a), _rate(vb, t_b)]
                del va, vb
                ok = np.isfinite(rates[0]) & np.isfinite(rates[1])
                x, y = rates[0][ok], rates[1][ok]
                total.add(x, y)
                samples[0].add(hash_keys(pixel_index(win, info_a.width)[ok], seed), x=x, y=y)
                if progress:
                    progress(100.0 * (k + 1) / len(windows))
            rows = [dict(date_a=date_pairs[0][0], date_b=date_pairs[0][1], gap_days=None, **total.result())]
            reference = None
    overall = total.result()
    if overall["n"] == 0:
        raise InputError("The two stacks share no coherent pixel at the paired dates.")
    rows.append(dict(date_a=None, date_b=None, gap_days=None, **overall))
    picked = [s.result() for s in samples]
    return CrossOrbitResult(
        mode=mode,
        pairs=date_pairs,
        reference=reference,
        rows=rows,
        overall=overall,
        sample_a=np.concatenate([p["x"] for p in picked if p]) if any(picked) else np.empty(0),
        sample_b=np.concatenate([p["y"] for p in picked if p]) if any(picked) else np.empty(0),
    )


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
