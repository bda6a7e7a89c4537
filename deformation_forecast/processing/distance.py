"""Length parameters in metres on the ground (core.metric converts them on any CRS)."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterDistance, QgsUnitTypes


def metres_parameter(
    name: str, description: str, default: float | None, help_text: str, optional: bool = False
) -> QgsProcessingParameterDistance:
    """A QgsProcessingParameterDistance in metres, not tied to a layer's CRS units (on a
    geographic stack those would be degrees): the algorithm converts with core.metric."""
    p = QgsProcessingParameterDistance(name, description, default, optional=optional, minValue=0.0)
    if hasattr(p, "setDefaultUnit"):  # QGIS >= 3.24: the dialog shows "meters"
        p.setDefaultUnit(QgsUnitTypes.DistanceMeters)
    p.setHelp(help_text)
    return p
