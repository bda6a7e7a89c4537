"""Issue 14, section 4: forecast takes a model written by trainmodel whatever its extension (the
file's content decides, not its name); buildstack warns when mm values look like metres."""

import pytest

from tests.ml.scene import bowl_scene


def test_forecast_model_parameter_accepts_any_extension(df_plugin):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("deformation_forecast:forecast")
    param = alg.parameterDefinition("MODEL")
    for name in ("/data/model.dfmodel", "/data/model.dfm", "/data/model"):
        assert param.checkValueIsAcceptable(name), name


def test_forecast_checks_a_dfm_file_by_content(run_alg, write_stack, tmp_path):
    from qgis.core import QgsProcessingException

    data, dates = bowl_scene(20, 16)
    stack = write_stack(data, dates)
    junk = tmp_path / "model.dfm"
    junk.write_bytes(b"not a zip")
    # refused by the model loader (content), not as "Incorrect parameter value for MODEL"
    with pytest.raises(QgsProcessingException, match="not a deformation forecast model"):
        run_alg(
            "forecast", {"INPUT": stack, "MODEL": str(junk), "DEVICE": 2, "OUTPUT": str(tmp_path / "o.tif")}
        )


def test_buildstack_warns_when_mm_values_look_like_metres(run_alg, tmp_path):
    """Section 4: values all within +-1 with UNITS mm get a warning naming metres and UNITS."""
    import numpy as np
    from qgis.core import QgsProcessingFeedback

    from tests.conftest import plain_raster

    class Log(QgsProcessingFeedback):
        lines: list = []

        def pushWarning(self, warning):  # noqa: N802
            self.lines.append(warning)

    paths = [
        plain_raster(tmp_path / f"cum_2020010{k + 1}.tif", np.full((3, 4), 0.01 * k, "float32"))
        for k in range(3)
    ]
    log = Log()
    run_alg("buildstack", {"LAYERS": paths, "OUTPUT": str(tmp_path / "s.tif")}, feedback=log)
    assert any("set UNITS to m" in line for line in log.lines)
    log.lines.clear()
    run_alg("buildstack", {"LAYERS": paths, "UNITS": 1, "OUTPUT": str(tmp_path / "s2.tif")}, feedback=log)
    assert not log.lines


def test_pointstostack_null_geometry_dropped_and_counted(run_alg, tmp_path):
    """Issue 14 section 2: a feature without geometry is dropped, counted (NULL_GEOMETRY_COUNT)
    and reported, not a failure of the whole layer."""
    import rasterio
    from qgis.core import QgsFeature, QgsField, QgsGeometry, QgsPointXY, QgsVectorLayer
    from qgis.PyQt.QtCore import QVariant

    layer = QgsVectorLayer("Point?crs=EPSG:32647", "pts", "memory")
    pr = layer.dataProvider()
    pr.addAttributes([QgsField("D20200101", QVariant.Double), QgsField("D20200113", QVariant.Double)])
    layer.updateFields()
    feats = []
    for k, xy in enumerate([(500010, 4300090), (500090, 4300010), None]):
        f = QgsFeature(layer.fields())
        if xy is not None:
            f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(*xy)))
        f.setAttributes([float(k), float(k + 1)])
        feats.append(f)
    pr.addFeatures(feats)
    out = str(tmp_path / "layer.tif")
    res = run_alg("pointstostack", {"INPUT": layer, "PIXEL_SIZE": 20, "RADIUS": 5, "OUTPUT": out})
    assert res["POINT_COUNT"] == 2 and res["NULL_GEOMETRY_COUNT"] == 1 and res["MERGED_COUNT"] == 0
    with rasterio.open(out) as src:
        arr = src.read(2)
    assert arr[0, 0] == 1.0 and arr[4, 4] == 2.0
