"""Training (§III-B-2) and the worker's ``train`` command.

Steps: read the stack, resample it to a regular interval, fit the GRU extremum compressor on the
dates before the test set, compress the frames (eq. 3), for the default networks (``residual`` "trend", ml/trend.py) pick the
per-pixel trend window on the validation dates and fit the residual and frame scales, train the
network on sliding windows
(loss eq. 11, Adam, early stopping on the validation loss with the best weights kept), score the
test set one step ahead and iteratively (Fig. 8), write the model file, the HTML report and, on
request, the raw predictions (``predictions``: an npz for ``comparemodels``).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import numpy as np

from . import protocol

DEFAULTS: dict[str, Any] = {
    "architecture": "cnn-phlstm",
    # "auto": "trend" for cnn-phlstm / cnn-lstm (residual over a per-pixel linear trend, ml/trend.py),
    # "none" for the -paper networks; "last": increment over the last compressed frame (format 1)
    "residual": "auto",
    # dates in the per-pixel line; 0 = the best of trend.WINDOW_CANDIDATES (1 = persistence) at
    # forecasting the validation dates 1..20 steps ahead (only dates before the test set)
    "trend_window": 0,
    "time_step": 5,
    "test_count": 20,
    "validation_fraction": 0.2,
    "epochs": 30,
    "batch_size": 4,
    "learning_rate": 5e-4,
    "mae_weight": 0.7,
    "tile_size": 64,
    "interval_days": 0,
    "device": "auto",
    "seed": 42,
    "resume": False,
    "width": 8,
    "lstm_units": None,
    "patience": 8,
    "samples_per_epoch": 0,
    "max_seconds": 0,
    "gru_time_step": 15,
    "gru_units": 16,
    "gru_epochs": 64,
    "gru_batch_size": 64,
    "gru_learning_rate": 1e-3,
    # XLA: compiling the network takes ~90 s on 2 CPU cores, longer than a small training
    "jit_compile": False,
}


def _metrics(pred: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    try:
        from ..core.metrics import stack_metrics
    except ImportError:  # pragma: no cover - the shared metrics module not there yet
        return _metrics_fallback(pred, obs)
    return {k: float(v) for k, v in stack_metrics(pred, obs)[1].items()}


def _metrics_fallback(pred: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    from skimage.metrics import structural_similarity

    ok = np.isfinite(pred) & np.isfinite(obs)
    d = pred[ok] - obs[ok]
    rng = float(np.nanmax(obs) - np.nanmin(obs)) or 1.0
    ssims = [
        structural_similarity(
            np.where(ok[i], obs[i], 0), np.where(ok[i], pred[i], 0), data_range=rng, gaussian_weights=True
        )
        for i in range(len(obs))
    ]
    mse = float(np.mean(d**2))
    return {
        "MAE": float(np.mean(np.abs(d))),
        "MSE": mse,
        "RMSE": math.sqrt(mse),
        "SSIM": float(np.mean(ssims)),
        "MS_SSIM": math.nan,
        "PSNR": 10 * math.log10(rng**2 / mse) if mse > 0 else math.inf,
    }


class _Progress:
    """Keras callback factory (built lazily so that this module imports without Keras)."""

    @staticmethod
    def make(epochs: int, start: int, span: tuple[float, float], max_seconds: float, checkpoint=None):
        import keras

        class Progress(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.t0 = time.monotonic()
                self.budget_hit = False

            def on_train_batch_end(self, batch, logs=None):
                if max_seconds and time.monotonic() - self.t0 > max_seconds:
                    self.budget_hit = True
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items()}
                frac = (epoch + 1 - start) / max(1, epochs - start)
                protocol.progress(
                    span[0] + (span[1] - span[0]) * min(1.0, frac),
                    f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', math.nan):.5f}, "
                    f"val_loss {logs.get('val_loss', math.nan):.5f}",
                    epoch=epoch + 1,
                    **logs,
                )
                if checkpoint:
                    checkpoint(self.model, epoch + 1, logs)
                if self.budget_hit:
                    protocol.message(f"Time budget of {max_seconds:.0f} s reached after epoch {epoch + 1}.")

        return Progress()


def run_train(params: dict[str, Any]) -> dict[str, Any]:
    """Worker command ``train``; see the module doc. Returns the result dict."""
    p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    from .device import configure_device

    device = configure_device(p["device"])
    protocol.message(f"Device: {device['name']} ({device['reason']})")
    import keras
    import tensorflow as tf

    from ..core.stack import read_info, read_stack
    from .compressor import ExtremumGRU, compress, decompress, frame_extremes
    from .dataset import WindowTiles, choose_tile, predict_frames, regularize, split_windows
    from .forecast import iterate_compressed, iterate_trend
    from .modelfile import grid_of, save_model
    from .network import build_network, default_residual, make_loss, masked_mae, ssim_metric
    from .trend import choose_window, label_inputs
    from .trend import scales as trend_scales

    seed = int(p["seed"])
    keras.utils.set_random_seed(seed)
    if device["tf_device"].startswith("/CPU"):
        tf.config.experimental.enable_op_determinism()
    info = read_info(p["input"])
    stack = read_stack(p["input"])
    reg, grid, interval = regularize(stack, info.dates, int(p["interval_days"]))
    protocol.message(
        f"{info.count} acquisitions {info.dates[0]}..{info.dates[-1]} resampled to {len(grid)} dates "
        f"every {interval} days; raster {info.width} x {info.height}"
    )
    mask = np.isfinite(reg).all(axis=0)
    if not mask.any():
        from ..core.errors import InputError

        raise InputError("INPUT: the stack has no pixel with a value at every date.")
    ts = int(p["time_step"])
    split = split_windows(len(grid), ts, int(p["test_count"]), float(p["validation_fraction"]))
    first_test = int(split.test[0]) if len(split.test) else len(grid)
    fmin, fmax = frame_extremes(reg)

    ckpt_dir = p["output_model"] + ".checkpoint"
    resume_state = None
    if p["resume"] and os.path.isfile(os.path.join(ckpt_dir, "state.json")):
        with open(os.path.join(ckpt_dir, "state.json"), encoding="utf-8") as f:
            resume_state = json.load(f)
        if resume_state.get("signature") != _signature(p, info):
            protocol.warning(
                "RESUME: the checkpoint was made with other parameters or data; starting afresh."
            )
            resume_state = None

    # 1. the extremum compressor (eqs. 1-4), on the dates before the test set
    gru = ExtremumGRU(
        time_step=int(p["gru_time_step"]),
        units=int(p["gru_units"]),
        epochs=int(p["gru_epochs"]),
        batch_size=int(p["gru_batch_size"]),
        learning_rate=float(p["gru_learning_rate"]),
    )
    t_start = time.monotonic()
    with tf.device(device["tf_device"]):
        if resume_state:
            gru = ExtremumGRU.from_params(resume_state["compressor"])
            gru.model = gru.build()
            gru.model.load_weights(os.path.join(ckpt_dir, "compressor.weights.h5"))
            gru.history = resume_state.get("gru_history", {})
        else:
            protocol.progress(1, "Fitting the GRU extremum compressor")
            gru.fit(fmin[:first_test], fmax[:first_test])
        protocol.progress(
            5,
            f"GRU compressor: time step {gru.time_step}, final LogCosh {gru.history.get('loss', [math.nan])[-1]:.4g}",
        )
        comp = compress(reg, fmin, fmax)

        # 2. the network
        tile = choose_tile(info.height, info.width, int(p["tile_size"]))
        overlap = tile // 4
        units = tuple(int(u) for u in p["lstm_units"]) if p["lstm_units"] else None
        residual = (
            default_residual(p["architecture"]) if p["residual"] in ("auto", "", None) else p["residual"]
        )
        trend: dict[str, Any] | None = None
        if residual == "trend":
            reg0 = np.where(mask, reg, 0.0).astype("float32")
            tw = int(p["trend_window"])
            if tw <= 0:
                first_val = int(split.val[0]) if len(split.val) else max(ts, first_test - 20)
                tw, errs = choose_window(reg0, mask, first_val, first_test)
                protocol.message(
                    "Trend window chosen on the validation dates (MAE 1..20 steps ahead): "
                    + ", ".join(f"{w} dates {e:.4g}" for w, e in errs.items())
                    + f" -> {tw}"
                )
            fscale, rscale = trend_scales(reg0, mask, np.concatenate([split.train, split.val]), ts, tw)
            trend = {"trend_window": tw, "residual_scale": rscale, "frame_scale": fscale}
            protocol.message(
                f"Residual over the linear trend of the last {tw} dates: frame scale {fscale:.4g}, "
                f"one-step trend residual RMS {rscale:.4g} ({info.units or 'stack units'})"
            )
        net = build_network(
            p["architecture"],
            ts,
            tile,
            int(p["width"]),
            units,
            residual,
            trend["residual_scale"] / trend["frame_scale"] if trend else 1.0,
        )
        net.compile(
            optimizer=keras.optimizers.Adam(float(p["learning_rate"]), clipnorm=1.0),
            loss=make_loss(float(p["mae_weight"]), tile),
            metrics=[masked_mae, ssim_metric(tile)],
            jit_compile=bool(p["jit_compile"]),
        )
        protocol.message(
            f"Network {p['architecture']}: tile {tile} (overlap {overlap}), {net.count_params()} weights; "
            f"windows train {len(split.train)}, validation {len(split.val)}, test {len(split.test)}"
        )
        train_ds = WindowTiles(
            comp,
            mask,
            split.train,
            ts,
            tile,
            overlap,
            int(p["batch_size"]),
            True,
            seed,
            int(p["samples_per_epoch"]),
            trend=trend and {**trend, "reg": reg0},
        )
        val_ds = (
            WindowTiles(
                comp,
                mask,
                split.val,
                ts,
                tile,
                overlap,
                int(p["batch_size"]),
                False,
                seed,
                trend=trend and {**trend, "reg": reg0},
            )
            if len(split.val)
            else None
        )
        epochs = int(p["epochs"])
        history: dict[str, list[float]] = {}
        start_epoch = 0
        if resume_state:
            net.load_weights(os.path.join(ckpt_dir, "network.weights.h5"))
            start_epoch = int(resume_state["epoch"])
            history = resume_state.get("history", {})
            protocol.message(f"RESUME: continuing after epoch {start_epoch} from {ckpt_dir}")

        def checkpoint(model, epoch, logs):
            os.makedirs(ckpt_dir, exist_ok=True)
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            model.save_weights(os.path.join(ckpt_dir, "network.tmp.weights.h5"))
            os.replace(
                os.path.join(ckpt_dir, "network.tmp.weights.h5"), os.path.join(ckpt_dir, "network.weights.h5")
            )
            if not os.path.exists(os.path.join(ckpt_dir, "compressor.weights.h5")):
                gru.model.save_weights(os.path.join(ckpt_dir, "compressor.weights.h5"))
            state = {
                "signature": _signature(p, info),
                "epoch": epoch,
                "history": history,
                "compressor": gru.params(),
                "gru_history": gru.history,
            }
            with open(os.path.join(ckpt_dir, "state.tmp.json"), "w", encoding="utf-8") as f:
                json.dump(state, f)
            os.replace(os.path.join(ckpt_dir, "state.tmp.json"), os.path.join(ckpt_dir, "state.json"))

        callbacks = [
            keras.callbacks.TerminateOnNaN(),
            _Progress.make(epochs, start_epoch, (5, 85), float(p["max_seconds"]), checkpoint),
        ]
        if val_ds is not None and int(p["patience"]) > 0:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=int(p["patience"]), restore_best_weights=True
                )
            )
        if start_epoch < epochs:
            net.fit(
                train_ds,
                validation_data=val_ds,
                epochs=epochs,
                initial_epoch=start_epoch,
                callbacks=callbacks,
                verbose=0,
            )
        train_seconds = time.monotonic() - t_start
        epochs_run = len(history.get("loss", []))

        # 3. the test set: one step ahead and iterative (Fig. 8)
        t_pred = time.monotonic()
        test = split.test
        targets = reg[test] if len(test) else np.zeros((0,) + reg.shape[1:], "float32")
        one_step = iterative = persistence = targets
        test_metrics: dict[str, float] = {}
        iter_metrics: dict[str, float] = {}
        pers_metrics: dict[str, float] = {}
        trend_metrics: dict[str, float] = {}
        extremes: dict[str, list[float]] = {}
        if len(test):
            protocol.progress(87, f"Predicting the {len(test)} test dates")
            smin, smax = gru.one_step(fmin, fmax, test)
            imin, imax = gru.iterate(fmin[:first_test], fmax[:first_test], len(test))
            if trend:
                comp0 = np.where(mask, np.nan_to_num(comp, nan=0.0), 0.0)
                xs, lines = zip(
                    *(
                        label_inputs(
                            reg0,
                            comp0,
                            int(t),
                            ts,
                            trend["trend_window"],
                            trend["residual_scale"],
                            trend["frame_scale"],
                        )
                        for t in test
                    ),
                    strict=True,
                )
                one_step = predict_frames(net, np.stack(xs), tile, overlap, trend=np.stack(lines))
                one_step = one_step * trend["frame_scale"]
                iterative = iterate_trend(
                    net,
                    reg0[:first_test],
                    comp[first_test - ts : first_test],
                    imin,
                    imax,
                    len(test),
                    tile,
                    overlap,
                    mask,
                    trend,
                )
            else:
                windows = np.stack([comp[t - ts : t] for t in test])
                windows = np.where(mask, windows, 0.0)
                pred_c = predict_frames(net, windows, tile, overlap)
                one_step = decompress(pred_c, smin, smax)
                it_c = iterate_compressed(
                    net, comp[first_test - ts : first_test], len(test), tile, overlap, mask
                )
                iterative = decompress(it_c, imin, imax)
            one_step[:, ~mask] = np.nan
            iterative[:, ~mask] = np.nan
            persistence = reg[test - 1]
            trend_metrics = _metrics(_trend_one_step(reg, mask, test, 40), targets)
            test_metrics = _metrics(one_step, targets)
            iter_metrics = _metrics(iterative, targets)
            pers_metrics = _metrics(persistence, targets)
            extremes = {
                "gru_one_step_min": smin.tolist(),
                "gru_one_step_max": smax.tolist(),
                "gru_iterative_min": imin.tolist(),
                "gru_iterative_max": imax.tolist(),
                "pred_min": np.nanmin(one_step.reshape(len(test), -1), axis=1).tolist(),
                "pred_max": np.nanmax(one_step.reshape(len(test), -1), axis=1).tolist(),
            }
            protocol.message(
                "Test (one step): "
                + ", ".join(f"{k}={v:.5g}" for k, v in test_metrics.items())
                + f"; persistence MAE={pers_metrics['MAE']:.5g}; linear trend MAE={trend_metrics['MAE']:.5g}"
                + f"; iterative MAE={iter_metrics['MAE']:.5g}"
            )
        predict_seconds = time.monotonic() - t_pred

    # 4. outputs
    meta = {
        "architecture": p["architecture"],
        "residual": residual,
        **(trend or {}),
        "time_step": ts,
        "interval_days": interval,
        "tile": tile,
        "overlap": overlap,
        "width": int(p["width"]),
        "lstm_units": list(units) if units else None,
        "mae_weight": float(p["mae_weight"]),
        "grid": grid_of(info),
        "units": info.units,
        "dates": [d.isoformat() for d in grid],
        "source_dates": [d.isoformat() for d in info.dates],
        "test_dates": [grid[t].isoformat() for t in test],
        "compressor": gru.params(),
        "metrics": {
            "test_one_step": test_metrics,
            "test_iterative": iter_metrics,
            "persistence": pers_metrics,
            "linear_trend": trend_metrics,
        },
        "history": history,
        "gru_history": gru.history,
        "extremes": {
            "dates": [d.isoformat() for d in grid],
            "min": fmin.tolist(),
            "max": fmax.tolist(),
            **extremes,
        },
        "train": {k: p[k] for k in DEFAULTS if k != "device"} | {"epochs_run": epochs_run},
        "device": device["name"],
        "train_seconds": train_seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    save_model(p["output_model"], net, gru.model, meta)
    _remove_checkpoint(ckpt_dir)
    out: dict[str, Any] = {
        "output_model": p["output_model"],
        "device": device["name"],
        "device_reason": device["reason"],
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "epochs_run": epochs_run,
        "interval_days": interval,
        "test_metrics": test_metrics,
        "iterative_metrics": iter_metrics,
        "persistence_metrics": pers_metrics,
        "trend_metrics": trend_metrics,
    }
    if p.get("output_report"):
        from .report import write_report

        write_report(p["output_report"], meta, one_step, targets, test)
        out["output_report"] = p["output_report"]
    if p.get("predictions"):
        from ..core.stack import atomic_path

        with atomic_path(p["predictions"]) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                one_step=one_step.astype("float32"),
                iterative=iterative.astype("float32"),
                targets=targets.astype("float32"),
                test_dates=np.array([grid[t].isoformat() for t in test]),
                train_seconds=np.float64(train_seconds),
                predict_seconds=np.float64(predict_seconds),
                device=np.array(device["name"]),
            )
        out["predictions"] = p["predictions"]
    protocol.progress(100, "Model written")
    return out


def _trend_one_step(reg: np.ndarray, mask: np.ndarray, labels: np.ndarray, trend_window: int) -> np.ndarray:
    """Baseline: per-pixel line over the last `trend_window` dates before each label, one step on
    (the bench's baseline uses 40 dates)."""
    from .trend import fit_line

    z = np.where(mask, reg, 0.0)
    out = []
    for t in labels:
        last, slope = fit_line(z[max(0, int(t) - trend_window) : int(t)])
        out.append(np.where(mask, last + slope, np.nan))
    return np.stack(out).astype("float32")


def _signature(p: dict[str, Any], info) -> str:
    keys = [k for k in DEFAULTS if k not in ("epochs", "resume", "device", "max_seconds", "patience")]
    sig = {k: p[k] for k in keys} | {"input": os.path.abspath(p["input"]), "shape": list(info.shape)}
    return json.dumps(sig, sort_keys=True, default=str)


def _remove_checkpoint(folder: str) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
