"""The desktop side of the plugin: a small registry of docks, their menu entries, and the hooks
that open a dock with an algorithm's result.

Only plugin.py imports this module, and only when QGIS gives an iface (never under qgis_process).

Adding a dock: append a ``DockSpec`` to ``DOCKS``. The dock class is imported lazily from
``deformation_forecast.gui.<module>``, built as ``cls(iface, parent)``, gets a "Plugins >
Deformation forecast > <title>" menu entry, and, for each algorithm named in ``results``, is shown
with ``dock.show_layer(layer)`` once QGIS has loaded that algorithm's output layer (see
processing.result_hooks; the algorithm calls ``result_hooks.attach`` for its output).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from qgis.core import Qgis, QgsProject
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction, QDockWidget

from ..processing import result_hooks

MENU = "&Deformation forecast"


@dataclass(frozen=True)
class DockSpec:
    key: str
    title: str  # menu entry
    module: str  # module under deformation_forecast.gui
    cls: str
    area: Qt.DockWidgetArea = Qt.RightDockWidgetArea
    results: tuple[str, ...] = field(default_factory=tuple)  # algorithm names whose output it shows
    icon: str = "icon.svg"  # its menu entry's icon, a file in deformation_forecast/icons


DOCKS: list[DockSpec] = [
    DockSpec(
        "profiles",
        "Profile plot",
        "profile_dock",
        "ProfileDock",
        Qt.BottomDockWidgetArea,
        ("extractprofiles",),
        "profile.svg",
    ),
    DockSpec(
        "timeseries",
        "Time series at a pixel",
        "timeseries_dock",
        "TimeSeriesDock",
        Qt.BottomDockWidgetArea,
        icon="timeseries.svg",
    ),
    DockSpec(
        "comparison",
        "Model comparison",
        "comparison_dock",
        "ComparisonDock",
        Qt.RightDockWidgetArea,
        ("comparemodels", "evaluateforecast"),
        "comparison.svg",
    ),
    DockSpec(
        "failure",
        "Inverse velocity (failure time)",
        "failure_dock",
        "FailureDock",
        Qt.RightDockWidgetArea,
        icon="failure.svg",
    ),
]


class PluginGui:
    def __init__(self, iface, specs: list[DockSpec] | None = None):
        self.iface = iface
        self.specs = {s.key: s for s in (DOCKS if specs is None else specs)}
        self.docks: dict[str, QDockWidget] = {}
        self.actions: list[QAction] = []
        self._listeners: list[tuple[str, result_hooks.Listener]] = []
        self.settings_factory: Any = None  # a SettingsFactory once loaded
        self.toolbar: Any = None  # the plugin's QToolBar once loaded
        self.pick_action: Any = None  # its pick-a-pixel QAction

    def load(self) -> None:
        quiet_matplotlib()
        parent = self.iface.mainWindow()
        from .settings import SettingsFactory

        self.settings_factory = SettingsFactory()
        _call(self.iface, "registerOptionsWidgetFactory", self.settings_factory)
        animate = QAction("Animate active stack in the Temporal Controller", parent)
        animate.setObjectName("deformation_forecast_animate")
        animate.triggered.connect(self.animate_active_layer)
        self.iface.addPluginToMenu(MENU, animate)
        self.actions.append(animate)
        self.toolbar = self.iface.addToolBar("Deformation forecast")
        self.toolbar.setObjectName("DeformationForecastToolbar")
        pick = QAction(_icon("/mActionIdentify.svg"), "Time series at a pixel (click the map)", parent)
        pick.setObjectName("deformation_forecast_pick")
        pick.setCheckable(True)
        pick.toggled.connect(self.pick_on_map)
        self.pick_action = pick
        self.toolbar.addAction(pick)
        animate.setIcon(_icon("/mTemporalNavigationAnimated.svg"))
        self.toolbar.addAction(animate)
        style = QAction("Style as deformation", parent)
        style.setObjectName("deformation_forecast_style")
        style.setToolTip("Colour the active raster on the band that carries its meaning, centred on zero")
        style.triggered.connect(self.style_active_layer)
        style.setIcon(_icon("/propertyicons/symbology.svg"))
        self.toolbar.addAction(style)
        self.iface.addPluginToMenu(MENU, style)
        self.actions.append(style)
        for spec in self.specs.values():
            action = QAction(plugin_icon(spec.icon), spec.title, parent)
            action.setObjectName(f"deformation_forecast_{spec.key}")
            action.triggered.connect(partial(self.show_dock, spec.key))
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)
            for alg in spec.results:
                listener = partial(self._on_result, spec.key)
                result_hooks.connect(alg, listener)
                self._listeners.append((alg, listener))
        if "failure" in self.specs:  # failuretime's points, loaded from the Toolbox or by hand
            QgsProject.instance().layersAdded.connect(self._on_layers_added)

    def animate_active_layer(self, *_args) -> int:
        """Add the active stack as one layer per date for the Temporal Controller; returns the
        number of layers added (0 with a message bar note when the layer is no stack)."""
        from ..core.stack import read_info
        from ..processing.temporal import add_stack_as_temporal_layers
        from .timeseries_dock import stack_path

        layer = self.iface.activeLayer()
        path = stack_path(layer)
        if path is None:
            self.iface.messageBar().pushMessage(
                "Deformation forecast",
                "Select a deformation stack (a raster with one date per band) first.",
                Qgis.Warning,
                5,
            )
            return 0
        _, layers = add_stack_as_temporal_layers(path, group_name=f"{layer.name()} (animation)")
        self.show_temporal_controller(read_info(path).dates)
        return len(layers)

    def pick_on_map(self, on: bool) -> None:
        """The toolbar's map tool: clicks on the map show the time series in the dock."""
        dock = self.show_dock("timeseries") if on else self.docks.get("timeseries")
        if dock is None or dock.tool is None:
            return
        dock.tool.setAction(self.pick_action)  # another map tool unchecks the button
        if dock.pick_button.isChecked() != on:
            dock.pick_button.setChecked(on)
        if not getattr(dock, "_synced", False):
            dock.pick_button.toggled.connect(self.pick_action.setChecked)
            dock._synced = True

    def style_active_layer(self, *_args) -> bool:
        """Style the active raster as the plugin styles its outputs (a stack loaded by hand shows
        as RGB bands 1-3 otherwise); False with a message bar note when it cannot."""
        from qgis.core import QgsRasterLayer

        from ..processing.styling import style_raster

        layer = self.iface.activeLayer()
        spec = style_raster(layer) if isinstance(layer, QgsRasterLayer) else None
        if spec is None:
            self.iface.messageBar().pushMessage(
                "Deformation forecast", "Select a raster file layer (GeoTIFF) first.", Qgis.Warning, 5
            )
            return False
        view = self.iface.layerTreeView() if hasattr(self.iface, "layerTreeView") else None
        if view is not None:
            view.refreshLayerSymbology(layer.id())
        return True

    def show_temporal_controller(self, dates) -> None:
        """Range first..last date, one frame per acquisition interval, animated mode, and the
        Temporal Controller panel open."""
        from ..processing.temporal import configure_navigation

        canvas = self.iface.mapCanvas()
        navigation = canvas.temporalController() if canvas is not None else None
        if navigation is not None and hasattr(navigation, "setFrameDuration"):
            configure_navigation(navigation, dates)
        panel = temporal_panel(self.iface.mainWindow())
        if panel is not None:
            panel.show()
            panel.raise_()

    def unload(self) -> None:
        if self.settings_factory is not None:
            _call(self.iface, "unregisterOptionsWidgetFactory", self.settings_factory)
            self.settings_factory = None
        if "failure" in self.specs:
            try:
                QgsProject.instance().layersAdded.disconnect(self._on_layers_added)
            except TypeError:  # never connected
                pass
        for alg, listener in self._listeners:
            result_hooks.disconnect(alg, listener)
        self._listeners.clear()
        for action in self.actions:
            _call(self.iface, "removePluginMenu", MENU, action)
            action.deleteLater()
        self.actions.clear()
        if getattr(self, "toolbar", None) is not None:
            self.toolbar.hide()
            self.toolbar.deleteLater()
            self.toolbar = None
        for dock in self.docks.values():
            _call(self.iface, "removeDockWidget", dock)
            dock.close()
            dock.deleteLater()
        self.docks.clear()

    def dock(self, key: str) -> QDockWidget:
        """The dock of `key`, built and added to the main window on first use."""
        if key not in self.docks:
            spec = self.specs[key]
            mod = importlib.import_module(f"{__package__}.{spec.module}")
            dock = getattr(mod, spec.cls)(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(spec.area, dock)
            self.docks[key] = dock
        return self.docks[key]

    def show_dock(self, key: str, *_args) -> QDockWidget:
        dock = self.dock(key)
        dock.show()
        dock.raise_()
        return dock

    def _on_result(self, key: str, layer) -> None:
        self.show_dock(key).show_layer(layer)

    def _on_layers_added(self, layers) -> None:
        """The inverse-velocity dock opens with a failuretime output (recognised by its fields)."""
        from .failure_dock import is_failure_layer

        found = next((lyr for lyr in layers if is_failure_layer(lyr)), None)
        if found is not None:
            self.show_dock("failure").show_layer(found)


# matplotlib's notes about its own layout or backends: QGIS shows every Python warning in its message
# log as if something had gone wrong; the docks' charts draw fine without acting on them
MATPLOTLIB_NOTES = (
    "constrained_layout not applied",
    "Tight layout not applied",
    "tight_layout",
    "Unable to import Axes3D",
    "No artists with labels found",
    "Attempting to set identical",
)


def quiet_matplotlib() -> None:
    """Keep matplotlib's layout notes (raised while the docks paint) out of the QGIS log."""
    import warnings

    for note in MATPLOTLIB_NOTES:
        warnings.filterwarnings("ignore", message=f".*{note}", category=UserWarning)


def plugin_icon(name: str):
    """An icon of the plugin's own (deformation_forecast/icons)."""
    import os

    from qgis.PyQt.QtGui import QIcon

    return QIcon(os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons", name))


def _icon(name: str):
    from qgis.core import QgsApplication

    return QgsApplication.getThemeIcon(name)


def temporal_panel(main_window):
    """QGIS's Temporal Controller dock of the main window, or None (test stand-ins have none)."""
    if main_window is None:
        return None
    for dock in main_window.findChildren(QDockWidget):
        if "Temporal" in dock.objectName() or dock.windowTitle() == "Temporal Controller":
            return dock
    return None


def _call(obj, name: str, *args) -> None:
    """Call iface.`name` when it exists (test stand-ins of QgisInterface lack some removers)."""
    fn = getattr(obj, name, None)
    if fn is not None:
        fn(*args)
