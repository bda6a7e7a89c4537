"""Training (§III-B-2) and the worker's ``train`` command.

Steps: resample the stack to a regular interval into a work file, streamed by windows within the
memory budget (ml/source.py; the per-date extremes are gathered on the way), fit the GRU extremum
compressor on the dates before the test set, for the default networks (``residual`` "trend",
ml/trend.py) pick the per-pixel trend window on the validation dates and fit the residual scale
(on a seeded sample of blocks), train the network on (time window x tile) examples read from the
work file on the fly by a tf.data pipeline (ml/dataset.py tile_dataset; frames compressed by eq. 3
as they are read) (loss eq. 11, Adam, early stopping on the validation loss with the best weights
kept), score the test set one step ahead and iteratively (Fig. 8) block by block (ml/scoring.py),
write the model file, the HTML report and, on request, the raw predictions (``predictions``: an
npz for ``comparemodels``, when the whole raster's test arrays fit the budget). The stack is never
held whole in memory. :class:`Training` runs these steps; :class:`Checkpoint` keeps RESUME's state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.run import Run
from ..jobs import TrainJob
from . import protocol
from .modelfile import ModelMeta, TrendParams

# the training settings: what the model file records of its training (``train``) and, but for
# those that do not shape the result (RESUME_FREE), what a checkpoint must match to be resumed.
# Their defaults, bounds and meaning are declared once, in jobs.TrainJob.
SETTINGS = (
    "architecture",
    "residual",
    "trend_window",
    "time_step",
    "test_count",
    "validation_fraction",
    "epochs",
    "batch_size",
    "learning_rate",
    "mae_weight",
    "tile_size",
    "interval_days",
    "device",
    "seed",
    "resume",
    "width",
    "lstm_units",
    "patience",
    "samples_per_epoch",
    "max_seconds",
    "gru_time_step",
    "gru_units",
    "gru_epochs",
    "gru_batch_size",
    "gru_learning_rate",
    "jit_compile",
    "mixed_precision",
    "memory_budget_mb",
    "validation_samples",
    "stats_pixels",
    "test_tiles",
)
RESUME_FREE = ("epochs", "resume", "device", "max_seconds", "patience", "memory_budget_mb", "test_tiles")
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainJob) if f.name in SETTINGS}


class _Progress:
    """Keras callback factory (built lazily so that this module imports without Keras)."""

    @staticmethod
    def make(
        epochs: int, start: int, span: tuple[float, float], max_seconds: float, checkpoint: Any = None
    ) -> Any:
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


def train_job(job: TrainJob | Mapping[str, Any]) -> TrainJob:
    """`job`, or the TrainJob of a params dict (``TrainJob.asdict()``'s keys; ml/cluster.py sends
    one), checked by jobs.py (InputError naming an unknown or invalid key)."""
    return job if isinstance(job, TrainJob) else TrainJob.from_dict(job)


def test_count_of(job: TrainJob, n_dates: int) -> int:
    """``test_count``, or for -1 what the series can spare: min(20, n_dates // 5), said in the log."""
    tc = int(job.test_count)
    if tc >= 0:
        return tc
    tc = max(1, min(20, n_dates // 5))
    protocol.message(
        f"TEST_COUNT: the last {tc} of the {n_dates} dates at the training interval are the test set "
        "(the smaller of 20 and a fifth of the dates; set TEST_COUNT to choose)"
    )
    return tc


def run_train(job: TrainJob | Mapping[str, Any]) -> dict[str, Any]:
    """Worker command ``train``; see the module doc. Returns the result dict."""
    from .device import configure_device, worker_run

    job = train_job(job)
    device = configure_device(job.device)
    protocol.message(f"Device: {device['name']} ({device['reason']})")
    strategy = None
    if job.cluster:  # several machines (ml/cluster.py): the strategy before any other op
        from .distribute import start_cluster

        strategy = start_cluster(float(job.cluster_timeout or 0))
    import keras
    import tensorflow as tf

    from ..core.budget import gdal_env
    from ..core.dates import median_interval
    from ..core.stack import read_info
    from .dataset import split_windows
    from .source import WorkStack, prepare, regular_dates

    keras.utils.set_random_seed(int(job.seed))
    if device["tf_device"].startswith("/CPU"):
        tf.config.experimental.enable_op_determinism()
    run = worker_run(job.memory_budget_mb)
    info = read_info(job.input)
    if strategy is not None:
        from .cluster import check_same_stack

        check_same_stack(strategy, info, job.input)
    interval = int(job.interval_days) or median_interval(info.dates)
    grid = regular_dates(info, interval)
    ts = int(job.time_step)
    split = split_windows(len(grid), ts, test_count_of(job, len(grid)), float(job.validation_fraction))
    checkpoint = Checkpoint(job.output_model + ".checkpoint", _signature(job, info))
    # a worker other than the chief keeps its work file to itself and writes nothing beside the model
    chief = strategy is None or not strategy.cluster_resolver.task_id
    work_dir = checkpoint.folder if chief else tempfile.mkdtemp(prefix="deformation_forecast_worker_")
    try:
        with gdal_env(run.budget_mb):
            protocol.progress(0, "Resampling the stack to the regular grid (work file)")
            prep = prepare(info, interval, work_dir, run)
            protocol.message(
                f"{info.count} acquisitions {info.dates[0]}..{info.dates[-1]} resampled to {len(grid)} dates "
                f"every {interval} days; raster {info.width} x {info.height}; work stack "
                + (f"written in {prep.windows} window(s)" if prep.windows else "reused")
                + f" (memory budget {run.mb:.0f} MB)"
            )
            with WorkStack(prep) as work:
                data = TrainingData(info, prep, work, split)
                return Training(job, data, device, run, checkpoint).execute()
    finally:
        # a checkpoint folder without a finished epoch (e.g. a full disk) cannot be resumed: removed
        if work_dir != checkpoint.folder or not os.path.isfile(checkpoint.path(Checkpoint.STATE)):
            shutil.rmtree(work_dir, ignore_errors=True)


@dataclass(frozen=True)
class TrainingData:
    """The stack being trained on: its description, the regular work file (ml/source.py) and the
    split of its label dates (ml/dataset.py)."""

    info: Any  # core.stack.StackInfo
    prep: Any  # source.Prepared
    work: Any  # source.WorkStack
    split: Any  # dataset.Split

    @property
    def first_test(self) -> int:
        return int(self.split.test[0]) if len(self.split.test) else len(self.prep.grid)


class Checkpoint:
    """The checkpoint folder ``<output_model>.checkpoint`` (RESUME, issue 9), in one place: after
    every epoch the network's weights, the compressor's weights (once per run) and ``state.json``
    (the parameters' signature, the epoch, the histories, the compressor's parameters), each
    written under a temporary name and renamed; a state with another signature is not resumed."""

    STATE = "state.json"
    NETWORK = "network.weights.h5"
    COMPRESSOR = "compressor.weights.h5"

    def __init__(self, folder: str, signature: str):
        self.folder, self.signature = folder, signature

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def read_state(self) -> dict[str, Any] | None:
        """The saved state when it is one of these parameters and data (else None, said)."""
        if not os.path.isfile(self.path(self.STATE)):
            return None
        with open(self.path(self.STATE), encoding="utf-8") as f:
            state = json.load(f)
        if state.get("signature") != self.signature:
            protocol.warning(
                "RESUME: the checkpoint was made with other parameters or data; starting afresh."
            )
            return None
        return state

    def load_compressor(self, state: dict[str, Any]) -> Any:
        from .compressor import ExtremumGRU

        gru = ExtremumGRU.from_params(state["compressor"])
        gru.model = gru.build()
        gru.model.load_weights(self.path(self.COMPRESSOR))
        gru.history = state.get("gru_history", {})
        return gru

    def load_network(self, net: Any, start_epoch: int) -> None:
        """Continue `net` from the saved weights when training starts after epoch `start_epoch` > 0."""
        if start_epoch and os.path.isfile(self.path(self.NETWORK)):
            net.load_weights(self.path(self.NETWORK))
            protocol.message(f"RESUME: continuing after epoch {start_epoch} from {self.folder}")

    def save(
        self, net: Any, gru: Any, epoch: int, history: dict[str, list[float]], own_compressor: bool
    ) -> None:
        """Save after `epoch`. `own_compressor`: this run fitted its compressor (a stale one from an
        interrupted run with other parameters would otherwise be loaded on RESUME)."""
        os.makedirs(self.folder, exist_ok=True)
        self._replace(self.NETWORK, net.save_weights)
        if own_compressor or not os.path.exists(self.path(self.COMPRESSOR)):
            self._replace(self.COMPRESSOR, gru.model.save_weights)
        state = {
            "signature": self.signature,
            "epoch": epoch,
            "history": history,
            "compressor": gru.params(),
            "gru_history": gru.history,
        }

        def dump(path: str) -> None:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(state, f)

        self._replace(self.STATE, dump)

    def _replace(self, name: str, write: Any) -> None:
        stem, ext = name.split(".", 1)
        tmp = self.path(f"{stem}.tmp.{ext}")
        write(tmp)
        os.replace(tmp, self.path(name))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def remove_work(self, work_path: str) -> None:
        """Remove the training's work file (ml/source.py) and its summary from the folder."""
        from .source import SUMMARY_NAME

        for path in (work_path, os.path.join(os.path.dirname(work_path), SUMMARY_NAME)):
            if os.path.dirname(os.path.abspath(path)) == os.path.abspath(self.folder):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def failed_write(self, model_path: str, e: BaseException) -> None:
        """When the model file could not be written for want of room or rights (the InputError of
        core.outputs.write_error, or an OSError with a disk errno) after an epoch was checkpointed,
        raise that message saying that the trained network waits in this folder for RESUME."""
        from ..core.outputs import DISK_ERRNOS, write_error

        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            e = write_error(model_path, e)
        if not os.path.isfile(self.path(self.STATE)) or not str(e).startswith("Cannot write the output"):
            return
        raise InputError(
            f"{e} The trained network is kept in {self.folder!r}: once there is room, run again with "
            "RESUME ('Resume an interrupted run from its checkpoint') to write the model without "
            "training again, or delete that folder."
        ) from e


class Training:
    """One training run (see the module doc), in named steps: :meth:`fit_compressor`,
    :meth:`prepare_network`, :meth:`fit_network`, :meth:`score`, :meth:`save`. The resume state
    is read once, here; the epochs' history and the last checkpointed epoch live on the object."""

    def __init__(
        self, job: Any, data: TrainingData, device: dict[str, Any], run: Run, checkpoint: Checkpoint
    ):
        self.job, self.data, self.device, self.run, self.checkpoint = job, data, device, run, checkpoint
        self.ts, self.seed = int(job.time_step), int(job.seed)
        self.resume = checkpoint.read_state() if job.resume else None
        self.start_epoch = int(self.resume["epoch"]) if self.resume else 0
        self.history: dict[str, list[float]] = self.resume.get("history", {}) if self.resume else {}
        self.saved_epoch = self.start_epoch  # the last epoch checkpointed (a retry continues there)
        self.attempts: list[int] = []
        self.gru: Any = None
        self.trend: TrendParams | None = None
        self.trend_line: dict[str, Any] | None = None

    def execute(self) -> dict[str, Any]:
        import tensorflow as tf

        t_start = time.monotonic()
        with tf.device(self.device["tf_device"]):
            self.fit_compressor()
            self.prepare_network()
            net, plan = self.fit_network()
        train_seconds = time.monotonic() - t_start
        epochs_run = len(self.history.get("loss", []))
        if plan.custom_loop:
            if not plan.is_chief:
                protocol.progress(
                    100, f"Worker {plan.worker_index}: training done; the chief writes the model"
                )
                return {"worker": plan.worker_index, "epochs_run": epochs_run, "train_seconds": train_seconds}
            net = _local_copy(net, self.build)
        # the test set on the device training finally ran on
        with tf.device(self.device["tf_device"]):
            t_pred = time.monotonic()
            scored = self.score(net)
            predict_seconds = time.monotonic() - t_pred
        _say_backtest(scored)
        return self.save(net, plan, scored, (train_seconds, predict_seconds))

    # 1. the extremum compressor (eqs. 1-4), on the dates before the test set (global: per-date
    #    extremes of the whole raster, gathered while the work file was written)
    def fit_compressor(self) -> None:
        from .compressor import ExtremumGRU

        job, prep, first_test = self.job, self.data.prep, self.data.first_test
        if self.resume:
            self.gru = self.checkpoint.load_compressor(self.resume)
        else:
            self.gru = ExtremumGRU(
                time_step=int(job.gru_time_step),
                units=int(job.gru_units),
                epochs=int(job.gru_epochs),
                batch_size=int(job.gru_batch_size),
                learning_rate=float(job.gru_learning_rate),
            )
            protocol.progress(1, "Fitting the GRU extremum compressor")
            self.gru.fit(prep.fmin[:first_test], prep.fmax[:first_test])
        loss = self.gru.history.get("loss", [math.nan])[-1]
        protocol.progress(5, f"GRU compressor: time step {self.gru.time_step}, final LogCosh {loss:.4g}")

    # 2. the network: its tiles, its residual (the trend settings) and its examples
    def prepare_network(self) -> None:
        from .dataset import TileSpec, choose_tile, tile_grid, tile_reader
        from .network import default_residual

        job, info, prep, split = self.job, self.data.info, self.data.prep, self.data.split
        self.tile = choose_tile(info.height, info.width, int(job.tile_size))
        self.overlap = self.tile // 4
        self.units = tuple(int(u) for u in job.lstm_units) if job.lstm_units else None
        self.residual = (
            default_residual(job.architecture) if job.residual in ("auto", "", None) else job.residual
        )
        if self.residual == "trend":
            self.trend, self.trend_line = trend_settings(job, self.data, self.seed, self.run)
        self.read = tile_reader(self.data.work, prep.fmin, prep.fmax, self.ts, self.tile, self.trend)
        rows, cols = tile_grid(info.height, info.width, self.tile, self.overlap)
        self.spec = TileSpec(rows, cols, self.ts, self.tile, trend=bool(self.trend))
        self.n_val = self.spec.items(split.val)
        self.val_samples = int(job.validation_samples) or min(
            self.n_val, max(4096, int(job.samples_per_epoch))
        )

    def build(self) -> Any:
        from .network import build_network

        t = self.trend
        scale = t.residual_scale / t.frame_scale if t else 1.0
        job = self.job
        return build_network(
            job.architecture, self.ts, self.tile, int(job.width), self.units, self.residual, scale
        )

    def fit_network(self) -> tuple[Any, Any]:
        """The trained network and its training plan; out of memory, the batch is halved (ml/oom.py)."""
        from .oom import fit_with_fallback

        if self.job.cluster:  # no batch halving across machines: all would have to agree
            return self._fit(int(self.job.batch_size), self.device)
        outcome = fit_with_fallback(self._fit, int(self.job.batch_size), self.device)
        self.device = outcome.device
        return outcome.value

    def _fit(self, batch_size: int, dev: dict[str, Any]) -> tuple[Any, Any]:
        """Build, compile and fit the network with a per-replica `batch_size` on `dev` under the
        training plan (strategy, dtype policy, XLA: ml/distribute.py). A retry after running out
        of memory continues from the last epoch checkpointed by this run."""
        from .distribute import plan_training

        job = self.job
        plan = plan_training(dev, batch_size, job.architecture, job.mixed_precision, job.jit_compile)
        protocol.message(plan.describe())
        plan.apply_policy()
        if self.attempts:
            self.start_epoch = self.saved_epoch
        self.attempts.append(batch_size)
        if plan.custom_loop:  # the network in the strategy's scope; the checkpoints outside it
            with plan.scope():
                net = self.build()
            return self._fit_custom(plan, net), plan
        with plan.scope():
            net = self._fit_keras(plan, plan.global_batch)
        return net, plan

    def _on_epoch_end(self, net: Any, epoch: int, logs: dict[str, float], write: bool = True) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        if write:
            self.checkpoint.save(net, self.gru, epoch, self.history, own_compressor=not self.resume)
            self.saved_epoch = epoch

    def _datasets(self, batch_size: int, shard: tuple[int, int, int] = (0, 1, 0)) -> tuple[Any, int, Any]:
        """(training pipeline, its steps per epoch, validation pipeline or None)."""
        from .dataset import Sampling, tile_dataset

        job, split, ram = self.job, self.data.split, self.run.worker_pixel_bytes() // 4
        epochs = (self.start_epoch, int(job.epochs))
        train = Sampling(True, self.seed, int(job.samples_per_epoch), epochs, shard)
        train_ds, steps = tile_dataset(self.read, split.train, self.spec, batch_size, train, ram)
        if not len(split.val):
            return train_ds, steps, None
        val = Sampling(False, self.seed, self.val_samples, shard=shard)
        return train_ds, steps, tile_dataset(self.read, split.val, self.spec, batch_size, val, ram)[0]

    def _fit_keras(self, plan: Any, batch_size: int) -> Any:
        import keras

        from .network import make_loss, masked_mae, ssim_metric

        job, split, epochs = self.job, self.data.split, int(self.job.epochs)
        net = self.build()
        net.compile(
            optimizer=keras.optimizers.Adam(float(job.learning_rate), clipnorm=1.0),
            loss=make_loss(float(job.mae_weight), self.tile),
            metrics=[masked_mae, ssim_metric(self.tile)],
            jit_compile=plan.jit_compile,
        )
        train_ds, steps, val_ds = self._datasets(batch_size)
        protocol.message(
            f"Network {job.architecture}: tile {self.tile} (overlap {self.overlap}), {net.count_params()} weights; "
            f"windows train {len(split.train)}, validation {len(split.val)}, test {len(split.test)}; "
            f"{len(self.spec.rows) * len(self.spec.cols)} tiles per date; per epoch {steps} batches of "
            f"{batch_size} (validation {min(self.val_samples, self.n_val)} tiles), read from {self.data.work.path}"
        )
        self.checkpoint.load_network(net, self.start_epoch)
        callbacks = [
            keras.callbacks.TerminateOnNaN(),
            _Progress.make(epochs, self.start_epoch, (5, 85), float(job.max_seconds), self._on_epoch_end),
        ]
        if val_ds is not None and int(job.patience) > 0:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=int(job.patience), restore_best_weights=True
                )
            )
        if self.start_epoch < epochs:
            net.fit(
                train_ds,
                validation_data=val_ds,
                epochs=epochs,
                initial_epoch=self.start_epoch,
                steps_per_epoch=steps,
                shuffle=False,  # tile_dataset shuffles, per epoch, with the seed
                callbacks=callbacks,
                verbose=0,
            )
        return net

    def _fit_custom(self, plan: Any, net: Any) -> Any:
        """Training across machines (ml/loop.py): each worker reads its share of every global
        batch; only the chief writes checkpoints."""
        from .loop import LoopSettings, fit_custom
        from .network import make_loss

        job, split, gb, epochs = self.job, self.data.split, plan.global_batch, int(self.job.epochs)
        n_train = self.spec.items(split.train)
        train_n = _whole_batches(int(job.samples_per_epoch) or n_train, n_train, gb, "training")
        val_n = (
            _whole_batches(min(self.val_samples, self.n_val), self.n_val, gb, "validation")
            if len(split.val)
            else 0
        )
        ram = self.run.worker_pixel_bytes() // 4

        def datasets(kind: str, ctx: Any) -> Any:
            from .dataset import Sampling, tile_dataset

            shard = (ctx.input_pipeline_id, ctx.num_input_pipelines, ctx.get_per_replica_batch_size(gb))
            labels, samples = (split.train, train_n) if kind == "train" else (split.val, val_n)
            sampling = Sampling(kind == "train", self.seed, samples, (self.start_epoch, epochs), shard)
            return tile_dataset(self.read, labels, self.spec, gb, sampling, ram)[0]

        self.checkpoint.load_network(net, self.start_epoch)
        protocol.message(
            f"Worker {plan.worker_index} of {plan.workers}: network {job.architecture}, tile {self.tile}, "
            f"{net.count_params()} weights; per epoch {train_n // gb} steps of {gb} tiles, this worker "
            f"reads {gb // max(1, plan.workers)} of each; validation {val_n} tiles"
        )

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            protocol.progress(
                5 + 80 * min(1.0, (epoch - self.start_epoch) / max(1, epochs - self.start_epoch)),
                f"epoch {epoch}/{epochs}: loss {logs['loss']:.5f}, val_loss {logs.get('val_loss', math.nan):.5f}",
                epoch=epoch,
                worker=plan.worker_index,
                **logs,
            )
            self._on_epoch_end(net, epoch, logs, write=plan.is_chief)

        settings = LoopSettings(
            epochs=epochs,
            start_epoch=self.start_epoch,
            steps=train_n // gb,
            val_steps=val_n // gb,
            global_batch=gb,
            learning_rate=float(job.learning_rate),
            patience=int(job.patience),
            max_seconds=float(job.max_seconds),
        )
        fit_custom(
            net, make_loss(float(job.mae_weight), self.tile), plan.strategy, datasets, settings, on_epoch
        )
        return net

    # 3. the test set: one step ahead and iterative (Fig. 8), on blocks read from the work file
    def score(self, net: Any) -> dict[str, Any]:
        from .forecast import Predictor
        from .scoring import TestScoring, score_test

        model = Predictor(net, self.ts, self.tile, self.overlap, self.trend, line=self.trend_line)
        return score_test(
            TestScoring(model, self.gru, self.data, self.run, int(self.job.test_tiles), self.seed)
        )

    # 4. the outputs: the model file, the report, the predictions
    def meta(self, scored: dict[str, Any], seconds: tuple[float, float]) -> ModelMeta:
        from .modelfile import grid_of

        job, info, prep, split = self.job, self.data.info, self.data.prep, self.data.split
        grid = prep.grid
        return ModelMeta(
            architecture=job.architecture,
            residual=self.residual,
            trend=self.trend,
            trend_line=self.trend_line,
            time_step=self.ts,
            interval_days=prep.interval,
            tile=self.tile,
            overlap=self.overlap,
            width=int(job.width),
            lstm_units=list(self.units) if self.units else None,
            mae_weight=float(job.mae_weight),
            grid=grid_of(info),
            units=info.units,
            dates=[d.isoformat() for d in grid],
            source_dates=[d.isoformat() for d in info.dates],
            test_dates=[grid[t].isoformat() for t in split.test],
            compressor=self.gru.params(),
            metrics=scored["metrics"],
            test_scoring=scored["scoring"],
            calibration=scored["calibration"],  # prediction intervals (core/intervals.py)
            backtest=scored["horizons"],  # the iterative backtest per horizon (issue 17)
            history=self.history,
            gru_history=self.gru.history,
            extremes={
                "dates": [d.isoformat() for d in grid],
                "min": prep.fmin.tolist(),
                "max": prep.fmax.tolist(),
                **scored["extremes"],
            },
            train={k: getattr(job, k) for k in SETTINGS if k != "device"}
            | {"epochs_run": len(self.history.get("loss", []))},
            device=self.device["name"],
            train_seconds=seconds[0],
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )

    def save(
        self, net: Any, plan: Any, scored: dict[str, Any], seconds: tuple[float, float]
    ) -> dict[str, Any]:
        from .distribute import float32_twin
        from .modelfile import save_model

        job, device = self.job, self.device
        meta = self.meta(scored, seconds)
        # the work file is read no more: its room (beside the model) goes to the model file, and a
        # failed write leaves only the checkpoint that RESUME needs
        self.data.work.close()
        self.checkpoint.remove_work(self.data.prep.path)
        try:
            # a network trained in mixed precision is saved as float32 (it would compute in float16
            # wherever it is loaded otherwise, also on a CPU)
            save_model(job.output_model, float32_twin(net, self.build), self.gru.model, meta)
        except (OSError, InputError) as e:  # atomic_path says a full or read-only disk as InputError
            self.checkpoint.failed_write(job.output_model, e)
            raise
        self.checkpoint.remove()
        m = scored["metrics"]
        out: dict[str, Any] = {
            "output_model": job.output_model,
            "device": device["name"],
            "device_reason": device["reason"],
            "training_plan": plan.describe(),
            "train_seconds": seconds[0],
            "predict_seconds": seconds[1],
            "epochs_run": meta.train["epochs_run"],
            "interval_days": meta.interval_days,
            "test_metrics": m["test_one_step"],
            "iterative_metrics": m["test_iterative"],
            "persistence_metrics": m["persistence"],
            "trend_metrics": m["linear_trend"],
            "backtest": scored["horizons"],
        }
        if job.output_report:
            from .report import write_report

            write_report(
                job.output_report, meta, scored["report_pred"], scored["report_obs"], self.data.split.test
            )
            out["output_report"] = job.output_report
        if job.predictions and self._write_predictions(scored, meta, seconds):
            out["predictions"] = job.predictions
        protocol.progress(100, "Model written")
        return out

    def _write_predictions(
        self, scored: dict[str, Any], meta: ModelMeta, seconds: tuple[float, float]
    ) -> bool:
        """The raw test predictions (npz, for ``comparemodels``) when the whole raster was kept."""
        from ..core.stack import atomic_path

        info = self.data.info
        if scored["full"] is None:
            protocol.warning(
                f"PREDICTIONS: the test predictions of the whole {info.width} x {info.height} raster do not "
                "fit the memory budget (or only a sample of blocks was scored, TEST_TILES); not written."
            )
            return False
        one_step, iterative, targets = scored["full"]
        with atomic_path(self.job.predictions) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                one_step=np.asarray(one_step, dtype="float32"),
                iterative=np.asarray(iterative, dtype="float32"),
                targets=np.asarray(targets, dtype="float32"),
                test_dates=np.array(meta.test_dates),
                train_seconds=np.float64(seconds[0]),
                predict_seconds=np.float64(seconds[1]),
                device=np.array(self.device["name"]),
            )
        return True


