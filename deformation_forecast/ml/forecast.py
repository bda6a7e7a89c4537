"""Iterative forecasting (Fig. 8) and the worker's ``forecast`` command.

Each predicted frame joins the input window for the next step; frames are compressed with the
observed extremes and scaled back with the GRU's predicted extremes of each future date (eq. 4).
A "trend" network (the default, ml/trend.py) predicts in mm over the linear trend fitted at the
forecast origin; the frames it feeds back are compressed with the GRU's predicted extremes.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import numpy as np

from . import protocol
from .compressor import ExtremumGRU, compress, decompress, frame_extremes
from .dataset import predict_frames


def iterate_compressed(
    net, window: np.ndarray, steps: int, tile: int, overlap: int, mask: np.ndarray, on_step=None
) -> np.ndarray:
    """`steps` compressed frames after the (T, H, W) compressed `window`, each fed back as input."""
    win = np.where(mask, np.nan_to_num(window, nan=0.0), 0.0).astype("float32")
    out = []
    for k in range(steps):
        nxt = predict_frames(net, win[None], tile, overlap)[0]
        nxt = np.where(mask, nxt, 0.0).astype("float32")
        out.append(nxt)
        win = np.concatenate([win[1:], nxt[None]], axis=0)
        if on_step:
            on_step(k + 1)
    return np.stack(out) if out else np.zeros((0,) + window.shape[1:], "float32")


def iterate_trend(
    net,
    hist: np.ndarray,
    comp_win: np.ndarray,
    pmin: np.ndarray,
    pmax: np.ndarray,
    steps: int,
    tile: int,
    overlap: int,
    mask: np.ndarray,
    trend: dict[str, Any],
    on_step=None,
) -> np.ndarray:
    """`steps` frames (mm) after the observed (n, H, W) `hist` (mm) with a "trend" network.

    The line is fitted at every pixel to the last ``trend_window`` dates of `hist` and extrapolated;
    `comp_win` holds the last ``time_step`` observed frames compressed by eq. 3; predicted frames
    are compressed with the GRU's predicted extremes (`pmin`, `pmax`) before they are fed back.
    """
    from .trend import fit_line, window_inputs

    ts = comp_win.shape[0]
    z = np.where(mask, np.nan_to_num(hist, nan=0.0), 0.0).astype("float32")
    last, slope = fit_line(z[-int(trend["trend_window"]) :])
    mm_win = z[-ts:]
    cwin = np.where(mask, np.nan_to_num(comp_win, nan=0.0), 0.0).astype("float32")
    rs, fs = float(trend["residual_scale"]), float(trend["frame_scale"])
    out = []
    for k in range(1, steps + 1):
        x = window_inputs(cwin, mm_win, last + slope * (k - 1), slope, rs)
        line = (last + slope * k) / fs
        nxt = predict_frames(net, x[None], tile, overlap, trend=line[None])[0] * fs
        nxt = np.where(mask, nxt, 0.0).astype("float32")
        out.append(nxt)
        c = compress(nxt[None], pmin[k - 1 : k], pmax[k - 1 : k])
        cwin = np.concatenate([cwin[1:], np.where(mask, c, 0.0)], axis=0)
        mm_win = np.concatenate([mm_win[1:], nxt[None]], axis=0)
        if on_step:
            on_step(k)
    return np.stack(out) if out else np.zeros((0,) + hist.shape[1:], "float32")


def forecast_stack(
    net,
    gru: ExtremumGRU,
    reg: np.ndarray,
    time_step: int,
    steps: int,
    tile: int,
    overlap: int,
    on_step=None,
    trend: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forecast `steps` frames (mm) after the regular stack `reg`; returns (frames, fmin, fmax).

    `trend` ({trend_window, residual_scale, frame_scale} of the model): a "trend" network."""
    mask = np.isfinite(reg).all(axis=0)
    fmin, fmax = frame_extremes(reg)
    comp = compress(reg[-time_step:], fmin[-time_step:], fmax[-time_step:])
    pmin, pmax = gru.iterate(fmin, fmax, steps)
    if trend:
        frames = iterate_trend(net, reg, comp, pmin, pmax, steps, tile, overlap, mask, trend, on_step)
    else:
        frames_c = iterate_compressed(net, comp, steps, tile, overlap, mask, on_step)
        frames = decompress(frames_c, pmin, pmax)
    frames[:, ~mask] = np.nan
    return frames, pmin, pmax


