"""ML tests import TensorFlow, which aborts a process that loaded QGIS (protobuf clash).

Run them in their own pytest process without the pytest-qgis plugin:

    .venv/bin/python -m pytest -p no:pytest_qgis tests/ml

When QGIS is already loaded in this process they are skipped instead of crashing it.
"""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


@pytest.fixture(autouse=True)
def _no_qgis_here():
    if "qgis._core" in sys.modules:
        pytest.skip("QGIS is loaded in this process; run tests/ml with `-p no:pytest_qgis`")
