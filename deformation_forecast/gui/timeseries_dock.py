"""Time-series dock and its map tool: click a pixel of a stack (or a point of a layer with one
field per date) and see its displacement history, the forecast continuations chosen in the dock
(forecast layers on the same grid) with the boundary date marked, and the benchmark layers chosen
near the click. Pixels can be pinned and compared, and show as markers on the map; export to CSV
and PNG."""

from __future__ import annotations

import csv
import datetime as dt
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

with warnings.catch_warnings():  # e.g. "Unable to import Axes3D": not for the QGIS log
    warnings.simplefilter("ignore")
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
from qgis.gui import QgsCheckableComboBox, QgsMapLayerComboBox, QgsMapToolEmitPoint, QgsVertexMarker
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.dates import date_fields
from ..core.errors import InputError
from ..core.stack import read_info, read_pixel_series, same_grid
from ..processing.styling import (
    CONFIDENCE_TAG,
    INTERVAL_TAG,
    ROLE_FORECAST,
    ROLE_INTERVAL,
    ROLE_STACK,
    describe_raster,
)

ROLE_POINTS = "points"


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


def layer_role(layer) -> str | None:
    """What the plugin (or the user's data) says a layer is, for the dock's pickers: a stack, a
    forecast (the SOURCE tag the forecast writes), a dated point layer (one field per date), or
    None for anything the dock does not plot (rates, errors, undated rasters)."""
    if isinstance(layer, QgsVectorLayer):
        if layer.geometryType() == QgsWkbTypes.PointGeometry and date_fields(
            [f.name() for f in layer.fields()]
        ):
            return ROLE_POINTS
        return None
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return None
    path = layer.source().split("|")[0]
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _ROLES:  # the animate action adds one layer per date of the same file
        role = None
        if stack_path(layer) is not None:
            try:
                role = describe_raster(path).role
            except InputError:
                role = None
        _ROLES[key] = role if role in (ROLE_STACK, ROLE_FORECAST, ROLE_INTERVAL) else None
    return _ROLES[key]


_ROLES: dict[tuple[str, int, int], str | None] = {}


def series_at(
    stack_layer,
    point: QgsPointXY,
    point_crs: QgsCoordinateReferenceSystem,
    project=None,
    forecasts=None,
    benchmarks=(),
    tolerance: float | None = None,
) -> list[Series]:
    """The series at `point`: the source's (a stack's pixel, or the nearest feature of a dated
    point layer within `tolerance` map units of the source CRS), then each of `forecasts` (stacks
    on the same grid starting after the last observed date; None: every forecast layer of
    `project`) and the features of `benchmarks` (dated point layers) within two pixels."""
    project = project or QgsProject.instance()
    if isinstance(stack_layer, QgsVectorLayer):
        return _point_layer_series(stack_layer, point, point_crs, project, tolerance)
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
    out = [Series(label, "observed", dates, vals, {"x": p.x(), "y": p.y(), "crs": stack_layer.crs()})]
    if forecasts is None:
        forecasts = [lyr for lyr in project.mapLayers().values() if layer_role(lyr) == ROLE_FORECAST]
    for lyr in forecasts:
        other = stack_path(lyr)
        if other is None or other == path:
            continue
        oinfo = read_info(other)
        if same_grid(info, oinfo) and oinfo.dates[0] > dates[-1]:
            series = read_pixel_series(other, p.x(), p.y())
            if series is not None:
                band = _interval_at(oinfo, p, project)
                out.append(Series(f"{lyr.name()} (forecast)", "forecast", *series, band))
    for lyr in benchmarks:
        out.extend(_benchmarks_near(lyr, p, stack_layer.crs(), 2 * max(info.res), project))
    return out


def _interval_at(forecast, p: QgsPointXY, project) -> dict:
    """The prediction band of the forecast `forecast` (StackInfo) at `p`: the values of the
    project's lower and upper bound layers (tag INTERVAL) on its grid and dates, with their
    confidence; {} when the project holds no such pair."""
    found: dict = {}
    for lyr in project.mapLayers().values():
        if layer_role(lyr) != ROLE_INTERVAL:
            continue
        info = read_info(stack_path(lyr) or "")
        side = info.tags.get(INTERVAL_TAG)
        if side in found or not same_grid(forecast, info) or info.dates != forecast.dates:
            continue
        series = read_pixel_series(info.path, p.x(), p.y())
        if series is not None:
            found[side] = series[1]
            found["confidence"] = float(info.tags.get(CONFIDENCE_TAG, "nan"))
    return found if "lower" in found and "upper" in found else {}


