"""Let the GUI react to an algorithm's output layer once QGIS has loaded it into the project.

An algorithm calls ``attach(context, algorithm_name, dest_id)`` for an output layer. When somebody
listens for that algorithm (the desktop GUI's docks, through ``connect``) and the output will be
loaded on completion (a Toolbox run with "Open output file after running", or
``processing.runAndLoadResults``), a layer post-processor is set on the output. QGIS calls it in the
main thread after loading the layer, and it hands the layer to the listeners.

Under ``qgis_process`` nobody listens, so nothing is attached and no GUI code is involved. This module
imports no GUI code itself.
"""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import (
    Qgis,
    QgsMapLayer,
    QgsMessageLog,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
)

Listener = Callable[[QgsMapLayer], None]

_LISTENERS: dict[str, list[Listener]] = {}
# QgsProcessingContext does not own post-processors: keep each alive until QGIS has called it.
_PENDING: list[_Notify] = []


def connect(algorithm_name: str, listener: Listener) -> None:
    """Call `listener(layer)` whenever an output of `algorithm_name` is loaded into a project."""
    _LISTENERS.setdefault(algorithm_name, [])
    if listener not in _LISTENERS[algorithm_name]:
        _LISTENERS[algorithm_name].append(listener)


def disconnect(algorithm_name: str, listener: Listener) -> None:
    lst = _LISTENERS.get(algorithm_name, [])
    if listener in lst:
        lst.remove(listener)


def listeners(algorithm_name: str) -> list[Listener]:
    return list(_LISTENERS.get(algorithm_name, []))


class _Notify(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, algorithm_name: str):
        super().__init__()
        self.algorithm_name = algorithm_name

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS's name
        try:
            for fn in listeners(self.algorithm_name):
                try:
                    fn(layer)
                except Exception as e:  # noqa: BLE001 - a broken dock must not fail the algorithm run
                    QgsMessageLog.logMessage(
                        f"{self.algorithm_name}: result listener failed: {e!r}",
                        "Deformation forecast",
                        Qgis.Warning,
                    )
        finally:
            if self in _PENDING:
                _PENDING.remove(self)


def attach(
    context: QgsProcessingContext,
    algorithm_name: str,
    dest_id: str,
    feedback: QgsProcessingFeedback | None = None,
) -> bool:
    """Set the notifying post-processor on output `dest_id` when it makes sense; True if set."""
    if not _LISTENERS.get(algorithm_name) or not dest_id:
        return False
    if not context.willLoadLayerOnCompletion(dest_id):
        return False
    details = context.layerToLoadOnCompletionDetails(dest_id)
    if details.postProcessor() is not None:  # somebody else's: leave it
        return False
    post = _Notify(algorithm_name)
    _PENDING.append(post)
    details.setPostProcessor(post)
    return True
