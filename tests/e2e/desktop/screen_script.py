"""Runs inside a real qgis.bin (``--code``): what a person sees. Runs algorithms with
"open output after running" (processing.runAndLoadResults, as the Toolbox does), records the
renderer band and legend of every loaded output, reads the comparison dock at its docked size,
hovers the profile chart (a marker on the map), triggers the animate action and reads the Temporal
Controller mid-animation, clicks the map with the time-series tool, opens two algorithm dialogs,
saves screenshots, and records every warning of the QGIS message log. Writes $DF_OUT/result.json."""

import json
import os
import time
import traceback

from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QEventLoop, QPoint, QTimer
from qgis.PyQt.QtWidgets import QAction
from qgis.utils import iface, plugins

OUT = os.environ["DF_OUT"]
messages = []


def _log(message, tag, level):
    messages.append({"tag": tag, "level": int(level), "message": message})


QgsApplication.messageLog().messageReceived.connect(_log)


def step(name):
    """Where the script got to (for a crash of qgis.bin)."""
    with open(os.path.join(OUT, "steps.txt"), "a") as f:
        f.write(name + "\n")


def settle(ms=1200):
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec_()
    iface.mapCanvas().waitWhileRendering()


def shot(name, widget=None):
    (widget or iface.mainWindow()).grab().save(os.path.join(OUT, name))


def renderer_of(layer):
    r = layer.renderer()
    # inputBand(): band() is deprecated on QGIS >= 3.38 (a DeprecationWarning in the log)
    band = r.inputBand() if hasattr(r, "inputBand") else (r.band() if hasattr(r, "band") else None)
    labels = [label for label, _ in r.legendSymbologyItems()]
    return {"name": layer.name(), "type": r.type(), "band": band, "legend": labels}


def loaded_outputs(alg, params):
    """Run like the Toolbox with 'Open output file after running'; the loaded layers' renderers."""
    import processing

    before = set(QgsProject.instance().mapLayers())
    processing.runAndLoadResults(alg, params)
    QgsApplication.processEvents()
    new = [lyr for k, lyr in QgsProject.instance().mapLayers().items() if k not in before]
    return [renderer_of(lyr) for lyr in new if isinstance(lyr, QgsRasterLayer)]


def comparison_dock():
    """The comparison dock as it opened after evaluateforecast, at its docked size: its charts
    stacked one above the other, each as wide as the chart area."""
    dock = plugins["deformation_forecast"].gui.docks["comparison"]
    dock.canvas.draw()
    shot("comparison_dock.png", dock)
    renderer = dock.canvas.get_renderer()
    return {
        "visible": dock.isVisible(),
        "dock_width": dock.width(),
        "chart": [dock.canvas.width(), dock.canvas.height()],
        "stacked": dock.stacked(),
        "axes_widths": [round(ax.get_window_extent(renderer).width) for ax in dock.figure.axes],
        "figure_width": round(dock.figure.bbox.width),
    }


