import pytest
from qgis.core import QgsSettings

from deformation_forecast import worker
from deformation_forecast.gui.settings import DEVICE_KEY, SettingsFactory, SettingsPage, describe_python
from tests.conftest import ROOT


def test_settings_page_saves_python_and_device(qgis_app, tmp_path):
    page = SettingsFactory().createWidget(None)
    assert isinstance(page, SettingsPage)
    page.python.setText(str(tmp_path / "py"))
    page.device.setCurrentText("cpu")
    page.apply()
    s = QgsSettings()
    try:
        assert s.value(worker.SETTINGS_KEY) == str(tmp_path / "py")
        assert s.value(DEVICE_KEY) == "cpu"
        assert worker.candidate_pythons()[0] == (str(tmp_path / "py"), "plugin setting")
    finally:
        s.remove(worker.SETTINGS_KEY)
        s.remove(DEVICE_KEY)


@pytest.mark.tf
def test_test_button_reports_tensorflow_and_gpus(qgis_app):
    report = describe_python(f"{ROOT}/.venv/bin/python")
    assert report.startswith("Python 3.") and "TensorFlow 2." in report and "GPUs: none" in report
    assert "Failed:" in describe_python("/nonexistent/python")
    # empty: the Python the plugin finds itself, still with its version, TensorFlow and GPUs
    found = describe_python("")
    assert found.startswith("Python 3.") and "TensorFlow 2." in found or found.startswith("No Python")


def test_test_button_runs_in_the_background(qgis_app, monkeypatch):
    """The page answers at once and fills the report when the worker is done."""
    import threading

    from qgis.core import QgsApplication

    from deformation_forecast.gui import settings

    release = threading.Event()

    def slow(path):
        release.wait(10)  # the worker starting TensorFlow
        return f"Python 3.x ({path}); TensorFlow 2.x; GPUs: none"

    monkeypatch.setattr(settings, "describe_python", slow)
    page = SettingsFactory().createWidget(None)
    page.python.setText("/some/python")
    page.test_button.click()  # returns while the test still runs
    assert page.report.text().startswith("Testing") and not page.test_button.isEnabled()
    release.set()
    page.thread.wait(10000)
    for _ in range(50):
        QgsApplication.processEvents()
        if page.test_button.isEnabled():
            break
    assert page.report.text() == "Python 3.x (/some/python); TensorFlow 2.x; GPUs: none"


def test_default_device_setting_becomes_the_algorithms_default(qgis_app):
    from deformation_forecast.processing.provider import algorithm_classes

    s = QgsSettings()
    s.setValue(DEVICE_KEY, "cpu")
    try:
        with_device = 0
        for cls in algorithm_classes():
            a = cls()
            a.initAlgorithm()
            if a.parameterDefinition("DEVICE") is not None:
                assert a.parameterDefinition("DEVICE").defaultValue() == 2, a.name()
                with_device += 1
        assert with_device == 4
    finally:
        s.remove(DEVICE_KEY)


def test_settings_page_saves_the_memory_budget(qgis_app):
    from deformation_forecast.core import budget
    from deformation_forecast.processing.base import MEMORY_SETTINGS_KEY, configured_budget_mb

    s = QgsSettings()
    s.setValue(MEMORY_SETTINGS_KEY, 3072)
    try:
        page = SettingsFactory().createWidget(None)
        assert page.memory.value() == 3072  # the page shows the stored value
        page.memory.setValue(1536)
        page.apply()
        assert int(s.value(MEMORY_SETTINGS_KEY)) == 1536
        assert configured_budget_mb() == (1536, "plugin setting")
        page.memory.setValue(0)  # 0 = not set: the variable or the default
        page.apply()
        assert configured_budget_mb()[1] in ("default", budget.ENV)
    finally:
        s.remove(MEMORY_SETTINGS_KEY)
