"""Write deformation_forecast/models/stack_train_forecast.model3 (run with the Python of QGIS).

    QT_QPA_PLATFORM=offscreen python3 scripts/make_forecast_model3.py

The graphical model: single-date rasters -> 'Build deformation stack' -> 'Train CNN-PhLSTM
forecaster' -> 'Forecast deformation'. Kept as code so the model file can be regenerated and reviewed.
"""

from __future__ import annotations

import os
import sys

from qgis.core import (
    QgsApplication,
    QgsProcessing,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterEnum,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
)
from qgis.core import (
    QgsProcessingModelChildParameterSource as Src,
)
from qgis.PyQt.QtCore import QPointF

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "deformation_forecast", "models", "stack_train_forecast.model3")


# the dialog shows the inputs in this order (the model's parameterOrder): the rasters to stack first,
# then training, then the forecast. Without it QGIS sorts the inputs by name; these names sort with
# the rasters first too
ORDER = (
    "input_rasters",
    "test_dates",
    "max_epochs",
    "steps",
    "method",
    "prediction_confidence",
    "worker_device",
)
HELP_ANCHOR = "stack-train-and-forecast-cnn-phlstm-graphical-model"


def _homepage() -> str:
    import configparser

    meta = configparser.ConfigParser(interpolation=None)
    meta.read(os.path.join(ROOT, "deformation_forecast", "metadata.txt"), encoding="utf-8")
    return meta.get("general", "homepage", fallback="").rstrip("/")


def _inputs() -> list:
    ints = QgsProcessingParameterNumber.Integer
    return [
        QgsProcessingParameterMultipleLayers(
            "input_rasters", "Single-date displacement rasters", QgsProcessing.TypeRaster
        ),
        QgsProcessingParameterNumber(
            "test_dates",
            "Test dates (the last ones; -1 = the smaller of 20 and a fifth of the dates)",
            ints,
            -1,
            False,
            -1,
            1000,
        ),
        QgsProcessingParameterNumber("max_epochs", "Epochs (at most)", ints, 30, False, 1, 10000),
        QgsProcessingParameterNumber(
            "steps", "Dates to forecast (0 = two years at the model's interval)", ints, 0, False, 0, 100000
        ),
        QgsProcessingParameterEnum(
            "method",
            "Forecasting method",
            [
                "Network (the trained model)",
                "Best on the model's iterative backtest (network, persistence or trend)",
                "Persistence (the last observation held)",
                "Linear trend per pixel (the model's trend window)",
            ],
            False,
            0,
        ),
        QgsProcessingParameterNumber(
            "prediction_confidence",
            "Confidence of the prediction interval",
            QgsProcessingParameterNumber.Double,
            0.9,
            False,
            0.5,
            0.99,
        ),
        QgsProcessingParameterEnum("worker_device", "Device", ["auto", "gpu", "cpu"], False, 0),
    ]


HELP = {
    "ALG_DESC": "Forecasts deformation from single-date displacement rasters in one run: the rasters "
    "are stacked, a CNN-PhLSTM forecaster is trained on the stack, and the stack is forecast into the "
    "future, optionally with a prediction interval. Run the three algorithms one by one to set what "
    "this model leaves at its defaults.",
    "SHORT_DESCRIPTION": "Stack single-date rasters, train a CNN-PhLSTM forecaster on them and "
    "forecast the next dates.",
    "input_rasters": "One raster of cumulative displacement per acquisition, the date in each file "
    "name (cum_20170903.tif); they are stacked in mm on the first raster's grid.",
    "test_dates": "The last dates, held out: they score the model and calibrate the prediction "
    "interval (-1 takes the smaller of 20 and a fifth of the dates).",
    "max_epochs": "Training stops earlier when the validation loss stops improving.",
    "steps": "How many future dates, at the model's interval; 0 gives two years.",
    "method": "Best falls back on persistence or the per-pixel trend where they beat the network on "
    "the test dates.",
    "prediction_confidence": "The probability that the interval holds a future observation (only used "
    "when the lower and upper bound outputs are requested).",
    "worker_device": "auto uses a CUDA GPU when TensorFlow sees one, else the CPU (from qgis_process: "
    "0 auto, 1 gpu, 2 cpu).",
}


