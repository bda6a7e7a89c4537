"""The memory budget: how many bytes of pixels one algorithm may hold at once (issue 8).

Every algorithm that reads a stack streams it in windows sized from this budget, so a stack larger
than memory is processed in bounded memory. The budget comes, in order, from an explicit value (the
worker's ``memory_budget_mb`` parameter), the environment variable ``DEFORMATION_FORECAST_MEMORY_MB``
(set it for ``qgis_process``), or the default of 2048 MB. The QGIS settings page writes the variable
for the QGIS session.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV = "DEFORMATION_FORECAST_MEMORY_MB"
DEFAULT_MB = 2048
MIN_MB = 64
# bytes set aside for the interpreter, numpy, GDAL/PROJ and (in the worker) TensorFlow itself
BASE_OVERHEAD_MB = 256


def budget_mb(mb: float | None = None) -> float:
    """The budget in MB: `mb` if positive, else $DEFORMATION_FORECAST_MEMORY_MB, else 2048.

    Values below 64 MB count as 64. An explicit `mb` of 0 or None means "not set"; so does an empty
    or 0 variable. A variable that is not a number, or is negative, raises InputError (a typo must
    not silently give the default).
    """
    if mb is not None and float(mb) > 0:
        return max(float(mb), MIN_MB)
    raw = os.environ.get(ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not value >= 0 or value == float("inf"):
            from .errors import InputError

            raise InputError(
                f"The environment variable {ENV}={raw!r} is not a memory budget: give a number of MB "
                f"(e.g. {ENV}=4096), or unset it for the default of {DEFAULT_MB} MB."
            )
        if value > 0:
            return max(value, MIN_MB)
    return float(DEFAULT_MB)


def budget_bytes(mb: float | None = None) -> int:
    return int(budget_mb(mb) * 2**20)


def overhead_bytes(mb: float | None = None) -> int:
    """What the budget sets aside for the interpreter, numpy, GDAL/PROJ (and TensorFlow in the
    worker): 256 MB, or a quarter of a budget smaller than 1 GB."""
    return int(min(BASE_OVERHEAD_MB * 2**20, budget_bytes(mb) / 4))


def working_bytes(copies: float = 4.0, mb: float | None = None) -> int:
    """Bytes one window of float32 pixels may take when `copies` arrays of its size live at once.

    The base overhead and the GDAL block cache are taken off the budget first (with the default
    2048 MB: 1536 MB of pixels).
    """
    usable = budget_bytes(mb) - overhead_bytes(mb) - gdal_cache_bytes(mb)
    return max(2**20, int(usable / max(copies, 1.0)))


def budget_for(working: int, copies: float = 1.0) -> int:
    """The smallest budget (whole MB) whose :func:`working_bytes` with `copies` is at least
    `working` bytes: what an error message asks the user to set."""
    lo, hi = MIN_MB, MIN_MB
    while working_bytes(copies, hi) < working:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if working_bytes(copies, mid) >= working:
            hi = mid
        else:
            lo = mid + 1
    return hi


def gdal_cache_bytes(mb: float | None = None) -> int:
    """GDAL's block cache: 1/8 of the budget, at most 256 MB (GDAL's default is 5 % of the RAM)."""
    return int(min(256 * 2**20, budget_bytes(mb) / 8))


@contextlib.contextmanager
def gdal_env(mb: float | None = None, **options) -> Iterator[None]:
    """A rasterio.Env whose GDAL block cache fits the budget; extra GDAL `options` pass through."""
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(mb), **options):
        yield
