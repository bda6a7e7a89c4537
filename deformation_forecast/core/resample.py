"""Resampling a deformation stack in time: linear in time, per pixel, with gap filling.

Irregular acquisitions are put on a regular grid of `interval_days` (the network needs a fixed time
step); NaN samples of a pixel are filled from its valid neighbours in time. Pure numpy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from .dates import to_ordinal
from .errors import InputError


def regular_grid(dates: Sequence[dt.date], interval_days: int, anchor: str = "end") -> list[dt.date]:
    """Regular dates every `interval_days` inside [first, last] of `dates`.

    With ``anchor="end"`` the grid ends on the last acquisition (so a forecast starts right after
    the last real observation); with ``"start"`` it begins on the first.
    """
    if interval_days <= 0:
        raise InputError(f"INTERVAL_DAYS must be a positive number of days, not {interval_days}.")
    first, last = dates[0], dates[-1]
    n = (last - first).days // interval_days
    if anchor == "end":
        return [last - dt.timedelta(days=interval_days * k) for k in range(n, -1, -1)]
    return [first + dt.timedelta(days=interval_days * k) for k in range(n + 1)]


def interpolation_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(len(dst), len(src)) weights of linear interpolation in `src` (clamped at both ends)."""
    w = np.zeros((len(dst), len(src)), dtype="float64")
    if len(src) == 1:
        w[:, 0] = 1.0
        return w
    j = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, len(src) - 2)
    t = np.clip((dst - src[j]) / (src[j + 1] - src[j]), 0.0, 1.0)
    rows = np.arange(len(dst))
    w[rows, j] = 1.0 - t
    w[rows, j + 1] += t
    return w


def interpolate_time(data: np.ndarray, dates: Sequence[dt.date], new_dates: Sequence[dt.date]) -> np.ndarray:
    """Values of each pixel of `data` (T, ...) at `new_dates`, linear in time over its valid samples.

    NaN samples are ignored (gaps are filled from the neighbours; before the first / after the last
    valid sample the end value is held). A pixel without any valid sample stays NaN.
    """
    data = np.asarray(data, dtype="float32")
    if data.shape[0] != len(dates):
        raise ValueError(f"{data.shape[0]} bands but {len(dates)} dates")
    src = to_ordinal(dates)
    dst = to_ordinal(new_dates)
    flat = data.reshape(data.shape[0], -1)
    out = np.full((len(dst), flat.shape[1]), np.nan, dtype="float32")
    valid = np.isfinite(flat)
    full = valid.all(axis=0)
    if full.any():
        out[:, full] = (interpolation_matrix(src, dst) @ flat[:, full].astype("float64")).astype("float32")
    partial = np.flatnonzero(~full & valid.any(axis=0))
    if partial.size:
        # one matrix per distinct pattern of valid samples
        patterns, inverse = np.unique(valid[:, partial].T, axis=0, return_inverse=True)
        for k, pat in enumerate(patterns):
            cols = partial[inverse.ravel() == k]
            w = interpolation_matrix(src[pat], dst)
            out[:, cols] = (w @ flat[pat][:, cols].astype("float64")).astype("float32")
    return out.reshape((len(dst),) + data.shape[1:])


def fill_gaps(data: np.ndarray, dates: Sequence[dt.date]) -> np.ndarray:
    """`data` with NaN samples of partly valid pixels filled linearly in time."""
    return interpolate_time(data, dates, dates)


def resample_regular(
    data: np.ndarray, dates: Sequence[dt.date], interval_days: int, anchor: str = "end"
) -> tuple[np.ndarray, list[dt.date]]:
    """`data` (T, H, W) on a regular grid of `interval_days` (see :func:`regular_grid`)."""
    grid = regular_grid(dates, interval_days, anchor)
    if len(grid) < 2:
        raise InputError(
            f"The stack spans {(dates[-1] - dates[0]).days} days: too short for an interval of "
            f"{interval_days} days."
        )
    return interpolate_time(data, dates, grid), grid
