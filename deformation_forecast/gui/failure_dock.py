"""The inverse-velocity dock: the 1/v chart of the points a `failuretime` run forecast to fail.

It reads the run's point output (fields point_id, alert, failure_date, failure_early, failure_late,
days_to_failure: what the algorithm wrote) and the series the run analysed (the deformation stack,
or the point layer with one field per date), and draws for the selected points, else the most
critical ones, the chart of core.failure_run.draw_chart: the local inverse velocities 1/v (day/mm)
in the direction of motion and Voight's line falling to zero at the failure date the run forecast,
its early-late range shaded. The line's slope is fitted here to the plotted inverse velocities of
the fit span, with the failure date held at the run's (the run fits the displacement itself; the
dates, which are what matter, are the run's own).

Set *Acquisitions per local velocity* and *Velocity windows in the fit* to the values of the run
(the algorithm's defaults, 5 and 12, unless changed). Only the desktop GUI imports this module.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsMapLayerProxyModel,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import QFormLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from ..core.dates import date_fields
from ..core.failure import FIT_WINDOW, VELOCITY_WINDOW, Params, days_from_last, local_velocities
from ..core.failure_run import PLOT_POINTS, draw_chart
from ..core.stack import read_pixel_series
from .layer_dock import LayerDock
from .timeseries_dock import stack_path

with warnings.catch_warnings():  # e.g. "Unable to import Axes3D": not for the QGIS log
    warnings.simplefilter("ignore")
    from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

FAILURE_FIELDS = ("point_id", "alert", "failure_date", "failure_early", "failure_late", "days_to_failure")


def is_failure_layer(layer) -> bool:
    """A point layer written by failuretime (recognised by its fields)."""
    if not isinstance(layer, QgsVectorLayer) or not layer.isValid():
        return False
    names = set(layer.fields().names())
    return all(f in names for f in FAILURE_FIELDS)


def is_series_source(layer) -> bool:
    """What failuretime analyses: a deformation stack or a point layer with one field per date."""
    if isinstance(layer, QgsVectorLayer):
        return bool(date_fields(layer.fields().names())) and not is_failure_layer(layer)
    return stack_path(layer) is not None


def _day(value) -> dt.date | None:
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return None
    if hasattr(value, "toPyDate"):
        return value.toPyDate()
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _days(day: dt.date | None, last: dt.date) -> float:
    return float((day - last).days) if day is not None else math.nan


def critical_features(layer: QgsVectorLayer, count: int = PLOT_POINTS) -> list:
    """The selected features of `layer`, else its `count` most critical: the alerted ones (alert
    above 0) when there are, highest alert and soonest failure first."""
    chosen = list(layer.getSelectedFeatures())
    if chosen:
        return chosen[:count]
    alerted = [f for f in layer.getFeatures() if int(f["alert"] or 0) > 0]

    def key(f):
        days = f["days_to_failure"]
        days = float(days) if days is not None and not (hasattr(days, "isNull") and days.isNull()) else 1e12
        return (-int(f["alert"] or 0), days)

    return sorted(alerted or layer.getFeatures(), key=key)[:count]


def series_at(source, point: QgsPointXY, crs, project=None) -> tuple[list[dt.date], np.ndarray] | None:
    """The dates and values (mm) of `source` at `point` (in `crs`): the stack's pixel, or the
    nearest point of a dated point layer (within one metre: the output sits on the input point)."""
    project = project or QgsProject.instance()
    xf = QgsCoordinateTransform(crs, source.crs(), project)
    p = xf.transform(point)
    path = stack_path(source)
    if path is not None:
        got = read_pixel_series(path, p.x(), p.y())
        return (got[0], np.asarray(got[1], dtype="float64")) if got else None
    fields = sorted(date_fields(source.fields().names()), key=lambda fd: fd[1])
    tol = 1.0 if not source.crs().isGeographic() else 1e-5
    rect = QgsRectangle(p.x() - tol, p.y() - tol, p.x() + tol, p.y() + tol)
    for feat in source.getFeatures(QgsFeatureRequest().setFilterRect(rect)):
        vals = [feat[name] for name, _ in fields]
        return [d for _, d in fields], np.array([_float(v) for v in vals], dtype="float64")
    return None


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def chart_row(feature, series: np.ndarray, dates: list[dt.date], params: Params) -> dict:
    """What core.failure_run.draw_chart needs of one point, from the run's fields and its series:
    the direction of motion (the sign of the series' straight-line velocity), the failure date
    and its range as days from the last date, and the slope k of Voight's line 1/v = (tf - t) / k
    fitted to the local inverse velocities of the fit span with tf held at the run's date."""
    last = dates[-1]
    t = days_from_last(dates)
    ok = np.isfinite(series)
    direction = float(np.sign(np.polyfit(t[ok], series[ok], 1)[0])) if ok.sum() >= 2 else 1.0
    row = {
        "t_fail": _days(_day(feature["failure_date"]), last),
        "t_early": _days(_day(feature["failure_early"]), last),
        "t_late": _days(_day(feature["failure_late"]), last),
        "direction": direction or 1.0,
        "alert": int(feature["alert"] or 0),
        "k": math.nan,
    }
    if math.isfinite(row["t_fail"]):
        v, tau, _ = local_velocities((series * row["direction"])[None, :], t, params.velocity_window)
        span_start = t[max(0, len(dates) - (params.velocity_window + params.fit_window - 1))]
        keep = np.isfinite(v[0]) & (v[0] > 0) & (tau[0] >= span_start)
        a, y = row["t_fail"] - tau[0][keep], 1.0 / v[0][keep]
        if keep.any() and float(np.dot(a, y)) > 0:
            row["k"] = float(np.dot(a, a) / np.dot(a, y))  # least squares of y = a / k
    return row


class FailureDock(LayerDock):
    """Dock with the inverse-velocity chart; `show_layer(layer)` loads a failuretime output."""

    TITLE = "Inverse velocity (failure time)"

    def __init__(self, iface=None, parent=None):
        super().__init__(self.TITLE, parent)
        self.setObjectName("DeformationForecastFailureDock")
        self.iface = iface
        self.items: list = []
        self.dates: list[dt.date] = []
        self._watched = None
        self._build(QWidget(self))
        self.plot()

    def _build(self, body: QWidget) -> None:
        lay = QVBoxLayout(body)
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox(body)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.PointLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setLayer(None)
        self.layer_combo.layerChanged.connect(self._layer_chosen)
        form.addRow("Failure points", self.layer_combo)
        self.source_combo = QgsMapLayerComboBox(body)
        self.source_combo.setAllowEmptyLayer(True)
        self.source_combo.setToolTip("The deformation stack or dated point layer the run analysed")
        self.source_combo.layerChanged.connect(self._selection_changed)
        form.addRow("Series of", self.source_combo)
        self.velocity_window = _spin(body, VELOCITY_WINDOW, 3, 100, self._selection_changed)
        form.addRow("Acquisitions per local velocity", self.velocity_window)
        self.fit_window = _spin(body, FIT_WINDOW, 3, 200, self._selection_changed)
        form.addRow("Velocity windows in the fit", self.fit_window)
        lay.addLayout(form)
        self.message = QLabel("Run 'Acceleration and time of failure' or pick its point output.", body)
        self.message.setWordWrap(True)
        lay.addWidget(self.message)
        self.figure = Figure(figsize=(5, 3.5), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setParent(body)
        self.canvas.setMinimumHeight(220)
        lay.addWidget(self.canvas, 1)
        self.setWidget(body)

    def params(self) -> Params:
        return Params(velocity_window=self.velocity_window.value(), fit_window=self.fit_window.value())

    # -- data ---------------------------------------------------------------------------
    def show_layer(self, layer) -> int:
        """Chart the most critical (or the selected) points of a failuretime output layer; returns
        the points drawn."""
        self.select_layer_quietly(layer)
        if self._watched is not None and self._alive(self._watched):
            self._watched.selectionChanged.disconnect(self._selection_changed)
        self._watched = None
        if not is_failure_layer(layer):
            self.items = []
            self.message.setText(f"{layer.name()!r} is not an output of 'Acceleration and time of failure'.")
            self.plot()
            return 0
        self._watched = layer
        layer.selectionChanged.connect(self._selection_changed)
        if not is_series_source(self.source_combo.currentLayer()):
            self.source_combo.setLayer(self._guess_source())
        return self.plot()

    def _guess_source(self):
        layers = QgsProject.instance().mapLayers().values()
        return next((lyr for lyr in layers if is_series_source(lyr)), None)

    def _load(self) -> int:
        layer, source = self.layer_combo.currentLayer(), self.source_combo.currentLayer()
        self.items = []
        if not is_failure_layer(layer) or not is_series_source(source):
            return 0
        params = self.params()
        for n, feat in enumerate(critical_features(layer)):
            got = series_at(source, feat.geometry().asPoint(), layer.crs())
            if got is None:
                continue
            self.dates, series = got
            if len(self.dates) < params.velocity_window + params.fit_window + 2:
                continue
            row = chart_row(feat, series, self.dates, params)
            label = f"point {feat['point_id']}"
            self.items.append(((row["alert"],), -n, label, series, row))
        self.message.setText(
            f"{layer.name()}: {len(self.items)} point(s) of {layer.featureCount()}, "
            f"{'the selected ones' if layer.selectedFeatureCount() else 'the most critical'} "
            "(select points on the map to chart others); "
            f"series of {source.name()}."
        )
        return len(self.items)

    def clear(self) -> None:
        self.items = []
        self.plot()

    def plot(self) -> int:
        n = self._load() if self.layer_combo.currentLayer() is not None else 0
        with warnings.catch_warnings():  # matplotlib's layout notes must not reach the QGIS log
            warnings.simplefilter("ignore")
            if self.items:
                draw_chart(self.figure, self.items, self.dates, self.params())
                for ax in self.figure.axes:
                    ax.set_title(
                        "Inverse velocity: points 1/v, lines Voight, dashed the failure date", fontsize=8
                    )
            else:
                self.figure.clear()
                ax = self.figure.add_subplot(111)
                ax.set_axis_off()
                ax.text(0.5, 0.5, "No point to draw", ha="center", va="center", transform=ax.transAxes)
        self.canvas.draw_idle()
        return n

    def fitted_lines(self) -> list[tuple[float, float]]:
        """(start, end) of each Voight line drawn, as matplotlib date numbers: where they reach 1/v = 0."""
        ax = self.figure.axes[0] if self.figure.axes else None
        if ax is None:
            return []
        out = []
        for ln in ax.get_lines():
            xs = list(np.atleast_1d(np.asarray(ln.get_xdata(), dtype=object)))
            if ln.get_linestyle() == "-" and len(xs) == 2:
                out.append((_num(xs[0]), _num(xs[1])))
        return out

    @staticmethod
    def _alive(layer) -> bool:
        try:
            return layer.isValid()
        except RuntimeError:
            return False

    def closeEvent(self, event):  # noqa: N802
        if self._watched is not None and self._alive(self._watched):
            self._watched.selectionChanged.disconnect(self._selection_changed)
        self._watched = None
        super().closeEvent(event)


def _num(x) -> float:
    from matplotlib.dates import date2num

    return float(date2num(x)) if isinstance(x, dt.date | dt.datetime) else float(x)


def _spin(parent, value: int, lo: int, hi: int, slot) -> QSpinBox:
    box = QSpinBox(parent)
    box.setRange(lo, hi)
    box.setValue(value)
    box.valueChanged.connect(slot)
    return box
