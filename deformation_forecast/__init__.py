"""QGIS plugin entry point. QGIS (and qgis_process, with iface=None) calls classFactory."""

import warnings

# Debian's matplotlib 3.6 (a QGIS dependency) sits beside the venv's newer one: only the 3-D
# toolkit's namespace clashes ("Unable to import Axes3D"), and no plot of this plugin is 3-D
warnings.filterwarnings("ignore", message="Unable to import Axes3D", category=UserWarning)


def classFactory(iface):  # noqa: N802 - QGIS's name
    from . import deps

    msg = deps.ensure()
    if msg:
        from qgis.core import Qgis, QgsMessageLog

        QgsMessageLog.logMessage(msg, "Deformation forecast", Qgis.Info)
    from .plugin import DeformationForecastPlugin

    return DeformationForecastPlugin(iface)
