"""Point time series from a QGIS point layer, for the algorithms that read one (pointstostack,
failuretime): the labels of their format and unit choices and the layer -> core.points reader."""

from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsProcessingException
from qgis.PyQt.QtCore import QVariant

from ..core.points import PointSeries, series_from_table
from ..core.run import Run
from .tables import check_lonlat_extent

# the choices of the FORMAT and UNITS enums, in the order of core.points.FORMATS and UNITS
FORMAT_LABELS = [
    "Auto-detect",
    "One field per date (DYYYYMMDD, YYYYMMDD, d_YYYYMMDD)",
    "StaMPS Visualizer export",
]
UNIT_LABELS = ["Auto (DePSI: m, otherwise mm)", "mm", "cm", "m"]


def crs_string(crs: QgsCoordinateReferenceSystem) -> str | None:
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


def layer_series(source, param: str, fmt: str, units: str, run: Run) -> PointSeries:
    """The point series of the feature source given in parameter `param` (named in errors):
    one field per date or a StaMPS export (`fmt`, `units` as core.points). Features without a
    geometry are dropped, counted (``null_geometry``) and noted; `run` gets the progress over the
    features and the cancel button."""
    check_lonlat_extent(source, param)
    names = [f.name() for f in source.fields()]
    xy: list[tuple[float, float]] = []  # filled as the rows are read (series_from_table reads it last)
    null_ids: list[int] = []
    total = max(1, source.featureCount())

    def rows():
        for i, feat in enumerate(source.getFeatures()):
            if i % 1000 == 0:
                run.check_cancelled()
                run.progress(i / total)
            geom = feat.geometry()
            if geom is None or geom.isNull() or geom.isEmpty():
                null_ids.append(feat.id())  # dropped, counted and reported
                continue
            pt = geom.asPoint() if not geom.isMultipart() else geom.centroid().asPoint()
            xy.append((pt.x(), pt.y()))
            yield [_plain(v) for v in feat.attributes()]

    if source.featureCount() == 0:
        raise QgsProcessingException(
            f"{param}: the layer {source.sourceName()!r} has no features; give a layer with points."
        )
    series = series_from_table(
        names,
        rows(),
        what=f"{param} {source.sourceName()!r}",
        fmt=fmt,
        units=units,
        crs=crs_string(source.sourceCrs()),
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
