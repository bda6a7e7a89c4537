"""Post-processors for layers that Processing loads after a Toolbox run (never under qgis_process,
which loads nothing): a diverging ramp centred on zero with units, and optionally one layer per date
in the Temporal Controller. Instances must outlive the algorithm, so they are kept here."""

from __future__ import annotations

from qgis.core import QgsProcessingLayerPostProcessorInterface, QgsRasterLayer

from ..core.errors import InputError
from ..core.stack import read_info
from .styling import ROLE_FORECAST, ROLE_INTERVAL, ROLE_STACK, style_raster, symmetric_limit
from .temporal import add_stack_as_temporal_layers, set_layer_temporal_range

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
        spec = style_raster(layer, self.units)
        if spec is None:
            feedback.pushInfo(f"Styling skipped: {path} could not be read.")
            return
        feedback.pushInfo(f"{layer.name()}: styled on band {spec.band} ({spec.band_name}), {spec.units}.")
        if spec.role not in (ROLE_STACK, ROLE_FORECAST, ROLE_INTERVAL):
            return
        try:
            info = read_info(path)
        except (InputError, OSError):
            return  # a stack without dates: styled, not animated
        if spec.role in (ROLE_FORECAST, ROLE_INTERVAL):
            set_layer_temporal_range(layer, info.dates)
        if self.temporal and spec.role != ROLE_INTERVAL:
            limit = symmetric_limit(_renderer_limit(layer))
            add_stack_as_temporal_layers(
                path, context.project(), f"{layer.name()} (animation)", limit, spec.units
            )
            feedback.pushInfo("Added one layer per date for the Temporal Controller.")


def _renderer_limit(layer):
    import numpy as np

    r = layer.renderer()
    return np.array([abs(r.classificationMin()), abs(r.classificationMax())])


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
