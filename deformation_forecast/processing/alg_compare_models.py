"""Compare forecasting models (Table III): baselines in this process, networks in the worker."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from qgis.core import (
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
)

from ..core.comparison import ComparisonResult, compare
from ..core.errors import Cancelled
from ..core.metrics import METRICS
from ..core.run import Run
from ..jobs import (
    COMPARE_MODEL_NAMES,
    COMPARE_MODELS,
    EXTENT,
    INPUT,
    OUTPUT_ERRORS,
    OUTPUT_REPORT,
    OUTPUT_TABLE,
    CompareJob,
    TrainJob,
)
from ..worker import run_job
from . import result_hooks
from .base import DeformationAlgorithm
from .jobparams import add_job_parameters
from .tables import write_table

NUMBER_METRICS = tuple(m for m in METRICS if m != "MSE")  # core.metrics: the one list and order
TABLE_COLUMNS = [
    ("model", "str"),
    ("mode", "str"),
    *((m, "float") for m in METRICS),
    ("SKILL", "float"),
    ("train_seconds", "float"),
    ("predict_seconds", "float"),
    ("device", "str"),
]


def key(model: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", model.upper())


class CompareModels(DeformationAlgorithm):
    NAME = "comparemodels"
    # outputs
    BEST_MODEL = "BEST_MODEL"
    BEST_MODEL_ITERATIVE = "BEST_MODEL_ITERATIVE"
    DATA_RANGE_USED = "DATA_RANGE_USED"
    TEST_DATES = "TEST_DATES"
    DISPLAY = "Compare forecasting models"
    GROUP = "forecasting"
    TAGS = "table iii,svr,mlp,cnn-lstm,cnn-phlstm,baseline,persistence,trend,mae,ssim,psnr"
    HELP = (
        "<p>Scores forecasting models on the same test dates of one deformation stack, as the paper's "
        "Table III does for SVR, MLP, CNN-LSTM and CNN-PhLSTM: check here whether a network beats "
        "simple methods on your data before you trust it.</p><p><b>Models</b>: persistence (the last "
        "date held), a per-pixel linear trend, a per-pixel line plus an annual sinusoid (seasonal "
        "motion, fitted over the last two years), per-pixel SVR and MLP (scikit-learn, the pixel's "
        "previous values as features), and the CNN-LSTM and CNN-PhLSTM networks (trained in the "
        "TensorFlow worker). Simple baselines are often hard to beat.</p><p><b>Input length (dates per "
        "window)</b>: how many past dates each model sees to predict the next (5 in the paper). "
        "<b>Test dates (the last ones)</b>: the dates held out for scoring (20 in the paper); the "
        "dates before them are split in time order into training and validation (<b>Validation "
        "fraction</b>, advanced). <b>Epochs (at most)</b> and the <b>Training time budget per "
        "network</b> bound the training of the networks; <b>Device</b> auto uses a CUDA GPU when "
        "TensorFlow sees one.</p><p>The stack is first resampled to a regular interval (<b>Regular "
        "interval</b>, days; 0 = the median spacing of the acquisitions). <b>Linear trend window</b> "
        "(dates; 0 = chosen on the validation dates as the networks' own trend: the one of 1, 5, 10, "
        "20 and 40 dates that forecasts them best). The SVR is fitted on <b>SVR training samples</b> "
        "random (pixel, date) samples and predicts every pixel; the MLP on <b>MLP training "
        "samples</b>.</p><p><b>Compare on this area only</b>: trains and scores every model on an area "
        "of the stack, e.g. around the subsidence bowls. The networks are scored on every pixel of the "
        "test dates, which the worker must hold: a stack too large for the memory budget is refused up "
        "front, with an area, a number of test dates or a budget that would do.</p><p>Every model is "
        "scored <i>one step ahead</i> (each test date predicted from the observed dates before it: the "
        "paper's protocol) and <i>iteratively</i> over the test dates (predictions fed back as inputs: "
        "how a forecast is used). Outputs: the <b>Comparison table</b> (model, mode, MAE, MSE, RMSE in "
        "mm, SSIM, MS-SSIM, PSNR, R², skill = 1 - MAE / MAE of persistence in the same mode, seconds, "
        "device), the best model one step ahead and iteratively (least MAE), the <b>Comparison "
        "report</b> (HTML: the scatter plots of the paper's Fig. 19, the min/max trends of Fig. 18 and "
        "error maps) and a folder of <b>Absolute error stacks</b>, one per model. SSIM and PSNR use "
        "the range of the observed test values unless <b>Data range for SSIM/PSNR</b> (mm) fixes it. "
        "In the desktop the model comparison dock charts the table.</p>"
    )
    HELP_ANCHOR = "compare-forecasting-models-comparemodels"
    SHORT = "Scores persistence, trends, SVR, MLP and the networks on the same test dates of a stack, as the paper's Table III."

    def initAlgorithm(self, config=None):  # noqa: N802
        add_job_parameters(self, CompareJob)  # every parameter is a CompareJob field (jobs.py)
        self.addOutput(QgsProcessingOutputString(self.BEST_MODEL, "Best model (one-step MAE)"))
        self.addOutput(
            QgsProcessingOutputString(
                self.BEST_MODEL_ITERATIVE, "Best model (iterative MAE, as forecast is used)"
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.DATA_RANGE_USED, "Data range used (mm)"))
        self.addOutput(QgsProcessingOutputNumber(self.TEST_DATES, "Test dates"))
        self.addOutput(  # filled by processing.base (core.validity.masked_count)
            QgsProcessingOutputNumber(self.MASKED_VALUES, "Values read as nodata (sentinels, masks, spikes)")
        )
        for m, label in zip(COMPARE_MODELS, COMPARE_MODEL_NAMES, strict=True):
            for k in NUMBER_METRICS:
                self.addOutput(QgsProcessingOutputNumber(f"{k}_{key(m)}", f"{label}: one-step {k}"))

    def compute(self, parameters, context, feedback):
        from qgis.core import QgsProcessingUtils

        info = self.stack_info(parameters, INPUT, context, observed=True)
        job = CompareJob.from_parameters(
            self,
            parameters,
            context,
            input=info.path,
            extent=self._extent(parameters, context),
            memory_budget_mb=self.memory_mb or 0.0,  # core.budget: the networks' worker streams within it
        )
        self.check_output_not_input(job.output_report, info.path)

        def train(tjob: TrainJob, stage: Run) -> dict[str, Any]:
            return _train_network(tjob, stage, feedback)

        result = compare(job, train, self.run_context(feedback), QgsProcessingUtils.tempFolder())
        return self._outputs(result, job, parameters, context, feedback)

    def _extent(self, parameters, context) -> tuple[float, float, float, float] | None:
        """EXTENT in the stack's CRS (xmin, ymin, xmax, ymax); None when not given."""
        if parameters.get(EXTENT) in (None, ""):
            return None
        crs = self.parameterAsRasterLayer(parameters, INPUT, context).crs()
        ext = self.parameterAsExtent(parameters, EXTENT, context, crs)
        return (ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum())

    def _outputs(
        self, result: ComparisonResult, job: CompareJob, parameters, context, feedback
    ) -> dict[str, Any]:
        """The table (and the dock's hook), the best models, each model's one-step metrics, the files."""
        dest = write_table(self, parameters, OUTPUT_TABLE, context, TABLE_COLUMNS, result.rows)
        # the desktop's comparison dock (if loaded) shows the table once QGIS has loaded it
        result_hooks.attach(context, self.NAME, str(dest), feedback)
        out: dict[str, Any] = {
            OUTPUT_TABLE: dest,
            self.DATA_RANGE_USED: result.data_range,
            self.TEST_DATES: result.test_count,
            self.BEST_MODEL: result.best("one-step"),
            self.BEST_MODEL_ITERATIVE: result.best("iterative"),
        }
        for r in result.rows:
            if r["mode"] == "one-step":
                for m in NUMBER_METRICS:
                    v = float(r[m])
                    out[f"{m}_{key(r['model'])}"] = v if np.isfinite(v) else None
        if job.output_errors:
            out[OUTPUT_ERRORS] = job.output_errors
        if job.output_report:
            out[OUTPUT_REPORT] = job.output_report
        feedback.setProgress(100)
        return out


class _StageFeedback:
    """The algorithm's feedback for one network's worker run, its 0-100 % mapped onto `stage`."""

    def __init__(self, feedback: QgsProcessingFeedback, stage: Run):
        self._feedback, self._stage = feedback, stage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._feedback, name)

    def setProgress(self, value: float) -> None:  # noqa: N802
        self._stage.progress(float(value) / 100.0)


def _train_network(job: TrainJob, stage: Run, feedback: QgsProcessingFeedback) -> dict[str, Any]:
    """One network of the comparison trained in the worker (run_job); a cancel is the run's."""
    try:
        return run_job(job, _StageFeedback(feedback, stage))  # type: ignore[arg-type]
    except QgsProcessingException as e:
        if feedback.isCanceled():
            raise Cancelled() from e
        raise
