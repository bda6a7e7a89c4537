"""The layers' import direction: core imports neither qgis nor tensorflow; ml is only for the worker."""

import ast
import os
import subprocess
import sys

from tests.conftest import ROOT


def _modules(pkg):
    folder = os.path.join(ROOT, "deformation_forecast", pkg)
    return sorted(
        f"deformation_forecast.{pkg}.{f[:-3]}"
        for f in os.listdir(folder)
        if f.endswith(".py") and f != "__main__.py"
    )


def test_core_imports_neither_qgis_nor_tensorflow():
    mods = _modules("core")
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('qgis', 'tensorflow', 'keras', 'PyQt5'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_nothing_outside_ml_imports_tensorflow():
    offenders = []
    for base, _, files in os.walk(os.path.join(ROOT, "deformation_forecast")):
        if os.sep + "ml" in base[len(ROOT) :]:
            continue
        for f in files:
            if f.endswith(".py"):
                tree = ast.parse(open(os.path.join(base, f), encoding="utf-8").read())
                for node in ast.walk(tree):
                    names = []
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                        names = [node.module]
                    if any(n.split(".")[0] in ("tensorflow", "keras") for n in names):
                        offenders.append(os.path.join(base, f))
    assert offenders == []
