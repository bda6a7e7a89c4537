"""Runs inside a real qgis.bin (``--code``): what a person sees. Runs algorithms with
"open output after running" (processing.runAndLoadResults, as the Toolbox does), records the
renderer band and legend of every loaded output, triggers the animate action and reads the Temporal
Controller, clicks the map with the time-series tool, opens two algorithm dialogs, saves
screenshots, and records every warning of the QGIS message log. Writes $DF_OUT/result.json."""

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


def animate(stack):
    """The plugin's animate action on the stack; the controller's range, step, mode; one frame."""
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
        if node.name() != "observed stack (animation)":
            node.setItemVisibilityChecked(False)
    for dock in plugins["deformation_forecast"].gui.docks.values():
        dock.hide()
    settle()
    frame = nav.totalFrameCount() // 2
    t0 = time.perf_counter()
    nav.setCurrentFrameNumber(frame)
    iface.mapCanvas().refresh()
    iface.mapCanvas().waitWhileRendering()
    out["frame_redraw_s"] = time.perf_counter() - t0
    out["frame"] = nav.dateTimeRangeForFrameNumber(frame).begin().toString("yyyy-MM-dd")
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
        step("series")
        res["series"] = click_series(spec, stack, layers)
        step("animation")
        res["animation"] = animate(stack)
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
