"""Runs inside a real qgis.bin (``--code``): runs the jobs of $DF_JOBS through Processing in the
desktop, reloads the plugin, takes a screenshot and writes $DF_OUT/result.json, then quits."""

import json
import os
import sys
import traceback

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins, reloadPlugin

OUT = os.environ["DF_OUT"]
messages = []


def _log(message, tag, level):
    messages.append({"tag": tag, "level": int(level), "message": message})


QgsApplication.messageLog().messageReceived.connect(_log)


def settle(ms=1500):
    """Let the canvas render and the docks draw before a screenshot."""
    from qgis.PyQt.QtCore import QEventLoop

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec_()
    iface.mapCanvas().waitWhileRendering()


def show_views(views):
    """Open the docks on the given layers and save screenshots of the main window."""
    from qgis.core import QgsDateTimeRange, QgsPointXY, QgsProject, QgsRasterLayer, QgsVectorLayer
    from qgis.PyQt.QtCore import QDateTime

    gui = plugins["deformation_forecast"].gui
    project = QgsProject.instance()
    out = {}
    stack = QgsRasterLayer(views["stack"], "observed stack", "gdal")
    future = QgsRasterLayer(views["future"], views.get("future_name", "forecast"), "gdal")
    project.addMapLayers([future, stack])
    gui.iface.setActiveLayer(stack)
    from deformation_forecast.processing.styling import apply_diverging_style

    apply_diverging_style(stack, views.get("limit", 800.0), band=stack.bandCount())
    apply_diverging_style(future, views.get("limit", 800.0), band=future.bandCount())
    iface.mapCanvas().setDestinationCrs(stack.crs())
    iface.mapCanvas().setExtent(stack.extent())
    ts = gui.show_dock("timeseries")
    for x, y in views["points"]:
        ts.show_point(stack, QgsPointXY(x, y), stack.crs())
        ts.pin()
    out["timeseries_lines"] = ts.plotted_lines()
    settle()
    iface.mainWindow().grab().save(os.path.join(OUT, "timeseries_dock.png"))
    ts.hide()
    if views.get("profiles"):
        samples = QgsVectorLayer(views["profiles"], "Profile samples", "ogr")
        project.addMapLayer(samples)
        pd = gui.show_dock("profiles")
        pd.show_layer(samples)
        out["profile_curves"] = pd.curve_count()
        settle()
        iface.mainWindow().grab().save(os.path.join(OUT, "profile_dock.png"))
        pd.hide()
    gui.iface.setActiveLayer(future)
    out["animated_layers"] = gui.animate_active_layer()
    stack.setOpacity(0.0)
    # the per-date group lies below the user's layers: hide the whole forecast to see the frame
    project.layerTreeRoot().findLayer(future.id()).setItemVisibilityChecked(False)
    t = QDateTime.fromString(views["frame_date"], "yyyy-MM-dd")
    nav = iface.mapCanvas().temporalController()
    if hasattr(nav, "findBestFrameNumberForFrameStart"):  # the controller shows the same frame
        nav.setCurrentFrameNumber(nav.findBestFrameNumberForFrameStart(t))
    else:
        iface.mapCanvas().setTemporalRange(QgsDateTimeRange(t, t.addDays(1)))
    iface.mapCanvas().refresh()
    settle()
    iface.mainWindow().grab().save(os.path.join(OUT, "forecast_animation.png"))
    return out


def go():
    res = {"jobs": []}
    try:
        res["plugin_loaded"] = "deformation_forecast" in plugins
        import processing

        spec = json.load(open(os.environ["DF_JOBS"]))
        if isinstance(spec, list):
            spec = {"jobs": spec}
        for alg, params in spec.get("jobs", []):
            r = processing.run(alg, params)
            res["jobs"].append({"alg": alg, "results": {k: str(v) for k, v in r.items()}})
            QgsApplication.processEvents()
        if spec.get("views"):
            res["views"] = show_views(spec["views"])
        res["tf_in_qgis"] = "tensorflow" in sys.modules
        reloadPlugin("deformation_forecast")
        res["reloaded"] = QgsApplication.processingRegistry().providerById("deformation_forecast") is not None
        iface.mainWindow().grab().save(os.path.join(OUT, "desktop.png"))
    except Exception:
        res["error"] = traceback.format_exc()
    res["critical_log"] = [
        m
        for m in messages
        if m["level"] >= int(Qgis.Critical) and "deformation" in (m["tag"] + m["message"]).lower()
    ]
    with open(os.path.join(OUT, "result.json"), "w") as f:
        json.dump(res, f, indent=1)
    quit_like_file_exit()


def quit_like_file_exit():
    """Close the project, then quit: what File > Exit does (QgisApp::fileExit -> closeProject),
    without its "save changes?" dialogs. Quitting with layers still loaded makes QGIS >= 3.40 die
    on signal 11 in ~QgisApp, with or without this plugin: the layer tree view is deleted before
    QgsApplication::exitQgis() clears the project, whose layer removals still reach
    QgisApp::updateNewLayerInsertionPoint() (qgis/QGIS#65667). Clearing here also takes the
    plugin's docks through the user's exit path: every layer they show is removed under them. QGIS 3.22 also
    crashed at exit removing layers after the widgets (active layer -> style dock)."""
    from qgis.core import QgsProject

    QgsProject.instance().clear()
    QgsApplication.processEvents()
    QgsApplication.instance().exit(0)


QTimer.singleShot(2000, go)
