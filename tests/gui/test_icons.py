"""The plugin's icons read at 16 px (the Toolbox, menus and toolbars draw them that size) and every
menu entry and toolbar button of the plugin has one."""

import os

import pytest

import deformation_forecast

ICONS = os.path.join(os.path.dirname(deformation_forecast.__file__), "icons")


def _pixels(icon, size=16):
    from qgis.PyQt.QtCore import QSize

    image = icon.pixmap(QSize(size, size)).toImage()
    return [image.pixelColor(x, y) for y in range(image.height()) for x in range(image.width())]


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(ICONS) if f.endswith(".svg")))
def test_icon_reads_at_16_px(qgis_app, name):
    from qgis.PyQt.QtGui import QIcon

    pixels = _pixels(QIcon(os.path.join(ICONS, name)))
    opaque = [c for c in pixels if c.alpha() > 200]
    assert len(pixels) == 256
    assert len(opaque) >= 40, f"{name}: {len(opaque)} opaque pixels of 256 at 16 px"
    # strong shapes, not a blur: several clearly different colours among the opaque pixels
    colours = {(c.red() // 64, c.green() // 64, c.blue() // 64) for c in opaque}
    assert len(colours) >= 3, (name, colours)


def test_menu_entries_and_toolbar_buttons_have_icons(gui):
    for action in [*gui.actions, *gui.toolbar.actions()]:
        assert not action.icon().isNull(), action.text()
        assert any(c.alpha() > 200 for c in _pixels(action.icon())), action.text()
