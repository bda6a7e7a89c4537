"""Styles for the plugin's rasters: a diverging colour ramp centred on zero, with units."""

from __future__ import annotations

import numpy as np
from qgis.core import (
    QgsColorRampShader,
    QgsGradientColorRamp,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt.QtGui import QColor


def diverging_ramp() -> QgsGradientColorRamp:
    """Red (subsidence, negative) - white (0) - blue (uplift), from QGIS's RdBu."""
    ramp = QgsStyle.defaultStyle().colorRamp("RdBu")
    if ramp is None:  # pragma: no cover - QGIS always ships RdBu
        ramp = QgsGradientColorRamp(QColor("#b2182b"), QColor("#2166ac"))
    return ramp


def symmetric_limit(values: np.ndarray, percentile: float = 98.0) -> float:
    """A robust symmetric range +-m for `values` (NaN ignored): the `percentile` of |values|."""
    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0:
        return 1.0
    m = float(np.percentile(finite, percentile))
    return m if m > 0 else 1.0


def apply_diverging_style(
    layer: QgsRasterLayer, limit: float, band: int = 1, units: str = "mm", classes: int = 11
) -> QgsSingleBandPseudoColorRenderer:
    """Style `band` of `layer` with the diverging ramp over [-limit, +limit], centred on 0, the
    units in the legend."""
    shader_fn = QgsColorRampShader(-limit, limit)
    shader_fn.setColorRampType(QgsColorRampShader.Interpolated)
    shader_fn.setSourceColorRamp(diverging_ramp())
    items = []
    ramp = diverging_ramp()
    for k in range(classes):
        f = k / (classes - 1)
        v = -limit + 2 * limit * f
        items.append(QgsColorRampShader.ColorRampItem(v, ramp.color(f), f"{v:.1f} {units}"))
    shader_fn.setColorRampItemList(items)
    shader_fn.setClip(False)
    try:  # QGIS >= 3.18: legend suffix
        settings = shader_fn.legendSettings()
        settings.setSuffix(f" {units}")
        shader_fn.setLegendSettings(settings)
    except AttributeError:  # pragma: no cover
        pass
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(-limit)
    renderer.setClassificationMax(limit)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer


# alert classes of the failure-time analysis (core.failure): colour, label
ALERT_STYLE = [
    (0, "#9e9e9e", "0 no alert"),
    (1, "#fdd835", "1 significant acceleration"),
    (2, "#fb8c00", "2 failure forecast within the horizon"),
    (3, "#d50000", "3 forecast failure date reached"),
]


def apply_alert_style(layer, field: str = "alert") -> None:
    """Categorised point style on the alert class: grey, yellow, orange, red (larger when higher)."""
    from qgis.core import QgsCategorizedSymbolRenderer, QgsMarkerSymbol, QgsRendererCategory

    categories = []
    for value, colour, label in ALERT_STYLE:
        symbol = QgsMarkerSymbol.createSimple(
            {"name": "circle", "color": colour, "outline_color": "#333333", "size": str(1.6 + 0.8 * value)}
        )
        categories.append(QgsRendererCategory(value, symbol, label))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
    layer.triggerRepaint()


def apply_alert_raster_style(layer: QgsRasterLayer, band: int = 4) -> None:
    """Paletted style of the alert band of a failure-time raster (same colours as the points)."""
    from qgis.core import QgsPalettedRasterRenderer

    classes = [QgsPalettedRasterRenderer.Class(v, QColor(c), label) for v, c, label in ALERT_STYLE]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), band, classes))
    layer.triggerRepaint()