def _point_layer_series(layer: QgsVectorLayer, point, point_crs, project, tolerance) -> list[Series]:
    """The dated point nearest to the click, within `tolerance` (layer units; None: any)."""
    fields = date_fields([f.name() for f in layer.fields()])
    if not fields:
        return []
    p = QgsCoordinateTransform(point_crs, layer.crs(), project).transform(point)
    best, best_d = None, float("inf")
    request = QgsFeatureRequest()
    if tolerance is not None:
        request.setFilterRect(
            QgsRectangle(p.x() - tolerance, p.y() - tolerance, p.x() + tolerance, p.y() + tolerance)
        )
    for feat in layer.getFeatures(request):
        geom = feat.geometry()
        if geom is None or geom.isEmpty():
            continue
        d = geom.asPoint().distance(p)
        if d < best_d and (tolerance is None or d <= tolerance):
            best, best_d = feat, d
    if best is None:
        return []
    q = best.geometry().asPoint()
    vals = np.array([_num(best[name]) for name, _ in fields], dtype="float64")
    label = f"{layer.name()} {_feature_label(layer, best)}"
    meta = {"x": q.x(), "y": q.y(), "crs": layer.crs()}
    return [Series(label, "observed", [d for _, d in fields], vals, meta)]


def _feature_label(layer: QgsVectorLayer, feat) -> str:
    names = [f.name() for f in layer.fields()]
    key = next((n for n in ("id", "ID", "name", "code", "pid") if n in names), None)
    return str(feat[key]) if key else f"#{feat.id()}"


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
        label = _feature_label(layer, feat)
        out.append(Series(f"{layer.name()} {label} (vertical)", "benchmark", [d for _, d in fields], vals))
    return out


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


