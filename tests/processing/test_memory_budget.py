"""The memory budget reaches every algorithm (issue 8): the plugin setting, else
$DEFORMATION_FORECAST_MEMORY_MB, else 2048 MB; logged; passed to core calls and to the worker."""

from __future__ import annotations

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsSettings

from deformation_forecast.core import budget
from deformation_forecast.core.stack import read_stack
from deformation_forecast.processing.base import MEMORY_SETTINGS_KEY


class Log(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.lines = []

    def pushInfo(self, info):  # noqa: N802
        self.lines.append(info)
        super().pushInfo(info)


def _bowl(n=6, h=40, w=50):
    yy, xx = np.mgrid[0:h, 0:w]
    shape = np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / 80.0)
    return (-np.linspace(0, 30, n)[:, None, None] * shape).astype("float32")


@pytest.fixture
def setting():
    s = QgsSettings()
    old = s.value(MEMORY_SETTINGS_KEY, 0)
    yield lambda v: s.setValue(MEMORY_SETTINGS_KEY, v)
    s.setValue(MEMORY_SETTINGS_KEY, old)


@pytest.fixture
def spy(monkeypatch):
    """Record the `mb` every rate computation gets."""
    from deformation_forecast.core import rates

    seen = []
    real = rates.iter_windows

    def windows(*a, **k):
        run = k.get("run")
        seen.append(run.budget_mb if run is not None else k.get("mb"))
        return real(*a, **k)

    monkeypatch.setattr(rates, "iter_windows", windows)
    return seen


def test_setting_then_variable_then_default(run_alg, write_stack, tmp_path, monkeypatch, setting, spy):
    stack = write_stack(_bowl())
    outs = []
    for k, (value, env, want, origin) in enumerate(
        [
            (300, "900", 300, "plugin setting"),
            (0, "900", 900, budget.ENV),
            (0, None, 2048, "default"),
            (10, None, 64, "plugin setting"),  # below the minimum: 64
        ]
    ):
        setting(value)
        if env is None:
            monkeypatch.delenv(budget.ENV, raising=False)
        else:
            monkeypatch.setenv(budget.ENV, env)
        log = Log()
        out = str(tmp_path / f"rate{k}.tif")
        run_alg("deformationrate", {"INPUT": stack, "OUTPUT": out}, feedback=log)
        assert f"Memory budget: {want:g} MB ({origin})." in log.lines
        assert spy[-1] == want
        outs.append(read_stack(out))
    for o in outs[1:]:  # the budget changes the windows, never the numbers
        np.testing.assert_array_equal(o, outs[0])


def test_bad_variable_is_refused(run_alg, write_stack, tmp_path, monkeypatch, setting):
    setting(0)
    monkeypatch.setenv(budget.ENV, "lots")
    with pytest.raises(QgsProcessingException, match=budget.ENV):
        run_alg("deformationrate", {"INPUT": write_stack(_bowl()), "OUTPUT": str(tmp_path / "r.tif")})
    assert not (tmp_path / "r.tif").exists()
    setting(512)  # the setting wins: the variable is not read
    run_alg(
        "deformationrate", {"INPUT": write_stack(_bowl(), name="s2.tif"), "OUTPUT": str(tmp_path / "r.tif")}
    )


def test_worker_algorithms_pass_the_budget(run_alg, write_stack, tmp_path, monkeypatch, setting):
    from deformation_forecast.processing import alg_train_model

    seen = {}

    def fake(job, feedback):
        seen.update(job.asdict())
        raise QgsProcessingException("stopped by the test")

    monkeypatch.setattr(alg_train_model, "run_job", fake)
    monkeypatch.setattr(alg_train_model.TrainModel, "canExecute", lambda self: (True, ""), raising=False)
    setting(777)
    with pytest.raises(QgsProcessingException, match="stopped by the test"):
        run_alg(
            "trainmodel",
            {
                "INPUT": write_stack(_bowl(30)),
                "OUTPUT_MODEL": str(tmp_path / "m.dfmodel"),
                "OUTPUT_REPORT": str(tmp_path / "r.html"),
            },
        )
    assert seen["memory_budget_mb"] == 777
