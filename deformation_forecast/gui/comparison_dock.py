"""The comparison dock: the metrics table of a `comparemodels` or `evaluateforecast` run and its chart.

It shows the table of the last run of either algorithm (the plugin hands it over once QGIS has
loaded it) or any table layer of the project with the same columns. The metrics are listed in a
table widget and charted on a Figure owned by the dock's Qt canvas (pyplot is never used):

* ``comparemodels`` (columns ``model``, ``mode``, MAE, ...): one bar per model for each chosen
  metric, for the chosen mode (one-step or iterative);
* ``evaluateforecast`` (columns ``date``, MAE, ...): each chosen metric per date as a line, with the
  ``overall`` row as a dashed horizontal line.

Only the desktop GUI imports this module (never under qgis_process).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass, field

from qgis.core import QgsMapLayerProxyModel, QgsVectorLayer
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .layer_dock import LayerDock

try:  # matplotlib >= 3.5 picks the Qt binding already imported (PyQt5 in QGIS 3)
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
except ImportError:  # pragma: no cover - older matplotlib
    from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from ..core.metrics import METRICS  # the one list and order

DEFAULT_METRICS = ("MAE", "SSIM")
MODELS_KIND = "comparemodels"
DATES_KIND = "evaluateforecast"
OVERALL = "overall"
BAR_GID = "df-comparison-bar"
LINE_GID = "df-comparison-line"


@dataclass
class MetricsTable:
    """The rows of a comparison table as dicts (NULL -> None), with the kind of run they come from."""

    kind: str  # MODELS_KIND or DATES_KIND
    columns: list[str]
    rows: list[dict] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        return [m for m in METRICS if m in self.columns]

    @property
    def modes(self) -> list[str]:
        if self.kind != MODELS_KIND:
            return []
        return list(dict.fromkeys(str(r["mode"]) for r in self.rows if r.get("mode") is not None))

    @property
    def models(self) -> list[str]:
        if self.kind != MODELS_KIND:
            return []
        return list(dict.fromkeys(str(r["model"]) for r in self.rows if r.get("model") is not None))


def table_from_layer(layer: QgsVectorLayer) -> MetricsTable:
    """Read a comparemodels/evaluateforecast table layer; ValueError when it is neither."""
    names = layer.fields().names()
    if not any(m in names for m in METRICS):
        raise ValueError(f"layer {layer.name()!r} has no metric column (MAE, SSIM, ...): not a metrics table")
    if "model" in names and "mode" in names:
        kind = MODELS_KIND
    elif "date" in names:
        kind = DATES_KIND
    else:
        raise ValueError(
            f"layer {layer.name()!r} has neither model/mode nor date columns: not a comparemodels or "
            "evaluateforecast table"
        )
    rows = [{n: _value(v) for n, v in zip(names, f.attributes(), strict=False)} for f in layer.getFeatures()]
    return MetricsTable(kind, list(names), rows)


def _value(v):
    if v is None or (hasattr(v, "isNull") and v.isNull()):
        return None
    return v


def _num(v) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.5g}"
    return str(v)


def _date(v):
    try:
        return dt.date.fromisoformat(str(v))
    except ValueError:
        return None


def draw_metrics(
    fig: Figure, table: MetricsTable | None, metrics, mode: str | None = None, stacked: bool = False
) -> int:
    """Draw `metrics` of `table` on `fig`, one axes per metric, side by side or, `stacked`, one
    above the other (a tall, narrow dock); returns the bars or lines drawn."""
    fig.clear()
    metrics = [m for m in metrics if table is not None and m in table.metrics]
    if table is None or not table.rows or not metrics:
        ax = fig.add_subplot(111)
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No metrics to show", ha="center", va="center", transform=ax.transAxes)
        return 0
    n = len(metrics)
    shape = (n, 1) if stacked else (1, n)
    axes = fig.subplots(*shape, squeeze=False, sharex=stacked and table.kind == DATES_KIND).ravel()
    drawn = 0
    for ax, metric in zip(axes, metrics, strict=False):
        if table.kind == MODELS_KIND:
            drawn += _model_bars(ax, table, metric, mode)
        else:
            drawn += _date_lines(ax, table, metric)
        ax.set_title(metric, fontsize=9, loc="left" if stacked else "center")
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    if stacked and table.kind == DATES_KIND:
        for ax in axes[:-1]:
            ax.tick_params(labelbottom=False)
    if table.kind == MODELS_KIND and mode:
        fig.suptitle(f"Models compared ({mode})", fontsize=10)
    elif table.kind == DATES_KIND:
        fig.suptitle("Forecast metrics per date", fontsize=10)
    return drawn


def _model_bars(ax, table: MetricsTable, metric: str, mode: str | None) -> int:
    rows = [r for r in table.rows if mode is None or str(r.get("mode")) == mode]
    models = list(dict.fromkeys(str(r["model"]) for r in rows))
    values = []
    for m in models:
        vals = [_num(r[metric]) for r in rows if str(r["model"]) == m]
        values.append(vals[0] if vals else math.nan)
    colors = [f"C{i % 10}" for i in range(len(models))]
    bars = ax.bar(range(len(models)), [0.0 if math.isnan(v) else v for v in values], color=colors)
    for b, v in zip(bars, values, strict=False):
        b.set_gid(BAR_GID)
        ax.annotate(
            "n/a" if math.isnan(v) else f"{v:.3g}",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize="small",
        )
    ax.margins(y=0.15)  # room for the value above the highest bar
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models, rotation=30, ha="right")
    return len(bars)


def _flat_axis(ax, values) -> None:
    """A metric that does not change (rounding noise of 1e-9 around 1 mm) is drawn flat on a
    readable axis, not as noise under an offset such as "1e-9+1"."""
    finite = [v for v in values if math.isfinite(v)]
    ax.ticklabel_format(axis="y", useOffset=False)
    if finite:
        lo, hi = min(finite), max(finite)
        if hi - lo <= 1e-6 * max(1.0, abs(hi)):
            pad = 0.1 * max(abs(hi), 1e-3)
            ax.set_ylim(lo - pad, hi + pad)


def _date_lines(ax, table: MetricsTable, metric: str) -> int:
    rows = [r for r in table.rows if str(r.get("date")) != OVERALL]
    dates = [_date(r.get("date")) for r in rows]
    x = dates if all(d is not None for d in dates) else list(range(len(rows)))
    values = [_num(r[metric]) for r in rows]
    (line,) = ax.plot(x, values, marker="o", label=metric)
    line.set_gid(LINE_GID)
    _flat_axis(ax, values)
    overall = [_num(r[metric]) for r in table.rows if str(r.get("date")) == OVERALL]
    if overall and not math.isnan(overall[0]):
        ax.axhline(overall[0], color="0.4", linestyle="--", linewidth=1, label=f"overall {overall[0]:.3g}")
    ax.legend(fontsize="x-small")
    if x and isinstance(x[0], dt.date):
        ax.tick_params(axis="x", labelrotation=30)
        ax.xaxis.set_major_locator(AutoDateLocator())
        ax.xaxis.set_major_formatter(ConciseDateFormatter(ax.xaxis.get_major_locator()))
    return 1


class ComparisonDock(LayerDock):
    """Dock with the metrics table and chart; `show_layer(layer)` loads a comparison table."""

    TITLE = "Model comparison"

    def __init__(self, iface=None, parent=None):
        super().__init__(self.TITLE, parent)
        self.setObjectName("DeformationForecastComparisonDock")
        self.iface = iface
        self.table: MetricsTable | None = None

        self._build(QWidget(self))
        self.plot()

    def _build(self, body: QWidget) -> None:
        """Picker and mode above, then the chart, then the table and the metrics to chart: one column
        that reads in a narrow dock beside the map (the chart takes the room it needs)."""
        lay = QVBoxLayout(body)
        top = QHBoxLayout()
        top.addWidget(QLabel("Metrics table"))
        self.layer_combo = QgsMapLayerComboBox(body)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.NoGeometry)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setLayer(None)
        self.layer_combo.layerChanged.connect(self._layer_chosen)
        top.addWidget(self.layer_combo, 1)
        lay.addLayout(top)
        row = QHBoxLayout()
        row.addWidget(QLabel("Mode"))
        self.mode_combo = QComboBox(body)
        self.mode_combo.currentIndexChanged.connect(self._selection_changed)
        row.addWidget(self.mode_combo, 1)
        self.export_button = QPushButton("Export PNG…", body)
        self.export_button.clicked.connect(self._export_dialog)
        row.addWidget(self.export_button)
        lay.addLayout(row)

        self.message = QLabel(
            "Run 'Compare forecasting models' or 'Evaluate forecast' or pick its table.", body
        )
        self.message.setWordWrap(True)
        lay.addWidget(self.message)

        split = QSplitter(Qt.Vertical, body)
        self.figure = Figure(figsize=(4, 4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setParent(split)
        self.canvas.setMinimumHeight(220)
        split.addWidget(self.canvas)
        below = QSplitter(Qt.Horizontal, split)
        self.table_widget = QTableWidget(below)
        self.table_widget.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table_widget.setSortingEnabled(False)
        metrics = QWidget(below)
        ml = QVBoxLayout(metrics)
        ml.setContentsMargins(0, 0, 0, 0)
        ml.addWidget(QLabel("Charted"))
        self.metric_list = QListWidget(metrics)
        self.metric_list.itemChanged.connect(self._selection_changed)
        ml.addWidget(self.metric_list, 1)
        below.addWidget(self.table_widget)
        below.addWidget(metrics)
        below.setStretchFactor(0, 3)
        below.setStretchFactor(1, 1)
        split.addWidget(below)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay.addWidget(split, 1)
        self.setWidget(body)
        self._stacked = self.stacked()
        self.canvas.mpl_connect("resize_event", self._resized)

    def stacked(self) -> bool:
        """One chart above the other when the chart is narrow (docked beside the map)."""
        return self.canvas.width() < 1.3 * self.canvas.height()

    def _resized(self, _event=None) -> None:
        if self.stacked() != self._stacked:
            self.plot()

    # -- data ---------------------------------------------------------------------------
    def show_layer(self, layer: QgsVectorLayer) -> int:
        """Load a comparemodels/evaluateforecast table and chart it; returns the rows shown."""
        self.select_layer_quietly(layer)
        try:
            table = table_from_layer(layer)
        except ValueError as e:
            self.set_table(None)
            self.message.setText(str(e))
            return 0
        what = f"{len(table.models)} model(s)" if table.kind == MODELS_KIND else "metrics per date"
        self.message.setText(f"{layer.name()}: {table.kind}, {what}, {len(table.rows)} row(s)")
        return self.set_table(table)

    def set_table(self, table: MetricsTable | None) -> int:
        self.table = table
        with self.filling():
            tw = self.table_widget
            tw.clear()
            cols = table.columns if table else []
            rows = table.rows if table else []
            tw.setColumnCount(len(cols))
            tw.setRowCount(len(rows))
            tw.setHorizontalHeaderLabels(cols)
            for i, row in enumerate(rows):
                for j, c in enumerate(cols):
                    item = QTableWidgetItem(_text(row.get(c)))
                    if isinstance(row.get(c), int | float):
                        item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                    tw.setItem(i, j, item)
            tw.resizeColumnsToContents()
            self.mode_combo.clear()
            modes = table.modes if table else []
            self.mode_combo.addItems(modes)
            self.mode_combo.setEnabled(bool(modes))
            self.metric_list.clear()
            for m in table.metrics if table else []:
                it = QListWidgetItem(m, self.metric_list)
                it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
                it.setCheckState(Qt.Checked if m in DEFAULT_METRICS else Qt.Unchecked)
        self.plot()
        return len(rows)

    def selected_metrics(self) -> list[str]:
        return [
            self.metric_list.item(i).text()
            for i in range(self.metric_list.count())
            if self.metric_list.item(i).checkState() == Qt.Checked
        ]

    def selected_mode(self) -> str | None:
        return self.mode_combo.currentText() or None

    def clear(self) -> None:
        self.set_table(None)

    # -- drawing ------------------------------------------------------------------------
    def plot(self) -> int:
        self._stacked = self.stacked()
        n = draw_metrics(
            self.figure, self.table, self.selected_metrics(), self.selected_mode(), self._stacked
        )
        self.canvas.draw_idle()
        return n

    def bar_counts(self) -> dict[str, int]:
        """Bars drawn per metric axes (comparemodels), as counted from the figure."""
        titles = [(ax, ax.get_title() or ax.get_title(loc="left")) for ax in self.figure.axes]
        return {title: sum(1 for p in ax.patches if p.get_gid() == BAR_GID) for ax, title in titles if title}

    def line_count(self) -> int:
        return sum(1 for ax in self.figure.axes for ln in ax.get_lines() if ln.get_gid() == LINE_GID)

    def export(self, path: str, dpi: int = 150) -> str:
        if not os.path.splitext(path)[1]:
            path += ".png"
        self.canvas.draw()
        self.figure.savefig(path, format="png", dpi=dpi)
        return path

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export comparison chart", "comparison.png", "PNG (*.png)"
        )
        if path:
            self.export(path)
