"""Deterministic sample scene modelled on the Jinchuan mining area of He et al. 2022.

The scene is synthetic but built to exercise every algorithm of the plugin the way the paper's data
would: 156 ascending Sentinel-1 acquisitions from 2014-10-14 to 2021-04-16 on the 12-day grid with
gaps (sparser before autumn 2016), three subsidence areas (Longshou, second western, third eastern)
with different onsets and rates, the second western one reaching -1 m cumulative LOS at its centre
(about -1.1 m at its deepest pixel, on the soft-lithology side; the paper reports -1.17 m), a slowly
growing uplift east of Longshou, faults that bound the bowls and one (F6) that cuts the Longshou bowl
with a visible step, three lithological units that respond differently (the soft one subsides more),
spatially correlated atmospheric noise, incoherent (NaN) pixels where the gradients are steepest
plus a few random ones, leveling benchmarks, profile lines I-III, a descending stack over 2018-2020
and the noise-free truth, including two years beyond the last acquisition to score forecasts.

Model (purely vertical motion, LOS = vertical * cos(incidence)):

- each area is an elliptical Gaussian bowl (Peck's formula, paper §IV-A, Fig. 11) whose depth since its onset
  is ``amp * F(s)``, ``s`` = softplus(t - onset) years, ``F`` a fast transient plus a slowly
  decelerating term (the rate slows 2015-2017, then is nearly uniform with a slow deceleration),
  and whose width grows with the depth (the bowls expand);
- a fault multiplies its area's bowl by a factor on one side (a near-hard step at the fault line):
  bounding faults (F3, F16, F17, F23, F1) leave a small factor outside, F6 cuts Longshou (0.55);
- lithology multiplies the whole response: hard gneiss 0.75, ultrabasic rock 1.0, soft
  marble/dolomite 1.3 (smooth over ~40 m at the unit contacts);
- cumulative displacement is relative to the first acquisition of each orbit (band 1 is zero).

The deformation truth, the geometry, the acquisition dates and the benchmark positions do not
depend on `seed`; the seed drives the noise (atmosphere, per-pixel noise, benchmark errors) and the
random incoherent pixels. The same seed gives the same pixel values (on the same numpy/scipy build:
the atmosphere is filtered with scipy's FFT). Band i of a stack draws its noise from
``default_rng([seed, stream, orbit, i])``, so the values do not depend on the order of generation.

Files written into OUTDIR by `make_sample_scene` (keys of the returned dict in brackets):

- ``stack_asc.tif`` [stack_asc]: observed ascending LOS, mm, 156 irregular dates, NaN = incoherent.
- ``truth_asc.tif`` [truth_asc]: noise-free ascending LOS, mm, same 156 dates, no NaN.
- ``truth_future_asc.tif`` [truth_future_asc]: noise-free ascending LOS, mm, the 61 regular
  12-day steps after 2021-04-16 (2021-04-28 .. 2023-04-17), still relative to 2014-10-14.
- ``observed_future_asc.tif`` [observed_future_asc]: the future as it would be observed, mm, the same
  61 dates: truth_future_asc + the scene's own noise model (atmosphere + white noise) drawn for
  these dates as bands 156 .. 216 of the ascending orbit, NaN where stack_asc is incoherent. What a
  forecast's prediction interval must hold.
- ``stack_desc.tif`` [stack_desc]: observed descending LOS, mm, 71 dates 2018-03-27 .. 2020-10-06,
  relative to 2018-03-27, own noise and NaN mask.
- ``incidence_asc.tif`` / ``incidence_desc.tif`` [incidence_asc, incidence_desc]: incidence angle,
  degrees, one band (34.17 +- 0.7 ascending, 41.42 +- 0.7 descending, varying along range).
  Noise-free vertical = truth_asc / cos(incidence_asc).
- ``benchmarks.csv`` [benchmarks_csv] and ``benchmarks.geojson`` [benchmarks]: leveling benchmarks,
  fields ``id, x, y, D20141103 .. D20170903`` (monthly surveys), cumulative vertical displacement in
  mm since 2014-10-14 (the true vertical at the benchmark + ~2.5 mm noise).
- ``profiles.geojson`` [profiles]: LineStrings, field ``name`` = I (NW-SE across the three areas),
  II (Longshou, across fault F6 and the uplift), III (second western).
- ``faults.geojson`` [faults]: LineStrings, fields ``name`` (F1, F3, F6, F16, F17, F23) and ``role``.
- ``lithology.geojson`` [lithology]: Polygons covering the scene, fields ``unit`` (gneiss,
  ultrabasic, marble), ``strength`` (hard, medium, soft), ``factor``.
- ``scene.json`` [scene]: metadata: grid, dates, areas (centres, rates, peaks), fault steps (mm),
  lithology unit means, noise, NaN fractions, seeds, and what each file is.

All rasters and vectors are in EPSG:32647 (UTM 47N) with 20 m pixels, centred near 102.2E 38.5N;
``size`` pixels square (the geometry scales with the scene). Rasters are written one band at a time
with `StackWriter`, so memory grows with one band (a few full-size 2-D arrays), not with the stack.

With ``horizontal=True`` (CLI ``--horizontal``) the scene also gets a 3-D model, in extra files
only (the files above stay the same): the flanks of the bowls move horizontally toward their
centres (``(E, N) = -HORIZONTAL_M * grad(U)``), seen by both orbits through
``d_LOS = U cos(theta) + sin(theta) (N sin(h) - E cos(h))`` with headings -13 / 193 degrees:
``stack_asc_3d.tif`` / ``stack_desc_3d.tif`` (observed, same noise and NaN as the plain stacks),
``truth_up.tif`` / ``truth_east.tif`` (noise-free U and E at the ascending dates since 2014-10-14).

CLI: ``python -m deformation_forecast.core.sample OUTDIR [--size N] [--seed S] [--horizontal]``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import scipy.fft
from affine import Affine

from .dates import format_date
from .run import QUIET, Run
from .stack import StackWriter, atomic_path, write_stack

# ---------------------------------------------------------------------------------------------
# constants of the scene

CRS_EPSG = "EPSG:32647"
PIXEL_SIZE = 20.0  # metres
CENTRE_XY = (779060.0, 4266140.0)  # UTM 47N near 102.2E 38.5N (Jinchuan)
DEFAULT_SIZE = 200

ASC_START = dt.date(2014, 10, 14)
ASC_END = dt.date(2021, 4, 16)
ASC_COUNT = 156
DESC_START = dt.date(2018, 3, 27)
DESC_SLOTS = 78  # 12-day slots from DESC_START, the last one 2020-10-06
DESC_COUNT = 71
FUTURE_COUNT = 61
INTERVAL_DAYS = 12
SURVEY_START = dt.date(2014, 11, 3)
SURVEY_END = dt.date(2017, 9, 3)

ASC_INCIDENCE = 34.17  # degrees, paper §II
DESC_INCIDENCE = 41.42  # degrees, paper §II
INCIDENCE_SPREAD = 1.2  # degrees across the scene (along range)
ASC_RANGE_AZIMUTH = 77.0  # direction of increasing range (deg from north), right-looking ascending
DESC_RANGE_AZIMUTH = 283.0

# right-looking: the range direction is 90 degrees clockwise from the flight direction (heading)
ASC_HEADING = ASC_RANGE_AZIMUTH - 90.0  # -13
DESC_HEADING = DESC_RANGE_AZIMUTH - 90.0  # 193
# horizontal motion of the optional 3-D model: H = -HORIZONTAL_M * grad(U) of the vertical field
# smoothed over HORIZONTAL_SMOOTH_M (the flanks move toward the bowl centres, ~0.3 of the depth)
HORIZONTAL_M = 200.0
HORIZONTAL_SMOOTH_M = 60.0

ATMO_STD = {"asc": 3.0, "desc": 3.5}  # mm, typical per-date std of the correlated atmosphere
ATMO_CORR_M = 400.0  # metres, std of the Gaussian filter applied to white noise
WHITE_STD = 1.0  # mm, per-pixel noise
GRAD_PERCENTILE = 97.5  # pixels above this gradient percentile are incoherent ...
GRAD_FLOOR = 2.0  # ... if their gradient also exceeds this many mm per pixel
RANDOM_NAN = 0.005  # fraction of random incoherent pixels
BENCHMARK_STD = 2.5  # mm
FAULT_WIDTH_M = 3.0  # width of the sigmoid that makes a fault step
LITHO_WIDTH_M = 40.0

# seed streams (np.random.default_rng([seed, stream, ...]))
_S_ATMO, _S_WHITE, _S_AMPL, _S_NAN, _S_BENCH = 1, 2, 3, 4, 5
_ORBIT_ID = {"asc": 0, "desc": 1}
_DATES_SEED = 20141014  # the acquisition calendar is fixed, whatever the seed


@dataclass(frozen=True)
class Area:
    name: str
    key: str
    centre: tuple[float, float]  # normalized (u east, v north) in [0, 1]
    sigma: tuple[float, float]  # normalized, along the rotated axes
    rotation_deg: float  # anticlockwise from east
    onset_years: float  # years after ASC_START (negative: active before the first acquisition)
    peak_los_mm: float  # ascending LOS at the centre on ASC_END, relative to ASC_START (signed)
    fast_weight: float  # share of the initial rate that decays with tau_fast
    tau_fast: float
    tau_slow: float
    growth: float  # relative growth of the width at ASC_END


@dataclass(frozen=True)
class Fault:
    name: str
    p0: tuple[float, float]  # normalized
    p1: tuple[float, float]
    role: str
    # (area key, attenuated side "left"/"right" of p0->p1, factor on that side)
    effects: tuple[tuple[str, str, float], ...] = ()


AREAS = (
    Area("Longshou", "longshou", (0.22, 0.68), (0.075, 0.055), 30.0, -2.0, -450.0, 0.45, 1.2, 7.0, 0.25),
    Area("Second western", "second_western", (0.52, 0.47), (0.085, 0.075), -20.0, -0.8, -1000.0, 0.5, 1.0,
         7.0, 0.35),
    Area("Third eastern", "third_eastern", (0.80, 0.27), (0.06, 0.05), 80.0, 1.7, -260.0, 0.3, 1.0, 3.0, 0.3),
    Area("Uplift east of Longshou", "uplift", (0.42, 0.78), (0.045, 0.04), 0.0, 0.9, 80.0, 0.0, 1.0, 40.0,
         0.8),
)  # fmt: skip

FAULTS = (
    Fault("F1", (0.0, 0.12), (1.0, 0.20), "major fault zone; bounds the third eastern area to the south",
          (("third_eastern", "right", 0.3),)),
    Fault("F3", (0.02, 0.74), (0.30, 0.46), "bounds the Longshou area to the southwest",
          (("longshou", "right", 0.2),)),
    Fault("F6", (0.19, 0.48), (0.31, 0.88), "cuts the Longshou bowl: visible step (east side 0.55)",
          (("longshou", "right", 0.55),)),
    Fault("F16", (0.36, 0.64), (0.72, 0.59), "bounds the second western area to the north",
          (("second_western", "left", 0.35),)),
    Fault("F17", (0.70, 0.08), (0.74, 0.44), "bounds the third eastern area to the west",
          (("third_eastern", "left", 0.25),)),
    Fault("F23", (0.88, 0.08), (0.90, 0.44), "bounds the third eastern area to the east",
          (("third_eastern", "right", 0.25),)),
)  # fmt: skip

# lithology: hard below B1, medium between, soft above B2; B = (a, b): v = a + b * u
LITHO_UNITS = (
    ("gneiss", "hard", 0.75, "gneiss and compound gneiss (feldspar, quartz, mica): high strength"),
    ("ultrabasic", "medium", 1.0, "ore-bearing ultrabasic rock mass"),
    ("marble", "soft", 1.3, "gneiss group rich in dolomite and calcite marble, loess cover: low strength"),
)
LITHO_BOUNDARIES = ((0.40, -0.38), (0.874, -0.70))

PROFILES = (
    ("I", (0.06, 0.80), (0.94, 0.17)),
    ("II", (0.08, 0.62), (0.50, 0.82)),
    ("III", (0.45, 0.30), (0.58, 0.63)),
)
BENCHMARKS_PER_PROFILE = {"I": 12, "II": 7, "III": 7}


# ---------------------------------------------------------------------------------------------
# dates


def _pick_slots(rng: np.random.Generator, slots: np.ndarray, drop: int, max_run: int) -> np.ndarray:
    """Indexes of `slots` to drop (never the first or the last), no more than `max_run` in a row."""
    interior = slots[1:-1]
    for _ in range(1000):
        gone = np.sort(rng.choice(interior, size=drop, replace=False))
        run = longest = 1
        for a, b in zip(gone, gone[1:], strict=False):
            run = run + 1 if b == a + 1 else 1
            longest = max(longest, run)
        if drop == 0 or longest <= max_run:
            return gone
    raise RuntimeError("could not place the acquisition gaps")  # pragma: no cover


def asc_dates() -> list[dt.date]:
    """The 156 ascending acquisitions: 12-day grid 2014-10-14 .. 2021-04-16 with gaps, sparser
    before 2016-10 (62 % of the early slots kept, 87 % of the later ones)."""
    n_slots = (ASC_END - ASC_START).days // INTERVAL_DAYS + 1  # 199
    grid = [ASC_START + dt.timedelta(days=INTERVAL_DAYS * k) for k in range(n_slots)]
    split = next(k for k, d in enumerate(grid) if d >= dt.date(2016, 10, 1))
    rng = np.random.default_rng([_DATES_SEED, 0])
    drop_total = n_slots - ASC_COUNT
    drop_early = 25
    early = _pick_slots(rng, np.arange(0, split + 1), drop_early, 3)
    late = _pick_slots(rng, np.arange(split, n_slots), drop_total - drop_early, 2)
    gone = set(early.tolist()) | set(late.tolist())
    return [d for k, d in enumerate(grid) if k not in gone]


def desc_dates() -> list[dt.date]:
    """The 71 descending acquisitions: 12-day grid from 2018-03-27, 7 gaps."""
    grid = [DESC_START + dt.timedelta(days=INTERVAL_DAYS * k) for k in range(DESC_SLOTS)]
    rng = np.random.default_rng([_DATES_SEED, 1])
    gone = set(_pick_slots(rng, np.arange(DESC_SLOTS), DESC_SLOTS - DESC_COUNT, 2).tolist())
    return [d for k, d in enumerate(grid) if k not in gone]


def future_dates() -> list[dt.date]:
    """The 61 regular 12-day steps after the last acquisition (about two years)."""
    return [ASC_END + dt.timedelta(days=INTERVAL_DAYS * k) for k in range(1, FUTURE_COUNT + 1)]


def survey_dates() -> list[dt.date]:
    """Monthly leveling surveys (the 3rd of each month), 2014-11-03 .. 2017-09-03."""
    out, y, m = [], SURVEY_START.year, SURVEY_START.month
    while dt.date(y, m, SURVEY_START.day) <= SURVEY_END:
        out.append(dt.date(y, m, SURVEY_START.day))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _years(d: dt.date | Sequence[dt.date]) -> np.ndarray:
    ds = [d] if isinstance(d, dt.date) else list(d)
    return np.array([(x - ASC_START).days / 365.25 for x in ds], dtype="float64")


# ---------------------------------------------------------------------------------------------
# the deformation model


def _sig(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(t: np.ndarray, onset: float, w: float = 0.15) -> np.ndarray:
    return w * np.logaddexp(0.0, (t - onset) / w)


def _depth(area: Area, t: np.ndarray) -> np.ndarray:
    """F(s): cumulative depth since onset for a unit initial rate (years * rate)."""
    s = _softplus(t, area.onset_years)
    fast = area.fast_weight * area.tau_fast * (1.0 - np.exp(-s / area.tau_fast))
    slow = (1.0 - area.fast_weight) * area.tau_slow * (1.0 - np.exp(-s / area.tau_slow))
    return fast + slow


def _line_distance(u, v, p0, p1, scale: float):
    """Signed distance (metres) to the infinite line p0->p1, positive on its RIGHT."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    ln = math.hypot(dx, dy)
    return ((u - p0[0]) * dy - (v - p0[1]) * dx) / ln * scale


