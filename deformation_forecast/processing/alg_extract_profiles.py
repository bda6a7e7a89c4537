"""Extract deformation profiles along lines (paper Fig. 11)."""

from __future__ import annotations

import os

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsDistanceArea,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core import validity
from ..core.dates import field_name, parse_date
from ..core.errors import InputError
from ..core.metric import ground_scale
from ..core.profiles import INTERPOLATIONS, ProfileOptions, extract_profiles, write_csv
from ..core.run import Run
from . import result_hooks
from .base import DeformationAlgorithm
from .distance import metres_parameter
from .tables import check_lonlat_extent, make_field, verify_layer


def select_bands(text: str, dates, param: str) -> list[int]:
    """0-based band indexes of the dates listed in `text` (comma/space separated); all if empty.
    `param` names the parameter in errors."""
    tokens = [t for t in text.replace(";", ",").replace(" ", ",").split(",") if t.strip()]
    if not tokens:
        return list(range(len(dates)))
    out = []
    for tok in tokens:
        d = parse_date(tok)
        if d is None:
            raise InputError(
                f"{param}: {tok!r} is not a date; use YYYYMMDD or YYYY-MM-DD, separated by commas."
            )
        if d not in dates:
            near = min(dates, key=lambda x: abs((x - d).days))
            raise InputError(
                f"{param}: {d.isoformat()} is not a date of the stack (nearest: {near.isoformat()}; "
                f"the stack runs from {dates[0].isoformat()} to {dates[-1].isoformat()})."
            )
        i = dates.index(d)
        if i not in out:
            out.append(i)
    return sorted(out)


