"""decompose and the shipped decompose -> benchmarkcompare model inside qgis_process.bin."""

import csv

import numpy as np
import pytest

from deformation_forecast.core.stack import read_info, read_stack
from tests.core.test_decompose import ASC, DESC, bowl_fields, make_orbits, truth_on
from tests.processing.test_decompose_alg import BM_PIXELS, MODEL3, chain_scene

pytestmark = pytest.mark.e2e


def test_decompose(qgis_process, tmp_path, write_stack):
    up_rate, east_rate = bowl_fields(h=12, w=16)
    orbits = make_orbits(write_stack, up_rate, east_rate)
    up, east, rates = (str(tmp_path / n) for n in ("up.tif", "east.tif", "rates.tif"))
    res = qgis_process(
        "run",
        "deformation_forecast:decompose",
        "--",
        f"ASCENDING={orbits[0].path}",
        f"DESCENDING={orbits[1].path}",
        f"INCIDENCE_ASC={ASC[0]}",
        f"INCIDENCE_DESC={DESC[0]}",
        "DATES=1",
        "INTERVAL_DAYS=12",
        f"OUTPUT_VERTICAL={up}",
        f"OUTPUT_EAST={east}",
        f"OUTPUT_RATES={rates}",
    )["results"]
    assert res["MAX_GAP_DAYS"] == 6 and res["DATE_COUNT"] == 11
    dates = read_info(up).dates
    np.testing.assert_allclose(read_stack(up), truth_on(up_rate, dates), atol=1e-3)
    np.testing.assert_allclose(read_stack(east), truth_on(east_rate, dates), atol=1e-3)
    np.testing.assert_allclose(read_stack(rates)[0], up_rate, rtol=1e-3, atol=1e-3)


def test_near_identical_geometries_refused(qgis_process, tmp_path, write_stack):
    up_rate, east_rate = bowl_fields(h=4, w=4)
    orbits = make_orbits(write_stack, up_rate, east_rate)
    p = qgis_process(
        "run",
        "deformation_forecast:decompose",
        "--",
        f"ASCENDING={orbits[0].path}",
        f"DESCENDING={orbits[1].path}",
        "INCIDENCE_DESC=35",
        "HEADING_DESC=-12",
        f"OUTPUT_VERTICAL={tmp_path / 'up.tif'}",
        f"OUTPUT_EAST={tmp_path / 'east.tif'}",
        check=False,
    )
    assert p.returncode != 0
    assert "condition number of the LOS system is" in p.stdout + p.stderr
    assert not (tmp_path / "up.tif").exists() and not (tmp_path / "east.tif").exists()


def test_shipped_model_decompose_then_benchmarks(qgis_process, tmp_path, write_stack):
    orbits, lev = chain_scene(tmp_path, write_stack)
    summary = tmp_path / "summary.csv"
    qgis_process(
        "run",
        MODEL3,
        "--",
        f"ascending={orbits[0].path}",
        f"descending={orbits[1].path}",
        f"benchmarks={lev}",
        "radius=5",
        f"decompose:Vertical stack={tmp_path / 'up.tif'}",
        f"decompose:East stack={tmp_path / 'east.tif'}",
        f"benchmarks:Benchmark pairs={tmp_path / 'pairs.csv'}",
        f"benchmarks:Per-benchmark summary={summary}",
    )
    with open(summary, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(BM_PIXELS) and all(r["status"] == "ok" for r in rows)
    assert np.mean([float(r["mae"]) for r in rows]) < 1.0


@pytest.mark.slow
def test_sample_job_step(qgis_profile, tmp_path):
    """scripts/sample_job.d/45-decompose.sh, as the main job runs it, on a small 3-D sample scene."""

    from deformation_forecast.core import sample
    from tests.e2e.conftest import run_sample_step

    scene = tmp_path / "scene"
    sample.make_sample_scene(str(scene), size=48, seed=42, horizontal=True)
    out = tmp_path / "out"
    out.mkdir()
    p = run_sample_step("45-decompose.sh", scene, out, qgis_profile)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    table = (out / "decompose_vs_los.md").read_text()
    rows = {line.split("|")[1].strip(): float(line.split("|")[3]) for line in table.splitlines()[4:]}
    assert rows["`decompose` U"] < 0.4 * rows["ascending dLOS / cos(theta)"], table
    assert read_info(str(out / "decompose_rates.tif"), require_dates=False).count == 4
