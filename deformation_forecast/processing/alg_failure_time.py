"""Acceleration and time of failure (inverse-velocity method) for a stack or point time series."""

from __future__ import annotations

import json
import math
import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core import failure, validity
from ..core.failure_run import analyse_points, analyse_stack, save_chart
from ..core.points import FORMATS, UNITS, read_points_csv
from .base import DeformationAlgorithm
from .point_layers import FORMAT_LABELS, UNIT_LABELS, crs_string, layer_series
from .tables import PLOT_FILTER, _value, make_field, require_geometry

# (field, kind) of the point output, kinds as processing.tables
FIELDS = [
    ("point_id", "int"),
    ("velocity", "float"),
    ("velocity_se", "float"),
    ("acceleration", "float"),
    ("acceleration_se", "float"),
    ("significant", "int"),
    ("failure_date", "date"),
    ("failure_early", "date"),
    ("failure_late", "date"),
    ("days_to_failure", "float"),
    ("failure_fit_short", "date"),
    ("failure_fit_long", "date"),
    ("alert", "int"),
]
TYPES = {"int": QVariant.Int, "float": QVariant.Double, "date": QVariant.Date}


class FailureTime(DeformationAlgorithm):
    NAME = "failuretime"
    DISPLAY = "Acceleration and time of failure"
    GROUP = "analysis"
    TAGS = "landslide,early warning,inverse velocity,fukuzono,voight,acceleration,failure,mine,slope"

    STACK = "STACK"
    POINTS = "POINTS"
    POINTS_CSV = "POINTS_CSV"
    FORMAT = "FORMAT"
    UNITS = "UNITS"
    CSV_CRS = "CSV_CRS"
    AREA = "AREA"
    VELOCITY_WINDOW = "VELOCITY_WINDOW"
    FIT_WINDOW = "FIT_WINDOW"
    MIN_VELOCITY = "MIN_VELOCITY"
    HORIZON_DAYS = "HORIZON_DAYS"
    CONFIDENCE = "CONFIDENCE"
    OUTPUT = "OUTPUT"
    OUTPUT_RASTER = "OUTPUT_RASTER"
    OUTPUT_PLOT = "OUTPUT_PLOT"
    ALERTS = "ALERTS"
    EARLIEST_FAILURE = "EARLIEST_FAILURE"
    EARLIEST_FAILURE_DATE = "EARLIEST_FAILURE_DATE"

    HELP = (
        "Early warning for slopes and pit walls that accelerate before they fail: finds the points "
        "whose motion accelerates and forecasts their time of failure by the <b>inverse-velocity "
        "method</b> (Fukuzono 1985, Voight 1988, Rose &amp; Hungr 2007).<br><br><b>Input</b>, exactly "
        "one of: a <b>Deformation stack</b> (mm, dates in the band descriptions), a <b>point layer "
        "with one field per date</b> (DYYYYMMDD, YYYYMMDD or d_YYYYMMDD), or a <b>CSV file</b> with "
        "date fields and coordinates, a DePSI export or a StaMPS Visualizer export, read as 'Point "
        "time series to stack' reads it (<b>Point format</b>, <b>Units of the point displacements</b> "
        "and <b>CRS of the CSV coordinates</b> say how). <b>Area to analyse</b> (polygons, optional) "
        "restricts the analysis, e.g. to a pit wall.<br><br><b>Per point</b>: the <i>acceleration</i> "
        "(mm/yr&sup2;) over the last acquisitions (<b>Acquisitions per local velocity</b> + "
        "<b>Velocity windows in the inverse-velocity fit</b> - 1 of them), relative to the "
        "straight-line (and, for series over 1.5 years, annual) motion before them, with its standard "
        "error allowing for correlated noise. It is <i>significant</i> when it points in the direction "
        "of motion and passes a two-sided test at <b>Confidence</b>, calibrated on the scene itself "
        "(the same statistic at earlier dates of all points sets its spread), so that noise and "
        "seasonal, linear or decelerating motion (e.g. a mining bowl after extraction) do not alert. "
        "The <i>velocity</i> (mm/yr) is the trend velocity at the last acquisition; points slower than "
        "<b>Minimum velocity</b> are not analysed.<br><b>Failure date</b>, for significant "
        "accelerations: Voight's relation 1/v = (t<sub>f</sub> - t) / k fitted over the same span; "
        "t<sub>f</sub> is where the fitted inverse velocity reaches zero. failure_early and "
        "failure_late bound it (an interval at <b>Confidence</b>); no date is given where that "
        "interval is unbounded (1/v does not decrease significantly). failure_fit_short and "
        "failure_fit_long repeat the forecast with two velocity windows fewer and more: how much it "
        "moves with the window.<br><b>alert</b>: 0 none, 1 significant acceleration, 2 failure "
        "forecast within the <b>Alert horizon</b> (days after the last acquisition), 3 forecast date "
        "already reached at the last acquisition.<br><br><b>What to choose</b> for 6-12 day Sentinel-1 "
        "series (the defaults): 5 acquisitions per local velocity (24-48 days, enough to average a few "
        "mm of noise), 12 velocity windows in the fit (a span of 16 acquisitions, 3-6 months: the "
        "accelerating phase before a failure), a minimum velocity of 10 mm/yr, an alert horizon of 90 "
        "days and a confidence of 0.99 (fewer than 1 % of stable, linear, seasonal or decelerating "
        "pixels alert on synthetic fields with correlated noise).<br><br>Outputs: the <b>Acceleration "
        "and failure forecast</b> points (for a stack: one per alerted pixel centre); for a stack, the "
        "optional <b>Failure raster</b> (bands velocity, acceleration, days from the last acquisition "
        "to the failure date, alert); the optional <b>Inverse-velocity chart</b> of the most critical "
        "points. A forecast is a statistical extrapolation of the current trend: use it with field "
        "observations, never alone."
    )
    HELP_ANCHOR = "acceleration-and-time-of-failure-failuretime"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.STACK, "Deformation stack", optional=True))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.POINTS,
                "or point layer with one field per date",
                [QgsProcessing.TypeVectorPoint],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.POINTS_CSV,
                "or CSV file (date fields, DePSI or StaMPS export)",
                QgsProcessingParameterFile.File,
                optional=True,
                fileFilter="CSV files (*.csv *.txt);;All files (*.*)",
            )
        )
        self._advanced(QgsProcessingParameterEnum(self.FORMAT, "Point format", FORMAT_LABELS, defaultValue=0))
        self._advanced(
            QgsProcessingParameterEnum(
                self.UNITS, "Units of the point displacements", UNIT_LABELS, defaultValue=0
            )
        )
        self._advanced(
            QgsProcessingParameterCrs(
                self.CSV_CRS, "CRS of the CSV coordinates (empty: EPSG:4326 for lon/lat)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.AREA, "Area to analyse (polygons)", [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self._number(
            self.VELOCITY_WINDOW, "Acquisitions per local velocity", failure.VELOCITY_WINDOW, 3, True
        )
        self._number(
            self.FIT_WINDOW, "Velocity windows in the inverse-velocity fit", failure.FIT_WINDOW, 3, True
        )
        self._number(self.MIN_VELOCITY, "Minimum velocity (mm/yr)", failure.MIN_VELOCITY, 0.0)
        self._number(
            self.HORIZON_DAYS, "Alert horizon (days after the last acquisition)", failure.HORIZON_DAYS, 0.0
        )
        conf = self._number(self.CONFIDENCE, "Confidence", failure.CONFIDENCE, 0.5)
        conf.setMaximum(0.9999)
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, "Acceleration and failure forecast", QgsProcessing.TypeVectorPoint
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_RASTER, "Failure raster (stacks only)", optional=True, createByDefault=False
            )
        )
        from qgis.core import QgsProcessingParameterFileDestination

        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_PLOT,
                "Inverse-velocity chart",
                fileFilter=PLOT_FILTER,
                optional=True,
                createByDefault=False,
            )
        )
        self._outputs()

    def _outputs(self) -> None:
        """The number and text outputs."""
        numbers = (
            (self.ALERTS, "Points or pixels with an alert (class 1-3)"),
            (self.NULL_GEOMETRY_COUNT, "Features without geometry (skipped)"),
            (self.EARLIEST_FAILURE, "Days from the last acquisition to the earliest forecast"),
            (self.MASKED_VALUES, "Values read as nodata (sentinels, masks, spikes)"),
        )
        for name, label in numbers:
            self.addOutput(QgsProcessingOutputNumber(name, label))
        self.addOutput(
            QgsProcessingOutputString(self.EARLIEST_FAILURE_DATE, "Earliest forecast failure date")
        )

    def _advanced(self, p):
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        return p

    def _number(self, name, label, default, minimum, integer=False):
        kind = QgsProcessingParameterNumber.Integer if integer else QgsProcessingParameterNumber.Double
        p = QgsProcessingParameterNumber(name, label, kind, defaultValue=default, minValue=minimum)
        self.addParameter(p)
        return p

    def _params(self, parameters, context) -> failure.Params:
        return failure.Params(
            velocity_window=self.parameterAsInt(parameters, self.VELOCITY_WINDOW, context),
            fit_window=self.parameterAsInt(parameters, self.FIT_WINDOW, context),
            min_velocity=self.parameterAsDouble(parameters, self.MIN_VELOCITY, context),
            horizon_days=self.parameterAsDouble(parameters, self.HORIZON_DAYS, context),
            confidence=self.parameterAsDouble(parameters, self.CONFIDENCE, context),
        )

    def _area_geometry(self, parameters, context, target_crs, feedback) -> QgsGeometry | None:
        """The union of the AREA polygons in `target_crs`, None when AREA is not given."""
        source = self.parameterAsSource(parameters, self.AREA, context)
        if source is None:
            return None
        require_geometry(source, self.AREA, QgsWkbTypes.PolygonGeometry)
        xform = None
        if source.sourceCrs().isValid() and target_crs.isValid() and source.sourceCrs() != target_crs:
            xform = QgsCoordinateTransform(source.sourceCrs(), target_crs, context.transformContext())
        parts, before = [], validity.dropped_count()
        for f in source.getFeatures():
            g = QgsGeometry(f.geometry())
            if g.isNull() or g.isEmpty():
                validity.count_dropped(self.AREA, 1)  # NULL_GEOMETRY_COUNT
                continue
            if xform is not None:
                g.transform(xform)
            parts.append(g)
        if not parts:
            raise QgsProcessingException(f"{self.AREA}: the layer {source.sourceName()!r} holds no polygon.")
        skipped = validity.dropped_count() - before
        if skipped:
            feedback.pushWarning(f"{self.AREA}: {skipped} feature(s) without geometry skipped.")
        return QgsGeometry.unaryUnion(parts)

    def _inputs(self, parameters, context) -> str:
        given = [
            name
            for name, present in (
                (self.STACK, self.parameterAsRasterLayer(parameters, self.STACK, context) is not None),
                (self.POINTS, self.parameterAsSource(parameters, self.POINTS, context) is not None),
                (self.POINTS_CSV, bool(self.parameterAsFile(parameters, self.POINTS_CSV, context))),
            )
            if present
        ]
        if len(given) != 1:
            raise QgsProcessingException(
                "Give exactly one input: STACK (a deformation stack), POINTS (a point layer with one "
                "field per date) or POINTS_CSV (a CSV / StaMPS / DePSI export); "
                + (f"{' and '.join(given)} were given." if given else "none was given.")
            )
        return given[0]

    def compute(self, parameters, context, feedback):
        kind = self._inputs(parameters, context)
        params = self._params(parameters, context)
        plot_path = self.parameterAsFileOutput(parameters, self.OUTPUT_PLOT, context)
        if plot_path and not os.path.splitext(plot_path)[1]:
            plot_path += ".png"
        if kind == self.STACK:
            records, crit, summary, crs, dates, raster = self._run_stack(
                parameters, context, feedback, params
            )
        else:
            records, crit, summary, crs, dates = self._run_points(kind, parameters, context, feedback, params)
            raster = None
        results = {self.OUTPUT: self._write_points(parameters, context, records, crs, kind)}
        if raster:
            results[self.OUTPUT_RASTER] = raster
        if plot_path:
            from .tables import save_plot

            n = save_plot(save_chart, plot_path, crit.items(), dates, params)
            feedback.pushInfo(f"Inverse-velocity chart of {n} point(s) written to {plot_path}.")
            results[self.OUTPUT_PLOT] = plot_path
        return self._report(results, summary, dates, feedback, context, kind)

    def _report(self, results, summary, dates, feedback, context, kind):
        counts, earliest = summary["counts"], summary["earliest"]
        alerts = int(sum(counts[1:]))
        feedback.pushInfo(
            f"{summary['points']} {'pixels' if kind == self.STACK else 'points'} with data, "
            f"{summary['analysed']} faster than MIN_VELOCITY; alerts: "
            + ", ".join(f"class {k}: {c}" for k, c in enumerate(counts))
            + f". Acceleration test calibration factor {summary['kappa']:.2f}."
        )
        if earliest is not None:
            feedback.pushInfo(f"Earliest forecast failure date: {earliest.isoformat()}.")
        results[self.ALERTS] = alerts
        results[self.NULL_GEOMETRY_COUNT] = validity.dropped_count()
        results[self.EARLIEST_FAILURE] = (
            float((earliest - dates[-1]).days) if earliest is not None else math.nan
        )
        results[self.EARLIEST_FAILURE_DATE] = earliest.isoformat() if earliest is not None else ""
        from .postprocess import alert_style_on_load

        alert_style_on_load(context, results[self.OUTPUT])
        if results.get(self.OUTPUT_RASTER):
            alert_style_on_load(context, results[self.OUTPUT_RASTER])
        return results

    def _style_outputs(self, parameters, context, results) -> None:
        """The raster gets the alert-class style (compute attaches it), not the diverging ramp."""

    def _run_stack(self, parameters, context, feedback, params):
        info = self.stack_info(parameters, self.STACK, context)
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT_RASTER, context) or None
        if out:
            self.check_output_not_input(out, info.path)
        crs = self.parameterAsRasterLayer(parameters, self.STACK, context).crs()
        area = self._area_geometry(parameters, context, crs, feedback)
        geoms = [json.loads(area.asJson())] if area is not None else None
        feedback.pushInfo(
            f"{info.count} dates {info.dates[0]}..{info.dates[-1]}, {info.width} x {info.height} pixels."
        )

        run = self.run_context(feedback).stage(0.0, 0.9)
        records, crit, summary = analyse_stack(info.path, out, params, geoms, run)
        return records, crit, summary, crs, info.dates, out

    def _run_points(self, kind, parameters, context, feedback, params):
        run = self.run_context(feedback)
        fmt = FORMATS[self.parameterAsEnum(parameters, self.FORMAT, context)]
        units = UNITS[self.parameterAsEnum(parameters, self.UNITS, context)]
        if kind == self.POINTS_CSV:
            path = self.parameterAsFile(parameters, self.POINTS_CSV, context)
            csv_crs = crs_string(self.parameterAsCrs(parameters, self.CSV_CRS, context))
            series = read_points_csv(path, fmt=fmt, units=units, crs=csv_crs)
        else:
            source = self.parameterAsSource(parameters, self.POINTS, context)
            series = layer_series(source, self.POINTS, fmt, units, run.stage(0.0, 0.1))
            validity.count_dropped(self.POINTS, series.null_geometry)  # NULL_GEOMETRY_COUNT
        for note in series.notes:
            (feedback.pushWarning if note.startswith("Warning") else feedback.pushInfo)(note)
        crs = QgsCoordinateReferenceSystem(series.crs.to_string())
        if not crs.isValid():
            crs = QgsCoordinateReferenceSystem.fromWkt(series.crs.to_wkt())
        area = self._area_geometry(parameters, context, crs, feedback)
        keep = list(range(series.count))
        if area is not None:
            engine = QgsGeometry.createGeometryEngine(area.constGet())
            engine.prepareGeometry()
            kept = []
            for i in keep:
                pt = QgsGeometry.fromPointXY(QgsPointXY(float(series.x[i]), float(series.y[i])))
                if engine.intersects(pt.constGet()):
                    kept.append(i)
            keep = kept
            feedback.pushInfo(f"{self.AREA} keeps {len(keep)} of {series.count} points.")
        feedback.pushInfo(
            f"{len(keep)} points, {len(series.dates)} dates {series.dates[0]}..{series.dates[-1]}."
        )
        run.progress(0.2)
        run.check_cancelled()
        records, crit, summary = analyse_points(
            series.values[keep],
            (series.x[keep], series.y[keep]),
            series.dates,
            params,
            ids=[i + 1 for i in keep],
            run=run.stage(0.2, 0.9),
        )
        run.progress(0.9)
        return records, crit, summary, crs, series.dates

    def _write_points(self, parameters, context, records, crs, kind) -> str:
        fields = QgsFields()
        for name, t in FIELDS:
            fields.append(make_field(name, TYPES[t]))
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Point, crs)
        if sink is None:
            raise QgsProcessingException(f"{self.OUTPUT}: cannot create the output layer.")
        for rec in records:
            f = QgsFeature(fields)
            f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(rec.x, rec.y)))
            f.setAttributes([_value(rec.values.get(name), t) for name, t in FIELDS])
            if not sink.addFeature(f, QgsFeatureSink.FastInsert):
                raise QgsProcessingException(f"{self.OUTPUT}: cannot write a feature: {sink.lastError()}")
        del sink
        return dest
