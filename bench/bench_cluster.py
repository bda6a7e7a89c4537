"""Training across machines on one machine: ``train-cluster`` with 1 worker (global batch 8) vs 2
local workers on 127.0.0.1 (batch 4 each, global batch 8), the same seed and samples.

Prints samples/s of the training phase (from the workers' epoch lines) and the CPU seconds of all
worker processes together. Two workers on one machine share its cores: this measures the overhead
of the collective all-reduce and the sharded input pipeline, not a speed-up (that needs two machines).

    .venv/bin/python bench/bench_cluster.py [--size 128] [--epochs 3] [--samples 128] [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from _common import ROOT, machine  # noqa: I001  (bench/ is on sys.path when run)

sys.path.insert(0, ROOT)
from tests.ports import free_ports  # noqa: E402  (one helper for tests and bench)


def run(workers: int, stack: str, folder: str, args: argparse.Namespace) -> dict[str, float]:
    addresses = [f"127.0.0.1:{p}" for p in free_ports(workers)]
    params = os.path.join(folder, "params.json")
    with open(params, "w", encoding="utf-8") as f:
        json.dump({"device": "cpu", "test_tiles": 1, "gru_epochs": 8, "test_count": 10}, f)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    procs = []
    for i in range(workers):
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
        )
        cmd = [sys.executable, "-m", "deformation_forecast.ml", "train-cluster", "--stack", stack]
        cmd += ["--output-model", os.path.join(folder, f"m{workers}.dfmodel"), "--params", params]
        cmd += ["--epochs", str(args.epochs), "--samples-per-epoch", str(args.samples)]
        cmd += ["--batch-size", str(8 // workers), "--seed", "1"]
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        )
    outs = [p.communicate()[0] for p in procs]
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if any(p.returncode for p in procs):
        raise SystemExit(f"{workers} worker(s) failed")
    result = json.loads(outs[0].splitlines()[-1])["result"]
    train_s = float(result["train_seconds"])
    return {
        "workers": workers,
        "samples_per_s": args.samples * args.epochs / train_s,
        "train_s": train_s,
        "wall_s": wall,
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--small", action="store_true", help="a smoke test: 64 x 64, 2 epochs of 32")
    args = ap.parse_args()
    if args.small:
        args.size, args.epochs, args.samples = 64, 2, 32
    sys.path.insert(0, ROOT)
    from affine import Affine

    from deformation_forecast.core.stack import write_stack
    from tests.ml.scene import bowl_scene

    with tempfile.TemporaryDirectory(prefix="bench_cluster_") as folder:
        data, dates = bowl_scene(60, args.size)
        stack = os.path.join(folder, "stack.tif")
        write_stack(stack, data, dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
        rows = [run(n, stack, folder, args) for n in (1, 2)]
    print(machine())
    print(
        f"train-cluster, {args.size} x {args.size} x 60 stack, tiles of 64, global batch 8, {args.samples} samples x {args.epochs} epochs"
    )
    print("| workers | samples/s (training) | training s | wall s (whole run) | CPU s (all workers) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['samples_per_s']:.1f} | {r['train_s']:.1f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
