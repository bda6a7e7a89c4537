"""Every algorithm has a Toolbox tooltip (shortDescription) in plain words and a help URL."""

from deformation_forecast.processing.base import first_sentence, plugin_homepage
from deformation_forecast.processing.provider import algorithm_classes


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
    assert [m.displayName() for m in models] == ["Stack, train and forecast (CNN-PhLSTM)"]
    names = [p.name() for p in models[0].parameterDefinitions()]
    assert names, "the model has inputs"


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
