"""Check the TensorFlow worker: which Python, which TensorFlow, which devices."""

from __future__ import annotations

from qgis.core import QgsProcessingOutputNumber, QgsProcessingOutputString

from ..jobs import InfoJob
from ..worker import find_python, run_job
from .base import WorkerAlgorithm
from .jobparams import add_job_parameters


class CheckWorker(WorkerAlgorithm):
    NAME = "checkworker"
    # outputs
    PYTHON = "PYTHON"
    TENSORFLOW = "TENSORFLOW"
    DEVICE_USED = "DEVICE_USED"
    GPU_COUNT = "GPU_COUNT"
    CHECKSUM = "CHECKSUM"
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
        add_job_parameters(self, InfoJob)  # DEVICE (jobs.py)
        self.addOutput(QgsProcessingOutputString(self.PYTHON, "Worker Python"))
        self.addOutput(QgsProcessingOutputString(self.TENSORFLOW, "TensorFlow version"))
        self.addOutput(QgsProcessingOutputString(self.DEVICE_USED, "Device used"))
        self.addOutput(QgsProcessingOutputNumber(self.GPU_COUNT, "GPUs visible"))
        self.addOutput(QgsProcessingOutputNumber(self.CHECKSUM, "Matrix product checksum (394)"))

    def compute(self, parameters, context, feedback):
        job = InfoJob.from_parameters(self, parameters, context)
        python, why = find_python()
        feedback.pushInfo(why)
        res = run_job(job, feedback)
        feedback.pushInfo(f"TensorFlow {res['tensorflow']} on {res['device']}: {res['device_reason']}")
        return {
            self.PYTHON: python,
            self.TENSORFLOW: res["tensorflow"],
            self.DEVICE_USED: res["device"],
            self.GPU_COUNT: len(res["gpus"]),
            self.CHECKSUM: res["matmul_sum"],
        }
