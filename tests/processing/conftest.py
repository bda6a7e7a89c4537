"""Processing tests run the algorithms through `processing.run` under pytest-qgis.

The provider is registered once per session through the plugin object itself (as QGIS does), and
`run_alg("buildstack", {...})` runs `deformation_forecast:buildstack` with a fresh context.
"""

from __future__ import annotations

import sys

import pytest

sys.path.insert(0, "/usr/share/qgis/python/plugins")


@pytest.fixture(scope="session")
def df_plugin(qgis_app, qgis_processing):
    import deformation_forecast

    plugin = deformation_forecast.classFactory(None)
    plugin.initProcessing()
    yield plugin
    plugin.unload()


@pytest.fixture
def run_alg(df_plugin):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    def run(alg: str, params: dict, feedback=None):
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        return processing.run(
            f"deformation_forecast:{alg}",
            params,
            context=context,
            feedback=feedback or QgsProcessingFeedback(),
        )

    return run
