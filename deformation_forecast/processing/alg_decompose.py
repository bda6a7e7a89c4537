"""Vertical and east-west motion from an ascending and a descending stack (issue 19)."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core import decompose as dc
from ..core.los import DEFAULT_INCIDENCE, check_incidence
from ..core.stack import require_crs
from .base import DeformationAlgorithm

DATE_CHOICES = [
    "Ascending dates inside the common period",
    "Union of both, resampled to a regular interval",
]
DEFAULT_INCIDENCE_DESC = 41.42  # the paper's descending track (as crossorbit)


class Decompose(DeformationAlgorithm):
    NAME = "decompose"
    DISPLAY = "Vertical and east-west from two orbits"
    GROUP = "analysis"
    TAGS = "ascending,descending,decomposition,vertical,east,horizontal,orbit,track,2d,los"
    ASCENDING, DESCENDING = "ASCENDING", "DESCENDING"
    INCIDENCE_ASC, INCIDENCE_DESC = "INCIDENCE_ASC", "INCIDENCE_DESC"
    HEADING_ASC, HEADING_DESC = "HEADING_ASC", "HEADING_DESC"
    RASTER = "_RASTER"  # suffix of the optional per-pixel versions of the four angles
    DATES, INTERVAL_DAYS, MAX_CONDITION, ANIMATE = "DATES", "INTERVAL_DAYS", "MAX_CONDITION", "ANIMATE"
    OUTPUT_VERTICAL, OUTPUT_EAST, OUTPUT_RATES = "OUTPUT_VERTICAL", "OUTPUT_EAST", "OUTPUT_RATES"
    OUTPUT_STDERR = "OUTPUT_STDERR"
    DATE_COUNT, MAX_GAP_DAYS, CONDITION_NUMBER = "DATE_COUNT", "MAX_GAP_DAYS", "CONDITION_NUMBER"
    STDERR_FACTOR_UP, STDERR_FACTOR_EAST = "STDERR_FACTOR_UP", "STDERR_FACTOR_EAST"
    VALID_PIXELS = "VALID_PIXELS"
    RASTER_UNITS = {OUTPUT_RATES: "mm/yr", OUTPUT_STDERR: "mm/mm"}
    ANIMATED_OUTPUTS = (OUTPUT_VERTICAL, OUTPUT_EAST)
    HELP = (
        "Separates vertical (up) and east-west motion from an ascending and a descending LOS stack. "
        "Use it instead of 'LOS to vertical' where the ground also moves sideways, as on the flanks of "
        "every subsidence bowl (they move toward its centre).<br><br><b>Ascending stack</b> and "
        "<b>Descending stack</b> (LOS, mm, positive toward the satellite). For each, the <b>incidence "
        "angle</b> (degrees from the vertical) and the <b>heading</b> of the flight direction (degrees "
        "clockwise from north; Sentinel-1 about -10 ascending and 190 descending), as numbers or, in "
        "the advanced settings, as rasters (resampled onto the ascending grid). The descending stack "
        "is aligned to the ascending grid (bilinear) when the grids differ.<br>Both orbits are "
        "near-polar, so they hardly see north-south motion: it is neglected, and up (U) and east (E) "
        "are solved per pixel and date from the two LOS values, d_LOS = U cos(theta) + sin(theta) (N "
        "sin(h) - E cos(h)) for a right-looking radar (theta the incidence, h the heading). Geometries "
        "too alike to separate them are refused: <b>Max condition number of the geometry</b> "
        "(advanced) is the limit.<br><b>Common dates</b>: the orbits are acquired on different days. "
        "<i>Ascending dates inside the common period</i> keeps the ascending dates that both orbits "
        "cover; <i>Union of both, resampled to a regular interval</i> uses a date every <b>Interval of "
        "the regular dates</b> days (12 suits Sentinel-1). Each series is interpolated linearly in "
        "time onto them (never extrapolated) and both are set to zero at the first common date. The "
        "largest distance of a common date to a real acquisition (days) is an output; each date's is "
        "in the log and in the output's metadata.<br><br>Outputs: the <b>Vertical (up)</b> and "
        "<b>East-west (east)</b> stacks (mm, dated bands; they feed profiles, rates and benchmarks, "
        "which then need no incidence), optionally the vertical and east velocities with their "
        "standard errors (mm/yr, least squares over the common dates), and optionally the per-pixel "
        "standard errors of U and E per mm of LOS noise (they vary with incidence and heading rasters; "
        "their medians are outputs too: multiply them by the LOS noise in mm)."
    )
    HELP_ANCHOR = "vertical-and-east-west-from-two-orbits-decompose"

    def _angle(self, name: str, label: str, default: float) -> None:
        self.addParameter(
            QgsProcessingParameterNumber(name, label, QgsProcessingParameterNumber.Double, default)
        )
        ras = QgsProcessingParameterRasterLayer(
            name + self.RASTER, f"{label}, raster (overrides the number)", optional=True
        )
        ras.setFlags(ras.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(ras)

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.ASCENDING, "Ascending stack (LOS, mm)"))
        self._angle(self.INCIDENCE_ASC, "Ascending incidence angle (degrees)", DEFAULT_INCIDENCE)
        self._angle(self.HEADING_ASC, "Ascending heading (degrees from north)", dc.S1_HEADING_ASC)
        self.addParameter(QgsProcessingParameterRasterLayer(self.DESCENDING, "Descending stack (LOS, mm)"))
        self._angle(self.INCIDENCE_DESC, "Descending incidence angle (degrees)", DEFAULT_INCIDENCE_DESC)
        self._angle(self.HEADING_DESC, "Descending heading (degrees from north)", dc.S1_HEADING_DESC)
        self.addParameter(
            QgsProcessingParameterEnum(self.DATES, "Common dates", DATE_CHOICES, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.INTERVAL_DAYS,
                "Interval of the regular dates (days)",
                QgsProcessingParameterNumber.Integer,
                defaultValue=12,
                minValue=1,
            )
        )
        cond = QgsProcessingParameterNumber(
            self.MAX_CONDITION,
            "Max condition number of the geometry",
            QgsProcessingParameterNumber.Double,
            defaultValue=dc.DEFAULT_MAX_CONDITION,
            minValue=1.0,
        )
        cond.setFlags(cond.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(cond)
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.ANIMATE, "Add one layer per date to the Temporal Controller (when loaded)", False
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT_VERTICAL, "Vertical (up) stack")
        )
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_EAST, "East-west (east) stack"))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_RATES,
                "Vertical and east velocities + standard errors",
                optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_STDERR,
                "Standard errors of U and E per mm of LOS noise (per pixel)",
                optional=True,
                createByDefault=False,
            )
        )
        for key, label in (
            (self.DATE_COUNT, "Common dates"),
            (self.MAX_GAP_DAYS, "Largest distance of a common date to an acquisition (days)"),
            (self.CONDITION_NUMBER, "Condition number of the geometry"),
            (self.STDERR_FACTOR_UP, "Standard error of U per mm of LOS noise"),
            (self.STDERR_FACTOR_EAST, "Standard error of E per mm of LOS noise"),
            (self.VALID_PIXELS, "Pixels decomposed at the last date"),
        ):
            self.addOutput(QgsProcessingOutputNumber(key, label))
        self.addOutput(
            QgsProcessingOutputNumber(self.MASKED_VALUES, "Values read as nodata (sentinels, masks, spikes)")
        )

    def _geometry(self, parameters, context, name: str, incidence: bool) -> float | str:
        """A number, or the path of the raster given in `name` + _RASTER."""
        if self.parameterAsRasterLayer(parameters, name + self.RASTER, context) is not None:
            return self.raster_path(parameters, name + self.RASTER, context)
        value = self.parameterAsDouble(parameters, name, context)
        return check_incidence(value, name) if incidence else value

    def compute(self, parameters, context, feedback):
        orbits = []
        for stack, inc, head, label in (
            (self.ASCENDING, self.INCIDENCE_ASC, self.HEADING_ASC, "ascending"),
            (self.DESCENDING, self.INCIDENCE_DESC, self.HEADING_DESC, "descending"),
        ):
            info = self.stack_info(parameters, stack, context, observed=True)
            require_crs(info)
            orbits.append(
                dc.Orbit(
                    info.path,
                    info,
                    self._geometry(parameters, context, inc, True),
                    self._geometry(parameters, context, head, False),
                    label=f"{label} {os.path.basename(info.path)}",
                )
            )
        outs = dc.Outputs(
            self.parameterAsOutputLayer(parameters, self.OUTPUT_VERTICAL, context),
            self.parameterAsOutputLayer(parameters, self.OUTPUT_EAST, context),
            self.parameterAsOutputLayer(parameters, self.OUTPUT_RATES, context) or None,
            self.parameterAsOutputLayer(parameters, self.OUTPUT_STDERR, context) or None,
        )
        for out in (outs.vertical, outs.east, outs.rates or "", outs.stderr or ""):
            self.check_output_not_input(out, *(o.path for o in orbits))
        mode = dc.DATE_MODES[self.parameterAsEnum(parameters, self.DATES, context)]
        res = dc.decompose(
            orbits,
            outs,
            dates_mode=mode,
            interval_days=self.parameterAsInt(parameters, self.INTERVAL_DAYS, context),
            max_condition=self.parameterAsDouble(parameters, self.MAX_CONDITION, context),
            run=self.run_context(feedback),
        )
        self._report(feedback, orbits, res)
        return {
            self.OUTPUT_VERTICAL: outs.vertical,
            self.OUTPUT_EAST: outs.east,
            self.OUTPUT_RATES: outs.rates,
            self.OUTPUT_STDERR: outs.stderr,
            self.DATE_COUNT: len(res.dates),
            self.MAX_GAP_DAYS: res.max_gap,
            self.CONDITION_NUMBER: res.condition,
            self.STDERR_FACTOR_UP: res.se_factor_up,
            self.STDERR_FACTOR_EAST: res.se_factor_east,
            self.VALID_PIXELS: res.valid_pixels,
        }

    @staticmethod
    def _report(feedback, orbits, res) -> None:
        feedback.pushInfo(
            f"{len(res.dates)} common dates {res.dates[0]}..{res.dates[-1]}, zero at {res.dates[0]}; "
            "north motion neglected (not resolvable from two near-polar orbits)."
        )
        for o, gaps, resampled in zip(orbits, res.gaps, res.resampled, strict=True):
            far = [f"{d} ({int(g)} d)" for d, g in zip(res.dates, gaps, strict=True) if g > 0]
            feedback.pushInfo(
                f"{o.name}: {len(far)} date(s) interpolated, largest gap {int(gaps.max())} days"
                + (f": {', '.join(far[:20])}{' ...' if len(far) > 20 else ''}" if far else "")
                + ("; aligned to the ascending grid (bilinear)" if resampled else "")
            )
        feedback.pushInfo(
            f"Condition number {res.condition:.3g}; per mm of LOS noise, U has a standard error of "
            f"{res.se_factor_up:.3g} mm and E of {res.se_factor_east:.3g} mm. "
            f"{res.valid_pixels} pixel(s) decomposed at the last date."
        )
