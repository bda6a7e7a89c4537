"""The point-layer reader shared by pointstostack and failuretime (processing/point_layers.py)
names the parameter it reads, and every parameter and output of the algorithms that were given
class constants (issue 20) is declared through one."""

from __future__ import annotations

import pytest


def _empty_points():
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(
        "Point?crs=EPSG:32648&field=D20200101:double&field=D20200113:double", "e", "memory"
    )
    assert layer.isValid()
    return layer


@pytest.mark.parametrize("alg, param", [("pointstostack", "INPUT"), ("failuretime", "POINTS")])
def test_layer_reader_names_the_parameter(run_alg, tmp_path, alg, param):
    from qgis.core import QgsProcessingException

    extra = {"PIXEL_SIZE": 10.0} if alg == "pointstostack" else {}
    with pytest.raises(QgsProcessingException, match=rf"^{param}: the layer 'e' has no features"):
        run_alg(alg, {param: _empty_points(), "OUTPUT": str(tmp_path / "o.tif"), **extra})
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    "module, cls",
    [
        ("alg_extract_profiles", "ExtractProfiles"),
        ("alg_fault_lithology", "FaultLithology"),
        ("alg_failure_time", "FailureTime"),
        ("alg_points_to_stack", "PointsToStack"),
    ],
)
def test_every_parameter_and_output_is_a_class_constant(df_plugin, module, cls):
    import importlib

    alg_class = getattr(importlib.import_module(f"deformation_forecast.processing.{module}"), cls)
    alg = alg_class()
    alg.initAlgorithm()
    names = [p.name() for p in alg.parameterDefinitions()] + [o.name() for o in alg.outputDefinitions()]
    assert names
    for name in names:
        assert getattr(alg_class, name, None) == name, f"{cls}.{name} is not declared as a class constant"
