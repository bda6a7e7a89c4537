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
from collections.abc import Callable, Iterator

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


# resident memory of the TensorFlow worker itself: TensorFlow, Keras, a compiled network, matplotlib
# (peak RSS of a whole training on a 32 x 32 stack measured 0.98 GB with the CPU build of TF 2.21)
TF_OVERHEAD_MB = 1024
MIN_PIXEL_BYTES = 4 * 2**20


def worker_pixel_bytes(mb: float | None = None) -> int:
    """Bytes of pixel arrays the TensorFlow worker may hold at once: the budget less TensorFlow
    itself and the GDAL block cache (at least 4 MB, so that a tiny budget still runs, in many
    small windows)."""
    usable = budget_bytes(mb) - TF_OVERHEAD_MB * 2**20 - gdal_cache_bytes(mb)
    return max(MIN_PIXEL_BYTES, int(usable))


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux /proc/self/statm), None where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def test_predictions_bytes(height: int, width: int, n_test: int) -> int:
    """The whole test-set arrays a network's comparison needs (one-step and iterative predictions
    and their targets, float32)."""
    return 3 * int(n_test) * int(height) * int(width) * 4


def test_predictions_fit(height: int, width: int, n_test: int, mb: float | None = None) -> bool:
    """Whether the worker keeps (and writes for comparemodels) the whole test predictions of a
    `height` x `width` raster: they may take a third of its pixel budget."""
    return test_predictions_bytes(height, width, n_test) <= worker_pixel_bytes(mb) // 3


def smallest_budget(enough: Callable[[int], bool]) -> int:
    """The smallest budget (whole MB) for which `enough(mb)` holds (it must be monotonic): what an
    error message asks the user to set."""
    lo, hi = MIN_MB, MIN_MB
    while not enough(hi):
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def budget_for(working: int, copies: float = 1.0) -> int:
    """The smallest budget whose :func:`working_bytes` with `copies` is at least `working` bytes."""
    return smallest_budget(lambda mb: working_bytes(copies, mb) >= working)


def gdal_cache_bytes(mb: float | None = None) -> int:
    """GDAL's block cache: 1/8 of the budget, at most 256 MB (GDAL's default is 5 % of the RAM)."""
    return int(min(256 * 2**20, budget_bytes(mb) / 8))


def budget_for_cache(nbytes: int) -> int | None:
    """The smallest budget (whole MB) whose GDAL block cache holds `nbytes`, None when no budget's
    does (the cache stops growing at 256 MB)."""
    if nbytes > gdal_cache_bytes(1e9):
        return None
    return smallest_budget(lambda mb: gdal_cache_bytes(mb) >= nbytes)


@contextlib.contextmanager
def gdal_env(mb: float | None = None, **options) -> Iterator[None]:
    """A rasterio.Env whose GDAL block cache fits the budget; extra GDAL `options` pass through."""
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(mb), **options):
        yield


def direct_io_options(src) -> dict[str, str]:
    """GDAL options for reading the open rasterio dataset `src` window by window: direct I/O for an
    uncompressed pixel-interleaved GeoTIFF, whose reads through GDAL's block cache slow down 4-5
    times once a stack being written shares that cache (bench/bench_layouts.py, issue 22)."""
    from rasterio.enums import Interleaving

    pixel = src.count > 1 and src.interleaving == Interleaving.pixel
    if src.driver == "GTiff" and pixel and src.compression is None:
        return {"GTIFF_DIRECT_IO": "YES"}
    return {}


def open_for_reads(path: str):
    """The raster at `path` opened (rasterio) for a pass of windowed reads, with
    :func:`direct_io_options`: GDAL takes GTIFF_DIRECT_IO when it opens the file."""
    import rasterio

    src = rasterio.open(path)
    options = direct_io_options(src)
    if not options:
        return src
    src.close()  # opened again: GDAL takes the option only when it opens the file
    with rasterio.Env(**options):
        return rasterio.open(path)
