"""Every algorithm has a Toolbox tooltip (shortDescription) in plain words, a help panel that names
the parameters by their labels (never by their ids) and a help URL to its own README section."""

import os
import re

import deformation_forecast
from deformation_forecast.processing.base import first_sentence, plugin_homepage
from deformation_forecast.processing.provider import algorithm_classes

PLUGIN = os.path.dirname(deformation_forecast.__file__)
README = os.path.join(os.path.dirname(PLUGIN), "README.md")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation (backticks, brackets)
    dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def readme_anchors() -> set[str]:
    with open(README, encoding="utf-8") as f:
        return {github_anchor(line.lstrip("#")) for line in f if re.match(r"#{1,6} ", line)}


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


def test_shipped_model_is_in_the_toolbox(qgis_app, qgis_processing):
    from qgis.core import QgsApplication

    from deformation_forecast.processing.provider import DeformationForecastProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("deformation_forecast")
    added = provider is None  # registered here: the models' outputs need their child algorithms
    if added:
        provider = DeformationForecastProvider()
        registry.addProvider(provider)
    try:
        provider.refreshAlgorithms()
        check_shipped_models(provider)
    finally:
        if added:
            registry.removeProvider(provider)


def check_shipped_models(provider):
    from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingParameterDefinition

    models = [a for a in provider.algorithms() if isinstance(a, QgsProcessingModelAlgorithm)]
    shipped = sorted(f for f in os.listdir(os.path.join(PLUGIN, "models")) if f.endswith(".model3"))
    assert len(models) == len(shipped) == 2  # every shipped .model3, and nothing else
    assert "Stack, train and forecast (CNN-PhLSTM)" in [m.displayName() for m in models]
    for m in models:
        assert [p.name() for p in m.parameterDefinitions()], f"{m.displayName()} has inputs"
    (forecast,) = [m for m in models if m.name() == "Stack, train and forecast (CNN-PhLSTM)"]
    inputs = [p.name() for p in forecast.parameterDefinitions() if not p.isDestination()]
    # what a person does first comes first: the rasters to stack, then training, then the forecast
    assert inputs == [
        "input_rasters",
        "test_dates",
        "max_epochs",
        "steps",
        "method",
        "prediction_confidence",
        "worker_device",
    ]
    assert min(inputs) == "input_rasters"  # first also where QGIS sorts the inputs by name
    optional = {
        p.description(): bool(p.flags() & QgsProcessingParameterDefinition.FlagOptional)
        for p in forecast.parameterDefinitions()
        if p.isDestination()
    }
    assert (
        optional["Lower bound of the prediction interval"]
        and optional["Upper bound of the prediction interval"]
    )
    assert not optional["Forecast stack"]
    assert forecast.helpUrl().split("#")[1] in readme_anchors()
    assert "prediction_confidence" not in forecast.shortHelpString().split("<h2>")[0]  # no bare ids


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


def test_github_anchor_of_a_heading():
    assert github_anchor(" Vertical and east-west from two orbits (`decompose`)") == (
        "vertical-and-east-west-from-two-orbits-decompose"
    )
    assert github_anchor("Prediction intervals (`forecast` `OUTPUT_LOWER` / `OUTPUT_UPPER`)") == (
        "prediction-intervals-forecast-output_lower--output_upper"
    )


def test_every_algorithm_has_its_own_readme_section(qgis_app):
    anchors = readme_anchors()
    seen = {}
    for cls in algorithm_classes():
        alg = cls()
        assert alg.HELP_ANCHOR in anchors, (alg.name(), alg.HELP_ANCHOR)
        assert alg.name() in alg.HELP_ANCHOR, (alg.name(), alg.HELP_ANCHOR)  # its own, not a table's
        seen.setdefault(alg.HELP_ANCHOR, []).append(alg.name())
    assert all(len(names) == 1 for names in seen.values()), seen


def test_readme_links_to_its_own_sections_resolve():
    with open(README, encoding="utf-8") as f:
        links = set(re.findall(r"\]\(#([^)]+)\)", f.read()))
    assert links and links <= readme_anchors(), links - readme_anchors()


def test_help_names_parameters_by_their_labels_not_their_ids(qgis_app):
    """The help panel speaks to a person using the dialog: no `SPACING`, `TIME_STEP`..."""
    for cls in algorithm_classes():
        alg = cls()
        alg.initAlgorithm()
        ids = {p.name() for p in alg.parameterDefinitions()}
        text = re.sub(r"<[^>]+>", " ", alg.shortHelpString())
        bare = sorted({w for w in re.findall(r"\b[A-Z][A-Z0-9_]+\b", text) if w in ids})
        assert bare == [], (alg.name(), bare)
        # a section of the paper comes with a sentence, not alone: "(§III-B)" or "§V-A-1," says nothing
        assert "§" not in text, alg.name()


def test_help_names_some_dialog_labels(qgis_app):
    """Each help that explains settings names at least one of them by its label in the dialog."""
    for cls in algorithm_classes():
        alg = cls()
        alg.initAlgorithm()
        labels = [p.description() for p in alg.parameterDefinitions()]
        words = {re.split(r"[(,]", label)[0].strip().lower() for label in labels}
        help_text = re.sub(r"<[^>]+>", "", alg.shortHelpString()).lower()
        assert any(w and w in help_text for w in words), alg.name()


def test_toolbox_groups_sort_in_the_order_of_the_work(qgis_app):
    """The Toolbox sorts groups by name: stack preparation first, forecasting last."""
    from deformation_forecast.processing.base import GROUPS

    names = [GROUPS[g] for g in ("stack", "analysis", "validation", "forecasting")]
    assert sorted(names) == names
    used = {cls().group() for cls in algorithm_classes()}
    assert used == set(names)
