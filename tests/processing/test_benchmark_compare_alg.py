"""benchmarkcompare through processing.run: CSV and point layers, known noise, bad inputs."""

import csv
import datetime as dt
import json
import os

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from tests.conftest import make_dates

X0, Y0, RES = 500000.0, 4300000.0, 20.0
INC = 34.17


def truth_scene(tmp_path, write_stack, noise=2.0, n_bm=12, seed=1):
    rng = np.random.default_rng(seed)
    h = w = 50
    n = 24
    dates = make_dates(n)
    yy, xx = np.mgrid[0:h, 0:w]
    bowl = -np.exp(-((xx - 25) ** 2 + (yy - 25) ** 2) / (2 * 10.0**2))
    vert = 120 * bowl[None] * (np.arange(n) / (n - 1))[:, None, None]
    stack = write_stack((vert * np.cos(np.radians(INC))).astype("float32"), dates=dates)
    cols, rows_ = rng.integers(8, 42, n_bm), rng.integers(8, 42, n_bm)
    ks = list(range(0, n, 2))
    header = ["id", "x", "y"] + ["D" + dates[k].strftime("%Y%m%d") for k in ks]
    table = []
    for b in range(n_bm):
        x, y = X0 + (cols[b] + 0.5) * RES, Y0 - (rows_[b] + 0.5) * RES
        table.append([f"BM{b}", x, y, *(vert[ks, rows_[b], cols[b]] + rng.normal(0, noise, len(ks)))])
    return stack, header, table


def write_csv(path, header, table):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *table])
    return str(path)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_known_noise(run_alg, tmp_path, write_stack):
    stack, header, table = truth_scene(tmp_path, write_stack)
    bm = write_csv(tmp_path / "bm.csv", header, table)
    res = run_alg(
        "benchmarkcompare",
        {
            "INPUT": stack,
            "BENCHMARKS": bm,
            "INCIDENCE": INC,
            "RADIUS": 5,
            "OUTPUT": str(tmp_path / "pairs.csv"),
            "OUTPUT_SUMMARY": str(tmp_path / "summary.csv"),
            "OUTPUT_PLOT": str(tmp_path / "fig.png"),
        },
    )
    assert res["N"] == 12 * 11
    assert res["MAE"] == pytest.approx(2.0 * np.sqrt(2) * np.sqrt(2 / np.pi), rel=0.25)
    assert res["R"] > 0.98 and res["RMSE"] >= res["MAE"] and res["MAX_ABS"] >= res["RMSE"]
    assert res["BENCHMARKS_USED"] == 12 and res["BENCHMARKS_SKIPPED"] == 0
    pairs = read_rows(tmp_path / "pairs.csv")
    assert len(pairs) == 12 * 12 and {"leveling", "insar", "diff", "survey_date"} <= set(pairs[0])
    summary = read_rows(tmp_path / "summary.csv")
    assert len(summary) == 12 and all(r["status"] == "ok" for r in summary)
    assert os.path.getsize(tmp_path / "fig.png") > 1000


def test_point_layer_in_other_crs_and_long_csv(run_alg, tmp_path, write_stack):
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY, QgsProject

    stack, header, table = truth_scene(tmp_path, write_stack, noise=0.0, n_bm=5)
    tr = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:32647"),
        QgsCoordinateReferenceSystem("EPSG:4326"),
        QgsProject.instance(),
    )
    feats = []
    for row in table:
        p = tr.transform(QgsPointXY(row[1], row[2]))
        props = {"name": row[0], **{h: v for h, v in zip(header[3:], row[3:], strict=True)}}
        feats.append(
            {
                "type": "Feature",
                "properties": props,
                "geometry": {"type": "Point", "coordinates": [p.x(), p.y()]},
            }
        )
    gj = tmp_path / "bm.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    res = run_alg("benchmarkcompare", {"INPUT": stack, "BENCHMARKS": str(gj), "RADIUS": 5})
    assert res["N"] == 5 * 11 and res["MAE"] < 0.01
    # long form with lon/lat columns: taken as WGS 84
    lines = ["id,lon,lat,date,value"]
    for f in feats:
        for h in header[3:]:
            d = dt.datetime.strptime(h[1:], "%Y%m%d").date()
            lines.append(
                f"{f['properties']['name']},{f['geometry']['coordinates'][0]},"
                f"{f['geometry']['coordinates'][1]},{d.isoformat()},{f['properties'][h]}"
            )
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    res2 = run_alg(
        "benchmarkcompare",
        {
            "INPUT": stack,
            "BENCHMARKS": str(tmp_path / "long.csv"),
            "RADIUS": 5,
            "REFERENCE_DATE": header[5][1:],
        },
    )
    assert res2["N"] == 5 * 11 and res2["MAE"] < 0.01


def test_outside_and_nan_benchmarks_are_skipped(run_alg, tmp_path, write_stack):
    stack, header, table = truth_scene(tmp_path, write_stack, n_bm=4)
    table[0][1] = X0 - 5000
    bm = write_csv(tmp_path / "bm.csv", header, table)
    res = run_alg(
        "benchmarkcompare", {"INPUT": stack, "BENCHMARKS": bm, "OUTPUT_SUMMARY": str(tmp_path / "s.csv")}
    )
    assert res["BENCHMARKS_SKIPPED"] == 1 and res["N"] == 3 * 11
    assert read_rows(tmp_path / "s.csv")[0]["status"] == "outside the raster"


@pytest.mark.parametrize(
    "case, match",
    [
        ("no_coordinates", "no coordinate columns"),
        ("no_dates", "no survey dates"),
        ("incidence", "between 0 and 90"),
        ("incidence_zero", "between 0 and 90"),
        ("reference", "REFERENCE_DATE: 'soon' is not a date"),
    ],
)
def test_bad_inputs_write_nothing(run_alg, tmp_path, write_stack, case, match):
    stack, header, table = truth_scene(tmp_path, write_stack, n_bm=3)
    params = {
        "INPUT": stack,
        "OUTPUT": str(tmp_path / "o.csv"),
        "OUTPUT_SUMMARY": str(tmp_path / "s.csv"),
        "OUTPUT_PLOT": str(tmp_path / "p.png"),
    }
    if case == "no_coordinates":
        header = ["id", "u", "v"] + header[3:]
    elif case == "no_dates":
        header = header[:3] + [f"survey{i}" for i in range(len(header) - 3)]
    params["BENCHMARKS"] = write_csv(tmp_path / "bm.csv", header, table)
    if case == "incidence":
        params["INCIDENCE"] = 95
    elif case == "incidence_zero":
        params["INCIDENCE"] = 0
    elif case == "reference":
        params["REFERENCE_DATE"] = "soon"
    with pytest.raises(QgsProcessingException, match=match):
        run_alg("benchmarkcompare", params)
    for f in ("o.csv", "s.csv", "p.png"):
        assert not (tmp_path / f).exists(), f
