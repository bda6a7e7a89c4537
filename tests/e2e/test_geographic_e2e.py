"""Section 3 of issue 14 inside qgis_process.bin: on the sample scene warped to EPSG:4326, RADIUS=20
means 20 m (the projected MAE within 1 mm), and the log says how the metres were converted."""

import pytest

from tests.processing.test_geographic_distances import make_geo_scene

pytestmark = pytest.mark.e2e


def test_benchmarkcompare_epsg4326_through_qgis_process(qgis_process, tmp_path):
    paths, geo = make_geo_scene(tmp_path)
    mae = {}
    for key, stack, inc in (
        ("utm", paths["stack_asc"], paths["incidence_asc"]),
        ("geo", geo["stack_asc"], geo["incidence_asc"]),
    ):
        p = qgis_process(
            "run", "deformation_forecast:benchmarkcompare", "--", f"INPUT={stack}",
            f"BENCHMARKS={paths['benchmarks_csv']}", "BENCHMARKS_CRS=EPSG:32647",
            f"INCIDENCE_RASTER={inc}", "RADIUS=20", f"OUTPUT_SUMMARY={tmp_path / (key + '.csv')}",
        )  # fmt: skip
        mae[key] = p["results"]["MAE"]
    assert abs(mae["geo"] - mae["utm"]) < 1.0 and mae["utm"] < 8.0
    res = qgis_process(
        "run", "deformation_forecast:faultlithology", "--", f"INPUT={geo['stack_asc']}",
        f"FAULTS={paths['faults']}", "FAULT_FIELD=name", "BIN_WIDTH=60", "MAX_DISTANCE=600",
        f"OUTPUT_FAULTS={tmp_path / 'f.csv'}",
    )  # fmt: skip
    assert res["results"]["FAULT_COUNT"] == 6
    assert "local scale at latitude" in str(res.get("log", res))