def build() -> QgsProcessingModelAlgorithm:
    m = QgsProcessingModelAlgorithm(
        "Stack, train and forecast (CNN-PhLSTM)", "Deformation forecast", "stack_train_forecast"
    )
    m.setHelpContent({**HELP, "HELP_URL": f"{_homepage()}#{HELP_ANCHOR}"})
    for k, p in enumerate(_inputs()):
        mp = QgsProcessingModelParameter(p.name())
        mp.setPosition(QPointF(120 + 220 * k, 60))
        m.addModelParameter(p, mp)
    m.setParameterOrder(list(ORDER))

    def child(cid: str, alg: str, x: float, y: float) -> QgsProcessingModelChildAlgorithm:
        c = QgsProcessingModelChildAlgorithm(f"deformation_forecast:{alg}")
        c.setChildId(cid)
        c.setDescription(cid.replace("_", " "))
        c.setPosition(QPointF(x, y))
        return c

    def out(c, name: str, desc: str, mandatory: bool = True) -> None:
        o = QgsProcessingModelOutput(desc)
        o.setMandatory(mandatory)
        o.setChildId(c.childId())
        o.setChildOutputName(name)
        o.setDescription(desc)
        o.setPosition(c.position() + QPointF(160, 60))
        outs = c.modelOutputs()
        outs[desc] = o
        c.setModelOutputs(outs)

    build_c = child("build_stack", "buildstack", 200, 220)
    build_c.addParameterSources("LAYERS", [Src.fromModelParameter("input_rasters")])
    build_c.addParameterSources("UNITS", [Src.fromStaticValue(0)])
    build_c.addParameterSources("INTERVAL_DAYS", [Src.fromStaticValue(0)])
    out(build_c, "OUTPUT", "Deformation stack")

    train_c = child("train", "trainmodel", 420, 360)
    train_c.addParameterSources("INPUT", [Src.fromChildOutput("build_stack", "OUTPUT")])
    train_c.addParameterSources("EPOCHS", [Src.fromModelParameter("max_epochs")])
    train_c.addParameterSources("TEST_COUNT", [Src.fromModelParameter("test_dates")])
    train_c.addParameterSources("DEVICE", [Src.fromModelParameter("worker_device")])
    train_c.setDependencies([])
    out(train_c, "OUTPUT_MODEL", "Trained model")
    out(train_c, "OUTPUT_REPORT", "Training report")

    fc_c = child("forecast", "forecast", 640, 500)
    fc_c.addParameterSources("INPUT", [Src.fromChildOutput("build_stack", "OUTPUT")])
    fc_c.addParameterSources("MODEL", [Src.fromChildOutput("train", "OUTPUT_MODEL")])
    fc_c.addParameterSources("STEPS", [Src.fromModelParameter("steps")])
    fc_c.addParameterSources("DEVICE", [Src.fromModelParameter("worker_device")])
    fc_c.addParameterSources("METHOD", [Src.fromModelParameter("method")])
    fc_c.addParameterSources("CONFIDENCE", [Src.fromModelParameter("prediction_confidence")])
    out(fc_c, "OUTPUT", "Forecast stack")
    out(fc_c, "OUTPUT_LOWER", "Lower bound of the prediction interval", mandatory=False)
    out(fc_c, "OUTPUT_UPPER", "Upper bound of the prediction interval", mandatory=False)

    for c in (build_c, train_c, fc_c):
        _fill_defaults(c)
        m.addChildAlgorithm(c)
    return m


def _fill_defaults(c: QgsProcessingModelChildAlgorithm) -> None:
    """Every parameter the model does not set gets the algorithm's default as a static value."""
    alg = QgsApplication.processingRegistry().algorithmById(c.algorithmId())
    if alg is None:
        raise RuntimeError(f"{c.algorithmId()} is not registered")
    for d in alg.parameterDefinitions():
        if d.isDestination() or d.name() in c.parameterSources():
            continue
        if d.defaultValue() is not None:
            c.addParameterSources(d.name(), [Src.fromStaticValue(d.defaultValue())])


def write_model(build_model, out: str) -> int:
    """Start QGIS with the checkout's provider, build the model with `build_model()`, validate it
    and write it to `out` (shared with scripts/make_decompose_model3.py)."""
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, "/usr/share/qgis/python/plugins")
    sys.path.insert(0, ROOT)
    import deformation_forecast

    plugin = deformation_forecast.classFactory(None)
    plugin.initProcessing()
    m = build_model()
    ok, errors = m.validate()
    if not ok:
        print("\n".join(errors))
        return 1
    m.toFile(out)
    print(out)
    plugin.unload()
    return 0


def main() -> int:
    return write_model(build, OUT)


if __name__ == "__main__":
    sys.exit(main())
