"""A small synthetic scene: a subsidence bowl that deepens (accelerating) and drifts east, plus noise."""

from __future__ import annotations

import datetime as dt

import numpy as np


def bowl_scene(n: int = 60, size: int = 32, seed: int = 0, noise: float = 0.3, step_days: int = 12):
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype="float64")
    yy, xx = np.mgrid[0:size, 0:size].astype("float64")
    frames = []
    for k in t:
        cx = size * 0.3 + size * 0.4 * k / n
        cy = size * 0.5
        r = size * (0.18 + 0.06 * k / n)
        depth = 2.0 * k + 0.02 * k**2
        frames.append(-depth * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2)) + 0.05 * k)
    data = np.stack(frames) + rng.normal(scale=noise, size=(n, size, size))
    data = data.astype("float32")
    data[:, :2, :3] = np.nan  # an incoherent corner
    dates = [dt.date(2018, 1, 1) + dt.timedelta(days=step_days * i) for i in range(n)]
    return data, dates


def irregular_scene(n: int = 56, height: int = 70, width: int = 50, seed: int = 0):
    """A bowl scene of any size on irregular dates (12-day steps with some 24-day gaps), with an
    incoherent corner (NaN at every date) and scattered NaN samples (gaps a resampling fills)."""
    rng = np.random.default_rng(seed)
    steps = np.where(rng.random(n - 1) < 0.2, 24, 12)
    offsets = np.concatenate([[0], np.cumsum(steps)])
    yy, xx = np.mgrid[0:height, 0:width].astype("float64")
    frames = []
    for k in range(n):
        cx = width * (0.3 + 0.4 * k / n)
        r = min(height, width) * (0.18 + 0.06 * k / n)
        depth = 2.0 * k + 0.02 * k**2
        frames.append(-depth * np.exp(-((xx - cx) ** 2 + (yy - height / 2) ** 2) / (2 * r**2)) + 0.05 * k)
    data = (np.stack(frames) + rng.normal(scale=0.3, size=(n, height, width))).astype("float32")
    data[:, :3, :4] = np.nan
    holes = rng.random(data.shape) < 0.02
    holes[0] = holes[-1] = False
    data[holes] = np.nan
    dates = [dt.date(2018, 1, 1) + dt.timedelta(days=int(o)) for o in offsets]
    return data, dates
