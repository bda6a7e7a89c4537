import datetime as dt

import numpy as np
from qgis.core import QgsDateTimeRange, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QDate, QDateTime, QTime

from deformation_forecast.processing.styling import apply_diverging_style, symmetric_limit
from deformation_forecast.processing.temporal import add_stack_as_temporal_layers
from tests.conftest import make_dates


def _qdt(d):
    return QDateTime(QDate(d.year, d.month, d.day), QTime(0, 0))


def test_stack_becomes_animated_layers_with_one_ramp(qgis_app, write_stack):
    data = -np.arange(4 * 5 * 6, dtype="float32").reshape(4, 5, 6)
    path = write_stack(data, make_dates(4))
    project = QgsProject.instance()
    group, layers = add_stack_as_temporal_layers(path, project, "series")
    try:
        assert len(layers) == 4 and group.name() == "series"
        d = make_dates(4)
        for i, lyr in enumerate(layers):
            props = lyr.temporalProperties()
            assert props.isActive()
            end = d[i + 1] if i < 3 else d[3] + dt.timedelta(days=12)
            # one second inside both ends: a frame from one date to the next draws one layer
            assert props.fixedTemporalRange() == QgsDateTimeRange(
                _qdt(d[i]).addSecs(1), _qdt(end).addSecs(-1), True, True
            )
            r = lyr.renderer()
            assert r.band() == i + 1
            # one symmetric ramp centred on zero for every date
            assert (
                r.classificationMin() == -r.classificationMax() == -layers[0].renderer().classificationMax()
            )
        # the animation shows exactly one date at a time
        t = _qdt(d[1] + dt.timedelta(days=3))
        visible = [
            lyr for lyr in layers if lyr.temporalProperties().isVisibleInTemporalRange(QgsDateTimeRange(t, t))
        ]
        assert visible == [layers[1]]
    finally:
        project.removeAllMapLayers()
        project.layerTreeRoot().removeChildNode(group)


def test_diverging_style_is_centred_and_labelled(qgis_app, write_stack):
    path = write_stack(np.array([[[-10.0, 5.0]]], dtype="float32"))
    lyr = QgsRasterLayer(path, "r", "gdal")
    lim = symmetric_limit(np.array([-10.0, 5.0, np.nan]), percentile=100)
    assert lim == 10.0
    r = apply_diverging_style(lyr, lim, units="mm/yr")
    items = r.shader().rasterShaderFunction().colorRampItemList()
    assert items[0].value == -10.0 and items[-1].value == 10.0
    assert items[len(items) // 2].value == 0.0
    assert items[0].label.endswith("mm/yr")
    # subsidence red, uplift blue
    assert items[0].color.red() > items[0].color.blue() and items[-1].color.blue() > items[-1].color.red()


def test_toolbox_load_styles_and_animates_the_output(qgis_app, df_plugin, tmp_path, write_stack):
    """What the Toolbox does after a run: load the output, run our post-processor on it."""
    import processing
    from processing.gui.Postprocessing import handleAlgorithmResults
    from qgis.core import (
        QgsApplication,
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsProcessingOutputLayerDefinition,
    )

    paths = []
    for i, d in enumerate(make_dates(3)):
        paths.append(write_stack(np.full((1, 3, 4), -float(i), dtype="float32"), [d], name=f"c_{i}.tif"))
    project = QgsProject.instance()
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()
    out = QgsProcessingOutputLayerDefinition(str(tmp_path / "stack.tif"), project)
    alg = QgsApplication.processingRegistry().createAlgorithmById("deformation_forecast:buildstack")
    processing.run(alg, {"LAYERS": paths, "ANIMATE": True, "OUTPUT": out}, context=context, feedback=feedback)
    try:
        assert context.willLoadLayerOnCompletion(str(tmp_path / "stack.tif"))
        handleAlgorithmResults(alg, context, feedback)
        names = sorted(lyr.name() for lyr in project.mapLayers().values())
        assert len(names) == 1 + 3
        animated = [lyr for lyr in project.mapLayers().values() if lyr.temporalProperties().isActive()]
        assert len(animated) == 3
        main = [lyr for lyr in project.mapLayers().values() if not lyr.temporalProperties().isActive()][0]
        r = main.renderer()
        assert r.classificationMin() == -r.classificationMax() == -2.0  # centred, from the last date
    finally:
        project.removeAllMapLayers()
        project.layerTreeRoot().removeAllChildren()
