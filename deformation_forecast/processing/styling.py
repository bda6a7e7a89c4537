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
