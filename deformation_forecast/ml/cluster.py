"""Training across machines: the worker command ``train-cluster`` (docs/multi_gpu.md).

Every machine runs the same command with its own ``$TF_CONFIG``::

    python -m deformation_forecast.ml train-cluster --stack PATH --output-model PATH \\
        [--epochs N] [--seed S] [--tile-size N] [--samples-per-epoch N] [--resume]

It trains like ``trainmodel`` (ml/train.py) under ``tf.distribute.MultiWorkerMirroredStrategy``
with the custom loop of ml/loop.py. The stack must be readable on every machine (a shared file
system or an identical copy: checked before training, see :func:`check_same_stack`), and so must
the model's folder for ``--resume`` (every worker continues from the chief's checkpoint). Worker 0,
the chief, writes the model file, its checkpoints and the report; the others only their logs (their
work file lives in a temporary folder and is removed).
"""

from __future__ import annotations

import argparse
import json
import os
import zlib
from typing import Any

from ..core.errors import InputError
from ..jobs import TrainJob
from . import protocol

# checked up front: how long a collective may wait for a slow or lost peer
DEFAULT_TIMEOUT_S = 900


def parse_args(argv: list[str]) -> dict[str, Any]:
    """The command line of ``train-cluster`` as the ``train`` command's params, checked as a
    TrainJob (jobs.py: InputError naming an unknown or invalid key). ``--params FILE`` gives any
    other TrainJob field; the options win over it."""
    ap = argparse.ArgumentParser(prog="python -m deformation_forecast.ml train-cluster")
    ap.add_argument("--stack", required=True, help="deformation stack GeoTIFF, readable on every machine")
    ap.add_argument("--output-model", required=True, help="model file the chief writes")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--tile-size", type=int)
    ap.add_argument("--samples-per-epoch", type=int, help="training tiles per epoch (all workers together)")
    ap.add_argument("--batch-size", type=int, help="tiles per worker and step")
    ap.add_argument("--resume", action="store_true", help="continue from the chief's checkpoint")
    ap.add_argument("--report", help="HTML report (chief)")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds a step waits for peers")
    ap.add_argument("--params", help="JSON file with further training parameters")
    args = ap.parse_args(argv)
    params: dict[str, Any] = {}
    if args.params:
        with open(args.params, encoding="utf-8") as f:
            params = json.load(f)
    options = {
        "input": args.stack,
        "output_model": args.output_model,
        "epochs": args.epochs,
        "seed": args.seed,
        "tile_size": args.tile_size,
        "samples_per_epoch": args.samples_per_epoch,
        "batch_size": args.batch_size,
        "output_report": args.report,
    }
    params.update({k: v for k, v in options.items() if v is not None})
    params.update(
        resume=bool(args.resume or params.get("resume")), cluster_timeout=args.timeout, cluster=True
    )
    return TrainJob.from_dict(params).asdict()


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Worker command ``train-cluster`` (params from :func:`parse_args`). A peer that died, hung
    or ran other steps fails the collective here: that becomes one clear message."""
    import tensorflow as tf

    from .train import run_train

    try:
        return run_train({**params, "cluster": True})
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.InternalError) as e:
        first = next((line for line in str(e).splitlines() if "aborted" in line or "unhealthy" in line), "")
        raise InputError(
            f"Training across machines stopped: another worker died, hung or could not be reached "
            f"({type(e).__name__}{': ' + first.strip()[:300] if first else ''}). Start the same command on "
            "every machine again with --resume to continue from the chief's last checkpoint "
            f"({params['output_model']}.checkpoint)."
        ) from e


def stack_fingerprint(info: Any, path: str) -> tuple[int, str]:
    """A CRC-32 of what must be identical on every worker (size, grid, dates, the file's first
    64 KiB: the GeoTIFF header) and the text it was made from, for the message."""
    with open(path, "rb") as f:
        head = f.read(65536)
    text = (
        f"{info.width} x {info.height}, {info.count} dates {info.dates[0]}..{info.dates[-1]}, "
        f"transform {tuple(round(float(v), 9) for v in info.transform)[:6]}, {os.path.getsize(path)} bytes"
    )
    return zlib.crc32(text.encode() + head), text


def check_same_stack(strategy: Any, info: Any, path: str) -> None:
    """Refuse on every worker when the workers' stacks differ (all-reduced fingerprints)."""
    import numpy as np
    import tensorflow as tf

    crc, text = stack_fingerprint(info, path)
    protocol.message(f"Stack on this worker: {text}, fingerprint {crc:08x}")
    pieces = tf.constant(np.frombuffer(crc.to_bytes(4, "big"), dtype=np.uint8).astype("float32"))
    replicas = float(strategy.num_replicas_in_sync)
    total = tf.distribute.ReduceOp.SUM

    @tf.function
    def spread(v):
        mean = strategy.reduce(total, strategy.run(lambda: tf.identity(v)), axis=None) / replicas
        return strategy.reduce(total, strategy.run(lambda: tf.reduce_sum((v - mean) ** 2)), axis=None)

    if float(spread(pieces)) > 0:
        raise InputError(
            f"The workers do not see the same stack: this one has {path} ({text}, fingerprint {crc:08x}); "
            "the logs of the others give theirs. Give every machine the same file (a shared file system "
            "or an identical copy) and start again."
        )
