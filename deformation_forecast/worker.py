"""QGIS side of the TensorFlow process boundary.

TensorFlow aborts a QGIS process when imported there (protobuf clash, see DESIGN.md), so every
TensorFlow computation runs in a child process: ``[python, -m, deformation_forecast.ml, command,
--params, file.json]``, started as an argument list (never a shell string). The child prints one JSON
object per line (see :mod:`deformation_forecast.ml.protocol`); this module relays them to a
QgsProcessingFeedback, terminates the child on cancel and turns a failure into a
QgsProcessingException carrying the child's last error lines.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from typing import Any

from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsSettings

from . import settings_keys

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
SETTINGS_KEY = settings_keys.PYTHON
DEVICE_SETTINGS_KEY = settings_keys.DEVICE
INSTALL_HINT = (
    "Training and forecasting need a Python 3 with TensorFlow, run as a separate process. "
    "Install it, e.g. `python3 -m venv ~/df-venv && ~/df-venv/bin/pip install tensorflow-cpu "
    "rasterio scikit-image scikit-learn` (or tensorflow[and-cuda] for an NVIDIA GPU), then point "
    "the plugin at it: Settings > Options > Processing > Providers > Deformation forecast > "
    "'TensorFlow Python', or the environment variable DEFORMATION_FORECAST_PYTHON."
)


def candidate_pythons() -> list[tuple[str, str]]:
    """(path, where it came from) in the order of DESIGN.md: setting, env var, project .venv."""
    out: list[tuple[str, str]] = []
    setting = QgsSettings().value(SETTINGS_KEY, "", type=str)
    if setting:
        out.append((setting, "plugin setting"))
    env = os.environ.get("DEFORMATION_FORECAST_PYTHON")
    if env:
        out.append((env, "DEFORMATION_FORECAST_PYTHON"))
    # a source checkout (repo/deformation_forecast) or its build (repo/build/deformation_forecast)
    for up in (1, 2):
        root = os.path.abspath(os.path.join(PLUGIN_DIR, *[".."] * up))
        venv = os.path.join(root, ".venv", "bin", "python")
        if os.path.exists(venv):
            out.append((venv, f"project venv {root}"))
    return out


_checked: dict[str, tuple[bool, str]] = {}


def check_python(python: str) -> tuple[bool, str]:
    """Whether `python` runs and can import tensorflow (cached per path)."""
    if python in _checked:
        return _checked[python]
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        res = (False, f"{python} is not an executable file.")
    else:
        code = (
            "import importlib.util, sys; "
            "missing=[m for m in ('tensorflow','rasterio','numpy') if importlib.util.find_spec(m) is None]; "
            "print(','.join(missing)); sys.exit(3 if missing else 0)"
        )
        try:
            p = subprocess.run(
                [python, "-c", code], capture_output=True, text=True, timeout=60, env=_child_env()
            )
            if p.returncode == 0:
                res = (True, f"{python} has TensorFlow.")
            elif p.returncode == 3:
                res = (False, f"{python} lacks: {p.stdout.strip()}.")
            else:
                res = (False, f"{python} failed: {p.stderr.strip()[-300:]}")
        except (OSError, subprocess.TimeoutExpired) as e:
            res = (False, f"{python} could not be run: {e}")
    _checked[python] = res
    return res


def find_python() -> tuple[str | None, str]:
    """The first candidate Python with TensorFlow, or (None, why not and how to fix it)."""
    tried = []
    for path, origin in candidate_pythons():
        ok, msg = check_python(path)
        if ok:
            return path, f"{msg} ({origin})"
        tried.append(f"{origin}: {msg}")
    why = "; ".join(tried) if tried else "no Python configured"
    return None, f"No Python with TensorFlow found ({why}). {INSTALL_HINT}"


def _child_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "QGIS_", "QT_", "GDAL_DRIVER_PATH"))
    }
    env["PYTHONPATH"] = os.path.dirname(PLUGIN_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env["DEFORMATION_FORECAST_PARENT_PID"] = str(os.getpid())  # the worker stops when we are gone
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


# TensorFlow's (and absl's) own C++ log lines: information, warnings and non-fatal errors of its
# runtime ("E0000 ... NodeDef mentions attribute ...", oneDNN and CPU-instruction notes, CUDA
# factories registered twice). They are not errors of the run (those come as JSON "error" lines and
# a non-zero exit), so they stay out of the Log tab; fatal (F) lines still show.
TF_NOISE = re.compile(
    r"^(?:[IWE]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\]"  # absl: E0000 00:00:1733.1  123 file.cc:12]
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] "  # TF < 2.16: 2024-01-01 12:00:00.1: I ...
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|To enable the following instructions"
    r"|This TensorFlow binary is optimized"
    r"|oneDNN custom operations are on"
    r"|Unable to register cu(?:DNN|FFT|BLAS) factory)"
)


def is_tensorflow_noise(line: str) -> bool:
    return bool(TF_NOISE.match(line.strip()))


def _reader(stream, sink: queue.Queue, tag: str) -> None:
    for line in iter(stream.readline, ""):
        sink.put((tag, line.rstrip("\n")))
    sink.put((tag, None))


def run_worker(
    command: str,
    params: dict[str, Any],
    feedback: QgsProcessingFeedback | None = None,
    idle_timeout: float | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """Run one worker command to its end; returns its ``result`` dict.

    Raises QgsProcessingException on failure (with the worker's last lines), on cancel (after
    terminating the worker) and when the worker prints nothing for `idle_timeout` seconds
    (default: env DEFORMATION_FORECAST_WORKER_IDLE_TIMEOUT, else no limit). `python` overrides the
    lookup of :func:`find_python`.
    """
    if python is not None:
        ok, why = check_python(python)
        if not ok:
            raise QgsProcessingException(f"{why} {INSTALL_HINT}")
    else:
        python, why = find_python()
        if python is None:
            raise QgsProcessingException(why)
    if idle_timeout is None:
        env_to = os.environ.get("DEFORMATION_FORECAST_WORKER_IDLE_TIMEOUT")
        idle_timeout = float(env_to) if env_to else None
    fd, pfile = tempfile.mkstemp(prefix="df_params_", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(params, f)
    args = [python, "-m", "deformation_forecast.ml", command, "--params", pfile]
    if feedback:
        feedback.pushDebugInfo("Worker: " + " ".join(args))
    tail: collections.deque[str] = collections.deque(maxlen=25)
    result: dict[str, Any] | None = None
    error: str | None = None
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=_child_env(),
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threads = [
        threading.Thread(target=_reader, args=(proc.stdout, lines, "out"), daemon=True),
        threading.Thread(target=_reader, args=(proc.stderr, lines, "err"), daemon=True),
    ]
    for t in threads:
        t.start()
    open_streams = 2
    last_output = time.monotonic()
    cancelled = hung = False
    try:
        while open_streams:
            if feedback is not None and feedback.isCanceled():
                cancelled = True
                break
            if idle_timeout and time.monotonic() - last_output > idle_timeout:
                hung = True
                break
            try:
                tag, line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            last_output = time.monotonic()
            if line is None:
                open_streams -= 1
                continue
            if tag == "err":
                if line.strip():
                    tail.append(line)  # kept for a crash report, even TensorFlow's own notes
                    if feedback and not is_tensorflow_noise(line):
                        feedback.pushDebugInfo(line)
                continue
            obj = _parse(line)
            if obj is None:
                tail.append(line)
                if feedback and line.strip():
                    feedback.pushDebugInfo(line)
                continue
            error = obj.get("error", error)
            if "result" in obj:
                result = obj["result"]
            _relay(obj, feedback)
    finally:
        if proc.poll() is None and (cancelled or hung or open_streams):
            _stop(proc)
        rc = proc.wait()
        for t in threads:
            t.join(timeout=2)
        if not any(t.is_alive() for t in threads):  # else a reader still holds its pipe
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        with contextlib.suppress(FileNotFoundError):  # the worker removes it once read
            os.unlink(pfile)
        if rc != 0 or cancelled or hung:
            _remove_partial_outputs(params)
    if cancelled:
        raise QgsProcessingException("Cancelled: the worker was stopped and nothing was written.")
    if hung:
        raise QgsProcessingException(
            f"The worker printed nothing for {idle_timeout:.0f} s and was stopped. Last lines:\n"
            + "\n".join(tail)
        )
    if rc != 0 or result is None:
        detail = "\n".join(tail)
        if error:
            raise QgsProcessingException(f"{error}" + (f"\nWorker log:\n{detail}" if detail else ""))
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
        if rc == -9:
            how += (
                " (the system's out-of-memory killer sends this signal: lower the memory budget, "
                "BATCH_SIZE or TILE_SIZE)"
            )
        raise QgsProcessingException(f"The TensorFlow worker {how}. Last lines:\n{detail}")
    return result


def _remove_partial_outputs(params: dict[str, Any]) -> None:
    """Temporary output files a killed worker could not remove (the atomic writers' ``.partial``
    files beside each output path of `params`); finished outputs and checkpoints are kept."""
    from .core.stack import partial_paths

    for key, value in params.items():
        if isinstance(value, str) and value and (key.startswith("output") or key == "predictions"):
            for path in partial_paths(value):
                with contextlib.suppress(OSError):
                    os.unlink(path)


def _parse(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _relay(obj: dict[str, Any], feedback: QgsProcessingFeedback | None) -> None:
    if feedback is None:
        return
    if "progress" in obj:
        feedback.setProgress(float(obj["progress"]))
    if obj.get("message"):
        feedback.pushInfo(str(obj["message"]))
    if obj.get("warning"):
        feedback.reportError(str(obj["warning"]), fatalError=False)
    if obj.get("metrics"):
        feedback.pushInfo("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in obj["metrics"].items()))


def _fmt(v: Any) -> str:
    return f"{v:.5g}" if isinstance(v, float) else str(v)


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the worker's process group, then kill it if it does not go."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
