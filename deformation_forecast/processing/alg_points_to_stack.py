"""Point time series to stack: a point layer or CSV (date fields, DePSI, StaMPS) -> raster stack."""

from __future__ import annotations

import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
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
from qgis.PyQt.QtCore import QVariant

from ..core.points import FORMATS, METHODS, UNITS, points_to_stack, read_points_csv, series_from_table
from .base import DeformationAlgorithm
from .distance import metres_parameter
from .tables import check_lonlat_extent

FORMAT_LABELS = [
    "Auto-detect",
    "One field per date (DYYYYMMDD, YYYYMMDD, d_YYYYMMDD)",
    "StaMPS Visualizer export",
]
UNIT_LABELS = ["Auto (DePSI: m, otherwise mm)", "mm", "cm", "m"]
METHOD_LABELS = ["Nearest point", "Inverse distance weighting (power 2)"]


def _crs_string(crs: QgsCoordinateReferenceSystem) -> str | None:
    """A QGIS CRS as something rasterio understands (EPSG code or WKT), None when invalid."""
    if crs is None or not crs.isValid():
        return None
    auth = crs.authid()
    if auth.upper().startswith("EPSG:"):
        return auth
    return crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL)


def _plain(value):
    """A feature attribute as a Python value (NULL -> None)."""
    if isinstance(value, QVariant):
        return None if value.isNull() else value.value()
    return value


