"""Forecast deformation: the Processing adapter of the worker command ``forecast``."""

from __future__ import annotations

from qgis.core import QgsProcessingOutputNumber, QgsProcessingOutputString

from ..core.validity import check_bands_limit
from ..jobs import INPUT, METHODS, OUTPUT, OUTPUT_LOWER, OUTPUT_RATE, OUTPUT_UPPER, STEPS, ForecastJob
from ..worker import run_job
from .base import WorkerAlgorithm
from .jobparams import add_job_parameters


class ForecastDeformation(WorkerAlgorithm):
    NAME = "forecast"
    DISPLAY = "Forecast deformation"
    GROUP = "forecasting"
    TAGS = "cnn,lstm,phlstm,deep learning,tensorflow,forecast,prediction,future,interval,uncertainty"
    STEPS_DONE = "STEPS_DONE"
    LAST_DATE = "LAST_DATE"
    METHOD_USED = "METHOD_USED"
    HELP = (
        "Forecasts the deformation stack into the future with a model from 'Train CNN-PhLSTM "
        "forecaster'. Each predicted date joins the input window for the next one, as in He et al. "
        "2022 (Fig. 8).<br><br><b>Deformation stack</b>: the observed stack the model should continue, "
        "on the grid it was trained on (it is resampled to the model's interval first).<br><b>Trained "
        "model</b>: the <i>.dfmodel</i> file written by the training.<br><b>Dates to forecast</b>: how "
        "many future dates, at the model's interval; 0 gives two years.<br><b>Device</b>: auto uses a "
        "CUDA GPU when TensorFlow sees one, else the CPU.<br><b>Forecast stack</b>: one band per "
        "future date (in mm, the date in each band's name); it loads styled on its last date and "
        "carries its dates for the Temporal Controller.<br><b>Annual rate per forecast year</b> "
        "(optional): one band per forecast year in mm/yr.<br><br>A model trained on another grid, or "
        "whose interval the stack cannot provide, is refused with the reason.<p><b>Lower bound</b> and "
        "<b>Upper bound of the prediction interval</b> (optional, mm): stacks on the forecast's dates "
        "that hold the future observations with the probability set by <b>Confidence of the prediction "
        "interval</b> (default 0.9). They are calibrated on your own series when the model is trained: "
        "each method forecasts the held-out test dates iteratively from several of them in turn "
        "(rolling origins: every test date for persistence and the line, up to 5 for the network), "
        "and the errors at each horizon, divided by each pixel's own spread, give split-conformal "
        "quantiles per horizon, separately for pixels that move less or more than their noise by then. "
        "The spread combines the pixel's dispersion (the robust spread, MAD, of its one-step changes "
        "over its last 40 dates) with how far the forecast moves it by that horizon (for persistence, "
        "which does not move: the pixel's recent rate times the horizon; the weight of that motion "
        "fitted on the backtest). The band is the "
        "forecast +/- quantile x the spread, so stable ground gets a narrow band and noisy or "
        "fast-moving ground a wide one, and it widens with the horizon. Assumption: scaled that way, "
        "the errors of the test dates are representative of the future ones (the ground keeps "
        "behaving as in the test dates); the coverage is over all pixels and dates, not guaranteed at "
        "every single pixel. Beyond the number of test dates the band keeps growing with each pixel's "
        "forecast motion and with the growth the quantiles showed over the test dates (a power of "
        "the horizon; said in the log; not calibrated). A model trained by an older plugin has no "
        "calibration: the bounds are then "
        "refused (train again), the forecast itself works. The time-series dock shades the band when "
        "both bound layers are loaded.</p><p><b>Forecasting method</b>: the trained model's test dates "
        "are also forecast iteratively by persistence and by the per-pixel line; when the network does "
        "not beat the better of them there, the log says so with the numbers. <i>Best on the model's "
        "iterative backtest</i> forecasts with whichever was best there; <i>Persistence</i> or "
        "<i>Linear trend per pixel</i> use that simple method (the intervals calibrated on its own "
        "backtest errors). The method that ran is an output of the algorithm.</p>"
    )
    HELP_ANCHOR = "forecast-deformation-forecast"

    def initAlgorithm(self, config=None):  # noqa: N802
        add_job_parameters(self, ForecastJob)  # every parameter is a ForecastJob field (jobs.py)
        self.addOutput(QgsProcessingOutputNumber(self.STEPS_DONE, "Dates forecast"))
        self.addOutput(QgsProcessingOutputString(self.LAST_DATE, "Last forecast date"))
        self.addOutput(
            QgsProcessingOutputString(self.METHOD_USED, "Method used (network, persistence, trend)")
        )

    def compute(self, parameters, context, feedback):
        info = self.stack_info(parameters, INPUT, context, observed=True)
        job = ForecastJob.from_parameters(
            self,
            parameters,
            context,
            input=info.path,
            memory_budget_mb=self.memory_mb or 0.0,  # core.budget: the worker streams within it
        )
        for p in (job.output, job.output_rate, job.output_lower, job.output_upper):
            self.check_output_not_input(p, info.path)
        check_bands_limit(job.steps, STEPS)  # refused before the worker starts (a GeoTIFF: 65535 bands)
        res = run_job(job, feedback)
        return {
            OUTPUT: res["output"],
            self.STEPS_DONE: res["steps"],
            self.LAST_DATE: res["dates"][-1],
            OUTPUT_RATE: res.get("output_rate"),
            self.METHOD_USED: res.get("method", METHODS[0]),
            OUTPUT_LOWER: res.get("output_lower"),
            OUTPUT_UPPER: res.get("output_upper"),
        }
