import csv
import datetime as dt

import numpy as np
import pytest
from affine import Affine
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from deformation_forecast.core.stack import write_stack as core_write_stack
from deformation_forecast.gui.timeseries_dock import TimeSeriesDock
from tests.conftest import make_dates


@pytest.fixture
def scene(write_stack, tmp_path):
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(6, 8, 10)).astype("float32").cumsum(axis=0)
    obs[3, 2, 3] = np.nan
    dates = make_dates(6)
    fut = make_dates(3, start=dates[-1] + dt.timedelta(days=12))
    sp = write_stack(obs, dates, name="obs.tif", res=10.0, origin=(1000.0, 2000.0))
    fp = str(tmp_path / "fc.tif")  # what the forecast writes: its SOURCE tag
    core_write_stack(
        fp,
        obs[-1] + np.arange(1, 4, dtype="float32")[:, None, None],
        fut,
        "EPSG:32647",
        Affine(10.0, 0, 1000.0, 0, -10.0, 2000.0),
        tags={"SOURCE": "deformation_forecast forecast"},
    )
    rate = str(tmp_path / "fc_rate.tif")  # the forecast's annual rate: dated bands, mm/yr
    core_write_stack(
        rate,
        np.ones((1, 8, 10), "float32"),
        fut[-1:],
        "EPSG:32647",
        Affine(10.0, 0, 1000.0, 0, -10.0, 2000.0),
        units="mm/yr",
        tags={"SOURCE": "deformation_forecast forecast"},
    )
    stack = QgsRasterLayer(sp, "obs", "gdal")
    fc = QgsRasterLayer(fp, "fc", "gdal")
    bm = QgsVectorLayer(
        "Point?crs=EPSG:32647&field=id:string&field=D20180101:double&field=D20180125:double", "bm", "memory"
    )
    f = QgsFeature(bm.fields())
    f.setAttributes(["BM1", 0.0, -2.5])
    f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(1036.0, 1974.0)))
    bm.dataProvider().addFeatures([f])
    project = QgsProject.instance()
    project.addMapLayers([stack, fc, bm, QgsRasterLayer(rate, "fc rate", "gdal")])
    yield obs, stack, bm
    project.removeAllMapLayers()


def test_click_shows_pixel_forecast_and_benchmark(qgis_app, scene, tmp_path):
    obs, stack, bm = scene
    dock = TimeSeriesDock(None)
    # the pickers offer what the plugin recognises: the forecast (by its tag), not its rate raster
    assert [dock.forecast_combo.itemText(i) for i in range(dock.forecast_combo.count())] == ["fc"]
    assert dock.benchmark_combo.count() == 1 and dock.benchmark_combo.checkedItems() == []
    crs = QgsCoordinateReferenceSystem("EPSG:32647")
    assert dock.show_point(stack, QgsPointXY(1035.0, 1975.0), crs) == 2  # benchmarks not chosen yet
    assert dock.plotted_labels() == ["obs (1035, 1975)", "fc (forecast)"]
    dock.set_chosen(dock.benchmark_combo, [bm])
    n = dock.show_point(stack, QgsPointXY(1035.0, 1975.0), crs)  # row 2, col 3
    assert n == 3
    observed, forecast, bench = dock.current
    np.testing.assert_array_equal(observed.values, obs[:, 2, 3])
    np.testing.assert_array_equal(forecast.values, obs[-1, 2, 3] + np.array([1, 2, 3], dtype="float32"))
    assert bench.kind == "benchmark" and list(bench.values) == [0.0, -2.5]
    ax = dock.figure.axes[0]
    np.testing.assert_array_equal(np.asarray(ax.lines[0].get_ydata(), dtype="float32"), obs[:, 2, 3])
    assert dock.plotted_lines() == 3
    dock.pin()
    dock.show_point(stack, QgsPointXY(1005.0, 1995.0), crs)  # row 0, col 0
    assert len(dock.pinned) == 1 and dock.plotted_lines() == 5  # the benchmark is far from (0, 0)
    dock.export_csv(str(tmp_path / "s.csv"))
    dock.export_png(str(tmp_path / "s.png"))
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == (6 + 3 + 2) + (6 + 3)
    assert rows[3]["value_mm"] == ""  # the NaN date stays empty
    assert (tmp_path / "s.png").stat().st_size > 5000
    assert dock.show_point(stack, QgsPointXY(0.0, 0.0), crs) == 0
    dock.clear()
    assert dock.plotted_lines() == 0


