"""RESUME after a killed or cancelled worker (issue 9).

Training runs through the worker protocol (``python -m deformation_forecast.ml train --params``,
its own process group as deformation_forecast.worker starts it). After each epoch it checkpoints
into ``<output_model>.checkpoint/`` (network weights, compressor weights, state.json with the epoch
and the history). The worker's group is then killed mid-run: SIGKILL (a crash, the OOM killer) or
SIGTERM (what a cancel in QGIS sends first, worker._stop). Nothing but the checkpoint may be left;
a second run with ``resume: true`` must say "RESUME: continuing after epoch N", run only epochs
N+1..EPOCHS, keep the first N epochs' history, write a valid model and remove the checkpoint
folder (it is only kept while a run is unfinished).
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.ml.scene import bowl_scene

pytestmark = [pytest.mark.tf, pytest.mark.slow]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCHS = 8
PARAMS = {
    "epochs": EPOCHS,
    "patience": 0,  # no early stop: every epoch runs, so the epochs of the two runs must add up
    "gru_epochs": 3,
    "test_count": 4,
    "device": "cpu",
    "seed": 5,
    "width": 4,
    "tile_size": 32,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from affine import Affine

    from deformation_forecast.core.stack import write_stack

    folder = tmp_path_factory.mktemp("resume_scene")
    data, dates = bowl_scene(40, 32, seed=2)
    path = str(folder / "stack.tif")
    write_stack(path, data, dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    return path


def _start(params: dict, folder) -> tuple[subprocess.Popen, list[str]]:
    pfile = folder / f"params_{len(os.listdir(folder))}.json"
    pfile.write_text(json.dumps(params))
    proc = subprocess.Popen(
        [sys.executable, "-m", "deformation_forecast.ml", "train", "--params", str(pfile)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2"),
        start_new_session=True,  # as worker.run_worker: the worker leads its own process group
    )
    lines: list[str] = []

    def read():
        for line in iter(proc.stdout.readline, ""):
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def _epochs(lines: list[str]) -> list[int]:
    """The epochs a run reported through the protocol (progress lines with metrics.epoch)."""
    out = []
    for line in lines:
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:  # not a protocol line (stderr is merged here)
                continue
            if "epoch" in obj.get("metrics", {}):
                out.append(int(obj["metrics"]["epoch"]))
    return out


def _state(ckpt: str) -> dict | None:
    try:
        with open(os.path.join(ckpt, "state.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _kill_after_checkpoint(params, folder, epoch: int, sig: int) -> tuple[dict, list[str]]:
    """Start training; as soon as the checkpoint of `epoch` is on disk, signal the worker's group."""
    ckpt = params["output_model"] + ".checkpoint"
    proc, lines = _start(params, folder)
    t0 = time.monotonic()
    try:
        while True:
            state = _state(ckpt)
            if state and state["epoch"] >= epoch:
                os.killpg(proc.pid, sig)
                break
            assert proc.poll() is None, "the worker ended before the checkpoint:\n" + "\n".join(lines[-30:])
            assert time.monotonic() - t0 < 400, "no checkpoint after 400 s:\n" + "\n".join(lines[-30:])
            time.sleep(0.02)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when an assertion fired above
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # SIGTERM (what cancel sends) is turned into KeyboardInterrupt: the worker cleans up, exits 130
    assert rc == (130 if sig == signal.SIGTERM else -sig), (rc, lines[-20:])
    time.sleep(0.2)  # let the reader thread drain the pipe
    return _state(ckpt), lines


def _digest(path: str) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize(
    "how, sig, kill_epoch, stale",
    [("killed", signal.SIGKILL, 2, False), ("cancelled", signal.SIGTERM, 3, True)],
)
def test_resume_continues_after_the_saved_epoch(stack, tmp_path, how, sig, kill_epoch, stale):
    """`stale`: first an interrupted run with other parameters (another seed) leaves its checkpoint;
    the run that is then started afresh (resume false) must overwrite all of it, compressor included,
    or its own resume would load the other run's compressor."""
    from deformation_forecast.ml.modelfile import load_model, read_meta

    model = str(tmp_path / "model.dfmodel")
    ckpt = model + ".checkpoint"
    params = dict(PARAMS, input=stack, output_model=model)
    gru_file = os.path.join(ckpt, "compressor.weights.h5")
    if stale:
        _kill_after_checkpoint(dict(params, seed=99), tmp_path, 1, signal.SIGKILL)
        stale_gru = _digest(gru_file)

    state, lines1 = _kill_after_checkpoint(params, tmp_path, kill_epoch, sig)
    if stale:
        assert _digest(gru_file) != stale_gru, "the fresh run kept the stale run's compressor weights"
    saved = state["epoch"]
    assert kill_epoch <= saved < EPOCHS, f"{how} too late: checkpoint of epoch {saved}"
    ran1 = _epochs(lines1)
    assert ran1[:saved] == list(range(1, saved + 1))
    # nothing but the checkpoint (and our params files) left: no model, no partial file
    left = sorted(n for n in os.listdir(tmp_path) if not n.startswith("params_"))
    assert left == ["model.dfmodel.checkpoint"], left
    assert {"state.json", "network.weights.h5", "compressor.weights.h5"} <= set(os.listdir(ckpt))
    assert len(state["history"]["loss"]) == saved

    # RESUME
    proc, lines2 = _start(dict(params, resume=True), tmp_path)
    rc = proc.wait(timeout=600)
    time.sleep(0.2)
    out = "\n".join(lines2)
    assert rc == 0, out[-3000:]
    assert re.search(rf"RESUME: continuing after epoch {saved}\b", out), out[-3000:]
    assert _epochs(lines2) == list(range(saved + 1, EPOCHS + 1))  # only the missing epochs ran
    result = json.loads([ln for ln in lines2 if ln.startswith('{"result"')][-1])["result"]
    assert result["epochs_run"] == EPOCHS  # the epochs of both runs add up
    assert not os.path.exists(ckpt)  # removed once the model is written
    assert sorted(n for n in os.listdir(tmp_path) if not n.startswith("params_")) == ["model.dfmodel"]

    meta = read_meta(model)
    hist = meta["history"]["loss"]
    assert len(hist) == EPOCHS and meta["train"]["epochs_run"] == EPOCHS
    np.testing.assert_allclose(hist[:saved], state["history"]["loss"])  # the first run's epochs kept
    assert all(np.isfinite(hist))
    net, gru, meta2 = load_model(model)
    x = np.zeros((1, meta2.time_step, 32, 32, 3), "float32")
    assert np.isfinite(np.asarray(net([x, np.zeros((1, 32, 32, 1), "float32")]))).all()
