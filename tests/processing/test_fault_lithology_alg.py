"""faultlithology through processing.run: known step and unit means, bad inputs write nothing."""

import csv
import json
import os

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from deformation_forecast.core.stack import read_info, read_stack

X0, Y0, RES, N = 500000.0, 4300000.0, 20.0, 80  # 80 x 80 pixels of 20 m


def geojson(path, features, crs="EPSG:32647"):
    fc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:{crs.replace(':', '::')}"}},
        "features": [{"type": "Feature", "properties": p, "geometry": g} for p, g in features],
    }
    path.write_text(json.dumps(fc))
    return str(path)


def scene(tmp_path, write_stack, step=-30.0, noise=2.0):
    """Stack of 3 dates; a N-S fault at x = X0 + 800 drawn northwards (east = right side);
    the right side drops by `step` at the last date; west half = unit 'soft' (-20 more), east 'hard'."""
    rng = np.random.default_rng(0)
    xs = X0 + (np.arange(N) + 0.5) * RES
    right = np.broadcast_to(xs > X0 + 800, (N, N))
    west = np.broadcast_to(xs < X0 + 800, (N, N))
    last = np.where(right, step, 0.0) + rng.normal(0, noise, (N, N))
    last = last + np.where(west, -20.0, 0.0)
    data = np.stack([np.zeros((N, N)), last / 2, last]).astype("float32")
    stack = write_stack(data)
    fault = geojson(
        tmp_path / "faults.geojson",
        [
            (
                {"name": "F1"},
                {"type": "LineString", "coordinates": [[X0 + 800, Y0 - 1500], [X0 + 800, Y0 - 100]]},
            )
        ],
    )
    ymin = Y0 - N * RES
    litho = geojson(
        tmp_path / "litho.geojson",
        [
            (
                {"unit": "soft"},
                {
                    "type": "Polygon",
                    "coordinates": [[[X0, ymin], [X0 + 800, ymin], [X0 + 800, Y0], [X0, Y0], [X0, ymin]]],
                },
            ),
            (
                {"unit": "hard"},
                {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [X0 + 800, ymin],
                            [X0 + 1600, ymin],
                            [X0 + 1600, Y0],
                            [X0 + 800, Y0],
                            [X0 + 800, ymin],
                        ]
                    ],
                },
            ),
        ],
    )
    return stack, fault, litho


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_known_step_and_unit_means(run_alg, tmp_path, write_stack):
    stack, fault, litho = scene(tmp_path, write_stack)
    out = {k: str(tmp_path / f"{k}.csv") for k in ("lit", "hist", "flt")}
    res = run_alg(
        "faultlithology",
        {
            "INPUT": stack,
            "FAULTS": fault,
            "FAULT_FIELD": "name",
            "LITHOLOGY": litho,
            "LITHOLOGY_FIELD": "unit",
            "BIN_WIDTH": 100,
            "MAX_DISTANCE": 400,
            "THRESHOLD": 10,
            "OUTPUT_LITHOLOGY": out["lit"],
            "OUTPUT_HISTORY": out["hist"],
            "OUTPUT_FAULTS": out["flt"],
            "OUTPUT_DISTANCE": str(tmp_path / "dist.tif"),
            "OUTPUT_PLOT": str(tmp_path / "plot.png"),
        },
    )
    assert res["FAULT_COUNT"] == 1 and res["UNIT_COUNT"] == 2
    flt = rows(out["flt"])
    assert {r["fault"] for r in flt} == {"F1"}
    step, se = float(flt[0]["step"]), float(flt[0]["step_se"])
    # right (east) minus left (west): -30 - (-20) = -10
    assert step == pytest.approx(-10.0, abs=max(4 * se, 0.5))
    assert res["MAX_STEP"] == pytest.approx(abs(step))
    lit = {r["unit"]: r for r in rows(out["lit"])}
    assert float(lit["soft"]["mean"]) == pytest.approx(-20.0, abs=0.3)
    assert float(lit["hard"]["mean"]) == pytest.approx(-30.0, abs=0.3)
    assert int(lit["soft"]["pixels"]) == 40 * 80
    assert float(lit["soft"]["area"]) == pytest.approx(40 * 80 * 400.0)
    hist = rows(out["hist"])
    assert len(hist) == 2 * 3
    soft = [float(r["mean"]) for r in hist if r["unit"] == "soft"]
    np.testing.assert_allclose(soft, [0, -10, -20], atol=0.3)
    dist = read_stack(str(tmp_path / "dist.tif"))[0]
    assert dist[40, 0] == pytest.approx(-(800 - 10))  # west of the northward fault: left, negative
    assert dist[40, -1] == pytest.approx(1600 - 10 - 800)
    assert read_info(str(tmp_path / "dist.tif"), require_dates=False).count == 1
    assert os.path.getsize(tmp_path / "plot.png") > 1000


