"""The animate action: per-date layers in one group below the user's layers, the Temporal
Controller set to first..last date with the acquisition interval as its step."""

from __future__ import annotations

import datetime as dt

import numpy as np
from qgis.core import (
    QgsDateTimeRange,
    QgsInterval,
    QgsProject,
    QgsRasterLayer,
    QgsTemporalNavigationObject,
    QgsUnitTypes,
    QgsVectorLayer,
)

from deformation_forecast.processing.temporal import configure_navigation, set_layer_temporal_range
from tests.conftest import make_dates


def test_animate_puts_dates_below_user_layers_and_sets_the_controller(
    gui, write_stack, qgis_iface, monkeypatch
):
    dates = make_dates(5, step=12)
    stack = QgsRasterLayer(
        write_stack(np.arange(30, dtype="float32").reshape(5, 2, 3) - 15, dates), "obs", "gdal"
    )
    faults = QgsVectorLayer("LineString?crs=EPSG:32647", "faults", "memory")
    project = QgsProject.instance()
    project.addMapLayers([stack, faults])
    navigation = QgsTemporalNavigationObject()
    monkeypatch.setattr(qgis_iface.mapCanvas(), "temporalController", lambda: navigation, raising=False)
    qgis_iface.setActiveLayer(stack)
    assert gui.animate_active_layer() == 5
    root = project.layerTreeRoot()
    names = [child.name() for child in root.children()]
    assert names[-1] == "obs (animation)"  # the last node draws below all the others
    assert names.index("faults") < names.index("obs (animation)")
    extent = navigation.temporalExtents()
    assert extent.begin().date().toPyDate() == dates[0]
    assert extent.end().date().toPyDate() == dates[-1] + dt.timedelta(days=12)
    assert navigation.frameDuration() == QgsInterval(12, QgsUnitTypes.TemporalDays)
    assert navigation.navigationMode() == QgsTemporalNavigationObject.Animated
    assert navigation.totalFrameCount() == 5  # one frame per date
    # frame 2 shows the layer of the third date and only it
    frame = navigation.dateTimeRangeForFrameNumber(2)
    group = root.findGroup("obs (animation)")
    shown = [
        n.layer().name()
        for n in group.findLayers()
        if n.layer().temporalProperties().isVisibleInTemporalRange(frame)
    ]
    assert shown == [f"obs (animation) {dates[2].isoformat()}"]


def test_forecast_layer_carries_its_period(qgis_app, write_stack):
    dates = make_dates(3, start=dt.date(2030, 1, 1), step=10)
    layer = QgsRasterLayer(write_stack(np.zeros((3, 2, 2), "float32"), dates), "fc", "gdal")
    mode = set_layer_temporal_range(layer, dates)
    props = layer.temporalProperties()
    assert props.isActive()
    before = QgsDateTimeRange(
        navigation_time(dt.date(2029, 6, 1)), navigation_time(dt.date(2029, 6, 2)), True, False
    )
    inside = QgsDateTimeRange(navigation_time(dates[1]), navigation_time(dates[1] + dt.timedelta(days=1)))
    assert not props.isVisibleInTemporalRange(before)
    assert props.isVisibleInTemporalRange(inside)
    assert mode in ("per band", "fixed range")


def navigation_time(d):
    from qgis.PyQt.QtCore import QDate, QDateTime, QTime

    return QDateTime(QDate(d.year, d.month, d.day), QTime(0, 0))


def test_configure_navigation_on_irregular_dates_uses_the_median_interval(qgis_app):
    dates = [dt.date(2020, 1, 1), dt.date(2020, 1, 7), dt.date(2020, 1, 13), dt.date(2020, 2, 24)]
    navigation = QgsTemporalNavigationObject()
    configure_navigation(navigation, dates)
    assert navigation.frameDuration() == QgsInterval(6, QgsUnitTypes.TemporalDays)
