"""Training across machines (``train-cluster``, ml/cluster.py + ml/loop.py): two worker processes
on 127.0.0.1 with TF_CONFIG train like one process with the same global batch and seed; the chief
writes a model that forecasting accepts; workers that see different stacks refuse together."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.ml.scene import bowl_scene
from tests.ports import free_ports

pytestmark = [pytest.mark.tf, pytest.mark.slow]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {
    "gru_epochs": 2,
    "test_count": 6,
    "device": "cpu",
    "width": 4,
    "test_tiles": 1,
    "learning_rate": 0.003,
    "residual": "none",  # the whole frame to learn: the loss falls within 3 tiny epochs
}
ARGS = ["--epochs", "3", "--seed", "3", "--tile-size", "16", "--samples-per-epoch", "16"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from affine import Affine

    from deformation_forecast.core.stack import write_stack

    folder = tmp_path_factory.mktemp("cluster")
    data, dates = bowl_scene(40, 32)
    path = str(folder / "stack.tif")
    write_stack(path, data, dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    (folder / "params.json").write_text(json.dumps(TINY))
    return folder, path


def _start(args: list[str], tf_config: dict | None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    cmd = [sys.executable, "-m", "deformation_forecast.ml", "train-cluster", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _cluster(per_worker_args: list[list[str]], timeout: float = 600) -> list[tuple[int, list[dict], str]]:
    """Run one worker process per argument list on 127.0.0.1; (returncode, JSON lines, stderr) each."""
    workers = [f"127.0.0.1:{p}" for p in free_ports(len(per_worker_args))]
    procs = [
        _start(a, {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        for i, a in enumerate(per_worker_args)
    ]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
            results.append((p.returncode, lines, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def _epochs(lines: list[dict]) -> list[dict]:
    return [x["metrics"] for x in lines if "epoch" in x.get("metrics", {})]


def _weights(path: str) -> list[np.ndarray]:
    from deformation_forecast.ml.modelfile import load_model

    net, _, _ = load_model(path)
    return net.get_weights()


def test_two_workers_train_like_one_process_and_the_chief_writes_a_usable_model(stack, tmp_path):
    folder, path = stack
    model = str(tmp_path / "cluster.dfmodel")
    common = ["--stack", path, "--params", str(folder / "params.json"), *ARGS]
    (rc0, out0, err0), (rc1, out1, err1) = _cluster(
        [[*common, "--output-model", model, "--batch-size", "2"]] * 2
    )
    assert rc0 == 0, err0[-3000:]
    assert rc1 == 0, err1[-3000:]
    # both took part: each read its own half of every global batch of 4
    assert any("Worker 0 of 2" in x.get("message", "") and "reads 2 of each" in x["message"] for x in out0)
    assert any("Worker 1 of 2" in x.get("message", "") and "reads 2 of each" in x["message"] for x in out1)
    e0, e1 = _epochs(out0), _epochs(out1)
    assert [m["epoch"] for m in e0] == [1, 2, 3] and [m["worker"] for m in e1] == [1, 1, 1]
    assert [m["loss"] for m in e0] == pytest.approx([m["loss"] for m in e1], rel=1e-6)  # one model
    assert e0[-1]["loss"] < e0[0]["loss"]
    # only the chief wrote: the model, no checkpoint left; the other worker's result says so
    assert out0[-1]["result"]["output_model"] == model and os.path.isfile(model)
    assert out1[-1]["result"] == {
        "worker": 1,
        "epochs_run": 3,
        "train_seconds": pytest.approx(out1[-1]["result"]["train_seconds"]),
    }
    assert sorted(os.listdir(tmp_path)) == ["cluster.dfmodel"]

    # the same global batch (4) and seed in one process: the same training
    single = str(tmp_path / "single" / "single.dfmodel")
    os.makedirs(os.path.dirname(single))
    p = _start([*common, "--output-model", single, "--batch-size", "4"], None)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    es = _epochs([json.loads(x) for x in out.splitlines() if x.startswith("{")])
    assert [m["loss"] for m in es] == pytest.approx([m["loss"] for m in e0], rel=1e-5)
    for a, b in zip(_weights(model), _weights(single), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    # forecasting accepts the chief's model
    from deformation_forecast.core.stack import read_info
    from deformation_forecast.ml.forecast import run_forecast

    fc = str(tmp_path / "single" / "fc.tif")
    run_forecast({"input": path, "model": model, "steps": 3, "device": "cpu", "output": fc})
    assert read_info(fc).count == 3


def test_workers_with_different_stacks_refuse_together(stack, tmp_path):
    from affine import Affine

    from deformation_forecast.core.stack import write_stack

    folder, path = stack
    data, dates = bowl_scene(40, 32, seed=1)  # same size and dates, other values
    other = str(tmp_path / "other.tif")
    write_stack(other, data, dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    model = str(tmp_path / "m.dfmodel")
    args = [
        ["--stack", s, "--output-model", model, "--params", str(folder / "params.json"), *ARGS]
        for s in (path, other)
    ]
    results = _cluster(args, timeout=300)
    for rc, lines, _ in results:
        assert rc == 1
        assert "do not see the same stack" in lines[-1]["error"]
    assert "stack.tif" in results[0][1][-1]["error"] and "other.tif" in results[1][1][-1]["error"]
    assert not os.path.exists(model)


def test_plain_train_with_several_machines_names_train_cluster(monkeypatch):
    from deformation_forecast.core.errors import InputError
    from deformation_forecast.ml.distribute import plan_training

    cfg = {"cluster": {"worker": ["10.0.0.1:1", "10.0.0.2:1"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cfg))
    with pytest.raises(InputError, match=r"names 2 machines.*train-cluster"):
        plan_training({"name": "CPU", "tf_device": "/CPU:0", "gpus": [], "reason": ""}, 4)


def test_command_line_maps_onto_the_training_parameters(tmp_path):
    from deformation_forecast.core.errors import InputError
    from deformation_forecast.ml.cluster import parse_args

    extra = tmp_path / "p.json"
    extra.write_text(json.dumps({"width": 4, "epochs": 99}))
    p = parse_args(
        ["--stack", "s.tif", "--output-model", "m.dfmodel", "--epochs", "2", "--params", str(extra)]
    )
    assert p["input"] == "s.tif" and p["output_model"] == "m.dfmodel"
    assert p["epochs"] == 2 and p["width"] == 4  # the option wins over the file
    assert p["cluster"] is True and p["resume"] is False
    assert p["seed"] == 42  # not given: TrainJob's default (jobs.py)
    extra.write_text(json.dumps({"widht": 4}))
    with pytest.raises(InputError, match=r"unknown parameter\(s\) widht"):
        parse_args(["--stack", "s.tif", "--output-model", "m.dfmodel", "--params", str(extra)])


def test_a_dead_worker_stops_the_other_and_resume_continues_from_the_chiefs_checkpoint(stack, tmp_path):
    folder, path = stack
    model = str(tmp_path / "m.dfmodel")
    args = ["--stack", path, "--output-model", model, "--params", str(folder / "params.json")]
    args += ["--seed", "3", "--tile-size", "16", "--samples-per-epoch", "16", "--timeout", "120"]
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    cfg = [{"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}} for i in range(2)]
    chief, other = (_start([*args, "--epochs", "50"], c) for c in cfg)
    try:
        for line in chief.stdout:  # the first epoch checkpointed: kill the other worker
            if '"epoch": 1' in line:
                break
        other.kill()
        other.wait()
        out, _ = chief.communicate(timeout=240)  # stops by itself: no hang
    finally:
        for p in (chief, other):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert chief.returncode == 1
    error = json.loads(out.strip().splitlines()[-1])["error"]
    assert "another worker died" in error and "--resume" in error and "m.dfmodel.checkpoint" in error
    state = json.loads((tmp_path / "m.dfmodel.checkpoint" / "state.json").read_text())
    done = state["epoch"]
    assert done >= 1 and not os.path.exists(model)

    results = _cluster([[*args, "--epochs", str(done + 1), "--resume"]] * 2)
    for rc, lines, err in results:
        assert rc == 0, err[-3000:]
        assert any(f"RESUME: continuing after epoch {done}" in x.get("message", "") for x in lines)
        assert [m["epoch"] for m in _epochs(lines)] == [done + 1]
    assert os.path.isfile(model) and not os.path.exists(model + ".checkpoint")
