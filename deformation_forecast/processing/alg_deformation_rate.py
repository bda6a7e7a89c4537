"""Deformation rate maps: linear velocity and its standard error, or one band per calendar year."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.los import DEFAULT_INCIDENCE
from ..core.rates import MODES, deformation_rate
from .base import DeformationAlgorithm

MODE_LABELS = [
    "Linear velocity over the whole series (+ standard error)",
    "Annual mean rate, one band per year",
]


class IncidenceParameters:
    """The names of the incidence parameters deformationrate and losvertical share."""

    INCIDENCE = "INCIDENCE"
    INCIDENCE_RASTER = "INCIDENCE_RASTER"


def incidence_parameters(alg: DeformationAlgorithm, advanced: bool = False) -> None:
    """INCIDENCE (constant, degrees) and INCIDENCE_RASTER (optional), shared with losvertical."""
    inc = QgsProcessingParameterNumber(
        IncidenceParameters.INCIDENCE,
        "Incidence angle (degrees from the vertical)",
        QgsProcessingParameterNumber.Double,
        defaultValue=DEFAULT_INCIDENCE,
        minValue=0.0,
        maxValue=90.0,
    )
    inc.setHelp("Used when no incidence raster is given; must lie strictly between 0 and 90 degrees.")
    ras = QgsProcessingParameterRasterLayer(
        IncidenceParameters.INCIDENCE_RASTER, "Incidence angle raster (degrees)", optional=True
    )
    ras.setHelp(
        "Per-pixel incidence angle in degrees; replaces INCIDENCE. A raster on another grid is "
        "resampled (bilinear) onto the stack's grid."
    )
    for p in (inc, ras):
        if advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        alg.addParameter(p)


def read_incidence(alg: DeformationAlgorithm, parameters, context, feedback) -> tuple[float, str | None]:
    names = IncidenceParameters
    theta = alg.parameterAsDouble(parameters, names.INCIDENCE, context)
    layer = alg.parameterAsRasterLayer(parameters, names.INCIDENCE_RASTER, context)
    path = alg.raster_path(parameters, names.INCIDENCE_RASTER, context) if layer is not None else None
    return theta, path


def report_incidence(feedback, theta: float, path: str | None, resampled: bool) -> None:
    if path:
        feedback.pushInfo(f"Incidence angle from raster {path}.")
        if resampled:
            feedback.pushInfo(
                "The incidence raster is not on the stack's grid: it was resampled (bilinear, "
                "rasterio.warp.reproject) onto the stack's grid."
            )
    else:
        feedback.pushInfo(f"Constant incidence angle {theta:g} degrees.")


class DeformationRate(IncidenceParameters, DeformationAlgorithm):
    NAME = "deformationrate"
    INPUT = "INPUT"
    MODE = "MODE"
    VERTICAL = "VERTICAL"
    OUTPUT = "OUTPUT"
    MIN_RATE = "MIN_RATE"
    MAX_RATE = "MAX_RATE"
    RASTER_UNITS = {OUTPUT: "mm/yr"}
    DISPLAY = "Deformation rate"
    GROUP = "analysis"
    TAGS = "velocity,rate,annual,subsidence,vertical,least squares"
    HELP = (
        "Rate maps of a deformation stack: how fast each pixel moves, in mm/yr, as the paper's Fig. 9 "
        "and 12 map it over Jinchuan. Each pixel uses its valid dates "
        "only.<br><br><b>Rate</b>:<br><i>Linear velocity</i> (default): per pixel, the least-squares "
        "line through the cumulative displacement against the real acquisition dates. Band 1 is the "
        "velocity in mm/yr (the map loads styled on it, subsidence red), band 2 its standard error; a "
        "pixel with fewer than 3 valid dates is empty. Choose it for one map of the whole "
        "period.<br><i>Annual mean rate</i>: one band per calendar year the series touches, the "
        "displacement between 1 January of the year and 1 January of the next, divided by the time "
        "between them (interpolated in time, never extrapolated). The first and last years, only "
        "partly covered, give the mean rate over the covered part; the log says how much of each year "
        "is covered. Choose it to see the motion speed up or slow down year by year.<br><br><b>Convert "
        "LOS to vertical</b>: divides by the cosine of the incidence angle, assuming no horizontal "
        "motion (see 'LOS to vertical'). <b>Incidence angle</b> is one angle in degrees from the "
        "vertical (34.17 is the paper's Sentinel-1 track); an <b>Incidence angle raster</b> gives one "
        "per pixel instead and is resampled onto the stack's grid if needed."
    )
    HELP_ANCHOR = "deformation-rate-deformationrate"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Deformation stack"))
        self.addParameter(QgsProcessingParameterEnum(self.MODE, "Rate", MODE_LABELS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterBoolean(self.VERTICAL, "Convert LOS to vertical", defaultValue=False)
        )
        incidence_parameters(self)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Rate raster"))
        self.addOutput(QgsProcessingOutputNumber(self.MIN_RATE, "Lowest rate (units/yr)"))
        self.addOutput(QgsProcessingOutputNumber(self.MAX_RATE, "Highest rate (units/yr)"))
        self.addOutput(
            QgsProcessingOutputNumber(self.MASKED_VALUES, "Values read as nodata (sentinels, masks, spikes)")
        )

    def compute(self, parameters, context, feedback):
        info = self.stack_info(parameters, self.INPUT, context)
        mode = MODES[self.parameterAsEnum(parameters, self.MODE, context)]
        vertical = self.parameterAsBool(parameters, self.VERTICAL, context)
        theta, inc_path = read_incidence(self, parameters, context, feedback)
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        self.check_output_not_input(out, info.path, inc_path or "")
        feedback.pushInfo(
            f"{info.count} dates from {info.dates[0].isoformat()} to {info.dates[-1].isoformat()}, "
            f"{info.width} x {info.height} pixels; mode {mode}{', vertical' if vertical else ''}."
        )
        res = deformation_rate(
            info.path,
            out,
            mode=mode,
            vertical=vertical,
            incidence=theta,
            incidence_path=inc_path if vertical else None,
            run=self.run_context(feedback),
        )
        if vertical:
            report_incidence(feedback, theta, inc_path, res["resampled"])
        elif inc_path:
            feedback.pushWarning(f"{self.INCIDENCE_RASTER} is ignored because {self.VERTICAL} is off.")
        for year, cov in res["years"]:
            if cov < 0.999:
                feedback.pushInfo(f"Year {year} is covered for {cov:.0%} of its length by the series.")
        feedback.pushInfo(f"Bands: {', '.join(res['labels'])}; range {res['min']:.4g} to {res['max']:.4g}.")
        return {
            self.OUTPUT: out,
            self.MIN_RATE: res["min"],
            self.MAX_RATE: res["max"],
        }
