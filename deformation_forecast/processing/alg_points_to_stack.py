"""Point time series to stack: a point layer or CSV (date fields, DePSI, StaMPS) -> raster stack."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
)

from ..core import validity
from ..core.points import FORMATS, METHODS, UNITS, points_to_stack, read_points_csv
from .base import DeformationAlgorithm
from .distance import metres_parameter
from .point_layers import FORMAT_LABELS, UNIT_LABELS, crs_string, layer_series

METHOD_LABELS = ["Nearest point", "Inverse distance weighting (power 2)"]


class PointsToStack(DeformationAlgorithm):
    NAME = "pointstostack"
    DROPPED_COUNT = "DROPPED_COUNT"
    DISPLAY = "Point time series to stack"
    GROUP = "stack"
    TAGS = "points,ps,psi,sbas,stamps,depsi,csv,grid,interpolation,idw"
    HELP = (
        "Grids a point time series (PS or SBAS points, one displacement series each) into a "
        "deformation stack: one band per date (the date in the band description), mm, NaN where no "
        "point lies within the radius.<br><br><b>Input</b>: a <b>point layer with one field per "
        "date</b>, or a <b>CSV file</b>, with one numeric field per date named DYYYYMMDD, YYYYMMDD or "
        "d_YYYYMMDD (any case), e.g. a DePSI export; or a StaMPS Visualizer export (columns "
        "export_res_1..N, first row = reference point and dates); <b>Format</b> auto-detects which. "
        "CSV coordinates come from columns x/y, lon/lat, longitude/latitude, easting/northing or "
        "pnt_lon/pnt_lat; <b>CRS of the CSV coordinates</b> gives their CRS (default EPSG:4326 for "
        "lon/lat-like columns). <b>Units of the displacements</b>: auto reads DePSI exports "
        "(pnt_lat/pnt_lon columns) as metres and everything else as mm; the output is always mm. "
        "Points with no value at any date (incoherent) are skipped.<br><br><b>Grid</b>: <b>Pixel "
        "size</b> and <b>Search radius</b> are metres on the ground, whatever the <b>Output CRS</b> "
        "(default: the input CRS when projected, else the WGS 84 UTM zone of the points' centre); "
        "choose a pixel size near the spacing of the points. The grid covers the points, the outermost "
        "ones on cell centres; on a geographic output CRS the cells are square on the ground (local "
        "scale). <b>Gridding method</b>: <i>Nearest point</i> gives each cell the series of the "
        "nearest point within the radius; <i>Inverse distance weighting</i> the 1/d&sup2;-weighted "
        "mean of all points within the radius (0 = twice the pixel size)."
    )
    HELP_ANCHOR = "point-time-series-to-stack-pointstostack"

    INPUT = "INPUT"
    INPUT_CSV = "INPUT_CSV"
    FORMAT = "FORMAT"
    CSV_CRS = "CSV_CRS"
    UNITS = "UNITS"
    PIXEL_SIZE = "PIXEL_SIZE"
    OUTPUT_CRS = "OUTPUT_CRS"
    METHOD = "METHOD"
    RADIUS = "RADIUS"
    OUTPUT = "OUTPUT"
    POINT_COUNT = "POINT_COUNT"
    MERGED_COUNT = "MERGED_COUNT"
    NULL_GEOMETRY_COUNT = "NULL_GEOMETRY_COUNT"
    SKIPPED_COUNT = "SKIPPED_COUNT"
    DATE_COUNT = "DATE_COUNT"
    FILLED_CELLS = "FILLED_CELLS"
    OUTPUT_CRS_USED = "OUTPUT_CRS_USED"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT,
                "Point layer with one field per date",
                [QgsProcessing.TypeVectorPoint],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.INPUT_CSV,
                "or CSV file (date fields, DePSI or StaMPS export)",
                QgsProcessingParameterFile.File,
                optional=True,
                fileFilter="CSV files (*.csv *.txt);;All files (*.*)",
            )
        )
        self.addParameter(QgsProcessingParameterEnum(self.FORMAT, "Format", FORMAT_LABELS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterCrs(
                self.CSV_CRS, "CRS of the CSV coordinates (empty: EPSG:4326 for lon/lat)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(self.UNITS, "Units of the displacements", UNIT_LABELS, defaultValue=0)
        )
        self.addParameter(
            metres_parameter(
                self.PIXEL_SIZE,
                "Pixel size (metres on the ground)",
                None,
                "Cell size of the grid in metres, whatever the output CRS (on a geographic output "
                "CRS the cells are square on the ground, converted with the local scale).",
            )
        )
        self.addParameter(
            QgsProcessingParameterCrs(
                self.OUTPUT_CRS, "Output CRS (empty: input CRS if projected, else UTM zone)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(self.METHOD, "Gridding method", METHOD_LABELS, defaultValue=0)
        )
        radius = metres_parameter(
            self.RADIUS,
            "Search radius (metres on the ground, 0 = 2 x pixel size)",
            0.0,
            "Points farther than this from a cell centre do not fill it (metres, whatever the CRS).",
        )
        radius.setFlags(radius.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(radius)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Deformation stack"))
        self.addOutput(QgsProcessingOutputNumber(self.POINT_COUNT, "Points that entered the grid"))
        self.addOutput(
            QgsProcessingOutputNumber(self.MERGED_COUNT, "Points dropped: sharing a cell (METHOD nearest)")
        )
        self.addOutput(
            QgsProcessingOutputNumber(self.NULL_GEOMETRY_COUNT, "Points dropped: features without geometry")
        )
        self.addOutput(QgsProcessingOutputNumber(self.SKIPPED_COUNT, "Points skipped (no value at any date)"))
        self.addOutput(
            QgsProcessingOutputNumber(self.DROPPED_COUNT, "Points dropped in all (reasons in the log)")
        )
        self.addOutput(QgsProcessingOutputNumber(self.MASKED_VALUES, "Values read as nodata (sentinels)"))
        self.addOutput(QgsProcessingOutputNumber(self.DATE_COUNT, "Dates (bands)"))
        self.addOutput(QgsProcessingOutputNumber(self.FILLED_CELLS, "Cells with a value"))
        self.addOutput(QgsProcessingOutputString(self.OUTPUT_CRS_USED, "Output CRS"))

    def _sources(self, parameters, context):
        """(point source, CSV path): exactly one of INPUT and INPUT_CSV."""
        source = self.parameterAsSource(parameters, self.INPUT, context)
        csv_path = self.parameterAsFile(parameters, self.INPUT_CSV, context)
        if source is not None and csv_path:
            raise QgsProcessingException(
                f"Give either {self.INPUT} (a point layer) or {self.INPUT_CSV} (a CSV file), not both."
            )
        if source is None and not csv_path:
            raise QgsProcessingException(
                f"No points given: choose a point layer ({self.INPUT}) or a CSV file ({self.INPUT_CSV})."
            )
        return source, csv_path

    def _series(self, source, csv_path: str, out: str, parameters, context, feedback, run):
        """The point series of `source` (INPUT) or `csv_path` (INPUT_CSV), its notes logged."""
        fmt = FORMATS[self.parameterAsEnum(parameters, self.FORMAT, context)]
        units = UNITS[self.parameterAsEnum(parameters, self.UNITS, context)]
        if csv_path:
            self.check_output_not_input(out, csv_path)
            csv_crs = crs_string(self.parameterAsCrs(parameters, self.CSV_CRS, context))
            series = read_points_csv(csv_path, fmt=fmt, units=units, crs=csv_crs)
        else:
            series = layer_series(source, self.INPUT, fmt, units, run)
        run.progress(1.0)
        feedback.pushInfo(
            f"Read {series.count} points ({'StaMPS export' if series.fmt == 'stamps' else 'date fields'}, "
            f"{'mm' if series.units == 'mm' else series.units + ' converted to mm'}) in {series.crs.to_string()}."
        )
        for note in series.notes:
            (feedback.pushWarning if note.startswith("Warning") else feedback.pushInfo)(note)
        return series

    def compute(self, parameters, context, feedback):
        run = self.run_context(feedback)
        source, csv_path = self._sources(parameters, context)
        pixel = self.parameterAsDouble(parameters, self.PIXEL_SIZE, context)
        if not pixel > 0:
            raise QgsProcessingException(f"{self.PIXEL_SIZE} must be greater than 0 (metres on the ground).")
        radius = self.parameterAsDouble(parameters, self.RADIUS, context)
        method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)]
        out_crs = crs_string(self.parameterAsCrs(parameters, self.OUTPUT_CRS, context))
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        series = self._series(source, csv_path, out, parameters, context, feedback, run.stage(0.0, 0.1))
        run.check_cancelled()
        summary = points_to_stack(
            series,
            out,
            pixel,
            out_crs=out_crs,
            method=method,
            radius=radius if radius > 0 else None,
            run=run.stage(0.1, 1.0),
        )
        if not os.path.exists(out):
            raise QgsProcessingException(f"{self.OUTPUT}: {out} was not written.")
        dropped = validity.dropped_summary(
            "Points",
            {
                "outside the area of use of their CRS": series.outside,
                "without geometry": series.null_geometry,
                "without a value at any date": series.skipped,
                "sharing a cell with a nearer point (METHOD nearest)": summary["merged"],
            },
        )
        feedback.pushInfo(dropped[1])
        return {
            self.OUTPUT: out,
            self.DROPPED_COUNT: dropped[0],
            self.POINT_COUNT: summary["points"],
            self.MERGED_COUNT: summary["merged"],
            self.NULL_GEOMETRY_COUNT: series.null_geometry,
            self.SKIPPED_COUNT: series.skipped,
            self.DATE_COUNT: summary["dates"],
            self.FILLED_CELLS: summary["filled"],
            self.OUTPUT_CRS_USED: summary["crs"].to_string(),
        }