def _say_backtest(scored: dict[str, Any]) -> None:
    """The iterative backtest and the intervals' calibration in the log (and a warning when the
    network does not beat the best simple baseline)."""
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
            f"{cal.get('origins', 1)} rolling origins, "
            f"horizons 1..{len(q90)}): the 90 % band is +/- {q90[0]:.3g} .. {q90[-1]:.3g} x each pixel's spread "
            f"sqrt(dispersion^2 + ({cal.get('motion', 0.0):.3g} x forecast motion)^2), grown beyond "
            "the calibrated horizons"
        )


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


def _local_copy(net: Any, build: Any) -> Any:
    """`net` (trained under the cluster's strategy) as a plain network of this process, so that
    scoring and saving run no collective with the other workers."""
    twin = build()
    twin.set_weights(net.get_weights())
    return twin


def trend_settings(
    job: TrainJob, data: TrainingData, seed: int, run: Run
) -> tuple[TrendParams, dict[str, Any]]:
    """The trend window (chosen on the validation dates when TREND_WINDOW is 0), the frame and
    residual scales (ml/trend.py) and the forecast's base line (``trend_line``: the weighted line
    with the slope shrinkage chosen on the validation dates). The frame scale comes from the
    per-date extremes (exact); the rest from the finite pixels of a seeded sample of 64 x 64 blocks
    of at most ``stats_pixels`` pixels (the whole raster when it has fewer), read chunk by chunk."""
    from .source import sample_blocks, sample_series
    from .trend import EPS, residual_scale_of, residual_sums

    prep, split, first_test = data.prep, data.split, data.first_test
    labels = np.concatenate([split.train, split.val])
    top = int(labels.max()) + 1 if len(labels) else 0
    fscale = float(max(np.abs(prep.fmin[:top]).max(), np.abs(prep.fmax[:top]).max(), EPS)) if top else 1.0
    blocks = sample_blocks(prep, int(job.stats_pixels), seed)
    chunk = run.worker_pixel_bytes() // 6

    def series() -> Any:
        return sample_series(data.work, blocks, 0, first_test, chunk)

    tw = int(job.trend_window)
    first_val = int(split.val[0]) if len(split.val) else max(int(job.time_step), first_test - 20)
    if tw <= 0:
        tw = _choose_trend_window(series(), first_val, first_test, len(blocks))
    line = _choose_shrink(series(), first_val, first_test, tw)
    sq, cnt = 0.0, 0
    for z in series():
        a, b = residual_sums(z, labels, tw)
        sq, cnt = sq + a, cnt + b
    rscale = residual_scale_of(sq, cnt, fscale)
    protocol.message(
        f"Residual over the linear trend of the last {tw} dates: frame scale {fscale:.4g}, "
        f"one-step trend residual RMS {rscale:.4g} ({data.info.units or 'stack units'})"
    )
    return TrendParams(int(tw), float(rscale), float(fscale)), line


