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

from ..core.dates import field_name, parse_date
from ..core.errors import InputError
from ..core.metric import ground_scale
from ..core.profiles import INTERPOLATIONS, extract_profiles, write_csv
from . import result_hooks
from .base import DeformationAlgorithm
from .distance import metres_parameter
from .tables import check_lonlat_extent, make_field, verify_layer


def select_bands(text: str, dates) -> list[int]:
    """0-based band indexes of the dates listed in `text` (comma/space separated); all if empty."""
    tokens = [t for t in text.replace(";", ",").replace(" ", ",").split(",") if t.strip()]
    if not tokens:
        return list(range(len(dates)))
    out = []
    for tok in tokens:
        d = parse_date(tok)
        if d is None:
            raise InputError(
                f"DATES: {tok!r} is not a date; use YYYYMMDD or YYYY-MM-DD, separated by commas."
            )
        if d not in dates:
            near = min(dates, key=lambda x: abs((x - d).days))
            raise InputError(
                f"DATES: {d.isoformat()} is not a date of the stack (nearest: {near.isoformat()}; "
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

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Deformation stack"))
        self.addParameter(
            QgsProcessingParameterFeatureSource("LINES", "Profile lines", [QgsProcessing.TypeVectorLine])
        )
        self.addParameter(
            QgsProcessingParameterField(
                "ID_FIELD", "Profile name field", parentLayerParameterName="LINES", optional=True
            )
        )
        spacing = metres_parameter(
            "SPACING",
            "Sample spacing, metres (0 = pixel size)",
            0.0,
            "Distance between samples along each line, in metres on the ground whatever the stack's "
            "CRS (on a geographic stack converted with the local scale); 0 samples every pixel size.",
            optional=True,
        )
        self.addParameter(spacing)
        dates = QgsProcessingParameterString("DATES", "Dates to extract (empty = all)", optional=True)
        dates.setHelp("Comma-separated dates of the stack, YYYYMMDD or YYYY-MM-DD; empty for all dates.")
        self.addParameter(dates)
        self.addParameter(
            QgsProcessingParameterEnum("INTERPOLATION", "Interpolation", list(INTERPOLATIONS), defaultValue=1)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink("OUTPUT", "Profile samples", QgsProcessing.TypeVectorPoint)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_CSV",
                "Profiles table (long CSV)",
                "CSV files (*.csv)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_PLOT",
                "Profile chart",
                "PNG files (*.png);;SVG files (*.svg)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputNumber("PROFILE_COUNT", "Profiles"))
        self.addOutput(QgsProcessingOutputNumber("SAMPLE_COUNT", "Samples per date"))
        self.addOutput(QgsProcessingOutputNumber("OUTSIDE_COUNT", "Samples outside the raster"))

    # -- lines ---------------------------------------------------------------------------
    def _lines(self, source, id_field: str, crs: QgsCoordinateReferenceSystem, context, feedback):
        """(name, parts) with parts as (n, 2) arrays in the stack's CRS."""
        check_lonlat_extent(source, "LINES")
        ct = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
        idx = source.fields().lookupField(id_field) if id_field else -1
        lines, seen = [], {}
        for feat in source.getFeatures():
            self.check_canceled(feedback)
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
                continue
            if ct.isValid() and not ct.isShortCircuited():
                try:
                    geom.transform(ct)
                except QgsCsException as e:
                    raise QgsProcessingException(
                        f"LINES: line {name!r} cannot be transformed to the stack's CRS ({crs.authid()}): {e}"
                    ) from e
            if QgsWkbTypes.isMultiType(geom.wkbType()):
                polylines = geom.asMultiPolyline()
            else:
                polylines = [geom.asPolyline()]
            parts = [np.array([(p.x(), p.y()) for p in pl], dtype="float64") for pl in polylines if len(pl)]
            lines.append((name, parts))
        if not lines:
            raise QgsProcessingException("LINES: the layer holds no line with a geometry.")
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

    def compute(self, parameters, context, feedback):
        info = self.stack_info(parameters, "INPUT", context)
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        crs = layer.crs()
        if not crs.isValid():
            raise QgsProcessingException(
                f"INPUT: raster {layer.name()!r} has no CRS; assign one before extracting profiles."
            )
        source = self.parameterAsSource(parameters, "LINES", context)
        if source is None:
            raise QgsProcessingException("LINES: no line layer given.")
        id_field = self.parameterAsString(parameters, "ID_FIELD", context)
        spacing = self.parameterAsDouble(parameters, "SPACING", context) or None
        method = INTERPOLATIONS[self.parameterAsEnum(parameters, "INTERPOLATION", context)]
        bands = select_bands(self.parameterAsString(parameters, "DATES", context) or "", info.dates)
        dates = [info.dates[i] for i in bands]

        lines = self._lines(source, id_field, crs, context, feedback)
        scale = ground_scale(info.crs, info.bounds)
        if scale.note:
            feedback.pushInfo(scale.note)
        step = spacing or min(info.res) * min(scale.kx, scale.ky)
        feedback.pushInfo(
            f"{len(lines)} line(s), {len(dates)} date(s), {method} sampling every {step:g} "
            + ("map units." if scale.identity else "m on the ground.")
        )

        def progress(f):
            self.check_canceled(feedback)
            feedback.setProgress(80 * f)

        profiles = extract_profiles(
            info.path,
            lines,
            spacing=spacing,
            bands=bands,
            method=method,
            progress=progress,
            mb=self.memory_mb,
            scale=(scale.kx, scale.ky),
        )
        geographic = crs.isGeographic()
        if geographic:
            for p in profiles:
                self._ellipsoidal_distances(p, crs, context)
        outside = 0
        for p in profiles:
            if p.outside:
                outside += p.outside
                feedback.pushWarning(
                    f"Line {p.name!r}: {p.outside} of {p.size} samples lie outside the raster; "
                    "their values are NULL."
                )

        fields = QgsFields()
        fields.append(make_field("profile", QVariant.String))
        fields.append(make_field("part", QVariant.Int))
        fields.append(make_field("distance", QVariant.Double))
        for d in dates:
            fields.append(make_field(field_name(d), QVariant.Double))
        sink, dest_id = self.parameterAsSink(parameters, "OUTPUT", context, fields, QgsWkbTypes.Point, crs)
        if sink is None:
            raise QgsProcessingException("OUTPUT: cannot create the output layer.")
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
                    raise QgsProcessingException(f"OUTPUT: cannot write a sample: {sink.lastError()}")
            done += p.size
            self.check_canceled(feedback)
            feedback.setProgress(80 + 15 * done / max(total, 1))
        del sink  # closes a file output: its write errors show now
        verify_layer(dest_id, total, "OUTPUT", context)
        results = {
            "OUTPUT": dest_id,
            "PROFILE_COUNT": len(profiles),
            "SAMPLE_COUNT": total,
            "OUTSIDE_COUNT": outside,
        }
        csv_path = self.parameterAsFileOutput(parameters, "OUTPUT_CSV", context)
        if csv_path:
            write_csv(csv_path, profiles, dates)
            results["OUTPUT_CSV"] = csv_path
        plot_path = self.parameterAsFileOutput(parameters, "OUTPUT_PLOT", context)
        if plot_path:
            try:
                from ..core.profile_plot import save_profile_plot
            except ImportError as e:
                raise QgsProcessingException(
                    "OUTPUT_PLOT needs matplotlib (Debian: apt install python3-matplotlib)."
                ) from e
            if not os.path.splitext(plot_path)[1]:
                plot_path += ".png"
            curves = save_profile_plot(
                plot_path,
                profiles,
                dates,
                units=info.units,
                distance_units="m" if geographic else _map_units(crs),
            )
            feedback.pushInfo(f"Profile chart with {curves} curve(s) written to {plot_path}.")
            results["OUTPUT_PLOT"] = plot_path
        # the desktop's profile dock (if loaded) shows the layer once QGIS has loaded it
        result_hooks.attach(context, self.NAME, dest_id, feedback)
        feedback.setProgress(100)
        return results


def _is_null(value) -> bool:
    return hasattr(value, "isNull") and value.isNull()


def _map_units(crs: QgsCoordinateReferenceSystem) -> str:
    from qgis.core import QgsUnitTypes

    return QgsUnitTypes.toAbbreviatedString(crs.mapUnits()) or "map units"
