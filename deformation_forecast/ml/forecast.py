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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import jobs
from ..core.run import Run
from ..jobs import ForecastJob
from . import protocol
from .blocks import predict_tiles
from .compressor import ExtremumGRU, compress, decompress, frame_extremes
from .modelfile import ModelMeta, TrendParams

OnStep = Callable[[int], None]


@dataclass(frozen=True)
class Predictor:
    """A trained network and how it is called: its input window (``time_step`` dates), its tiles
    (``tile`` with ``overlap``, ``tile_batch`` per call) and, for a "trend" network (ml/trend.py),
    its trend settings, and ``line``: the base line of its forecast (ml/trend.py ``stable_line``:
    {"weighted": true, "shrink": k}; None: the plain least-squares line, model files before it)."""

    net: Any
    time_step: int
    tile: int
    overlap: int
    trend: TrendParams | None = None
    tile_batch: int = 32
    line: Mapping[str, Any] | None = None

    @classmethod
    def of_model(cls, net: Any, meta: ModelMeta, tile_batch: int = 32) -> Predictor:
        line = meta.trend_line if meta.trend else None
        return cls(net, int(meta.time_step), int(meta.tile), int(meta.overlap), meta.trend, tile_batch, line)

    def predict(self, x: np.ndarray, line: np.ndarray | None = None) -> np.ndarray:
        """The next frame after the window `x` (T, H, W[, C]) (ml/blocks.py predict_tiles)."""
        trend = None if line is None else line[None]
        return predict_tiles(self.net, x[None], self.tile, self.overlap, self.tile_batch, trend=trend)[0]


@dataclass(frozen=True)
class Extremes:
    """Per-date extremes for eqs. 3/4: observed (`fmin`, `fmax`, whose last entries are the dates of
    the window forecast from) and the GRU's predictions for the forecast dates (`pmin`, `pmax`);
    `noise`: the per-date noise variances of the last ``trend_window`` dates over the whole raster
    (ml/trend.py ``date_noise``; None: each block's own)."""

    fmin: np.ndarray
    fmax: np.ndarray
    pmin: np.ndarray
    pmax: np.ndarray
    noise: np.ndarray | None = None


def iterate_compressed(
    model: Predictor, window: np.ndarray, steps: int, mask: np.ndarray, on_step: OnStep | None = None
) -> np.ndarray:
    """`steps` compressed frames after the (T, H, W) compressed `window`, each fed back as input."""
    win = np.where(mask, np.nan_to_num(window, nan=0.0), 0.0).astype("float32")
    out = np.zeros((steps,) + window.shape[1:], "float32")
    for k in range(steps):
        nxt = model.predict(win)
        out[k] = np.where(mask, nxt, 0.0)
        win = np.concatenate([win[1:], out[k : k + 1]], axis=0)
        if on_step:
            on_step(k + 1)
    return out


