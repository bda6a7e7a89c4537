"""Fixtures of the GUI tests (pytest-qgis's offscreen QGIS and iface)."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProject


@pytest.fixture
def gui(qgis_app, qgis_processing, qgis_iface):
    """The plugin's desktop part on pytest-qgis's iface, with the provider registered if needed;
    afterwards unloaded, the provider removed if registered here and the project's layers removed."""
    from deformation_forecast.gui.plugin_gui import PluginGui
    from deformation_forecast.processing.provider import DeformationForecastProvider

    registry = QgsApplication.processingRegistry()
    provider = None
    if registry.providerById("deformation_forecast") is None:
        provider = DeformationForecastProvider()
        registry.addProvider(provider)
    g = PluginGui(qgis_iface)
    g.load()
    yield g
    g.unload()
    if provider is not None:
        registry.removeProvider(provider)
    QgsProject.instance().removeAllMapLayers()
