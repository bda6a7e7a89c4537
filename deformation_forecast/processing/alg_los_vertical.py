"""LOS displacement to vertical displacement: dv = dLOS / cos(theta)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.los import convert_stack
from .alg_deformation_rate import IncidenceParameters, incidence_parameters, read_incidence, report_incidence
from .base import DeformationAlgorithm


class LosVertical(IncidenceParameters, DeformationAlgorithm):
    NAME = "losvertical"
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
    DISPLAY = "LOS to vertical"
    GROUP = "analysis"
    TAGS = "los,vertical,incidence,projection,cosine"
    HELP = (
        "Converts line-of-sight (LOS) displacement into vertical displacement, band by "
        "band:<br><br><b>dv = dLOS / cos(theta)</b><br><br>theta is the radar incidence angle in "
        "degrees, measured from the vertical (0 < theta < 90). <b>Assumption: the ground moves "
        "vertically only, with no horizontal motion</b>; a LOS displacement is then the projection "
        "dLOS = dv cos(theta) of the vertical one, so the vertical displacement is obtained by "
        "<i>dividing</i> by cos(theta) (multiplying, a frequent mistake, shrinks the signal instead). "
        "Where horizontal motion is significant (slopes, edges of mining bowls) use 'Vertical and "
        "east-west from two orbits' instead.<br><br><b>LOS raster or stack</b>: a deformation stack or "
        "any single raster (e.g. a velocity map); band dates and names are kept. <b>Incidence "
        "angle</b>: one angle for the whole scene (default 34.17 degrees, the paper's Sentinel-1 "
        "ascending track 128); take it from your processor's metadata, or give an <b>Incidence angle "
        "raster</b> (degrees per pixel, resampled bilinearly onto the input's grid when on another "
        "one), which varies by several degrees across a Sentinel-1 swath. Angles outside (0, 90) are "
        "refused."
    )
    HELP_ANCHOR = "los-to-vertical-losvertical"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "LOS raster or stack"))
        incidence_parameters(self)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Vertical displacement"))
        self.addOutput(
            QgsProcessingOutputNumber(self.MASKED_VALUES, "Values read as nodata (sentinels, masks, spikes)")
        )

    def compute(self, parameters, context, feedback):
        info = self.stack_info(parameters, self.INPUT, context, require_dates=False)
        theta, inc_path = read_incidence(self, parameters, context, feedback)
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        self.check_output_not_input(out, info.path, inc_path or "")
        run = self.run_context(feedback)
        res = convert_stack(info.path, out, incidence=theta, incidence_path=inc_path, run=run)
        report_incidence(feedback, theta, inc_path, res["resampled"])
        feedback.pushInfo(
            f"{info.count} band(s) converted; 1 / cos(theta) from {1 / _cos(res['incidence_min']):.4f} "
            f"to {1 / _cos(res['incidence_max']):.4f}."
        )
        return {self.OUTPUT: out}  # MASKED_VALUES: filled by processing.base


def _cos(deg: float) -> float:
    import math

    return math.cos(math.radians(deg))