class ExtractProfiles(DeformationAlgorithm):
    NAME = "extractprofiles"
    DISPLAY = "Extract deformation profiles"
    GROUP = "analysis"
    TAGS = "profile,section,transect,line,subsidence,cumulative"
    HELP = (
        "Samples a deformation stack along lines, date by date: the cross-sections through a "
        "subsidence bowl that show it deepen and widen over time (the paper's profiles I-III, Fig. "
        "11). In the desktop the profile plot dock opens with the result.<br><br><b>Profile lines</b> "
        "may be in any CRS (they are reprojected to the stack's); <b>Profile name field</b> names each "
        "line (else its feature id is used). Multipart lines are sampled part by part, the distance "
        "continuing from one part to the next without the gap.<br><b>Sample spacing, metres</b>: one "
        "sample every so many metres on the ground along each line, from its start, across its "
        "vertices, plus its end point; 0 takes the pixel size (a finer spacing only repeats pixels "
        "with the nearest pixel). On a geographic stack (EPSG:4326) the metres are converted with the "
        "local scale.<br><b>Dates to extract</b>: a comma-separated subset (YYYYMMDD or YYYY-MM-DD); "
        "empty for all.<br><b>Interpolation</b>: the nearest pixel, or bilinear between pixel centres "
        "(smoother; empty as soon as one of the four pixels is NaN).<br><br>Outputs: the <b>Profile "
        "samples</b>, one point per sample with <i>profile</i>, <i>part</i>, <i>distance</i> (metres "
        "on the ellipsoid for a geographic stack, map units otherwise) and one field per date "
        "(d20170903, mm). Samples outside the raster or on incoherent (NaN) pixels are NULL; a line "
        "partly outside gives a warning, one wholly outside an error. Optionally the <b>Profiles "
        "table</b> (long CSV: profile, part, distance, x, y, date, value) and the <b>Profile chart</b> "
        "(PNG or SVG, one panel per profile, one curve per date coloured through time). Only small "
        "windows around the lines are read from the stack, never the whole raster."
    )
    HELP_ANCHOR = "extract-deformation-profiles-extractprofiles"

    INPUT = "INPUT"
    LINES = "LINES"
    ID_FIELD = "ID_FIELD"
    SPACING = "SPACING"
    DATES = "DATES"
    INTERPOLATION = "INTERPOLATION"
    OUTPUT = "OUTPUT"
    OUTPUT_CSV = "OUTPUT_CSV"
    OUTPUT_PLOT = "OUTPUT_PLOT"
    PROFILE_COUNT = "PROFILE_COUNT"
    SAMPLE_COUNT = "SAMPLE_COUNT"
    OUTSIDE_COUNT = "OUTSIDE_COUNT"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Deformation stack"))
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.LINES, "Profile lines", [QgsProcessing.TypeVectorLine])
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.ID_FIELD, "Profile name field", parentLayerParameterName=self.LINES, optional=True
            )
        )
        spacing = metres_parameter(
            self.SPACING,
            "Sample spacing, metres (0 = pixel size)",
            0.0,
            "Distance between samples along each line, in metres on the ground whatever the stack's "
            "CRS (on a geographic stack converted with the local scale); 0 samples every pixel size.",
            optional=True,
        )
        self.addParameter(spacing)
        dates = QgsProcessingParameterString(self.DATES, "Dates to extract (empty = all)", optional=True)
        dates.setHelp("Comma-separated dates of the stack, YYYYMMDD or YYYY-MM-DD; empty for all dates.")
        self.addParameter(dates)
        self.addParameter(
            QgsProcessingParameterEnum(
                self.INTERPOLATION, "Interpolation", list(INTERPOLATIONS), defaultValue=1
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, "Profile samples", QgsProcessing.TypeVectorPoint)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_CSV,
                "Profiles table (long CSV)",
                "CSV files (*.csv)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_PLOT,
                "Profile chart",
                "PNG files (*.png);;SVG files (*.svg)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.PROFILE_COUNT, "Profiles"))
        self.addOutput(QgsProcessingOutputNumber(self.SAMPLE_COUNT, "Samples per date"))
        self.addOutput(QgsProcessingOutputNumber(self.OUTSIDE_COUNT, "Samples outside the raster"))
        self.addOutput(
            QgsProcessingOutputNumber(self.NULL_GEOMETRY_COUNT, "Lines without geometry (skipped)")
        )
        self.addOutput(
            QgsProcessingOutputNumber(self.MASKED_VALUES, "Values read as nodata (sentinels, masks, spikes)")
        )

    # -- lines ---------------------------------------------------------------------------
    def _lines(self, source, id_field: str, crs: QgsCoordinateReferenceSystem, context, feedback, run: Run):
        """(name, parts) with parts as (n, 2) arrays in the stack's CRS."""
        check_lonlat_extent(source, self.LINES)
        ct = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
        idx = source.fields().lookupField(id_field) if id_field else -1
        lines = []
        seen: dict[str, int] = {}
        for feat in source.getFeatures():
            run.check_cancelled()
            geom = QgsGeometry(feat.geometry())
            value = feat.attribute(idx) if idx >= 0 else None
            name = str(value) if value not in (None, "") and not _is_null(value) else str(feat.id())
            if name in seen:
                seen[name] += 1
                name = f"{name} ({seen[name]})"
            else:
                seen[name] = 1
            if geom.isNull() or geom.isEmpty():
                feedback.pushWarning(f"Line {name!r} has no geometry; skipped.")
                validity.count_dropped(self.LINES, 1)  # NULL_GEOMETRY_COUNT
                continue
            if ct.isValid() and not ct.isShortCircuited():
                try:
                    geom.transform(ct)
                except QgsCsException as e:
                    raise QgsProcessingException(
                        f"{self.LINES}: line {name!r} cannot be transformed to the stack's CRS "
                        f"({crs.authid()}): {e}"
                    ) from e
            if QgsWkbTypes.isMultiType(geom.wkbType()):
                polylines = geom.asMultiPolyline()
            else:
                polylines = [geom.asPolyline()]
            parts = [np.array([(p.x(), p.y()) for p in pl], dtype="float64") for pl in polylines if len(pl)]
            lines.append((name, parts))
        if not lines:
            raise QgsProcessingException(f"{self.LINES}: the layer holds no line with a geometry.")
        return lines

    @staticmethod
    def _ellipsoidal_distances(prof, crs, context) -> None:
        """Replace planar distances in degrees by metres on the ellipsoid (geographic stack CRS)."""
        da = QgsDistanceArea()
        da.setSourceCrs(crs, context.transformContext())
        da.setEllipsoid(crs.ellipsoidAcronym() or "EPSG:7030")
        pts = [QgsPointXY(x, y) for x, y in zip(prof.x, prof.y, strict=True)]
        d = np.zeros(prof.size)
        for j in range(1, prof.size):
            step = 0.0 if prof.part[j] != prof.part[j - 1] else da.measureLine(pts[j - 1], pts[j])
            d[j] = d[j - 1] + step
        prof.distance = d

    def _stack(self, parameters, context):
        """The stack's description and CRS (which must be set)."""
        info = self.stack_info(parameters, self.INPUT, context)
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        crs = layer.crs()
        if not crs.isValid():
            raise QgsProcessingException(
                f"{self.INPUT}: raster {layer.name()!r} has no CRS; assign one before extracting profiles."
            )
        return info, crs

    def _options(self, parameters, context, info, bands, feedback) -> tuple[ProfileOptions, str]:
        """What to sample, from the dialog, and how often on which scale (for the log)."""
        spacing = self.parameterAsDouble(parameters, self.SPACING, context) or None
        method = INTERPOLATIONS[self.parameterAsEnum(parameters, self.INTERPOLATION, context)]
        scale = ground_scale(info.crs, info.bounds)
        if scale.note:
            feedback.pushInfo(scale.note)
        step = spacing or min(info.res) * min(scale.kx, scale.ky)
        text = f"{method} sampling every {step:g} " + ("map units." if scale.identity else "m on the ground.")
        return ProfileOptions(spacing=spacing, bands=bands, method=method, scale=(scale.kx, scale.ky)), text

    def compute(self, parameters, context, feedback):
        run = self.run_context(feedback)
        info, crs = self._stack(parameters, context)
        source = self.parameterAsSource(parameters, self.LINES, context)
        if source is None:
            raise QgsProcessingException(f"{self.LINES}: no line layer given.")
        id_field = self.parameterAsString(parameters, self.ID_FIELD, context)
        text = self.parameterAsString(parameters, self.DATES, context) or ""
        bands = select_bands(text, info.dates, self.DATES)
        dates = [info.dates[i] for i in bands]
        lines = self._lines(source, id_field, crs, context, feedback, run)
        options, sampling = self._options(parameters, context, info, bands, feedback)
        feedback.pushInfo(f"{len(lines)} line(s), {len(dates)} date(s), {sampling}")
        profiles = extract_profiles(info.path, lines, options, run.stage(0.0, 0.8))
        if crs.isGeographic():
            for p in profiles:
                self._ellipsoidal_distances(p, crs, context)
        for p in profiles:
            if p.outside:
                feedback.pushWarning(
                    f"Line {p.name!r}: {p.outside} of {p.size} samples lie outside the raster; "
                    "their values are NULL."
                )
        dest_id, total = self._write_samples(parameters, context, profiles, dates, crs, run.stage(0.8, 0.95))
        results = {
            self.OUTPUT: dest_id,
            self.PROFILE_COUNT: len(profiles),
            self.SAMPLE_COUNT: total,
            self.OUTSIDE_COUNT: sum(p.outside for p in profiles),
            self.NULL_GEOMETRY_COUNT: validity.dropped_count(),
        }
        csv_path = self.parameterAsFileOutput(parameters, self.OUTPUT_CSV, context)
        if csv_path:
            write_csv(csv_path, profiles, dates)
            results[self.OUTPUT_CSV] = csv_path
        plot_path = self.parameterAsFileOutput(parameters, self.OUTPUT_PLOT, context)
        if plot_path:
            results[self.OUTPUT_PLOT] = self._plot(plot_path, profiles, dates, info.units, crs, feedback)
        # the desktop's profile dock (if loaded) shows the layer once QGIS has loaded it
        result_hooks.attach(context, self.NAME, dest_id, feedback)
        run.progress(1.0)
        return results

    def _write_samples(self, parameters, context, profiles, dates, crs, run: Run) -> tuple[str, int]:
        """One point per sample into OUTPUT; returns its id and the number of samples."""
        fields = QgsFields()
        fields.append(make_field("profile", QVariant.String))
        fields.append(make_field("part", QVariant.Int))
        fields.append(make_field("distance", QVariant.Double))
        for d in dates:
            fields.append(make_field(field_name(d), QVariant.Double))
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Point, crs)
        if sink is None:
            raise QgsProcessingException(f"{self.OUTPUT}: cannot create the output layer.")
        total = sum(p.size for p in profiles)
        done = 0
        for p in profiles:
            for j in range(p.size):
                f = QgsFeature(fields)
                f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(float(p.x[j]), float(p.y[j]))))
                vals = p.values[:, j]
                f.setAttributes(
                    [p.name, int(p.part[j]), float(p.distance[j])]
                    + [None if np.isnan(v) else float(v) for v in vals]
                )
                if not sink.addFeature(f, QgsFeatureSink.FastInsert):
                    raise QgsProcessingException(f"{self.OUTPUT}: cannot write a sample: {sink.lastError()}")
            done += p.size
            run.check_cancelled()
            run.progress(done / max(total, 1))
        del sink  # closes a file output: its write errors show now
        verify_layer(dest_id, total, self.OUTPUT, context)
        return dest_id, total

    def _plot(self, plot_path: str, profiles, dates, units: str, crs, feedback) -> str:
        """The chart, one panel per profile; returns its path."""
        try:
            from ..core.profile_plot import save_profile_plot
        except ImportError as e:
            raise QgsProcessingException(
                f"{self.OUTPUT_PLOT} needs matplotlib (Debian: apt install python3-matplotlib)."
            ) from e
        if not os.path.splitext(plot_path)[1]:
            plot_path += ".png"
        curves = save_profile_plot(
            plot_path,
            profiles,
            dates,
            units=units,
            distance_units="m" if crs.isGeographic() else _map_units(crs),
        )
        feedback.pushInfo(f"Profile chart with {curves} curve(s) written to {plot_path}.")
        return plot_path


def _is_null(value) -> bool:
    return hasattr(value, "isNull") and value.isNull()


def _map_units(crs: QgsCoordinateReferenceSystem) -> str:
    from qgis.core import QgsUnitTypes

    return QgsUnitTypes.toAbbreviatedString(crs.mapUnits()) or "map units"
