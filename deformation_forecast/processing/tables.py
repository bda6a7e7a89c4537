"""Helpers of the validation/analysis adapters: attribute-only table sinks, reading vector layers
into plain numpy geometry in a raster's CRS, optional plot outputs."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFileDestination,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QDate, QVariant

from ..core import validity

PLOT_FILTER = "PNG files (*.png);;SVG files (*.svg);;PDF files (*.pdf)"

TYPES = {
    "str": QVariant.String,
    "int": QVariant.Int,
    "float": QVariant.Double,
    "date": QVariant.Date,
    "bool": QVariant.Bool,
}


def make_field(name: str, kind) -> QgsField:
    """A QgsField of the QVariant type `kind`. QGIS >= 3.38 takes the type as a QMetaType.Type and
    warns (DeprecationWarning in the user's log) on the QVariant.Type constructor; the basic types
    have the same numbers in both enums."""
    if Qgis.QGIS_VERSION_INT >= 33800:
        from qgis.PyQt.QtCore import QMetaType

        return QgsField(name, QMetaType.Type(int(kind)))
    return QgsField(name, kind)


def table_sink(name: str, description: str, optional: bool = True) -> QgsProcessingParameterFeatureSink:
    """A table (no geometry) output, written as GeoPackage/CSV/... or a memory layer."""
    return QgsProcessingParameterFeatureSink(
        name, description, type=QgsProcessing.TypeVector, createByDefault=True, optional=optional
    )


def plot_destination(
    name: str = "OUTPUT_PLOT", description: str = "Plot"
) -> QgsProcessingParameterFileDestination:
    return QgsProcessingParameterFileDestination(
        name, description, fileFilter=PLOT_FILTER, optional=True, createByDefault=False
    )


def save_plot(plot, *args, **kwargs) -> str:
    """Run a core plot function; a missing matplotlib becomes a clear error.

    Matplotlib leaves reference cycles behind (font-pattern parse tracebacks and figure trees);
    they are collected here, while QGIS is alive, rather than at interpreter exit, where a
    collection after QGIS has shut down was seen to crash the process (pytest-qgis, QGIS 3.22).
    """
    import gc

    try:
        out = plot(*args, **kwargs)
    except ImportError as e:
        raise QgsProcessingException(
            f"The plot needs matplotlib (apt install python3-matplotlib): {e}"
        ) from e
    gc.collect()
    return out


def _value(v: Any, kind: str) -> Any:
    if v is None:
        return None
    if kind == "float":
        v = float(v)
        return None if not math.isfinite(v) else v
    if kind == "int":
        return int(v)
    if kind == "date":
        if isinstance(v, dt.date):
            return QDate(v.year, v.month, v.day)
        return None
    if kind == "bool":
        return bool(v)
    return str(v)


def write_table(
    alg, parameters, name: str, context, columns: Sequence[tuple[str, str]], rows: Sequence[dict]
) -> str | None:
    """Write `rows` (dicts) into the table sink `name` with `columns` [(field, kind)], kind among
    str/int/float/date/bool; NaN becomes NULL. Returns the destination id, or None when the
    (optional) output was not asked for."""
    fields = QgsFields()
    for col, kind in columns:
        fields.append(make_field(col, TYPES[kind]))
    sink, dest = alg.parameterAsSink(
        parameters, name, context, fields, QgsWkbTypes.NoGeometry, QgsCoordinateReferenceSystem()
    )
    if sink is None:
        return None
    for row in rows:
        f = QgsFeature(fields)
        f.setAttributes([_value(row.get(col), kind) for col, kind in columns])
        if not sink.addFeature(f, QgsFeatureSink.FastInsert):
            raise QgsProcessingException(f"{name}: cannot write a row: {sink.lastError()}")
    del sink  # closes a file output: a full disk shows in what was written
    verify_layer(dest, len(rows), name, context)
    return dest


GEOMETRY_NAMES = {
    QgsWkbTypes.PointGeometry: "point",
    QgsWkbTypes.LineGeometry: "line",
    QgsWkbTypes.PolygonGeometry: "polygon",
    QgsWkbTypes.NullGeometry: "no",
    QgsWkbTypes.UnknownGeometry: "unknown",
}


def geometry_kind(source) -> int:
    return QgsWkbTypes.geometryType(source.wkbType())


def require_geometry(source, param: str, wanted: int) -> None:
    """Raise naming `param` when the layer's geometries are not of the `wanted` type."""
    got = geometry_kind(source)
    if got != wanted:
        raise QgsProcessingException(
            f"{param}: layer {source.sourceName()!r} has {GEOMETRY_NAMES.get(got, 'other')} geometries; "
            f"a {GEOMETRY_NAMES[wanted]} layer is needed."
        )


def require_field(source, param: str, field: str) -> int:
    idx = source.fields().lookupField(field)
    if idx < 0:
        names = [f.name() for f in source.fields()]
        raise QgsProcessingException(
            f"{param}: field {field!r} does not exist in layer {source.sourceName()!r}; its fields are {names}."
        )
    return idx


def transform_to(source_crs, raster_crs, context) -> QgsCoordinateTransform | None:
    if not source_crs.isValid() or not raster_crs.isValid() or source_crs == raster_crs:
        return None
    return QgsCoordinateTransform(source_crs, raster_crs, context.transformContext())


def _transformed(feature, xform, param: str):
    g = feature.geometry()
    if g is None or g.isNull() or g.isEmpty():
        return None
    if xform is not None:
        g = type(g)(g)
        try:
            g.transform(xform)
        except QgsCsException as e:
            raise QgsProcessingException(
                f"{param}: feature {feature.id()} cannot be reprojected to the raster's CRS: {e}"
            ) from e
    return g


def feature_label(feature, idx: int) -> str:
    if idx >= 0:
        v = feature.attribute(idx)
        if v is not None and not (hasattr(v, "isNull") and v.isNull()) and str(v) != "NULL":
            return str(v)
    return str(feature.id())


def read_lines(source, param: str, raster_crs, context, name_field: str = "", feedback=None):
    """(names, faults) from a line layer in the raster's CRS: one fault = list of (N, 2) arrays.
    Features sharing a name are one fault."""
    import numpy as np

    require_geometry(source, param, QgsWkbTypes.LineGeometry)
    idx = require_field(source, f"{param} name field", name_field) if name_field else -1
    check_lonlat_extent(source, param)
    xform = transform_to(source.sourceCrs(), raster_crs, context)
    skipped = 0  # features without geometry: reported, never dropped in silence
    order: dict[str, list] = {}
    for f in source.getFeatures():
        if feedback is not None and feedback.isCanceled():
            raise QgsProcessingException("Cancelled; nothing was written.")
        g = _transformed(f, xform, param)
        if g is None:
            skipped += 1
            continue
        parts = g.asMultiPolyline() if g.isMultipart() else [g.asPolyline()]
        arrays = [np.array([[p.x(), p.y()] for p in part]) for part in parts if len(part) >= 2]
        if arrays:
            order.setdefault(feature_label(f, idx), []).extend(arrays)
    report_skipped(feedback, param, skipped)
    if not order:
        raise QgsProcessingException(f"{param}: layer {source.sourceName()!r} holds no line.")
    return list(order), list(order.values())


def read_polygons(source, param: str, raster_crs, context, field: str, feedback=None):
    """(GeoJSON geometry dicts, unit values) from a polygon layer in the raster's CRS."""
    import json

    require_geometry(source, param, QgsWkbTypes.PolygonGeometry)
    idx = require_field(source, f"{param}_FIELD", field)
    check_lonlat_extent(source, param)
    xform = transform_to(source.sourceCrs(), raster_crs, context)
    skipped = 0  # features without geometry: reported, never dropped in silence
    geoms, units = [], []
    for f in source.getFeatures():
        if feedback is not None and feedback.isCanceled():
            raise QgsProcessingException("Cancelled; nothing was written.")
        g = _transformed(f, xform, param)
        if g is None:
            skipped += 1
            continue
        geoms.append(json.loads(g.asJson()))
        units.append(feature_label(f, idx))
    report_skipped(feedback, param, skipped)
    if not geoms:
        raise QgsProcessingException(f"{param}: layer {source.sourceName()!r} holds no polygon.")
    return geoms, units


def verify_layer(dest_id: str, expected: int, name: str, context) -> None:
    """After its sink was closed, the output layer `dest_id` must open and hold `expected`
    features: a GeoPackage on a full disk is otherwise published corrupt or short."""
    from qgis.core import QgsProcessingUtils

    layer = QgsProcessingUtils.mapLayerFromString(dest_id, context)
    count = layer.featureCount() if layer is not None and layer.isValid() else -1
    if count != expected:
        raise QgsProcessingException(
            f"{name}: the output layer {dest_id!r} holds {max(count, 0)} of the {expected} features "
            "written (a full or read-only disk?); free some space or choose another output file. "
            "Nothing was kept."
        )


def check_lonlat_extent(source, param: str) -> None:
    """A layer whose CRS is geographic must hold longitudes/latitudes. A GeoJSON file without a
    `crs` member is read as WGS 84 (RFC 7946); holding projected coordinates (metres), it would
    otherwise be reprojected to nowhere ("has no vertices", "outside the raster")."""
    crs = source.sourceCrs()
    if not crs.isValid() or not crs.isGeographic():
        return
    ext = source.sourceExtent()
    if ext.isEmpty() and ext.width() == 0 and ext.xMinimum() == 0:
        return
    if ext.xMinimum() < -360 or ext.xMaximum() > 360 or ext.yMinimum() < -90.5 or ext.yMaximum() > 90.5:
        raise QgsProcessingException(
            f"{param}: layer {source.sourceName()!r} has coordinates from {ext.xMinimum():.6g}, "
            f"{ext.yMinimum():.6g} to {ext.xMaximum():.6g}, {ext.yMaximum():.6g}, which are not "
            f"longitude/latitude although its CRS is {crs.authid() or 'geographic'} (a GeoJSON file "
            "without a 'crs' member is read as WGS 84). Assign the layer its real CRS (Layer "
            "Properties > Source, or save it with one) and run again."
        )


def report_skipped(feedback, param: str, skipped: int) -> None:
    """Say how many features had no geometry (NULL or empty) and were skipped (and count them:
    core.validity.dropped_count, the algorithm's NULL_GEOMETRY_COUNT)."""
    validity.count_dropped(param, skipped)
    if skipped and feedback is not None:
        feedback.pushWarning(f"{param}: {skipped} feature(s) without geometry (NULL or empty) skipped.")
