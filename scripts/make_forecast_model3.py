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


def build() -> QgsProcessingModelAlgorithm:
    m = QgsProcessingModelAlgorithm(
        "Stack, train and forecast (CNN-PhLSTM)", "Deformation forecast", "stack_train_forecast"
    )
    m.setHelpContent(
        {
            "ALG_DESC": "Single-date displacement rasters (dates in the file names) are stacked, a "
            "CNN-PhLSTM forecaster is trained on the stack, and the stack is forecast STEPS dates "
            "ahead (0 = two years)."
        }
    )
    ints = QgsProcessingParameterNumber.Integer
    params = [
        QgsProcessingParameterMultipleLayers(
            "layers", "Single-date displacement rasters", QgsProcessing.TypeRaster
        ),
        QgsProcessingParameterNumber("epochs", "Training epochs", ints, 30, False, 1, 10000),
        QgsProcessingParameterNumber("test_count", "Test dates", ints, 20, False, 0, 1000),
        QgsProcessingParameterNumber("steps", "Dates to forecast (0 = two years)", ints, 0, False, 0, 100000),
        QgsProcessingParameterEnum("device", "Device", ["auto", "gpu", "cpu"], False, 0),
    ]
    for k, p in enumerate(params):
        mp = QgsProcessingModelParameter(p.name())
        mp.setPosition(QPointF(120 + 220 * k, 60))
        m.addModelParameter(p, mp)

    def child(cid: str, alg: str, x: float, y: float) -> QgsProcessingModelChildAlgorithm:
        c = QgsProcessingModelChildAlgorithm(f"deformation_forecast:{alg}")
        c.setChildId(cid)
        c.setDescription(cid.replace("_", " "))
        c.setPosition(QPointF(x, y))
        return c

    def out(c, name: str, desc: str) -> None:
        o = QgsProcessingModelOutput(desc)
        o.setChildId(c.childId())
        o.setChildOutputName(name)
        o.setDescription(desc)
        o.setPosition(c.position() + QPointF(160, 60))
        outs = c.modelOutputs()
        outs[desc] = o
        c.setModelOutputs(outs)

    build_c = child("build_stack", "buildstack", 200, 220)
    build_c.addParameterSources("LAYERS", [Src.fromModelParameter("layers")])
    build_c.addParameterSources("UNITS", [Src.fromStaticValue(0)])
    build_c.addParameterSources("INTERVAL_DAYS", [Src.fromStaticValue(0)])
    out(build_c, "OUTPUT", "Deformation stack")

    train_c = child("train", "trainmodel", 420, 360)
    train_c.addParameterSources("INPUT", [Src.fromChildOutput("build_stack", "OUTPUT")])
    train_c.addParameterSources("EPOCHS", [Src.fromModelParameter("epochs")])
    train_c.addParameterSources("TEST_COUNT", [Src.fromModelParameter("test_count")])
    train_c.addParameterSources("DEVICE", [Src.fromModelParameter("device")])
    train_c.setDependencies([])
    out(train_c, "OUTPUT_MODEL", "Trained model")
    out(train_c, "OUTPUT_REPORT", "Training report")

    fc_c = child("forecast", "forecast", 640, 500)
    fc_c.addParameterSources("INPUT", [Src.fromChildOutput("build_stack", "OUTPUT")])
    fc_c.addParameterSources("MODEL", [Src.fromChildOutput("train", "OUTPUT_MODEL")])
    fc_c.addParameterSources("STEPS", [Src.fromModelParameter("steps")])
    fc_c.addParameterSources("DEVICE", [Src.fromModelParameter("device")])
    out(fc_c, "OUTPUT", "Forecast stack")

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
