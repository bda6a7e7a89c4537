"""Deformation rates of a stack (paper Fig. 9 and 12), NaN-aware and streamed by row windows.

- ``linear``: per pixel, least-squares line d(t) = a + v t on the real acquisition dates (t in
  decimal years); band 1 = v (units/yr), band 2 = its standard error
  ``sqrt(SSR / (n - 2) / sum((t - mean t)^2))`` (NaN with fewer than 3 valid dates).
- ``annual``: one band per calendar year Y = mean rate over the part of Y the series covers,
  ``(d(end) - d(start)) / (end - start)`` with d linearly interpolated in time at 1 January (never
  extrapolated). For a fully covered year this is the deformation accumulated during Y, so the
  annual bands of full years sum to the difference between the first and last 1 January.

Pixels with NaN at some dates use their valid dates only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dates import to_decimal_year
from .errors import InputError
from .los import los_to_vertical, open_incidence
from .run import QUIET, Run
from .stack import StackWriter, budget_gdal_cache, iter_windows, read_info, read_windows

MODES = ("linear", "annual")


def linear_velocity(values: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and its standard error along axis 0 of `values` (dates, ...), NaN-aware.

    `t` in years (decimal); returns (velocity, stderr) with the shape of ``values[0]``.
    """
    y = np.asarray(values, dtype="float64")
    t = np.asarray(t, dtype="float64")
    if y.shape[0] != t.size:
        raise ValueError(f"{y.shape[0]} dates of values but {t.size} times")
    shape = y.shape[1:]
    y = y.reshape(t.size, -1)
    tc = (t - t.mean())[:, None]  # centred: better conditioned sums
    m = np.isfinite(y)
    n = m.sum(axis=0).astype("float64")
    y0 = np.where(m, y, 0.0)
    tm = np.where(m, tc, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        st, sy = tm.sum(0), y0.sum(0)
        t_bar, y_bar = st / n, sy / n
        dt_ = np.where(m, tc - t_bar, 0.0)
        sxx = (dt_ * dt_).sum(0)
        sxy = (dt_ * np.where(m, y - y_bar, 0.0)).sum(0)
        v = sxy / sxx
        resid = np.where(m, y - y_bar - v * dt_, 0.0)
        ssr = (resid * resid).sum(0)
        se = np.sqrt(ssr / (n - 2) / sxx)
    v = np.where((n >= 2) & (sxx > 0), v, np.nan)
    se = np.where((n >= 3) & (sxx > 0), se, np.nan)
    return v.reshape(shape), se.reshape(shape)


def _fill_index(valid: np.ndarray, forward: bool) -> np.ndarray:
    """For each date index and pixel, the index of the last (forward) / next (backward) valid date."""
    d = valid.shape[0]
    ar = np.arange(d)[:, None]
    if forward:
        idx = np.where(valid, ar, -1)
        return np.maximum.accumulate(idx, axis=0)
    idx = np.where(valid, ar, d)
    return np.minimum.accumulate(idx[::-1], axis=0)[::-1]


def interp_at(values: np.ndarray, t: np.ndarray, tb: float, ffill=None, bfill=None) -> np.ndarray:
    """Per pixel, `values` (dates, n) linearly interpolated at time `tb` between the nearest valid
    dates around it; NaN where `tb` is not bracketed by valid dates."""
    valid = np.isfinite(values)
    ffill = _fill_index(valid, True) if ffill is None else ffill
    bfill = _fill_index(valid, False) if bfill is None else bfill
    d, n = values.shape
    lo = int(np.searchsorted(t, tb, side="right")) - 1
    hi = int(np.searchsorted(t, tb, side="left"))
    if lo < 0 or hi >= d:
        return np.full(n, np.nan)
    prev, nxt = ffill[lo], bfill[hi]
    ok = (prev >= 0) & (nxt < d)
    cols = np.arange(n)
    p, q = np.where(ok, prev, 0), np.where(ok, nxt, 0)
    vp, vq = values[p, cols], values[q, cols]
    tp, tq = t[p], t[q]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(tq > tp, (tb - tp) / (tq - tp), 0.0)
    out = vp + w * (vq - vp)
    return np.where(ok, out, np.nan)


@dataclass(frozen=True)
class YearSpan:
    year: int
    start: float  # decimal years
    end: float

    @property
    def coverage(self) -> float:
        return self.end - self.start


def year_spans(dates: Sequence[dt.date]) -> list[YearSpan]:
    """The calendar years the series touches, each clipped to the series (zero-length ones dropped)."""
    t = to_decimal_year(dates)
    spans = []
    for year in range(dates[0].year, dates[-1].year + 1):
        a, b = max(float(year), t[0]), min(float(year + 1), t[-1])
        if b > a:
            spans.append(YearSpan(year, a, b))
    return spans


def annual_rates(values: np.ndarray, t: np.ndarray, spans: Sequence[YearSpan]) -> np.ndarray:
    """(len(spans), ...) mean rate over each span, per pixel, NaN-aware."""
    y = np.asarray(values, dtype="float64")
    shape = y.shape[1:]
    y = y.reshape(t.size, -1)
    valid = np.isfinite(y)
    ff, bf = _fill_index(valid, True), _fill_index(valid, False)
    bounds = sorted({s.start for s in spans} | {s.end for s in spans})
    at = {b: interp_at(y, t, b, ff, bf) for b in bounds}
    out = np.stack([(at[s.end] - at[s.start]) / s.coverage for s in spans])
    return out.reshape((len(spans), *shape))


def rate_labels(mode: str, dates: Sequence[dt.date], units: str, vertical: bool) -> list[str]:
    pre = "vertical_" if vertical else ""
    u = f"{units}_per_yr"
    if mode == "linear":
        return [f"{pre}velocity_{u}", f"{pre}velocity_stderr_{u}"]
    return [f"{pre}rate_{s.year}_{u}" for s in year_spans(dates)]


# arrays of a window's size (float32 units) that the rate computation holds at once: the window,
# its float64 copy and the masked/centred float64 temporaries of linear_velocity (annual_rates
# needs fewer)
RATE_COPIES = 16


@dataclass(frozen=True)
class _Plan:
    """What every window of a rate computation shares: the mode, the times (decimal years), the
    year spans (annual) and whether the rates are converted to vertical."""

    mode: str
    t: np.ndarray
    spans: list[YearSpan]
    vertical: bool

    def rates(self, data: np.ndarray, theta) -> tuple[np.ndarray, np.ndarray]:
        """The bands written for one window of the stack, and those of them that are rates."""
        if self.mode == "linear":
            out = np.stack(linear_velocity(data, self.t))
        else:
            out = annual_rates(data, self.t, self.spans)
        if self.vertical:
            out = los_to_vertical(out, theta)
        return out, (out[:1] if self.mode == "linear" else out)


@budget_gdal_cache
def deformation_rate(
    path: str,
    out_path: str,
    mode: str = "linear",
    vertical: bool = False,
    incidence: float | None = None,
    incidence_path: str | None = None,
    run: Run = QUIET,
    max_bytes: int | None = None,
) -> dict:
    """Write the rate raster of the stack at `path` to `out_path` (see the module doc).

    With `vertical`, rates are divided by cos(incidence) (constant `incidence` in degrees, or the
    `incidence_path` raster, resampled to the stack's grid when needed).
    Streams the stack in windows sized from the memory budget of `run` (`max_bytes`, the float32
    bytes of one window, overrides it: tests); `run` reports progress and cancels.
    Returns a summary: labels, min/max of the rate bands, whether the incidence was resampled,
    and for ``annual`` the years and their coverage (fraction of the year).
    """
    if mode not in MODES:
        raise InputError(f"MODE must be one of {MODES}, not {mode!r}.")
    info = read_info(path)
    if info.count < 2:
        raise InputError(f"INPUT: a rate needs at least two dates; the stack has {info.count}.")
    plan = _Plan(
        mode, to_decimal_year(info.dates), year_spans(info.dates) if mode == "annual" else [], vertical
    )
    labels = rate_labels(mode, info.dates, info.units, vertical)
    lo, hi = np.inf, -np.inf
    windows = iter_windows(info, max_bytes, copies=RATE_COPIES, run=run)
    tags = {"RATE_MODE": mode, "VERTICAL": "yes" if vertical else "no"}
    if mode == "annual":
        tags["YEAR_COVERAGE"] = ",".join(f"{s.year}:{s.coverage:.4f}" for s in plan.spans)
    with contextlib.ExitStack() as es:
        angles = None
        if vertical:
            what = "INCIDENCE_RASTER" if incidence_path else "INCIDENCE"
            angles = open_incidence(es, incidence_path or incidence, info, what, run)
        grid = (info.crs, info.transform, info.width, info.height)
        w = es.enter_context(StackWriter(out_path, labels, *grid, units=f"{info.units}/yr", tags=tags))
        for k, (win, block) in enumerate(read_windows(path, windows)):
            run.check_cancelled()
            out, rate_bands = plan.rates(block, angles.read(win) if angles else None)
            if np.isfinite(rate_bands).any():
                lo = min(lo, float(np.nanmin(rate_bands)))
                hi = max(hi, float(np.nanmax(rate_bands)))
            w.write(out.astype("float32"), window=win)
            run.progress((k + 1) / len(windows))
    return {
        "labels": labels,
        "min": lo if np.isfinite(lo) else float("nan"),
        "max": hi if np.isfinite(hi) else float("nan"),
        "resampled": angles is not None and angles.resampled,
        "years": [(s.year, s.coverage) for s in plan.spans],
    }
