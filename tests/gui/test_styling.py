"""Each output is styled on the band that carries its meaning, with its unit in the legend."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from qgis.core import QgsProject, QgsRasterLayer

from deformation_forecast.core.stack import write_stack
from deformation_forecast.processing.styling import (
    ROLE_ERROR,
    ROLE_FORECAST,
    ROLE_INTERVAL,
    ROLE_RATE,
    ROLE_STACK,
    style_raster,
)
from tests.conftest import make_dates

GEO = ("EPSG:32647", Affine(20.0, 0, 500000.0, 0, -20.0, 4300000.0))


def legend_labels(layer: QgsRasterLayer) -> list[str]:
    return [label for label, _ in layer.renderer().legendSymbologyItems()]


@pytest.fixture
def subsiding(write_stack):
    """A bowl sinking 30 mm/yr in the middle, standard errors small and positive."""
    dates = make_dates(10, step=36)
    t = np.arange(10, dtype="float32")[:, None, None] * 36 / 365.25
    bowl = np.zeros((1, 6, 7), "float32")
    bowl[0, 2:4, 2:5] = -30.0
    return write_stack(t * bowl + 0.1 * np.sin(np.arange(10))[:, None, None], dates)


def test_linear_rate_is_styled_on_velocity_in_mm_per_year(qgis_processing, gui, subsiding, tmp_path):
    import processing

    out = processing.run(
        "deformation_forecast:deformationrate", {"INPUT": subsiding, "OUTPUT": str(tmp_path / "rate.tif")}
    )["OUTPUT"]
    layer = QgsRasterLayer(out, "rate", "gdal")
    spec = style_raster(layer)
    assert (spec.band, spec.units, spec.role) == (1, "mm/yr", ROLE_RATE)
    assert layer.renderer().band() == 1  # the velocity, not band 2 (its standard error)
    # a subsiding bowl is in the negative (red) half of the ramp, centred on zero
    lo, hi = layer.renderer().classificationMin(), layer.renderer().classificationMax()
    assert lo == pytest.approx(-hi) and hi >= 25
    assert all(label.endswith("mm/yr") for label in legend_labels(layer))


def test_stack_forecast_rate_and_errors_bands_and_units(qgis_app, tmp_path):
    dates = make_dates(4)
    data = np.arange(4 * 3 * 3, dtype="float32").reshape(4, 3, 3) - 10
    cases = {
        "stack": ({}, "mm", (4, "mm", ROLE_STACK)),
        "forecast": ({"SOURCE": "deformation_forecast forecast"}, "mm", (4, "mm", ROLE_FORECAST)),
        "forecast_rate": ({"SOURCE": "deformation_forecast forecast"}, "mm/yr", (4, "mm/yr", ROLE_RATE)),
        "errors": ({"CONTENT": "absolute error |predicted - observed|"}, "mm", (4, "mm", ROLE_ERROR)),
        "forecast_upper": (
            {"SOURCE": "deformation_forecast forecast", "INTERVAL": "upper", "CONFIDENCE": "0.9"},
            "mm",
            (4, "mm", ROLE_INTERVAL),
        ),
    }
    for name, (tags, units, expected) in cases.items():
        path = str(tmp_path / f"{name}.tif")
        write_stack(path, np.abs(data) if name == "errors" else data, dates, *GEO, units=units, tags=tags)
        layer = QgsRasterLayer(path, name, "gdal")
        spec = style_raster(layer)
        assert (spec.band, spec.units, spec.role) == expected, name
        assert layer.renderer().band() == expected[0], name
        labels = legend_labels(layer)
        assert labels and all(label.endswith(f" {units}") for label in labels), (name, labels)
        if name == "errors":  # errors are never negative: a sequential ramp from 0
            assert layer.renderer().classificationMin() == 0.0


def test_style_as_deformation_action_restyles_a_stack_loaded_by_hand(gui, write_stack, qgis_iface):
    path = write_stack(np.arange(5 * 9, dtype="float32").reshape(5, 3, 3), make_dates(5))
    layer = QgsRasterLayer(path, "by hand", "gdal")
    assert layer.renderer().type() == "multibandcolor"  # how QGIS loads a 5-band raster
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    assert gui.style_active_layer()
    assert layer.renderer().type() == "singlebandpseudocolor" and layer.renderer().band() == 5
