"""Out-of-memory fallback for training: halve the batch, then go to the CPU, saying so.

:func:`fit_with_fallback` calls ``fit(batch_size, device)``. When it fails because the
accelerator ran out of memory (``tf.errors.ResourceExhaustedError``, or the cuDNN / allocator
failures TensorFlow reports as Internal/Unknown errors with an OOM message), the batch is halved
and ``fit`` called again, down to a batch of 1; when even that does not fit on the GPU, ``fit`` is
called once more on the CPU (:func:`.device.cpu_device`) with the original batch (halved again
if the CPU runs out too). Every step is a ``protocol.warning``. Any other exception propagates
unchanged, and so does the OOM error when nothing is left to try.

``fit`` must build, compile and fit the network from scratch for the given per-replica batch
and device (a failed attempt may leave a half-built model in the strategy), and should continue
from the epoch checkpoint when one exists, so that an OOM late in training loses at most one
epoch. Example (the shape ml/train.py wires in)::

    def fit(batch_size, device):
        plan = plan_training(device, batch_size, p["architecture"], jit_compile=p["jit_compile"])
        plan.apply_policy()
        with plan.scope():
            net = build_network(...)
            net.compile(..., jit_compile=plan.jit_compile)
            if checkpoint exists: net.load_weights(...); start_epoch = ...
            net.fit(WindowTiles(..., plan.global_batch, ...), initial_epoch=start_epoch, ...)
        return net, plan

    out = fit_with_fallback(fit, int(p["batch_size"]), device)
    net, plan = out.value            # out.batch_size, out.device: what finally ran
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, NamedTuple

from . import protocol
from .device import cpu_device

# allocator / cuDNN failures that TensorFlow reports as Internal or Unknown errors
OOM_MARKERS = (
    "out of memory",
    "oom when allocating",
    "resource_exhausted",
    "resourceexhausted",
    "failed to allocate",
    "cuda_error_out_of_memory",
    "cudnn_status_alloc_failed",
    "cudnn_status_not_enough_workspace",
)


class FitOutcome(NamedTuple):
    value: Any  # what fit returned
    batch_size: int  # the per-replica batch it finally ran with
    device: dict[str, Any]  # the device it finally ran on
    retries: int  # failed attempts before it


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` says the device ran out of memory."""
    import tensorflow as tf

    if isinstance(exc, tf.errors.ResourceExhaustedError):
        return True
    if isinstance(exc, tf.errors.InternalError | tf.errors.UnknownError):
        text = str(exc).lower()
        return any(m in text for m in OOM_MARKERS)
    return False


def _release_memory() -> None:
    """Drop Keras's graph state and Python's references to the failed attempt."""
    import keras

    keras.backend.clear_session()
    gc.collect()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def fit_with_fallback(
    fit: Callable[[int, dict[str, Any]], Any],
    batch_size: int,
    device: dict[str, Any],
    cpu_fallback: bool = True,
    release: Callable[[], None] | None = _release_memory,
) -> FitOutcome:
    """Run ``fit(batch, device)``, halving the batch and then moving to the CPU on OOM (module doc).

    `cpu_fallback` False: give up (re-raise) after batch 1 on the GPU. `release` runs between
    attempts (default: ``keras.backend.clear_session()`` and garbage collection).

    >>> calls = []
    >>> def fit(b, dev):
    ...     calls.append((b, dev["name"]))
    ...     return "trained"
    >>> fit_with_fallback(fit, 4, {"name": "CPU", "tf_device": "/CPU:0", "gpus": [], "reason": ""}).value
    'trained'
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    devices = [device]
    if cpu_fallback and device.get("gpus"):
        devices.append(cpu_device(f"fallback after {device['name']} ran out of memory"))
    retries = 0
    for k, dev in enumerate(devices):
        batch = batch_size
        where = "GPU" if dev.get("gpus") else "CPU"
        while True:
            try:
                return FitOutcome(fit(batch, dev), batch, dev, retries)
            except Exception as e:
                if not is_oom(e):
                    raise
                retries += 1
                error = e
                if release is not None:
                    release()
                if batch > 1:
                    new = max(1, batch // 2)
                    protocol.warning(
                        f"{where} out of memory at batch size {batch} ({_first_line(e)}); "
                        f"retrying with batch size {new}."
                    )
                    batch = new
                    continue
                if k + 1 < len(devices):
                    protocol.warning(
                        f"{where} out of memory even at batch size 1 ({_first_line(e)}); "
                        f"falling back to the CPU (slower) with batch size {batch_size}."
                    )
                break
    protocol.warning(f"Out of memory at batch size 1 on every device tried ({_first_line(error)}).")
    raise error
