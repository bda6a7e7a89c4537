"""The profile dock offscreen: curves per profile and date, PNG export, and the plugin's hook that
opens it after extractprofiles ran with its output loaded (as from the Toolbox)."""

import os
import shutil
import sys

import numpy as np
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from tests.conftest import make_dates

sys.path.insert(0, "/usr/share/qgis/python/plugins")

X0, Y0 = 500000.0, 4300000.0


def _profile_layer(n_profiles=2, n_samples=25, dates=None):
    dates = dates or make_dates(5)
    fields = "&".join(
        ["field=profile:string", "field=part:integer", "field=distance:double"]
        + [f"field={d.strftime('d%Y%m%d')}:double" for d in dates]
    )
    layer = QgsVectorLayer(f"Point?crs=EPSG:32647&{fields}", "profiles", "memory")
    feats = []
    for p in range(n_profiles):
        for j in range(n_samples):
            f = QgsFeature(layer.fields())
            f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(X0 + 20 * j, Y0 - 100 * p)))
            bowl = -np.exp(-(((j - n_samples / 2) / 5.0) ** 2))
            vals = [float(bowl * 10 * (k + 1) * (p + 1)) for k in range(len(dates))]
            if j == 3:
                vals[0] = None  # a NULL sample
            f.setAttributes([["I", "II", "III"][p], 0, 20.0 * j, *vals])
            feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def _artifact(path):
    """Keep a copy of a rendered image where DF_TEST_ARTIFACTS points (optional)."""
    folder = os.environ.get("DF_TEST_ARTIFACTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        shutil.copy(path, folder)


def test_dock_renders_offscreen_with_expected_curves(qgis_app, qgis_iface, tmp_path):
    from deformation_forecast.gui.profile_dock import ProfileDock, profiles_from_layer

    layer = _profile_layer(n_profiles=3, dates=make_dates(5))
    profiles, dates = profiles_from_layer(layer)
    assert [p.name for p in profiles] == ["I", "II", "III"] and len(dates) == 5
    assert np.isnan(profiles[0].values[0, 3])

    dock = ProfileDock(qgis_iface)
    dock.resize(900, 600)
    assert dock.show_layer(layer) == 3 * 5
    assert dock.curve_count() == 15
    # untick a profile and two dates: 2 profiles x 3 dates
    dock.profile_list.item(1).setCheckState(0)
    dock.date_list.item(0).setCheckState(0)
    dock.date_list.item(4).setCheckState(0)
    assert dock.curve_count() == 6
    png = str(tmp_path / "profile_dock.png")
    dock.export(png)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 5000
    shot = str(tmp_path / "profile_dock_widget.png")
    dock.show()
    assert dock.grab().save(shot, "PNG")
    _artifact(png)
    _artifact(shot)
    dock.close()


def test_many_dates_start_with_a_few_curves(qgis_app, qgis_iface):
    from deformation_forecast.gui.profile_dock import ProfileDock

    dock = ProfileDock(qgis_iface)
    layer = _profile_layer(n_profiles=1, dates=make_dates(40))
    assert dock.show_layer(layer) == 12  # default: 12 evenly spread dates
    dock.all_button.click()
    assert dock.curve_count() == 40


def test_not_a_profile_layer_is_explained(qgis_app, qgis_iface):
    from deformation_forecast.gui.profile_dock import ProfileDock

    dock = ProfileDock(qgis_iface)
    layer = QgsVectorLayer("Point?crs=EPSG:32647&field=id:integer", "pts", "memory")
    assert dock.show_layer(layer) == 0
    assert "not a profile layer" in dock.message.text()


def test_menu_entries_open_the_docks(gui):
    texts = [a.text() for a in gui.actions]
    assert texts == [
        "Animate active stack in the Temporal Controller",
        "Style as deformation",
        "Profile plot",
        "Time series at a pixel",
        "Model comparison",
        "Inverse velocity (failure time)",
    ]
    gui.actions[2].trigger()
    assert "profiles" in gui.docks and not gui.docks["profiles"].isHidden()
    gui.actions[3].trigger()
    assert "timeseries" in gui.docks and not gui.docks["timeseries"].isHidden()
    gui.actions[4].trigger()
    assert "comparison" in gui.docks and not gui.docks["comparison"].isHidden()


def test_animate_action_on_a_stack_and_on_something_else(gui, write_stack):
    path = write_stack(-np.arange(60, dtype="float32").reshape(3, 4, 5))
    layer = QgsRasterLayer(path, "stack", "gdal")
    QgsProject.instance().addMapLayer(layer)
    try:
        gui.iface.setActiveLayer(layer)
        assert gui.animate_active_layer() == 3
        animated = [
            lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.temporalProperties().isActive()
        ]
        assert len(animated) == 3
        other = QgsVectorLayer("Point?crs=EPSG:32647", "points", "memory")
        QgsProject.instance().addMapLayer(other)
        gui.iface.setActiveLayer(other)
        assert gui.animate_active_layer() == 0
    finally:
        QgsProject.instance().removeAllMapLayers()
        QgsProject.instance().layerTreeRoot().removeAllChildren()


def test_dock_opens_after_a_run_that_loads_its_output(gui, write_stack):
    import processing

    from deformation_forecast.processing import result_hooks

    assert result_hooks.listeners("extractprofiles")
    data = (np.arange(20 * 30).reshape(1, 20, 30) * -0.1 * np.arange(1, 5)[:, None, None]).astype("float32")
    path = write_stack(data)
    lines = QgsVectorLayer("LineString?crs=EPSG:32647&field=name:string", "lines", "memory")
    f = QgsFeature(lines.fields())
    f.setGeometry(QgsGeometry.fromPolylineXY([QgsPointXY(X0 + 30, Y0 - 30), QgsPointXY(X0 + 500, Y0 - 300)]))
    f.setAttributes(["I"])
    lines.dataProvider().addFeatures([f])
    assert "profiles" not in gui.docks
    # as the Toolbox does with "Open output file after running": results loaded into the project
    res = processing.runAndLoadResults(
        "deformation_forecast:extractprofiles",
        {"INPUT": path, "LINES": lines, "ID_FIELD": "name", "OUTPUT": "TEMPORARY_OUTPUT"},
    )
    assert res["PROFILE_COUNT"] == 1
    dock = gui.docks["profiles"]
    assert not dock.isHidden()
    assert [p.name for p in dock.profiles] == ["I"]
    assert dock.curve_count() == 4
    for layer in list(QgsProject.instance().mapLayers().values()):
        if layer.name().startswith("Profile samples"):
            QgsProject.instance().removeMapLayer(layer.id())
    # nobody listens any more once the GUI is unloaded
    gui.unload()
    assert not result_hooks.listeners("extractprofiles")


def test_hovering_the_chart_marks_the_sample_on_the_map(qgis_app, qgis_iface):
    """As Profile Tool does: the mouse over a profile's chart puts a marker on the map canvas at the
    sample under it (and a line on the chart); leaving the chart hides both."""
    from qgis.core import QgsCoordinateReferenceSystem
    from qgis.gui import QgsVertexMarker

    from deformation_forecast.gui.profile_dock import HOVER_GID, ProfileDock

    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32647"))
    dock = ProfileDock(qgis_iface)
    layer = _profile_layer(n_profiles=2, n_samples=25)
    dock.show_layer(layer)
    markers = lambda: [i for i in canvas.scene().items() if isinstance(i, QgsVertexMarker) and i.isVisible()]  # noqa: E731
    before = len(markers())
    # the second profile (II: y = Y0 - 100), 203 m along it: the sample at 200 m, the 11th
    assert dock.hover_at(1, 203.0) == (X0 + 200.0, Y0 - 100.0)
    centre = dock.hover_marker.center()
    assert (centre.x(), centre.y()) == (X0 + 200.0, Y0 - 100.0)
    assert len(markers()) == before + 1
    hover_lines = [ln for ax in dock.figure.axes for ln in ax.get_lines() if ln.get_gid() == HOVER_GID]
    assert len(hover_lines) == 1 and list(hover_lines[0].get_xdata()) == [200.0, 200.0]
    # on the map in the canvas's CRS: a geographic canvas gets the point in degrees
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    dock.hover_at(0, 0.0)
    centre = dock.hover_marker.center()
    assert 98 < centre.x() < 100 and 38 < centre.y() < 40  # UTM 47N, 500 km E, 4300 km N
    dock.hide_hover()
    assert len(markers()) == before
    assert not [ln for ax in dock.figure.axes for ln in ax.get_lines() if ln.get_gid() == HOVER_GID]
    dock.close()
    assert dock.hover_marker is None


def test_mouse_events_over_the_chart_drive_the_marker(qgis_app, qgis_iface):
    """The matplotlib events the canvas emits when the mouse moves over a profile's axes."""
    from matplotlib.backend_bases import MouseEvent
    from qgis.core import QgsCoordinateReferenceSystem

    from deformation_forecast.gui.profile_dock import ProfileDock

    qgis_iface.mapCanvas().setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32647"))
    dock = ProfileDock(qgis_iface)
    dock.resize(900, 500)
    dock.show_layer(_profile_layer(n_profiles=1, n_samples=25))
    dock.canvas.draw()
    ax = dock._profile_axes[0][0]
    x, y = ax.transData.transform((100.0, -5.0))
    dock.canvas.callbacks.process("motion_notify_event", MouseEvent("motion_notify_event", dock.canvas, x, y))
    assert dock.hover_marker is not None and dock.hover_marker.isVisible()
    assert dock.hover_marker.center().x() == X0 + 100.0
    outside = MouseEvent("motion_notify_event", dock.canvas, 1, 1)
    dock.canvas.callbacks.process("motion_notify_event", outside)
    assert not dock.hover_marker.isVisible()
    dock.close()
