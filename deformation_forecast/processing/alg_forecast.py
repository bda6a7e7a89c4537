"""Forecast deformation: the Processing adapter of the worker command ``forecast``."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.validity import check_bands_limit
from ..worker import run_worker
from .base import DEVICES, WorkerAlgorithm, default_device_index


class ForecastDeformation(WorkerAlgorithm):
    NAME = "forecast"
    DISPLAY = "Forecast deformation"
    GROUP = "forecasting"
    TAGS = "cnn,lstm,phlstm,deep learning,tensorflow,forecast,prediction,future"
    HELP = (
        "Forecasts the deformation stack into the future with a model from 'Train CNN-PhLSTM "
        "forecaster'. Each predicted date joins the input window for the next one, as in He et al. "
        "2022 (Fig. 8).<br><br>"
        "<b>Deformation stack</b>: the observed stack the model should continue, on the grid it was "
        "trained on (it is resampled to the model's interval first).<br>"
        "<b>Trained model</b>: the <i>.dfmodel</i> file written by the training.<br>"
        "<b>Dates to forecast</b>: how many future dates, at the model's interval; 0 gives two "
        "years.<br>"
        "<b>Device</b>: auto uses a CUDA GPU when TensorFlow sees one, else the CPU.<br>"
        "<b>Forecast stack</b>: one band per future date (in mm, the date in each band's name); it "
        "loads styled on its last date and carries its dates for the Temporal Controller.<br>"
        "<b>Annual rate per forecast year</b> (optional): one band per forecast year in mm/yr.<br><br>"
        "A model trained on another grid, or whose interval the stack cannot provide, is refused "
        "with the reason. In qgis_process, Device is given by index (0 auto, 1 gpu, 2 cpu)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Deformation stack"))
        self.addParameter(
            # a file filter, not `extension`: a model saved under another name (model.dfm) is
            # accepted here and checked by its content when it is loaded
            QgsProcessingParameterFile(
                "MODEL",
                "Trained model",
                QgsProcessingParameterFile.File,
                fileFilter="Deformation forecast model (*.dfmodel);;All files (*)",
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "STEPS",
                "Dates to forecast (0 = two years at the model's interval)",
                QgsProcessingParameterNumber.Integer,
                defaultValue=0,
                minValue=0,
                maxValue=100000,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum("DEVICE", "Device", DEVICES, defaultValue=default_device_index())
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Forecast stack"))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "OUTPUT_RATE", "Annual rate per forecast year (mm/yr)", optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputNumber("STEPS_DONE", "Dates forecast"))
        self.addOutput(QgsProcessingOutputString("LAST_DATE", "Last forecast date"))

    def compute(self, parameters, context, feedback):
        info = self.stack_info(parameters, "INPUT", context, observed=True)
        model = self.parameterAsFile(parameters, "MODEL", context)
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        rate = self.parameterAsOutputLayer(parameters, "OUTPUT_RATE", context) or ""
        for p in (out, rate):
            self.check_output_not_input(p, info.path)
        steps = self.parameterAsInt(parameters, "STEPS", context)
        check_bands_limit(steps, "STEPS")  # refused before the worker starts (a GeoTIFF: 65535 bands)
        params = {
            "input": info.path,
            "model": model,
            "steps": steps,
            "device": DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            "output": out,
            "memory_budget_mb": self.memory_mb,  # core.budget: the worker streams within it
        }
        if rate:
            params["output_rate"] = rate
        res = run_worker("forecast", params, feedback)
        result = {"OUTPUT": res["output"], "STEPS_DONE": res["steps"], "LAST_DATE": res["dates"][-1]}
        result["OUTPUT_RATE"] = res.get("output_rate")
        return result
