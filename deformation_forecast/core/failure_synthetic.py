"""Synthetic series for the failure-time checks: Voight creep with a known failure date, and the
fields that must not alert (stable, linear, seasonal, decelerating), with correlated noise.

Noise model (mm): white noise per acquisition, an AR(1) component correlated in time (lag-1
correlation `rho` between consecutive acquisitions) and an atmospheric screen per date that is
smooth in space (Gaussian-filtered white noise) and independent between dates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

KINDS = ("stable", "linear", "seasonal", "decelerating")


def regular_dates(start: dt.date, count: int, step: int = 6) -> list[dt.date]:
    return [start + dt.timedelta(days=step * i) for i in range(count)]


def irregular_dates(
    start: dt.date, count: int, rng: np.random.Generator, gap: tuple[int, int] | None = (30, 4)
) -> list[dt.date]:
    """Steps of 6 or 12 days at random, with one gap of `gap[1]` missing acquisitions starting at
    index `gap[0]` (e.g. a satellite outage)."""
    steps = rng.choice([6, 12], size=count - 1, p=[0.6, 0.4]).astype(int)
    if gap is not None:
        steps[gap[0]] += 12 * gap[1]
    days = np.concatenate([[0], np.cumsum(steps)])
    return [start + dt.timedelta(days=int(d)) for d in days]


def voight_series(dates: Sequence[dt.date], failure: dt.date, v_end: float, end_lead: float) -> np.ndarray:
    """Displacement (mm, positive in the direction of motion) of creep whose inverse velocity
    falls linearly to zero at `failure` (Voight's relation with alpha = 2): v(t) = k / (tf - t),
    with v = `v_end` mm/day at `end_lead` days before failure; zero at the first date."""
    tf = failure.toordinal()
    t = np.array([d.toordinal() for d in dates], dtype="float64")
    k = v_end * end_lead
    return -k * np.log((tf - t) / (tf - t[0]))


def correlated_noise(
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    white: float = 2.0,
    ar: float = 2.0,
    rho: float = 0.7,
    atmo: float = 2.0,
    atmo_scale: float = 5.0,
) -> np.ndarray:
    """(dates, rows, cols) noise in mm (see the module doc)."""
    from scipy.ndimage import gaussian_filter

    n = shape[0]
    out = rng.normal(0.0, white, shape)
    e = rng.normal(0.0, ar, shape[1:])
    innov = ar * np.sqrt(1 - rho * rho)
    for i in range(n):
        if i:
            e = rho * e + rng.normal(0.0, innov, shape[1:])
        out[i] += e
    if atmo > 0:
        # the standard deviation of 2-D white noise after a Gaussian filter of width s is
        # 1 / (2 sqrt(pi) s) on an infinite grid (normalised by that, not by the sample's spread,
        # so that a tiny field gets a nearly constant screen of the right size)
        scale = min(atmo_scale, min(shape[1:]) / 8.0)
        unit = 1.0 / (2.0 * np.sqrt(np.pi) * scale)
        for i in range(n):
            screen = gaussian_filter(rng.normal(0.0, 1.0, shape[1:]), scale, mode="wrap")
            out[i] += atmo * screen / unit
    return out


def field(
    kind: str, dates: Sequence[dt.date], size: int, rng: np.random.Generator, noise: bool = True
) -> np.ndarray:
    """(dates, size, size) displacement field (mm) of one of KINDS, plus correlated noise.

    stable: zero; linear: velocities -5 to -60 mm/yr (random per pixel); seasonal: linear
    -5 to -30 mm/yr plus an annual term of 2-10 mm amplitude at a random phase; decelerating:
    Knothe-like subsidence after extraction, -S (1 - exp(-(t - t0) / tau)) with S 30-150 mm,
    tau 0.3-1.5 yr and onset t0 up to half a year before the first date.
    """
    t = np.array([(d - dates[0]).days / 365.25 for d in dates])[:, None, None]
    shp = (1, size, size)
    if kind == "stable":
        d = np.zeros((len(dates), size, size))
    elif kind == "linear":
        d = t * rng.uniform(-60, -5, shp)
    elif kind == "seasonal":
        amp, phase = rng.uniform(2, 10, shp), rng.uniform(0, 2 * np.pi, shp)
        d = t * rng.uniform(-30, -5, shp) + amp * np.sin(2 * np.pi * t + phase)
    elif kind == "decelerating":
        s, tau, t0 = rng.uniform(30, 150, shp), rng.uniform(0.3, 1.5, shp), rng.uniform(0, 0.5, shp)
        d = -s * (1 - np.exp(-(t + t0) / tau))
        d -= d[:1]
    else:
        raise ValueError(f"kind must be one of {KINDS}")
    if noise:
        d = d + correlated_noise((len(dates), size, size), rng)
    return d
