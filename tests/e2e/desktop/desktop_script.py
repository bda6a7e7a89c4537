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


def go():
    res = {"jobs": []}
    try:
        res["plugin_loaded"] = "deformation_forecast" in plugins
        import processing

        for alg, params in json.load(open(os.environ["DF_JOBS"])):
            r = processing.run(alg, params)
            res["jobs"].append({"alg": alg, "results": {k: str(v) for k, v in r.items()}})
            QgsApplication.processEvents()
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
    QgsApplication.instance().exit(0)


QTimer.singleShot(2000, go)