def test_point_layer_with_date_fields_can_be_clicked(qgis_app, scene):
    _, _, bm = scene
    dock = TimeSeriesDock(None)
    crs = QgsCoordinateReferenceSystem("EPSG:32647")
    assert dock.show_point(bm, QgsPointXY(1030.0, 1970.0), crs) == 1  # the nearest point
    assert dock.plotted_labels() == ["bm BM1"]
    assert list(dock.current[0].values) == [0.0, -2.5]
    assert [d.isoformat() for d in dock.current[0].dates] == ["2018-01-01", "2018-01-25"]


def test_pixels_show_as_markers_on_the_canvas(gui, scene, qgis_iface):
    from qgis.gui import QgsVertexMarker

    _, stack, _ = scene
    dock = gui.show_dock("timeseries")
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(stack.crs())
    crs = QgsCoordinateReferenceSystem("EPSG:32647")
    dock.show_point(stack, QgsPointXY(1035.0, 1975.0), crs)
    dock.pin()
    dock.show_point(stack, QgsPointXY(1005.0, 1995.0), crs)
    markers = [item for item in canvas.scene().items() if isinstance(item, QgsVertexMarker)]
    assert len(markers) == 2
    centres = sorted((round(m.center().x()), round(m.center().y())) for m in dock.markers)
    assert centres == [(1005, 1995), (1035, 1975)]
    dock.clear()
    assert not [item for item in canvas.scene().items() if isinstance(item, QgsVertexMarker)]


def test_toolbar_button_is_the_dock_map_tool(gui, scene, qgis_iface):
    toolbar_actions = [a.objectName() for a in gui.toolbar.actions()]
    assert "deformation_forecast_pick" in toolbar_actions
    gui.pick_action.setChecked(True)
    dock = gui.docks["timeseries"]
    assert not dock.isHidden() and qgis_iface.mapCanvas().mapTool() is dock.tool
    assert dock.pick_button.isChecked()
    dock.pick_button.setChecked(False)  # the dock's button and the toolbar's stay in step
    assert not gui.pick_action.isChecked() and qgis_iface.mapCanvas().mapTool() is not dock.tool


def test_forecast_band_is_shaded_and_its_bounds_are_not_offered_as_forecasts(qgis_app, scene, tmp_path):
    """The forecast's OUTPUT_LOWER / OUTPUT_UPPER (tags INTERVAL, CONFIDENCE: ml/forecast.py) on
    the forecast's grid and dates: shaded around the forecast line, not plotted as forecasts."""
    obs, stack, _ = scene
    fut = make_dates(3, start=make_dates(6)[-1] + dt.timedelta(days=12))
    centre = obs[-1] + np.arange(1, 4, dtype="float32")[:, None, None]
    layers = []
    for side, shift in (("lower", -2.0), ("upper", 3.0)):
        path = str(tmp_path / f"fc_{side}.tif")
        tags = {"SOURCE": "deformation_forecast forecast", "INTERVAL": side, "CONFIDENCE": "0.9"}
        width = np.arange(1, 4, dtype="float32")[:, None, None]  # widens with the horizon
        core_write_stack(
            path,
            centre + shift * width,
            fut,
            "EPSG:32647",
            Affine(10.0, 0, 1000.0, 0, -10.0, 2000.0),
            tags=tags,
        )
        layers.append(QgsRasterLayer(path, f"fc {side}", "gdal"))
    QgsProject.instance().addMapLayers(layers)
    dock = TimeSeriesDock(None)
    assert [dock.forecast_combo.itemText(i) for i in range(dock.forecast_combo.count())] == ["fc"]
    crs = QgsCoordinateReferenceSystem("EPSG:32647")
    assert dock.show_point(stack, QgsPointXY(1035.0, 1975.0), crs) == 2  # row 2, col 3
    forecast = dock.current[1]
    np.testing.assert_array_equal(forecast.meta["lower"], centre[:, 2, 3] - 2.0 * np.array([1, 2, 3]))
    np.testing.assert_array_equal(forecast.meta["upper"], centre[:, 2, 3] + 3.0 * np.array([1, 2, 3]))
    assert dock.plotted_labels() == ["obs (1035, 1975)", "fc (forecast)", "90% band"]
    band = dock.figure.axes[0].collections[0]
    ys = band.get_paths()[0].vertices[:, 1]  # the shaded polygon spans lower..upper
    assert ys.min() == pytest.approx(float(forecast.meta["lower"].min()))
    assert ys.max() == pytest.approx(float(forecast.meta["upper"].max()))
    # without both bounds in the project there is no band
    QgsProject.instance().removeMapLayer(layers[1].id())
    dock.show_point(stack, QgsPointXY(1035.0, 1975.0), crs)
    assert "lower" not in dock.current[1].meta and not dock.figure.axes[0].collections