def test_lithology_only_reprojected_layer(run_alg, tmp_path, write_stack):
    """A lithology layer in WGS84 is reprojected onto the UTM raster."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY, QgsProject

    stack, _, _ = scene(tmp_path, write_stack)
    tr = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:32647"),
        QgsCoordinateReferenceSystem("EPSG:4326"),
        QgsProject.instance(),
    )
    ring = [
        tr.transform(QgsPointXY(x, y))
        for x, y in [(X0, Y0 - 1600), (X0 + 800, Y0 - 1600), (X0 + 800, Y0), (X0, Y0), (X0, Y0 - 1600)]
    ]
    litho = geojson(
        tmp_path / "wgs.geojson",
        [({"unit": "soft"}, {"type": "Polygon", "coordinates": [[[p.x(), p.y()] for p in ring]]})],
        crs="EPSG:4326",
    )
    out = str(tmp_path / "lit.csv")
    run_alg(
        "faultlithology",
        {"INPUT": stack, "LITHOLOGY": litho, "LITHOLOGY_FIELD": "unit", "OUTPUT_LITHOLOGY": out},
    )
    (soft,) = rows(out)
    assert abs(int(soft["pixels"]) - 40 * 80) < 80  # edges may move by a pixel column
    assert float(soft["mean"]) == pytest.approx(-20.0, abs=0.5)


@pytest.mark.parametrize(
    "case, match",
    [
        ("faults_not_lines", "FAULTS.*polygon geometries; a line layer is needed"),
        ("litho_not_polygons", "LITHOLOGY.*line geometries; a polygon layer is needed"),
        ("missing_field", "field 'rock' does not exist"),
        ("no_layers", "Give a FAULTS line layer"),
    ],
)
def test_bad_inputs_write_nothing(run_alg, tmp_path, write_stack, case, match):
    stack, fault, litho = scene(tmp_path, write_stack)
    params = {
        "INPUT": stack,
        "OUTPUT_DISTANCE": str(tmp_path / "d.tif"),
        "OUTPUT_FAULTS": str(tmp_path / "f.csv"),
        "OUTPUT_LITHOLOGY": str(tmp_path / "l.csv"),
        "OUTPUT_PLOT": str(tmp_path / "p.png"),
    }
    if case == "faults_not_lines":
        params.update(FAULTS=litho)
    elif case == "litho_not_polygons":
        params.update(LITHOLOGY=fault, LITHOLOGY_FIELD="name")
    elif case == "missing_field":
        params.update(LITHOLOGY=litho, LITHOLOGY_FIELD="rock")
    with pytest.raises(QgsProcessingException, match=match):
        run_alg("faultlithology", params)
    for f in ("d.tif", "f.csv", "l.csv", "p.png"):
        assert not (tmp_path / f).exists(), f
    assert not [f for f in os.listdir(tmp_path) if "partial" in f]


def test_temporary_distance_output_is_the_file_written(run_alg, tmp_path, write_stack):
    """OUTPUT_DISTANCE as TEMPORARY_OUTPUT: the path returned is the raster written (a temporary
    output gets a new name at each look-up, so the algorithm resolves it once)."""
    stack, fault, _ = scene(tmp_path, write_stack)
    res = run_alg(
        "faultlithology",
        {
            "INPUT": stack,
            "FAULTS": fault,
            "BIN_WIDTH": 100,
            "MAX_DISTANCE": 400,
            "OUTPUT_FAULTS": str(tmp_path / "f.csv"),
            "OUTPUT_DISTANCE": "TEMPORARY_OUTPUT",
        },
    )
    dist = read_stack(res["OUTPUT_DISTANCE"])[0]
    assert dist[40, 0] == pytest.approx(-(800 - 10))
