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
        "Starts the TensorFlow worker process (the one training and forecasting use), reports the "
        "Python it runs, TensorFlow's version and the GPUs it sees, and checks a tiny matrix "
        "product. TensorFlow never runs inside QGIS itself."
    )

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
