"""The profile plot dock: the Fig. 11-style chart of an `extractprofiles` point layer.

It shows the layer of the last `extractprofiles` run (the plugin hands it over once QGIS has loaded
it) or any point layer of the project with the fields `profile`, `distance` and one field per date.
The user picks profiles and dates and exports the figure (PNG, SVG, PDF). The chart is drawn by
core.profile_plot on a Figure owned by the dock's Qt canvas; pyplot is never used. Moving the mouse
along a profile's chart marks the sample under it on the map canvas (as Profile Tool does) and on the
chart with a vertical line.
"""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsPointXY,
    QgsProject,
    QgsVectorLayer,
)
from qgis.gui import QgsMapLayerComboBox, QgsVertexMarker
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core.dates import date_fields
from ..core.profile_plot import CURVE_GID, default_date_indexes, draw_profiles
from ..core.profiles import Profile
from .layer_dock import LayerDock

try:  # matplotlib >= 3.5 picks the Qt binding already imported (PyQt5 in QGIS 3)
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
except ImportError:  # pragma: no cover - older matplotlib
    from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg
from matplotlib.figure import Figure

REQUIRED_FIELDS = ("profile", "distance")
HOVER_GID = "df-profile-hover"
# the hovered sample: yellow with a black rim on the map (it reads on the red and blue ramps), black
# on the chart (the curves run from purple to yellow)
HOVER_FILL = "#ffe000"
HOVER_LINE = "#000000"


def profiles_from_layer(layer: QgsVectorLayer) -> tuple[list[Profile], list[dt.date]]:
    """Group the features of an extractprofiles layer by profile, sorted by part and distance."""
    names = layer.fields().names()
    missing = [f for f in REQUIRED_FIELDS if f not in names]
    if missing:
        raise ValueError(f"layer {layer.name()!r} has no field {', '.join(missing)}: not a profile layer")
    dfields = date_fields(names)
    if not dfields:
        raise ValueError(f"layer {layer.name()!r} has no date field (d20170903): not a profile layer")
    dfields.sort(key=lambda fd: fd[1])
    has_part = "part" in names
    rows: dict[str, list[tuple]] = {}
    for f in layer.getFeatures():
        pt = f.geometry().asPoint() if f.hasGeometry() else None
        vals = [_num(f[name]) for name, _ in dfields]
        part = int(_num(f["part"]) or 0) if has_part else 0
        rows.setdefault(str(f["profile"]), []).append(
            (part, _num(f["distance"]), pt.x() if pt else np.nan, pt.y() if pt else np.nan, vals)
        )
    out = []
    for name, rs in rows.items():
        rs.sort(key=lambda r: (r[0], r[1]))
        out.append(
            Profile(
                name,
                np.array([r[2] for r in rs]),
                np.array([r[3] for r in rs]),
                np.array([r[1] for r in rs], dtype="float64"),
                np.array([r[0] for r in rs], dtype="int32"),
                np.array([r[4] for r in rs], dtype="float64").T.reshape(len(dfields), len(rs)),
            )
        )
    return out, [d for _, d in dfields]


def _num(v) -> float:
    if v is None or (hasattr(v, "isNull") and v.isNull()):
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


