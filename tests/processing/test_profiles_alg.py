"""extractprofiles through processing.run: reprojected lines, fields, NULLs, CSV, chart, errors."""

import csv
import math

import numpy as np
import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsVectorLayer,
)

from deformation_forecast.core.stack import read_info
from tests.conftest import make_dates

X0, Y0, RES = 500000.0, 4300000.0, 20.0


class Recorder(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.warnings = []

    def pushWarning(self, text):  # noqa: N802
        self.warnings.append(text)
        super().pushWarning(text)


def _surface(h=30, w=40, n=3):
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([(k + 1) * (2.0 * cols - 3.0 * rows) for k in range(n)]).astype("float32")


def _lines(lines, crs="EPSG:32647", names=None):
    layer = QgsVectorLayer(f"MultiLineString?crs={crs}&field=name:string", "lines", "memory")
    feats = []
    for i, parts in enumerate(lines):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromMultiPolylineXY([[QgsPointXY(*p) for p in part] for part in parts]))
        f.setAttributes([names[i] if names else None])
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def _to_wgs84(pts):
    ct = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:32647"),
        QgsCoordinateReferenceSystem("EPSG:4326"),
        QgsProject.instance(),
    )
    return [(q.x(), q.y()) for q in (ct.transform(QgsPointXY(*p)) for p in pts)]


