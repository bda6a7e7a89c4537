"""Outputs that are either complete or absent: GDAL write errors, fsync and verification.

GDAL reports a full disk while writing a GeoTIFF only through its error handler (``ERROR 1:
_tiffWriteProc: No space left on device``), often when the file is flushed at close, and the
Python call returns normally: the file is then corrupt. :class:`GdalErrors` collects what GDAL
signals during a write (rasterio routes it to the ``rasterio._env`` logger inside a
``rasterio.Env``), :func:`finish_file` flushes the file to the disk (``fsync``) so that a late
failure is seen before the file is renamed to its final name, and :func:`verify_raster` opens the
written file again and reads its last block.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any

from .errors import InputError

_GDAL_LOGGER = "rasterio._env"
_MARK = "GDAL signalled an error"

# errors of the file system that the user can fix by choosing another place or freeing space
DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.EIO}


class GdalErrors(logging.Handler):
    """Context manager: collect the errors GDAL signals (CE_Failure and worse) while it is open."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []
        self._env: Any = None
        self._old_level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if _MARK in msg:
            self.messages.append(msg.split("msg=", 1)[-1].strip("'\""))

    def __enter__(self) -> GdalErrors:
        import rasterio

        env = rasterio.Env()
        env.__enter__()
        self._env = env
        log = logging.getLogger(_GDAL_LOGGER)
        self._old_level = log.level
        if log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)
        log.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        log = logging.getLogger(_GDAL_LOGGER)
        log.removeHandler(self)
        log.setLevel(self._old_level)
        if self._env is not None:
            self._env.__exit__(*exc)
            self._env = None

    def raise_if_any(self, path: str) -> None:
        if self.messages:
            raise write_error(path, OSError(errno.EIO, "; ".join(dict.fromkeys(self.messages))[:300]))


def write_error(path: str, e: OSError) -> InputError:
    """The message a person reads when writing `path` failed (full disk, read-only, ...)."""
    folder = os.path.dirname(os.path.abspath(path))
    why = e.strerror or str(e)
    if e.errno == errno.ENOSPC or "No space left" in str(e):
        fix = f"free some space in {folder!r} or choose an output on another disk"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) or "Read-only" in str(e):
        fix = f"{folder!r} cannot be written; choose an output folder you can write to"
    else:
        fix = "check the disk and the output folder, or choose another output file"
    return InputError(
        f"Cannot write the output {os.path.basename(path)!r}: {why}. Nothing was written; {fix}."
    )


def finish_file(path: str) -> None:
    """fsync `path` (a file, or each file of a folder) so that a delayed write error (a full disk
    on a network or copy-on-write file system) shows now, before the file gets its final name."""
    files = [path]
    if os.path.isdir(path):
        files = [os.path.join(r, f) for r, _, names in os.walk(path) for f in names]
    for p in files:
        if not os.path.isfile(p):
            continue
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def verify_raster(path: str, final: str) -> None:
    """Open the written raster again and read the last block of its last band: a file whose
    directory or tiles were not written fails here instead of after it was published."""
    import rasterio
    from rasterio.windows import Window

    try:
        with GdalErrors() as errs, rasterio.open(path) as src:
            bh, bw = src.block_shapes[-1]
            r0 = max(0, src.height - bh)
            c0 = max(0, src.width - bw)
            src.read(src.count, window=Window(c0, r0, src.width - c0, src.height - r0))
        errs.raise_if_any(final)
    except rasterio.errors.RasterioError as e:
        raise write_error(final, OSError(errno.EIO, f"the written file cannot be read back ({e})")) from e


def disk_problem(paths: list[str], min_free: int = 64 * 1024) -> str:
    """A sentence naming the first output of `paths` whose folder is read-only or (almost) full,
    '' when none is: explains a writer's failure that did not say why (QGIS's sinks)."""
    for path in paths:
        folder = os.path.dirname(os.path.abspath(path))
        while folder and not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        try:
            st = os.statvfs(folder)
        except OSError:
            continue
        if st.f_flag & os.ST_RDONLY or not os.access(folder, os.W_OK):
            return str(write_error(path, OSError(errno.EROFS, os.strerror(errno.EROFS))))
        if st.f_bavail * st.f_frsize < min_free:
            return str(write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    return ""


def unreadable_raster(e: BaseException) -> str:
    """The message for a rasterio read error (a truncated or corrupt file), '' for other errors."""
    import re

    import rasterio

    errors: tuple[type[BaseException], ...] = (rasterio.errors.RasterioError,)
    try:
        from rasterio._err import CPLE_BaseError

        errors = (*errors, CPLE_BaseError)
    except ImportError:  # pragma: no cover - rasterio's private module moved
        pass
    if not isinstance(e, errors):
        return ""
    detail = " ".join(str(x) for x in (e.__cause__ or e.__context__, e) if x)
    found = re.search(r"(/[^\s,:]+\.(?:tif|tiff|vrt|img|nc|h5))", detail, re.I)
    name = repr(os.path.basename(found.group(1))) if found else "an input raster"
    return (
        f"The raster {name} cannot be read ({detail[:200]}): the file is truncated or corrupt. "
        "Copy or download it again, or rebuild it; nothing was written."
    )
