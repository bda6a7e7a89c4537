"""Train CNN-PhLSTM forecaster: the Processing adapter of the worker command ``train``."""

from __future__ import annotations

import math
import os
from typing import Any

from qgis.core import QgsProcessingException, QgsProcessingOutputNumber

from ..jobs import INPUT, OUTPUT_MODEL, OUTPUT_REPORT, TrainJob
from ..worker import run_job
from .base import WorkerAlgorithm
from .jobparams import add_job_parameters

# skill of the iterative backtest over the test dates: 1 - MAE(network) / MAE(baseline)
SKILLS = [
    ("SKILL_VS_PERSISTENCE", "Iterative test skill vs persistence (1 - MAE / MAE of persistence)"),
    ("SKILL_VS_TREND", "Iterative test skill vs the linear trend (1 - MAE / MAE of the trend)"),
]
METRICS = [
    ("TEST_MAE", "MAE"),
    ("TEST_RMSE", "RMSE"),
    ("TEST_SSIM", "SSIM"),
    ("TEST_MS_SSIM", "MS_SSIM"),
    ("TEST_PSNR", "PSNR"),
]


class TrainModel(WorkerAlgorithm):
    NAME = "trainmodel"
    DISPLAY = "Train CNN-PhLSTM forecaster"
    GROUP = "forecasting"
    TAGS = "cnn,lstm,phlstm,peephole,gru,deep learning,tensorflow,forecast,prediction,train"
    HELP = (
        "Trains the CNN-PhLSTM network of He et al. 2022 (section III-B of the paper: a CNN encoder, "
        "peephole LSTM cells, a decoder) to forecast a deformation stack, in a separate TensorFlow "
        "process; 'Forecast deformation' then uses the model file.<br><br>The stack is resampled to a "
        "regular interval (<b>Regular interval</b>, days; 0 = the median spacing of the acquisitions). "
        "The minimum and maximum of each date are modelled by a small GRU network (<b>Epochs of the "
        "GRU extremum compressor</b>) that scales the dates to [-1, 1], as the paper's equations 1-4 "
        "do. Windows of <b>Input length</b> dates (5 in the paper: more sees longer trends, fewer "
        "leaves more windows to learn from) predict the next date. The last <b>Test dates</b> are held "
        "out (-1: the smaller of 20 and a fifth of the dates); the dates before them are split in time "
        "order into training and validation (<b>Validation fraction</b>).<br><br><b>Architecture</b>: "
        "<i>cnn-phlstm</i> (default: a PhLSTM at every cell of a spatial bottleneck, skip connections, "
        "an increment over the last date), <i>cnn-phlstm-paper</i> (the paper's Fig. 7 as published: "
        "one vector per date), <i>cnn-lstm</i> and <i>cnn-lstm-paper</i> (standard LSTM, the paper's "
        "comparison). The loss is <b>Loss weight of MAE</b> x MAE + the rest x (1 - MS-SSIM) (0.7 in "
        "the paper's equation 11); Adam at the <b>Learning rate</b>, early stopping after "
        "<b>Early-stopping patience</b> epochs without progress, the best weights kept. <b>Epochs (at "
        "most)</b>, <b>Training tiles per epoch</b> and the <b>Training time budget</b> bound the time "
        "it takes; large rasters are cut into overlapping tiles of <b>Tile size</b> pixels. "
        "<b>Device</b>: auto uses a CUDA GPU when TensorFlow sees one, else the CPU.<br><br>After "
        "training, the network forecasts the test dates iteratively from the first of them; those "
        "errors calibrate the prediction intervals of 'Forecast deformation' (stored in the model "
        "file), and the skill against persistence and against the per-pixel line (1 - MAE / MAE of the "
        "baseline: above 0 the network is better) is an output, per horizon in the model "
        "file.<br><br>Outputs: the <b>Trained model</b> (network, compressor, input length, interval, "
        "grid, dates, metrics), the <b>Training report</b> (HTML: loss and SSIM curves, min/max "
        "trends, test metrics) and the test metrics one step ahead. Left at 'Save to temporary file', "
        "the model is saved next to the stack as <i>stack name</i>.dfmodel (the most expensive output, "
        "and resuming needs its path). Cancel stops the worker and writes no model; the checkpoint of "
        "the last finished epoch stays in <i>model file</i>.checkpoint: run again with the same "
        "parameters and <b>Resume an interrupted run from its checkpoint</b> ticked to continue, or "
        "delete that folder."
    )
    HELP_ANCHOR = "train-cnn-phlstm-forecaster-trainmodel"

    def initAlgorithm(self, config=None):  # noqa: N802
        add_job_parameters(self, TrainJob)  # every parameter is a TrainJob field (jobs.py)
        for name, label in METRICS:
            self.addOutput(QgsProcessingOutputNumber(name, f"Test {label} (one step ahead)"))
        for name, label in SKILLS:
            self.addOutput(QgsProcessingOutputNumber(name, label))

    def compute(self, parameters, context, feedback):
        job = self.job(parameters, context, feedback)
        try:
            res = run_job(job, feedback)
        except QgsProcessingException as e:
            if feedback.isCanceled():
                raise QgsProcessingException(cancel_message(job.output_model)) from e
            raise
        feedback.pushInfo(
            f"Trained on {res['device']} ({res['device_reason']}) in {res['train_seconds']:.1f} s"
        )
        return outputs(res, job.output_report)

    def job(self, parameters, context, feedback) -> TrainJob:
        """The TrainJob of the dialog's values: the checked stack, the model file (beside the stack
        when left temporary), the memory budget of this run."""
        info = self.stack_info(parameters, INPUT, context, observed=True)
        model = self.parameterAsFileOutput(parameters, OUTPUT_MODEL, context)
        if _is_temporary(parameters.get(OUTPUT_MODEL)):
            model = default_model_path(info.path)
            feedback.pushInfo(f"Trained model: {model} (next to the stack, not a temporary file)")
        report = self.parameterAsFileOutput(parameters, OUTPUT_REPORT, context)
        self.check_output_not_input(model, info.path)
        self.check_output_not_input(report, info.path)
        job = TrainJob.from_parameters(
            self,
            parameters,
            context,
            input=info.path,
            output_model=model,
            output_report=report,
            memory_budget_mb=self.memory_mb or 0.0,  # core.budget: the worker streams within it
        )
        feedback.pushInfo(
            f"Training {job.architecture} on {info.count} dates of {info.width} x {info.height} pixels"
        )
        return job


