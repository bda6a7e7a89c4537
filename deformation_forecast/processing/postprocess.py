"""Post-processors for layers that Processing loads after a Toolbox run (never under qgis_process,
which loads nothing): a diverging ramp centred on zero with units, and optionally one layer per date
in the Temporal Controller. Instances must outlive the algorithm, so they are kept here."""

from __future__ import annotations

from qgis.core import QgsProcessingLayerPostProcessorInterface, QgsRasterLayer

from ..core.errors import InputError
from ..core.stack import read_decimated, read_info
from .styling import apply_diverging_style, symmetric_limit
from .temporal import add_stack_as_temporal_layers

_alive: list[QgsProcessingLayerPostProcessorInterface] = []


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, units: str = "mm", temporal: bool = False, then=None):
        super().__init__()
        self.units = units
        self.temporal = temporal
        self.then = then  # a post-processor set before this one (e.g. result_hooks'), called after

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        try:
            self._style(layer, context, feedback)
        finally:
            if self.then is not None:
                self.then.postProcessLayer(layer, context, feedback)

    def _style(self, layer, context, feedback) -> None:
        if not isinstance(layer, QgsRasterLayer):
            return
        path = layer.source().split("|")[0]
        try:
            info = read_info(path, require_dates=False)
            last = read_decimated(path, -1, 512)  # bounded: never the whole band
        except (InputError, OSError) as e:
            feedback.pushInfo(f"Styling skipped: {e}")
            return
        limit = symmetric_limit(last)
        apply_diverging_style(layer, limit, band=layer.bandCount(), units=self.units)
        if self.temporal and all(info.dates):
            add_stack_as_temporal_layers(
                path, context.project(), f"{layer.name()} (animation)", limit, self.units
            )
            feedback.pushInfo("Added one layer per date for the Temporal Controller.")


def style_on_load(context, path: str, units: str = "mm", temporal: bool = False) -> None:
    """Attach the style post-processor to output `path` if Processing will load it."""
    if not path or not context.willLoadLayerOnCompletion(path):
        return
    details = context.layerToLoadOnCompletionDetails(path)
    pp = StylePostProcessor(units, temporal, details.postProcessor())
    _alive.append(pp)
    details.setPostProcessor(pp)


class AlertStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """The alert-class style (processing.styling) for a failure-time point layer or raster (band 4)."""

    def __init__(self, then=None):
        super().__init__()
        self.then = then

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        from qgis.core import QgsVectorLayer

        from .styling import apply_alert_raster_style, apply_alert_style

        try:
            if isinstance(layer, QgsVectorLayer) and layer.fields().lookupField("alert") >= 0:
                apply_alert_style(layer)
            elif isinstance(layer, QgsRasterLayer) and layer.bandCount() >= 4:
                apply_alert_raster_style(layer, 4)
        finally:
            if self.then is not None:
                self.then.postProcessLayer(layer, context, feedback)


def alert_style_on_load(context, dest: str) -> None:
    """Attach the alert-class style to the output `dest` (points or raster) if Processing will
    load it."""
    if not dest or not context.willLoadLayerOnCompletion(dest):
        return
    details = context.layerToLoadOnCompletionDetails(dest)
    pp = AlertStylePostProcessor(details.postProcessor())
    _alive.append(pp)
    details.setPostProcessor(pp)
