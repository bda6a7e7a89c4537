"""Stacks in the QGIS Temporal Controller: one layer per date with its temporal range, one ramp."""

from __future__ import annotations

import datetime as dt
import os

from qgis.core import (
    QgsDateTimeRange,
    QgsLayerTreeGroup,
    QgsProject,
    QgsRasterLayer,
    QgsRasterLayerTemporalProperties,
)
from qgis.PyQt.QtCore import QDate, QDateTime, QTime

from ..core.stack import read_decimated, read_info
from .styling import apply_diverging_style, symmetric_limit


def _qdt(d: dt.date) -> QDateTime:
    return QDateTime(QDate(d.year, d.month, d.day), QTime(0, 0, 0))


def add_stack_as_temporal_layers(
    path: str,
    project: QgsProject | None = None,
    group_name: str | None = None,
    limit: float | None = None,
    units: str = "mm",
) -> tuple[QgsLayerTreeGroup, list[QgsRasterLayer]]:
    """Add each band of the stack at `path` as a layer whose temporal range runs from its date to
    the next one (the last lasts one median interval), all with the same diverging ramp, so the
    Temporal Controller animates the series. Returns the layer-tree group and the layers."""
    project = project or QgsProject.instance()
    info = read_info(path)
    if limit is None:
        # a robust common range from a decimated read of the last date (the largest displacement)
        last = read_decimated(path, -1, 512)
        limit = symmetric_limit(last)
    name = group_name or os.path.splitext(os.path.basename(path))[0]
    group = project.layerTreeRoot().insertGroup(0, name)
    layers = []
    dates = info.dates
    default_step = dt.timedelta(days=(dates[-1] - dates[0]).days // max(1, len(dates) - 1) or 1)
    for i, d in enumerate(dates):
        end = dates[i + 1] if i + 1 < len(dates) else d + default_step
        lyr = QgsRasterLayer(path, f"{name} {d.isoformat()}", "gdal")
        apply_diverging_style(lyr, limit, band=i + 1, units=units)
        props = lyr.temporalProperties()
        props.setIsActive(True)
        props.setMode(QgsRasterLayerTemporalProperties.ModeFixedTemporalRange)
        props.setFixedTemporalRange(QgsDateTimeRange(_qdt(d), _qdt(end), True, False))
        project.addMapLayer(lyr, False)
        node = group.addLayer(lyr)
        node.setItemVisibilityChecked(True)
        node.setExpanded(False)
        layers.append(lyr)
    return group, layers
