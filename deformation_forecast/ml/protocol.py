"""The worker's side of the line protocol (no TensorFlow import here).

Every line the worker prints on stdout is one JSON object with some of these keys:

- ``progress``: 0-100 for the whole command
- ``message``: text for the log
- ``metrics``: a dict of numbers (per epoch, per model, ...)
- ``warning``: text the QGIS side reports as a warning
- ``result``: the final dict of the command (printed once, last)
- ``error``: a failure message (the process then exits non-zero)

Anything else on stdout/stderr (TensorFlow's own logging) is kept as log text.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_out = sys.stdout


def emit(**obj: Any) -> None:
    _out.write(json.dumps(obj, default=_default) + "\n")
    _out.flush()


def _default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


def progress(value: float, message: str | None = None, **metrics: Any) -> None:
    obj: dict[str, Any] = {"progress": round(float(value), 2)}
    if message:
        obj["message"] = message
    if metrics:
        obj["metrics"] = metrics
    emit(**obj)


def message(text: str) -> None:
    emit(message=text)


def warning(text: str) -> None:
    emit(warning=text)


def result(**values: Any) -> None:
    emit(result=values)


def error(text: str) -> None:
    emit(error=text)
