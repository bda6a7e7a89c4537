"""Styles for the plugin's rasters: a diverging colour ramp centred on zero, with units."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import rasterio
from qgis.core import (
    QgsColorRampShader,
    QgsGradientColorRamp,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt.QtGui import QColor

from ..core.dates import parse_date
from ..core.errors import InputError
from ..core.stack import UNITS_TAG, read_decimated

# what the plugin writes into its outputs (dataset tags), read back to style and to recognise them
SOURCE_TAG = "SOURCE"
FORECAST_SOURCE = "deformation_forecast forecast"
CONTENT_TAG = "CONTENT"
RATE_MODE_TAG = "RATE_MODE"

ROLE_STACK = "stack"  # cumulative displacement per date: the last date carries the meaning
ROLE_FORECAST = "forecast"  # a forecast stack (future dates)
ROLE_RATE = "rate"  # velocity / annual rates (units per year)
ROLE_ERROR = "error"  # absolute errors or a standard error: >= 0, sequential ramp
ROLE_OTHER = "other"  # anything else (e.g. a distance raster): first band
ROLE_INTERVAL = "interval"  # a forecast's lower or upper bound (tag INTERVAL): its last date
INTERVAL_TAG = "INTERVAL"  # lower | upper, written by the forecast beside CONFIDENCE_TAG
CONFIDENCE_TAG = "CONFIDENCE"  # the band's confidence level (a raster tag, as ml/forecast.py writes it)


@dataclass(frozen=True)
class OutputStyle:
    """Which band of a raster carries its meaning, in what units, and what it is."""

    band: int
    units: str
    role: str
    band_name: str


def _is_error(text: str) -> bool:
    t = text.lower()
    return "stderr" in t or "error" in t


def describe_raster(path: str, default_units: str = "mm") -> OutputStyle:
    """Read what the plugin wrote into the raster at `path` (band descriptions, UNITS and SOURCE
    tags) and choose the band to style: the velocity for a linear rate (never its standard
    error), the last year for annual rates, the last date for stacks and error stacks."""
    try:
        with rasterio.open(path) as src:
            tags = src.tags()
            names = [d or "" for d in src.descriptions]
            units = (src.units[0] if src.units and src.units[0] else tags.get(UNITS_TAG)) or default_units
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"Cannot open raster {path!r}: {e}") from e
    n = len(names)
    content = tags.get(CONTENT_TAG, "")
    if _is_error(content):
        return OutputStyle(n, units, ROLE_ERROR, names[-1])
    if RATE_MODE_TAG in tags or units.endswith("/yr"):
        rate_bands = [i for i, name in enumerate(names) if not _is_error(name)] or [n - 1]
        band = rate_bands[0] if tags.get(RATE_MODE_TAG) == "linear" else rate_bands[-1]
        return OutputStyle(band + 1, units, ROLE_RATE, names[band])
    if tags.get(INTERVAL_TAG) in ("lower", "upper"):
        return OutputStyle(n, units, ROLE_INTERVAL, names[-1])
    if tags.get(SOURCE_TAG) == FORECAST_SOURCE:
        return OutputStyle(n, units, ROLE_FORECAST, names[-1])
    if n > 1 or any(parse_date(name) for name in names):
        return OutputStyle(n, units, ROLE_STACK, names[-1])
    return OutputStyle(1, units, ROLE_OTHER, names[0])


def sequential_ramp() -> QgsGradientColorRamp:
    """Light (0) to dark red (large): for errors, which are never negative."""
    ramp = QgsStyle.defaultStyle().colorRamp("Reds")
    if ramp is None:  # pragma: no cover - QGIS always ships Reds
        ramp = QgsGradientColorRamp(QColor("#fff5f0"), QColor("#67000d"))
    return ramp


def style_raster(layer: QgsRasterLayer, default_units: str = "mm") -> OutputStyle | None:
    """Style `layer` (a GDAL raster) on the band that carries its meaning, with its units in the
    legend: diverging around zero for displacements and rates, sequential from zero for errors.
    Returns what was chosen, None when the file cannot be read."""
    path = layer.source().split("|")[0]
    if not os.path.exists(path):
        return None
    try:
        spec = describe_raster(path, default_units)
        values = read_decimated(path, spec.band - 1, 512)  # bounded: never the whole band
    except (InputError, OSError):
        return None
    if spec.role == ROLE_ERROR:
        finite = values[np.isfinite(values)]
        top = float(np.percentile(finite, 98)) if finite.size else 1.0
        apply_sequential_style(layer, top if top > 0 else 1.0, spec.band, spec.units)
    else:
        apply_diverging_style(layer, symmetric_limit(values), band=spec.band, units=spec.units)
    return spec


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
    return _ramp_style(layer, (-limit, limit), diverging_ramp(), band, units, classes)


def apply_sequential_style(
    layer: QgsRasterLayer, top: float, band: int = 1, units: str = "mm", classes: int = 6
) -> QgsSingleBandPseudoColorRenderer:
    """Style `band` of `layer` light to dark over [0, top], the units in the legend."""
    return _ramp_style(layer, (0.0, top), sequential_ramp(), band, units, classes)


def _ramp_style(
    layer: QgsRasterLayer,
    bounds: tuple[float, float],
    ramp: QgsGradientColorRamp,
    band: int,
    units: str,
    classes: int,
) -> QgsSingleBandPseudoColorRenderer:
    lo, hi = bounds
    shader_fn = QgsColorRampShader(lo, hi)
    shader_fn.setColorRampType(QgsColorRampShader.Interpolated)
    shader_fn.setSourceColorRamp(ramp.clone())
    items = []
    for k in range(classes):
        f = k / (classes - 1)
        v = lo + (hi - lo) * f
        items.append(QgsColorRampShader.ColorRampItem(v, ramp.color(f), f"{v:.1f} {units}"))
    shader_fn.setColorRampItemList(items)
    shader_fn.setClip(False)
    try:  # QGIS >= 3.18: legend suffix
        from qgis.core import QgsBasicNumericFormat

        settings = shader_fn.legendSettings()
        settings.setSuffix(f" {units}")
        number = QgsBasicNumericFormat()
        number.setNumberDecimalPlaces(1)
        settings.setNumericFormat(number)
        shader_fn.setLegendSettings(settings)
    except AttributeError:  # pragma: no cover
        pass
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
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
