"""How to train on the chosen device: tf.distribute strategy, global batch, mixed precision, XLA.

Everything here is TensorFlow's and Keras's own machinery (``tf.distribute``,
``keras.mixed_precision``, ``Model.compile(jit_compile=...)``); this module only decides, from the
device that :func:`.device.configure_device` picked, which of them to use:

- **strategy**: ``tf.distribute.MultiWorkerMirroredStrategy`` when the process is a
  ``train-cluster`` worker (several machines, ``$TF_CONFIG``; :func:`start_cluster`), trained by the
  custom loop of ml/loop.py because Keras 3's ``Model.fit`` fails under it (keras-team/keras#20585);
  ``tf.distribute.MirroredStrategy`` over the GPUs when more than one is used
  (synchronous data parallelism: one model replica per GPU, gradients all-reduced); otherwise the
  default strategy, with every op placed on the device (``/GPU:0`` or ``/CPU:0``). A plain
  ``train`` with ``$TF_CONFIG`` naming several machines is refused, naming ``train-cluster``.
- **batch**: ``BATCH_SIZE`` is per replica; the datasets get the global batch
  ``batch_size * replicas`` and the strategy splits each batch between the GPUs (Keras scales the
  loss for the replicas itself).
- **mixed precision** (GPU only): global policy ``mixed_float16`` (float16 compute, float32
  variables; Keras wraps the optimizer in a ``LossScaleOptimizer``). The loss is computed in
  float32 (a Keras loss casts its inputs to ``floatx``) and the output head of
  :func:`.network.build_network` is float32. Automatic on GPUs of compute capability 7.0 or more
  (Tensor Cores); older GPUs gain nothing from float16.
- **XLA** (``jit_compile``): off on the CPU (compiling the network takes ~90 s on 2 cores), on
  for the PhLSTM networks on one GPU (the custom cell's gate ops fuse), off under
  ``MirroredStrategy`` (as Keras's own ``"auto"``) and always off for the ``cnn-lstm`` networks:
  Keras runs ``keras.layers.LSTM`` on cuDNN there, and cuDNN kernels are not XLA-compatible
  (Keras itself refuses ``jit_compile=True`` for such a model).

Use::

    device = configure_device(p["device"])
    plan = plan_training(device, int(p["batch_size"]), p["architecture"], jit_compile=p["jit_compile"])
    protocol.message(plan.describe())
    plan.apply_policy()                      # before any layer of the network is built
    with plan.scope():                       # replaces `with tf.device(device["tf_device"])`
        net = build_network(...)
        net.compile(..., jit_compile=plan.jit_compile)
        train_ds = WindowTiles(..., plan.global_batch, ...)
        net.fit(train_ds, ...)
    net_to_save = float32_twin(net, lambda: build_network(...))   # model files stay float32

Build the GRU compressor before :meth:`TrainingPlan.apply_policy` (it stays float32) or inside
``with global_policy("float32")``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import InputError

MIXED = "mixed_float16"
FLOAT32 = "float32"
MIN_MIXED_CAPABILITY = (7, 0)  # Volta: the first GPUs with float16 Tensor Cores


@dataclass(frozen=True)
class TrainingPlan:
    """The decisions of :func:`plan_training` (see the module doc)."""

    strategy: Any  # tf.distribute.Strategy
    tf_device: str  # where a single replica runs ops: "/GPU:0" or "/CPU:0"
    replicas: int
    per_replica_batch: int
    global_batch: int
    policy: str  # "mixed_float16" | "float32"
    jit_compile: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    # several machines (``train-cluster``): this process's index among `workers`; trained by the
    # custom loop of ml/loop.py (Keras's Model.fit does not run under MultiWorkerMirroredStrategy)
    worker_index: int = 0
    workers: int = 1
    custom_loop: bool = False

    @property
    def is_chief(self) -> bool:
        """Worker 0 (TensorFlow's chief): the one that writes the checkpoints, the model and the report."""
        return self.worker_index == 0

    @property
    def mixed_precision(self) -> bool:
        return self.policy == MIXED

    @property
    def strategy_name(self) -> str:
        return type(self.strategy).__name__

    @property
    def distributed(self) -> bool:
        return self.replicas > 1

    def apply_policy(self) -> None:
        """Set Keras's global dtype policy (float32 on the CPU, so a second plan in the same
        process, e.g. the CPU fallback after a GPU ran out of memory, undoes mixed precision)."""
        import keras

        keras.mixed_precision.set_global_policy(self.policy)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build, compile and fit the network inside this: the strategy's scope when distributed,
        else the default strategy with ops pinned to :attr:`tf_device`."""
        import tensorflow as tf

        if self.distributed or self.custom_loop:
            with self.strategy.scope():
                yield
        else:
            with tf.device(self.tf_device):
                yield

    def describe(self) -> str:
        batch = (
            f"batch {self.global_batch} = {self.per_replica_batch} per replica x {self.replicas} replicas"
            if self.distributed
            else f"batch {self.global_batch}"
        )
        where = (
            self.tf_device
            if not self.distributed
            else ("the GPUs" if "GPU" in self.tf_device else "the CPUs")
        )
        text = (
            f"Training plan: {self.strategy_name} on {where}, "
            f"{batch}, dtype policy {self.policy}, XLA {'on' if self.jit_compile else 'off'}"
        )
        if self.workers > 1:
            text += f", worker {self.worker_index} of {self.workers} machines"
        return text + (" (" + "; ".join(self.notes) + ")" if self.notes else "")


def _gpu_capabilities(names: list[str]) -> list[tuple[int, int] | None]:
    import tensorflow as tf

    by_name = {g.name: g for g in tf.config.list_physical_devices("GPU")}
    out: list[tuple[int, int] | None] = []
    for n in names:
        try:
            cc = tf.config.experimental.get_device_details(by_name[n]).get("compute_capability")
            out.append(tuple(cc) if cc else None)
        except (KeyError, ValueError, RuntimeError):
            out.append(None)
    return out


def _choice(value: Any, name: str) -> str | bool:
    """ "auto" | True | False from params (JSON bools, "true"/"false" strings, None = auto)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return "auto"
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be auto, true or false, not {value!r}")
    return bool(value)


def plan_training(
    device: dict[str, Any],
    batch_size: int,
    architecture: str = "cnn-phlstm",
    mixed_precision: Any = "auto",
    jit_compile: Any = "auto",
    replica_devices: list[str] | None = None,
) -> TrainingPlan:
    """The training plan for `device` (a :func:`.device.configure_device` dict).

    `batch_size` is per replica. `mixed_precision` / `jit_compile`: "auto" (the rules of the
    module doc), True or False. `replica_devices` overrides the devices of the replicas (default:
    the logical GPUs ``/gpu:0 .. /gpu:k-1`` of ``device["gpus"]``; tests pass CPU devices).

    >>> plan = plan_training({"name": "CPU", "tf_device": "/CPU:0", "gpus": [], "reason": ""}, 4)
    >>> (plan.strategy_name, plan.global_batch, plan.policy, plan.jit_compile)
    ('_DefaultDistributionStrategy', 4, 'float32', False)
    """
    import tensorflow as tf

    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    gpus = list(device.get("gpus") or [])
    on_gpu = bool(gpus) and not device.get("tf_device", "").upper().startswith("/CPU")
    devices = replica_devices if replica_devices is not None else [f"/gpu:{i}" for i in range(len(gpus))]
    notes: list[str] = []
    if _CLUSTER:
        return _cluster_plan(_CLUSTER[0], batch_size, on_gpu)
    cluster = cluster_workers()
    if len(cluster) > 1:
        raise InputError(
            f"TF_CONFIG names {len(cluster)} machines ({', '.join(cluster)}): training across machines runs "
            "with the command `python -m deformation_forecast.ml train-cluster ...` started on every "
            "machine (docs/multi_gpu.md), not from QGIS. Unset TF_CONFIG to train on this machine's GPUs "
            "(all of them with DEVICE=auto)."
        )
    if len(devices) > 1 and (on_gpu or replica_devices is not None):
        strategy = tf.distribute.MirroredStrategy(devices=list(devices))
        replicas = int(strategy.num_replicas_in_sync)
        notes.append(f"data-parallel over {replicas} devices")
    else:
        strategy = tf.distribute.get_strategy()
        replicas = 1
    tf_device = "/GPU:0" if on_gpu else "/CPU:0"

    mp = _choice(mixed_precision, "mixed_precision")
    if not on_gpu:
        if mp is True:
            notes.append("mixed precision is for GPUs: float32 on the CPU")
        policy = FLOAT32
    elif mp == "auto":
        caps = _gpu_capabilities(gpus)
        old = [c for c in caps if c is not None and c < MIN_MIXED_CAPABILITY]
        policy = FLOAT32 if old else MIXED
        if old:
            notes.append(
                f"float32: GPU compute capability {old[0][0]}.{old[0][1]} < 7.0 has no float16 Tensor Cores"
            )
    else:
        policy = MIXED if mp else FLOAT32

    jit = _choice(jit_compile, "jit_compile")
    lstm = "phlstm" not in architecture
    if on_gpu and lstm:
        if jit is True:
            notes.append("XLA off: cnn-lstm keeps Keras's cuDNN LSTM kernel, which XLA cannot compile")
        jit = False
    elif jit == "auto":
        jit = on_gpu and replicas == 1
    return TrainingPlan(
        strategy=strategy,
        tf_device=tf_device,
        replicas=replicas,
        per_replica_batch=batch_size,
        global_batch=batch_size * replicas,
        policy=policy,
        jit_compile=bool(jit),
        notes=tuple(notes),
    )


# the MultiWorkerMirroredStrategy of a ``train-cluster`` process (made once, before any other op)
_CLUSTER: list[Any] = []


def start_cluster(timeout_seconds: float = 0) -> Any:
    """Create this process's ``tf.distribute.MultiWorkerMirroredStrategy`` from ``$TF_CONFIG``
    (one local worker without it). TensorFlow requires it before any other op of the program.

    `timeout_seconds` (0 = none): a collective (gradient all-reduce) that waits longer fails, so a
    peer that hangs cannot stall the others forever; a peer that dies is noticed sooner by the
    strategy's own health checks, which abort the pending collectives."""
    import tensorflow as tf

    if not _CLUSTER:
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=float(timeout_seconds) if timeout_seconds else None
        )
        _CLUSTER.append(tf.distribute.MultiWorkerMirroredStrategy(communication_options=options))
    return _CLUSTER[0]


