"""The built plugin inside qgis_process.bin: provider listed, worker algorithm runs."""

import pytest

pytestmark = pytest.mark.e2e


def test_list_shows_provider_and_all_algorithms(qgis_process):
    from deformation_forecast.processing.provider import algorithm_classes  # noqa: F401 (needs qgis)

    out = qgis_process("list").stdout
    assert "Deformation forecast" in out
    for name in _algorithm_names():
        assert f"deformation_forecast:{name}" in out, name


def _algorithm_names():
    import ast
    import os

    from tests.e2e.conftest import ROOT

    names = []
    folder = os.path.join(ROOT, "deformation_forecast", "processing")
    for f in sorted(os.listdir(folder)):
        if f.startswith("alg_") and f.endswith(".py"):
            tree = ast.parse(open(os.path.join(folder, f), encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NAME":
                    names.append(node.value.value)
    assert names
    return names


@pytest.mark.tf
def test_worker_runs_tensorflow_outside_qgis_process(qgis_process):
    res = qgis_process("run", "deformation_forecast:checkworker", "--", "DEVICE=2")
    assert res["results"]["CHECKSUM"] == 394  # sum of arange(6).reshape(2,3) @ arange(12).reshape(3,4)
    assert res["results"]["DEVICE_USED"] == "CPU"
    assert res["results"]["TENSORFLOW"].startswith("2.")
