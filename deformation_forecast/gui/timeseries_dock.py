"""Time-series dock and its map tool: click a pixel of a stack and see its displacement history,
the forecast continuation (a forecast layer on the same grid) with the boundary date marked, and
leveling benchmarks near the click. Pixels can be pinned and compared; export to CSV and PNG."""

from __future__ import annotations

import csv
import datetime as dt
import os
from dataclasses import dataclass, field

import numpy as np
from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapToolEmitPoint
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.dates import date_fields
from ..core.errors import InputError
from ..core.stack import read_info, read_pixel_series, same_grid


@dataclass
class Series:
    label: str
    kind: str  # observed | forecast | benchmark
    dates: list[dt.date]
    values: np.ndarray
    meta: dict = field(default_factory=dict)


def stack_path(layer) -> str | None:
    """The file of a raster layer that is a deformation stack (dated bands), else None."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return None
    path = layer.source().split("|")[0]
    try:
        read_info(path)
    except (InputError, OSError):
        return None
    return path


def series_at(
    stack_layer: QgsRasterLayer, point: QgsPointXY, point_crs: QgsCoordinateReferenceSystem, project=None
) -> list[Series]:
    """Observed series at `point` and, from the other layers of `project`, forecast continuations
    (stacks on the same grid starting after the last observed date) and benchmark series (point
    layers with one field per date, within two pixels of the click)."""
    project = project or QgsProject.instance()
    path = stack_path(stack_layer)
    if path is None:
        return []
    info = read_info(path)
    xf = QgsCoordinateTransform(point_crs, stack_layer.crs(), project)
    p = xf.transform(point)
    found = read_pixel_series(path, p.x(), p.y())
    if found is None:
        return []
    dates, vals = found
    label = f"{stack_layer.name()} ({p.x():.0f}, {p.y():.0f})"
    out = [Series(label, "observed", dates, vals, {"x": p.x(), "y": p.y()})]
    benchmarks: list[Series] = []
    for lyr in project.mapLayers().values():
        if lyr is stack_layer:
            continue
        other = stack_path(lyr)
        if other and other != path:
            oinfo = read_info(other)
            if same_grid(info, oinfo) and oinfo.dates[0] > dates[-1]:
                series = read_pixel_series(other, p.x(), p.y())
                if series is not None:
                    out.append(Series(f"{lyr.name()} (forecast)", "forecast", *series))
        elif isinstance(lyr, QgsVectorLayer) and lyr.geometryType() == QgsWkbTypes.PointGeometry:
            benchmarks.extend(_benchmarks_near(lyr, p, stack_layer.crs(), 2 * max(info.res), project))
    return out + benchmarks


def _benchmarks_near(layer: QgsVectorLayer, p: QgsPointXY, crs, radius: float, project) -> list[Series]:
    fields = date_fields([f.name() for f in layer.fields()])
    if not fields:
        return []
    xf = QgsCoordinateTransform(crs, layer.crs(), project)
    rect = xf.transformBoundingBox(
        QgsRectangle(p.x() - radius, p.y() - radius, p.x() + radius, p.y() + radius)
    )
    back = QgsCoordinateTransform(layer.crs(), crs, project)
    out = []
    for feat in layer.getFeatures(QgsFeatureRequest().setFilterRect(rect)):
        q = back.transform(feat.geometry().asPoint())
        if q.distance(p) > radius:
            continue
        vals = np.array([_num(feat[name]) for name, _ in fields], dtype="float64")
        label = str(feat["id"]) if "id" in [f.name() for f in layer.fields()] else f"#{feat.id()}"
        out.append(Series(f"{layer.name()} {label} (vertical)", "benchmark", [d for _, d in fields], vals))
    return out


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


class TimeSeriesDock(QDockWidget):
    """The dock: a matplotlib chart of the current pixel and the pinned ones."""

    def __init__(self, iface=None, parent=None):
        super().__init__("Deformation time series", parent)
        self.setObjectName("DeformationForecastTimeSeriesDock")
        self.iface = iface
        self.current: list[Series] = []
        self.pinned: list[list[Series]] = []
        self.figure = Figure(figsize=(6, 3.2), dpi=100)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.status = QLabel("Choose 'Pick pixel', then click a deformation stack on the map.")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        self.pick_button = QPushButton("Pick pixel")
        self.pick_button.setCheckable(True)
        self.pin_button = QPushButton("Pin")
        self.clear_button = QPushButton("Clear")
        self.csv_button = QPushButton("Export CSV")
        self.png_button = QPushButton("Export PNG")
        for b in (self.pick_button, self.pin_button, self.clear_button, self.csv_button, self.png_button):
            buttons.addWidget(b)
        box = QVBoxLayout()
        box.addLayout(buttons)
        box.addWidget(self.canvas, 1)
        box.addWidget(self.status)
        w = QWidget()
        w.setLayout(box)
        self.setWidget(w)
        self.tool = None
        if iface is not None:
            self.tool = QgsMapToolEmitPoint(iface.mapCanvas())
            self.tool.canvasClicked.connect(self._clicked)
            self.pick_button.toggled.connect(self._toggle_tool)
        self.pin_button.clicked.connect(self.pin)
        self.clear_button.clicked.connect(self.clear)
        self.csv_button.clicked.connect(lambda: self._export("CSV (*.csv)", self.export_csv))
        self.png_button.clicked.connect(lambda: self._export("PNG (*.png)", self.export_png))

    # -- map tool --------------------------------------------------------------------------
    def _toggle_tool(self, on: bool) -> None:
        canvas = self.iface.mapCanvas()
        if on:
            canvas.setMapTool(self.tool)
        elif canvas.mapTool() is self.tool:
            canvas.unsetMapTool(self.tool)

    def _clicked(self, point, button) -> None:
        layer = self.iface.activeLayer()
        if stack_path(layer) is None:
            layer = next((lyr for lyr in self.iface.mapCanvas().layers() if stack_path(lyr)), None)
        if layer is None:
            self.status.setText("No deformation stack (raster with dated bands) among the visible layers.")
            return
        self.show_point(layer, point, self.iface.mapCanvas().mapSettings().destinationCrs())

    # -- logic (tested without clicking) -----------------------------------------------------
    def show_point(self, layer: QgsRasterLayer, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> int:
        """Show the series at `point` (in `crs`); returns the number of series found."""
        self.current = series_at(layer, point, crs)
        if not self.current:
            self.status.setText("The click is outside the stack.")
        else:
            obs = self.current[0]
            n_nan = int(np.isnan(obs.values).sum())
            self.status.setText(
                f"{obs.label}: {len(obs.dates)} dates, last {obs.values[-1]:.1f} mm"
                + (f", {n_nan} incoherent dates" if n_nan else "")
                + "".join(f"; + {s.label}" for s in self.current[1:])
            )
        self.plot()
        return len(self.current)

    def pin(self) -> None:
        if self.current:
            self.pinned.append(self.current)
            self.current = []
            self.plot()

    def clear(self) -> None:
        self.current, self.pinned = [], []
        self.plot()

    def all_series(self) -> list[Series]:
        return [s for group in self.pinned for s in group] + list(self.current)

    def plot(self) -> None:
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        boundary = None
        styles = {
            "observed": dict(lw=1.5),
            "forecast": dict(lw=1.5, ls="--"),
            "benchmark": dict(ls="", marker="o", ms=4),
        }
        for s in self.all_series():
            ax.plot(s.dates, s.values, label=s.label, **styles[s.kind])
            if s.kind == "forecast":
                boundary = s.dates[0]
        if boundary is not None:
            ax.axvline(boundary, color="0.4", lw=0.8, ls=":")
        ax.set_ylabel("displacement (mm)")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
        self.figure.autofmt_xdate()
        self.figure.tight_layout()
        self.canvas.draw_idle()

    def plotted_lines(self) -> int:
        ax = self.figure.axes[0] if self.figure.axes else None
        return (
            0
            if ax is None
            else len([ln for ln in ax.lines if ln.get_label() and not ln.get_label().startswith("_")])
        )

    def export_csv(self, path: str) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["series", "kind", "date", "value_mm"])
            for s in self.all_series():
                for d, v in zip(s.dates, s.values, strict=False):
                    w.writerow([s.label, s.kind, d.isoformat(), "" if not np.isfinite(v) else f"{v:.4f}"])

    def export_png(self, path: str) -> None:
        self.figure.savefig(path, dpi=150)

    def _export(self, filt: str, fn) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export", os.path.expanduser("~"), filt)
        if path:
            fn(path)

    def closeEvent(self, event):  # noqa: N802
        if self.tool is not None and self.iface is not None and self.iface.mapCanvas().mapTool() is self.tool:
            self.iface.mapCanvas().unsetMapTool(self.tool)
        self.pick_button.setChecked(False)
        super().closeEvent(event)


DOCK_AREA = Qt.BottomDockWidgetArea
