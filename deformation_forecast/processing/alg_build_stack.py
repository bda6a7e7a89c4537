"""Build deformation stack: single-date rasters -> one multi-band stack with dates."""

from __future__ import annotations

import os
import tempfile

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..core.build import build_stack, resample_stack_file, sources_with_dates
from ..core.dates import parse_date
from .base import DeformationAlgorithm

UNIT_CHOICES = ["mm", "m", "cm"]
FACTORS = {"mm": 1.0, "m": 1000.0, "cm": 10.0}


class BuildStack(DeformationAlgorithm):
    NAME = "buildstack"
    DISPLAY = "Build deformation stack"
    GROUP = "stack"
    TAGS = "stack,time series,sbas,cumulative,bands"
    LAYERS = "LAYERS"
    DATES = "DATES"
    UNITS = "UNITS"
    INTERVAL_DAYS = "INTERVAL_DAYS"
    OUTPUT = "OUTPUT"
    ANIMATED_OUTPUTS = (OUTPUT,)
    HELP = (
        "Makes a deformation stack from single-date rasters of cumulative displacement: one multi-band "
        "GeoTIFF, one band per acquisition in time order, the date in each band's description, values "
        "in mm, NaN as nodata. The other algorithms of the plugin read such a "
        "stack.<br><br><b>Single-date displacement rasters</b>: one raster per acquisition. Their "
        "dates come from the file names (cum_20170903.tif, 2017-09-03.tif), or type them in "
        "<b>Dates</b>, comma-separated, in the order of the layers. Rasters on another grid or CRS are "
        "warped onto the first one (bilinear), and the log says so.<br><b>Units of the input "
        "values</b>: mm, m or cm; the stack is always in mm.<br><b>Resample to a regular interval</b> "
        "(days): the forecasting network needs dates at a regular interval. Give one here (12 for "
        "Sentinel-1) to resample the acquisitions linearly in time, gaps in a pixel's series filled "
        "linearly between its valid dates; leave 0 to keep the real dates (training resamples by "
        "itself).<br><b>Add one layer per date to the Temporal Controller</b>: when the stack is "
        "loaded, one layer per date goes into a group at the bottom of the layer tree, ready to "
        "animate.<br><br>Loaded in QGIS, the stack is coloured on its last date with a diverging ramp "
        "centred on zero (mm)."
    )
    HELP_ANCHOR = "build-deformation-stack-buildstack"
    SHORT = "Makes one deformation stack (one dated band per acquisition, in mm) from single-date displacement rasters."

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                self.LAYERS, "Single-date displacement rasters", QgsProcessing.TypeRaster
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.DATES, "Dates (comma-separated, in layer order; empty = from names)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(self.UNITS, "Units of the input values", UNIT_CHOICES, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.INTERVAL_DAYS,
                "Resample to a regular interval (days, 0 = keep the real dates)",
                QgsProcessingParameterNumber.Integer,
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.ANIMATE,
                "Add one layer per date to the Temporal Controller (when loaded)",
                defaultValue=False,
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Deformation stack"))

    def compute(self, parameters, context, feedback):
        paths = self._paths(parameters, context)
        sources = sources_with_dates(paths, self._dates(parameters, context))
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        self.check_output_not_input(out, *paths)
        units = UNIT_CHOICES[self.parameterAsEnum(parameters, self.UNITS, context)]
        interval = self.parameterAsInt(parameters, self.INTERVAL_DAYS, context)
        feedback.pushInfo(
            f"{len(sources)} acquisitions from {sources[0].date} to {sources[-1].date}; "
            f"grid of {sources[0].path}"
        )
        run = self.run_context(feedback)
        if interval > 0:
            fd, tmp = tempfile.mkstemp(suffix=".tif", dir=os.path.dirname(os.path.abspath(out)))
            os.close(fd)
            try:
                build_stack(sources, tmp, FACTORS[units], run.stage(0.0, 0.5))
                n = resample_stack_file(tmp, out, interval, run.stage(0.5, 1.0))
                feedback.pushInfo(f"Resampled to {n} dates every {interval} days (linear in time).")
            finally:
                for p in (tmp, tmp + ".aux.xml"):
                    if os.path.exists(p):
                        os.unlink(p)
        else:
            build_stack(sources, out, FACTORS[units], run)
        self._check_plausible(out, units, feedback)
        return {self.OUTPUT: out}

    def _paths(self, parameters, context) -> list[str]:
        """The files of the LAYERS (GDAL rasters)."""
        layers = self.parameterAsLayerList(parameters, self.LAYERS, context)
        if not layers:
            raise QgsProcessingException(f"{self.LAYERS}: no rasters given; select one raster per date.")
        paths = []
        for lyr in layers:
            if lyr.providerType() != "gdal":
                raise QgsProcessingException(f"{self.LAYERS}: {lyr.name()!r} is not a GDAL raster file.")
            paths.append(lyr.source().split("|")[0])
        return paths

    def _dates(self, parameters, context) -> list | None:
        """The DATES given (in layer order), None when empty."""
        text = self.parameterAsString(parameters, self.DATES, context).strip()
        if not text:
            return None
        dates = []
        for tok in text.replace(";", ",").split(","):
            d = parse_date(tok.strip())
            if d is None:
                raise QgsProcessingException(
                    f"{self.DATES}: {tok.strip()!r} is not a date (YYYYMMDD or YYYY-MM-DD)."
                )
            dates.append(d)
        return dates

    @staticmethod
    def _check_plausible(out: str, units: str, feedback) -> None:
        """Warn when every value lies within +-1 mm while UNITS says mm: more likely metres."""
        import numpy as np

        from ..core.stack import read_decimated

        if units != "mm":
            return
        biggest = 0.0
        for band in (0, -1):
            arr = read_decimated(out, band)
            finite = arr[np.isfinite(arr)]
            if finite.size:
                biggest = max(biggest, float(np.abs(finite).max()))
        if 0 < biggest <= 1.0:
            feedback.pushWarning(
                f"Warning: every value lies within +-{biggest:.3g} mm; if the rasters are in metres, "
                f"set {BuildStack.UNITS} to m (x 1000) and build the stack again."
            )
