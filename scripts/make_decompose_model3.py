"""Write deformation_forecast/models/decompose_benchmarks.model3 (run with the Python of QGIS).

    QT_QPA_PLATFORM=offscreen python3 scripts/make_decompose_model3.py

The graphical model: ascending + descending LOS stacks -> 'Vertical and east-west from two orbits'
-> 'Compare with leveling benchmarks' on the vertical stack (true vertical, no 1 / cos(incidence)).
Kept as code so the model file can be regenerated and reviewed.
"""

from __future__ import annotations

import os
import sys

from qgis.core import (
    QgsProcessing,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)
from qgis.core import (
    QgsProcessingModelChildParameterSource as Src,
)
from qgis.PyQt.QtCore import QPointF

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_forecast_model3 import ROOT, _fill_defaults, write_model  # noqa: E402

OUT = os.path.join(ROOT, "deformation_forecast", "models", "decompose_benchmarks.model3")


def build() -> QgsProcessingModelAlgorithm:
    m = QgsProcessingModelAlgorithm(
        "Decompose two orbits and compare with leveling", "Deformation forecast", "decompose_benchmarks"
    )
    m.setHelpContent(
        {
            "ALG_DESC": "An ascending and a descending LOS stack are decomposed into vertical and "
            "east-west motion (north neglected); the vertical stack is compared with leveling "
            "benchmarks without the dv = dLOS / cos(incidence) assumption."
        }
    )
    dbl = QgsProcessingParameterNumber.Double
    params = [
        QgsProcessingParameterRasterLayer("ascending", "Ascending stack (LOS, mm)"),
        QgsProcessingParameterRasterLayer("descending", "Descending stack (LOS, mm)"),
        QgsProcessingParameterFeatureSource(
            "benchmarks", "Benchmarks (point layer or CSV)", [QgsProcessing.TypeVector]
        ),
        QgsProcessingParameterNumber("incidence_asc", "Ascending incidence (degrees)", dbl, 34.17),
        QgsProcessingParameterNumber("incidence_desc", "Descending incidence (degrees)", dbl, 41.42),
        QgsProcessingParameterNumber("heading_asc", "Ascending heading (degrees)", dbl, -10.0),
        QgsProcessingParameterNumber("heading_desc", "Descending heading (degrees)", dbl, 190.0),
        QgsProcessingParameterNumber("radius", "Radius around a benchmark (map units)", dbl, 20.0),
    ]
    for k, p in enumerate(params):
        mp = QgsProcessingModelParameter(p.name())
        mp.setPosition(QPointF(120 + 200 * k, 60))
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

    dec = child("decompose", "decompose", 300, 240)
    for param, source in (
        ("ASCENDING", "ascending"),
        ("DESCENDING", "descending"),
        ("INCIDENCE_ASC", "incidence_asc"),
        ("INCIDENCE_DESC", "incidence_desc"),
        ("HEADING_ASC", "heading_asc"),
        ("HEADING_DESC", "heading_desc"),
    ):
        dec.addParameterSources(param, [Src.fromModelParameter(source)])
    out(dec, "OUTPUT_VERTICAL", "Vertical stack")
    out(dec, "OUTPUT_EAST", "East stack")

    bm = child("benchmarks", "benchmarkcompare", 600, 400)
    bm.addParameterSources("INPUT", [Src.fromChildOutput("decompose", "OUTPUT_VERTICAL")])
    bm.addParameterSources("BENCHMARKS", [Src.fromModelParameter("benchmarks")])
    bm.addParameterSources("RADIUS", [Src.fromModelParameter("radius")])
    bm.addParameterSources("VERTICAL_INPUT", [Src.fromStaticValue(True)])
    out(bm, "OUTPUT", "Benchmark pairs")
    out(bm, "OUTPUT_SUMMARY", "Per-benchmark summary")

    for c in (dec, bm):
        _fill_defaults(c)
        m.addChildAlgorithm(c)
    return m


def main() -> int:
    return write_model(build, OUT)


if __name__ == "__main__":
    sys.exit(main())
