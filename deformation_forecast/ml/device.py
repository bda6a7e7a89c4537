"""Device choice for the worker, decided before TensorFlow builds a graph.

``DEVICE`` values:

``auto``
    every CUDA GPU TensorFlow sees (several: data-parallel, see :mod:`.distribute`), else the CPU.
``gpu``
    the same, but fails clearly when TensorFlow sees no GPU.
``gpu:N`` / ``gpu:N,M,...``
    only these GPUs (indices as ``nvidia-smi`` / TensorFlow list them). The Processing DEVICE
    choice offers auto | gpu | cpu; this form is for the worker's params and scripts. The usual
    ``CUDA_VISIBLE_DEVICES`` environment variable also works (the worker inherits it).
``cpu``
    hides the GPUs from TensorFlow.
"""

from __future__ import annotations

import os
from typing import Any

from ..core.errors import InputError

CHOICES = ("auto", "gpu", "cpu")  # plus "gpu:N[,M...]"


def parse_choice(choice: str | None) -> tuple[str, list[int] | None]:
    """``(kind, indices)``: kind auto | gpu | cpu, indices the GPUs of ``gpu:N,M`` (None: all)."""
    text = (choice or "auto").strip().lower()
    if text in CHOICES:
        return text, None
    if text.startswith("gpu:"):
        try:
            idx = [int(v) for v in text[4:].split(",") if v.strip()]
        except ValueError:
            idx = []
        if idx and all(i >= 0 for i in idx) and len(set(idx)) == len(idx):
            return "gpu", idx
    raise InputError(
        f"DEVICE must be auto, gpu, cpu or gpu:N[,M...] (GPU indices, e.g. gpu:0 or gpu:0,1), not {choice!r}."
    )


def cpu_device(reason: str) -> dict[str, Any]:
    """The device dict for the CPU (also the OOM fallback's target)."""
    return {"name": "CPU", "tf_device": "/CPU:0", "gpus": [], "reason": reason}


def configure_device(choice: str = "auto") -> dict[str, Any]:
    """Pick the device; returns name, tf device string, the GPUs used and the reason.

    ``gpus`` lists the physical GPUs used (after ``gpu:N`` selection they are TensorFlow's logical
    ``/GPU:0 .. /GPU:k-1``); :func:`deformation_forecast.ml.distribute.plan_training` turns
    more than one into a ``MirroredStrategy``.
    """
    kind, indices = parse_choice(choice)
    if kind == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf

    physical = tf.config.list_physical_devices("GPU") if kind != "cpu" else []
    gpus = physical
    if indices is not None:
        missing = [i for i in indices if i >= len(physical)]
        if missing:
            raise InputError(
                f"DEVICE={choice}: TensorFlow sees {len(physical)} GPU(s) (indices 0..{len(physical) - 1}), "
                f"so there is no GPU {missing[0]}. Choose existing indices, or DEVICE=auto/cpu."
            )
        gpus = [physical[i] for i in indices]
        try:
            tf.config.set_visible_devices(gpus, "GPU")
        except RuntimeError as e:  # TensorFlow already initialised in this process
            raise InputError(
                f"DEVICE={choice}: GPUs can only be chosen before TensorFlow starts ({e})."
            ) from e
    for g in gpus:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except (ValueError, RuntimeError):  # already initialised
            pass
    names = [g.name for g in gpus]
    if kind == "gpu" and not gpus:
        raise InputError(
            "DEVICE=gpu but TensorFlow sees no CUDA GPU "
            f"(TensorFlow {tf.__version__}, built with CUDA: {tf.test.is_built_with_cuda()}). "
            "Install tensorflow[and-cuda] and an NVIDIA driver, or choose DEVICE=auto/cpu."
        )
    if gpus:
        label = names[0] if len(names) == 1 else f"{len(names)} GPUs: " + ", ".join(names)
        return {
            "name": f"GPU ({label})",
            "tf_device": "/GPU:0",
            "gpus": names,
            "reason": f"{len(gpus)} of {len(physical)} CUDA GPU(s) visible to TensorFlow used",
        }
    reason = (
        "DEVICE=cpu requested"
        if kind == "cpu"
        else "no CUDA GPU visible to TensorFlow"
        + ("" if tf.test.is_built_with_cuda() else " (this TensorFlow build has no CUDA)")
    )
    return cpu_device(reason)


def worker_run(budget_mb: float | None = None) -> Any:
    """The worker's core.run.Run: its memory budget (0 or None: core/budget.py's default), progress
    (0..1) and messages on the worker's line protocol (ml/protocol.py, 0..100)."""
    from ..core.run import Run
    from . import protocol

    def report(fraction: float | None, message: str | None) -> None:
        if fraction is None:
            if message:
                protocol.message(message)
        else:
            protocol.progress(100.0 * fraction, message)

    return Run(budget_mb=float(budget_mb or 0) or None, report=report)