def trend_params(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The trend settings of a model's metadata, None for a network without the trend residual."""
    if meta.get("residual") != "trend":
        return None
    return {k: meta[k] for k in ("trend_window", "residual_scale", "frame_scale")}


def annual_rates(
    last_obs: np.ndarray, last_date: dt.date, frames: np.ndarray, dates: list[dt.date]
) -> tuple[np.ndarray, list[dt.date]]:
    """Annual rate (mm/yr) per forecast year: the change over each year of the forecast, per year.

    Year k covers (k-1, k] years after the last observation (a date within half a step of a
    boundary closes the year); the band date is the last forecast date in it. A trailing partial
    year is rated over its own length.
    """
    days = np.array([(d - last_date).days for d in dates], dtype="float64")
    # a date within half a step of a year boundary belongs to the year it closes
    tol = 0.5 * float(np.median(np.diff(np.concatenate([[0.0], days]))))
    n_years = max(1, int(math.ceil((days[-1] - tol) / 365.25 - 1e-9)))
    rates, labels = [], []
    prev, prev_day = last_obs, 0.0
    for k in range(1, n_years + 1):
        lo = (k - 1) * 365.25 + tol if k > 1 else 0.0
        hi = k * 365.25 + tol if k < n_years else np.inf
        inside = np.flatnonzero((days > lo) & (days <= hi))
        if not inside.size:
            continue
        j = inside[-1]
        rates.append((frames[j] - prev) / ((days[j] - prev_day) / 365.25))
        labels.append(dates[j])
        prev, prev_day = frames[j], days[j]
    return np.stack(rates).astype("float32"), labels


def run_forecast(params: dict[str, Any]) -> dict[str, Any]:
    """Worker command ``forecast``: INPUT stack + MODEL -> OUTPUT stack (+ OUTPUT_RATE)."""
    from ..core.stack import read_info, read_stack, write_stack
    from .dataset import regularize
    from .device import configure_device

    device = configure_device(params.get("device", "auto"))
    protocol.message(f"Device: {device['name']} ({device['reason']})")
    import tensorflow as tf

    from .modelfile import check_fits, load_model

    t0 = time.monotonic()
    net, gru_model, meta = load_model(params["model"])
    info = read_info(params["input"])
    stack = read_stack(params["input"])
    interval = int(meta["interval_days"])
    reg, grid, _ = regularize(stack, info.dates, interval)
    check_fits(meta, info, len(reg))
    steps = int(params.get("steps") or 0) or int(round(2 * 365.25 / interval))
    gru = ExtremumGRU.from_params(meta["compressor"], gru_model)
    tile, overlap, ts = int(meta["tile"]), int(meta["overlap"]), int(meta["time_step"])
    protocol.progress(
        5, f"Model {meta['architecture']} (interval {interval} d, time step {ts}); {steps} steps"
    )

    def on_step(k):
        protocol.progress(5 + 90 * k / steps, f"step {k}/{steps}")

    with tf.device(device["tf_device"]):
        frames, pmin, pmax = forecast_stack(
            net, gru, reg, ts, steps, tile, overlap, on_step, trend=trend_params(meta)
        )
    last = grid[-1]
    dates = [last + dt.timedelta(days=interval * (k + 1)) for k in range(steps)]
    tags = {"SOURCE": "deformation_forecast forecast", "MODEL": meta["architecture"]}
    write_stack(params["output"], frames, dates, info.crs, info.transform, units=info.units, tags=tags)
    out: dict[str, Any] = {
        "output": params["output"],
        "dates": [d.isoformat() for d in dates],
        "steps": steps,
        "interval_days": interval,
        "device": device["name"],
        "seconds": time.monotonic() - t0,
        "min_forecast": float(np.nanmin(frames[-1])) if np.isfinite(frames[-1]).any() else math.nan,
    }
    if params.get("output_rate"):
        rates, labels = annual_rates(reg[-1], last, frames, dates)
        write_stack(params["output_rate"], rates, labels, info.crs, info.transform, units="mm/yr", tags=tags)
        out["output_rate"] = params["output_rate"]
        out["rate_dates"] = [d.isoformat() for d in labels]
    protocol.progress(100, f"Forecast of {steps} dates up to {dates[-1].isoformat()} written")
    return out
