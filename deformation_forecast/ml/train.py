"""Training (§III-B-2) and the worker's ``train`` command.

Steps: resample the stack to a regular interval into a work file, streamed by windows within the
memory budget (ml/source.py; the per-date extremes are gathered on the way), fit the GRU extremum
compressor on the dates before the test set, for the default networks (``residual`` "trend",
ml/trend.py) pick the per-pixel trend window on the validation dates and fit the residual scale
(on a seeded sample of blocks), train the network on (time window x tile) examples read from the
work file on the fly by a tf.data pipeline (ml/dataset.py tile_dataset; frames compressed by eq. 3
as they are read) (loss eq. 11, Adam, early stopping on the validation loss with the best weights
kept), score the test set one step ahead and iteratively (Fig. 8) block by block, write the model
file, the HTML report and, on request, the raw predictions (``predictions``: an npz for
``comparemodels``, when the whole raster's test arrays fit the budget). The stack is never held
whole in memory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np

from ..core.intervals import calibrate, pixel_scale
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
    "test_count": -1,  # -1: test_count_of (the smaller of 20 and a fifth of the dates)
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
    "jit_compile": "auto",
    # "auto": float16 compute with float32 variables on GPUs of compute capability >= 7 (ml/distribute.py)
    "mixed_precision": "auto",
    # the worker's memory budget in MB; 0 = $DEFORMATION_FORECAST_MEMORY_MB, else 2048 (core/budget.py)
    "memory_budget_mb": 0,
    # validation tiles per epoch (a fixed seeded subset); 0 = all, at most max(4096, samples_per_epoch)
    "validation_samples": 0,
    # finite pixels (whole 64 x 64 blocks, seeded sample) for the trend window and the residual scale;
    # a raster with fewer is used whole
    "stats_pixels": 2**20,
    # test-set scoring: at most this many blocks (up to 512 x 512 px) are scored; 0 = all
    "test_tiles": 16,
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


def test_count_of(p: dict[str, Any], n_dates: int) -> int:
    """``test_count``, or for -1 what the series can spare: min(20, n_dates // 5), said in the log."""
    tc = int(p["test_count"])
    if tc >= 0:
        return tc
    tc = max(1, min(20, n_dates // 5))
    protocol.message(
        f"TEST_COUNT: the last {tc} of the {n_dates} dates at the training interval are the test set "
        "(the smaller of 20 and a fifth of the dates; set TEST_COUNT to choose)"
    )
    return tc


def run_train(params: dict[str, Any]) -> dict[str, Any]:
    """Worker command ``train``; see the module doc. Returns the result dict."""
    p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    from .device import configure_device

    device = configure_device(p["device"])
    protocol.message(f"Device: {device['name']} ({device['reason']})")
    strategy = None
    if p.get("cluster"):  # several machines (ml/cluster.py): the strategy before any other op
        from .distribute import start_cluster

        strategy = start_cluster(float(p.get("cluster_timeout") or 0))
    import keras
    import tensorflow as tf

    from ..core.budget import budget_mb, gdal_env
    from ..core.dates import median_interval
    from ..core.stack import read_info
    from .dataset import split_windows
    from .source import WorkStack, prepare, regular_dates

    seed = int(p["seed"])
    keras.utils.set_random_seed(seed)
    if device["tf_device"].startswith("/CPU"):
        tf.config.experimental.enable_op_determinism()
    mb = float(p["memory_budget_mb"] or 0) or None
    info = read_info(p["input"])
    if strategy is not None:
        from .cluster import check_same_stack

        check_same_stack(strategy, info, p["input"])
    interval = int(p["interval_days"]) or median_interval(info.dates)
    grid = regular_dates(info, interval)
    ts = int(p["time_step"])
    split = split_windows(len(grid), ts, test_count_of(p, len(grid)), float(p["validation_fraction"]))
    ckpt_dir = p["output_model"] + ".checkpoint"
    # a worker other than the chief keeps its work file to itself and writes nothing beside the model
    chief = strategy is None or not strategy.cluster_resolver.task_id
    work_dir = ckpt_dir if chief else tempfile.mkdtemp(prefix="deformation_forecast_worker_")
    try:
        with gdal_env(mb):
            protocol.progress(0, "Resampling the stack to the regular grid (work file)")
            prep = prepare(info, interval, work_dir, mb)
            protocol.message(
                f"{info.count} acquisitions {info.dates[0]}..{info.dates[-1]} resampled to {len(grid)} dates "
                f"every {interval} days; raster {info.width} x {info.height}; work stack "
                + (f"written in {prep.windows} window(s)" if prep.windows else "reused")
                + f" (memory budget {budget_mb(mb):.0f} MB)"
            )
            with WorkStack(prep) as work:
                return _train(p, info, device, prep, work, split, seed, mb, ckpt_dir)
    finally:
        # a checkpoint folder without a finished epoch (e.g. a full disk) cannot be resumed: removed
        if work_dir != ckpt_dir or not os.path.isfile(os.path.join(ckpt_dir, "state.json")):
            shutil.rmtree(work_dir, ignore_errors=True)


def _train(p, info, device, prep, work, split, seed, mb, ckpt_dir) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from .compressor import ExtremumGRU
    from .dataset import choose_tile, tile_dataset, tile_grid, tile_reader
    from .distribute import float32_twin, plan_training
    from .modelfile import grid_of, save_model
    from .network import build_network, default_residual, make_loss, masked_mae, ssim_metric
    from .oom import fit_with_fallback
    from .source import pixel_bytes

    grid, interval, fmin, fmax = prep.grid, prep.interval, prep.fmin, prep.fmax
    ts = int(p["time_step"])
    first_test = int(split.test[0]) if len(split.test) else len(grid)
    resume_state = None
    if p["resume"] and os.path.isfile(os.path.join(ckpt_dir, "state.json")):
        with open(os.path.join(ckpt_dir, "state.json"), encoding="utf-8") as f:
            resume_state = json.load(f)
        if resume_state.get("signature") != _signature(p, info):
            protocol.warning(
                "RESUME: the checkpoint was made with other parameters or data; starting afresh."
            )
            resume_state = None

    # 1. the extremum compressor (eqs. 1-4), on the dates before the test set (global: per-date
    #    extremes of the whole raster, gathered while the work file was written)
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

        # 2. the network
        tile = choose_tile(info.height, info.width, int(p["tile_size"]))
        overlap = tile // 4
        units = tuple(int(u) for u in p["lstm_units"]) if p["lstm_units"] else None
        residual = (
            default_residual(p["architecture"]) if p["residual"] in ("auto", "", None) else p["residual"]
        )
        trend = _trend_settings(p, info, prep, work, split, seed, mb) if residual == "trend" else None
        read = tile_reader(work, fmin, fmax, ts, tile, trend)
        rows, cols = tile_grid(info.height, info.width, tile, overlap)
        n_val = len(split.val) * len(rows) * len(cols)
        val_samples = int(p["validation_samples"]) or min(n_val, max(4096, int(p["samples_per_epoch"])))
        epochs = int(p["epochs"])
        history: dict[str, list[float]] = {}
        start_epoch = 0
        if resume_state:
            start_epoch = int(resume_state["epoch"])
            history = resume_state.get("history", {})

        def checkpoint(model, epoch, logs):
            os.makedirs(ckpt_dir, exist_ok=True)
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            model.save_weights(os.path.join(ckpt_dir, "network.tmp.weights.h5"))
            os.replace(
                os.path.join(ckpt_dir, "network.tmp.weights.h5"), os.path.join(ckpt_dir, "network.weights.h5")
            )
            # a run that did not resume writes its own compressor (a stale one from an interrupted
            # run with other parameters would otherwise be loaded on RESUME); temp name + rename
            if not resume_state or not os.path.exists(os.path.join(ckpt_dir, "compressor.weights.h5")):
                gru.model.save_weights(os.path.join(ckpt_dir, "compressor.tmp.weights.h5"))
                os.replace(
                    os.path.join(ckpt_dir, "compressor.tmp.weights.h5"),
                    os.path.join(ckpt_dir, "compressor.weights.h5"),
                )
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

        def build():
            return build_network(
                p["architecture"],
                ts,
                tile,
                int(p["width"]),
                units,
                residual,
                trend["residual_scale"] / trend["frame_scale"] if trend else 1.0,
            )

        def fit(batch_size: int, dev: dict[str, Any]):
            """Build, compile and fit the network with a per-replica `batch_size` on `dev` under the
            training plan (strategy, dtype policy, XLA: ml/distribute.py); the tf.data pipelines
            are built here (tiles read from the work file on the fly). A retry after running out
            of memory (ml/oom.py) continues from the last epoch checkpoint of this run."""
            nonlocal start_epoch, history
            plan = plan_training(dev, batch_size, p["architecture"], p["mixed_precision"], p["jit_compile"])
            protocol.message(plan.describe())
            plan.apply_policy()
            if attempts and os.path.isfile(os.path.join(ckpt_dir, "state.json")):
                with open(os.path.join(ckpt_dir, "state.json"), encoding="utf-8") as f:
                    state = json.load(f)
                if state.get("signature") == _signature(p, info):
                    start_epoch, history = int(state["epoch"]), state.get("history", {})
            attempts.append(batch_size)
            if plan.custom_loop:  # the network in the strategy's scope; the checkpoints outside it
                with plan.scope():
                    net = build()
                return _fit_custom(plan, net), plan
            with plan.scope():
                net = _fit_in_scope(plan, plan.global_batch)
            return net, plan

        def _fit_in_scope(plan, batch_size: int):
            net = build()
            net.compile(
                optimizer=keras.optimizers.Adam(float(p["learning_rate"]), clipnorm=1.0),
                loss=make_loss(float(p["mae_weight"]), tile),
                metrics=[masked_mae, ssim_metric(tile)],
                jit_compile=plan.jit_compile,
            )
            ram = pixel_bytes(mb) // 4
            train_ds, steps = tile_dataset(
                read,
                split.train,
                rows,
                cols,
                ts,
                tile,
                batch_size,
                trend=bool(trend),
                shuffle=True,
                seed=seed,
                samples=int(p["samples_per_epoch"]),
                epochs=(start_epoch, epochs),
                ram_budget=ram,
            )
            val_ds = (
                tile_dataset(
                    read,
                    split.val,
                    rows,
                    cols,
                    ts,
                    tile,
                    batch_size,
                    trend=bool(trend),
                    shuffle=False,
                    seed=seed,
                    samples=val_samples,
                    ram_budget=ram,
                )[0]
                if len(split.val)
                else None
            )
            protocol.message(
                f"Network {p['architecture']}: tile {tile} (overlap {overlap}), {net.count_params()} weights; "
                f"windows train {len(split.train)}, validation {len(split.val)}, test {len(split.test)}; "
                f"{len(rows) * len(cols)} tiles per date; per epoch {steps} batches of {batch_size} "
                f"(validation {min(val_samples, n_val)} tiles), read from {work.path}"
            )
            if start_epoch and os.path.isfile(os.path.join(ckpt_dir, "network.weights.h5")):
                net.load_weights(os.path.join(ckpt_dir, "network.weights.h5"))
                protocol.message(f"RESUME: continuing after epoch {start_epoch} from {ckpt_dir}")
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
                    steps_per_epoch=steps,
                    shuffle=False,  # tile_dataset shuffles, per epoch, with the seed
                    callbacks=callbacks,
                    verbose=0,
                )
            return net

        def _fit_custom(plan, net):
            """Training across machines (ml/loop.py): each worker reads its share of every global
            batch; only the chief writes checkpoints."""
            from .loop import LoopSettings, fit_custom

            gb = plan.global_batch
            n_train = len(split.train) * len(rows) * len(cols)
            train_n = _whole_batches(int(p["samples_per_epoch"]) or n_train, n_train, gb, "training")
            val_n = _whole_batches(min(val_samples, n_val), n_val, gb, "validation") if len(split.val) else 0
            ram = pixel_bytes(mb) // 4

            def datasets(kind: str, ctx):
                shard = (ctx.input_pipeline_id, ctx.num_input_pipelines, ctx.get_per_replica_batch_size(gb))
                labels, samples = (split.train, train_n) if kind == "train" else (split.val, val_n)
                return tile_dataset(
                    read,
                    labels,
                    rows,
                    cols,
                    ts,
                    tile,
                    gb,
                    trend=bool(trend),
                    shuffle=kind == "train",
                    seed=seed,
                    samples=samples,
                    epochs=(start_epoch, epochs),
                    ram_budget=ram,
                    shard=shard,
                )[0]

            if start_epoch and os.path.isfile(os.path.join(ckpt_dir, "network.weights.h5")):
                net.load_weights(os.path.join(ckpt_dir, "network.weights.h5"))
                protocol.message(f"RESUME: continuing after epoch {start_epoch} from {ckpt_dir}")
            protocol.message(
                f"Worker {plan.worker_index} of {plan.workers}: network {p['architecture']}, tile {tile}, "
                f"{net.count_params()} weights; per epoch {train_n // gb} steps of {gb} tiles, this worker "
                f"reads {gb // max(1, plan.workers)} of each; validation {val_n} tiles"
            )

            def on_epoch(epoch: int, logs: dict[str, float]) -> None:
                protocol.progress(
                    5 + 80 * min(1.0, (epoch - start_epoch) / max(1, epochs - start_epoch)),
                    f"epoch {epoch}/{epochs}: loss {logs['loss']:.5f}, val_loss {logs.get('val_loss', math.nan):.5f}",
                    epoch=epoch,
                    worker=plan.worker_index,
                    **logs,
                )
                if plan.is_chief:
                    checkpoint(net, epoch, logs)
                else:
                    for k, v in logs.items():
                        history.setdefault(k, []).append(v)

            settings = LoopSettings(
                epochs=epochs,
                start_epoch=start_epoch,
                steps=train_n // gb,
                val_steps=val_n // gb,
                global_batch=gb,
                learning_rate=float(p["learning_rate"]),
                patience=int(p["patience"]),
                max_seconds=float(p["max_seconds"]),
            )
            fit_custom(
                net, make_loss(float(p["mae_weight"]), tile), plan.strategy, datasets, settings, on_epoch
            )
            return net

        attempts: list[int] = []
        if p.get("cluster"):  # no batch halving across machines: every worker would have to agree
            net, plan = fit(int(p["batch_size"]), device)
        else:
            outcome = fit_with_fallback(fit, int(p["batch_size"]), device)
            net, plan = outcome.value
            device = outcome.device
        train_seconds = time.monotonic() - t_start
        epochs_run = len(history.get("loss", []))

    if plan.custom_loop:
        if not plan.is_chief:
            protocol.progress(100, f"Worker {plan.worker_index}: training done; the chief writes the model")
            return {"worker": plan.worker_index, "epochs_run": epochs_run, "train_seconds": train_seconds}
        net = _local_copy(net, build)

    # 3. the test set: one step ahead and iterative (Fig. 8), on blocks read from the work file,
    #    on the device training finally ran on
    with tf.device(device["tf_device"]):
        t_pred = time.monotonic()
        scored = _score_test(net, gru, work, prep, split, ts, tile, overlap, trend, p, mb, seed)
        predict_seconds = time.monotonic() - t_pred

    hz = scored["horizons"]
    if hz:
        protocol.message(
            f"Iterative backtest over the {len(hz['horizon'])} test dates (the way 'forecast' is used): MAE "
            f"network {hz['network_overall_mae']:.4g}, persistence {hz['persistence_overall_mae']:.4g}, "
            f"trend {hz['trend_overall_mae']:.4g}; skill vs persistence {hz['skill_vs_persistence']:.3f}, "
            f"vs trend {hz['skill_vs_trend']:.3f}"
        )
        best = min(("persistence", "trend"), key=lambda k: hz[f"{k}_overall_mae"])
        if hz["network_overall_mae"] > hz[f"{best}_overall_mae"]:
            protocol.warning(
                f"The network does not beat the {best} baseline on the iterative backtest (MAE "
                f"{hz['network_overall_mae']:.4g} vs {hz[f'{best}_overall_mae']:.4g})."
            )
    cal = scored["calibration"]
    if cal:
        q90 = [row[cal["levels"].index(0.9)] for row in cal["quantiles"]]
        protocol.message(
            f"Prediction intervals calibrated on the iterative test backtest ({min(cal['counts'])} pixels, "
            f"horizons 1..{len(q90)}): the 90 % band is +/- {q90[0]:.3g} .. {q90[-1]:.3g} x each pixel's scale"
        )

    # 4. outputs
    test = split.test
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
        "metrics": scored["metrics"],
        "test_scoring": scored["scoring"],
        # prediction intervals (core/intervals.py): calibrated on the iterative test backtest
        "calibration": scored["calibration"],
        # the iterative backtest per horizon: network, persistence, trend (issue 17)
        "backtest": scored["horizons"],
        "history": history,
        "gru_history": gru.history,
        "extremes": {
            "dates": [d.isoformat() for d in grid],
            "min": fmin.tolist(),
            "max": fmax.tolist(),
            **scored["extremes"],
        },
        "train": {k: p[k] for k in DEFAULTS if k != "device"} | {"epochs_run": epochs_run},
        "device": device["name"],
        "train_seconds": train_seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    # a network trained in mixed precision is saved as float32 (it would compute in float16 wherever
    # it is loaded otherwise, also on a CPU)
    save_model(p["output_model"], float32_twin(net, build), gru.model, meta)
    work.close()
    _remove_checkpoint(ckpt_dir)
    m = scored["metrics"]
    out: dict[str, Any] = {
        "output_model": p["output_model"],
        "device": device["name"],
        "device_reason": device["reason"],
        "training_plan": plan.describe(),
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "epochs_run": epochs_run,
        "interval_days": interval,
        "test_metrics": m["test_one_step"],
        "iterative_metrics": m["test_iterative"],
        "persistence_metrics": m["persistence"],
        "trend_metrics": m["linear_trend"],
        "backtest": scored["horizons"],
    }
    if p.get("output_report"):
        from .report import write_report

        write_report(p["output_report"], meta, scored["report_pred"], scored["report_obs"], test)
        out["output_report"] = p["output_report"]
    if p.get("predictions"):
        if scored["full"] is None:
            protocol.warning(
                f"PREDICTIONS: the test predictions of the whole {info.width} x {info.height} raster do not "
                "fit the memory budget (or only a sample of blocks was scored, TEST_TILES); not written."
            )
        else:
            from ..core.stack import atomic_path

            one_step, iterative, targets = scored["full"]
            with atomic_path(p["predictions"]) as tmp, open(tmp, "wb") as f:
                np.savez(
                    f,
                    one_step=np.asarray(one_step, dtype="float32"),
                    iterative=np.asarray(iterative, dtype="float32"),
                    targets=np.asarray(targets, dtype="float32"),
                    test_dates=np.array([grid[t].isoformat() for t in test]),
                    train_seconds=np.float64(train_seconds),
                    predict_seconds=np.float64(predict_seconds),
                    device=np.array(device["name"]),
                )
            out["predictions"] = p["predictions"]
    protocol.progress(100, "Model written")
    return out


def _whole_batches(wanted: int, available: int, global_batch: int, what: str) -> int:
    """Samples per epoch across machines: whole global batches (every worker takes equal shares)."""
    n = min(wanted, available) // global_batch * global_batch
    if n == 0:
        from ..core.errors import InputError

        raise InputError(
            f"Only {available} {what} tiles for a global batch of {global_batch} across the machines: "
            "lower --batch-size or --tile-size, or train on fewer machines."
        )
    return n


def _local_copy(net, build):
    """`net` (trained under the cluster's strategy) as a plain network of this process, so that
    scoring and saving run no collective with the other workers."""
    twin = build()
    twin.set_weights(net.get_weights())
    return twin


def _trend_settings(p, info, prep, work, split, seed, mb) -> dict[str, Any]:
    """The trend window (chosen on the validation dates when TREND_WINDOW is 0) and the frame and
    residual scales (ml/trend.py). The frame scale comes from the per-date extremes (exact); the
    window and the residual scale from the finite pixels of a seeded sample of 64 x 64 blocks of
    at most ``stats_pixels`` pixels (the whole raster when it has fewer), read chunk by chunk."""
    from .source import pixel_bytes, sample_blocks, sample_series
    from .trend import EPS, pick_window, residual_scale_of, residual_sums, window_error_sums

    ts = int(p["time_step"])
    first_test = int(split.test[0]) if len(split.test) else len(prep.grid)
    labels = np.concatenate([split.train, split.val])
    top = int(labels.max()) + 1 if len(labels) else 0
    fscale = float(max(np.abs(prep.fmin[:top]).max(), np.abs(prep.fmax[:top]).max(), EPS)) if top else 1.0
    blocks = sample_blocks(prep, int(p["stats_pixels"]), seed)
    chunk = pixel_bytes(mb) // 6

    def series():
        return sample_series(work, blocks, 0, first_test, chunk)

    tw = int(p["trend_window"])
    npix = 0
    if tw <= 0:
        first_val = int(split.val[0]) if len(split.val) else max(ts, first_test - 20)
        sums: dict[int, np.ndarray] = {}
        for z in series():
            npix += z.shape[1]
            for w, v in window_error_sums(z, first_val, first_test).items():
                sums[w] = sums[w] + v if w in sums else v
        tw, errs = pick_window(sums, npix, first_val, first_test)
        protocol.message(
            f"Trend window chosen on the validation dates (MAE 1..20 steps ahead, {npix} pixels in "
            f"{len(blocks)} blocks): "
            + ", ".join(f"{w} dates {e:.4g}" for w, e in errs.items())
            + f" -> {tw}"
        )
    sq, cnt = 0.0, 0
    for z in series():
        a, b = residual_sums(z, labels, tw)
        sq, cnt = sq + a, cnt + b
    rscale = residual_scale_of(sq, cnt, fscale)
    protocol.message(
        f"Residual over the linear trend of the last {tw} dates: frame scale {fscale:.4g}, "
        f"one-step trend residual RMS {rscale:.4g} ({info.units or 'stack units'})"
    )
    return {"trend_window": tw, "residual_scale": rscale, "frame_scale": fscale}


SCORE_EDGE = 512  # test-set scoring blocks: at most this many pixels a side


def _score_test(net, gru, work, prep, split, ts, tile, overlap, trend, p, mb, seed) -> dict[str, Any]:
    """Test-set scores, one step ahead and iterative (Fig. 8), persistence and the linear trend.

    The raster is cut into nearly equal blocks of at most SCORE_EDGE pixels a side (fewer when the
    budget is tight); at most ``test_tiles`` blocks with data are scored (a seeded sample), each read
    from the work file and forecast with the ml/forecast.py functions on its own. One block = the
    whole raster scored at once, as before; several: MAE/MSE/RMSE/PSNR/R2 pooled over their pixels,
    SSIM and MS-SSIM the pixel-weighted mean of the blocks' values. The whole test arrays (for the
    report and the ``predictions`` npz) are kept only when every block is scored and they fit the budget.
    """
    from ..core.budget import (
        budget_bytes,
        gdal_cache_bytes,
        resident_bytes,
        test_predictions_bytes,
        test_predictions_fit,
    )
    from ..core.metrics import psnr_from_mse, stack_metrics
    from .compressor import compress, decompress
    from .dataset import predict_frames
    from .forecast import iterate_compressed, iterate_trend
    from .source import BLOCK, pixel_bytes, score_blocks
    from .trend import label_inputs

    test = np.asarray(split.test)
    n_test = len(test)
    kinds = (
        "test_one_step",
        "test_iterative",
        "persistence",
        "linear_trend",
        "persistence_iterative",
        "trend_iterative",
    )
    empty = np.zeros((0, prep.height, prep.width), "float32")
    if not n_test:
        return {
            "metrics": {k: {} for k in kinds},
            "extremes": {},
            "scoring": {"blocks": 0, "of": 0, "pixels": 0},
            "report_pred": empty,
            "report_obs": empty,
            "full": (empty, empty, empty),
            "calibration": None,
            "horizons": None,
        }
    protocol.progress(87, f"Predicting the {n_test} test dates")
    fmin, fmax, n = prep.fmin, prep.fmax, prep.count
    first_test = int(test[0])
    smin, smax = gru.one_step(fmin, fmax, test)
    imin, imax = gru.iterate(fmin[:first_test], fmax[:first_test], n_test)
    tw = int(trend["trend_window"]) if trend else 0
    b0 = max(0, first_test - max(ts, tw, TREND_BASELINE_DATES))
    budget = pixel_bytes(mb)
    # bytes per block pixel: its dates and their compressed copy, five test-date arrays and the
    # float64 copies core.metrics makes (~60 bytes per test date; measured on 1500 x 1500 x 120:
    # 1.97 GB peak RSS at 2 GB with 48 bytes per test date here); a third of the budget is kept
    # for the whole test arrays and an eighth for the windows predicted at once
    per_px = 8 * (n - b0) + 104 * n_test  # + the iterative persistence and trend (issue 17)
    block_bytes = budget * 2 // 3 - budget // 8
    rss = resident_bytes()
    if rss is not None:  # what training left resident (the network, tf.data's buffers) counts too
        fits = test_predictions_fit(prep.height, prep.width, n_test, mb)
        keep = test_predictions_bytes(prep.height, prep.width, n_test) if fits else 0
        left = budget_bytes(mb) - rss - gdal_cache_bytes(mb) - keep - budget // 8
        block_bytes = max(min(block_bytes, left), 0)
    edge = int(min(SCORE_EDGE, max(tile, math.isqrt(max(block_bytes // per_px, 1)))))
    blocks = score_blocks(prep.height, prep.width, edge)
    has_data = [_block_has_data(prep.block_valid, b, BLOCK) for b in blocks]
    chosen = [b for b, ok in zip(blocks, has_data, strict=True) if ok]
    limit = int(p["test_tiles"])
    if limit > 0 and len(chosen) > limit:
        pick = np.sort(np.random.default_rng(seed + 1).choice(len(chosen), size=limit, replace=False))
        chosen = [chosen[i] for i in pick]
    every = len(chosen) == sum(has_data)
    full = None
    if every and test_predictions_fit(prep.height, prep.width, n_test, mb):
        full = tuple(np.full((n_test, prep.height, prep.width), np.nan, "float32") for _ in range(3))
    parts: dict[str, list] = {k: [] for k in kinds}
    pmin = np.full(n_test, np.nan)
    pmax = np.full(n_test, np.nan)
    best = (-1, None, None)
    data_range = None
    if len(chosen) > 1:
        data_range = float(np.max(fmax[test]) - np.min(fmin[test])) or None
    tl = test - b0
    ftl = first_test - b0
    cal = CalibrationSample(n_test, len(chosen), seed)
    cal_base = {k: CalibrationSample(n_test, len(chosen), seed) for k in ("persistence", "trend")}
    horizons = HorizonTable(n_test, tw or TREND_BASELINE_DATES)
    for k, (r, c, h, w) in enumerate(chosen):
        reg = work.read(b0, n, r, c, h, w)
        mask = np.isfinite(reg[ftl])  # the work file is NaN at every date outside the mask
        scale = pixel_scale(reg[:ftl])  # each pixel's dispersion at the backtest's origin
        targets, persistence = reg[tl], reg[tl - 1]
        persistence_it = np.repeat(reg[ftl - 1 : ftl], n_test, axis=0)  # the last observation held
        reg[:, ~mask] = 0.0  # the networks' inputs are 0 outside the mask (compress(0) = 0)
        comp = compress(reg, fmin[b0:], fmax[b0:])
        one_step = np.empty((n_test, h, w), "float32")
        chunk = max(1, int(budget // 8 // max(1, ts * h * w * 3 * 4 * 3)))  # windows predicted at once
        if trend:
            fs = trend["frame_scale"]
            for i in range(0, n_test, chunk):
                xs, lines = zip(
                    *(
                        label_inputs(reg, comp, int(t), ts, tw, trend["residual_scale"], fs)
                        for t in tl[i : i + chunk]
                    ),
                    strict=True,
                )
                one_step[i : i + chunk] = (
                    predict_frames(net, np.stack(xs), tile, overlap, trend=np.stack(lines)) * fs
                )
                del xs, lines
            iterative = iterate_trend(
                net, reg[:ftl], comp[ftl - ts : ftl], imin, imax, n_test, tile, overlap, mask, trend
            )
        else:
            for i in range(0, n_test, chunk):
                windows = np.stack([comp[t - ts : t] for t in tl[i : i + chunk]])
                pred_c = predict_frames(net, windows, tile, overlap)
                one_step[i : i + chunk] = decompress(pred_c, smin[i : i + chunk], smax[i : i + chunk])
                del windows
            it_c = iterate_compressed(net, comp[ftl - ts : ftl], n_test, tile, overlap, mask)
            iterative = decompress(it_c, imin, imax)
        del comp
        one_step[:, ~mask] = np.nan
        iterative[:, ~mask] = np.nan
        cal.add(iterative - targets, scale)
        preds = {
            "test_one_step": one_step,
            "test_iterative": iterative,
            "persistence": persistence,
            "linear_trend": _trend_one_step(reg, mask, tl, TREND_BASELINE_DATES),
            "persistence_iterative": persistence_it,
            # the line the network's trend uses (its window chosen on the validation dates)
            "trend_iterative": _trend_iterative(reg[:ftl], mask, n_test, tw or TREND_BASELINE_DATES),
        }
        horizons.add(
            targets, preds["test_iterative"], preds["persistence_iterative"], preds["trend_iterative"]
        )
        cal_base["persistence"].add(persistence_it - targets, scale)
        cal_base["trend"].add(preds["trend_iterative"] - targets, scale)
        del reg
        for kind, pred in preds.items():
            overall = stack_metrics(pred, targets, data_range)[1]
            parts[kind].append((overall, _sums(pred, targets)))
        del preds
        flat = one_step.reshape(n_test, -1)
        pmin = np.fmin(pmin, np.fmin.reduce(flat, axis=1))
        pmax = np.fmax(pmax, np.fmax.reduce(flat, axis=1))
        if full is not None:
            for arr, val in zip(full, (one_step, iterative, targets), strict=True):
                arr[:, r : r + h, c : c + w] = val
        elif mask.sum() > best[0]:
            best = (int(mask.sum()), one_step[-1:].copy(), targets[-1:].copy())
        protocol.progress(87 + 12 * (k + 1) / len(chosen), f"Test block {k + 1}/{len(chosen)} scored")
    metrics = {kind: _pool(parts[kind], data_range, psnr_from_mse) for kind in kinds}
    scoring = {
        "blocks": len(chosen),
        "of": sum(has_data),
        "edge": edge,
        "pixels": int(sum(parts["test_one_step"][i][1][0] for i in range(len(chosen))) // max(n_test, 1)),
    }
    if not every:
        protocol.message(
            f"Test set scored on {len(chosen)} of {sum(has_data)} blocks of up to {edge} x {edge} pixels "
            f"(TEST_TILES = {limit}, seeded sample)"
        )
    tm, pm = metrics["test_one_step"], metrics["persistence"]
    protocol.message(
        "Test (one step): "
        + ", ".join(f"{k}={v:.5g}" for k, v in tm.items())
        + f"; persistence MAE={pm['MAE']:.5g}; linear trend MAE={metrics['linear_trend']['MAE']:.5g}"
        + f"; iterative MAE={metrics['test_iterative']['MAE']:.5g}"
    )
    extremes = {
        "gru_one_step_min": smin.tolist(),
        "gru_one_step_max": smax.tolist(),
        "gru_iterative_min": imin.tolist(),
        "gru_iterative_max": imax.tolist(),
        "pred_min": pmin.tolist(),
        "pred_max": pmax.tolist(),
    }
    if full is not None:
        report_pred, report_obs = full[0], full[2]
    else:
        report_pred, report_obs = best[1], best[2]
    return {
        "metrics": metrics,
        "extremes": extremes,
        "scoring": scoring,
        "report_pred": report_pred,
        "report_obs": report_obs,
        "full": full,
        "calibration": cal.result(),
        "horizons": horizons.result() | {"calibration": {k: c.result() for k, c in cal_base.items()}},
    }


class HorizonTable:
    """Iterative backtest MAE per horizon 1..n_test from the first test date: the network, persistence
    and the trend line (pooled over the scored blocks' pixels)."""

    NAMES = ("network", "persistence", "trend")

    def __init__(self, n_test: int, trend_window: int):
        self.trend_window = int(trend_window)
        self.sums = np.zeros((3, n_test))
        self.counts = np.zeros((3, n_test))

    def add(self, targets: np.ndarray, *preds: np.ndarray) -> None:
        for i, pred in enumerate(preds):
            e = np.abs(pred.astype("float64") - targets).reshape(targets.shape[0], -1)
            ok = np.isfinite(e)
            self.sums[i] += np.where(ok, e, 0.0).sum(axis=1)
            self.counts[i] += ok.sum(axis=1)

    def result(self) -> dict[str, Any]:
        with np.errstate(all="ignore"):
            mae = self.sums / self.counts
            overall = self.sums.sum(axis=1) / self.counts.sum(axis=1)
        out: dict[str, Any] = {
            "horizon": list(range(1, self.sums.shape[1] + 1)),
            "trend_window": self.trend_window,
        }
        for i, name in enumerate(self.NAMES):
            out[f"{name}_mae"] = [float(v) for v in mae[i]]
            out[f"{name}_overall_mae"] = float(overall[i])
        net, pers, trend = (float(v) for v in overall)
        out["skill_vs_persistence"] = 1.0 - net / pers if pers > 0 else math.nan
        out["skill_vs_trend"] = 1.0 - net / trend if trend > 0 else math.nan
        return out


def _trend_iterative(hist: np.ndarray, mask: np.ndarray, steps: int, window: int) -> np.ndarray:
    """Baseline: the per-pixel line over the last `window` dates of `hist`, extrapolated `steps` dates."""
    from .trend import fit_line, line_at

    last, slope = fit_line(np.where(mask, hist[-window:], 0.0))
    out = line_at(last, slope, np.arange(1, steps + 1)).astype("float32")
    out[:, ~mask] = np.nan
    return out


class CalibrationSample:
    """The iterative backtest's errors (horizons 1..n_test from the first test date) and the pixels'
    scales, gathered block by block (at most MAX_PIXELS pixels in all, a seeded sample), for the
    prediction intervals' calibration (core/intervals.py) stored in the model file."""

    MAX_PIXELS = 200_000

    def __init__(self, n_test: int, n_blocks: int, seed: int):
        self.per_block = max(1, self.MAX_PIXELS // max(n_blocks, 1))
        self.rng = np.random.default_rng(seed + 2)
        self.errors: list[np.ndarray] = []
        self.scales: list[np.ndarray] = []

    def add(self, errors: np.ndarray, scale: np.ndarray) -> None:
        e = errors.reshape(errors.shape[0], -1)
        s = scale.reshape(-1)
        ok = np.flatnonzero(np.isfinite(e).all(axis=0) & np.isfinite(s))
        if ok.size > self.per_block:
            ok = np.sort(self.rng.choice(ok, size=self.per_block, replace=False))
        self.errors.append(e[:, ok].astype("float32"))
        self.scales.append(s[ok].astype("float32"))

    def result(self) -> dict[str, Any] | None:
        if not self.errors or not sum(s.size for s in self.scales):
            return None
        return calibrate(np.concatenate(self.errors, axis=1), np.concatenate(self.scales))


TREND_BASELINE_DATES = 40  # the linear-trend baseline's line (the bench's baseline uses 40 dates)


def _block_has_data(block_valid: np.ndarray, b: tuple[int, int, int, int], size: int) -> bool:
    r, c, h, w = b
    return bool(block_valid[r // size : -(-(r + h) // size), c // size : -(-(c + w) // size)].any())


def _sums(pred: np.ndarray, obs: np.ndarray) -> tuple[int, float, float]:
    """(valid pixels, sum of obs, sum of obs**2) over the pixels finite in both (for a pooled R^2)."""
    ok = np.isfinite(pred) & np.isfinite(obs)
    o = obs[ok].astype("float64")
    return int(ok.sum()), float(o.sum()), float((o * o).sum())


def _pool(parts: list, data_range: float | None, psnr_from_mse) -> dict[str, float]:
    """One block: its metrics as they are. Several: pooled over their pixels (see _score_test)."""
    if len(parts) == 1:
        return {k: float(v) for k, v in parts[0][0].items()}
    n = sum(s[0] for _, s in parts)
    if not n:
        return {k: math.nan for k in parts[0][0]}

    def wmean(key: str) -> float:
        vals = [(m[key], s[0]) for m, s in parts if s[0] and np.isfinite(m[key])]
        wsum = sum(w for _, w in vals)
        return float(sum(v * w for v, w in vals) / wsum) if wsum else math.nan

    mse = wmean("MSE")
    so = sum(s[1] for _, s in parts)
    so2 = sum(s[2] for _, s in parts)
    ss_tot = so2 - so * so / n
    ss_res = mse * n
    L = float(data_range) if data_range else float(parts[0][0]["DATA_RANGE"])
    return {
        "MAE": wmean("MAE"),
        "MSE": mse,
        "RMSE": math.sqrt(mse) if np.isfinite(mse) else math.nan,
        "SSIM": wmean("SSIM"),
        "MS_SSIM": wmean("MS_SSIM"),
        "PSNR": psnr_from_mse(mse, L),
        "R2": 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        "N": float(n),
        "DATA_RANGE": L,
    }


def _trend_one_step(reg: np.ndarray, mask: np.ndarray, labels: np.ndarray, trend_window: int) -> np.ndarray:
    """Baseline: per-pixel line over the last `trend_window` dates before each label, one step on
    (the bench's baseline uses 40 dates)."""
    from .trend import fit_line

    out = np.empty((len(labels),) + reg.shape[1:], "float32")
    for i, t in enumerate(labels):
        last, slope = fit_line(np.where(mask, reg[max(0, int(t) - trend_window) : int(t)], 0.0))
        out[i] = np.where(mask, last + slope, np.nan)
    return out


def _signature(p: dict[str, Any], info) -> str:
    keys = [
        k
        for k in DEFAULTS
        if k
        not in ("epochs", "resume", "device", "max_seconds", "patience", "memory_budget_mb", "test_tiles")
    ]
    sig = {k: p[k] for k in keys} | {"input": os.path.abspath(p["input"]), "shape": list(info.shape)}
    return json.dumps(sig, sort_keys=True, default=str)


def _remove_checkpoint(folder: str) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
