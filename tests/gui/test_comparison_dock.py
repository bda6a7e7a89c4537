"""The comparison dock offscreen: table rows equal the layer's features, one bar per model, the
metrics per date as lines, PNG export, and the plugin's hook that opens it after comparemodels or
evaluateforecast ran with the table loaded (as from the Toolbox)."""

import sys
import warnings

import numpy as np
import pytest
from qgis.core import QgsFeature, QgsVectorLayer

from tests.conftest import make_dates

sys.path.insert(0, "/usr/share/qgis/python/plugins")

MODELS = ("persistence", "linear-trend", "svr")
MODEL_FIELDS = "&".join(
    ["field=model:string", "field=mode:string"]
    + [f"field={m}:double" for m in ("MAE", "MSE", "RMSE", "SSIM", "MS_SSIM", "PSNR", "R2")]
    + ["field=device:string"]
)


def _models_layer():
    layer = QgsVectorLayer(f"None?{MODEL_FIELDS}", "Comparison table", "memory")
    feats = []
    for i, m in enumerate(MODELS):
        for mode in ("one-step", "iterative"):
            f = QgsFeature(layer.fields())
            mae = 1.0 + i + (0.5 if mode == "iterative" else 0.0)
            psnr = None if m == "svr" else 30.0 - i  # a NULL metric
            f.setAttributes([m, mode, mae, mae**2, mae, 0.9 - 0.1 * i, 0.8, psnr, 0.5, "CPU"])
            feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def _dates_layer(n=5):
    fields = "field=date:string&field=observed_date:string&field=MAE:double&field=SSIM:double&field=N:integer"
    layer = QgsVectorLayer(f"None?{fields}", "Metrics per date", "memory")
    feats = []
    for k, d in enumerate([*make_dates(n), None]):
        f = QgsFeature(layer.fields())
        date = d.isoformat() if d else "overall"
        f.setAttributes([date, date if d else "", 0.5 * (k + 1), 0.9 - 0.05 * k, 100])
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def test_models_table_rows_and_one_bar_per_model(qgis_app, qgis_iface, tmp_path):
    from deformation_forecast.gui.comparison_dock import ComparisonDock

    layer = _models_layer()
    dock = ComparisonDock(qgis_iface)
    dock.resize(900, 500)
    assert dock.show_layer(layer) == layer.featureCount() == 6
    tw = dock.table_widget
    assert tw.rowCount() == 6
    assert [tw.horizontalHeaderItem(j).text() for j in range(tw.columnCount())] == layer.fields().names()
    for i, f in enumerate(layer.getFeatures()):
        assert tw.item(i, 0).text() == f["model"] and tw.item(i, 1).text() == f["mode"]
        assert float(tw.item(i, 2).text()) == pytest.approx(f["MAE"])
    assert tw.item(4, 7).text() == ""  # the NULL PSNR of svr
    assert dock.selected_mode() == "one-step"
    assert dock.bar_counts() == {"MAE": 3, "SSIM": 3}
    ax = dock.figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(MODELS)
    assert [p.get_height() for p in ax.patches] == pytest.approx([1.0, 2.0, 3.0])
    dock.mode_combo.setCurrentText("iterative")
    assert [p.get_height() for p in dock.figure.axes[0].patches] == pytest.approx([1.5, 2.5, 3.5])
    # chart PSNR alone: the NULL value is a zero-height bar, still one bar per model
    for i in range(dock.metric_list.count()):
        it = dock.metric_list.item(i)
        it.setCheckState(2 if it.text() == "PSNR" else 0)
    assert dock.bar_counts() == {"PSNR": 3}
    png = dock.export(str(tmp_path / "comparison"))
    assert png.endswith(".png")
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    dock.show()
    assert dock.grab().save(str(tmp_path / "comparison_widget.png"), "PNG")
    dock.close()


def test_metrics_per_date_as_lines(qgis_app, qgis_iface, tmp_path):
    from deformation_forecast.gui.comparison_dock import ComparisonDock

    dock = ComparisonDock(qgis_iface)
    layer = _dates_layer(5)
    assert dock.show_layer(layer) == 6  # five dates and the overall row
    assert dock.table_widget.item(5, 0).text() == "overall"
    assert not dock.mode_combo.isEnabled()
    assert dock.line_count() == 2  # MAE and SSIM
    mae = [ln for ln in dock.figure.axes[0].get_lines() if ln.get_gid()][0]
    np.testing.assert_allclose(mae.get_ydata(), [0.5, 1.0, 1.5, 2.0, 2.5])
    png = dock.export(str(tmp_path / "dates.png"))
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_not_a_metrics_table_is_explained(qgis_app, qgis_iface):
    from deformation_forecast.gui.comparison_dock import ComparisonDock

    dock = ComparisonDock(qgis_iface)
    layer = QgsVectorLayer("None?field=id:integer", "t", "memory")
    assert dock.show_layer(layer) == 0
    assert "not a metrics table" in dock.message.text()
    assert dock.table_widget.rowCount() == 0 and dock.bar_counts() == {}


