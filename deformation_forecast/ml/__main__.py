"""Worker entry point: ``python -m deformation_forecast.ml COMMAND --params FILE.json``.

Commands are registered in ml/commands.py COMMANDS: each takes the params dict (a job's
``asdict()``, jobs.py), reports through :mod:`deformation_forecast.ml.protocol` and returns the
result dict. :func:`main` takes further commands (the tests' fault injection,
tests/worker_selftest.py, runs this same loop with its own).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from typing import Any

from ..core.errors import InputError
from . import protocol
from .commands import COMMANDS, Command

OUT_OF_MEMORY = (
    "The worker ran out of memory. Lower the memory budget (Settings > Options > Deformation "
    "forecast, or DEFORMATION_FORECAST_MEMORY_MB), BATCH_SIZE or TILE_SIZE, or close other programs."
)


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


def _arguments(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """The command and its params: ``COMMAND --params FILE``, or the command line of
    ``train-cluster`` (ml/cluster.py)."""
    if argv[:1] == ["train-cluster"]:
        from .cluster import parse_args

        return argv[0], parse_args(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m deformation_forecast.ml")
    parser.add_argument("command")
    parser.add_argument("--params", help="JSON file with the command's parameters")
    args = parser.parse_args(argv)
    return args.command, _read_params(args.params)


def main(argv: list[str] | None = None, commands: dict[str, Command] | None = None) -> int:
    """Run one command (`commands` are added to ml/commands.py's) and print its result; the exit
    status says how it ended (0 done, 1 failed, 2 unknown command, 130 cancelled)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        command, params = _arguments(sys.argv[1:] if argv is None else argv)
    except InputError as e:  # a --params file of train-cluster with unknown keys...
        protocol.error(str(e))
        return 1
    # the plugin stops a worker with SIGTERM (cancel): raise KeyboardInterrupt instead of dying on
    # the spot, so that the atomic writers remove their temporary files on the way out
    signal.signal(signal.SIGTERM, _terminate)
    watch_parent()
    cmds = {**COMMANDS, **(commands or {})}
    if command not in cmds:
        protocol.error(f"unknown worker command {command!r}; known: {sorted(cmds)}")
        return 2
    try:
        out = cmds[command](params)
    except KeyboardInterrupt:
        protocol.error("cancelled")
        return 130
    except MemoryError:
        traceback.print_exc(file=sys.stderr)
        protocol.error(OUT_OF_MEMORY)
        return 1
    except InputError as e:  # the user's input: the message says what to change
        protocol.error(str(e))
        return 1
    except Exception as e:  # the worker's top level: report, then fail
        traceback.print_exc(file=sys.stderr)
        protocol.error(f"{type(e).__name__}: {e}")
        return 1
    protocol.result(**out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
