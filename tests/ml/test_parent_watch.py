"""A worker whose parent died stops within seconds and leaves no parameter file (issue 15).
No TensorFlow: the tests' `_selftest` worker command (tests/worker_selftest.py) sleeps; its parent is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from deformation_forecast.ml.__main__ import PARENT_POLL_S

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


def _wait_for(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_worker_stops_when_its_parent_dies(tmp_path):
    pid_file = tmp_path / "pid"
    params = tmp_path / "df_params_test.json"
    params.write_text(json.dumps({"mode": "silent", "seconds": 300, "touch": str(pid_file)}))
    partial = tmp_path / "out.txt"
    code = (
        "import os, subprocess, sys, time\n"
        "os.environ['DEFORMATION_FORECAST_PARENT_PID'] = str(os.getpid())  # as worker.py does\n"
        "subprocess.Popen([sys.executable, '-m', 'tests.worker_selftest', '_selftest', '--params', "
        f"{str(params)!r}], start_new_session=True)\n"
        "time.sleep(600)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DEFORMATION_FORECAST_PARENT_PID"}
    env["PYTHONPATH"] = ROOT
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30), (
            "worker did not start"
        )
        worker = int(pid_file.read_text())
        assert _running(worker)
        assert not params.exists(), "the worker removes its parameter file once read"
    finally:
        parent.kill()
        parent.wait()
    t0 = time.monotonic()
    stopped = _wait_for(lambda: not _running(worker), PARENT_POLL_S + 10)
    took = time.monotonic() - t0
    if not stopped:
        os.kill(worker, 9)
    assert stopped, "the worker kept running after its parent died"
    assert took < PARENT_POLL_S + 5
    assert not partial.exists()
