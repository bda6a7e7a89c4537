"""Vertical and east-west motion from two (or more) LOS stacks of different geometries (issue 19).

Geometry (right-looking SAR, LOS displacement positive toward the satellite)::

    d_LOS = U cos(theta) + sin(theta) (N sin(h) - E cos(h))

U up, E east, N north, theta the incidence angle from the vertical and h the heading of the flight
direction (degrees clockwise from north; Sentinel-1 about -10 ascending, 190 descending). Near-polar
orbits see the north component almost edge-on (its coefficient ``sin(theta) sin(h)`` is about 0.1),
so with ascending and descending stacks it cannot be resolved: **N is neglected** and, per pixel and
date, U and E are the least-squares solution of one equation per stack (exact with two stacks).
Their covariance ``(G^T W G)^-1`` (W = 1 / sigma_LOS^2) gives each component's standard error.

Dates: the stacks are acquired on different days. The common dates are the first stack's dates
inside the period all stacks cover, or a regular grid every `interval_days` over that period; every
series is interpolated linearly in time onto them (per pixel over its valid dates, never
extrapolated) and re-referenced to zero at the first common date. How far each common date lies
from a real acquisition of each stack is reported.

Stacks are read window by window on the first stack's grid (others through a WarpedVRT when their
grid differs: core.resample.OnGrid), windows sized from the memory budget (core.run.Run).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .dates import regular_dates, to_decimal_year, to_ordinal
from .errors import InputError
from .resample import OnGrid
from .run import QUIET, Run
from .stack import StackInfo, StackReader, budget_gdal_cache

DATE_MODES = ("first", "union")
DEFAULT_MAX_CONDITION = 10.0
S1_HEADING_ASC = -10.0
S1_HEADING_DESC = 190.0
STDERR_LABELS = ("up_stderr_per_mm_of_los_noise", "east_stderr_per_mm_of_los_noise")
RATE_LABELS = (
    "vertical_velocity_mm_per_yr",
    "vertical_velocity_stderr_mm_per_yr",
    "east_velocity_mm_per_yr",
    "east_velocity_stderr_mm_per_yr",
)

# ---------------------------------------------------------------- geometry (pure numpy)


def los_coefficients(theta_deg, heading_deg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cu, ce, cn) with d_LOS = cu U + ce E + cn N: cos(theta), -sin(theta) cos(h), sin(theta) sin(h)."""
    th = np.deg2rad(np.asarray(theta_deg, dtype="float64"))
    h = np.deg2rad(np.asarray(heading_deg, dtype="float64"))
    return np.cos(th), -np.sin(th) * np.cos(h), np.sin(th) * np.sin(h)


def los_from(up, east, north, theta_deg, heading_deg) -> np.ndarray:
    """The LOS displacement of a (U, E, N) motion seen at incidence `theta_deg`, heading `heading_deg`."""
    cu, ce, cn = los_coefficients(theta_deg, heading_deg)
    return cu * np.asarray(up) + ce * np.asarray(east) + cn * np.asarray(north)


def normal_matrix(geometries: Sequence[tuple], sigmas: Sequence[float] | None = None):
    """Entries (a, b, c) of G^T W G = [[a, b], [b, c]] for the U/E columns of G, one row per
    geometry (theta, heading), broadcast over arrays of angles; W = diag(1 / sigma^2)."""
    a = b = c = 0.0
    for k, (theta, heading) in enumerate(geometries):
        cu, ce, _ = los_coefficients(theta, heading)
        w = 1.0 if sigmas is None else 1.0 / float(sigmas[k]) ** 2
        a, b, c = a + w * cu * cu, b + w * cu * ce, c + w * ce * ce
    return np.asarray(a), np.asarray(b), np.asarray(c)


def condition_number(geometries: Sequence[tuple]) -> np.ndarray:
    """The condition number of G (U and E columns), per pixel where the angles are arrays:
    sqrt(largest / smallest eigenvalue of G^T G); inf for a singular system."""
    a, b, c = normal_matrix(geometries)
    half_tr, det = (a + c) / 2, a * c - b * b
    root = np.sqrt(np.maximum(half_tr**2 - det, 0.0))
    lo, hi = half_tr - root, half_tr + root
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lo > 1e-12 * np.maximum(hi, 1e-300), np.sqrt(hi / lo), np.inf)


