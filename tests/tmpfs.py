"""A small tmpfs for the full-disk and read-only tests (issue 15), mounted without root where the
kernel allows it.

The file system is mounted inside an unprivileged user + mount namespace (`unshare --user
--map-root-user --mount`, kept alive by a `sleep`), and the test reaches it from outside through
that process's root, ``/proc/<pid>/root/<path>``: the path crosses into the namespace's mount table,
so every writer of the test process (GDAL, QGIS, Python, a qgis_process child) writes onto the
tmpfs with the caller's own uid. Where user namespaces are disabled, root mounts the tmpfs
directly; otherwise the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _in_namespace(path: Path, opts: str) -> tuple[subprocess.Popen | None, str]:
    """Start the namespace holding the tmpfs at `path`; (process, '') or (None, why not)."""
    if not shutil.which("unshare"):
        return None, "unshare(1) is not installed"
    script = 'mount -t tmpfs -o "$1" tmpfs "$2" && echo mounted && exec sleep 3600'
    p = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", opts, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stderr is not None
    if p.stdout.readline().strip() == "mounted":
        return p, ""
    p.wait(timeout=30)
    return None, p.stderr.read().strip() or f"unshare exited {p.returncode}"


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1M", readonly: bool = False) -> Iterator[Path]:
    """A tmpfs of `size` (read-only when asked) seen at the yielded path while the block runs.

    Use the yielded path, not `path`: without root it is ``/proc/<pid>/root`` + `path`. The mount
    and everything on it vanish at the end of the block."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    proc, why = _in_namespace(path, opts)
    if proc is not None:
        try:
            yield Path(f"/proc/{proc.pid}/root{path.resolve()}")
        finally:
            proc.kill()
            proc.wait()
        return
    if os.geteuid() != 0:
        pytest.skip(f"cannot mount a tmpfs: user namespaces refused ({why}) and not root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (namespace: {why}; mount: {r.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the file system of `folder` to the last byte (file ``filler``), then free about
    `leave` bytes so that small files still fit."""
    target = Path(folder) / "filler"
    with contextlib.suppress(OSError), open(target, "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)
    if leave:
        size = target.stat().st_size
        os.truncate(target, max(0, size - leave))
