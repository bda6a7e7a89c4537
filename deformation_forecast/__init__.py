"""QGIS plugin entry point. QGIS (and qgis_process, with iface=None) calls classFactory."""


def classFactory(iface):  # noqa: N802 - QGIS's name
    from . import deps

    msg = deps.ensure()
    if msg:
        from qgis.core import Qgis, QgsMessageLog

        QgsMessageLog.logMessage(msg, "Deformation forecast", Qgis.Info)
    from .plugin import DeformationForecastPlugin

    return DeformationForecastPlugin(iface)
