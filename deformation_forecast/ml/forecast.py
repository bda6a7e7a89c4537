"""Iterative forecasting (Fig. 8) and the worker's ``forecast`` command.

Each predicted frame joins the input window for the next step; frames are compressed with the
observed extremes and scaled back with the GRU's predicted extremes of each future date (eq. 4).
A "trend" network (the default, ml/trend.py) predicts in mm over the linear trend fitted at the
forecast origin; the frames it feeds back are compressed with the GRU's predicted extremes.

``run_forecast`` works in bounded memory (issue 8, core/budget.py): a first pass streams the stack
by windows (block-aligned row strips), resamples each to the model's interval, accumulates the
per-date extremes of ALL dates (the GRU needs the whole series) and keeps only the last dates the
network needs (``time_step``, and ``trend_window`` for a trend network); then the raster is
forecast block by block (ml/blocks.py: cores with a halo, blended with weights that sum to one) and
written window by window.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import time
from typing import Any

import numpy as np

from . import protocol
from .blocks import predict_tiles
from .compressor import ExtremumGRU, compress, decompress, frame_extremes


def iterate_compressed(
    net,
    window: np.ndarray,
    steps: int,
    tile: int,
    overlap: int,
    mask: np.ndarray,
    on_step=None,
    tile_batch: int = 32,
) -> np.ndarray:
    """`steps` compressed frames after the (T, H, W) compressed `window`, each fed back as input."""
    win = np.where(mask, np.nan_to_num(window, nan=0.0), 0.0).astype("float32")
    out = np.zeros((steps,) + window.shape[1:], "float32")
    for k in range(steps):
        nxt = predict_tiles(net, win[None], tile, overlap, tile_batch)[0]
        out[k] = np.where(mask, nxt, 0.0)
        win = np.concatenate([win[1:], out[k : k + 1]], axis=0)
        if on_step:
            on_step(k + 1)
    return out


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
    tile_batch: int = 32,
) -> np.ndarray:
    """`steps` frames (mm) after the observed (n, H, W) `hist` (mm) with a "trend" network.

    The line is fitted at every pixel to the last ``trend_window`` dates of `hist` and extrapolated;
    `comp_win` holds the last ``time_step`` observed frames compressed by eq. 3; predicted frames
    are compressed with the GRU's predicted extremes (`pmin`, `pmax`) before they are fed back.
    """
    from .trend import fit_line, window_inputs

    ts = comp_win.shape[0]
    z = np.array(hist, dtype="float32")  # a copy, masked in place
    z[:, ~mask] = 0.0
    last, slope = fit_line(z[-int(trend["trend_window"]) :])
    mm_win = z[-ts:]
    cwin = np.where(mask, np.nan_to_num(comp_win, nan=0.0), 0.0).astype("float32")
    rs, fs = float(trend["residual_scale"]), float(trend["frame_scale"])
    out = np.zeros((steps,) + hist.shape[1:], "float32")
    for k in range(1, steps + 1):
        x = window_inputs(cwin, mm_win, last + slope * (k - 1), slope, rs)
        line = (last + slope * k) / fs
        nxt = predict_tiles(net, x[None], tile, overlap, tile_batch, trend=line[None])[0] * fs
        del x
        out[k - 1] = np.where(mask, nxt, 0.0)
        nxt = out[k - 1]
        c = compress(nxt[None], pmin[k - 1 : k], pmax[k - 1 : k])
        cwin = np.concatenate([cwin[1:], np.where(mask, c, 0.0)], axis=0)
        mm_win = np.concatenate([mm_win[1:], nxt[None]], axis=0)
        if on_step:
            on_step(k)
    return out


def forecast_window(
    net,
    hist: np.ndarray,
    fmin: np.ndarray,
    fmax: np.ndarray,
    pmin: np.ndarray,
    pmax: np.ndarray,
    time_step: int,
    steps: int,
    tile: int,
    overlap: int,
    on_step=None,
    trend: dict[str, Any] | None = None,
    tile_batch: int = 32,
) -> np.ndarray:
    """Forecast `steps` frames (mm) after `hist` (n, H, W): the last n regular dates of a stack or
    of a crop of it (n >= time_step, and >= trend_window for a trend network), with the extremes
    of the whole stack: observed `fmin`/`fmax` (whose last n entries are the dates of `hist`) and
    the GRU's predicted `pmin`/`pmax` of the forecast dates. NaN where `hist` has NaN."""
    mask = np.isfinite(hist).all(axis=0)
    comp = compress(hist[-time_step:], fmin[-time_step:], fmax[-time_step:])
    if trend:
        frames = iterate_trend(
            net, hist, comp, pmin, pmax, steps, tile, overlap, mask, trend, on_step, tile_batch
        )
    else:
        frames_c = iterate_compressed(net, comp, steps, tile, overlap, mask, on_step, tile_batch)
        frames = decompress(frames_c, pmin, pmax)
    frames[:, ~mask] = np.nan
    return frames


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
    """Forecast `steps` frames (mm) after the regular stack `reg`, held whole in memory; returns
    (frames, fmin, fmax) (the GRU's predicted extremes).

    `trend` ({trend_window, residual_scale, frame_scale} of the model): a "trend" network."""
    fmin, fmax = frame_extremes(reg)
    pmin, pmax = gru.iterate(fmin, fmax, steps)
    frames = forecast_window(
        net, reg, fmin, fmax, pmin, pmax, time_step, steps, tile, overlap, on_step, trend
    )
    return frames, pmin, pmax