def _cluster_plan(strategy: Any, batch_size: int, on_gpu: bool) -> TrainingPlan:
    """The plan under the cluster's strategy: `batch_size` per replica, float32, no XLA."""
    resolver = strategy.cluster_resolver
    workers = len(cluster_workers()) or 1
    replicas = int(strategy.num_replicas_in_sync)
    notes = ["custom training loop across machines"]
    if on_gpu:
        notes.append("float32 (mixed precision is not used across machines)")
    return TrainingPlan(
        strategy=strategy,
        tf_device="/GPU:0" if on_gpu else "/CPU:0",
        replicas=replicas,
        per_replica_batch=batch_size,
        global_batch=batch_size * replicas,
        policy=FLOAT32,
        jit_compile=False,
        notes=tuple(notes),
        worker_index=int(resolver.task_id or 0) if resolver is not None else 0,
        workers=workers,
        custom_loop=True,
    )


def cluster_workers() -> list[str]:
    """The machines of a multi-worker run: the chief and worker addresses of ``$TF_CONFIG``
    (read by TensorFlow's own TFConfigClusterResolver); [] without TF_CONFIG."""
    if not os.environ.get("TF_CONFIG"):
        return []
    import tensorflow as tf

    spec = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec().as_dict()
    return list(spec.get("chief", [])) + list(spec.get("worker", []))


@contextlib.contextmanager
def global_policy(name: str) -> Iterator[None]:
    """Keras's global dtype policy set to `name` inside the block, restored after."""
    import keras

    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(old)


def float32_twin(model, build: Callable[[], Any]):
    """`model` itself when it is float32; else the same network rebuilt by `build` under the
    float32 policy with `model`'s weights (float32 already under mixed precision).

    Layers save their dtype policy: a network saved under ``mixed_float16`` would compute in
    float16 wherever it is loaded, also on a CPU forecasting later. Save the twin instead.
    """
    if model.dtype_policy.name == FLOAT32:
        return model
    with global_policy(FLOAT32):
        twin = build()
    twin.set_weights(model.get_weights())
    return twin
