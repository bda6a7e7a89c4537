"""Check the TensorFlow worker: which Python, which TensorFlow, which devices."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
)

from ..worker import find_python, run_worker
from .base import DEVICES, WorkerAlgorithm, default_device_index


class CheckWorker(WorkerAlgorithm):
    NAME = "checkworker"
    DISPLAY = "Check TensorFlow worker"
    GROUP = "forecasting"
    TAGS = "tensorflow,gpu,cuda"
    HELP = (
        "Starts the TensorFlow worker process (the one training and forecasting use) and reports the "
        "Python it runs, TensorFlow's version and the GPUs it sees, after checking a tiny matrix "
        "product. Run it first when training or forecasting does not start.<br><br><b>Device</b>: auto "
        "uses a CUDA GPU when TensorFlow sees one, else the CPU; gpu stops with the reason when "
        "TensorFlow sees none; cpu never uses one.<br><br>TensorFlow never runs inside QGIS itself. "
        "Which Python runs it is set in "
        "Settings > Options > Deformation forecast (its Test button does the same check)."
    )
    HELP_ANCHOR = "check-tensorflow-worker-checkworker"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterEnum("DEVICE", "Device", DEVICES, defaultValue=default_device_index())
        )
        self.addOutput(QgsProcessingOutputString("PYTHON", "Worker Python"))
        self.addOutput(QgsProcessingOutputString("TENSORFLOW", "TensorFlow version"))
        self.addOutput(QgsProcessingOutputString("DEVICE_USED", "Device used"))
        self.addOutput(QgsProcessingOutputNumber("GPU_COUNT", "GPUs visible"))
        self.addOutput(QgsProcessingOutputNumber("CHECKSUM", "Matrix product checksum (394)"))

    def compute(self, parameters, context, feedback):
        device = DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)]
        python, why = find_python()
        feedback.pushInfo(why)
        res = run_worker("info", {"device": device}, feedback)
        feedback.pushInfo(f"TensorFlow {res['tensorflow']} on {res['device']}: {res['device_reason']}")
        return {
            "PYTHON": python,
            "TENSORFLOW": res["tensorflow"],
            "DEVICE_USED": res["device"],
            "GPU_COUNT": len(res["gpus"]),
            "CHECKSUM": res["matmul_sum"],
        }