def forecast_blocks(
    net,
    read_hist,
    plan,
    fmin: np.ndarray,
    fmax: np.ndarray,
    pmin: np.ndarray,
    pmax: np.ndarray,
    time_step: int,
    steps: int,
    tile: int,
    overlap: int,
    trend: dict[str, Any] | None,
    sink,
    on_step=None,
    tile_batch: int = 32,
    baseline: dict[str, Any] | None = None,
) -> None:
    """Forecast a raster block by block (ml/blocks.py `plan`): ``read_hist(window)`` gives the kept
    regular dates (n, h, w) of a block's region; each block is forecast whole (all steps) with
    :func:`forecast_window`, the halos are blended, and every finished piece goes to
    ``sink(window, frames (steps, h, w))``. ``on_step(block index, step)`` reports progress.
    `baseline` ({method, trend_window}): forecast with that simple method instead of the network."""
    from .blocks import BlendWriter

    blender = BlendWriter(plan, steps, sink)
    for b, (i, j, win) in enumerate(plan.blocks()):
        hist = read_hist(win)
        cb = (lambda k, b=b: on_step(b, k)) if on_step else None
        if baseline:
            frames = baseline_frames(hist, steps, baseline)
            if cb:
                cb(steps)
        else:
            frames = forecast_window(
                net, hist, fmin, fmax, pmin, pmax, time_step, steps, tile, overlap, cb, trend, tile_batch
            )
        del hist
        blender.add(i, j, frames)
        del frames
    blender.finish()


# What the worker process holds before any pixel: Python, numpy, GDAL and TensorFlow (~580 MB RSS
# after ``import tensorflow`` on the CPU), the model, its traced inference and TensorFlow's pools
# (~400 MB more at the first network call), measured with bench/bench_forecast_large.py.
WORKER_MB = 1024
# The least memory for pixels: below it the blocks get so small that their halos multiply the work,
# and the first pass would decode the file's tiles several times.
MIN_DATA_MB = 256
# The first pass resamples a window of all bands: the read float32 pixels, their float32 and
# float64 copies inside interpolate_time, the float64 product and the float32 result (~7.5 copies).
PASS_COPIES = 8
# Windows of the first pass need not be large to read efficiently (whole block rows of the file).
PASS_MAX_BYTES = 64 * 2**20