def test_profiles_from_lines_in_another_crs(run_alg, write_stack, tmp_path):
    data = _surface()
    path = write_stack(data)
    line_utm = [(X0 + 50.0, Y0 - 50.0), (X0 + 650.0, Y0 - 50.0), (X0 + 650.0, Y0 - 450.0)]
    layer = _lines([[_to_wgs84(line_utm)]], crs="EPSG:4326", names=["I"])
    out_csv, out_png = str(tmp_path / "p.csv"), str(tmp_path / "p.png")
    res = run_alg(
        "extractprofiles",
        {
            "INPUT": path,
            "LINES": layer,
            "ID_FIELD": "name",
            "INTERPOLATION": 0,
            "OUTPUT": "TEMPORARY_OUTPUT",
            "OUTPUT_CSV": out_csv,
            "OUTPUT_PLOT": out_png,
        },
    )
    out = res["OUTPUT"]
    if isinstance(out, str):
        out = QgsProject.instance().mapLayer(out) or QgsVectorLayer(out)
    names = out.fields().names()
    dates = read_info(path).dates
    assert names == ["profile", "part", "distance"] + [d.strftime("d%Y%m%d") for d in dates]
    feats = list(out.getFeatures())
    assert res["SAMPLE_COUNT"] == len(feats) and res["PROFILE_COUNT"] == 1 and res["OUTSIDE_COUNT"] == 0
    assert {f["profile"] for f in feats} == {"I"}
    dist = [f["distance"] for f in feats]
    assert dist[0] == pytest.approx(0.0) and dist[-1] == pytest.approx(1000.0, abs=0.05)  # reprojected back
    for f in feats:
        p = f.geometry().asPoint()
        r, c = int((Y0 - p.y()) // RES), int((p.x() - X0) // RES)
        assert [f[n] for n in names[3:]] == [float(data[k, r, c]) for k in range(3)]
    assert out.crs().authid() == "EPSG:32647"
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * len(feats) and rows[0]["profile"] == "I"
    with open(out_png, "rb") as fh:
        assert fh.read(4) == b"\x89PNG"


def test_partly_outside_null_and_warning_dates_subset(run_alg, write_stack):
    data = _surface()
    data[:, 5, :] = np.nan
    path = write_stack(data)
    dates = make_dates(3)
    y = Y0 - 5.5 * RES
    layer = _lines(
        [[[(X0 - 300.0, Y0 - 150.0), (X0 + 300.0, Y0 - 150.0)]], [[(X0 + 100.0, y), (X0 + 300.0, y)]]]
    )
    fb = Recorder()
    res = run_alg(
        "extractprofiles",
        {"INPUT": path, "LINES": layer, "DATES": dates[2].strftime("%Y%m%d"), "OUTPUT": "TEMPORARY_OUTPUT"},
        feedback=fb,
    )
    out = res["OUTPUT"]
    feats = list(out.getFeatures())
    assert out.fields().names() == ["profile", "part", "distance", dates[2].strftime("d%Y%m%d")]
    first = [f for f in feats if f["profile"] == "1"]
    nulls = [f for f in first if f[3] is None or (hasattr(f[3], "isNull") and f[3].isNull())]
    assert res["OUTSIDE_COUNT"] == len(nulls) == 15  # x < X0: 0, 20, ..., 280 m
    assert any("outside the raster" in w for w in fb.warnings)
    second = [f for f in feats if f["profile"] == "2"]
    assert all(f[3] is None or f[3].isNull() for f in second)  # incoherent row -> NULL


def test_line_wholly_outside_is_a_clear_error(run_alg, write_stack):
    path = write_stack(_surface())
    layer = _lines([[[(X0 + 90000.0, Y0), (X0 + 91000.0, Y0)]]], names=["far"])
    with pytest.raises(QgsProcessingException, match="line 'far' lies wholly outside the raster"):
        run_alg(
            "extractprofiles",
            {"INPUT": path, "LINES": layer, "ID_FIELD": "name", "OUTPUT": "TEMPORARY_OUTPUT"},
        )


def test_unknown_date_is_refused(run_alg, write_stack):
    path = write_stack(_surface())
    layer = _lines([[[(X0 + 100.0, Y0 - 100.0), (X0 + 300.0, Y0 - 100.0)]]])
    with pytest.raises(QgsProcessingException, match="DATES: 2030-01-01 is not a date of the stack"):
        run_alg(
            "extractprofiles",
            {"INPUT": path, "LINES": layer, "DATES": "2030-01-01", "OUTPUT": "TEMPORARY_OUTPUT"},
        )


def test_multipart_distance_continues(run_alg, write_stack):
    path = write_stack(_surface())
    layer = _lines(
        [
            [
                [(X0 + 100.0, Y0 - 100.0), (X0 + 300.0, Y0 - 100.0)],
                [(X0 + 100.0, Y0 - 300.0), (X0 + 200.0, Y0 - 300.0)],
            ]
        ]
    )
    res = run_alg(
        "extractprofiles", {"INPUT": path, "LINES": layer, "SPACING": 50.0, "OUTPUT": "TEMPORARY_OUTPUT"}
    )
    feats = list(res["OUTPUT"].getFeatures())
    assert [f["part"] for f in feats] == [0] * 5 + [1] * 3
    assert [f["distance"] for f in feats] == pytest.approx([0, 50, 100, 150, 200, 200, 250, 300])


def test_rate_and_los_algorithms(run_alg, write_stack, tmp_path):
    from deformation_forecast.core.dates import to_decimal_year
    from deformation_forecast.core.stack import read_stack

    dates = make_dates(40)
    t = to_decimal_year(dates)
    data = (-18.0 * (t - t[0]))[:, None, None] * np.ones((1, 6, 7))
    path = write_stack(data.astype("float32"), dates)
    out = str(tmp_path / "v.tif")
    res = run_alg("deformationrate", {"INPUT": path, "VERTICAL": True, "INCIDENCE": 34.17, "OUTPUT": out})
    np.testing.assert_allclose(read_stack(out)[0], -18.0 / math.cos(math.radians(34.17)), rtol=1e-5)
    assert res["MIN_RATE"] == pytest.approx(-18.0 / math.cos(math.radians(34.17)), rel=1e-5)

    outa = str(tmp_path / "a.tif")
    run_alg("deformationrate", {"INPUT": path, "MODE": 1, "OUTPUT": outa})
    assert read_stack(outa).shape[0] == 2  # 2018 and the first days of 2019

    outl = str(tmp_path / "l.tif")
    run_alg("losvertical", {"INPUT": path, "INCIDENCE": 60.0, "OUTPUT": outl})
    np.testing.assert_allclose(read_stack(outl), 2 * read_stack(path), rtol=1e-6)
    assert read_info(outl).dates == dates

    with pytest.raises(QgsProcessingException, match=r"strictly between 0 and 90"):
        run_alg("losvertical", {"INPUT": path, "INCIDENCE": 90.0, "OUTPUT": str(tmp_path / "bad.tif")})


def test_incidence_raster_on_another_grid_is_resampled_and_logged(run_alg, write_stack, tmp_path):
    from deformation_forecast.core.stack import read_stack

    path = write_stack(np.full((2, 6, 7), -10.0, dtype="float32"))
    inc = write_stack(
        np.full((1, 4, 4), 60.0, dtype="float32"),
        name="inc_20180101.tif",
        res=40.0,
        origin=(X0 - 10.0, Y0 + 10.0),
    )
    logs = []

    class Log(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802
            logs.append(info)

    out = str(tmp_path / "v.tif")
    run_alg("losvertical", {"INPUT": path, "INCIDENCE_RASTER": inc, "OUTPUT": out}, feedback=Log())
    np.testing.assert_allclose(read_stack(out), -20.0, rtol=1e-5)
    assert any("resampled" in m for m in logs)


def test_geographic_stack_gives_distances_in_metres(run_alg, write_stack):
    from qgis.core import QgsDistanceArea

    path = write_stack(_surface(), crs="EPSG:4326", res=0.0002, origin=(102.0, 38.5))
    a, b = (102.0011, 38.4989), (102.0071, 38.4989)
    layer = _lines([[[a, b]]], crs="EPSG:4326")
    res = run_alg("extractprofiles", {"INPUT": path, "LINES": layer, "OUTPUT": "TEMPORARY_OUTPUT"})
    feats = list(res["OUTPUT"].getFeatures())
    da = QgsDistanceArea()
    da.setSourceCrs(QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance().transformContext())
    da.setEllipsoid("EPSG:7030")
    expected = da.measureLine(QgsPointXY(*a), QgsPointXY(*b))
    assert 500 < expected < 550
    assert feats[-1]["distance"] == pytest.approx(expected, rel=1e-6)
    assert len(feats) == 31  # 0.006 deg every 0.0002 deg (the pixel size)


def test_spacing_is_metres_on_the_ground_on_a_geographic_stack(run_alg, write_stack):
    """SPACING = 50 m on EPSG:4326 samples every ~50 m along an east-west and a north-south line
    (not every 50 degrees, and not the same number of samples per degree on both axes)."""
    path = write_stack(_surface(60, 60), crs="EPSG:4326", res=0.0002, origin=(102.0, 38.5))
    east = [(102.0011, 38.4989), (102.0101, 38.4989)]  # 0.009 deg of longitude: ~786 m
    north = [(102.0011, 38.4989), (102.0011, 38.4909)]  # 0.008 deg of latitude: ~888 m
    layer = _lines([[east], [north]], crs="EPSG:4326", names=["E", "N"])
    params = {
        "INPUT": path,
        "LINES": layer,
        "ID_FIELD": "name",
        "SPACING": 50.0,
        "OUTPUT": "TEMPORARY_OUTPUT",
    }
    feats = list(run_alg("extractprofiles", params)["OUTPUT"].getFeatures())
    for name, expected_m in (("E", 786.0), ("N", 888.0)):
        dist = np.array([f["distance"] for f in feats if f["profile"] == name])
        gaps = np.diff(dist)
        # every 50 m on the ground (ellipsoidal distances), the end point last
        np.testing.assert_allclose(gaps[:-1], 50.0, rtol=0.01)
        assert 0 < gaps[-1] <= 50.0 * 1.01
        assert len(dist) == math.floor(dist[-1] / 50.0) + 2
        assert dist[-1] == pytest.approx(expected_m, rel=0.01)
