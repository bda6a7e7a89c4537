"""The inverse-velocity dock: failuretime's points and the series they come from, charted as the
algorithm's chart does, with Voight's line reaching 1/v = 0 at the failure date the run forecast."""

import datetime as dt

import numpy as np
import pytest
from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QDate

from deformation_forecast.core.failure import Params
from deformation_forecast.core.failure_run import analyse_points
from deformation_forecast.core.failure_synthetic import regular_dates, voight_series

X0, Y0 = 500000.0, 4300000.0


def _scene(n_linear=30):
    """80 acquisitions 6 days apart: one point accelerating toward a failure 20 days after the
    last date, and linear creepers with a little noise."""
    rng = np.random.default_rng(3)
    dates = regular_dates(dt.date(2020, 1, 1), 80)
    failure = dates[-1] + dt.timedelta(days=20)
    series = [-voight_series(dates, failure, v_end=2.0, end_lead=20.0)]
    t = np.array([(d - dates[0]).days for d in dates]) / 365.25
    for _ in range(n_linear):
        series.append(t * rng.uniform(-40, -5) + rng.normal(0, 1.0, len(dates)))
    return dates, np.array(series), failure


def _layers(dates, values):
    fields = "&".join(["field=pid:integer"] + [f"field={d.strftime('d%Y%m%d')}:double" for d in dates])
    source = QgsVectorLayer(f"Point?crs=EPSG:32647&{fields}", "ps points", "memory")
    feats = []
    xy = (X0 + 100.0 * np.arange(len(values)), np.full(len(values), Y0))
    for i, row in enumerate(values):
        f = QgsFeature(source.fields())
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(xy[0][i], xy[1][i])))
        f.setAttributes([i + 1, *[float(v) for v in row]])
        feats.append(f)
    source.dataProvider().addFeatures(feats)
    records, _, _ = analyse_points(values, xy, dates, Params())
    out_fields = (
        "field=point_id:integer&field=alert:integer&field=failure_date:date&field=failure_early:date"
        "&field=failure_late:date&field=days_to_failure:double&field=velocity:double"
    )
    out = QgsVectorLayer(f"Point?crs=EPSG:32647&{out_fields}", "failure points", "memory")
    for r in records:
        f = QgsFeature(out.fields())
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(r.x, r.y)))
        v = r.values
        day = [
            QDate(d.year, d.month, d.day) if d else None
            for d in (v["failure_date"], v["failure_early"], v["failure_late"])
        ]
        f.setAttributes([v["point_id"], v["alert"], *day, v["days_to_failure"], v["velocity"]])
        out.dataProvider().addFeature(f)
    return source, out, records


def test_chart_of_the_point_forecast_to_fail(qgis_app, qgis_iface, tmp_path):
    from matplotlib.dates import date2num

    from deformation_forecast.gui.failure_dock import FailureDock, is_failure_layer, is_series_source

    dates, values, failure = _scene()
    source, out, records = _layers(dates, values)
    forecast = [r for r in records if r.values["failure_date"] is not None]
    assert [r.values["point_id"] for r in forecast] == [1]  # the accelerating point only
    forecast_date = forecast[0].values["failure_date"]
    assert abs((forecast_date - failure).days) <= 6
    QgsProject.instance().addMapLayers([source, out])
    try:
        assert is_failure_layer(out) and not is_failure_layer(source)
        assert is_series_source(source) and not is_series_source(out)
        dock = FailureDock(qgis_iface)
        dock.source_combo.setLayer(source)
        assert dock.show_layer(out) == 1  # the alerted points, when there are
        assert dock.items[0][2] == "point 1" and dock.items[0][4]["alert"] >= 2
        # Voight's line ends where 1/v reaches zero: the failure date the run forecast
        lines = dock.fitted_lines()
        assert len(lines) == 1
        assert lines[0][1] == pytest.approx(date2num(dt.datetime.combine(forecast_date, dt.time())), abs=1.0)
        k = dock.items[0][4]["k"]
        assert k > 0  # 1/v falls toward the failure date
        dock.resize(560, 520)
        dock.show()
        qgis_app.processEvents()
        assert dock.grab().save(str(tmp_path / "failure_dock.png"), "PNG")
        # selecting points on the map charts those instead
        out.selectByIds([f.id() for f in out.getFeatures() if f["point_id"] in (2, 3)])
        assert sorted(item[2] for item in dock.items) == ["point 2", "point 3"]
        assert dock.fitted_lines() == []  # no failure forecast for linear creep
        dock.close()
    finally:
        QgsProject.instance().removeMapLayers([source.id(), out.id()])


def test_not_a_failure_layer_is_explained(qgis_app, qgis_iface):
    from deformation_forecast.gui.failure_dock import FailureDock

    dock = FailureDock(qgis_iface)
    layer = QgsVectorLayer("Point?crs=EPSG:32647&field=id:integer", "pts", "memory")
    assert dock.show_layer(layer) == 0
    assert "not an output of 'Acceleration and time of failure'" in dock.message.text()


def test_the_dock_opens_when_failuretime_points_are_loaded(gui):
    dates, values, _ = _scene(n_linear=10)
    source, out, _ = _layers(dates, values)
    QgsProject.instance().addMapLayers([source, out])
    dock = gui.docks.get("failure")
    assert dock is not None and not dock.isHidden()
    assert dock.layer_combo.currentLayer() is out and dock.source_combo.currentLayer() is source
    assert dock.items and dock.items[0][2] == "point 1"


def test_series_from_a_stack_pixel(qgis_app, qgis_iface, write_stack):
    """For a stack, the run's point sits on the alerted pixel's centre: the dock reads that pixel."""
    from qgis.core import QgsRasterLayer

    from deformation_forecast.gui.failure_dock import FailureDock, series_at

    dates, values, _ = _scene(n_linear=8)
    cube = np.zeros((len(dates), 3, 3), dtype="float32")
    cube[:, 1, 2] = values[0]  # the accelerating series at row 1, column 2; the others stable
    path = write_stack(cube, dates)
    stack = QgsRasterLayer(path, "stack", "gdal")
    centre = QgsPointXY(500000.0 + 20 * 2.5, 4300000.0 - 20 * 1.5)
    got = series_at(stack, centre, stack.crs())
    assert got is not None and got[0] == dates
    np.testing.assert_allclose(got[1], values[0], atol=1e-3)
    _, out, _ = _layers(dates, values[:1])
    out.dataProvider().changeGeometryValues(
        {f.id(): QgsGeometry.fromPointXY(centre) for f in out.getFeatures()}
    )
    QgsProject.instance().addMapLayers([stack, out])
    try:
        dock = FailureDock(qgis_iface)
        dock.source_combo.setLayer(stack)
        assert dock.show_layer(out) == 1
        assert len(dock.fitted_lines()) == 1
        dock.close()
    finally:
        QgsProject.instance().removeMapLayers([stack.id(), out.id()])