def _bowl(n=14, h=12, w=14):
    yy, xx = np.mgrid[:h, :w]
    bowl = np.exp(-(((yy - h / 2) / 3.0) ** 2 + ((xx - w / 2) / 4.0) ** 2))
    return (-2.0 * np.arange(n)[:, None, None] * bowl).astype("float32")


def test_dock_opens_after_comparemodels_loads_its_table(gui, write_stack, tmp_path):
    import processing

    from deformation_forecast.processing import result_hooks

    assert result_hooks.listeners("comparemodels") and result_hooks.listeners("evaluateforecast")
    path = write_stack(_bowl())
    assert "comparison" not in gui.docks
    res = processing.runAndLoadResults(
        "deformation_forecast:comparemodels",
        {
            "INPUT": path,
            "MODELS": [0, 1],  # persistence, linear trend: no TensorFlow
            "TIME_STEP": 2,
            "TEST_COUNT": 2,
            "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
            "OUTPUT_REPORT": str(tmp_path / "report.html"),
        },
    )
    assert res["TEST_DATES"] == 2
    dock = gui.docks["comparison"]
    assert not dock.isHidden()
    layer = dock.layer_combo.currentLayer()
    assert layer is not None and layer.featureCount() == 4  # 2 models x 2 modes
    assert dock.table_widget.rowCount() == 4
    assert dock.table.models == ["persistence", "linear-trend"]
    assert dock.bar_counts() == {"MAE": 2, "SSIM": 2}
    assert dock.figure.axes[0].patches[0].get_height() == pytest.approx(res["MAE_PERSISTENCE"])
    assert "tensorflow" not in sys.modules


def test_dock_opens_after_evaluateforecast_loads_its_table(gui, write_stack):
    import processing

    data = _bowl(6)
    obs = write_stack(data, name="obs.tif")
    pred = write_stack(data + 0.5, name="pred.tif")
    res = processing.runAndLoadResults(
        "deformation_forecast:evaluateforecast",
        {"PREDICTED": pred, "OBSERVED": obs, "OUTPUT_TABLE": "TEMPORARY_OUTPUT", "OUTPUT_REPORT": ""},
    )
    assert res["MATCHED_DATES"] == 6
    dock = gui.docks["comparison"]
    assert not dock.isHidden()
    assert dock.table.kind == "evaluateforecast" and dock.table_widget.rowCount() == 7
    assert dock.line_count() == 2


@pytest.mark.parametrize("kind", ["models", "dates"])
def test_chart_has_room_at_the_docked_size(qgis_app, qgis_iface, tmp_path, kind):
    """Docked beside the map (narrow and tall), the charts stack one above the other, each as wide
    as the dock, their tick labels inside the figure; side by side again when the dock is wide."""
    from deformation_forecast.gui.comparison_dock import ComparisonDock

    dock = ComparisonDock(qgis_iface)
    dock.resize(380, 760)  # QGIS's right dock area beside a 1280 x 880 window
    dock.show()
    qgis_app.processEvents()
    with warnings.catch_warnings():  # matplotlib's notes reach the QGIS log as warnings
        warnings.simplefilter("error")
        dock.show_layer(_models_layer() if kind == "models" else _dates_layer(40))
        qgis_app.processEvents()
        assert dock.stacked()
        dock.canvas.draw()
    renderer = dock.canvas.get_renderer()
    fig_box = dock.figure.bbox
    boxes = [ax.get_window_extent(renderer) for ax in dock.figure.axes]
    assert len(boxes) == 2
    for box in boxes:
        assert box.width > 0.6 * fig_box.width and box.height > 60, (box, fig_box)
    assert boxes[0].y0 > boxes[1].y1  # one above the other, not overlapping
    for ax in dock.figure.axes:
        for label in ax.get_xticklabels() + ax.get_yticklabels():
            if label.get_visible() and label.get_text():
                extent = label.get_window_extent(renderer)
                assert fig_box.x0 - 1 <= extent.x0 and extent.x1 <= fig_box.x1 + 1, label.get_text()
    assert dock.grab().save(str(tmp_path / f"comparison_docked_{kind}.png"), "PNG")
    dock.resize(1200, 400)
    qgis_app.processEvents()
    dock.plot()
    assert not dock.stacked()
    dock.close()


def test_a_constant_metric_is_drawn_flat(qgis_app, qgis_iface):
    """MAE 1 mm at every date up to rounding noise: a flat line on an axis around 1, no offset."""
    from deformation_forecast.gui.comparison_dock import DATES_KIND, ComparisonDock, MetricsTable

    rows = [{"date": f"2021-0{k + 1}-01", "MAE": 1.0 + (k % 2) * 2e-9, "SSIM": 0.9} for k in range(6)]
    dock = ComparisonDock(qgis_iface)
    dock.set_table(MetricsTable(DATES_KIND, ["date", "MAE", "SSIM"], rows))
    dock.canvas.draw()
    ax = dock.figure.axes[0]
    lo, hi = ax.get_ylim()
    assert lo < 1.0 < hi and hi - lo > 0.1
    assert ax.yaxis.get_major_formatter().get_offset() == ""
