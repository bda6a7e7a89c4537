"""The plugin object: registers the Processing provider and, with a GUI, the docks."""

from __future__ import annotations

from qgis.core import QgsApplication

from .processing.provider import DeformationForecastProvider


class DeformationForecastPlugin:
    def __init__(self, iface=None):
        self.iface = iface
        self.provider: DeformationForecastProvider | None = None
        self.gui = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS's name
        if self.provider is None:
            self.provider = DeformationForecastProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS's name
        self.initProcessing()
        if self.iface is not None:
            try:
                from .gui.plugin_gui import PluginGui
            except ImportError:  # the GUI layer is optional; the algorithms work without it
                return
            self.gui = PluginGui(self.iface)
            self.gui.load()

    def unload(self) -> None:
        if self.gui is not None:
            self.gui.unload()
            self.gui = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