def outputs(res: dict[str, Any], report: str) -> dict[str, Any]:
    """The algorithm's outputs from the worker's result: the files, the one-step test metrics and
    the iterative backtest's skills (None where not finite)."""
    out: dict[str, Any] = {OUTPUT_MODEL: res["output_model"], OUTPUT_REPORT: res.get("output_report", report)}
    for name, key in METRICS:
        v = res["test_metrics"].get(key, math.nan)
        out[name] = float(v) if v is not None else math.nan
    backtest = res.get("backtest") or {}
    for name, _ in SKILLS:
        v = backtest.get(name.lower())
        out[name] = float(v) if v is not None and math.isfinite(v) else None
    return out


def _is_temporary(value) -> bool:
    sink = getattr(value, "sink", None)
    text = sink.staticValue() if sink is not None else value
    return value in (None, "") or "TEMPORARY_OUTPUT" in str(text)


def default_model_path(stack_path: str) -> str:
    """<stack>.dfmodel beside the stack (then <stack>_2.dfmodel... when taken); in the user's home
    when the stack's folder is not writable. A model whose run was interrupted (its checkpoint
    exists, the model does not) keeps its name, so resuming finds it."""
    stem = os.path.splitext(os.path.basename(stack_path))[0]
    folder = os.path.dirname(os.path.abspath(stack_path))
    if not os.access(folder, os.W_OK):
        folder = os.path.expanduser("~")
    for k in range(1, 1000):
        path = os.path.join(folder, f"{stem}{'' if k == 1 else f'_{k}'}.dfmodel")
        if not os.path.exists(path):
            return path
    raise QgsProcessingException(f"OUTPUT_MODEL: choose a file for the trained model; {folder} holds 999.")


def cancel_message(model: str) -> str:
    """What a person needs after a cancel: where the checkpoint is, how to resume or delete it."""
    ckpt = model + ".checkpoint"
    if os.path.isdir(ckpt):
        return (
            f"Cancelled: no model was written. The checkpoint of the last finished epoch is in {ckpt}. "
            "To continue, run again with the same parameters and the same Trained model file, with "
            "'Resume an interrupted run from its checkpoint' ticked (Advanced); to start afresh, "
            "delete that folder."
        )
    return "Cancelled before the first epoch finished: no model and no checkpoint were written."