def profile_hover():
    """The profile dock (opened by extractprofiles' output) hovered half-way along profile I: the
    marker on the map sits on that sample."""
    gui = plugins["deformation_forecast"].gui
    gui.docks["timeseries"].clear()  # its pixel markers off the map
    for key, dock in gui.docks.items():
        if key != "profiles":
            dock.hide()
    dock = gui.docks["profiles"]
    profile = dock._profile_axes[0][1]
    middle = float(profile.distance[len(profile.distance) // 2])
    x, y = dock.hover_at(0, middle)
    settle()
    shot("profile_dock_hover.png")
    centre = dock.hover_marker.center()
    out = {
        "profile": profile.name,
        "sample": [x, y],
        "marker": [centre.x(), centre.y()],
        "marker_visible": dock.hover_marker.isVisible(),
        "hover_lines": sum(
            1 for ax in dock.figure.axes for ln in ax.get_lines() if ln.get_gid() == "df-profile-hover"
        ),
    }
    dock.hide_hover()
    dock.hide()
    return out


def animate(stack):
    """The plugin's animate action on the stack; the controller's range, step, mode; a frame half-way
    through the series, drawn, in the screenshot."""
    from qgis.core import QgsTemporalNavigationObject

    iface.setActiveLayer(stack)
    action = iface.mainWindow().findChild(QAction, "deformation_forecast_animate")
    action.trigger()
    nav = iface.mapCanvas().temporalController()
    extent = nav.temporalExtents()
    root = QgsProject.instance().layerTreeRoot()
    from deformation_forecast.gui.plugin_gui import temporal_panel

    panel = temporal_panel(iface.mainWindow())
    out = {
        "begin": extent.begin().toString("yyyy-MM-dd"),
        "end": extent.end().toString("yyyy-MM-dd"),
        "step_days": nav.frameDuration().days(),
        "animated": nav.navigationMode() == QgsTemporalNavigationObject.Animated,
        "frames": nav.totalFrameCount(),
        "panel_visible": panel is not None and panel.isVisible(),
        "tree": [child.name() for child in root.children()],
    }
    for node in root.children():  # what a person does to watch the animation: other layers off
        node.setExpanded(False)
        if node.name() != "observed stack (animation)":
            node.setItemVisibilityChecked(False)
    gui = plugins["deformation_forecast"].gui
    gui.docks["timeseries"].clear()  # its pixel markers off the map
    for dock in gui.docks.values():
        dock.hide()
    group = root.findGroup("observed stack (animation)")
    view = iface.layerTreeView()
    view.scrollTo(view.layerTreeModel().node2index(group))
    settle()
    frame = nav.totalFrameCount() // 2
    canvas = iface.mapCanvas()
    loop = QEventLoop()
    canvas.mapCanvasRefreshed.connect(loop.quit)
    QTimer.singleShot(30000, loop.quit)
    t0 = time.perf_counter()
    nav.setCurrentFrameNumber(frame)  # the canvas redraws by itself, as when the animation plays
    loop.exec_()
    out["frame_redraw_s"] = time.perf_counter() - t0  # bench/bench_frame_redraw.py measures it
    canvas.mapCanvasRefreshed.disconnect(loop.quit)
    frame_range = nav.dateTimeRangeForFrameNumber(frame)
    out["frame_number"] = frame
    out["frame"] = frame_range.begin().toString("yyyy-MM-dd")
    out["canvas_range"] = canvas.temporalRange().begin().toString("yyyy-MM-dd")
    out["drawn"] = [
        lyr.name()
        for lyr in canvas.layers()
        if lyr.temporalProperties().isActive()
        and lyr.temporalProperties().isVisibleInTemporalRange(frame_range)
    ]
    settle()
    shot("temporal_controller.png")
    return out


def click_series(views, stack, layers):
    """Choose what to plot in the dock, then click the map with the toolbar's map tool."""
    from qgis.core import QgsPointXY
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, Qt

    gui = plugins["deformation_forecast"].gui
    for key, other in gui.docks.items():  # the comparison dock opened with the evaluation
        if key != "timeseries":
            other.hide()
    gui.pick_action.setChecked(True)
    dock = gui.docks["timeseries"]
    canvas = iface.mapCanvas()
    dock.source_combo.setLayer(stack)
    dock.set_chosen(dock.benchmark_combo, [layers["benchmarks"]])
    offered = {
        "source": [dock.source_combo.itemText(i) for i in range(dock.source_combo.count())],
        "forecasts": [dock.forecast_combo.itemText(i) for i in range(dock.forecast_combo.count())],
        "benchmarks": [dock.benchmark_combo.itemText(i) for i in range(dock.benchmark_combo.count())],
    }
    labels = []
    for x, y in views["points"]:
        pixel = canvas.getCoordinateTransform().transform(QgsPointXY(x, y))
        event = QgsMapMouseEvent(
            canvas, QEvent.MouseButtonPress, QPoint(round(pixel.x()), round(pixel.y())), Qt.LeftButton
        )
        canvas.mapTool().canvasPressEvent(event)
        labels.append(dock.plotted_labels())
        dock.pin()
    # a point layer with date fields is clicked the same way
    dock.source_combo.setLayer(layers["benchmarks"])
    bx, by = views["benchmark_xy"]
    pixel = canvas.getCoordinateTransform().transform(QgsPointXY(bx, by))
    event = QgsMapMouseEvent(
        canvas, QEvent.MouseButtonPress, QPoint(round(pixel.x()), round(pixel.y())), Qt.LeftButton
    )
    canvas.mapTool().canvasPressEvent(event)
    labels.append(dock.plotted_labels())
    settle()
    shot("timeseries_dock_clicked.png")
    return {
        "offered": offered,
        "labels": labels,
        "markers": len(dock.markers),
        "status": dock.status.text(),
        "map_tool_is_dock": canvas.mapTool() is dock.tool,
    }


def toolbox_and_menu():
    """The Processing Toolbox with the provider expanded (groups in the order of the work, the
    plugin's icon) and the plugin's menu (entries with icons): screenshots and what they list."""
    from qgis.gui import QgsProcessingToolboxTreeView
    from qgis.PyQt.QtWidgets import QDockWidget, QMenu

    out = {}
    panel = iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
    panel.show()
    panel.raise_()
    tree = panel.findChild(QgsProcessingToolboxTreeView)
    model = tree.model()
    provider = next(
        model.index(r, 0)
        for r in range(model.rowCount())
        if model.index(r, 0).data() == "Deformation forecast"
    )
    tree.expand(provider)
    out["groups"] = [model.index(r, 0, provider).data() for r in range(model.rowCount(provider))]
    for r in range(model.rowCount(provider)):
        if model.index(r, 0, provider).data().startswith("1."):
            tree.expand(model.index(r, 0, provider))
    tree.scrollTo(provider, tree.PositionAtTop)
    settle(500)
    shot("toolbox.png", panel)
    menu = next(  # QGIS parents a plugin's submenu on the main window
        (
            m
            for m in iface.mainWindow().findChildren(QMenu)
            if m.title().replace("&", "") == "Deformation forecast"
        ),
        None,
    )
    if menu is not None:
        out["menu"] = [(a.text(), not a.icon().isNull()) for a in menu.actions()]
        menu.popup(iface.mainWindow().mapToGlobal(QPoint(300, 150)))
        settle(500)
        shot("plugin_menu.png", menu)
        menu.hide()
    panel.hide()
    return out


def dialogs(algs):
    import processing

    out = {}
    for alg in algs:
        dlg = processing.createAlgorithmDialog(alg)
        dlg.resize(1000, 700)
        dlg.show()
        settle(800)
        shot(f"dialog_{alg.split(':')[1]}.png", dlg)
        out[alg] = dlg.windowTitle()
        dlg.close()
    return out


def go():
    res = {}
    try:
        with open(os.environ["DF_JOBS"]) as f:
            spec = json.load(f)
        window = iface.mainWindow()
        window.resize(1280, 880)
        from qgis.PyQt.QtCore import Qt
        from qgis.PyQt.QtWidgets import QDockWidget

        layers_panel = window.findChild(QDockWidget, "Layers")
        if layers_panel is not None:
            window.resizeDocks([layers_panel], [300], Qt.Horizontal)
        project = QgsProject.instance()
        layers = {}
        for key, path in spec["vectors"].items():
            layers[key] = QgsVectorLayer(path, key, "ogr")
        stack = QgsRasterLayer(spec["stack"], "observed stack", "gdal")
        project.addMapLayers([stack, *layers.values()])
        canvas = iface.mapCanvas()
        canvas.setDestinationCrs(stack.crs())
        canvas.setExtent(stack.extent())
        res["outputs"] = {}
        for alg, params in spec["runs"]:
            step(alg)
            res["outputs"][alg] = loaded_outputs(alg, params)
        gui = plugins["deformation_forecast"].gui
        for name, path in spec["by_hand"].items():  # loaded by hand, then "Style as deformation"
            lyr = QgsRasterLayer(path, name, "gdal")
            project.addMapLayer(lyr)
            iface.setActiveLayer(lyr)
            gui.style_active_layer()
            res["outputs"][name] = [renderer_of(lyr)]
        step("by hand done")
        canvas.setExtent(stack.extent())
        canvas.refresh()
        settle()
        shot("styled_outputs.png")
        res["comparison"] = comparison_dock()
        step("series")
        res["series"] = click_series(spec, stack, layers)
        step("profiles")
        for alg, params in spec.get("profile_runs", []):
            loaded_outputs(alg, params)
            settle()
        res["profile_hover"] = profile_hover() if spec.get("profile_runs") else None
        step("animation")
        res["animation"] = animate(stack)
        step("toolbox")
        res["toolbox"] = toolbox_and_menu()
        step("dialogs")
        res["dialogs"] = dialogs(spec["dialogs"])
        step("done")
    except Exception:
        res["error"] = traceback.format_exc()
    # what the plugin or Python put in the log; QGIS's own notes about the machine (no network for
    # the news feed, "Open Sans font installation failed" on QGIS 3.40) are not the plugin's
    res["log"] = [
        m
        for m in messages
        if "Traceback" in m["message"]
        or (m["level"] >= int(Qgis.Warning) and (m["tag"].startswith("Python") or "eformation" in m["tag"]))
    ]
    with open(os.path.join(OUT, "result.json"), "w") as f:
        json.dump(res, f, indent=1)
    # QGIS 3.22 crashes at exit when it removes the layers after the widgets (active layer ->
    # style dock): clear the project while the window is still whole
    QgsProject.instance().clear()
    settle(300)
    QgsApplication.instance().exit(0)


QTimer.singleShot(2000, go)
