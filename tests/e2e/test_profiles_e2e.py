"""extractprofiles, deformationrate and losvertical inside qgis_process.bin (no GUI loaded)."""

import csv
import json
import math

import numpy as np
import pytest

from tests.conftest import make_dates

pytestmark = pytest.mark.e2e

X0, Y0, RES = 500000.0, 4300000.0, 20.0


def _scene(write_stack, tmp_path):
    from affine import Affine  # noqa: F401 (rasterio present)
    from rasterio.warp import transform as warp

    from deformation_forecast.core.dates import to_decimal_year

    dates = make_dates(30)
    t = to_decimal_year(dates)
    rows, cols = np.mgrid[0:60, 0:80]
    bowl = np.exp(-(((rows - 30) / 10.0) ** 2 + ((cols - 40) / 12.0) ** 2))
    data = (-60.0 * (t - t[0]))[:, None, None] * bowl[None]
    stack = write_stack(data.astype("float32"), dates)
    # two lines in WGS 84 (reprojected to the stack's UTM 47N by the algorithm); II partly outside
    lines = {
        "I": [(X0 + 100.0, Y0 - 600.0), (X0 + 1500.0, Y0 - 600.0)],
        "II": [(X0 + 800.0, Y0 + 200.0), (X0 + 800.0, Y0 - 1100.0)],
    }
    feats = []
    for name, pts in lines.items():
        lon, lat = warp("EPSG:32647", "EPSG:4326", [p[0] for p in pts], [p[1] for p in pts])
        feats.append(
            {
                "type": "Feature",
                "properties": {"name": name},
                "geometry": {
                    "type": "LineString",
                    "coordinates": [list(c) for c in zip(lon, lat, strict=True)],
                },
            }
        )
    gj = tmp_path / "lines.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return stack, str(gj), dates, data


def test_extractprofiles_in_qgis_process(qgis_process, write_stack, tmp_path):
    stack, lines, dates, _ = _scene(write_stack, tmp_path)
    out, out_csv, out_png = tmp_path / "p.gpkg", tmp_path / "p.csv", tmp_path / "p.png"
    res = qgis_process(
        "run",
        "deformation_forecast:extractprofiles",
        "--",
        f"INPUT={stack}",
        f"LINES={lines}",
        "ID_FIELD=name",
        "INTERPOLATION=1",
        f"OUTPUT={out}",
        f"OUTPUT_CSV={out_csv}",
        f"OUTPUT_PLOT={out_png}",
    )
    r = res["results"]
    assert r["PROFILE_COUNT"] == 2
    assert r["OUTSIDE_COUNT"] == 10  # II starts 200 m north of the raster: 0, 20, ..., 180 m
    assert out.exists() and out_png.read_bytes()[:4] == b"\x89PNG"
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == r["SAMPLE_COUNT"] * len(dates)
    first = [row for row in rows if row["profile"] == "I" and row["date"] == dates[-1].isoformat()]
    assert float(first[-1]["distance"]) == pytest.approx(1400.0, abs=0.1)
    vals = [float(row["value"]) for row in first]
    assert min(vals) < -50  # the bowl centre: 60 mm/yr for 348 days, deepest near the middle
    assert vals.index(min(vals)) in range(len(vals) // 3, 2 * len(vals) // 3 + 1)
    second = [row for row in rows if row["profile"] == "II" and row["date"] == dates[0].isoformat()]
    assert sum(row["value"] == "" for row in second) == 10


def test_rates_and_vertical_in_qgis_process(qgis_process, write_stack, tmp_path):
    from deformation_forecast.core.stack import read_stack

    stack, _, dates, data = _scene(write_stack, tmp_path)
    rate = tmp_path / "rate.tif"
    res = qgis_process(
        "run",
        "deformation_forecast:deformationrate",
        "--",
        f"INPUT={stack}",
        "MODE=0",
        "VERTICAL=true",
        "INCIDENCE=34.17",
        f"OUTPUT={rate}",
    )
    v = read_stack(str(rate))
    assert v.shape == (2, 60, 80)
    assert res["results"]["MIN_RATE"] == pytest.approx(-60.0 / math.cos(math.radians(34.17)), rel=2e-3)
    vert = tmp_path / "vert.tif"
    qgis_process(
        "run", "deformation_forecast:losvertical", "--", f"INPUT={stack}", "INCIDENCE=60", f"OUTPUT={vert}"
    )
    np.testing.assert_allclose(read_stack(str(vert)), 2 * data, rtol=1e-5, atol=1e-4)
