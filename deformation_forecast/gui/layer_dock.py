"""What the docks fed by one layer share: a layer picker kept in step with `show_layer` without
re-entering it, and redraws suppressed while the dock fills its own widgets."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from qgis.PyQt.QtWidgets import QDockWidget


class LayerDock(QDockWidget):
    """Subclasses set `self.layer_combo` and implement `show_layer(layer)`, `clear()` and `plot()`."""

    _filling = False

    @contextlib.contextmanager
    def filling(self) -> Iterator[None]:
        """Widgets changed inside this block trigger neither a redraw nor a layer load."""
        self._filling = True
        try:
            yield
        finally:
            self._filling = False

    def select_layer_quietly(self, layer) -> None:
        """Show `layer` in the picker without loading it a second time."""
        if self.layer_combo.currentLayer() is not layer:
            with self.filling():
                self.layer_combo.setLayer(layer)

    def _selection_changed(self, *_args) -> None:
        if not self._filling:
            self.plot()

    def _layer_chosen(self, layer) -> None:
        if self._filling:
            return
        if layer is None:
            self.clear()
        else:
            self.show_layer(layer)
