"""Worker entry point: ``python -m deformation_forecast.ml COMMAND --params FILE.json``.

Commands are registered in COMMANDS: each takes the params dict and reports through
:mod:`deformation_forecast.ml.protocol`, returning the result dict.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from . import protocol

OUT_OF_MEMORY = (
    "The worker ran out of memory. Lower the memory budget (Settings > Options > Deformation "
    "forecast, or DEFORMATION_FORECAST_MEMORY_MB), BATCH_SIZE or TILE_SIZE, or close other programs."
)


def cmd_info(params: dict[str, Any]) -> dict[str, Any]:
    """TensorFlow version, the devices it sees, and a tiny real computation as proof of life."""
    from .device import configure_device

    device = configure_device(params.get("device", "auto"))
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


def cmd_selftest(params: dict[str, Any]) -> dict[str, Any]:
    """Fault injection for the boundary's tests (no TensorFlow): ``mode`` = ok | fail | crash |
    silent | slow | oom | write. Writes ``touch`` (a file) first when given, to prove the process ran.
    ``oom`` caps the worker's address space (RLIMIT_AS) and allocates beyond it."""
    import time

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
    if mode == "write":  # an atomic output half-written, then killed (then="crash") or stalled
        from ..core.stack import atomic_path

        with atomic_path(params["output"]) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write("half")
            f.flush()
            protocol.progress(50, f"writing {os.path.basename(tmp)}")
            if params.get("then") == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(float(params.get("seconds", 60)))
    if mode == "oom":
        import resource

        cap = int(params.get("limit_mb", 512)) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        hog = [bytearray(64 * 2**20) for _ in range(4 * cap // (64 * 2**20))]
        return {"mode": mode, "pid": os.getpid(), "allocated": len(hog)}
    if mode == "silent":
        time.sleep(float(params.get("seconds", 60)))
    if mode == "slow":
        n = int(params.get("steps", 100))
        for i in range(n):
            protocol.progress(100.0 * i / n, f"step {i}")
            time.sleep(float(params.get("step_seconds", 0.1)))
    return {"mode": mode, "pid": os.getpid()}


def cmd_importproduct(params: dict[str, Any]) -> dict[str, Any]:
    """MintPy / LiCSBAS HDF5 -> stack (core.products), for a QGIS process whose libhdf5 clashes
    with h5py's (no TensorFlow needed)."""
    from ..core.products import run_import

    def log(line: str) -> None:
        (protocol.warning if line.startswith("Warning") else protocol.message)(line)

    return run_import(params, log, lambda p: protocol.progress(p))


def _commands() -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    cmds: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "info": cmd_info,
        "_selftest": cmd_selftest,
        "importproduct": cmd_importproduct,
    }
    try:
        from .commands import COMMANDS  # train, forecast, compare (added as they land)

        cmds.update(COMMANDS)
    except ImportError as e:  # only a missing module of ours is tolerated here
        if "deformation_forecast.ml.commands" not in str(e):
            raise
    return cmds


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


PARENT_ENV = "DEFORMATION_FORECAST_PARENT_PID"
PARENT_POLL_S = 1.0
PARENT_GRACE_S = 10.0


def watch_parent(
    parent: int | None = None, poll: float = PARENT_POLL_S, grace: float = PARENT_GRACE_S
) -> None:
    """Stop this worker when the process that started it is gone (QGIS killed or crashed: nobody
    would read its results and it would hold a CPU or GPU for hours). A daemon thread polls the
    parent pid every `poll` s; when it is gone the worker gets SIGTERM (KeyboardInterrupt: the
    atomic writers remove their temporary files), and exits hard `grace` s later if still busy in
    native code."""
    import threading
    import time

    parent = parent or int(os.environ.get(PARENT_ENV, "0") or 0)
    if not parent:  # not started by the plugin (a cluster worker started by hand): no watch
        return

    def alive() -> bool:
        if os.getppid() != parent:  # re-parented: the parent died
            return False
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def loop() -> None:
        while alive():
            time.sleep(poll)
        print(f"worker: parent process {parent} is gone; stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(130)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def _read_params(path: str | None) -> dict[str, Any]:
    """The parameters of the run; the temporary file is removed once read (it is this worker's:
    nothing else would remove it if the parent died)."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        params = json.load(f)
    if os.path.basename(path).startswith("df_params_"):
        with contextlib.suppress(OSError):
            os.unlink(path)
    return params


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="python -m deformation_forecast.ml")
    parser.add_argument("command")
    parser.add_argument("--params", help="JSON file with the command's parameters")
    argv = sys.argv[1:] if argv is None else argv
    params: dict[str, Any] = {}
    if argv[:1] == ["train-cluster"]:  # its own command line (ml/cluster.py)
        from .cluster import parse_args

        args = argparse.Namespace(command=argv[0])
        params = parse_args(argv[1:])
    else:
        args = parser.parse_args(argv)
        params = _read_params(args.params)
    # the plugin stops a worker with SIGTERM (cancel): raise KeyboardInterrupt instead of dying on
    # the spot, so that the atomic writers remove their temporary files on the way out
    signal.signal(signal.SIGTERM, _terminate)
    watch_parent()
    cmds = _commands()
    if args.command not in cmds:
        protocol.error(f"unknown worker command {args.command!r}; known: {sorted(cmds)}")
        return 2
    try:
        out = cmds[args.command](params)
    except KeyboardInterrupt:
        protocol.error("cancelled")
        return 130
    except MemoryError:
        traceback.print_exc(file=sys.stderr)
        protocol.error(OUT_OF_MEMORY)
        return 1
    except Exception as e:  # the worker's top level: report, then fail
        from ..core.errors import InputError

        if isinstance(e, InputError):
            protocol.error(str(e))
        else:
            traceback.print_exc(file=sys.stderr)
            protocol.error(f"{type(e).__name__}: {e}")
        return 1
    protocol.result(**out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
