"""Every algorithm has a Toolbox tooltip (shortDescription) in plain words and a help URL."""

import os

import deformation_forecast
from deformation_forecast.processing.base import first_sentence, plugin_homepage
from deformation_forecast.processing.provider import algorithm_classes

PLUGIN = os.path.dirname(deformation_forecast.__file__)


def test_every_algorithm_has_a_short_description_and_a_help_url(qgis_app):
    home = plugin_homepage()
    assert home.startswith("http")
    for cls in algorithm_classes():
        alg = cls()
        short = alg.shortDescription()
        assert 10 < len(short) <= 200 and "<" not in short, (alg.name(), short)
        assert alg.helpUrl() == f"{home}#{alg.HELP_ANCHOR}", alg.name()


def test_first_sentence_drops_markup():
    assert first_sentence("<b>Rate</b> maps of a stack (Fig. 9). More text.") == "Rate maps of a stack."


def test_shipped_model_is_in_the_toolbox(qgis_app):
    from qgis.core import QgsProcessingModelAlgorithm

    from deformation_forecast.processing.provider import DeformationForecastProvider

    provider = DeformationForecastProvider()
    provider.loadAlgorithms()
    models = [a for a in provider.algorithms() if isinstance(a, QgsProcessingModelAlgorithm)]
    shipped = sorted(f for f in os.listdir(os.path.join(PLUGIN, "models")) if f.endswith(".model3"))
    assert len(models) == len(shipped) == 2  # every shipped .model3, and nothing else
    assert "Stack, train and forecast (CNN-PhLSTM)" in [m.displayName() for m in models]
    for m in models:
        assert [p.name() for p in m.parameterDefinitions()], f"{m.displayName()} has inputs"


def test_shared_settings_have_one_label_and_placement(qgis_app):
    from qgis.core import QgsProcessingParameterDefinition

    from deformation_forecast.processing.base import SHARED_PARAMETERS

    seen = {}
    for cls in algorithm_classes():
        alg = cls()
        alg.initAlgorithm()
        for p in alg.parameterDefinitions():
            if p.name() in SHARED_PARAMETERS:
                advanced = bool(p.flags() & QgsProcessingParameterDefinition.FlagAdvanced)
                seen.setdefault(p.name(), set()).add((p.description(), advanced))
    assert {"TIME_STEP", "EPOCHS", "SEED", "TEST_COUNT"} <= set(seen)
    assert {name: len(v) for name, v in seen.items()} == {name: 1 for name in seen}
    assert seen["SEED"] == {("Random seed (CPU runs are reproducible)", True)}