def window_bytes(budget: int, info=None) -> int:
    """Bytes of raw pixels (all bands) one window of the first pass may hold: at most
    PASS_MAX_BYTES, at least one block of the file (all bands), so no block is decoded twice."""
    least = 2**20
    if info is not None and all(getattr(info, "block", (0, 0))):
        least = max(least, int(info.block[0]) * int(info.block[1]) * info.count * 4)
    return int(max(least, min(PASS_MAX_BYTES, budget / PASS_COPIES)))


def kept_dates(meta: dict[str, Any], n_regular: int) -> int:
    """How many of the last regular dates the network needs at the forecast origin."""
    trend = trend_params(meta)
    need = max(int(meta["time_step"]), int(trend["trend_window"]) if trend else 0, 1)
    return int(min(need, n_regular))


def stream_regular(
    path: str,
    info,
    interval: int,
    keep: int,
    tail,
    window_bytes: int,
    on_window=None,
    scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One pass over the stack by windows of at most `window_bytes` (all bands; full-width strips
    of the file's block rows when they fit): resample each window to the regular grid, return the
    per-date (fmin, fmax) over all pixels and all regular dates and the number of valid pixels, and
    write the last `keep` dates to `tail`. `scale` (H, W), when given, receives each pixel's
    dispersion at the forecast origin (core/intervals.py, for the prediction intervals)."""
    from ..core.intervals import pixel_scale
    from ..core.stack import iter_windows, read_stack
    from .dataset import regularize

    fmin = fmax = None
    n_valid = 0
    windows = iter_windows(info, window_bytes)
    for k, win in enumerate(windows):
        raw = read_stack(path, window=win)
        reg, _, _ = regularize(raw, info.dates, interval)
        del raw
        flat = reg.reshape(reg.shape[0], -1)
        valid = np.isfinite(flat).all(axis=0)
        n_valid += int(valid.sum())
        if valid.any():
            lo = flat[:, valid].min(axis=1).astype("float64")
            hi = flat[:, valid].max(axis=1).astype("float64")
            fmin = lo if fmin is None else np.minimum(fmin, lo)
            fmax = hi if fmax is None else np.maximum(fmax, hi)
        tail.write(win, reg[-keep:])
        if scale is not None:
            r0, c0 = int(win.row_off), int(win.col_off)
            scale[r0 : r0 + int(win.height), c0 : c0 + int(win.width)] = pixel_scale(reg)
        del reg, flat
        if on_window:
            on_window(k + 1, len(windows))
    return fmin, fmax, n_valid


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


METHODS = ("network", "best", "persistence", "trend")


def baseline_frames(hist: np.ndarray, steps: int, baseline: dict[str, Any]) -> np.ndarray:
    """`steps` frames after `hist` (n, H, W) by persistence (the last date held) or the per-pixel
    line over the last ``trend_window`` dates extrapolated; NaN where `hist` has NaN."""
    from .trend import fit_line, line_at

    mask = np.isfinite(hist).all(axis=0)
    if baseline["method"] == "persistence":
        frames = np.repeat(hist[-1:], steps, axis=0).astype("float32")
    else:
        last, slope = fit_line(np.where(mask, hist[-int(baseline["trend_window"]) :], 0.0))
        frames = line_at(last, slope, np.arange(1, steps + 1)).astype("float32")
    frames[:, ~mask] = np.nan
    return frames


def resolve_method(params: dict[str, Any], meta: dict[str, Any]) -> str:
    """The method ``params["method"]`` asks for (network | best | persistence | trend), "best"
    resolved on the model's iterative backtest; says in one line when the network loses there."""
    from ..core.errors import InputError

    method = params.get("method") or "network"
    if method not in METHODS:
        raise InputError(f"METHOD: {method!r} is not one of {', '.join(METHODS)}.")
    bt = meta.get("backtest")
    if not bt:
        if method != "network":
            raise InputError(
                f"METHOD: the model {os.path.basename(params['model'])!r} has no iterative backtest (trained "
                "by an older plugin or without test dates); forecast with the network or train it again."
            )
        return method
    maes = {k: float(bt[f"{k}_overall_mae"]) for k in ("network", "persistence", "trend")}
    best = min(maes, key=lambda k: maes[k] if math.isfinite(maes[k]) else math.inf)
    if best != "network":
        protocol.warning(
            f"On its iterative backtest the network (MAE {maes['network']:.4g}) does not beat {best} (MAE "
            f"{maes[best]:.4g}); METHOD = best forecasts with {best}."
        )
    return best if method == "best" else method


def interval_setup(params: dict[str, Any], meta: dict[str, Any], steps: int) -> dict[str, Any] | None:
    """The prediction intervals asked for by ``output_lower``/``output_upper`` at ``confidence``
    (default 0.9): {confidence, quantiles (steps,), floor, calibrated (horizons)}; None when no bound
    is asked for. InputError when the model carries no calibration or the level is out of range."""
    from ..core.errors import InputError
    from ..core.intervals import check_confidence, horizon_quantiles

    if not (params.get("output_lower") or params.get("output_upper")):
        return None
    confidence = float(params.get("confidence", 0.9))
    try:
        check_confidence(confidence)
    except ValueError as e:
        raise InputError(str(e)) from e
    method = params.get("resolved_method", "network")
    if method == "network":
        cal = meta.get("calibration")
    else:
        cal = ((meta.get("backtest") or {}).get("calibration") or {}).get(method)
    name = os.path.basename(params["model"])
    if not cal:
        raise InputError(
            f"OUTPUT_LOWER/OUTPUT_UPPER: the model {name!r} carries no interval calibration (it was "
            "trained by an older plugin, or without test dates). Train it again with TEST_COUNT > 0 "
            "to get prediction intervals, or leave OUTPUT_LOWER and OUTPUT_UPPER empty."
        )
    q = horizon_quantiles(cal, confidence, steps)
    if not np.isfinite(q).all():
        raise InputError(
            f"CONFIDENCE: the model {name!r} was calibrated on too few test pixels for a "
            f"{confidence:.0%} band; lower CONFIDENCE or train with more test dates or pixels."
        )
    n_cal = len(cal["quantiles"])
    if steps > n_cal:
        protocol.warning(
            f"Prediction intervals are calibrated for horizons 1..{n_cal} (the model's test dates); "
            f"beyond them the band grows with the square root of the horizon, not calibrated."
        )
    return {"confidence": confidence, "quantiles": q, "floor": float(cal["floor"]), "calibrated": n_cal}


def run_forecast(params: dict[str, Any]) -> dict[str, Any]:
    """Worker command ``forecast``: INPUT stack + MODEL -> OUTPUT stack (+ OUTPUT_RATE).

    Optional params: ``memory_budget_mb`` (core/budget.py), ``block_size`` (block cores in pixels,
    0 = as large as the budget allows)."""
    from ..core.budget import budget_mb, gdal_env, overhead_bytes, working_bytes
    from ..core.errors import InputError
    from ..core.resample import regular_grid
    from ..core.stack import StackWriter, read_info
    from .blocks import (
        TailStore,
        bytes_per_pixel,
        choose_tile_batch,
        plan_blocks,
        tile_activation_bytes,
    )
    from .device import configure_device

    device = configure_device(params.get("device", "auto"))
    protocol.message(f"Device: {device['name']} ({device['reason']})")
    import tensorflow as tf

    from .modelfile import check_fits, load_model

    t0 = time.monotonic()
    mb = budget_mb(params.get("memory_budget_mb"))
    net, gru_model, meta = load_model(params["model"])
    info = read_info(params["input"])
    interval = int(meta["interval_days"])
    grid = regular_grid(info.dates, interval, anchor="end")
    check_fits(meta, info, len(grid))
    steps = int(params.get("steps") or 0) or int(round(2 * 365.25 / interval))
    gru = ExtremumGRU.from_params(meta["compressor"], gru_model)
    tile, overlap, ts = int(meta["tile"]), int(meta["overlap"]), int(meta["time_step"])
    trend = trend_params(meta)
    keep = kept_dates(meta, len(grid))
    method = resolve_method(params, meta)
    baseline: dict[str, Any] | None = None
    if method != "network":
        window = int(meta["backtest"]["trend_window"])
        baseline = {"method": method, "trend_window": window}
        keep = int(min(max(keep, window), len(grid)))
        protocol.message(f"METHOD: forecasting with {method} (the network is not used)")
    bands = interval_setup(dict(params, resolved_method=method), meta, steps)

    # the budget: TensorFlow itself (WORKER_MB, beyond what core.budget sets aside), the network's
    # activations, the kept dates (in memory when they take at most a third), the windows of the
    # first pass, the blocks' forecasts
    usable = working_bytes(1.0, mb) - max(0, WORKER_MB * 2**20 - overhead_bytes(mb))
    if usable < MIN_DATA_MB * 2**20:
        protocol.warning(
            f"The memory budget of {mb:.0f} MB is less than the forecast needs at least: about "
            f"{WORKER_MB} MB for TensorFlow and the model plus {MIN_DATA_MB} MB of pixels. Forecasting "
            "with that minimum; raise the budget (Settings > Options > Deformation forecast or "
            "DEFORMATION_FORECAST_MEMORY_MB) to hold it."
        )
        usable = MIN_DATA_MB * 2**20
    tile_batch = choose_tile_batch(usable, tile, ts, int(meta.get("width") or 8))
    usable -= tile_batch * tile_activation_bytes(tile, ts, int(meta.get("width") or 8))
    tail_bytes = 4 * keep * info.height * info.width
    in_memory = tail_bytes <= usable / 3
    rest = usable - (tail_bytes if in_memory else 0)
    plan = plan_blocks(
        info.height,
        info.width,
        tile,
        overlap,
        rest,
        bytes_per_pixel(keep, steps, ts),
        steps,
        int(params.get("block_size") or 0),
    )
    last = grid[-1]
    dates = [last + dt.timedelta(days=interval * (k + 1)) for k in range(steps)]
    zero = np.zeros((1, 1), "float32")
    _, rate_labels = annual_rates(zero, last, np.zeros((steps, 1, 1), "float32"), dates)
    protocol.progress(
        2,
        f"Model {meta['architecture']} (interval {interval} d, time step {ts}); {steps} steps; "
        f"{plan.n_blocks} block(s) of at most {' x '.join(map(str, plan.largest_region()))} pixels "
        f"(halo {plan.halo}), {tile_batch} tiles per network call, within a memory budget of {mb:.0f} MB; "
        f"the last {keep} dates kept " + ("in memory" if in_memory else "in a temporary file"),
    )
    tags = {"SOURCE": "deformation_forecast forecast", "MODEL": meta["architecture"], "METHOD": method}
    n_blocks = plan.n_blocks
    stats = {"min_forecast": math.nan}
    out_dir = os.path.dirname(os.path.abspath(params["output"]))
    with contextlib.ExitStack() as stack:
        stack.enter_context(gdal_env(mb))
        tail = stack.enter_context(TailStore(keep, info.height, info.width, in_memory, out_dir))

        def on_window(k, n):
            protocol.progress(2 + 18 * k / n, f"Reading and resampling: window {k}/{n}")

        scale = np.full((info.height, info.width), np.nan, "float32") if bands else None
        fmin, fmax, n_valid = stream_regular(
            params["input"], info, interval, keep, tail, window_bytes(rest, info), on_window, scale
        )
        if not n_valid:
            raise InputError("INPUT: the stack has no pixel with a value at any date; nothing to forecast.")
        with tf.device(device["tf_device"]):
            pmin, pmax = gru.iterate(fmin, fmax, steps)
        writer = stack.enter_context(
            StackWriter(
                params["output"], dates, info.crs, info.transform, info.width, info.height, info.units, tags
            )
        )
        rate_writer = None
        if params.get("output_rate"):
            rate_writer = stack.enter_context(
                StackWriter(
                    params["output_rate"],
                    rate_labels,
                    info.crs,
                    info.transform,
                    info.width,
                    info.height,
                    "mm/yr",
                    tags,
                )
            )

        bound_writers = open_bound_writers(stack, params, bands, dates, info, tags)

        def sink(window, frames):
            writer.write(frames, window)
            if bands:
                write_bounds(bound_writers, frames, window, scale, bands)
            if np.isfinite(frames[-1]).any():
                m = float(np.nanmin(frames[-1]))
                stats["min_forecast"] = (
                    m if math.isnan(stats["min_forecast"]) else min(m, stats["min_forecast"])
                )
            if rate_writer is not None:
                rates, _ = annual_rates(tail.read_last(window), last, frames, dates)
                rate_writer.write(rates, window)

        def on_step(b, k):
            where = f", block {b + 1}/{n_blocks}" if n_blocks > 1 else ""
            protocol.progress(20 + 78 * (b * steps + k) / (n_blocks * steps), f"step {k}/{steps}{where}")

        with tf.device(device["tf_device"]):
            forecast_blocks(
                net,
                tail.read,
                plan,
                fmin,
                fmax,
                pmin,
                pmax,
                ts,
                steps,
                tile,
                overlap,
                trend,
                sink,
                on_step,
                tile_batch,
                baseline,
            )
    out: dict[str, Any] = {
        "output": params["output"],
        "dates": [d.isoformat() for d in dates],
        "steps": steps,
        "interval_days": interval,
        "device": device["name"],
        "seconds": time.monotonic() - t0,
        "min_forecast": stats["min_forecast"],
        "blocks": n_blocks,
        "memory_budget_mb": mb,
        "kept_in_memory": in_memory,
        "tile_batch": tile_batch,
        "method": method,
    }
    if params.get("output_rate"):
        out["output_rate"] = params["output_rate"]
        out["rate_dates"] = [d.isoformat() for d in rate_labels]
    if bands:
        out.update({k: params[k] for k in ("output_lower", "output_upper") if params.get(k)})
        out["confidence"] = bands["confidence"]
        out["calibrated_horizons"] = bands["calibrated"]
    protocol.progress(100, f"Forecast of {steps} dates up to {dates[-1].isoformat()} written")
    return out


def open_bound_writers(stack, params, bands, dates, info, tags) -> dict[str, Any]:
    """StackWriters of the asked-for bounds ("lower"/"upper"), tagged so that a reader (the
    time-series dock) knows them: INTERVAL = lower | upper, CONFIDENCE, INTERVAL_METHOD."""
    from ..core.stack import StackWriter

    writers: dict[str, Any] = {}
    if not bands:
        return writers
    for side in ("lower", "upper"):
        path = params.get(f"output_{side}")
        if not path:
            continue
        side_tags = {
            **tags,
            "INTERVAL": side,
            "CONFIDENCE": f"{bands['confidence']:.4g}",
            "INTERVAL_METHOD": "split-conformal, scaled by each pixel's dispersion",
            "INTERVAL_CALIBRATED_STEPS": str(int(bands["calibrated"])),
        }
        writers[side] = stack.enter_context(
            StackWriter(path, dates, info.crs, info.transform, info.width, info.height, info.units, side_tags)
        )
    return writers


def write_bounds(writers: dict[str, Any], frames: np.ndarray, window, scale: np.ndarray, bands) -> None:
    """Write the lower/upper bounds of a finished piece of the forecast (core/intervals.py)."""
    from ..core.intervals import bounds

    r0, c0 = int(window.row_off), int(window.col_off)
    s = scale[r0 : r0 + int(window.height), c0 : c0 + int(window.width)]
    lower, upper = bounds(frames, s, bands["quantiles"], bands["floor"])
    for side, arr in (("lower", lower), ("upper", upper)):
        if side in writers:
            writers[side].write(arr, window)