def _incidence(u, v, orbit: str) -> np.ndarray:
    mean, az = (ASC_INCIDENCE, ASC_RANGE_AZIMUTH) if orbit == "asc" else (DESC_INCIDENCE, DESC_RANGE_AZIMUTH)
    a = math.radians(az)
    return mean + INCIDENCE_SPREAD * ((u - 0.5) * math.sin(a) + (v - 0.5) * math.cos(a))


def _litho_label(u, v) -> np.ndarray:
    (a1, b1), (a2, b2) = LITHO_BOUNDARIES
    return (v >= a1 + b1 * u).astype("int8") + (v >= a2 + b2 * u).astype("int8")


class SampleScene:
    """The sample scene on a `size` x `size` grid of 20 m pixels. The truth is analytic: evaluate it
    on the grid (`vertical`, `los`) or at any map point (`vertical_at`)."""

    def __init__(self, size: int = DEFAULT_SIZE, seed: int = 42):
        if int(size) < 16:
            raise ValueError(f"size must be at least 16 pixels, not {size}")
        self.size = int(size)
        self.seed = int(seed)
        self.extent = self.size * PIXEL_SIZE
        self.xmin = CENTRE_XY[0] - self.extent / 2
        self.ymax = CENTRE_XY[1] + self.extent / 2
        self.ymin = self.ymax - self.extent
        self.transform = Affine(PIXEL_SIZE, 0.0, self.xmin, 0.0, -PIXEL_SIZE, self.ymax)
        self.crs = CRS_EPSG
        self.asc_dates = asc_dates()
        self.desc_dates = desc_dates()
        self.future_dates = future_dates()
        self.survey_dates = survey_dates()
        self._amp = self._calibrate()
        self._grid_static: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._ref_cache: dict[dt.date, np.ndarray] = {}
        self._cos: dict[str, np.ndarray] = {}
        self._masks: dict[str, np.ndarray] = {}
        self._atmo: tuple[int, int, np.ndarray] | None = None

    # -- coordinates
    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def to_map(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        return self.xmin + np.asarray(u) * self.extent, self.ymin + np.asarray(v) * self.extent

    def to_norm(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(x, "float64") - self.xmin) / self.extent, (
            np.asarray(y, "float64") - self.ymin
        ) / self.extent

    def _grid_uv(self, dtype="float64") -> tuple[np.ndarray, np.ndarray]:
        c = (np.arange(self.size, dtype="float64") + 0.5) / self.size
        u = np.broadcast_to(c[None, :], self.shape).astype(dtype)
        v = np.broadcast_to(1.0 - c[:, None], self.shape).astype(dtype)
        return u, v

    def rowcol(self, x: float, y: float) -> tuple[int, int]:
        col, row = ~self.transform * (x, y)
        return int(math.floor(row)), int(math.floor(col))

    # -- static fields
    def _litho_factor(self, u, v) -> np.ndarray:
        f = [unit[2] for unit in LITHO_UNITS]
        (a1, b1), (a2, b2) = LITHO_BOUNDARIES
        d1 = _line_distance(u, v, (0.0, a1), (1.0, a1 + b1), self.extent)  # > 0 right = below
        d2 = _line_distance(u, v, (0.0, a2), (1.0, a2 + b2), self.extent)
        return f[0] + (f[1] - f[0]) * _sig(-d1 / LITHO_WIDTH_M) + (f[2] - f[1]) * _sig(-d2 / LITHO_WIDTH_M)

    def _fault_factor(self, u, v, key: str) -> np.ndarray:
        m = np.ones(np.shape(u))
        for f in FAULTS:
            for akey, side, factor in f.effects:
                if akey != key:
                    continue
                d = _line_distance(u, v, f.p0, f.p1, self.extent)
                s = -1.0 if side == "right" else 1.0
                m = m * (factor + (1.0 - factor) * _sig(s * d / FAULT_WIDTH_M))
        return m

    def _static(self, u, v) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per area: (q, M) with q the squared normalized radius at the initial width, M the fault
        and lithology multiplier."""
        lith = self._litho_factor(u, v)
        out = []
        for a in AREAS:
            r = math.radians(a.rotation_deg)
            du, dv = u - a.centre[0], v - a.centre[1]
            p = (du * math.cos(r) + dv * math.sin(r)) / a.sigma[0]
            q = (-du * math.sin(r) + dv * math.cos(r)) / a.sigma[1]
            out.append((p * p + q * q, self._fault_factor(u, v, a.key) * lith))
        return out

    def _calibrate(self) -> list[float]:
        """Amplitudes (per unit depth) such that each area's centre, counting the tails of the
        other areas too, reaches its `peak_los_mm` on ASC_END (a small linear system)."""
        u = np.array([a.centre[0] for a in AREAS])
        v = np.array([a.centre[1] for a in AREAS])
        static = self._static(u, v)
        cos_i = np.cos(np.radians(_incidence(u, v, "asc")))
        t0, t1 = _years([ASC_START, ASC_END])
        unit = np.ones(len(AREAS))
        cols = []
        for j in range(len(AREAS)):
            amps = np.where(np.arange(len(AREAS)) == j, unit, 0.0)
            z1 = self._absolute(static, float(t1), np.float64, amps)
            z0 = self._absolute(static, float(t0), np.float64, amps)
            cols.append((z1 - z0) * cos_i)
        target = np.array([a.peak_los_mm for a in AREAS])
        return [float(x) for x in np.linalg.solve(np.stack(cols, axis=1), target)]

    def _absolute(
        self, static, t: float, dtype, amps: Sequence[float] | np.ndarray | None = None
    ) -> np.ndarray:
        """Vertical displacement since each area's onset at time `t` (years after ASC_START)."""
        total = None
        end = float(_years(ASC_END)[0])
        for a, amp, (q, m) in zip(AREAS, self._amp if amps is None else amps, static, strict=True):
            dep = float(_depth(a, np.array([t]))[0])
            dep_end = float(_depth(a, np.array([end]))[0])
            g = 1.0 + a.growth * dep / dep_end
            field = np.exp(q * dtype(-0.5 / (g * g)))
            field *= m
            field *= dtype(amp * dep)
            total = field if total is None else total + field
        return total  # type: ignore[return-value]

    def _grid(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._grid_static is None:
            u, v = self._grid_uv()
            self._grid_static = [(q.astype("float32"), m.astype("float32")) for q, m in self._static(u, v)]
        return self._grid_static

    # -- the truth
    def vertical(self, when: dt.date, ref: dt.date = ASC_START) -> np.ndarray:
        """Noise-free vertical displacement (mm, float32, rows x cols) at `when` relative to `ref`."""
        static = self._grid()
        if ref not in self._ref_cache:
            self._ref_cache[ref] = self._absolute(static, float(_years(ref)[0]), np.float32)
        return self._absolute(static, float(_years(when)[0]), np.float32) - self._ref_cache[ref]

    def vertical_at(self, x, y, when: Sequence[dt.date], ref: dt.date = ASC_START) -> np.ndarray:
        """Noise-free vertical displacement (mm, float64) at map points (x, y): (len(when), n)."""
        u, v = self.to_norm(np.atleast_1d(x), np.atleast_1d(y))
        static = self._static(u, v)
        base = self._absolute(static, float(_years(ref)[0]), np.float64)
        return np.stack([self._absolute(static, float(t), np.float64) - base for t in _years(when)])

    def incidence(self, orbit: str = "asc") -> np.ndarray:
        """Incidence angle (degrees, float32) of each pixel."""
        u, v = self._grid_uv()
        return _incidence(u, v, orbit).astype("float32")

    def _cos_inc(self, orbit: str) -> np.ndarray:
        if orbit not in self._cos:
            self._cos[orbit] = np.cos(np.radians(self.incidence(orbit).astype("float64"))).astype("float32")
        return self._cos[orbit]

    def los(self, when: dt.date, orbit: str = "asc", ref: dt.date | None = None) -> np.ndarray:
        """Noise-free LOS displacement (mm, float32) of `orbit` at `when` relative to `ref` (the
        orbit's first acquisition by default)."""
        ref = ref or (ASC_START if orbit == "asc" else DESC_START)
        return self.vertical(when, ref) * self._cos_inc(orbit)

    def horizontal(self, when: dt.date, ref: dt.date = ASC_START) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free (east, north) displacement (mm, float32) of the optional 3-D model at `when`
        relative to `ref`: -HORIZONTAL_M times the gradient of the vertical field (smoothed over
        HORIZONTAL_SMOOTH_M), so the flanks of a bowl move toward its centre."""
        from scipy.ndimage import gaussian_filter

        up = gaussian_filter(self.vertical(when, ref).astype("float64"), HORIZONTAL_SMOOTH_M / PIXEL_SIZE)
        d_row, d_col = np.gradient(up, PIXEL_SIZE)  # rows run south
        return (-HORIZONTAL_M * d_col).astype("float32"), (HORIZONTAL_M * d_row).astype("float32")

    def los_3d(self, when: dt.date, orbit: str = "asc", ref: dt.date | None = None) -> np.ndarray:
        """Noise-free LOS (mm, float32) of the 3-D model: vertical and horizontal motion projected
        with d_LOS = U cos(theta) + sin(theta) (N sin(h) - E cos(h)) (core.decompose)."""
        from .decompose import los_from

        ref = ref or (ASC_START if orbit == "asc" else DESC_START)
        east, north = self.horizontal(when, ref)
        heading = ASC_HEADING if orbit == "asc" else DESC_HEADING
        los = los_from(self.vertical(when, ref), east, north, self.incidence(orbit), heading)
        return los.astype("float32")

    def observed_3d(self, orbit: str, index: int) -> np.ndarray:
        """Observed LOS of the 3-D model: the same noise and incoherent pixels as :meth:`observed`."""
        dates = self.asc_dates if orbit == "asc" else self.desc_dates
        out = self.los_3d(dates[index], orbit) + self.noise(orbit, index)
        out[self.nan_mask(orbit)] = np.nan
        return out

    def litho_labels(self) -> np.ndarray:
        """0 = gneiss (hard), 1 = ultrabasic, 2 = marble (soft), per pixel centre."""
        u, v = self._grid_uv()
        return _litho_label(u, v)

    # -- noise and coherence
    def _atmo_filter(self) -> tuple[int, int, np.ndarray]:
        """(padded size, pad, Gaussian transfer function) of the atmosphere filter, cached."""
        if self._atmo is None:
            sigma = ATMO_CORR_M / PIXEL_SIZE
            m = scipy.fft.next_fast_len(self.size + 2 * int(math.ceil(3 * sigma)), real=True)
            fy = scipy.fft.fftfreq(m)[:, None]
            fx = scipy.fft.rfftfreq(m)[None, :]
            transfer = np.exp(-2.0 * math.pi**2 * sigma**2 * (fx * fx + fy * fy)).astype("float32")
            self._atmo = (m, (m - self.size) // 2, transfer)
        return self._atmo

    def _atmosphere(self, orbit: str, index: int) -> np.ndarray:
        """Spatially correlated noise (mm) for band `index`: white noise filtered by a Gaussian of
        ATMO_CORR_M in the Fourier domain, on a padded grid (no wrap-around), scaled per date."""
        n = self.size
        m, pad, transfer = self._atmo_filter()
        rng = np.random.default_rng([self.seed, _S_ATMO, _ORBIT_ID[orbit], index])
        white = rng.standard_normal((m, m), dtype="float32")
        spectrum = scipy.fft.rfft2(white)
        spectrum *= transfer
        field = scipy.fft.irfft2(spectrum, s=(m, m))[pad : pad + n, pad : pad + n].astype("float64")
        field -= field.mean()
        std = field.std()
        amp_rng = np.random.default_rng([self.seed, _S_AMPL, _ORBIT_ID[orbit], index])
        target = ATMO_STD[orbit] * math.exp(0.35 * float(np.clip(amp_rng.standard_normal(), -2.5, 2.5)))
        return (field * (target / std if std > 0 else 0.0)).astype("float32")

    def noise(self, orbit: str, index: int) -> np.ndarray:
        """Total noise (mm, float32) of band `index`; zero for the first band (the reference)."""
        if index == 0:
            return np.zeros(self.shape, "float32")
        rng = np.random.default_rng([self.seed, _S_WHITE, _ORBIT_ID[orbit], index])
        white = rng.standard_normal(self.shape, dtype="float32") * np.float32(WHITE_STD)
        return self._atmosphere(orbit, index) + white

    def gradient_mask(self, orbit: str = "asc") -> np.ndarray:
        """Incoherent pixels where the total deformation gradient is steepest (seed independent)."""
        dates = self.asc_dates if orbit == "asc" else self.desc_dates
        total = self.los(dates[-1], orbit).astype("float64")
        gy, gx = np.gradient(total)
        g = np.hypot(gx, gy)
        thr = max(float(np.percentile(g, GRAD_PERCENTILE)), GRAD_FLOOR)
        return g > thr

    def nan_mask(self, orbit: str = "asc") -> np.ndarray:
        """All incoherent pixels of `orbit`: the gradient mask plus random pixels (seed dependent)."""
        if orbit not in self._masks:
            rng = np.random.default_rng([self.seed, _S_NAN, _ORBIT_ID[orbit]])
            self._masks[orbit] = self.gradient_mask(orbit) | (rng.random(self.shape) < RANDOM_NAN)
        return self._masks[orbit]

    def observed(self, orbit: str, index: int) -> np.ndarray:
        """Observed LOS (mm, float32) of band `index` of `orbit`: truth + noise, NaN where incoherent."""
        dates = self.asc_dates if orbit == "asc" else self.desc_dates
        out = self.los(dates[index], orbit) + self.noise(orbit, index)
        out[self.nan_mask(orbit)] = np.nan
        return out

    def observed_future(self, truth: np.ndarray, index: int) -> np.ndarray:
        """The ascending observation (mm, float32) of future date `index` (0 = the first date after
        the last acquisition) whose noise-free LOS is `truth`: the noise of ascending band
        ``len(asc_dates) + index`` added, NaN where the ascending stack is incoherent."""
        out = (truth + self.noise("asc", len(self.asc_dates) + int(index))).astype("float32")
        out[self.nan_mask("asc")] = np.nan
        return out

    # -- vectors
    def profiles(self) -> list[tuple[str, list[tuple[float, float]]]]:
        out = []
        for name, p0, p1 in PROFILES:
            xs, ys = self.to_map([p0[0], p1[0]], [p0[1], p1[1]])
            out.append((name, [(float(a), float(b)) for a, b in zip(xs, ys, strict=True)]))
        return out

    def fault_lines(self) -> list[tuple[Fault, list[tuple[float, float]]]]:
        out = []
        for f in FAULTS:
            xs, ys = self.to_map([f.p0[0], f.p1[0]], [f.p0[1], f.p1[1]])
            out.append((f, [(float(a), float(b)) for a, b in zip(xs, ys, strict=True)]))
        return out

    def litho_polygons(self) -> list[tuple[tuple, list[tuple[float, float]]]]:
        """One polygon per unit (exterior ring, closed), together covering the scene exactly."""
        (a1, b1), (a2, b2) = LITHO_BOUNDARIES
        rings_uv = [
            [(0, 0), (1, 0), (1, a1 + b1), (0, a1)],
            [(0, a1), (1, a1 + b1), (1, a2 + b2), (0, a2)],
            [(0, a2), (1, a2 + b2), (1, 1), (0, 1)],
        ]
        out = []
        for unit, ring in zip(LITHO_UNITS, rings_uv, strict=True):
            xs, ys = self.to_map([p[0] for p in ring], [p[1] for p in ring])
            pts = [(float(a), float(b)) for a, b in zip(xs, ys, strict=True)]
            out.append((unit, pts + pts[:1]))
        return out

    def benchmark_points(self) -> list[tuple[str, float, float]]:
        """Benchmarks along the profiles (as leveling lines), on pixel centres away from the
        incoherent steep-gradient pixels; seed independent."""
        bad = self.gradient_mask("asc")
        pad = np.pad(bad, 1, constant_values=True)
        near_bad = np.zeros_like(bad)
        for dr in (0, 1, 2):
            for dc in (0, 1, 2):
                near_bad |= pad[dr : dr + self.size, dc : dc + self.size]
        out: list[tuple[str, float, float]] = []
        used: set[tuple[int, int]] = set()
        for name, p0, p1 in PROFILES:
            n = BENCHMARKS_PER_PROFILE[name]
            for k in range(n):
                f0 = 0.06 + 0.88 * k / (n - 1)
                for shift in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
                    f = f0 + shift * 0.01
                    u = p0[0] + f * (p1[0] - p0[0])
                    v = p0[1] + f * (p1[1] - p0[1])
                    x, y = self.to_map(u, v)
                    r, c = self.rowcol(float(x), float(y))
                    if 1 <= r < self.size - 1 and 1 <= c < self.size - 1 and not near_bad[r, c]:
                        if (r, c) in used:
                            continue
                        used.add((r, c))
                        cx, cy = self.transform * (c + 0.5, r + 0.5)
                        out.append((f"BM{len(out) + 1:02d}", float(cx), float(cy)))
                        break
        return out

    def benchmark_values(self, points) -> np.ndarray:
        """(n benchmarks, n surveys) vertical mm since ASC_START: truth + noise, rounded to 0.1 mm."""
        xs = np.array([p[1] for p in points])
        ys = np.array([p[2] for p in points])
        truth = self.vertical_at(xs, ys, self.survey_dates).T
        rng = np.random.default_rng([self.seed, _S_BENCH])
        return np.round(truth + rng.normal(0.0, BENCHMARK_STD, truth.shape), 1)

    # -- metadata
    def fault_steps(self) -> list[dict]:
        """Vertical/LOS on both sides of each fault, one pixel off the line, at the foot of each
        affected area's centre, on ASC_END."""
        out = []
        for f, _ in self.fault_lines():
            for akey, side, factor in f.effects:
                area = next(a for a in AREAS if a.key == akey)
                d = np.array(f.p1) - np.array(f.p0)
                d = d / np.hypot(*d)
                c = np.array(area.centre)
                foot = np.array(f.p0) + d * np.dot(c - np.array(f.p0), d)
                right = np.array([d[1], -d[0]])
                off = PIXEL_SIZE / self.extent
                pts = np.array([foot - off * right, foot + off * right])
                x, y = self.to_map(pts[:, 0], pts[:, 1])
                vert = self.vertical_at(x, y, [ASC_END])[0]
                cos_i = np.cos(np.radians(_incidence(pts[:, 0], pts[:, 1], "asc")))
                fx, fy = self.to_map(foot[0], foot[1])
                out.append(
                    {
                        "fault": f.name,
                        "area": area.name,
                        "attenuated_side": side,
                        "factor": factor,
                        "at_xy": [round(float(fx), 2), round(float(fy), 2)],
                        "offset_m": PIXEL_SIZE,
                        "vertical_left_mm": round(float(vert[0]), 2),
                        "vertical_right_mm": round(float(vert[1]), 2),
                        "step_vertical_mm": round(float(abs(vert[1] - vert[0])), 2),
                        "step_los_mm": round(float(abs(vert[1] * cos_i[1] - vert[0] * cos_i[0])), 2),
                    }
                )
        return out

    def area_summary(self) -> list[dict]:
        out = []
        span = (ASC_END - ASC_START).days / 365.25
        for a in AREAS:
            x, y = self.to_map(a.centre[0], a.centre[1])
            r, c = self.rowcol(float(x), float(y))
            ts = self.vertical_at(x, y, [ASC_END, self.future_dates[-1], dt.date(2018, 1, 1)])[:, 0]
            cos_i = math.cos(
                math.radians(float(_incidence(np.array(a.centre[0]), np.array(a.centre[1]), "asc")))
            )
            out.append(
                {
                    "name": a.name,
                    "key": a.key,
                    "kind": "uplift" if a.peak_los_mm > 0 else "subsidence",
                    "centre_xy": [round(float(x), 2), round(float(y), 2)],
                    "centre_rowcol": [r, c],
                    "sigma_m": [round(a.sigma[0] * self.extent, 1), round(a.sigma[1] * self.extent, 1)],
                    "rotation_deg": a.rotation_deg,
                    "width_growth_at_end": a.growth,
                    "onset": format_date(ASC_START + dt.timedelta(days=round(a.onset_years * 365.25))),
                    "los_at_centre_end_mm": round(float(ts[0] * cos_i), 1),
                    "vertical_at_centre_end_mm": round(float(ts[0]), 1),
                    "vertical_at_centre_2018_01_01_mm": round(float(ts[2]), 1),
                    "vertical_at_centre_future_end_mm": round(float(ts[1]), 1),
                    "mean_los_rate_mm_per_year": round(float(ts[0] * cos_i / span), 1),
                }
            )
        return out

    def litho_summary(self, final_los: np.ndarray) -> list[dict]:
        labels = self.litho_labels()
        vert = final_los / self._cos_inc("asc")
        out = []
        for i, (unit, strength, factor, desc) in enumerate(LITHO_UNITS):
            sel = labels == i
            n = int(sel.sum())
            out.append(
                {
                    "unit": unit,
                    "strength": strength,
                    "factor": factor,
                    "description": desc,
                    "pixels": n,
                    "area_fraction": round(n / labels.size, 4),
                    "mean_final_los_mm": round(float(final_los[sel].mean()), 2) if n else None,
                    "mean_final_vertical_mm": round(float(vert[sel].mean()), 2) if n else None,
                    "min_final_los_mm": round(float(final_los[sel].min()), 2) if n else None,
                }
            )
        return out


# ---------------------------------------------------------------------------------------------
# in-memory stacks for tests


@dataclass
class SyntheticStack:
    """An in-memory stack of the sample scene: data (bands, rows, cols) float32 mm."""

    data: np.ndarray
    dates: list[dt.date]
    transform: Affine
    crs: str
    units: str = "mm"

    def write(self, path: str) -> str:
        return write_stack(path, self.data, self.dates, self.crs, self.transform, self.units)


def synthetic_truth(
    size: int = 64,
    dates: Sequence[dt.date] | None = None,
    orbit: str = "asc",
    vertical: bool = False,
    ref: dt.date | None = None,
) -> SyntheticStack:
    """Noise-free stack of the sample scene at `size` pixels: LOS of `orbit` (or vertical with
    `vertical=True`) at `dates` (default: the orbit's acquisitions) relative to `ref` (default: the
    orbit's first acquisition). Cheap: about 1 ms per band at size 64."""
    scene = SampleScene(size)
    dates = list(dates) if dates is not None else (scene.asc_dates if orbit == "asc" else scene.desc_dates)
    ref = ref or (ASC_START if orbit == "asc" else DESC_START)
    if vertical:
        data = np.stack([scene.vertical(d, ref) for d in dates])
    else:
        data = np.stack([scene.los(d, orbit, ref) for d in dates])
    return SyntheticStack(data, dates, scene.transform, scene.crs)


# ---------------------------------------------------------------------------------------------
# writing


def _geojson(path: str, features: list[dict], name: str) -> str:
    doc = {
        "type": "FeatureCollection",
        "name": name,
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32647"}},
        "features": features,
    }
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    return path


def _feature(geom_type: str, coords, props: dict) -> dict:
    return {"type": "Feature", "properties": props, "geometry": {"type": geom_type, "coordinates": coords}}


def _xy(pts) -> list[list[float]]:
    return [[round(x, 2), round(y, 2)] for x, y in pts]


def _write_single(path: str, data: np.ndarray, scene: SampleScene, description: str, units: str) -> str:
    prof = dict(
        driver="GTiff",
        count=1,
        height=scene.size,
        width=scene.size,
        dtype="float32",
        crs=scene.crs,
        transform=scene.transform,
        nodata=float("nan"),
        compress="deflate",
    )
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **prof) as dst:
        dst.write(data.astype("float32"), 1)
        dst.set_band_description(1, description)
        dst.set_band_unit(1, units)
    return path


FILES = {
    "stack_asc": ("stack_asc.tif", "observed ascending LOS displacement, mm, 156 irregular dates, NaN = incoherent"),
    "truth_asc": ("truth_asc.tif", "noise-free ascending LOS displacement, mm, same dates as stack_asc"),
    "truth_future_asc": (
        "truth_future_asc.tif",
        "noise-free ascending LOS displacement, mm, 61 regular 12-day steps after the last acquisition, "
        "relative to the first acquisition (2014-10-14)",
    ),
    "observed_future_asc": (
        "observed_future_asc.tif",
        "noisy future ascending LOS displacement, mm, the dates of truth_future_asc: the future truth plus "
        "the scene's noise model (atmosphere + white) drawn for these dates, NaN = incoherent (stack_asc's mask)",
    ),
    "stack_desc": (
        "stack_desc.tif",
        "observed descending LOS displacement, mm, 71 dates 2018-2020, relative to 2018-03-27, NaN = incoherent",
    ),
    "incidence_asc": ("incidence_asc.tif", "ascending incidence angle, degrees"),
    "incidence_desc": ("incidence_desc.tif", "descending incidence angle, degrees"),
    "benchmarks_csv": (
        "benchmarks.csv",
        "leveling benchmarks: id,x,y then one column per monthly survey (DYYYYMMDD), vertical mm since 2014-10-14",
    ),
    "benchmarks": ("benchmarks.geojson", "leveling benchmarks as points, same fields as benchmarks.csv"),
    "profiles": ("profiles.geojson", "profile lines I, II, III (field name)"),
    "faults": ("faults.geojson", "fault lines (fields name, role)"),
    "lithology": ("lithology.geojson", "lithology polygons covering the scene (fields unit, strength, factor)"),
    "scene": ("scene.json", "metadata of the scene"),
}  # fmt: skip
# written only with `horizontal=True` (CLI --horizontal): the scene with horizontal motion too
FILES_3D = {
    "stack_asc_3d": ("stack_asc_3d.tif", "observed ascending LOS of the 3-D model (vertical + horizontal motion), mm, same dates, noise and NaN as stack_asc"),
    "stack_desc_3d": ("stack_desc_3d.tif", "observed descending LOS of the 3-D model, mm, same dates, noise and NaN as stack_desc"),
    "truth_up": ("truth_up.tif", "noise-free vertical (up) displacement, mm, ascending dates, relative to 2014-10-14"),
    "truth_east": ("truth_east.tif", "noise-free east displacement of the 3-D model, mm, ascending dates, relative to 2014-10-14"),
}  # fmt: skip


@dataclass(frozen=True)
class _Out:
    """Where and how the files of one scene are written."""

    scene: SampleScene
    seed: int
    paths: dict[str, str]
    tags: dict[str, str]  # common to every raster

    @property
    def geo(self) -> tuple[str, Affine, int, int]:
        return (self.scene.crs, self.scene.transform, self.scene.size, self.scene.size)

    def tag(self, orbit: str, kind: str, ref: dt.date) -> dict[str, str]:
        inc = ASC_INCIDENCE if orbit == "asc" else DESC_INCIDENCE
        return {
            **self.tags,
            "ORBIT": "ascending" if orbit == "asc" else "descending",
            "INCIDENCE_DEG": f"{inc}",
            "KIND": kind,
            "REFERENCE_DATE": format_date(ref),
        }


def make_sample_scene(
    outdir: str,
    size: int = DEFAULT_SIZE,
    seed: int = 42,
    run: Run = QUIET,
    horizontal: bool = False,
) -> dict[str, str]:
    """Write the sample scene into `outdir` (created if needed); returns {key: path} (see module doc).
    With `horizontal`, also the files of FILES_3D (the other files are the same either way). Stage
    messages and progress go to `run`; cancelling raises core.errors.Cancelled."""
    os.makedirs(outdir, exist_ok=True)
    scene = SampleScene(size, seed)
    out = _Out(
        scene,
        seed,
        {k: os.path.join(outdir, name) for k, (name, _) in FILES.items()},
        {"SOURCE": f"deformation_forecast sample scene, size {scene.size}, seed {seed}"},
    )
    _write_single(out.paths["incidence_asc"], scene.incidence("asc"), scene, "incidence_deg", "deg")
    _write_single(out.paths["incidence_desc"], scene.incidence("desc"), scene, "incidence_deg", "deg")
    final_los = _write_stacks(out, run)
    run.message("vectors")
    run.check_cancelled()
    points = _write_vectors(out)
    meta = _scene_meta(scene, seed, final_los, len(points))
    paths = dict(out.paths)
    if horizontal:
        paths.update(_write_3d(scene, outdir, out.geo, out.tags, run))
        meta["horizontal"] = {
            "model": "3-D: horizontal displacement = -HORIZONTAL_M * grad(vertical smoothed over "
            "HORIZONTAL_SMOOTH_M); LOS = U cos(theta) + sin(theta) (N sin(h) - E cos(h))",
            "horizontal_m": HORIZONTAL_M,
            "smooth_m": HORIZONTAL_SMOOTH_M,
            "heading_deg": {"ascending": ASC_HEADING, "descending": DESC_HEADING},
            "files": {k: {"file": name, "description": desc} for k, (name, desc) in FILES_3D.items()},
        }
    with atomic_path(out.paths["scene"]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    run.progress(1.0)
    return paths


def _write_stacks(out: _Out, run: Run) -> np.ndarray:
    """The ascending observed and truth stacks, the future truth and the descending stack; returns
    the last ascending truth frame."""
    scene, geo = out.scene, out.geo
    run.message(
        f"ascending stack and truth: {len(scene.asc_dates)} dates, {scene.size} x {scene.size} pixels"
    )
    total = len(scene.asc_dates) + len(scene.future_dates) + len(scene.desc_dates)
    final_los = np.zeros(0)
    with (
        StackWriter(
            out.paths["stack_asc"], scene.asc_dates, *geo, tags=out.tag("asc", "observed", ASC_START)
        ) as obs,
        StackWriter(
            out.paths["truth_asc"], scene.asc_dates, *geo, tags=out.tag("asc", "truth", ASC_START)
        ) as tru,
    ):
        mask = scene.nan_mask("asc")
        for i, d in enumerate(scene.asc_dates):
            run.check_cancelled()
            truth = scene.los(d, "asc")
            tru.write_band(i, truth)
            band = truth + scene.noise("asc", i)
            band[mask] = np.nan
            obs.write_band(i, band)
            final_los = truth
            run.progress(0.9 * (i + 1) / total)
    done = len(scene.asc_dates)
    run.message(f"future truth and observations: {len(scene.future_dates)} dates")
    with (
        StackWriter(
            out.paths["truth_future_asc"],
            scene.future_dates,
            *geo,
            tags=out.tag("asc", "truth (future)", ASC_START),
        ) as fut,
        StackWriter(
            out.paths["observed_future_asc"],
            scene.future_dates,
            *geo,
            tags=out.tag("asc", "observed (future)", ASC_START),
        ) as fut_obs,
    ):
        for i, d in enumerate(scene.future_dates):
            run.check_cancelled()
            truth = scene.los(d, "asc")
            fut.write_band(i, truth)
            fut_obs.write_band(i, scene.observed_future(truth, i))
            run.progress(0.9 * (done + i + 1) / total)
    done += len(scene.future_dates)
    run.message(f"descending stack: {len(scene.desc_dates)} dates")
    with StackWriter(
        out.paths["stack_desc"], scene.desc_dates, *geo, tags=out.tag("desc", "observed", DESC_START)
    ) as dst:
        for i in range(len(scene.desc_dates)):
            run.check_cancelled()
            dst.write_band(i, scene.observed("desc", i))
            run.progress(0.9 * (done + i + 1) / total)
    return final_los


def _write_vectors(out: _Out) -> list:
    """The benchmarks (CSV and GeoJSON), profiles, faults and lithology; returns the benchmarks."""
    scene, paths = out.scene, out.paths
    points = scene.benchmark_points()
    values = scene.benchmark_values(points)
    fields = ["D" + d.strftime("%Y%m%d") for d in scene.survey_dates]
    with atomic_path(paths["benchmarks_csv"]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "x", "y", *fields])
        for (bid, x, y), row in zip(points, values, strict=True):
            w.writerow([bid, f"{x:.2f}", f"{y:.2f}", *(f"{v:.1f}" for v in row)])
    bench = [
        _feature(
            "Point",
            [round(x, 2), round(y, 2)],
            {
                "id": bid,
                "x": round(x, 2),
                "y": round(y, 2),
                **{k: float(v) for k, v in zip(fields, row, strict=True)},
            },
        )
        for (bid, x, y), row in zip(points, values, strict=True)
    ]
    _geojson(paths["benchmarks"], bench, "benchmarks")
    _geojson(
        paths["profiles"],
        [_feature("LineString", _xy(pts), {"name": name}) for name, pts in scene.profiles()],
        "profiles",
    )
    _geojson(
        paths["faults"],
        [
            _feature("LineString", _xy(pts), {"name": f.name, "role": f.role})
            for f, pts in scene.fault_lines()
        ],
        "faults",
    )
    _geojson(
        paths["lithology"],
        [
            _feature("Polygon", [_xy(ring)], {"unit": u[0], "strength": u[1], "factor": u[2]})
            for u, ring in scene.litho_polygons()
        ],
        "lithology",
    )
    return points


def _orbit_meta(scene: SampleScene) -> dict:
    """The ascending, future and descending parts of scene.json."""
    return {
        "ascending": {
            "incidence_deg": ASC_INCIDENCE,
            "incidence_range_deg": [
                round(float(scene.incidence("asc").min()), 3),
                round(float(scene.incidence("asc").max()), 3),
            ],
            "count": len(scene.asc_dates),
            "first": format_date(scene.asc_dates[0]),
            "last": format_date(scene.asc_dates[-1]),
            "dates": [format_date(d) for d in scene.asc_dates],
            "nan_fraction": round(float(scene.nan_mask("asc").mean()), 4),
        },
        "future": {
            "count": len(scene.future_dates),
            "interval_days": INTERVAL_DAYS,
            "first": format_date(scene.future_dates[0]),
            "last": format_date(scene.future_dates[-1]),
            "observed_noise": f"ascending noise bands {len(scene.asc_dates)} .. "
            f"{len(scene.asc_dates) + len(scene.future_dates) - 1}, the ascending NaN mask",
        },
        "descending": {
            "incidence_deg": DESC_INCIDENCE,
            "count": len(scene.desc_dates),
            "first": format_date(scene.desc_dates[0]),
            "last": format_date(scene.desc_dates[-1]),
            "reference_date": format_date(DESC_START),
            "nan_fraction": round(float(scene.nan_mask("desc").mean()), 4),
        },
    }


def _scene_meta(scene: SampleScene, seed: int, final_los: np.ndarray, benchmarks: int) -> dict:
    """scene.json: how the scene was made and what it holds."""
    return {
        "generator": "deformation_forecast.core.sample",
        "seed": seed,
        "seeds": {
            "noise": f"numpy default_rng([seed, stream, orbit, band]); streams atmosphere={_S_ATMO}, "
            f"white={_S_WHITE}, amplitude={_S_AMPL}, nan={_S_NAN}, benchmarks={_S_BENCH}",
            "dates": _DATES_SEED,
        },
        "size": scene.size,
        "pixel_size_m": PIXEL_SIZE,
        "crs": scene.crs,
        "transform": list(scene.transform)[:6],
        "bounds": [scene.xmin, scene.ymin, scene.xmin + scene.extent, scene.ymax],
        "units": "mm",
        "model": "purely vertical motion; LOS = vertical * cos(incidence); cumulative relative to each "
        "orbit's first acquisition; Gaussian (Peck) bowls with decelerating depth and growing width, "
        "cut by faults and scaled by lithology",
        **_orbit_meta(scene),
        "noise": {
            "atmosphere_std_mm": ATMO_STD,
            "atmosphere_correlation_m": ATMO_CORR_M,
            "white_std_mm": WHITE_STD,
            "first_band": "zero (reference)",
            "incoherent": f"gradient of the total LOS above its {GRAD_PERCENTILE} percentile (and "
            f"> {GRAD_FLOOR} mm/pixel) plus {RANDOM_NAN:.1%} random pixels; the same pixels on every date",
        },
        "max_subsidence_los_mm": round(float(final_los.min()), 1),
        "max_uplift_los_mm": round(float(final_los.max()), 1),
        "areas": scene.area_summary(),
        "faults": [{"name": f.name, "role": f.role} for f in FAULTS],
        "fault_steps": scene.fault_steps(),
        "lithology": scene.litho_summary(final_los.astype("float64")),
        "benchmarks": {
            "count": benchmarks,
            "noise_std_mm": BENCHMARK_STD,
            "surveys": len(scene.survey_dates),
            "first_survey": format_date(scene.survey_dates[0]),
            "last_survey": format_date(scene.survey_dates[-1]),
            "values": "true vertical displacement at the benchmark since 2014-10-14 + gaussian noise",
        },
        "profiles": [name for name, _, _ in PROFILES],
        "files": {k: {"file": name, "description": desc} for k, (name, desc) in FILES.items()},
    }


def _write_3d(
    scene: SampleScene, outdir: str, geo: tuple[str, Affine, int, int], tags: dict, run: Run
) -> dict[str, str]:
    """The files of FILES_3D: observed LOS stacks with horizontal motion, and the U/E truth."""
    paths = {k: os.path.join(outdir, name) for k, (name, _) in FILES_3D.items()}
    run.message("3-D model: stacks with horizontal motion, U and E truth")
    run.check_cancelled()
    for orbit, dates, ref in (("asc", scene.asc_dates, ASC_START), ("desc", scene.desc_dates, DESC_START)):
        heading = ASC_HEADING if orbit == "asc" else DESC_HEADING
        t = {
            **tags,
            "KIND": "observed (3-D model)",
            "HEADING_DEG": f"{heading}",
            "REFERENCE_DATE": format_date(ref),
        }
        with StackWriter(paths[f"stack_{orbit}_3d"], dates, *geo, tags=t) as w:
            for i in range(len(dates)):
                w.write_band(i, scene.observed_3d(orbit, i))
    t = {**tags, "KIND": "truth (3-D model)", "REFERENCE_DATE": format_date(ASC_START)}
    with (
        StackWriter(paths["truth_up"], scene.asc_dates, *geo, tags={**t, "COMPONENT": "vertical"}) as up,
        StackWriter(paths["truth_east"], scene.asc_dates, *geo, tags={**t, "COMPONENT": "east"}) as east,
    ):
        for i, d in enumerate(scene.asc_dates):
            up.write_band(i, scene.vertical(d))
            east.write_band(i, scene.horizontal(d)[0])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deformation_forecast.core.sample",
        description="Write the deterministic sample scene (Jinchuan-like InSAR stacks, benchmarks, "
        "profiles, faults, lithology) into OUTDIR.",
    )
    parser.add_argument("outdir")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="pixels per side (default 200)")
    parser.add_argument("--seed", type=int, default=42, help="noise seed (default 42)")
    parser.add_argument(
        "--horizontal",
        action="store_true",
        help="also write the 3-D model: stacks with horizontal motion and the U/E truth",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the file list")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    paths = make_sample_scene(
        args.outdir,
        args.size,
        args.seed,
        run=QUIET if args.quiet else Run(report=lambda _f, m: print(f"[sample] {m}") if m else None),
        horizontal=args.horizontal,
    )
    described = {**FILES, **FILES_3D}
    for key, path in paths.items():
        print(f"{key}: {path}  ({described[key][1]})")
    print(
        f"[sample] size {args.size}, seed {args.seed}: {len(paths)} files in {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
