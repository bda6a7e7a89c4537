import csv
import datetime as dt

import numpy as np
import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from deformation_forecast.gui.timeseries_dock import TimeSeriesDock
from tests.conftest import make_dates


@pytest.fixture
def scene(write_stack):
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(6, 8, 10)).astype("float32").cumsum(axis=0)
    obs[3, 2, 3] = np.nan
    dates = make_dates(6)
    fut = make_dates(3, start=dates[-1] + dt.timedelta(days=12))
    sp = write_stack(obs, dates, name="obs.tif", res=10.0, origin=(1000.0, 2000.0))
    fp = write_stack(
        obs[-1] + np.arange(1, 4, dtype="float32")[:, None, None],
        fut,
        name="fc.tif",
        res=10.0,
        origin=(1000.0, 2000.0),
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
    project.addMapLayers([stack, fc, bm])
    yield obs, stack
    project.removeAllMapLayers()


def test_click_shows_pixel_forecast_and_benchmark(qgis_app, scene, tmp_path):
    obs, stack = scene
    dock = TimeSeriesDock(None)
    crs = QgsCoordinateReferenceSystem("EPSG:32647")
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