def iterate_trend(
    model: Predictor,
    hist: np.ndarray,
    comp_win: np.ndarray,
    predicted: tuple[np.ndarray, np.ndarray],
    steps: int,
    mask: np.ndarray,
    on_step: OnStep | None = None,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """`steps` frames (mm) after the observed (n, H, W) `hist` (mm) with a "trend" network.

    The line is fitted at every pixel to the last ``trend_window`` dates of `hist` and extrapolated;
    `comp_win` holds the last ``time_step`` observed frames compressed by eq. 3; predicted frames
    are compressed with the GRU's predicted extremes (`predicted` = (pmin, pmax)) before they are
    fed back. With ``model.line`` the network's frames are then moved from that line onto the
    weighted, shrunk line (:func:`base_shift`; `noise`: the per-date variances, None: `hist`'s own).
    """
    from .trend import fit_line, window_inputs

    trend = model.trend
    assert trend is not None
    pmin, pmax = predicted
    ts = comp_win.shape[0]
    z = np.array(hist, dtype="float32")  # a copy, masked in place
    z[:, ~mask] = 0.0
    last, slope = fit_line(z[-int(trend.trend_window) :])
    mm_win = z[-ts:]
    cwin = np.where(mask, np.nan_to_num(comp_win, nan=0.0), 0.0).astype("float32")
    rs, fs = float(trend.residual_scale), float(trend.frame_scale)
    out = np.zeros((steps,) + hist.shape[1:], "float32")
    for k in range(1, steps + 1):
        x = window_inputs(cwin, mm_win, last + slope * (k - 1), slope, rs)
        nxt = model.predict(x, (last + slope * k) / fs) * fs
        del x
        out[k - 1] = np.where(mask, nxt, 0.0)
        nxt = out[k - 1]
        c = compress(nxt[None], pmin[k - 1 : k], pmax[k - 1 : k])
        cwin = np.concatenate([cwin[1:], np.where(mask, c, 0.0)], axis=0)
        mm_win = np.concatenate([mm_win[1:], nxt[None]], axis=0)
        if on_step:
            on_step(k)
    if model.line:
        out += np.where(mask, base_shift(model.line, z[-int(trend.trend_window) :], mask, steps, noise), 0.0)
    return out


def base_shift(
    line: Mapping[str, Any], hist: np.ndarray, mask: np.ndarray, steps: int, noise: np.ndarray | None = None
) -> np.ndarray:
    """(steps, H, W): the forecast's base line (ml/trend.py ``stable_line``: weighted by the dates'
    noise, its slope shrunk by ``line["shrink"]``) minus the plain least-squares line the network
    was given, at the forecast dates. The network predicts the residual over its line; on stable
    noisy ground that line's slope is noise, and extrapolating it is what the forecast must not do."""
    from .trend import date_noise, fit_line, line_at, stable_line

    if noise is None:
        noise = date_noise(hist[:, mask])[0]
    last0, slope0 = fit_line(hist)
    last1, slope1 = stable_line(hist, noise, float(line.get("shrink", 0.0)), mask)
    return line_at(last1 - last0, slope1 - slope0, np.arange(1, steps + 1)).astype("float32")


def forecast_window(
    model: Predictor, hist: np.ndarray, ext: Extremes, steps: int, on_step: OnStep | None = None
) -> np.ndarray:
    """Forecast `steps` frames (mm) after `hist` (n, H, W): the last n regular dates of a stack or
    of a crop of it (n >= time_step, and >= trend_window for a trend network), with the extremes
    of the whole stack (`ext`: observed, whose last n entries are the dates of `hist`, and the
    GRU's predictions of the forecast dates). NaN where `hist` has NaN."""
    ts = model.time_step
    mask = np.isfinite(hist).all(axis=0)
    comp = compress(hist[-ts:], ext.fmin[-ts:], ext.fmax[-ts:])
    if model.trend:
        frames = iterate_trend(model, hist, comp, (ext.pmin, ext.pmax), steps, mask, on_step, ext.noise)
    else:
        frames_c = iterate_compressed(model, comp, steps, mask, on_step)
        frames = decompress(frames_c, ext.pmin, ext.pmax)
    frames[:, ~mask] = np.nan
    return frames


def forecast_stack(
    model: Predictor, gru: ExtremumGRU, reg: np.ndarray, steps: int, on_step: OnStep | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forecast `steps` frames (mm) after the regular stack `reg`, held whole in memory; returns
    (frames, pmin, pmax) (the GRU's predicted extremes)."""
    fmin, fmax = frame_extremes(reg)
    pmin, pmax = gru.iterate(fmin, fmax, steps)
    frames = forecast_window(model, reg, Extremes(fmin, fmax, pmin, pmax), steps, on_step)
    return frames, pmin, pmax


@dataclass(frozen=True)
class ForecastPlan:
    """What :func:`forecast_blocks` forecasts: the network (or, with `baseline` = {method,
    trend_window}, that simple method instead), the blocks (ml/blocks.py BlockPlan), the extremes
    and the number of steps."""

    model: Predictor
    blocks: Any  # ml/blocks.py BlockPlan
    extremes: Extremes
    steps: int
    baseline: dict[str, Any] | None = None


def forecast_blocks(
    fp: ForecastPlan,
    read_hist: Callable[[Any], np.ndarray],
    sink: Callable[[Any, np.ndarray], None],
    on_step: Callable[[int, int], None] | None = None,
) -> None:
    """Forecast a raster block by block (``fp.blocks``): ``read_hist(window)`` gives the kept
    regular dates (n, h, w) of a block's region; each block is forecast whole (all steps) with
    :func:`forecast_window`, the halos are blended, and every finished piece goes to
    ``sink(window, frames (steps, h, w))``. ``on_step(block index, step)`` reports progress."""
    from .blocks import BlendWriter

    steps = fp.steps
    blender = BlendWriter(fp.blocks, steps, sink)
    for b, (i, j, win) in enumerate(fp.blocks.blocks()):
        hist = read_hist(win)
        cb = (lambda k, b=b: on_step(b, k)) if on_step else None
        if fp.baseline:
            frames = baseline_frames(hist, steps, fp.baseline)
            if cb:
                cb(steps)
        else:
            frames = forecast_window(fp.model, hist, fp.extremes, steps, cb)
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
    PASS_MAX_BYTES, at least one block of the file (all bands) so that no block is decoded twice,
    unless that block is more than the budget's share (`budget` / PASS_COPIES): a file of one
    compressed strip per band (a block of all bands is the whole stack) is then read in windows of
    that share, each decoding the strips again, within the budget (the log names the layout)."""
    share = budget / PASS_COPIES
    least = 2**20
    if info is not None and all(getattr(info, "block", (0, 0))):
        block = int(info.block[0]) * int(info.block[1]) * info.count * 4
        if block <= share:
            least = max(least, block)
    return int(max(least, min(PASS_MAX_BYTES, share)))


def kept_dates(meta: ModelMeta, n_regular: int) -> int:
    """How many of the last regular dates the network needs at the forecast origin."""
    trend = meta.trend
    need = max(int(meta.time_step), int(trend.trend_window) if trend else 0, 1)
    return int(min(need, n_regular))


def stream_regular(
    path: str,
    info: Any,
    interval: int,
    keep: int,
    tail: Any,
    window_bytes: int,
    on_window: Callable[[int, int], None] | None = None,
    scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One pass over the stack by windows of at most `window_bytes` (all bands; full-width strips
    of the file's block rows when they fit): resample each window to the regular grid, return the
    per-date (fmin, fmax) over all pixels and all regular dates and the number of valid pixels, and
    write the last `keep` dates to `tail`. `scale` (H, W), when given, receives each pixel's
    dispersion at the forecast origin (core/intervals.py, for the prediction intervals)."""
    from ..core.intervals import pixel_scale
    from ..core.stack import iter_windows, read_windows
    from .dataset import regularize

    fmin: np.ndarray | None = None
    fmax: np.ndarray | None = None
    n_valid = 0
    windows = iter_windows(info, window_bytes)
    for k, (win, raw) in enumerate(read_windows(path, windows)):
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
    if fmin is None or fmax is None:  # no valid pixel: the caller refuses the stack
        fmin = fmax = np.full(0, np.nan)
    return fmin, fmax, n_valid


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


METHODS = jobs.METHODS  # declared once, in jobs.py
# the bound stacks' INTERVAL_METHOD tag (core/intervals.py, calibration format 2 and later)
INTERVAL_METHOD = (
    "split-conformal per horizon and motion group, rolling origins; spread = pixel dispersion and "
    "forecast motion (persistence: the recent rate); beyond the calibrated horizons grown by the "
    "fitted power of the horizon"
)


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


def resolve_method(job: ForecastJob, meta: ModelMeta) -> str:
    """The method ``job.method`` asks for (network | best | persistence | trend), "best" resolved on
    the model's iterative backtest; says in one line when the network loses there."""
    from ..core.errors import InputError

    method = job.method or "network"
    if method not in METHODS:
        raise InputError(f"METHOD: {method!r} is not one of {', '.join(METHODS)}.")
    bt = meta.backtest
    if not bt:
        if method != "network":
            raise InputError(
                f"METHOD: the model {os.path.basename(job.model)!r} has no iterative backtest (trained "
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


@dataclass(frozen=True)
class Bands:
    """The prediction intervals asked for (core/intervals.py): per-step quantiles of the scaled
    errors at `confidence`, the scale's floor, the horizons the model was calibrated for and the
    coefficient of the forecast's motion in each pixel's spread (0 for a format-1 calibration)."""

    confidence: float
    quantiles: np.ndarray
    floor: float
    calibrated: int
    motion: float = 0.0
    motion_from: str = "forecast"  # or "trend": the per-pixel line's motion (persistence, format 3)


def interval_setup(job: ForecastJob, meta: ModelMeta, method: str, steps: int) -> Bands | None:
    """The prediction intervals asked for by ``output_lower``/``output_upper`` at ``confidence``
    for the forecast by `method`; None when no bound is asked for. InputError when the model
    carries no calibration or the level is out of range."""
    from ..core.errors import InputError
    from ..core.intervals import (
        check_confidence,
        group_quantiles,
        growth_exponent,
        horizon_quantiles,
        motion_from,
        motion_of,
    )

    if not (job.output_lower or job.output_upper):
        return None
    confidence = float(job.confidence)
    try:
        check_confidence(confidence)
    except ValueError as e:
        raise InputError(str(e)) from e
    if method == "network":
        cal = meta.calibration
    else:
        cal = ((meta.backtest or {}).get("calibration") or {}).get(method)
    name = os.path.basename(job.model)
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
        growth = growth_exponent(cal, confidence)
        how = (
            f"with the horizon to the power {growth:.2f} (fitted on the calibrated horizons) and with "
            "each pixel's forecast motion"
            if cal.get("growth")
            else "with the square root of the horizon (a model file of format 1)"
        )
        protocol.warning(
            f"Prediction intervals are calibrated for horizons 1..{n_cal} (the model's test dates); "
            f"beyond them the band grows {how}, not calibrated."
        )
    groups = group_quantiles(cal, confidence, steps)  # per motion group (format 3)
    if groups is not None and np.isfinite(groups).all():
        q = groups
    return Bands(confidence, q, float(cal["floor"]), n_cal, motion_of(cal), motion_from(cal))


def forecast_job(job: ForecastJob | Mapping[str, Any]) -> ForecastJob:
    """`job`, or the ForecastJob of a params dict (``ForecastJob.asdict()``'s keys), checked by
    jobs.py (InputError naming an unknown or invalid key)."""
    return job if isinstance(job, ForecastJob) else ForecastJob.from_dict(job)


@dataclass(frozen=True)
class ForecastSetup:
    """Everything decided before the first pixel is read: the model, the forecast dates, the method,
    the intervals and the memory plan (block plan, kept dates, tiles per network call)."""

    job: ForecastJob
    run: Run
    info: Any
    meta: ModelMeta
    gru: ExtremumGRU
    model: Predictor
    method: str
    baseline: dict[str, Any] | None
    bands: Bands | None
    keep: int
    steps: int
    dates: list[dt.date]
    last: dt.date
    rate_labels: list[dt.date]
    in_memory: bool
    blocks: Any  # ml/blocks.py BlockPlan
    rest: int  # bytes for the first pass and the blocks

    @property
    def interval(self) -> int:
        return int(self.meta.interval_days)

    def tags(self) -> dict[str, str]:
        return {
            "SOURCE": "deformation_forecast forecast",
            "MODEL": self.meta.architecture,
            "METHOD": self.method,
        }


def _usable_bytes(run: Run) -> int:
    """The budget left for pixels after TensorFlow itself (WORKER_MB, beyond what core.budget sets
    aside); at least MIN_DATA_MB, said in a warning."""
    from ..core.budget import overhead_bytes

    usable = run.working_bytes(1.0) - max(0, WORKER_MB * 2**20 - overhead_bytes(run.budget_mb))
    if usable < MIN_DATA_MB * 2**20:
        protocol.warning(
            f"The memory budget of {run.mb:.0f} MB is less than the forecast needs at least: about "
            f"{WORKER_MB} MB for TensorFlow and the model plus {MIN_DATA_MB} MB of pixels. Forecasting "
            "with that minimum; raise the budget (Settings > Options > Deformation forecast or "
            "DEFORMATION_FORECAST_MEMORY_MB) to hold it."
        )
        usable = MIN_DATA_MB * 2**20
    return int(usable)


def _method_setup(
    job: ForecastJob, meta: ModelMeta, keep: int, n_regular: int
) -> tuple[str, dict[str, Any] | None, int]:
    """(method, baseline or None, dates kept): a simple method needs its trend window of dates."""
    method = resolve_method(job, meta)
    if method == "network":
        return method, None, keep
    assert meta.backtest is not None
    window = int(meta.backtest["trend_window"])
    protocol.message(f"METHOD: forecasting with {method} (the network is not used)")
    return method, {"method": method, "trend_window": window}, int(min(max(keep, window), n_regular))


def plan_forecast(job: ForecastJob, run: Run) -> ForecastSetup:
    """Load the model, check the stack fits it, and plan the forecast within the budget: the
    network's activations, the kept dates (in memory when they take at most a third), the windows
    of the first pass, the blocks' forecasts."""
    from ..core.resample import regular_grid
    from ..core.stack import read_info
    from .blocks import bytes_per_pixel, choose_tile_batch, plan_blocks, tile_activation_bytes
    from .modelfile import check_fits, load_model

    net, gru_model, meta = load_model(job.model)
    info = read_info(job.input)
    interval = int(meta.interval_days)
    grid = regular_grid(info.dates, interval, anchor="end")
    check_fits(meta, info, len(grid))
    steps = int(job.steps or 0) or int(round(2 * 365.25 / interval))
    ts, tile = int(meta.time_step), int(meta.tile)
    method, baseline, keep = _method_setup(job, meta, kept_dates(meta, len(grid)), len(grid))
    bands = interval_setup(job, meta, method, steps)
    usable = _usable_bytes(run)
    tile_batch = choose_tile_batch(usable, tile, ts, int(meta.width or 8))
    usable -= tile_batch * tile_activation_bytes(tile, ts, int(meta.width or 8))
    in_memory = 4 * keep * info.height * info.width <= usable / 3
    rest = usable - (4 * keep * info.height * info.width if in_memory else 0)
    per_pixel = bytes_per_pixel(keep, steps, ts)
    blocks = plan_blocks(
        (info.height, info.width), tile, int(meta.overlap), rest, per_pixel, steps, int(job.block_size or 0)
    )
    last = grid[-1]
    dates = [last + dt.timedelta(days=interval * (k + 1)) for k in range(steps)]
    _, rate_labels = annual_rates(
        np.zeros((1, 1), "float32"), last, np.zeros((steps, 1, 1), "float32"), dates
    )
    gru = ExtremumGRU.from_params(meta.compressor, gru_model)
    model = Predictor.of_model(net, meta, tile_batch)
    return ForecastSetup(
        job,
        run,
        info,
        meta,
        gru,
        model,
        method,
        baseline,
        bands,
        keep,
        steps,
        dates,
        last,
        rate_labels,
        in_memory,
        blocks,
        rest,
    )


def run_forecast(job: ForecastJob | Mapping[str, Any]) -> dict[str, Any]:
    """Worker command ``forecast``: INPUT stack + MODEL -> OUTPUT stack (+ OUTPUT_RATE, and the
    OUTPUT_LOWER / OUTPUT_UPPER prediction intervals); see the module doc.

    ``memory_budget_mb`` (core/budget.py) and ``block_size`` (block cores in pixels, 0 = as large
    as the budget allows) bound the memory."""
    from .device import configure_device, worker_run

    job = forecast_job(job)
    device = configure_device(job.device)
    protocol.message(f"Device: {device['name']} ({device['reason']})")
    t0 = time.monotonic()
    setup = plan_forecast(job, worker_run(job.memory_budget_mb))
    s, plan = setup, setup.blocks
    protocol.progress(
        2,
        f"Model {s.meta.architecture} (interval {s.interval} d, time step {s.model.time_step}); {s.steps} steps; "
        f"{plan.n_blocks} block(s) of at most {' x '.join(map(str, plan.largest_region()))} pixels "
        f"(halo {plan.halo}), {s.model.tile_batch} tiles per network call, within a memory budget of "
        f"{s.run.mb:.0f} MB; the last {s.keep} dates kept "
        + ("in memory" if s.in_memory else "in a temporary file"),
    )
    min_forecast = _write_forecast(setup, device)
    out: dict[str, Any] = {
        "output": job.output,
        "dates": [d.isoformat() for d in s.dates],
        "steps": s.steps,
        "interval_days": s.interval,
        "device": device["name"],
        "seconds": time.monotonic() - t0,
        "min_forecast": min_forecast,
        "blocks": plan.n_blocks,
        "memory_budget_mb": s.run.mb,
        "kept_in_memory": s.in_memory,
        "tile_batch": s.model.tile_batch,
        "method": s.method,
    }
    if job.output_rate:
        out["output_rate"] = job.output_rate
        out["rate_dates"] = [d.isoformat() for d in s.rate_labels]
    if s.bands:
        out.update({k: getattr(job, k) for k in ("output_lower", "output_upper") if getattr(job, k)})
        out["confidence"] = s.bands.confidence
        out["calibrated_horizons"] = s.bands.calibrated
    protocol.progress(100, f"Forecast of {s.steps} dates up to {s.dates[-1].isoformat()} written")
    return out


def _write_forecast(s: ForecastSetup, device: dict[str, Any]) -> float:
    """The two passes (see the module doc) into the output writers; returns the least value of the
    last forecast date."""
    import tensorflow as tf

    from ..core.budget import gdal_env
    from ..core.errors import InputError
    from .blocks import TailStore

    info, job = s.info, s.job
    with contextlib.ExitStack() as stack:
        stack.enter_context(gdal_env(s.run.budget_mb))
        out_dir = os.path.dirname(os.path.abspath(job.output))
        tail = stack.enter_context(TailStore(s.keep, info.height, info.width, s.in_memory, out_dir))

        def on_window(k: int, n: int) -> None:
            protocol.progress(2 + 18 * k / n, f"Reading and resampling: window {k}/{n}")

        scale = np.full((info.height, info.width), np.nan, "float32") if s.bands else None
        seen = NoiseTail(tail, s.model)
        fmin, fmax, n_valid = stream_regular(
            job.input, info, s.interval, s.keep, seen, window_bytes(s.rest, info), on_window, scale
        )
        if not n_valid:
            raise InputError("INPUT: the stack has no pixel with a value at any date; nothing to forecast.")
        with tf.device(device["tf_device"]):
            pmin, pmax = s.gru.iterate(fmin, fmax, s.steps)
        sink = ForecastSink(s, stack, tail, scale)
        n_blocks, steps = s.blocks.n_blocks, s.steps

        def on_step(b: int, k: int) -> None:
            where = f", block {b + 1}/{n_blocks}" if n_blocks > 1 else ""
            protocol.progress(20 + 78 * (b * steps + k) / (n_blocks * steps), f"step {k}/{steps}{where}")

        ext = Extremes(fmin, fmax, pmin, pmax, seen.sums.result())
        fp = ForecastPlan(s.model, s.blocks, ext, steps, s.baseline)
        with tf.device(device["tf_device"]):
            forecast_blocks(fp, tail.read, sink, on_step)
    return sink.min_forecast


class NoiseTail:
    """The TailStore as the first pass writes it, gathering on the way the per-date noise of the
    trend window's dates over the whole raster (ml/trend.py NoiseSums) when the network's base
    line is weighted by it (``Predictor.line``), so that every block weighs the dates alike."""

    def __init__(self, tail: Any, model: Predictor):
        from .trend import NoiseSums

        self.tail, self.sums = tail, NoiseSums()
        self.window = int(model.trend.trend_window) if model.trend and model.line else 0

    def write(self, window: Any, data: np.ndarray) -> None:
        self.tail.write(window, data)
        if self.window:
            self.sums.add(data[-self.window :])


class ForecastSink:
    """Receives every finished piece of the forecast: writes it, its bounds and its annual rates,
    and keeps the least value of the last date."""

    def __init__(self, s: ForecastSetup, stack: contextlib.ExitStack, tail: Any, scale: np.ndarray | None):
        from ..core.stack import StackWriter

        info, job, tags = s.info, s.job, s.tags()
        self.s, self.tail, self.scale = s, tail, scale
        self.min_forecast = math.nan
        self.writer = stack.enter_context(
            StackWriter(
                job.output, s.dates, info.crs, info.transform, info.width, info.height, info.units, tags
            )
        )
        self.rate_writer = None
        if job.output_rate:
            self.rate_writer = stack.enter_context(
                StackWriter(
                    job.output_rate,
                    s.rate_labels,
                    info.crs,
                    info.transform,
                    info.width,
                    info.height,
                    "mm/yr",
                    tags,
                )
            )
        self.bound_writers = open_bound_writers(stack, job, s.bands, s.dates, info, tags)

    def __call__(self, window: Any, frames: np.ndarray) -> None:
        s = self.s
        self.writer.write(frames, window)
        if s.bands:
            assert self.scale is not None
            moving = band_motion_frames(s.bands, s.meta.backtest, lambda: self.tail.read(window), s.steps)
            write_bounds(self.bound_writers, frames, window, self.scale, s.bands, moving)
        if np.isfinite(frames[-1]).any():
            m = float(np.nanmin(frames[-1]))
            self.min_forecast = m if math.isnan(self.min_forecast) else min(m, self.min_forecast)
        if self.rate_writer is not None:
            rates, _ = annual_rates(self.tail.read_last(window), s.last, frames, s.dates)
            self.rate_writer.write(rates, window)


def open_bound_writers(
    stack: contextlib.ExitStack,
    job: ForecastJob,
    bands: Bands | None,
    dates: list[dt.date],
    info: Any,
    tags: dict[str, str],
) -> dict[str, Any]:
    """StackWriters of the asked-for bounds ("lower"/"upper"), tagged so that a reader (the
    time-series dock) knows them: INTERVAL = lower | upper, CONFIDENCE, INTERVAL_METHOD."""
    from ..core.stack import StackWriter

    writers: dict[str, Any] = {}
    if not bands:
        return writers
    for side in ("lower", "upper"):
        path = getattr(job, f"output_{side}")
        if not path:
            continue
        side_tags = {
            **tags,
            "INTERVAL": side,
            "CONFIDENCE": f"{bands.confidence:.4g}",
            "INTERVAL_METHOD": INTERVAL_METHOD,
            "INTERVAL_CALIBRATED_STEPS": str(int(bands.calibrated)),
        }
        writers[side] = stack.enter_context(
            StackWriter(path, dates, info.crs, info.transform, info.width, info.height, info.units, side_tags)
        )
    return writers


def band_motion_frames(
    bands: Bands, backtest: Mapping[str, Any] | None, read_hist: Callable[[], np.ndarray], steps: int
) -> np.ndarray | None:
    """The frames whose motion widens the band when it is not the forecast's own: for a calibration
    with ``motion_from`` "trend" (persistence), the per-pixel line over the backtest's trend window
    of the kept dates ``read_hist()``, extrapolated (core/intervals.py); None otherwise."""
    if bands.motion_from != "trend" or not backtest:
        return None
    line = {"method": "trend", "trend_window": int(backtest["trend_window"])}
    return baseline_frames(read_hist(), steps, line)


def write_bounds(
    writers: dict[str, Any],
    frames: np.ndarray,
    window: Any,
    scale: np.ndarray,
    bands: Bands,
    moving: np.ndarray | None = None,
) -> None:
    """Write the lower/upper bounds of a finished piece of the forecast (core/intervals.py);
    `moving`: the frames whose motion widens the band, when not the forecast's own."""
    from ..core.intervals import bounds

    r0, c0 = int(window.row_off), int(window.col_off)
    s = scale[r0 : r0 + int(window.height), c0 : c0 + int(window.width)]
    lower, upper = bounds(frames, s, bands.quantiles, bands.floor, bands.motion, moving)
    for side, arr in (("lower", lower), ("upper", upper)):
        if side in writers:
            writers[side].write(arr, window)
