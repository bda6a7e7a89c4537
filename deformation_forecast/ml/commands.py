"""The worker's commands (``python -m deformation_forecast.ml COMMAND --params FILE.json``): each
rebuilds its job from the JSON the plugin wrote (``Job.asdict()``, jobs.py), which refuses unknown
keys and checks every value, and runs it. ``train-cluster`` (several machines, ml/cluster.py) reads
its own command line into the same TrainJob."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..jobs import ForecastJob, InfoJob, TrainJob
from . import protocol


def train(params: dict[str, Any]) -> dict[str, Any]:
    job = TrainJob.from_dict(params)
    from .train import run_train

    return run_train(job)


def train_cluster(params: dict[str, Any]) -> dict[str, Any]:
    job = TrainJob.from_dict({**params, "cluster": True})
    from .cluster import run

    return run(job.asdict())


def forecast(params: dict[str, Any]) -> dict[str, Any]:
    job = ForecastJob.from_dict(params)
    from .forecast import run_forecast

    return run_forecast(job)


def info(params: dict[str, Any]) -> dict[str, Any]:
    """TensorFlow version, the devices it sees, and a tiny real computation as proof of life."""
    job = InfoJob.from_dict(params)
    from .device import configure_device

    device = configure_device(job.device)
    import numpy as np
    import tensorflow as tf

    protocol.progress(50, f"TensorFlow {tf.__version__} on {device['name']}")
    a = np.arange(6, dtype="float32").reshape(2, 3)
    b = np.arange(12, dtype="float32").reshape(3, 4)
    with tf.device(device["tf_device"]):
        prod = tf.linalg.matmul(tf.constant(a), tf.constant(b)).numpy()
    protocol.progress(100, "done")
    return {
        "tensorflow": tf.__version__,
        "keras": tf.keras.__version__ if hasattr(tf.keras, "__version__") else "",
        "gpus": device["gpus"],
        "device": device["name"],
        "device_reason": device["reason"],
        "matmul_sum": float(prod.sum()),
    }


def importproduct(params: dict[str, Any]) -> dict[str, Any]:
    """MintPy / LiCSBAS HDF5 -> stack (core.products), for a QGIS process whose libhdf5 clashes
    with h5py's (no TensorFlow needed)."""
    from ..core.products import run_import

    def log(line: str) -> None:
        (protocol.warning if line.startswith("Warning") else protocol.message)(line)

    return run_import(params, log, lambda p: protocol.progress(p))


Command = Callable[[dict[str, Any]], dict[str, Any]]

COMMANDS: dict[str, Command] = {
    "info": info,
    "importproduct": importproduct,
    TrainJob.COMMAND: train,
    "train-cluster": train_cluster,
    ForecastJob.COMMAND: forecast,
}
