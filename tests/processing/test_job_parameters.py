"""The dialogs of the worker algorithms are built from their jobs (jobs.py, processing/jobparams.py):
the parameters a person sees are today's (a table copied from the code before the change), their
defaults and bounds ARE the job's declarations, and the values of a run reach the worker unchanged
(dialog -> Job -> JSON -> worker's from_dict)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingParameterDefinition

from deformation_forecast import jobs, worker

HERE = os.path.dirname(os.path.abspath(__file__))
ALGS = {"trainmodel": jobs.TrainJob, "forecast": jobs.ForecastJob, "comparemodels": jobs.CompareJob}
ALGS_AND_CHECK = {**ALGS, "checkworker": jobs.InfoJob}
BIG = 1.7976931348623157e308  # QgsProcessingParameterNumber's maximum when none is set
# the only intended changes: the comparison's shared settings take the training's declaration (its
# networks are trained by the same TrainJob), so TIME_STEP's minimum is 2 in both, and the
# training's MAX_SECONDS gets the comparison's help
CHANGED = {
    ("comparemodels", "TIME_STEP"): {"minimum": 2.0, "maximum": 60.0},
    ("comparemodels", "TEST_COUNT"): {"maximum": 1000.0},
    ("comparemodels", "EPOCHS"): {"maximum": 10000.0},
    ("comparemodels", "SEED"): {"maximum": 2147483647.0},
    ("comparemodels", "MAX_SECONDS"): {"maximum": 1e7},
    ("comparemodels", "INTERVAL_DAYS"): {"maximum": 3650.0},
    ("trainmodel", "MAX_SECONDS"): {
        "help": "Stops a network's training after this long (the best weights are kept)."
    },
}


def describe(p) -> dict:
    """What a person sees of a parameter (the same fields as worker_parameters_before.json)."""
    d = {
        "name": p.name(),
        "type": p.type(),
        "label": p.description(),
        "advanced": bool(p.flags() & QgsProcessingParameterDefinition.FlagAdvanced),
        "optional": bool(p.flags() & QgsProcessingParameterDefinition.FlagOptional),
        "help": p.help() if hasattr(p, "help") else "",
        "default": p.defaultValue(),
    }
    for attr in ("minimum", "maximum", "dataType", "options", "allowMultiple", "fileFilter", "behavior"):
        if hasattr(p, attr):
            v = getattr(p, attr)()
            d[attr] = v if isinstance(v, int | float | str | bool | list | type(None)) else int(v)
    for attr in ("createByDefault", "extension"):
        if hasattr(p, attr):
            d[attr] = getattr(p, attr)()
    return d


def _alg(name):
    return QgsApplication.processingRegistry().algorithmById(f"deformation_forecast:{name}")


@pytest.mark.parametrize("name", sorted(ALGS_AND_CHECK))
def test_the_dialogs_show_todays_parameters(df_plugin, name):
    with open(os.path.join(HERE, "worker_parameters_before.json"), encoding="utf-8") as f:
        before = json.load(f)[name]
    for d in before:
        d.update(CHANGED.get((name, d["name"]), {}))
    now = [describe(p) for p in _alg(name).parameterDefinitions()]
    assert [d["name"] for d in now] == [d["name"] for d in before]  # the same ids in the same order
    for b, n in zip(before, now, strict=True):
        assert {k: n.get(k) for k in b} == b, b["name"]


@pytest.mark.parametrize("name", sorted(ALGS_AND_CHECK))
def test_dialog_defaults_and_bounds_are_the_job_declarations(df_plugin, name):
    job = ALGS_AND_CHECK[name]
    alg = _alg(name)
    declared = job.parameters()
    assert [p.name for _, p, _ in declared] == [d.name() for d in alg.parameterDefinitions()]
    for _, p, default in declared:
        d = alg.parameterDefinition(p.name)
        assert d.description() == p.label, p.name
        assert bool(d.flags() & QgsProcessingParameterDefinition.FlagAdvanced) == p.advanced, p.name
        if p.name != jobs.DEVICE:  # DEVICE's default is the plugin setting (auto when unset)
            assert d.defaultValue() == default, p.name
        if p.kind in jobs.NUMBER_KINDS:
            assert d.minimum() == p.minimum, p.name
            assert d.maximum() == (BIG if p.maximum is None else p.maximum), p.name
        if p.kind == jobs.ENUM:
            assert d.options() == list(p.labels), p.name


def test_time_step_has_one_minimum_in_training_and_comparison(df_plugin):
    mins = {a: _alg(a).parameterDefinition(jobs.TIME_STEP).minimum() for a in ("trainmodel", "comparemodels")}
    assert mins == {"trainmodel": 2.0, "comparemodels": 2.0}
    arch = _alg("trainmodel").parameterDefinition(jobs.ARCHITECTURE).options()
    assert arch == list(jobs.ARCHITECTURES)


def test_dialog_values_reach_the_worker_unchanged(run_alg, write_stack, tmp_path, monkeypatch):
    """processing.run's values -> TrainJob (from_parameters) -> JSON -> the worker's from_dict."""
    from deformation_forecast.processing import alg_train_model

    sent = {}

    def fake(job, feedback):
        sent["json"] = job.to_json()
        raise QgsProcessingException("stopped by the test")

    monkeypatch.setattr(alg_train_model, "run_job", fake)
    monkeypatch.setattr(alg_train_model.TrainModel, "canExecute", lambda self: (True, ""), raising=False)
    stack = write_stack(np.random.default_rng(0).normal(size=(12, 6, 7)).cumsum(axis=0))
    params = {
        "INPUT": stack,
        "ARCHITECTURE": 2,
        "TIME_STEP": 7,
        "TEST_COUNT": 3,
        "VALIDATION_FRACTION": 0.3,
        "EPOCHS": 11,
        "LEARNING_RATE": 0.002,
        "MAE_WEIGHT": 0.5,
        "INTERVAL_DAYS": 24,
        "SEED": 5,
        "DEVICE": 2,
        "RESUME": True,
        "OUTPUT_MODEL": str(tmp_path / "m.dfmodel"),
        "OUTPUT_REPORT": str(tmp_path / "r.html"),
    }
    with pytest.raises(QgsProcessingException, match="stopped by the test"):
        run_alg("trainmodel", params)
    job = jobs.TrainJob.from_dict(json.loads(sent["json"]))  # what ml/commands.py does
    expected = {
        "input": stack,
        "architecture": "cnn-lstm",
        "time_step": 7,
        "test_count": 3,
        "validation_fraction": 0.3,
        "epochs": 11,
        "learning_rate": 0.002,
        "mae_weight": 0.5,
        "interval_days": 24,
        "seed": 5,
        "device": "cpu",
        "resume": True,
        "output_model": str(tmp_path / "m.dfmodel"),
        "output_report": str(tmp_path / "r.html"),
        "batch_size": 4,  # not given: the declared default
        "gru_time_step": 15,  # worker-only: its default
    }
    assert {k: getattr(job, k) for k in expected} == expected
    assert job.memory_budget_mb > 0  # this run's budget (processing.base)


def test_forecast_values_reach_the_worker_unchanged(run_alg, write_stack, tmp_path, monkeypatch):
    from deformation_forecast.processing import alg_forecast

    sent = {}

    def fake(job, feedback):
        sent["json"] = job.to_json()
        raise QgsProcessingException("stopped by the test")

    monkeypatch.setattr(alg_forecast, "run_job", fake)
    monkeypatch.setattr(
        alg_forecast.ForecastDeformation, "canExecute", lambda self: (True, ""), raising=False
    )
    stack = write_stack(np.zeros((6, 4, 5)))
    model = tmp_path / "m.dfmodel"
    model.write_bytes(b"not read by this test")
    params = {
        "INPUT": stack,
        "MODEL": str(model),
        "STEPS": 9,
        "DEVICE": 2,
        "METHOD": 1,
        "CONFIDENCE": 0.8,
        "OUTPUT": str(tmp_path / "f.tif"),
        "OUTPUT_UPPER": str(tmp_path / "u.tif"),
    }
    with pytest.raises(QgsProcessingException, match="stopped by the test"):
        run_alg("forecast", params)
    job = jobs.ForecastJob.from_dict(json.loads(sent["json"]))
    assert (job.input, job.model, job.steps, job.device, job.method) == (stack, str(model), 9, "cpu", "best")
    assert (job.confidence, job.output, job.output_upper) == (
        0.8,
        str(tmp_path / "f.tif"),
        str(tmp_path / "u.tif"),
    )
    assert job.output_rate == "" and job.output_lower == ""


def test_the_worker_refuses_unknown_and_invalid_keys(qgis_app):
    """The worker's door (ml/commands.py): InputError naming the key, before TensorFlow is imported."""
    base = jobs.TrainJob(input="s.tif", output_model="m.dfmodel").asdict()
    with pytest.raises(QgsProcessingException, match=r"unknown parameter\(s\) time_stpe") as e:
        worker.run_worker("train", base | {"time_stpe": 5})
    assert "Traceback" not in str(e.value)
    with pytest.raises(QgsProcessingException, match="TIME_STEP: 1 is below the minimum 2"):
        worker.run_worker("train", base | {"time_step": 1})
    with pytest.raises(QgsProcessingException, match="METHOD: 'fast' is not one of"):
        worker.run_worker("forecast", {"input": "s.tif", "model": "m", "output": "f.tif", "method": "fast"})
