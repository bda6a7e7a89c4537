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


def test_fault_steps_epsg4326_through_qgis_process(qgis_process, tmp_path):
    """The fault steps of a field sampled natively on EPSG:4326 equal the projected ones (10 m
    pixels both) within 5 % inside qgis_process (tests/processing/test_geographic_fault_steps.py
    explains why the warped sample scene differs by 10 % at F17: resolution, not distances)."""
    import csv

    from affine import Affine
    from rasterio.warp import calculate_default_transform

    from deformation_forecast.core.sample import PIXEL_SIZE, SampleScene, make_sample_scene
    from deformation_forecast.core.stack import write_stack
    from tests.processing.test_geographic_fault_steps import SIZE, _native

    paths = make_sample_scene(str(tmp_path / "utm"), size=SIZE, seed=7)
    scene = SampleScene(SIZE, seed=7)
    dates = scene.asc_dates[::20]
    bounds = (scene.xmin, scene.ymin, scene.xmin + scene.extent, scene.ymax)
    geo_t, _, _ = calculate_default_transform("EPSG:32647", "EPSG:4326", SIZE, SIZE, *bounds)
    geo_t, w, h = calculate_default_transform(
        "EPSG:32647", "EPSG:4326", SIZE, SIZE, *bounds, resolution=geo_t.a / 2
    )
    utm_t = Affine(PIXEL_SIZE / 2, 0.0, scene.xmin, 0.0, -PIXEL_SIZE / 2, scene.ymax)
    steps = {}
    for key, crs, t, ww, hh in (
        ("utm", "EPSG:32647", utm_t, 2 * SIZE, 2 * SIZE),
        ("geo", "EPSG:4326", geo_t, w, h),
    ):
        stack, out = tmp_path / f"{key}.tif", tmp_path / f"{key}.csv"
        write_stack(str(stack), _native(scene, dates, crs, t, ww, hh), dates, crs, t)
        qgis_process(
            "run", "deformation_forecast:faultlithology", "--", f"INPUT={stack}", f"FAULTS={paths['faults']}",
            "FAULT_FIELD=name", "BIN_WIDTH=60", "MAX_DISTANCE=600", f"OUTPUT_FAULTS={out}",
        )  # fmt: skip
        with open(out, newline="") as f:
            steps[key] = {r["fault"]: float(r["step"]) for r in csv.DictReader(f)}
    assert steps["geo"].keys() == steps["utm"].keys() and len(steps["utm"]) == 6
    for name, step in steps["utm"].items():
        assert steps["geo"][name] == pytest.approx(step, rel=0.05), name
