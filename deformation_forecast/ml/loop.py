"""The custom training loop for training across machines (``train-cluster``).

Keras 3's ``Model.fit`` fails under ``tf.distribute.MultiWorkerMirroredStrategy``
(keras-team/keras#20585); TensorFlow's own distributed engine does not need it. This loop is what
``fit`` does for :mod:`.train`, written with the strategy's primitives:

- every worker reads its own share of each global batch (``distribute_datasets_from_function``
  over :func:`.dataset.tile_dataset` with ``shard``): no tile is read twice;
- one step is ``strategy.run`` of a ``tf.function``: the per-sample loss of eq. 11 summed and
  divided by the global batch, its gradients all-reduced (sum) over the replicas, then clipped per
  tensor to norm ``clipnorm`` (as ``Adam(clipnorm=1.0)`` in ``fit``, but on the global gradient:
  the result is that of one process with the global batch) and applied by Adam;
- validation: the mean per-sample loss over the validation tiles (sums all-reduced);
- early stopping on the validation loss with the best weights kept, the time budget and a NaN loss
  stop every worker at the same epoch (the decision is taken on all-reduced numbers);
- ``on_epoch(epoch, logs)`` runs after every epoch on every worker (the caller's checkpoint and
  progress; only the chief writes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LoopSettings:
    """What one training run of :func:`fit_custom` needs besides the network and its data."""

    epochs: int
    start_epoch: int
    steps: int  # global batches per epoch
    val_steps: int  # global validation batches (0: no validation)
    global_batch: int
    learning_rate: float
    patience: int = 0  # epochs without a better validation loss before stopping; 0 = never
    max_seconds: float = 0.0  # 0 = no time budget
    clipnorm: float = 1.0


def fit_custom(
    net: Any,
    loss_fn: Callable[[Any, Any], Any],
    strategy: Any,
    datasets: Callable[[str, Any], Any],
    settings: LoopSettings,
    on_epoch: Callable[[int, dict[str, float]], None],
) -> dict[str, list[float]]:
    """Train `net` (built in ``strategy.scope()``) under `strategy`; returns the history.

    ``datasets(kind, input_context)`` returns the tf.data pipeline of one input pipeline, kind
    "train" (all epochs from ``settings.start_epoch`` in one stream) or "val" (one pass)."""
    import keras
    import tensorflow as tf

    s = settings
    with strategy.scope():
        optimizer = keras.optimizers.Adam(s.learning_rate)
        optimizer.build(net.trainable_variables)
    replicas = strategy.num_replicas_in_sync
    train = iter(strategy.distribute_datasets_from_function(lambda ctx: datasets("train", ctx)))
    sum_ = tf.distribute.ReduceOp.SUM

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            per_sample = loss_fn(y, net(x, training=True))
            loss = tf.reduce_sum(per_sample) / s.global_batch
        grads = tape.gradient(loss, net.trainable_variables)
        grads = tf.distribute.get_replica_context().all_reduce(sum_, grads)
        # Adam all-reduces (sums) what it is given: the clipped global gradient / replicas
        grads = [tf.clip_by_norm(g, s.clipnorm) / replicas for g in grads]
        optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(batch):
        return strategy.reduce(sum_, strategy.run(replica_step, args=batch), axis=None)

    def replica_val(x, y):
        per_sample = loss_fn(y, net(x, training=False))
        return tf.reduce_sum(per_sample), tf.cast(tf.size(per_sample), tf.float32)

    @tf.function
    def val_step(batch):
        total, count = strategy.run(replica_val, args=batch)
        return strategy.reduce(sum_, total, axis=None), strategy.reduce(sum_, count, axis=None)

    @tf.function
    def agree(flag):  # the sum of `flag` over all replicas (> 0: some worker raised it)
        per = strategy.run(lambda: tf.identity(flag))
        return strategy.reduce(sum_, per, axis=None)

    history: dict[str, list[float]] = {}
    stopper = _EarlyStopping(s.patience if s.val_steps else 0)
    t0 = time.monotonic()
    for epoch in range(s.start_epoch, s.epochs):
        total = 0.0
        for _ in range(s.steps):
            total += float(train_step(next(train)))
        logs = {"loss": total / s.steps}
        if s.val_steps:
            v_sum = v_n = 0.0
            for batch in strategy.distribute_datasets_from_function(lambda ctx: datasets("val", ctx)):
                a, b = val_step(batch)
                v_sum, v_n = v_sum + float(a), v_n + float(b)
            logs["val_loss"] = v_sum / max(v_n, 1.0)
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        on_epoch(epoch + 1, logs)
        out_of_time = bool(s.max_seconds) and time.monotonic() - t0 > s.max_seconds
        if float(agree(tf.constant(1.0 if out_of_time else 0.0))) > 0:
            break
        if not math.isfinite(logs["loss"]):
            break
        if stopper.stop(logs.get("val_loss", math.nan), net):
            break
    stopper.restore(net)
    return history


class _EarlyStopping:
    """Early stopping on the validation loss with the best weights kept (patience 0: never)."""

    def __init__(self, patience: int):
        self.patience = int(patience)
        self.best, self.best_weights, self.waited = math.inf, None, 0

    def stop(self, val_loss: float, net: Any) -> bool:
        """Whether to stop after an epoch of validation loss `val_loss`."""
        if self.patience <= 0:
            return False
        if val_loss < self.best:
            self.best, self.best_weights, self.waited = val_loss, net.get_weights(), 0
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self, net: Any) -> None:
        if self.best_weights is not None:
            net.set_weights(self.best_weights)
