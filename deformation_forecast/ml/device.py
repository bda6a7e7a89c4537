"""Device choice for the worker: auto | gpu | cpu, decided before TensorFlow builds a graph."""

from __future__ import annotations

import os
from typing import Any

from ..core.errors import InputError


def configure_device(choice: str = "auto") -> dict[str, Any]:
    """Pick the device; returns name, tf device string, visible GPUs and the reason.

    ``cpu`` hides the GPUs from TensorFlow; ``gpu`` fails clearly when none is visible;
    ``auto`` uses the first CUDA GPU when TensorFlow sees one, else the CPU.
    """
    choice = (choice or "auto").lower()
    if choice not in ("auto", "gpu", "cpu"):
        raise InputError(f"DEVICE must be auto, gpu or cpu, not {choice!r}.")
    if choice == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU") if choice != "cpu" else []
    for g in gpus:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except (ValueError, RuntimeError):  # already initialised
            pass
    names = [g.name for g in gpus]
    if choice == "gpu" and not gpus:
        raise InputError(
            "DEVICE=gpu but TensorFlow sees no CUDA GPU "
            f"(TensorFlow {tf.__version__}, built with CUDA: {tf.test.is_built_with_cuda()}). "
            "Install tensorflow[and-cuda] and an NVIDIA driver, or choose DEVICE=auto/cpu."
        )
    if gpus:
        return {
            "name": f"GPU ({names[0]})",
            "tf_device": "/GPU:0",
            "gpus": names,
            "reason": f"{len(gpus)} CUDA GPU(s) visible to TensorFlow",
        }
    reason = (
        "DEVICE=cpu requested"
        if choice == "cpu"
        else "no CUDA GPU visible to TensorFlow"
        + ("" if tf.test.is_built_with_cuda() else " (this TensorFlow build has no CUDA)")
    )
    return {"name": "CPU", "tf_device": "/CPU:0", "gpus": [], "reason": reason}
