"""The worker's fault injection for the boundary's tests (no TensorFlow), kept out of the shipped
package: ``python -m tests.worker_selftest _selftest --params FILE`` runs the worker's own loop
(deformation_forecast.ml.__main__.main) with one more command, ``_selftest``. The tests point
``worker.WORKER_MODULE`` here (fixture ``selftest_worker`` in tests/processing/test_worker_boundary.py).

``mode`` = ok | fail | crash | silent | slow | oom | write. Writes ``touch`` (a file) first when
given, to prove the process ran. ``oom`` caps the worker's address space (RLIMIT_AS) and allocates
beyond it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from deformation_forecast.ml import protocol
from deformation_forecast.ml.__main__ import main

MODULE = "tests.worker_selftest"


def _write(params: dict[str, Any]) -> None:
    """An atomic output half-written, then killed (then="crash") or stalled."""
    from deformation_forecast.core.stack import atomic_path

    with atomic_path(params["output"]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("half")
        f.flush()
        protocol.progress(50, f"writing {os.path.basename(tmp)}")
        if params.get("then") == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(params.get("seconds", 60)))


def _oom(params: dict[str, Any]) -> int:
    import resource

    cap = int(params.get("limit_mb", 512)) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    hog = [bytearray(64 * 2**20) for _ in range(4 * cap // (64 * 2**20))]
    return len(hog)


def cmd_selftest(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("touch"):
        with open(params["touch"], "w", encoding="utf-8") as f:
            f.write(str(os.getpid()))
    mode = params.get("mode", "ok")
    if mode == "fail":
        print("selftest: something went wrong on purpose", file=sys.stderr)
        raise RuntimeError("selftest failure")
    if mode == "crash":
        print("selftest: about to be killed", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "write":
        _write(params)
    if mode == "oom":
        return {"mode": mode, "pid": os.getpid(), "allocated": _oom(params)}
    if mode == "silent":
        time.sleep(float(params.get("seconds", 60)))
    if mode == "slow":
        n = int(params.get("steps", 100))
        for i in range(n):
            protocol.progress(100.0 * i / n, f"step {i}")
            time.sleep(float(params.get("step_seconds", 0.1)))
    return {"mode": mode, "pid": os.getpid()}


if __name__ == "__main__":
    sys.exit(main(commands={"_selftest": cmd_selftest}))
