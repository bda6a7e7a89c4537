"""The three §V tools on the generated sample scene (deformation_forecast.core.sample): the
leveling error is of the order of the paper's 0-8 mm, the soft unit subsides more than the hard
one, the fault steps are detected with the sign of the truth, and both orbits agree."""

import csv
import json

import numpy as np
import pytest

SIZE = 120


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    make_sample_scene = pytest.importorskip("deformation_forecast.core.sample").make_sample_scene

    paths = make_sample_scene(str(tmp_path_factory.mktemp("sample")), size=SIZE, seed=42)
    with open(paths["scene"]) as f:
        truth = json.load(f)
    return paths, truth


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_benchmarks_error_of_the_papers_order(run_alg, sample, tmp_path):
    paths, truth = sample
    res = run_alg(
        "benchmarkcompare",
        {
            "INPUT": paths["stack_asc"],
            "BENCHMARKS": paths["benchmarks_csv"],
            "INCIDENCE_RASTER": paths["incidence_asc"],
            "RADIUS": 20,
            "OUTPUT_SUMMARY": str(tmp_path / "s.csv"),
        },
    )
    assert res["BENCHMARKS_SKIPPED"] == 0 and res["BENCHMARKS_USED"] == truth["benchmarks"]["count"]
    assert 1.0 < res["MAE"] < 8.0  # paper: 0-8 mm
    assert res["RMSE"] < 10.0 and res["R"] > 0.95
    per_bm = [float(r["mae"]) for r in rows(tmp_path / "s.csv")]
    assert np.median(per_bm) < 8.0
    # the same benchmarks given as a point layer (GeoJSON) give the same answer
    res2 = run_alg(
        "benchmarkcompare",
        {
            "INPUT": paths["stack_asc"],
            "BENCHMARKS": paths["benchmarks"],
            "INCIDENCE_RASTER": paths["incidence_asc"],
        },
    )
    assert res2["MAE"] == pytest.approx(res["MAE"], rel=1e-6)


def test_soft_unit_subsides_more_and_fault_steps_detected(run_alg, sample, tmp_path):
    paths, truth = sample
    out_l, out_f = str(tmp_path / "l.csv"), str(tmp_path / "f.csv")
    run_alg(
        "faultlithology",
        {
            "INPUT": paths["stack_asc"],
            "FAULTS": paths["faults"],
            "FAULT_FIELD": "name",
            "LITHOLOGY": paths["lithology"],
            "LITHOLOGY_FIELD": "unit",
            "BIN_WIDTH": 60,
            "MAX_DISTANCE": 600,
            "OUTPUT_LITHOLOGY": out_l,
            "OUTPUT_FAULTS": out_f,
        },
    )
    strength = {u["unit"]: u["strength"] for u in truth["lithology"]}
    mean = {strength[r["unit"]]: float(r["mean"]) for r in rows(out_l)}
    assert mean["soft"] < mean["hard"] - 10
    steps = {r["fault"]: (float(r["step"]), float(r["step_se"])) for r in rows(out_f)}
    for f in truth["fault_steps"]:
        step, se = steps[f["fault"]]
        expected_sign = np.sign(f["vertical_right_mm"] - f["vertical_left_mm"])
        assert np.sign(step) == expected_sign, f["fault"]
    step, se = steps["F6"]  # the fault that cuts the Longshou bowl: a visible step
    assert abs(step) > 3 * se


def test_orbits_agree(run_alg, sample):
    paths, _ = sample
    res = run_alg(
        "crossorbit",
        {
            "INPUT": paths["stack_asc"],
            "INCIDENCE_RASTER": paths["incidence_asc"],
            "INPUT_B": paths["stack_desc"],
            "INCIDENCE_RASTER_B": paths["incidence_desc"],
        },
    )
    assert res["R"] > 0.9 and res["SLOPE"] == pytest.approx(1.0, abs=0.1)
    assert res["PAIRS"] > 50
