"""deformation_forecast.jobs: the typed boundary between the dialogs and the worker (no QGIS, no
TensorFlow). The Processing side of the round-trip is in tests/processing/test_job_parameters.py."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from deformation_forecast import jobs
from deformation_forecast.core.errors import InputError
from tests.conftest import ROOT

ALL = (jobs.TrainJob, jobs.ForecastJob, jobs.InfoJob, jobs.CompareJob)


def _train(**kw) -> jobs.TrainJob:
    return jobs.TrainJob(input="/data/stack.tif", output_model="/data/m.dfmodel", **kw)


def test_json_round_trip_equals_the_job():
    job = _train(time_step=7, learning_rate=1e-3, lstm_units=(32, 16), resume=True, device="cpu")
    back = jobs.TrainJob.from_dict(json.loads(json.dumps(job.asdict())))
    assert back == job
    assert back.lstm_units == (32, 16)  # a JSON list comes back as the tuple it was
    fjob = jobs.ForecastJob(input="s.tif", model="m.dfmodel", output="f.tif", method="best", confidence=0.8)
    assert jobs.ForecastJob.from_dict(json.loads(fjob.to_json())) == fjob


def test_field_names_are_the_worker_keys_and_the_parameter_names_their_uppercase():
    for cls in ALL:
        for name, p, _ in cls.declarations():
            if p.name is not None:
                assert p.name == name.upper(), (cls.__name__, name)
                assert getattr(jobs, p.name) == p.name  # declared as a module constant
    # every key ml/train.py read from its params dict is a TrainJob field
    keys = {f.name for f in dataclasses.fields(jobs.TrainJob)}
    for k in ("gru_time_step", "memory_budget_mb", "output_model", "resume", "predictions", "test_tiles"):
        assert k in keys


def test_unknown_keys_are_refused_naming_them():
    d = _train().asdict() | {"time_stpe": 5, "zzz": 1}
    with pytest.raises(InputError, match=r"unknown parameter\(s\) time_stpe, zzz"):
        jobs.TrainJob.from_dict(d)


def test_missing_required_value_is_named():
    with pytest.raises(InputError, match="OUTPUT_MODEL"):
        jobs.TrainJob.from_dict({"input": "s.tif"})
    with pytest.raises(InputError, match="INPUT"):
        jobs.TrainJob(input="", output_model="m.dfmodel")


def test_none_takes_the_default():
    job = jobs.TrainJob.from_dict({"input": "s.tif", "output_model": "m", "epochs": None})
    assert job.epochs == 30


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"time_step": 1}, r"TIME_STEP: 1 is below the minimum 2"),
        ({"time_step": 61}, r"TIME_STEP: 61 is above the maximum 60"),
        ({"epochs": "30"}, r"EPOCHS: '30' is not a whole number"),
        ({"epochs": True}, r"EPOCHS: True is not a whole number"),
        ({"learning_rate": 2.0}, r"LEARNING_RATE: 2 is above the maximum 1"),
        ({"architecture": "gru"}, r"ARCHITECTURE: 'gru' is not one of cnn-phlstm"),
        ({"device": "tpu"}, r"DEVICE: 'tpu' is not one of auto, gpu, cpu"),
        ({"resume": 1}, r"RESUME: 1 is not true or false"),
        ({"test_tiles": -1}, r"test_tiles: -1 is below the minimum 0"),
    ],
)
def test_invalid_values_are_refused_naming_the_parameter(change, named):
    with pytest.raises(InputError, match=named):
        _train(**change)
    with pytest.raises(InputError, match=named):  # the same through the worker's door
        jobs.TrainJob.from_dict(_train().asdict() | change)


def test_numbers_are_normalised():
    job = _train(epochs=12.0, mae_weight=1)
    assert job.epochs == 12 and isinstance(job.epochs, int)
    assert job.mae_weight == 1.0 and isinstance(job.mae_weight, float)


def test_the_jobs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _train().epochs = 3  # type: ignore[misc]


def test_shared_parameters_are_declared_once():
    """TIME_STEP (its minimum was 2 in training and 1 in the comparison), EPOCHS, SEED, DEVICE,
    VALIDATION_FRACTION and MAX_SECONDS are one declaration in the training and the comparison."""
    for name in (
        jobs.TIME_STEP,
        jobs.EPOCHS,
        jobs.SEED,
        jobs.DEVICE,
        jobs.VALIDATION_FRACTION,
        jobs.MAX_SECONDS,
    ):
        assert jobs.TrainJob.declaration(name) == jobs.CompareJob.declaration(name), name
    assert jobs.TrainJob.declaration(jobs.TIME_STEP).minimum == 2
    # the dataclass defaults are the same too
    for key in ("time_step", "epochs", "seed", "device", "validation_fraction", "max_seconds"):
        t = {f.name: f.default for f in dataclasses.fields(jobs.TrainJob)}[key]
        c = {f.name: f.default for f in dataclasses.fields(jobs.CompareJob)}[key]
        assert t == c, key


def test_a_comparison_network_is_a_valid_train_job():
    cmp = jobs.CompareJob(input="s.tif", time_step=3, test_count=6, epochs=2, seed=1, memory_budget_mb=512)
    assert cmp.networks == ["cnn-lstm", "cnn-phlstm"]
    assert "persistence" in cmp.baselines and "cnn-lstm" not in cmp.baselines
    job = cmp.network_job("cnn-lstm", "crop.tif", 12, "/tmp/x")
    assert (job.architecture, job.time_step, job.test_count, job.interval_days) == ("cnn-lstm", 3, 6, 12)
    assert (job.epochs, job.seed, job.memory_budget_mb, job.test_tiles) == (2, 1, 512.0, 0)
    assert job.predictions == "/tmp/x/predictions.npz" and job.output_model == "/tmp/x/model.dfmodel"
    assert jobs.TrainJob.from_dict(json.loads(job.to_json())) == job


def test_compare_models_must_not_be_empty():
    with pytest.raises(InputError, match="MODELS: choose at least one"):
        jobs.CompareJob(input="s.tif", models=())


def test_the_architecture_list_is_defined_once():
    import pathlib

    hits = [
        str(p.relative_to(ROOT))
        for p in sorted(pathlib.Path(ROOT, "deformation_forecast").rglob("*.py"))
        for _ in range(p.read_text(encoding="utf-8").count('"cnn-phlstm-paper"'))
    ]
    assert hits == ["deformation_forecast/jobs.py"]


def test_jobs_import_neither_qgis_nor_tensorflow():
    code = (
        "import sys, deformation_forecast.jobs\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('qgis', 'tensorflow', 'keras', 'PyQt5'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
