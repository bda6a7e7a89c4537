"""The plugin's page in Settings > Options: the TensorFlow Python (with a Test button that reports
TensorFlow's version and the GPUs it sees), the default device and the memory budget."""

from __future__ import annotations

from qgis.core import QgsProcessingException, QgsSettings
from qgis.gui import QgsOptionsPageWidget, QgsOptionsWidgetFactory
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
)

from .. import worker
from ..core import budget
from ..processing.base import DEVICES, ICON_PATH, MEMORY_SETTINGS_KEY, memory_setting_mb

DEVICE_KEY = worker.DEVICE_SETTINGS_KEY


def describe_python(path: str) -> str:
    """Run the worker's `info` command with `path` as the worker Python; a one-line report."""
    worker._checked.pop(path, None)
    try:
        res = worker.run_worker("info", {"device": "auto"}, python=path)
    except QgsProcessingException as e:
        return f"Failed: {e}"
    gpus = ", ".join(res["gpus"]) or "none"
    return f"TensorFlow {res['tensorflow']}; GPUs: {gpus}; would run on {res['device']} ({res['device_reason']})."


class SettingsPage(QgsOptionsPageWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        settings = QgsSettings()
        self.python = QLineEdit(settings.value(worker.SETTINGS_KEY, "", type=str))
        self.python.setPlaceholderText("empty: DEFORMATION_FORECAST_PYTHON, then the project's .venv")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.test_button = QPushButton("Test")
        self.test_button.clicked.connect(self._test)
        row = QHBoxLayout()
        for w in (self.python, browse, self.test_button):
            row.addWidget(w)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(settings.value(DEVICE_KEY, "auto", type=str))
        self.memory = QSpinBox()
        self.memory.setRange(0, 1024 * 1024)
        self.memory.setSingleStep(256)
        self.memory.setSuffix(" MB")
        self.memory.setSpecialValueText(f"not set (${budget.ENV}, else {budget.DEFAULT_MB} MB)")
        self.memory.setValue(int(memory_setting_mb()))
        self.memory.setToolTip(
            "The most memory one algorithm may hold for pixels: every algorithm streams the stack "
            f"in windows that fit it (at least {budget.MIN_MB} MB). 0 = the environment variable "
            f"{budget.ENV}, else {budget.DEFAULT_MB} MB. Training and forecasting get it too."
        )
        self.report = QLabel("")
        self.report.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("TensorFlow Python", row)
        form.addRow("Default device", self.device)
        form.addRow("Memory budget (MB)", self.memory)
        form.addRow("", self.report)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Python with TensorFlow", self.python.text())
        if path:
            self.python.setText(path)

    def _test(self) -> None:
        path = self.python.text().strip()
        if not path:
            found, why = worker.find_python()
            self.report.setText(why)
            return
        self.report.setText("Testing…")
        QApplication.processEvents()
        self.report.setText(describe_python(path))

    def apply(self) -> None:
        settings = QgsSettings()
        settings.setValue(worker.SETTINGS_KEY, self.python.text().strip())
        settings.setValue(DEVICE_KEY, self.device.currentText())
        settings.setValue(MEMORY_SETTINGS_KEY, int(self.memory.value()))
        worker._checked.clear()


class SettingsFactory(QgsOptionsWidgetFactory):
    def __init__(self):
        super().__init__("Deformation forecast", QIcon(ICON_PATH))

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def createWidget(self, parent):  # noqa: N802
        return SettingsPage(parent)
