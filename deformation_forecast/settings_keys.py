"""The plugin's settings: every QgsSettings key, and where a person sets them (QGIS-free constants).

One place for the keys that the Processing algorithms, the worker launcher and the settings page
share (issue 20). The page is registered by gui/settings.py in QGIS's Options dialog.
"""

from __future__ import annotations

PREFIX = "deformation_forecast/"
PYTHON = PREFIX + "python"  # the Python with TensorFlow that runs the worker
DEVICE = PREFIX + "device"  # the default DEVICE: auto | gpu | cpu
MEMORY_MB = PREFIX + "memory_mb"  # the memory budget in MB; 0 = not set

# where those settings are in QGIS's menus (the page of gui/settings.py), and its fields
PAGE = "Settings > Options > Deformation forecast"
PYTHON_FIELD = "TensorFlow Python"
DEVICE_FIELD = "Default device"
MEMORY_FIELD = "Memory budget (MB)"
