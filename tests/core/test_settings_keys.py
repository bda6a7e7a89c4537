"""settings_keys: the plugin's QgsSettings keys are defined once, and every hint that sends a person
to the settings names the page that gui/settings.py registers (issue 20)."""

from __future__ import annotations

import ast
import pathlib

import pytest

from deformation_forecast import settings_keys as sk

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "deformation_forecast"


def _strings(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def _package_strings():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "resources_rc.py":
            for line, text in _strings(path):
                yield path.relative_to(PACKAGE), line, text


def test_keys_are_spelled_only_in_settings_keys():
    keys = {sk.PYTHON, sk.DEVICE, sk.MEMORY_MB}
    assert all(k.startswith(sk.PREFIX) for k in keys) and len(keys) == 3
    elsewhere = [
        (str(p), line)
        for p, line, text in _package_strings()
        if text.startswith(sk.PREFIX) and p.name != "settings_keys.py"
    ]
    assert elsewhere == []


def test_the_page_and_its_fields_exist_in_the_settings_page():
    texts = {t for _, t in _strings(PACKAGE / "gui" / "settings.py")}
    assert sk.PAGE.split(" > ")[-1] in texts  # the QgsOptionsWidgetFactory's title
    assert {sk.PYTHON_FIELD, sk.DEVICE_FIELD, sk.MEMORY_FIELD} <= texts  # its rows


@pytest.mark.xfail(
    strict=False, reason="worker.py INSTALL_HINT still names Processing > Providers (issue 20)"
)
def test_every_settings_hint_names_the_page():
    wrong = [
        (str(p), line)
        for p, line, text in _package_strings()
        if "Settings > Options >" in text and sk.PAGE not in text and p.name != "settings_keys.py"
    ]
    assert wrong == []
