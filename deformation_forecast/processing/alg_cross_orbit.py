"""Cross-orbit consistency (paper §V-A-2, Fig. 15b)."""

from __future__ import annotations

import os

import numpy as np
from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..core import crossorbit as cx
from ..core.los import check_incidence
from ..core.stack import require_crs
from .base import DeformationAlgorithm
from .tables import plot_destination, save_plot, table_sink, write_table

MODES = ["Cumulative displacement at paired dates", "Vertical velocity over the paired dates"]
COLUMNS = [
    ("date_a", "date"),
    ("date_b", "date"),
    ("gap_days", "int"),
    ("n", "int"),
    ("r", "float"),
    ("slope", "float"),
    ("intercept", "float"),
    ("rmse", "float"),
    ("bias", "float"),
    ("max_abs", "float"),
    ("mean_a", "float"),
    ("mean_b", "float"),
]


class CrossOrbit(DeformationAlgorithm):
    NAME = "crossorbit"
    DISPLAY = "Cross-orbit consistency"
    GROUP = "validation"
    TAGS = "ascending,descending,orbit,track,validation,correlation,vertical"
    INPUT, INCIDENCE, INCIDENCE_RASTER = "INPUT", "INCIDENCE", "INCIDENCE_RASTER"
    INPUT_B, INCIDENCE_B, INCIDENCE_RASTER_B = "INPUT_B", "INCIDENCE_B", "INCIDENCE_RASTER_B"
    MODE, MAX_DAYS, OUTPUT, OUTPUT_PLOT = "MODE", "MAX_DAYS", "OUTPUT", "OUTPUT_PLOT"
    R, SLOPE, INTERCEPT, RMSE, BIAS, N, PAIRS = "R", "SLOPE", "INTERCEPT", "RMSE", "BIAS", "N", "PAIRS"
    HELP = (
        "Checks two LOS stacks of the same area against each other, e.g. ascending and descending: "
        "where both see the same vertical motion, the processing is consistent. The paper does this in "
        "section V-A-2 (Fig. 15b) and finds r = 0.68.<br><br><b>Stack A</b> and <b>Stack B</b> (LOS, "
        "mm) are both turned into vertical, dv = dLOS / cos(incidence), each with its own <b>Incidence "
        "angle</b> (degrees from the vertical) or <b>Incidence raster</b> (one angle per pixel; "
        "overrides the number). Each date of A is paired with the nearest date of B within <b>Max days "
        "between paired acquisitions</b> (about the revisit interval: 6 or 12 days for Sentinel-1); B "
        "is resampled onto A's grid where the grids differ (bilinear), and both series are set to zero "
        "at the first pair.<br><b>Compare</b>: <i>Cumulative displacement at paired dates</i> takes "
        "every coherent pixel at every later pair as one sample; <i>Vertical velocity over the paired "
        "dates</i> takes each pixel's least-squares vertical rate (mm/yr) in each stack (less noise, "
        "fewer samples).<br><br>Outputs: Pearson r, the regression line B = slope x A + intercept, the "
        "RMSE and bias of B - A (mm, or mm/yr for velocities), as numbers and as the <b>Cross-orbit "
        "statistics</b> table (one row per pair and an overall row with empty dates), and an optional "
        "<b>Scatter plot</b> with the 1:1 and regression lines."
    )
    HELP_ANCHOR = "cross-orbit-consistency-crossorbit"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Stack A (e.g. ascending, LOS mm)"))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.INCIDENCE, "Incidence angle of A (degrees)", QgsProcessingParameterNumber.Double, 34.17
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                self.INCIDENCE_RASTER, "Incidence raster of A (overrides)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(self.INPUT_B, "Stack B (e.g. descending, LOS mm)")
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.INCIDENCE_B, "Incidence angle of B (degrees)", QgsProcessingParameterNumber.Double, 41.42
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                self.INCIDENCE_RASTER_B, "Incidence raster of B (overrides)", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterEnum(self.MODE, "Compare", MODES, defaultValue=0))
        p = QgsProcessingParameterNumber(
            self.MAX_DAYS, "Max days between paired acquisitions", QgsProcessingParameterNumber.Double, 6.0
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self.addParameter(table_sink(self.OUTPUT, "Cross-orbit statistics"))
        self.addParameter(plot_destination(self.OUTPUT_PLOT, "Scatter plot"))
        for key, label in (
            (self.R, "Pearson r"),
            (self.SLOPE, "Regression slope (B on A)"),
            (self.INTERCEPT, "Regression intercept"),
            (self.RMSE, "RMSE of B - A"),
            (self.BIAS, "Mean of B - A"),
            (self.N, "Samples compared"),
            (self.PAIRS, "Date pairs"),
        ):
            self.addOutput(QgsProcessingOutputNumber(key, label))
        self.addOutput(
            QgsProcessingOutputNumber(self.MASKED_VALUES, "Values read as nodata (sentinels, masks, spikes)")
        )

    def _incidence(self, parameters, context, value_name, raster_name):
        if self.parameterAsRasterLayer(parameters, raster_name, context) is not None:
            # a path: the comparison checks it and reads it on the grid window by window
            return self.raster_path(parameters, raster_name, context)
        return check_incidence(self.parameterAsDouble(parameters, value_name, context), value_name)

    def compute(self, parameters, context, feedback):
        info_a = self.stack_info(parameters, self.INPUT, context, observed=True)
        info_b = self.stack_info(parameters, self.INPUT_B, context, observed=True)
        if os.path.abspath(info_a.path) == os.path.abspath(info_b.path):
            feedback.reportError(
                f"{self.INPUT} and {self.INPUT_B} are the same file; the result is trivial.", fatalError=False
            )
        require_crs(info_a)
        require_crs(info_b)
        plot_path = self.parameterAsFileOutput(parameters, self.OUTPUT_PLOT, context)
        self.check_output_not_input(plot_path, info_a.path, info_b.path)
        inc_a = self._incidence(parameters, context, self.INCIDENCE, self.INCIDENCE_RASTER)
        inc_b = self._incidence(parameters, context, self.INCIDENCE_B, self.INCIDENCE_RASTER_B)
        a, b = cx.Side(info_a.path, info_a, inc_a), cx.Side(info_b.path, info_b, inc_b)
        options = cx.CrossOrbitOptions(
            max_days=self.parameterAsDouble(parameters, self.MAX_DAYS, context),
            mode=cx.MODES[self.parameterAsEnum(parameters, self.MODE, context)],
        )
        res = cx.cross_orbit(a, b, options, self.run_context(feedback).stage(0.0, 0.9))
        ov = res.overall
        unit = "mm/yr" if options.mode == "velocity" else "mm"
        feedback.pushInfo(
            f"{len(res.pairs)} date pair(s)"
            + (f", zero at {res.reference[0]} / {res.reference[1]}" if res.reference else "")
            + f"; {ov['n']} samples: r = {ov['r']:.3f}, B = {ov['slope']:.3f} A {ov['intercept']:+.2f}, "
            f"RMSE {ov['rmse']:.2f} {unit}, bias {ov['bias']:.2f} {unit}"
        )
        results = {
            self.OUTPUT: write_table(self, parameters, self.OUTPUT, context, COLUMNS, res.rows),
            self.OUTPUT_PLOT: None,
            self.R: ov["r"] if np.isfinite(ov["r"]) else None,
            self.SLOPE: ov["slope"] if np.isfinite(ov["slope"]) else None,
            self.INTERCEPT: ov["intercept"] if np.isfinite(ov["intercept"]) else None,
            self.RMSE: ov["rmse"],
            self.BIAS: ov["bias"],
            self.N: ov["n"],
            self.PAIRS: len(res.pairs),
        }
        if plot_path:
            save_plot(cx.plot_cross_orbit, res, plot_path, os.path.basename(a.path), os.path.basename(b.path))
            results[self.OUTPUT_PLOT] = plot_path
        feedback.setProgress(100)
        return results
