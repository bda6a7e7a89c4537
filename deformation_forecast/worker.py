"""QGIS side of the TensorFlow process boundary.

TensorFlow aborts a QGIS process when imported there (protobuf clash, see the README's "Installing into your QGIS"), so every
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
import shlex
import subprocess
import tempfile
import threading
import time
from typing import Any

from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsSettings

from . import settings_keys
from .jobs import Job

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
SETTINGS_KEY = settings_keys.PYTHON
DEVICE_SETTINGS_KEY = settings_keys.DEVICE
INSTALL_HINT = (
    "Training and forecasting need a Python 3 with TensorFlow, run as a separate process. "
    "Install it, e.g. `python3 -m venv ~/df-venv && ~/df-venv/bin/pip install tensorflow-cpu "
    "rasterio scikit-image scikit-learn` (or tensorflow[and-cuda] for an NVIDIA GPU), then point "
    "the plugin at it: Settings > Options > Deformation forecast > 'TensorFlow Python', or the "
    "environment variable DEFORMATION_FORECAST_PYTHON."
)


def candidate_pythons() -> list[tuple[str, str]]:
    """(path, where it came from) in this order: setting, env var, project .venv."""
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
_versions: dict[str, str] = {}  # python -> "Python 3.11.2, TensorFlow 2.21.0" (the same probe)

# prints the missing modules, then the versions of Python and of TensorFlow (from its package
# metadata: importing TensorFlow takes seconds)
PROBE = (
    "import importlib.metadata as md, importlib.util, platform, sys\n"
    "missing = [m for m in ('tensorflow', 'rasterio', 'numpy') if importlib.util.find_spec(m) is None]\n"
    "dists = md.packages_distributions().get('tensorflow') or []  # tensorflow, tensorflow-cpu...\n"
    "tf = md.version(dists[0]) if dists else '?'\n"
    "print(','.join(missing)); print(platform.python_version()); print(tf)\n"
    "sys.exit(3 if missing else 0)\n"
)


def check_python(python: str) -> tuple[bool, str]:
    """Whether `python` runs and can import tensorflow (cached per path)."""
    if python in _checked:
        return _checked[python]
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        res = (False, f"{python} is not an executable file.")
    else:
        try:
            p = subprocess.run(
                [python, "-c", PROBE], capture_output=True, text=True, timeout=60, env=_child_env()
            )
            lines = p.stdout.splitlines() + ["", "", ""]
            if p.returncode in (0, 3):
                _versions[python] = f"Python {lines[1]}, TensorFlow {lines[2]}"
            if p.returncode == 0:
                res = (True, f"{python} has TensorFlow.")
            elif p.returncode == 3:
                res = (False, f"{python} lacks: {lines[0].strip()}.")
            else:
                res = (False, f"{python} failed: {p.stderr.strip()[-300:]}")
        except (OSError, subprocess.TimeoutExpired) as e:
            res = (False, f"{python} could not be run: {e}")
    _checked[python] = res
    return res


def worker_versions() -> str:
    """The worker's Python and TensorFlow versions ("Python 3.11.2, TensorFlow 2.21.0"), or why
    there is none (the provider's versionInfo)."""
    python, _ = find_python()
    if python is None:
        return "no Python with TensorFlow found"
    return _versions.get(python, "versions unknown")


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


# the module the worker runs as (``python -m WORKER_MODULE command --params file``); the tests run
# their fault-injection commands through a module of their own (tests/worker_selftest.py)
WORKER_MODULE = "deformation_forecast.ml"


def run_job(job: Job, feedback: QgsProcessingFeedback | None = None, **options: Any) -> dict[str, Any]:
    """Run `job` (jobs.py) in the worker: its command receives ``job.asdict()`` as JSON and rebuilds
    the job there (ml/commands.py). `options` as :func:`run_worker`."""
    return run_worker(job.COMMAND, job.asdict(), feedback, **options)


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
    python = _worker_python(python)
    if idle_timeout is None:
        env_to = os.environ.get("DEFORMATION_FORECAST_WORKER_IDLE_TIMEOUT")
        idle_timeout = float(env_to) if env_to else None
    fd, pfile = tempfile.mkstemp(prefix="df_params_", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(params, f)
    session = _Session(feedback, idle_timeout)
    try:
        session.run([python, "-m", WORKER_MODULE, command, "--params", pfile])
    finally:
        with contextlib.suppress(FileNotFoundError):  # the worker removes it once read
            os.unlink(pfile)
        if session.rc != 0 or session.cancelled or session.hung:
            _remove_partial_outputs(params)
    return session.outcome()


def _worker_python(python: str | None) -> str:
    """`python` when it has TensorFlow, else the one :func:`find_python` finds; raises otherwise."""
    if python is not None:
        ok, why = check_python(python)
        if not ok:
            raise QgsProcessingException(f"{why} {INSTALL_HINT}")
        return python
    found, why = find_python()
    if found is None:
        raise QgsProcessingException(why)
    return found


def _reader(stream, sink: queue.Queue, tag: str) -> None:
    for line in iter(stream.readline, ""):
        sink.put((tag, line.rstrip("\n")))
    sink.put((tag, None))


class _Session:
    """One run of the worker: started with ``with subprocess.Popen``, the command line shown with
    ``pushCommandInfo``, its JSON lines relayed to the feedback, its other output (TensorFlow's
    notes filtered out) with ``pushConsoleInfo``, stopped on cancel or silence."""

    def __init__(self, feedback: QgsProcessingFeedback | None, idle_timeout: float | None):
        self.feedback = feedback
        self.idle_timeout = idle_timeout
        self.tail: collections.deque[str] = collections.deque(maxlen=25)
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.cancelled = self.hung = False
        self.rc: int | None = None

    def run(self, args: list[str]) -> None:
        if self.feedback is not None:
            self.feedback.pushCommandInfo(shlex.join(args))
        with subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=_child_env(),
            start_new_session=True,
        ) as proc:
            lines: queue.Queue = queue.Queue()
            threads = [
                threading.Thread(target=_reader, args=(proc.stdout, lines, "out"), daemon=True),
                threading.Thread(target=_reader, args=(proc.stderr, lines, "err"), daemon=True),
            ]
            for t in threads:
                t.start()
            open_streams = 2
            try:
                open_streams = self._pump(lines)
            finally:
                if proc.poll() is None and (self.cancelled or self.hung or open_streams):
                    _stop(proc)
                self.rc = proc.wait()
                for t in threads:
                    t.join(timeout=2)
                if any(t.is_alive() for t in threads):  # a reader still holds its pipe: leave it
                    proc.stdout = proc.stderr = None

    def _pump(self, lines: queue.Queue) -> int:
        """Relay the worker's lines until both its streams close, it is cancelled or falls silent
        for `idle_timeout` s; returns the number of streams still open."""
        open_streams = 2
        last_output = time.monotonic()
        while open_streams:
            if self.feedback is not None and self.feedback.isCanceled():
                self.cancelled = True
                break
            if self.idle_timeout and time.monotonic() - last_output > self.idle_timeout:
                self.hung = True
                break
            try:
                tag, line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            last_output = time.monotonic()
            if line is None:
                open_streams -= 1
            else:
                self._line(tag, line)
        return open_streams

    def _line(self, tag: str, line: str) -> None:
        obj = _parse(line) if tag == "out" else None
        if obj is not None:
            self.error = obj.get("error", self.error)
            if "result" in obj:
                self.result = obj["result"]
            _relay(obj, self.feedback)
            return
        if not line.strip():
            return
        self.tail.append(line)  # kept for a crash report, even TensorFlow's own notes
        if self.feedback is not None and not (tag == "err" and is_tensorflow_noise(line)):
            self.feedback.pushConsoleInfo(line)

    def outcome(self) -> dict[str, Any]:
        """The worker's result, or the QgsProcessingException that says why there is none."""
        detail = "\n".join(self.tail)
        if self.cancelled:
            raise QgsProcessingException("Cancelled: the worker was stopped and nothing was written.")
        if self.hung:
            raise QgsProcessingException(
                f"The worker printed nothing for {self.idle_timeout:.0f} s and was stopped. Last lines:\n"
                + detail
            )
        if self.rc == 0 and self.result is not None:
            return self.result
        if self.error:
            raise QgsProcessingException(f"{self.error}" + (f"\nWorker log:\n{detail}" if detail else ""))
        rc = self.rc or 0
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
        if rc == -9:
            how += (
                " (the system's out-of-memory killer sends this signal: lower the memory budget, "
                "BATCH_SIZE or TILE_SIZE)"
            )
        raise QgsProcessingException(f"The TensorFlow worker {how}. Last lines:\n{detail}")


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