def _choose_shrink(chunks: Any, first_val: int, first_test: int, window: int) -> dict[str, Any]:
    """The forecast's base line (ml/trend.py stable_line): the slope shrinkage of least pooled MAE
    1..20 steps ahead on the validation dates (ties the weaker shrinkage), said in the log."""
    from .trend import SHRINK_CANDIDATES, shrink_error_sums

    sums = {k: (0.0, 0) for k in SHRINK_CANDIDATES}
    for z in chunks:
        for k, (e, c) in shrink_error_sums(z, first_val, first_test, window).items():
            sums[k] = (sums[k][0] + e, sums[k][1] + c)
    maes = {k: e / c for k, (e, c) in sums.items() if c}
    shrink = min(maes, key=lambda k: (maes[k], k)) if maes else 0.0
    protocol.message(
        "Forecast base line: least squares weighted by each date's noise, slope shrunk toward zero by "
        "its significance; shrinkage chosen on the validation dates (MAE 1..20 steps ahead): "
        + ", ".join(f"{k:g} {e:.4g}" for k, e in maes.items())
        + f" -> {shrink:g}"
    )
    return {"weighted": True, "shrink": float(shrink)}


def _choose_trend_window(chunks: Any, first_val: int, first_test: int, n_blocks: int) -> int:
    """The trend window chosen on the validation dates from the sampled pixel series (ml/trend.py)."""
    from ..core.baselines import add_errors
    from .trend import pick_window, window_error_sums

    sums: dict[int, tuple[float, int]] = {}
    npix = 0
    for z in chunks:
        npix += z.shape[1]
        add_errors(sums, window_error_sums(z, first_val, first_test))
    tw, errs = pick_window(sums)
    protocol.message(
        f"Trend window chosen on the validation dates (MAE 1..20 steps ahead, {npix} pixels in "
        f"{n_blocks} blocks): " + ", ".join(f"{w} dates {e:.4g}" for w, e in errs.items()) + f" -> {tw}"
    )
    return tw


def _signature(job: TrainJob, info: Any) -> str:
    """What a checkpoint must have been made with to be resumed: the parameters that shape the
    training (not the epochs, the device, the budgets), the input and its shape."""
    keys = [k for k in SETTINGS if k not in RESUME_FREE]
    sig = {k: getattr(job, k) for k in keys} | {
        "input": os.path.abspath(job.input),
        "shape": list(info.shape),
    }
    return json.dumps(sig, sort_keys=True, default=str)
