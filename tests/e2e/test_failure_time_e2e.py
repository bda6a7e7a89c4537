"""`failuretime` inside qgis_process.bin for the three input kinds: a stack, a point layer
(GeoPackage) and a CSV (the real Maoxian StaMPS export)."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from deformation_forecast.core import failure_synthetic as S
from deformation_forecast.core.dates import field_name
from deformation_forecast.core.stack import write_stack

pytestmark = pytest.mark.e2e

LEAD, SIZE, PATCH, PIXEL = 60, 12, 4, 20.0
X0, Y0 = 500000.0, 3500000.0


def _field():
    rng = np.random.default_rng(7)
    dates = S.regular_dates(dt.date(2019, 1, 1), 62, 12)
    d = S.field("linear", dates, SIZE, rng)
    creep = -S.voight_series(dates, dates[-1] + dt.timedelta(days=LEAD), 2.0, LEAD)
    d[:, :PATCH, :PATCH] = creep[:, None, None] + rng.normal(0, 1.5, (len(dates), PATCH, PATCH))
    return dates, d


def _read_points(path):
    from osgeo import ogr

    ds = ogr.Open(path)
    lyr = ds.GetLayer(0)
    rows = []
    for f in lyr:
        rows.append({k: f.GetField(k) for k in ("alert", "failure_date", "days_to_failure", "point_id")})
    return rows, lyr.GetSpatialRef().GetAuthorityCode(None)


def test_stack_in_qgis_process(qgis_process, tmp_path):
    dates, d = _field()
    stack = str(tmp_path / "stack.tif")
    write_stack(stack, d.astype("float32"), dates, "EPSG:32648", Affine(PIXEL, 0, X0, 0, -PIXEL, Y0))
    out, ras, plot = str(tmp_path / "alerts.gpkg"), str(tmp_path / "fail.tif"), str(tmp_path / "c.png")
    r = qgis_process(
        "run",
        "deformation_forecast:failuretime",
        "--",
        f"STACK={stack}",
        f"OUTPUT={out}",
        f"OUTPUT_RASTER={ras}",
        f"OUTPUT_PLOT={plot}",
    )["results"]
    rows, epsg = _read_points(out)
    assert epsg == "32648"
    assert len(rows) == PATCH * PATCH == r["ALERTS"]
    assert all(row["alert"] >= 1 for row in rows)
    assert abs(np.median([row["days_to_failure"] for row in rows]) - LEAD) <= 0.1 * LEAD
    with rasterio.open(ras) as src:
        assert src.count == 4 and src.crs.to_epsg() == 32648
        a = src.read(4)
    assert (a[:PATCH, :PATCH] >= 1).all() and np.nansum(a[PATCH:, PATCH:]) == 0
    assert os.path.getsize(plot) > 10_000


def test_point_layer_in_qgis_process(qgis_process, tmp_path):
    from osgeo import ogr, osr

    dates, d = _field()
    gpkg = str(tmp_path / "points.gpkg")
    drv = ogr.GetDriverByName("GPKG")
    ds = drv.CreateDataSource(gpkg)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32648)
    lyr = ds.CreateLayer("points", srs, ogr.wkbPoint)
    for x in dates:
        lyr.CreateField(ogr.FieldDefn(field_name(x).upper(), ogr.OFTReal))
    vals = d.reshape(len(dates), -1).T
    for i in range(vals.shape[0]):
        f = ogr.Feature(lyr.GetLayerDefn())
        r, c = divmod(i, SIZE)
        f.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({X0 + (c + 0.5) * PIXEL} {Y0 - (r + 0.5) * PIXEL})"))
        for k, v in enumerate(vals[i]):
            f.SetField(k, float(v))
        lyr.CreateFeature(f)
    ds = None
    out = str(tmp_path / "out.gpkg")
    r = qgis_process("run", "deformation_forecast:failuretime", "--", f"POINTS={gpkg}", f"OUTPUT={out}")[
        "results"
    ]
    rows, epsg = _read_points(out)
    assert epsg == "32648" and len(rows) == SIZE * SIZE
    alerted = {row["point_id"] for row in rows if row["alert"] >= 1}
    assert alerted == {r * SIZE + c + 1 for r in range(PATCH) for c in range(PATCH)}
    assert r["ALERTS"] == PATCH * PATCH
    assert r["EARLIEST_FAILURE_DATE"] > dates[-1].isoformat()


def test_stamps_csv_in_qgis_process(qgis_process, shared_data, tmp_path):
    csv = os.path.join(shared_data, "maoxian_stamps", "Maoxian_SBAS.csv")
    out = str(tmp_path / "maoxian.gpkg")
    r = qgis_process(
        "run", "deformation_forecast:failuretime", "--", f"POINTS_CSV={csv}", "FIT_WINDOW=8", f"OUTPUT={out}"
    )["results"]
    rows, epsg = _read_points(out)
    assert epsg == "4326" and len(rows) == 608
    assert r["ALERTS"] == sum(1 for row in rows if row["alert"] >= 1) == 0
    assert all(row["failure_date"] is None for row in rows)
