"""Make the core's dependencies (rasterio, scikit-image, scikit-learn, scipy) importable in QGIS.

QGIS runs Debian's system Python. Where these packages are not installed there (``apt install
python3-rasterio python3-skimage python3-sklearn``), the plugin borrows them from the worker's
Python environment (the same one that has TensorFlow), appending its site-packages to ``sys.path``
so that QGIS's own modules (numpy, GDAL) keep precedence. TensorFlow itself is never imported here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from . import settings_keys

REQUIRED = ("rasterio", "skimage", "sklearn", "scipy", "h5py")


def missing() -> list[str]:
    return [m for m in REQUIRED if importlib.util.find_spec(m) is None]


def _site_packages(python: str) -> list[str]:
    code = "import json, site, sysconfig; print(json.dumps([sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']]))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    import json

    return [p for p in dict.fromkeys(json.loads(out.stdout)) if os.path.isdir(p)]


def ensure() -> str:
    """Try to make REQUIRED importable; returns a message ("" when nothing was needed)."""
    need = missing()
    if not need:
        return ""
    from .worker import candidate_pythons

    for python, origin in candidate_pythons():
        for sp in _site_packages(python):
            if sp not in sys.path:
                sys.path.append(sp)
        importlib.invalidate_caches()
        if not missing():
            return f"deformation_forecast: using {', '.join(need)} from {origin} ({python})"
    return (
        f"deformation_forecast: Python packages missing in QGIS: {', '.join(missing())}. "
        "Install them (Debian: apt install python3-rasterio python3-skimage python3-sklearn "
        f"python3-scipy python3-h5py) or point the plugin at a Python that has them: {settings_keys.PAGE} > "
        f"'{settings_keys.PYTHON_FIELD}', or the environment variable DEFORMATION_FORECAST_PYTHON."
    )
