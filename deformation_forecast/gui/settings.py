"""The plugin's page in Settings > Options: the TensorFlow Python (with a Test button that reports
TensorFlow's version and the GPUs it sees), the default device and the memory budget."""

from __future__ import annotations

import subprocess

from qgis.core import QgsProcessingException, QgsSettings
from qgis.gui import QgsOptionsPageWidget, QgsOptionsWidgetFactory
from qgis.PyQt.QtCore import Qt, QThread, pyqtSignal
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import (
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
    """Run the worker's `info` command with `path` as the worker Python (empty: the Python the
    plugin would find itself); a one-line report of the Python, TensorFlow and the GPUs. Takes
    seconds (TensorFlow starts): call it off the main thread (TestThread)."""
    origin = "this setting"
    if not path:
        found, why = worker.find_python()
        if found is None:
            return why
        path, origin = found, why.rsplit("(", 1)[-1].rstrip(")")
    worker._checked.pop(path, None)
    version = _python_version(path)
    try:
        res = worker.run_worker("info", {"device": "auto"}, python=path)
    except QgsProcessingException as e:
        return f"Python {version} ({path}, {origin}). Failed: {e}"
    gpus = ", ".join(res["gpus"]) or "none"
    return (
        f"Python {version} ({path}, {origin}); TensorFlow {res['tensorflow']}; GPUs: {gpus}; "
        f"would run on {res['device']} ({res['device_reason']})."
    )


def _python_version(path: str) -> str:
    try:
        p = subprocess.run(
            [path, "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return p.stdout.strip() or "?"


_RUNNING: set = set()


class TestThread(QThread):
    """Runs describe_python in the background; `reported` carries its line to the main thread."""

    reported = pyqtSignal(str)

    def __init__(self, path: str, parent=None):
        super().__init__(parent)
        self.path = path

    def run(self) -> None:
        try:
            text = describe_python(self.path)
        except Exception as e:  # noqa: BLE001 - a report, never an exception in a thread
            text = f"Failed: {e}"
        self.reported.emit(text)


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
        self.report.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.thread: TestThread | None = None
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
        """Test the Python in the background: QGIS stays responsive while TensorFlow starts."""
        if self.thread is not None and self.thread.isRunning():
            return
        self.test_button.setEnabled(False)
        self.report.setText("Testing… (TensorFlow takes a few seconds to start)")
        # not parented to the page: closing Options while the test runs must not destroy a running
        # thread; it is kept alive here until it ends
        thread = TestThread(self.python.text().strip())
        _RUNNING.add(thread)
        thread.finished.connect(lambda: _RUNNING.discard(thread))
        thread.reported.connect(self._reported)
        self.thread = thread
        thread.start()

    def _reported(self, text: str) -> None:
        self.report.setText(text)
        self.test_button.setEnabled(True)

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
