"""`pointstostack` through processing.run: real StaMPS / DePSI CSVs, a point layer, bad inputs."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException


def _stamps(shared):
    return os.path.join(shared, "maoxian_stamps", "Maoxian_SBAS.csv")


def _depsi(shared):
    return os.path.join(shared, "amsterdam_depsi", "example.csv")


def test_stamps_csv_to_stack(run_alg, shared_data, tmp_path):
    out = str(tmp_path / "maoxian.tif")
    res = run_alg("pointstostack", {"INPUT_CSV": _stamps(shared_data), "PIXEL_SIZE": 30, "OUTPUT": out})
    assert res["OUTPUT"] == out
    assert res["DATE_COUNT"] == 38 and res["SKIPPED_COUNT"] == 0
    # 608 points 4.4 m apart (median) on 30 m cells, METHOD nearest: 165 of them entered the grid
    assert res["POINT_COUNT"] + res["MERGED_COUNT"] == 608 and res["POINT_COUNT"] == 165
    assert res["OUTPUT_CRS_USED"] == "EPSG:32648"
    with rasterio.open(out) as src:
        assert src.count == 38 and src.crs.to_epsg() == 32648
        assert src.descriptions[0] == "2014-11-26" and src.descriptions[-1] == "2017-06-19"
        assert src.res == (30.0, 30.0)
        arr = src.read()
    assert int(np.any(np.isfinite(arr), axis=0).sum()) == res["FILLED_CELLS"] > 0


def test_depsi_csv_idw_metres_to_mm(run_alg, shared_data, tmp_path):
    out = str(tmp_path / "ams.tif")
    res = run_alg(
        "pointstostack",
        {
            "INPUT_CSV": _depsi(shared_data),
            "PIXEL_SIZE": 10,
            "METHOD": 1,
            "OUTPUT_CRS": "EPSG:28992",
            "OUTPUT": out,
        },
    )
    assert res["POINT_COUNT"] == 2500 and res["DATE_COUNT"] == 11
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 28992
        arr = src.read()
    # metres -> mm: DePSI displacements of a few mm, not thousandths
    assert 1.0 < np.nanmax(np.abs(arr)) < 100.0
    assert np.all(arr[0][np.isfinite(arr[0])] == 0)  # first date is the reference


def test_point_layer_input(run_alg, tmp_path):
    from qgis.core import QgsFeature, QgsField, QgsGeometry, QgsPointXY, QgsVectorLayer
    from qgis.PyQt.QtCore import QVariant

    layer = QgsVectorLayer("Point?crs=EPSG:32647", "pts", "memory")
    pr = layer.dataProvider()
    pr.addAttributes(
        [
            QgsField("id", QVariant.Int),
            QgsField("D20200101", QVariant.Double),
            QgsField("D20200113", QVariant.Double),
        ]
    )
    layer.updateFields()
    feats = []
    for i, (x, y, a, b) in enumerate(
        [(500010, 4300090, 1.0, 2.0), (500090, 4300010, 3.0, 4.0), (500050, 4300050, None, None)]
    ):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        f.setAttributes([i, a, b])
        feats.append(f)
    pr.addFeatures(feats)
    out = str(tmp_path / "layer.tif")
    res = run_alg("pointstostack", {"INPUT": layer, "PIXEL_SIZE": 20, "RADIUS": 5, "OUTPUT": out})
    assert res["POINT_COUNT"] == 2 and res["SKIPPED_COUNT"] == 1
    assert res["OUTPUT_CRS_USED"] == "EPSG:32647"
    with rasterio.open(out) as src:
        assert src.descriptions == (dt.date(2020, 1, 1).isoformat(), "2020-01-13")
        arr = src.read()
    assert arr.shape == (2, 5, 5)
    assert arr[0, 0, 0] == 1.0 and arr[1, 4, 4] == 4.0
    assert np.isnan(arr[0, 2, 2])


def _bad(run_alg, params, tmp_path, match):
    out = tmp_path / "bad.tif"
    with pytest.raises(QgsProcessingException, match=match):
        run_alg("pointstostack", {"PIXEL_SIZE": 10, "OUTPUT": str(out), **params})
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tif")]


def test_csv_without_date_fields(run_alg, tmp_path):
    p = tmp_path / "nodates.csv"
    p.write_text("lon,lat,velocity\n10,50,1\n")
    _bad(run_alg, {"INPUT_CSV": str(p)}, tmp_path, "no date fields")


def test_csv_without_coordinates(run_alg, tmp_path):
    p = tmp_path / "nocoords.csv"
    p.write_text("id,D20200101,D20200113\n1,0,1\n")
    _bad(run_alg, {"INPUT_CSV": str(p)}, tmp_path, "no coordinate columns")


def test_non_numeric_cell(run_alg, tmp_path):
    p = tmp_path / "text.csv"
    p.write_text("lon,lat,D20200101,D20200113\n10,50,0,1\n10.1,50,0,n.a.x\n")
    _bad(run_alg, {"INPUT_CSV": str(p)}, tmp_path, r"'D20200113' in row 3")


def test_empty_layer(run_alg, tmp_path):
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=D20200101:double", "empty", "memory")
    _bad(run_alg, {"INPUT": layer}, tmp_path, "no features")


def test_no_input_at_all(run_alg, tmp_path):
    _bad(run_alg, {}, tmp_path, "No points given")


def test_stamps_format_forced_on_a_date_field_csv(run_alg, tmp_path):
    p = tmp_path / "fields.csv"
    p.write_text("lon,lat,D20200101\n10,50,0\n")
    _bad(run_alg, {"INPUT_CSV": str(p), "FORMAT": 2}, tmp_path, "StaMPS")


def test_depsi_as_delimited_text_layer_matches_csv(run_alg, shared_data, tmp_path):
    from qgis.core import QgsVectorLayer

    path = _depsi(shared_data)
    layer = QgsVectorLayer(
        f"file://{path}?delimiter=,&xField=pnt_lon&yField=pnt_lat&crs=EPSG:4326", "depsi", "delimitedtext"
    )
    assert layer.isValid() and layer.featureCount() == 2500
    a, b = str(tmp_path / "layer.tif"), str(tmp_path / "csv.tif")
    ra = run_alg("pointstostack", {"INPUT": layer, "PIXEL_SIZE": 8, "METHOD": 1, "OUTPUT": a})
    rb = run_alg("pointstostack", {"INPUT_CSV": path, "PIXEL_SIZE": 8, "METHOD": 1, "OUTPUT": b})
    assert ra["POINT_COUNT"] == rb["POINT_COUNT"] == 2500
    with rasterio.open(a) as sa, rasterio.open(b) as sb:
        assert sa.transform.almost_equals(sb.transform) and sa.crs == sb.crs
        np.testing.assert_allclose(sa.read(), sb.read(), rtol=1e-6, atol=1e-6, equal_nan=True)