class ProfileDock(LayerDock):
    """Dock with the profile chart; `show_layer(layer)` loads an extractprofiles output."""

    TITLE = "Profile plot"

    def __init__(self, iface=None, parent=None):
        super().__init__(self.TITLE, parent)
        self.setObjectName("DeformationForecastProfileDock")
        self.iface = iface
        self.profiles: list[Profile] = []
        self.dates: list[dt.date] = []
        self._curves = 0
        self.crs = QgsCoordinateReferenceSystem()  # of the samples' x, y (the layer's)
        self.hover_marker: QgsVertexMarker | None = None
        self._profile_axes: list = []  # (matplotlib axes, Profile) as drawn

        body = QWidget(self)
        lay = QVBoxLayout(body)
        top = QHBoxLayout()
        top.addWidget(QLabel("Profile layer"))
        self.layer_combo = QgsMapLayerComboBox(body)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.PointLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setLayer(None)
        self.layer_combo.layerChanged.connect(self._layer_chosen)
        top.addWidget(self.layer_combo, 1)
        self.export_button = QPushButton("Export…", body)
        self.export_button.clicked.connect(self._export_dialog)
        top.addWidget(self.export_button)
        lay.addLayout(top)

        self.message = QLabel("Run 'Extract deformation profiles' or pick its output layer.", body)
        self.message.setWordWrap(True)
        lay.addWidget(self.message)

        split = QSplitter(Qt.Horizontal, body)
        lists = QWidget(split)
        ll = QVBoxLayout(lists)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("Profiles"))
        self.profile_list = QListWidget(lists)
        ll.addWidget(self.profile_list, 1)
        ll.addWidget(QLabel("Dates"))
        self.date_list = QListWidget(lists)
        ll.addWidget(self.date_list, 3)
        row = QHBoxLayout()
        self.all_button = QPushButton("All", lists)
        self.few_button = QPushButton("Few", lists)
        self.none_button = QPushButton("None", lists)
        for b in (self.all_button, self.few_button, self.none_button):
            row.addWidget(b)
        ll.addLayout(row)
        self.all_button.clicked.connect(lambda: self._check_dates(range(len(self.dates))))
        self.few_button.clicked.connect(lambda: self._check_dates(default_date_indexes(len(self.dates))))
        self.none_button.clicked.connect(lambda: self._check_dates([]))
        self.profile_list.itemChanged.connect(self._selection_changed)
        self.date_list.itemChanged.connect(self._selection_changed)

        self.figure = Figure(figsize=(6, 4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setParent(split)
        split.addWidget(lists)
        split.addWidget(self.canvas)
        split.setStretchFactor(1, 4)
        lay.addWidget(split, 1)
        self.setWidget(body)
        self.canvas.mpl_connect("motion_notify_event", self._mouse_moved)
        self.canvas.mpl_connect("figure_leave_event", lambda _event: self.hide_hover())
        self.plot()

    # -- data ---------------------------------------------------------------------------
    def show_layer(self, layer: QgsVectorLayer) -> int:
        """Load an extractprofiles point layer and plot it; returns the number of curves."""
        self.select_layer_quietly(layer)
        try:
            profiles, dates = profiles_from_layer(layer)
        except ValueError as e:
            self.set_data([], [])
            self.message.setText(str(e))
            return 0
        self.message.setText(f"{layer.name()}: {len(profiles)} profile(s), {len(dates)} date(s)")
        self.crs = layer.crs()
        return self.set_data(profiles, dates)

    def set_data(self, profiles: list[Profile], dates: list[dt.date], date_indexes=None) -> int:
        self.profiles, self.dates = list(profiles), list(dates)
        chosen = set(default_date_indexes(len(dates)) if date_indexes is None else date_indexes)
        with self.filling():
            self.profile_list.clear()
            for p in self.profiles:
                it = QListWidgetItem(p.name, self.profile_list)
                it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
                it.setCheckState(Qt.Checked)
            self.date_list.clear()
            for i, d in enumerate(self.dates):
                it = QListWidgetItem(d.isoformat(), self.date_list)
                it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
                it.setCheckState(Qt.Checked if i in chosen else Qt.Unchecked)
        return self.plot()

    def selected_profiles(self) -> list[Profile]:
        return [
            p for i, p in enumerate(self.profiles) if self.profile_list.item(i).checkState() == Qt.Checked
        ]

    def selected_date_indexes(self) -> list[int]:
        return [i for i in range(len(self.dates)) if self.date_list.item(i).checkState() == Qt.Checked]

    def _check_dates(self, indexes) -> None:
        keep = set(indexes)
        with self.filling():
            for i in range(self.date_list.count()):
                self.date_list.item(i).setCheckState(Qt.Checked if i in keep else Qt.Unchecked)
        self.plot()

    def clear(self) -> None:
        self.set_data([], [])

    # -- drawing ------------------------------------------------------------------------
    def plot(self) -> int:
        self.hide_hover()
        chosen = self.selected_profiles()
        self._curves = draw_profiles(self.figure, chosen, self.dates, self.selected_date_indexes())
        drawn = [ax for ax in self.figure.axes if any(ln.get_gid() == CURVE_GID for ln in ax.get_lines())]
        self._profile_axes = list(zip(drawn, chosen, strict=False))
        share_y_label(self.figure)
        self.canvas.draw_idle()
        return self._curves

    # -- the hovered position, on the map and on the chart ------------------------------------
    def _mouse_moved(self, event) -> None:
        axes = [ax for ax, _ in self._profile_axes]
        if event.inaxes not in axes or event.xdata is None:
            self.hide_hover()
            return
        self.hover_at(axes.index(event.inaxes), float(event.xdata))

    def hover_at(self, k: int, distance: float) -> tuple[float, float] | None:
        """Mark the sample of the k-th drawn profile nearest to `distance` (along the line) on the
        map canvas and on its chart; returns its (x, y) in the layer's CRS, None where there is no
        sample with a position."""
        ax, profile = self._profile_axes[k]
        ok = np.isfinite(profile.distance) & np.isfinite(profile.x) & np.isfinite(profile.y)
        if not ok.any():
            self.hide_hover()
            return None
        i = int(np.flatnonzero(ok)[np.argmin(np.abs(profile.distance[ok] - distance))])
        xy = (float(profile.x[i]), float(profile.y[i]))
        self._show_on_map(*xy)
        self._show_on_chart(ax, float(profile.distance[i]))
        return xy

    def _show_on_map(self, x: float, y: float) -> None:
        if self.iface is None:
            return
        canvas = self.iface.mapCanvas()
        if self.hover_marker is None:
            self.hover_marker = QgsVertexMarker(canvas)
            self.hover_marker.setIconType(QgsVertexMarker.ICON_CIRCLE)
            self.hover_marker.setColor(QColor(HOVER_LINE))
            self.hover_marker.setFillColor(QColor(HOVER_FILL))
            self.hover_marker.setIconSize(14)
            self.hover_marker.setPenWidth(2)
        dest = canvas.mapSettings().destinationCrs()
        point = QgsPointXY(x, y)
        if self.crs.isValid() and dest.isValid() and self.crs != dest:
            point = QgsCoordinateTransform(self.crs, dest, QgsProject.instance()).transform(point)
        self.hover_marker.setCenter(point)
        self.hover_marker.show()

    def _show_on_chart(self, hovered_ax, distance: float) -> None:
        for ax, _ in self._profile_axes:
            for line in [ln for ln in ax.get_lines() if ln.get_gid() == HOVER_GID]:
                line.remove()
        hovered_ax.axvline(distance, color=HOVER_LINE, lw=1.0, ls="--", gid=HOVER_GID)
        self.canvas.draw_idle()

    def hide_hover(self) -> None:
        """No hovered position: the mouse left the chart, or the chart was redrawn."""
        if self.hover_marker is not None:
            self.hover_marker.hide()
        removed = False
        for ax, _ in self._profile_axes:
            for line in [ln for ln in ax.get_lines() if ln.get_gid() == HOVER_GID]:
                line.remove()
                removed = True
        if removed:
            self.canvas.draw_idle()

    def closeEvent(self, event):  # noqa: N802
        self.remove_hover_marker()
        super().closeEvent(event)

    def remove_hover_marker(self) -> None:
        if self.hover_marker is not None and self.iface is not None:
            self.iface.mapCanvas().scene().removeItem(self.hover_marker)
        self.hover_marker = None

    def curve_count(self) -> int:
        """Curves drawn (one per selected profile and date), as counted from the axes."""
        return sum(1 for ax in self.figure.axes for ln in ax.get_lines() if ln.get_gid() == CURVE_GID)

    def export(self, path: str, dpi: int = 150) -> str:
        ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
        self.canvas.draw()
        self.figure.savefig(path, format=ext, dpi=dpi)
        return path

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export profile chart", "profiles.png", "PNG (*.png);;SVG (*.svg);;PDF (*.pdf)"
        )
        if path:
            self.export(path)


def share_y_label(figure) -> None:
    """One y label for stacked profile axes: at the dock's docked height the per-axis labels of
    three profiles overlap."""
    axes = [ax for ax in figure.axes if ax.get_lines()]
    labels = {ax.get_ylabel() for ax in axes if ax.get_ylabel()}
    if len(axes) > 1 and len(labels) == 1:
        for ax in axes:
            ax.set_ylabel("")
        figure.supylabel(labels.pop(), fontsize=8)