class TimeSeriesDock(QDockWidget):
    """The dock: what to plot (a stack or dated point layer, forecasts, benchmarks), a matplotlib
    chart of the current pixel and the pinned ones, and their markers on the map canvas."""

    def __init__(self, iface=None, parent=None):
        super().__init__("Deformation time series", parent)
        self.setObjectName("DeformationForecastTimeSeriesDock")
        self.iface = iface
        self.current: list[Series] = []
        self.pinned: list[list[Series]] = []
        self.markers: list = []  # QgsVertexMarker per shown pixel (pinned ones first)
        self.figure = Figure(figsize=(6, 3.2), dpi=100)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.status = QLabel("Choose 'Pick pixel', then click a deformation stack on the map.")
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self._build_pickers()
        buttons = QHBoxLayout()
        self.pick_button = QPushButton("Pick pixel")
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip(
            "Click the map to show the time series there (also on the plugin toolbar)"
        )
        self.pin_button = QPushButton("Pin")
        self.clear_button = QPushButton("Clear")
        self.csv_button = QPushButton("Export CSV")
        self.png_button = QPushButton("Export PNG")
        for b in (self.pick_button, self.pin_button, self.clear_button, self.csv_button, self.png_button):
            buttons.addWidget(b)
        box = QVBoxLayout()
        box.addLayout(self.pickers)
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
        project = QgsProject.instance()
        project.layersAdded.connect(self.refresh_pickers)
        project.layersRemoved.connect(self.refresh_pickers)
        self.refresh_pickers()

    # -- pickers ---------------------------------------------------------------------------
    def _build_pickers(self) -> None:
        self.source_combo = QgsMapLayerComboBox()
        self.source_combo.setToolTip(
            "The series to show: a deformation stack or a point layer with one field per date"
        )
        self.forecast_combo = QgsCheckableComboBox()
        self.forecast_combo.setToolTip(
            "Forecast layers (written by 'Forecast deformation') drawn as continuations"
        )
        self.forecast_combo.setDefaultText("none")
        self.benchmark_combo = QgsCheckableComboBox()
        self.benchmark_combo.setToolTip(
            "Point layers with one field per date (leveling, PS points) near the click"
        )
        self.benchmark_combo.setDefaultText("none")
        self.pickers = QFormLayout()
        self.pickers.addRow("Series of", self.source_combo)
        self.pickers.addRow("Forecasts", self.forecast_combo)
        self.pickers.addRow("Benchmarks", self.benchmark_combo)

    def refresh_pickers(self, *_args) -> None:
        """Offer the project's layers by what they are; keep the user's choices."""
        layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if _alive(lyr)]
        roles = {lyr.id(): layer_role(lyr) for lyr in layers}
        self.source_combo.setExceptedLayerList(
            [lyr for lyr in layers if roles[lyr.id()] not in (ROLE_STACK, ROLE_POINTS)]
        )
        _fill_checkable(
            self.forecast_combo, [lyr for lyr in layers if roles[lyr.id()] == ROLE_FORECAST], True
        )
        _fill_checkable(
            self.benchmark_combo, [lyr for lyr in layers if roles[lyr.id()] == ROLE_POINTS], False
        )

    def chosen(self, combo: QgsCheckableComboBox) -> list:
        project = QgsProject.instance()
        return [lyr for lyr in (project.mapLayer(i) for i in combo.checkedItemsData()) if lyr is not None]

    def set_chosen(self, combo: QgsCheckableComboBox, layers) -> None:
        """Check exactly `layers` in `combo` (what a user does by ticking them)."""
        ids = {lyr.id() for lyr in layers}
        for i in range(combo.count()):
            combo.setItemCheckState(i, Qt.Checked if combo.itemData(i) in ids else Qt.Unchecked)

    # -- map tool --------------------------------------------------------------------------
    def _toggle_tool(self, on: bool) -> None:
        canvas = self.iface.mapCanvas()
        if on:
            canvas.setMapTool(self.tool)
        elif canvas.mapTool() is self.tool:
            canvas.unsetMapTool(self.tool)

    def _clicked(self, point, button) -> None:
        layer = self.source_combo.currentLayer()
        if layer_role(layer) not in (ROLE_STACK, ROLE_POINTS):
            layer = next(
                (lyr for lyr in self.iface.mapCanvas().layers() if layer_role(lyr) == ROLE_STACK), None
            )
        if layer is None:
            self.status.setText(
                "No deformation stack or dated point layer to show: choose one in 'Series of'."
            )
            return
        self.show_point(layer, point, self.iface.mapCanvas().mapSettings().destinationCrs())

    # -- logic (tested without clicking) -----------------------------------------------------
    def show_point(self, layer, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> int:
        """Show the series of `layer` (a stack or a dated point layer) at `point` (in `crs`), with
        the forecasts and benchmarks chosen in the pickers; returns the number of series found."""
        if self.source_combo.currentLayer() is not layer and layer is not None:
            self.source_combo.setLayer(layer)
        tolerance = self._tolerance(layer)
        self.current = series_at(
            layer,
            point,
            crs,
            forecasts=self.chosen(self.forecast_combo),
            benchmarks=[b for b in self.chosen(self.benchmark_combo) if b is not layer],
            tolerance=tolerance,
        )
        if not self.current:
            self.status.setText("Nothing there: the click is outside the stack or far from every point.")
        else:
            obs = self.current[0]
            n_nan = int(np.isnan(obs.values).sum())
            self.status.setText(
                f"{obs.label}: {len(obs.dates)} dates, last {obs.values[-1]:.1f} mm"
                + (f", {n_nan} incoherent dates" if n_nan else "")
                + (f"; {len(self.current) - 1} more series" if len(self.current) > 1 else "")
            )
        self.plot()
        return len(self.current)

    def _tolerance(self, layer) -> float | None:
        """Ten screen pixels in the point layer's units when a canvas is there."""
        if not isinstance(layer, QgsVectorLayer) or self.iface is None:
            return None
        canvas = self.iface.mapCanvas()
        return (
            10 * canvas.mapUnitsPerPixel() if canvas.mapSettings().destinationCrs() == layer.crs() else None
        )

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

    def groups(self) -> list[list[Series]]:
        return [*self.pinned, self.current] if self.current else list(self.pinned)

    def plot(self) -> None:
        with warnings.catch_warnings():  # matplotlib's layout notes must not reach the QGIS log
            warnings.simplefilter("ignore")
            self._plot()
        self._update_markers()

    def _plot(self) -> None:
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        boundary = None
        styles = {
            "observed": dict(lw=1.5),
            "forecast": dict(lw=1.5, ls="--"),
            "benchmark": dict(ls="", marker="o", ms=4, mfc="none"),
        }
        for k, group in enumerate(self.groups()):
            colour = marker_colour(k)
            for s in group:
                # a pixel's own colour for its line, its forecast and the benchmarks near it
                ax.plot(s.dates, s.values, label=_short(s.label, 40), color=colour, **styles[s.kind])
                if s.kind == "forecast":
                    boundary = s.dates[0]
                    if s.meta.get("lower") is not None:  # the forecast's prediction band, shaded
                        conf = s.meta["confidence"]
                        label = f"{conf:.0%} band" if np.isfinite(conf) else "prediction band"
                        ax.fill_between(
                            s.dates,
                            s.meta["lower"],
                            s.meta["upper"],
                            color=colour,
                            alpha=0.18,
                            lw=0,
                            label=label,
                        )
        if boundary is not None:
            ax.axvline(boundary, color="0.4", lw=0.8, ls=":")
        ax.set_ylabel("displacement (mm)")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            n = len([ln for ln in ax.lines if not ln.get_label().startswith("_")])
            ax.legend(
                fontsize=7,
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                ncol=1 if n <= 8 else 2,
                frameon=False,
            )
        self.figure.autofmt_xdate()
        self.figure.tight_layout()
        self.canvas.draw_idle()

    def _update_markers(self) -> None:
        """One cross per shown pixel on the map canvas, in the colour of its line."""
        self.remove_markers()
        if self.iface is None:
            return
        canvas = self.iface.mapCanvas()
        dest = canvas.mapSettings().destinationCrs()
        for k, group in enumerate(self.groups()):
            meta = group[0].meta if group else {}
            if "x" not in meta:
                continue
            xf = QgsCoordinateTransform(meta["crs"], dest, QgsProject.instance())
            marker = QgsVertexMarker(canvas)
            marker.setCenter(xf.transform(QgsPointXY(meta["x"], meta["y"])))
            marker.setColor(QColor(marker_colour(k)))
            marker.setIconType(QgsVertexMarker.ICON_X if k == len(self.pinned) else QgsVertexMarker.ICON_BOX)
            marker.setIconSize(12)
            marker.setPenWidth(3)
            self.markers.append(marker)

    def remove_markers(self) -> None:
        if self.iface is not None:
            scene = self.iface.mapCanvas().scene()
            for marker in self.markers:
                scene.removeItem(marker)
        self.markers = []

    def plotted_lines(self) -> int:
        return len(self.plotted_labels())

    def plotted_labels(self) -> list[str]:
        """The legend entries of the chart, as a user reads them."""
        ax = self.figure.axes[0] if self.figure.axes else None
        if ax is None:
            return []
        artists = list(ax.lines) + list(ax.collections)  # lines, then shaded bands
        return [a.get_label() for a in artists if a.get_label() and not a.get_label().startswith("_")]

    def export_csv(self, path: str) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["series", "kind", "date", "value_mm"])
            for s in self.all_series():
                for d, v in zip(s.dates, s.values, strict=False):
                    w.writerow([s.label, s.kind, d.isoformat(), "" if not np.isfinite(v) else f"{v:.4f}"])

    def export_png(self, path: str) -> None:
        self.figure.savefig(path, dpi=150, bbox_inches="tight")

    def _export(self, filt: str, fn) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export", os.path.expanduser("~"), filt)
        if path:
            fn(path)

    def closeEvent(self, event):  # noqa: N802
        if self.tool is not None and self.iface is not None and self.iface.mapCanvas().mapTool() is self.tool:
            self.iface.mapCanvas().unsetMapTool(self.tool)
        self.pick_button.setChecked(False)
        self.remove_markers()
        super().closeEvent(event)


def marker_colour(k: int) -> str:
    """The k-th pixel's colour, the same on the chart and on the map."""
    return MARKER_COLOURS[k % len(MARKER_COLOURS)]


MARKER_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _alive(layer) -> bool:
    try:
        return layer is not None and layer.isValid()
    except RuntimeError:  # deleted on the C++ side
        return False


def _fill_checkable(combo: QgsCheckableComboBox, layers, checked_by_default: bool) -> None:
    before = {combo.itemData(i): combo.itemCheckState(i) for i in range(combo.count())}
    combo.blockSignals(True)
    combo.clear()
    for lyr in layers:
        combo.addItemWithCheckState(
            lyr.name(), before.get(lyr.id(), Qt.Checked if checked_by_default else Qt.Unchecked), lyr.id()
        )
    combo.blockSignals(False)


DOCK_AREA = Qt.BottomDockWidgetArea