def standard_errors(geometries: Sequence[tuple], sigmas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Standard errors of U and E when the LOS values of the geometries carry independent noise of
    standard deviations `sigmas` (mm): sqrt of the diagonal of (G^T W G)^-1."""
    a, b, c = normal_matrix(geometries, sigmas)
    with np.errstate(divide="ignore", invalid="ignore"):
        det = a * c - b * b
        return np.sqrt(c / det), np.sqrt(a / det)


def solve_up_east(
    los: Sequence[np.ndarray], geometries: Sequence[tuple], sigmas: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """U and E (N neglected) from LOS values `los[k]` of geometry `geometries[k]` = (theta, heading)
    in degrees (numbers or arrays broadcastable to the values): the (weighted) least-squares
    solution, exact with two geometries. NaN wherever one of the LOS values is NaN."""
    if len(los) != len(geometries) or len(los) < 2:
        raise ValueError("one LOS array per geometry, at least two")
    a, b, c = normal_matrix(geometries, sigmas)
    ru = re = 0.0
    for k, (d, (theta, heading)) in enumerate(zip(los, geometries, strict=True)):
        cu, ce, _ = los_coefficients(theta, heading)
        w = 1.0 if sigmas is None else 1.0 / float(sigmas[k]) ** 2
        d = np.asarray(d, dtype="float64")
        ru, re = ru + w * cu * d, re + w * ce * d
    with np.errstate(divide="ignore", invalid="ignore"):
        det = a * c - b * b
        return (c * ru - b * re) / det, (a * re - b * ru) / det


def check_condition(cond: float, limit: float, where: str = "") -> None:
    """Refuse a geometry whose condition number exceeds `limit` (near-identical geometries)."""
    if not cond <= limit:
        raise InputError(
            f"The viewing geometries are too similar to separate vertical from east-west motion: the "
            f"condition number of the LOS system is {cond:.3g}{where} (limit {limit:g}). Combine an "
            "ascending with a descending stack (headings about -10 and 190 degrees for Sentinel-1), "
            "check the INCIDENCE_* and HEADING_* values, or raise MAX_CONDITION to accept a noisier result."
        )


# ---------------------------------------------------------------- dates


def common_dates(
    dates: Sequence[Sequence[dt.date]], mode: str = "first", interval_days: int = 12
) -> list[dt.date]:
    """The dates to decompose at: inside the period every stack covers, the first stack's dates
    (`mode` "first") or a regular grid from the start of that period every `interval_days`
    ("union"). InputError when the stacks do not overlap in time or give fewer than two dates."""
    if mode not in DATE_MODES:
        raise InputError(f"Unknown DATES mode {mode!r}; use one of {DATE_MODES}.")
    start = max(d[0] for d in dates)
    end = min(d[-1] for d in dates)
    spans = ", ".join(f"{d[0]}..{d[-1]}" for d in dates)
    if end <= start:
        raise InputError(
            f"The stacks do not overlap in time ({spans}); choose stacks acquired over a common period."
        )
    if mode == "first":
        out = [d for d in dates[0] if start <= d <= end]
    else:
        out = regular_dates(start, end, int(interval_days))
    if len(out) < 2:
        raise InputError(
            f"The stacks overlap from {start} to {end} ({spans}), which gives {len(out)} common date(s); "
            "at least two are needed. Use a shorter INTERVAL_DAYS, the union of the dates, or longer stacks."
        )
    return out


def gap_days(targets: Sequence[dt.date], acquisitions: Sequence[dt.date]) -> np.ndarray:
    """Days from each target date to the nearest acquisition (0 on an acquisition)."""
    a = to_ordinal(acquisitions)
    return np.array([int(np.min(np.abs(a - d.toordinal()))) for d in targets], dtype="int64")


def interpolate_series(values: np.ndarray, src: Sequence[dt.date], dst: Sequence[dt.date]) -> np.ndarray:
    """`values` (len(src), ...) linearly interpolated in time at `dst`, per pixel over its valid
    dates, NaN where a date is not bracketed by valid dates (no extrapolation)."""
    from .rates import _fill_index, interp_at

    y = np.asarray(values, dtype="float64")
    shape = y.shape[1:]
    y = y.reshape(len(src), -1)
    t = to_ordinal(src)
    valid = np.isfinite(y)
    ff, bf = _fill_index(valid, True), _fill_index(valid, False)
    out = np.stack([interp_at(y, t, float(d.toordinal()), ff, bf) for d in dst])
    return out.reshape((len(dst), *shape))


# ---------------------------------------------------------------- the streamed decomposition


@dataclass
class Orbit:
    """One LOS stack and its geometry: `incidence` and `heading` in degrees, each a number or the
    path of a raster (band 1, read on the first stack's grid window by window)."""

    path: str
    info: StackInfo
    incidence: float | str
    heading: float | str
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or os.path.basename(self.path)


@dataclass
class Outputs:
    vertical: str
    east: str
    rates: str | None = None
    stderr: str | None = None  # per pixel: standard error of U and E per mm of LOS noise


@dataclass
class DecomposeResult:
    dates: list[dt.date]
    gaps: np.ndarray  # (orbits, dates): days to the nearest acquisition of each orbit
    condition: float  # the largest condition number over the pixels
    se_factor_up: float  # standard error of U per mm of LOS noise (median over pixels)
    se_factor_east: float
    valid_pixels: int
    resampled: list[bool] = field(default_factory=list)  # per orbit: read through a WarpedVRT

    @property
    def max_gap(self) -> int:
        return int(self.gaps.max()) if self.gaps.size else 0


# arrays of a window's size (float32 units x the largest date count) held at once: every orbit's
# window (float32) and its float64 interpolated copy with fill indexes (int64), U and E (float64),
# their float32 copies written, and the temporaries of the rates
DECOMPOSE_COPIES = 24


class _Geometry:
    """An orbit's incidence and heading for a window of the target grid (numbers or rasters)."""

    def __init__(self, orbit: Orbit, target: StackInfo, es: contextlib.ExitStack, run: Run):
        from .los import open_incidence

        self.resampled = False
        raster = isinstance(orbit.incidence, str)
        what = f"incidence of {orbit.name}" if raster else f"incidence angle of {orbit.name}"
        angles = open_incidence(es, orbit.incidence, target, what, run)
        self._inc = lambda win: np.asarray(angles.read(win), dtype="float64")
        if isinstance(orbit.heading, str):
            h = es.enter_context(OnGrid(orbit.heading, target))
            self._head = lambda win: h.read_band(win).astype("float64")
        else:
            heading = float(orbit.heading)
            if not np.isfinite(heading):
                raise InputError(f"The heading of {orbit.name} must be a number of degrees, not {heading}.")
            self._head = lambda win: np.asarray(heading, dtype="float64")
        self.constant = not isinstance(orbit.incidence, str) and not isinstance(orbit.heading, str)

    def __call__(self, win) -> tuple:
        return self._inc(win), self._head(win)


def _check_geometries(geoms, windows, limit: float, run: Run) -> tuple[float, float, float]:
    """The largest condition number over the pixels (refused above `limit`) and the median noise
    factors of U and E (standard error per mm of LOS noise)."""
    worst = 0.0
    fu, fe = [], []
    scan = [None] if all(g.constant for g in geoms) else windows
    for k, win in enumerate(scan):
        gw = [g(win) for g in geoms]
        cond = np.asarray(condition_number(gw))
        finite_geom = np.isfinite(sum(np.asarray(t) + np.asarray(h) for t, h in gw))
        cond = np.where(finite_geom, cond, np.nan)
        if np.isnan(cond).all():
            continue
        c = float(np.nanmax(cond))
        worst = max(worst, c)
        check_condition(c, limit, "" if win is None else " at some pixels")
        su, se = standard_errors(gw, [1.0] * len(gw))
        fu.append(float(np.nanmedian(su)))
        fe.append(float(np.nanmedian(se)))
        if win is not None:
            run.check_cancelled()
            run.progress(0.1 * (k + 1) / len(scan))
    if not fu:
        raise InputError("The incidence/heading rasters have no value over the first stack's grid.")
    return worst, float(np.median(fu)), float(np.median(fe))


def _writers(es, outputs: Outputs, info: StackInfo, dates, tags):
    from .stack import StackWriter

    def writer(path, labels, units, component):
        t = {**tags, "COMPONENT": component}
        return es.enter_context(
            StackWriter(path, labels, info.crs, info.transform, info.width, info.height, units, t)
        )

    up = writer(outputs.vertical, dates, "mm", "vertical")
    east = writer(outputs.east, dates, "mm", "east")
    rates = writer(outputs.rates, list(RATE_LABELS), "mm/yr", "velocity") if outputs.rates else None
    se = writer(outputs.stderr, list(STDERR_LABELS), "mm/mm", "stderr") if outputs.stderr else None
    return up, east, rates, se


@budget_gdal_cache
def decompose(
    orbits: Sequence[Orbit],
    outputs: Outputs,
    dates_mode: str = "first",
    interval_days: int = 12,
    max_condition: float = DEFAULT_MAX_CONDITION,
    run: Run = QUIET,
    max_bytes: int | None = None,
) -> DecomposeResult:
    """Write the vertical and east stacks (and optionally the rates) of `orbits` on the first
    orbit's grid; see the module doc. Nothing is written when an input is refused. Windows are
    sized from the memory budget of `run` (`max_bytes`, float32 bytes of one window, overrides
    it: tests); `run` reports progress and cancels."""
    from .rates import linear_velocity
    from .stack import iter_windows

    if len(orbits) < 2:
        raise InputError("At least two stacks of different viewing geometries are needed.")
    target = orbits[0].info
    dates = common_dates([o.info.dates for o in orbits], dates_mode, interval_days)
    gaps = np.stack([gap_days(dates, o.info.dates) for o in orbits])
    nb = max([len(dates)] + [o.info.count for o in orbits])
    windows = iter_windows(target, max_bytes, bands=nb, copies=DECOMPOSE_COPIES, run=run)
    t_years = to_decimal_year(dates)
    tags = {
        "DECOMPOSITION": "d_LOS = U cos(theta) + sin(theta) (N sin(h) - E cos(h)); N neglected",
        "REFERENCE_DATE": dates[0].isoformat(),
        "GAP_DAYS": ",".join(str(int(g)) for g in gaps.max(axis=0)),
        "STACKS": ",".join(o.name for o in orbits),
    }
    with contextlib.ExitStack() as es:
        geoms = [_Geometry(o, target, es, run) for o in orbits]
        cond, fu, fe = _check_geometries(geoms, windows, max_condition, run)
        first = es.enter_context(StackReader(orbits[0].path))
        grids = [None] + [es.enter_context(OnGrid(o.path, target, o.info)) for o in orbits[1:]]
        w_up, w_east, w_rates, w_se = _writers(es, outputs, target, dates, tags)
        valid = 0
        for k, win in enumerate(windows):
            run.check_cancelled()
            los = []
            for o, grid in zip(orbits, grids, strict=True):
                raw = first.read(win) if grid is None else grid.read(range(o.info.count), win)
                series = interpolate_series(raw, o.info.dates, dates)
                del raw
                los.append(series - series[:1])  # zero at the first common date
            gw = [g(win) for g in geoms]
            up, east = solve_up_east(los, gw)
            del los
            if w_se is not None:
                factors = np.broadcast_arrays(*standard_errors(gw, [1.0] * len(gw)), up[0])[:2]
                w_se.write(np.stack(factors).astype("float32"), window=win)
            valid += int(np.count_nonzero(np.isfinite(up[-1])))
            w_up.write(up.astype("float32"), window=win)
            w_east.write(east.astype("float32"), window=win)
            if w_rates is not None:
                vu, su = linear_velocity(up, t_years)
                ve, se = linear_velocity(east, t_years)
                w_rates.write(np.stack([vu, su, ve, se]).astype("float32"), window=win)
            run.progress(0.1 + 0.9 * (k + 1) / len(windows))
        if valid == 0:
            raise InputError(
                "The stacks share no coherent pixel on the common dates (their footprints do not "
                "overlap, or every pixel is NaN in one of them at the first common date "
                f"{dates[0]}); nothing was written."
            )
    return DecomposeResult(
        dates=dates,
        gaps=gaps,
        condition=cond,
        se_factor_up=fu,
        se_factor_east=fe,
        valid_pixels=valid,
        resampled=[g is not None and not g.same for g in grids],
    )