class PointsToStack(DeformationAlgorithm):
    NAME = "pointstostack"
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

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "INPUT", "Point layer with one field per date", [QgsProcessing.TypeVectorPoint], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "INPUT_CSV",
                "or CSV file (date fields, DePSI or StaMPS export)",
                QgsProcessingParameterFile.File,
                optional=True,
                fileFilter="CSV files (*.csv *.txt);;All files (*.*)",
            )
        )
        self.addParameter(QgsProcessingParameterEnum("FORMAT", "Format", FORMAT_LABELS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterCrs(
                "CSV_CRS", "CRS of the CSV coordinates (empty: EPSG:4326 for lon/lat)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum("UNITS", "Units of the displacements", UNIT_LABELS, defaultValue=0)
        )
        self.addParameter(
            metres_parameter(
                "PIXEL_SIZE",
                "Pixel size (metres on the ground)",
                None,
                "Cell size of the grid in metres, whatever the output CRS (on a geographic output "
                "CRS the cells are square on the ground, converted with the local scale).",
            )
        )
        self.addParameter(
            QgsProcessingParameterCrs(
                "OUTPUT_CRS", "Output CRS (empty: input CRS if projected, else UTM zone)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum("METHOD", "Gridding method", METHOD_LABELS, defaultValue=0)
        )
        radius = metres_parameter(
            "RADIUS",
            "Search radius (metres on the ground, 0 = 2 x pixel size)",
            0.0,
            "Points farther than this from a cell centre do not fill it (metres, whatever the CRS).",
        )
        radius.setFlags(radius.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(radius)
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Deformation stack"))
        self.addOutput(QgsProcessingOutputNumber("POINT_COUNT", "Points that entered the grid"))
        self.addOutput(
            QgsProcessingOutputNumber("MERGED_COUNT", "Points dropped: sharing a cell (METHOD nearest)")
        )
        self.addOutput(
            QgsProcessingOutputNumber("NULL_GEOMETRY_COUNT", "Points dropped: features without geometry")
        )
        self.addOutput(QgsProcessingOutputNumber("SKIPPED_COUNT", "Points skipped (no value at any date)"))
        self.addOutput(QgsProcessingOutputNumber("DATE_COUNT", "Dates (bands)"))
        self.addOutput(QgsProcessingOutputNumber("FILLED_CELLS", "Cells with a value"))
        self.addOutput(QgsProcessingOutputString("OUTPUT_CRS_USED", "Output CRS"))

    def _layer_series(self, source, fmt: str, units: str, feedback):
        check_lonlat_extent(source, "INPUT")
        names = [f.name() for f in source.fields()]
        xy: list[tuple[float, float]] = []  # filled as the rows are read (series_from_table reads it last)
        null_ids: list[int] = []
        total = max(1, source.featureCount())

        def rows():
            for i, feat in enumerate(source.getFeatures()):
                if i % 1000 == 0:
                    self.check_canceled(feedback)
                    feedback.setProgress(10.0 * i / total)
                geom = feat.geometry()
                if geom is None or geom.isNull() or geom.isEmpty():
                    null_ids.append(feat.id())  # dropped, counted and reported
                    continue
                pt = geom.asPoint() if not geom.isMultipart() else geom.centroid().asPoint()
                xy.append((pt.x(), pt.y()))
                yield [_plain(v) for v in feat.attributes()]

        if source.featureCount() == 0:
            raise QgsProcessingException(
                f"INPUT: the layer {source.sourceName()!r} has no features; give a layer with points."
            )
        series = series_from_table(
            names,
            rows(),
            what=f"INPUT {source.sourceName()!r}",
            fmt=fmt,
            units=units,
            crs=_crs_string(source.sourceCrs()),
            xy=xy,
            first_line=1,
        )
        if null_ids:
            series.notes.append(
                f"Warning: {len(null_ids)} feature(s) without geometry dropped (ids {null_ids[:10]}"
                f"{'...' if len(null_ids) > 10 else ''})."
            )
        series.null_geometry = len(null_ids)
        return series

    def compute(self, parameters, context, feedback):
        source = self.parameterAsSource(parameters, "INPUT", context)
        csv_path = self.parameterAsFile(parameters, "INPUT_CSV", context)
        if source is not None and csv_path:
            raise QgsProcessingException(
                "Give either INPUT (a point layer) or INPUT_CSV (a CSV file), not both."
            )
        if source is None and not csv_path:
            raise QgsProcessingException(
                "No points given: choose a point layer (INPUT) or a CSV file (INPUT_CSV)."
            )
        fmt = FORMATS[self.parameterAsEnum(parameters, "FORMAT", context)]
        units = UNITS[self.parameterAsEnum(parameters, "UNITS", context)]
        pixel = self.parameterAsDouble(parameters, "PIXEL_SIZE", context)
        if not pixel > 0:
            raise QgsProcessingException("PIXEL_SIZE must be greater than 0 (metres on the ground).")
        radius = self.parameterAsDouble(parameters, "RADIUS", context)
        method = METHODS[self.parameterAsEnum(parameters, "METHOD", context)]
        out_crs = _crs_string(self.parameterAsCrs(parameters, "OUTPUT_CRS", context))
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)

        if csv_path:
            self.check_output_not_input(out, csv_path)
            csv_crs = _crs_string(self.parameterAsCrs(parameters, "CSV_CRS", context))
            series = read_points_csv(csv_path, fmt=fmt, units=units, crs=csv_crs)
        else:
            series = self._layer_series(source, fmt, units, feedback)
        feedback.setProgress(10)
        feedback.pushInfo(
            f"Read {series.count} points ({'StaMPS export' if series.fmt == 'stamps' else 'date fields'}, "
            f"{'mm' if series.units == 'mm' else series.units + ' converted to mm'}) in {series.crs.to_string()}."
        )
        for note in series.notes:
            (feedback.pushWarning if note.startswith("Warning") else feedback.pushInfo)(note)
        self.check_canceled(feedback)
        summary = points_to_stack(
            series,
            out,
            pixel,
            out_crs=out_crs,
            method=method,
            radius=radius if radius > 0 else None,
            log=lambda m: (feedback.pushWarning if m.startswith("Warning") else feedback.pushInfo)(m),
            progress=lambda p: feedback.setProgress(10 + 0.9 * p),
            is_canceled=feedback.isCanceled,
            mb=self.memory_mb,
        )
        if not os.path.exists(out):
            raise QgsProcessingException(f"OUTPUT: {out} was not written.")
        return {
            "OUTPUT": out,
            "POINT_COUNT": summary["points"],
            "MERGED_COUNT": summary["merged"],
            "NULL_GEOMETRY_COUNT": series.null_geometry,
            "SKIPPED_COUNT": series.skipped,
            "DATE_COUNT": summary["dates"],
            "FILLED_CELLS": summary["filled"],
            "OUTPUT_CRS_USED": summary["crs"].to_string(),
        }
