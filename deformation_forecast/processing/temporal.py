"""Stacks in the QGIS Temporal Controller: one layer per date with its temporal range, one ramp."""

from __future__ import annotations

import datetime as dt
import os

from qgis.core import (
    Qgis,
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


def median_step(dates: list[dt.date]) -> dt.timedelta:
    """The acquisition interval: the median gap between dates (one day at least)."""
    if len(dates) < 2:
        return dt.timedelta(days=1)
    gaps = sorted((b - a).days for a, b in zip(dates[:-1], dates[1:], strict=True))
    return dt.timedelta(days=max(1, gaps[len(gaps) // 2]))


def date_ranges(dates: list[dt.date]) -> list[QgsDateTimeRange]:
    """Each date's range: from it to the next date (the last lasts one acquisition interval), so
    each frame of the Temporal Controller (one acquisition interval) draws exactly one date."""
    step = median_step(dates)
    ends = list(dates[1:]) + [dates[-1] + step]
    # one second inside both ends: QGIS 3.22 tests overlaps as if both ends were included, so a
    # range ending where the next begins would draw two dates in one frame (twice the work)
    return [
        QgsDateTimeRange(_qdt(d).addSecs(1), _qdt(e).addSecs(-1), True, True)
        for d, e in zip(dates, ends, strict=True)
    ]


def set_layer_temporal_range(layer: QgsRasterLayer, dates: list[dt.date]) -> str:
    """Give one stack layer temporal properties: one range per band where QGIS has them (3.38+,
    the layer then animates by itself), else one range first..last date (the layer shows while
    the Temporal Controller is within the series). Returns the mode set."""
    props = layer.temporalProperties()
    props.setIsActive(True)
    ranges = date_ranges(dates)
    per_band = getattr(getattr(Qgis, "RasterTemporalMode", None), "FixedRangePerBand", None)
    if per_band is not None and hasattr(props, "setFixedRangePerBand"):
        props.setMode(per_band)
        props.setFixedRangePerBand({i + 1: r for i, r in enumerate(ranges)})
        return "per band"
    props.setMode(QgsRasterLayerTemporalProperties.ModeFixedTemporalRange)
    props.setFixedTemporalRange(QgsDateTimeRange(ranges[0].begin(), ranges[-1].end(), True, True))
    return "fixed range"


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
    # at the bottom of the layer tree: the user's own layers (faults, points) stay on top
    group = project.layerTreeRoot().addGroup(name)
    layers = []
    dates = info.dates
    for i, (d, rng) in enumerate(zip(dates, date_ranges(dates), strict=True)):
        lyr = QgsRasterLayer(path, f"{name} {d.isoformat()}", "gdal")
        apply_diverging_style(lyr, limit, band=i + 1, units=units)
        props = lyr.temporalProperties()
        props.setIsActive(True)
        props.setMode(QgsRasterLayerTemporalProperties.ModeFixedTemporalRange)
        props.setFixedTemporalRange(rng)
        project.addMapLayer(lyr, False)
        node = group.addLayer(lyr)
        node.setItemVisibilityChecked(True)
        node.setExpanded(False)
        layers.append(lyr)
    group.setExpanded(False)
    return group, layers


def configure_navigation(navigation, dates: list[dt.date]) -> None:
    """Set a QgsTemporalNavigationObject (the Temporal Controller) and the project's time settings
    to the series: first..last date (plus one interval, so the last frame is the last date), one
    frame per acquisition interval, animated mode, on the first frame."""
    from qgis.core import QgsInterval, QgsUnitTypes

    step = median_step(dates)
    extent = QgsDateTimeRange(_qdt(dates[0]), _qdt(dates[-1] + step), True, False)
    navigation.setNavigationMode(navigation.Animated)
    navigation.setTemporalExtents(extent)
    navigation.setFrameDuration(QgsInterval(step.days, QgsUnitTypes.TemporalDays))
    navigation.setCurrentFrameNumber(0)
    settings = QgsProject.instance().timeSettings()
    settings.setTemporalRange(extent)
    if hasattr(settings, "setTimeStep"):
        settings.setTimeStep(step.days)
        settings.setTimeStepUnit(QgsUnitTypes.TemporalDays)
