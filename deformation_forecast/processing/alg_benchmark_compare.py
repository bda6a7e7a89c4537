"""Compare with leveling benchmarks (paper §V-A-1, Fig. 15a)."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from ..core import benchmarks as cb
from ..core import validity
from ..core.dates import parse_date
from ..core.errors import InputError
from ..core.los import check_incidence
from ..core.metric import ground_scale
from ..core.stack import require_crs
from .base import DeformationAlgorithm
from .distance import metres_parameter
from .tables import (
    GEOMETRY_NAMES,
    check_lonlat_extent,
    geometry_kind,
    plot_destination,
    report_skipped,
    save_plot,
    table_sink,
    write_table,
)

PAIR_COLUMNS = [
    ("benchmark", "str"),
    ("survey_date", "date"),
    ("acquisition_date", "date"),
    ("gap_days", "int"),
    ("leveling", "float"),
    ("insar", "float"),
    ("diff", "float"),
    ("reference", "bool"),
]
SUMMARY_COLUMNS = [
    ("benchmark", "str"),
    ("x", "float"),
    ("y", "float"),
    ("status", "str"),
    ("method", "str"),
    ("pixels", "int"),
    ("incidence", "float"),
    ("n", "int"),
    ("mae", "float"),
    ("rmse", "float"),
    ("max_abs", "float"),
    ("bias", "float"),
    ("r", "float"),
]
CSV_EXTENSIONS = (".csv", ".txt", ".tsv")


class BenchmarkCompare(DeformationAlgorithm):
    NAME = "benchmarkcompare"
    DISPLAY = "Compare with leveling benchmarks"
    GROUP = "validation"
    INPUT = "INPUT"
    BENCHMARKS = "BENCHMARKS"
    BENCHMARKS_CRS = "BENCHMARKS_CRS"
    INCIDENCE = "INCIDENCE"
    INCIDENCE_RASTER = "INCIDENCE_RASTER"
    RADIUS = "RADIUS"
    REFERENCE_DATE = "REFERENCE_DATE"
    VERTICAL_INPUT = "VERTICAL_INPUT"
    MAX_DAYS = "MAX_DAYS"
    OUTPUT = "OUTPUT"
    OUTPUT_SUMMARY = "OUTPUT_SUMMARY"
    OUTPUT_PLOT = "OUTPUT_PLOT"
    MAE = "MAE"
    RMSE = "RMSE"
    MAX_ABS = "MAX_ABS"
    BIAS = "BIAS"
    R = "R"
    N = "N"
    BENCHMARKS_USED = "BENCHMARKS_USED"
    BENCHMARKS_SKIPPED = "BENCHMARKS_SKIPPED"
    # number outputs: (name, label, key in core.benchmarks.Comparison.overall)
    NUMBERS = (
        (MAE, "Mean absolute error (mm)", "mae"),
        (RMSE, "Root mean square error (mm)", "rmse"),
        (MAX_ABS, "Largest |InSAR - leveling| (mm)", "max_abs"),
        (BIAS, "Mean InSAR - leveling (mm)", "bias"),
        (R, "Pearson r", "r"),
        (N, "Pairs compared", "n"),
        (BENCHMARKS_USED, "Benchmarks compared", "benchmarks"),
        (BENCHMARKS_SKIPPED, "Benchmarks skipped (outside, on NaN pixels, too few dates)", "skipped"),
    )
    TAGS = "leveling,levelling,benchmark,validation,accuracy,mae,rmse,ground truth"
    HELP = (
        "Checks an InSAR stack against leveling benchmarks: how far its vertical displacement is from "
        "what the surveyors measured, per benchmark and overall. He et al. 2022 validated their "
        "Jinchuan results this way (section V-A-1 of the paper, Fig. 15a: differences of 0-8 "
        "mm).<br><br><b>Deformation stack (LOS, mm)</b>: the stack to check. <b>Benchmarks</b>: a "
        "point layer, or a CSV file (type its path), with one vertical displacement column in mm per "
        "survey date (D20170903, 20170903 or d_20170903), or a long table with id, date and value "
        "columns. A CSV's coordinates come from x/y, lon/lat or easting/northing columns, in the "
        "raster's CRS unless <b>CRS of the CSV coordinates</b> says otherwise (lon/lat columns default "
        "to WGS 84).<br><b>Incidence angle</b> (degrees from the vertical) turns LOS into vertical, dv "
        "= dLOS / cos(incidence); an <b>Incidence angle raster</b> gives one angle per pixel instead. "
        "Tick <b>The stack is vertical already</b> (advanced) for a stack from 'Vertical and east-west "
        "from two orbits' or 'LOS to vertical': the incidence is then not used.<br><b>Radius around a "
        "benchmark</b> (metres on the ground; 20 in the paper): the InSAR value is the mean of the "
        "pixels whose centres lie that close, so choose one or two pixel sizes. When no pixel centre "
        "is that close, the pixel under the benchmark is used, with a warning.<br><b>Max days between "
        "a survey and its acquisition</b> (advanced): each survey is paired with the nearest "
        "acquisition within that many days (12 suits Sentinel-1). Both series are set to zero at the "
        "<b>Reference date</b> (default: each benchmark's first common date), a pair left out of the "
        "statistics.<br><br>Outputs: the pairs (benchmark, date, leveling, InSAR vertical, difference "
        "= InSAR - leveling, mm), the per-benchmark summary (count, MAE, RMSE, largest difference, "
        "bias in mm, Pearson r), the overall numbers and an optional plot. Benchmarks outside the "
        "raster or on incoherent (NaN) pixels are reported and skipped."
    )
    HELP_ANCHOR = "compare-with-leveling-benchmarks-benchmarkcompare"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Deformation stack (LOS, mm)"))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.BENCHMARKS, "Benchmarks (point layer or CSV)", [QgsProcessing.TypeVector]
            )
        )
        self.addParameter(
            QgsProcessingParameterCrs(
                self.BENCHMARKS_CRS, "CRS of the CSV coordinates (default: the raster's)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.INCIDENCE, "Incidence angle (degrees)", QgsProcessingParameterNumber.Double, 34.17
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                self.INCIDENCE_RASTER, "Incidence angle raster (degrees; overrides the number)", optional=True
            )
        )
        self.addParameter(
            metres_parameter(
                self.RADIUS,
                "Radius around a benchmark (metres on the ground)",
                20.0,
                "Pixels whose centres lie within this many metres of the benchmark are averaged; on a "
                "geographic stack (EPSG:4326) the metres are converted with the local scale.",
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.REFERENCE_DATE,
                "Reference date (YYYY-MM-DD; default the first common date)",
                optional=True,
            )
        )
        vert = QgsProcessingParameterBoolean(
            self.VERTICAL_INPUT, "The stack is vertical already (no 1 / cos(incidence))", defaultValue=False
        )
        vert.setHelp(
            "For a vertical stack, e.g. from 'Vertical and east-west from two orbits' (recognised by its "
            "COMPONENT tag even when this is off) or 'LOS to vertical': the incidence is not used."
        )
        vert.setFlags(vert.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(vert)
        p = QgsProcessingParameterNumber(
            self.MAX_DAYS,
            "Max days between a survey and its acquisition",
            QgsProcessingParameterNumber.Double,
            12.0,
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self.addParameter(table_sink(self.OUTPUT, "Benchmark vs InSAR pairs"))
        self.addParameter(table_sink(self.OUTPUT_SUMMARY, "Per-benchmark summary"))
        self.addParameter(plot_destination(self.OUTPUT_PLOT, "Plot (series per benchmark, scatter)"))
        for key, label, _ in self.NUMBERS:
            self.addOutput(QgsProcessingOutputNumber(key, label))
        self.addOutput(
            QgsProcessingOutputNumber(self.MASKED_VALUES, "Benchmark values read as nodata (sentinels)")
        )
        self.addOutput(
            QgsProcessingOutputNumber(self.NULL_GEOMETRY_COUNT, "Benchmark features without geometry")
        )

    # ------------------------------------------------------------------ benchmarks in
    def _benchmarks(self, parameters, context, raster_crs, feedback) -> cb.Benchmarks:
        source = self.parameterAsSource(parameters, self.BENCHMARKS, context)
        if source is None:
            raise QgsProcessingException("BENCHMARKS: no layer or file given.")
        layer = self.parameterAsVectorLayer(parameters, self.BENCHMARKS, context)
        kind = geometry_kind(source)
        file_path = ""
        if layer is not None and layer.providerType() == "ogr":
            file_path = layer.source().split("|")[0]
        if kind not in (QgsWkbTypes.PointGeometry, QgsWkbTypes.NullGeometry, QgsWkbTypes.UnknownGeometry):
            raise QgsProcessingException(
                f"BENCHMARKS: layer {source.sourceName()!r} has {GEOMETRY_NAMES.get(kind, 'other')} geometries; "
                "give a point layer or a CSV file with coordinate columns."
            )
        bm_crs = self.parameterAsCrs(parameters, self.BENCHMARKS_CRS, context)
        if kind == QgsWkbTypes.PointGeometry:
            check_lonlat_extent(source, self.BENCHMARKS)
            xform = None
            if source.sourceCrs().isValid() and source.sourceCrs() != raster_crs:
                xform = QgsCoordinateTransform(source.sourceCrs(), raster_crs, context.transformContext())
            header = [f.name() for f in source.fields()]
            rows, xy = [], []
            for f in source.getFeatures():
                g = f.geometry()
                if g is None or g.isNull() or g.isEmpty():
                    report_skipped(feedback, self.BENCHMARKS, 1)  # counted: NULL_GEOMETRY_COUNT
                    continue
                pt = g.asMultiPoint()[0] if g.isMultipart() else g.asPoint()
                if xform is not None:
                    try:
                        pt = xform.transform(pt)
                    except QgsCsException as e:
                        raise QgsProcessingException(
                            f"BENCHMARKS: feature {f.id()} cannot be reprojected: {e}"
                        ) from e
                xy.append((pt.x(), pt.y()))
                rows.append(["" if (v is None or str(v) == "NULL") else v for v in f.attributes()])
            return cb.benchmarks_from_table(
                header, rows, xy=xy, source=f"Benchmark layer {source.sourceName()!r}"
            )
        # a table: the CSV file itself (read by our own parser), or a layer's attributes
        if file_path.lower().endswith(CSV_EXTENSIONS) and os.path.isfile(file_path):
            bms = cb.read_benchmarks(file_path)
        else:
            header = [f.name() for f in source.fields()]
            rows = [
                ["" if (v is None or str(v) == "NULL") else v for v in f.attributes()]
                for f in source.getFeatures()
            ]
            bms = cb.benchmarks_from_table(header, rows, source=f"Benchmark table {source.sourceName()!r}")
        from_crs = bm_crs if bm_crs.isValid() else None
        if from_crs is None and bms.geographic and not raster_crs.isGeographic():
            from_crs = QgsCoordinateReferenceSystem("EPSG:4326")
            feedback.pushInfo(
                f"Coordinates from columns {bms.coord_columns} taken as WGS 84 longitude/latitude "
                "(set BENCHMARKS_CRS otherwise)."
            )
        if from_crs is not None and from_crs != raster_crs:
            xform = QgsCoordinateTransform(from_crs, raster_crs, context.transformContext())
            for k in range(len(bms.ids)):
                if not (np.isfinite(bms.x[k]) and np.isfinite(bms.y[k])):
                    continue
                try:
                    p = xform.transform(QgsPointXY(bms.x[k], bms.y[k]))
                except QgsCsException as e:
                    raise QgsProcessingException(
                        f"BENCHMARKS: benchmark {bms.ids[k]!r} cannot be reprojected: {e}"
                    ) from e
                bms.x[k], bms.y[k] = p.x(), p.y()
        return bms

    def _reference_date(self, parameters, context) -> dt.date | None:
        text = self.parameterAsString(parameters, self.REFERENCE_DATE, context).strip()
        if not text:
            return None
        ref_date = parse_date(text)
        if ref_date is None:
            raise InputError(f"{self.REFERENCE_DATE}: {text!r} is not a date (YYYY-MM-DD or YYYYMMDD).")
        return ref_date

    def _is_vertical(self, parameters, context, info, feedback) -> bool:
        """VERTICAL_INPUT, or the COMPONENT tag of a stack from 'Vertical and east-west from two orbits'."""
        vertical = self.parameterAsBool(parameters, self.VERTICAL_INPUT, context) or (
            info.tags.get("COMPONENT") == "vertical"
        )
        if vertical:
            feedback.pushInfo(
                "INPUT holds vertical displacement (VERTICAL_INPUT, or the COMPONENT tag written by "
                "'Vertical and east-west from two orbits'): compared as it is, no 1 / cos(incidence)."
            )
        elif self.parameterAsRasterLayer(parameters, self.INCIDENCE_RASTER, context) is None:
            check_incidence(self.parameterAsDouble(parameters, self.INCIDENCE, context), "INCIDENCE angle")
        return vertical

    def _incidence(self, parameters, context, info, bms: cb.Benchmarks):
        """The incidence per benchmark from INCIDENCE_RASTER, else the INCIDENCE number."""
        if self.parameterAsRasterLayer(parameters, self.INCIDENCE_RASTER, context) is None:
            return self.parameterAsDouble(parameters, self.INCIDENCE, context)
        inc_path = self.raster_path(parameters, self.INCIDENCE_RASTER, context)
        incidence = cb.incidence_at(inc_path, bms.x, bms.y, info.crs)
        usable = np.isfinite(incidence)
        check_incidence(incidence[usable] if usable.any() else incidence, "INCIDENCE_RASTER angle")
        if not usable.all():
            raise InputError(
                f"{self.INCIDENCE_RASTER} has no value under benchmark(s) "
                f"{[bms.ids[k] for k in np.flatnonzero(~usable)][:10]}; it must cover every benchmark."
            )
        return incidence

    def compute(self, parameters, context, feedback):
        info = self.stack_info(parameters, self.INPUT, context, observed=True)
        require_crs(info)
        raster_crs = self.parameterAsRasterLayer(parameters, self.INPUT, context).crs()
        plot_path = self.parameterAsFileOutput(parameters, self.OUTPUT_PLOT, context)
        self.check_output_not_input(plot_path, info.path)
        ref_date = self._reference_date(parameters, context)
        vertical = self._is_vertical(parameters, context, info, feedback)
        bms = self._benchmarks(parameters, context, raster_crs, feedback)
        feedback.pushInfo(
            f"{len(bms.ids)} benchmark(s), {len(bms.dates)} survey date(s) {bms.dates[0]}..{bms.dates[-1]} "
            f"({bms.form} form); stack {info.dates[0]}..{info.dates[-1]}, {info.count} date(s)."
        )
        self.check_canceled(feedback)
        incidence = None if vertical else self._incidence(parameters, context, info, bms)
        feedback.setProgressText("Sampling the stack around the benchmarks")
        scale = ground_scale(info.crs, info.bounds)
        if scale.note:
            feedback.pushInfo(scale.note)
        radius = self.parameterAsDouble(parameters, self.RADIUS, context)
        run = self.run_context(feedback)
        sampled = cb.sample_circles(
            info.path, info, bms.x, bms.y, radius, (scale.kx, scale.ky), run.stage(0, 0.5)
        )
        max_days = self.parameterAsDouble(parameters, self.MAX_DAYS, context)
        cmp = cb.compare(bms, sampled, info.dates, incidence, max_days, ref_date)
        for w in cmp.warnings:
            feedback.reportError(w, fatalError=False)
        ov = cmp.overall
        feedback.pushInfo(
            f"{ov['benchmarks']} benchmark(s), {ov['n']} pair(s): MAE {ov['mae']:.2f} mm, RMSE {ov['rmse']:.2f} mm, "
            f"max |diff| {ov['max_abs']:.2f} mm, bias {ov['bias']:.2f} mm, r = {ov['r']:.3f}"
        )
        self.check_canceled(feedback)
        results = {
            self.OUTPUT: write_table(self, parameters, self.OUTPUT, context, PAIR_COLUMNS, cmp.rows),
            self.OUTPUT_SUMMARY: write_table(
                self, parameters, self.OUTPUT_SUMMARY, context, SUMMARY_COLUMNS, cmp.summary
            ),
            self.OUTPUT_PLOT: None,
        }
        for name, _, key in self.NUMBERS:  # a NaN (r of too few pairs) is no value
            results[name] = ov[key] if np.isfinite(ov[key]) else None
        results[self.NULL_GEOMETRY_COUNT] = validity.dropped_count()
        if plot_path:
            save_plot(cb.plot_comparison, cmp, plot_path)
            results[self.OUTPUT_PLOT] = plot_path
        feedback.setProgress(100)
        return results
