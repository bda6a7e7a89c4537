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
