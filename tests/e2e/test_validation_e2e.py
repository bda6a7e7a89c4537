"""faultlithology, benchmarkcompare and crossorbit inside qgis_process.bin (a separate program)."""

import csv
import os

import numpy as np
import pytest

from tests.processing.test_benchmark_compare_alg import truth_scene, write_csv
from tests.processing.test_cross_orbit_alg import orbits
from tests.processing.test_fault_lithology_alg import scene

pytestmark = pytest.mark.e2e


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_faultlithology(qgis_process, tmp_path, write_stack):
    stack, fault, litho = scene(tmp_path, write_stack)
    out = {k: str(tmp_path / f"{k}.csv") for k in ("lit", "flt")}
    res = qgis_process(
        "run",
        "deformation_forecast:faultlithology",
        "--",
        f"INPUT={stack}",
        f"FAULTS={fault}",
        "FAULT_FIELD=name",
        f"LITHOLOGY={litho}",
        "LITHOLOGY_FIELD=unit",
        "BIN_WIDTH=100",
        "MAX_DISTANCE=400",
        f"OUTPUT_LITHOLOGY={out['lit']}",
        f"OUTPUT_FAULTS={out['flt']}",
        f"OUTPUT_DISTANCE={tmp_path / 'dist.tif'}",
        f"OUTPUT_PLOT={tmp_path / 'plot.png'}",
    )["results"]
    assert res["FAULT_COUNT"] == 1 and res["UNIT_COUNT"] == 2
    assert abs(float(read_rows(out["flt"])[0]["step"]) + 10.0) < 1.5
    assert {r["unit"] for r in read_rows(out["lit"])} == {"soft", "hard"}
    assert os.path.getsize(tmp_path / "plot.png") > 1000 and (tmp_path / "dist.tif").exists()


def test_faultlithology_bad_layer(qgis_process, tmp_path, write_stack):
    stack, fault, litho = scene(tmp_path, write_stack)
    p = qgis_process(
        "run",
        "deformation_forecast:faultlithology",
        "--",
        f"INPUT={stack}",
        f"FAULTS={litho}",
        f"OUTPUT_FAULTS={tmp_path / 'f.csv'}",
        check=False,
    )
    assert p.returncode != 0
    assert "polygon geometries; a line layer is needed" in p.stdout + p.stderr
    assert not (tmp_path / "f.csv").exists()


def test_benchmarkcompare(qgis_process, tmp_path, write_stack):
    stack, header, table = truth_scene(tmp_path, write_stack)
    bm = write_csv(tmp_path / "bm.csv", header, table)
    res = qgis_process(
        "run",
        "deformation_forecast:benchmarkcompare",
        "--",
        f"INPUT={stack}",
        f"BENCHMARKS={bm}",
        "RADIUS=5",
        f"OUTPUT={tmp_path / 'pairs.csv'}",
        f"OUTPUT_SUMMARY={tmp_path / 'summary.csv'}",
        f"OUTPUT_PLOT={tmp_path / 'fig.png'}",
    )["results"]
    assert res["N"] == 12 * 11 and 1.5 < res["MAE"] < 3.0 and res["R"] > 0.98
    assert len(read_rows(tmp_path / "summary.csv")) == 12
    assert os.path.getsize(tmp_path / "fig.png") > 1000


def test_benchmarkcompare_bad_incidence(qgis_process, tmp_path, write_stack):
    stack, header, table = truth_scene(tmp_path, write_stack, n_bm=3)
    bm = write_csv(tmp_path / "bm.csv", header, table)
    p = qgis_process(
        "run",
        "deformation_forecast:benchmarkcompare",
        "--",
        f"INPUT={stack}",
        f"BENCHMARKS={bm}",
        "INCIDENCE=90",
        f"OUTPUT={tmp_path / 'o.csv'}",
        check=False,
    )
    assert p.returncode != 0 and "between 0 and 90" in p.stdout + p.stderr
    assert not (tmp_path / "o.csv").exists()


def test_crossorbit(qgis_process, tmp_path, write_stack):
    pa, pb = orbits(write_stack)
    res = qgis_process(
        "run",
        "deformation_forecast:crossorbit",
        "--",
        f"INPUT={pa}",
        f"INPUT_B={pb}",
        f"OUTPUT={tmp_path / 'xo.csv'}",
        f"OUTPUT_PLOT={tmp_path / 'xo.png'}",
    )["results"]
    assert abs(res["SLOPE"] - 1.2) < 1e-3 and res["R"] > 0.999
    assert len(read_rows(tmp_path / "xo.csv")) == 10
    assert os.path.getsize(tmp_path / "xo.png") > 1000


@pytest.mark.slow
def test_sample_job_step_writes_tables_and_plots(qgis_profile, tmp_path):
    """scripts/sample_job.d/40-validation.sh, as the main job runs it, on a (smaller) sample scene."""

    from tests.e2e.conftest import run_sample_step

    sample = pytest.importorskip("deformation_forecast.core.sample")
    scene = tmp_path / "scene"
    sample.make_sample_scene(str(scene), size=120, seed=42)
    out = tmp_path / "out"
    out.mkdir()
    p = run_sample_step("40-validation.sh", scene, out, qgis_profile)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for name in (
        "benchmarks_pairs.csv",
        "benchmarks_summary.csv",
        "benchmarks_fig15a.png",
        "crossorbit.csv",
        "crossorbit_fig15b.png",
        "lithology_stats.csv",
        "lithology_history.csv",
        "fault_stats.csv",
        "fault_distance.tif",
        "faults_lithology_fig16.png",
    ):
        assert (out / name).stat().st_size > 100, name
    mae = [float(r["mae"]) for r in read_rows(out / "benchmarks_summary.csv") if r["mae"]]
    assert 0 < np.median(mae) < 8
