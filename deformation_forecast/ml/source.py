"""The training data on disk (issue 8): the regular stack in the work folder, read crop by crop.

Training never holds the stack in memory. :func:`prepare` streams the input by block-aligned
windows sized from the memory budget (core/budget.py), resamples each window to the regular grid
(core/resample.py works per pixel, so a window gives the same values as the whole stack), writes it
to an uncompressed tiled GeoTIFF ``regular.tif`` in the work folder (the training's checkpoint
folder) and accumulates, while streaming, the per-date extremes (the GRU compressor's min and max,
eq. 3) and the number of all-dates-finite pixels of every 64 x 64 block. Pixels that are not finite
at every date are written NaN at every date, so the mask of any crop is the finite pixels of any of
its bands. The work file and its summary (``prepared.npz``) are reused when the input, its dates
and the interval are the same (RESUME, or a rerun into the same output) and removed with the
checkpoint after a successful training.

:class:`WorkStack` reads crops (a band range x a window) of the work file through a small pool of
rasterio handles, one per concurrent read: a rasterio dataset is not thread-safe, and tf.data calls
the reader on short-lived threads (a handle per thread would pile up, ~1.7 MB each for 120 bands). :func:`sample_series` yields the pixel series of a seeded random sample of blocks, for
statistics (the trend window, the scales) that would otherwise need the whole raster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from ..core.errors import InputError
from ..core.resample import interpolate_time, regular_grid
from ..core.run import QUIET, Run
from ..core.stack import StackInfo, atomic_path, check_free_space, file_block, read_windows

BLOCK = 64  # the work file's tile edge: a 64 x 64 training crop touches at most 4 blocks per band
WORK_NAME = "regular.tif"
SUMMARY_NAME = "prepared.npz"


@dataclass(frozen=True)
class Prepared:
    """The regular stack in the work folder and what was learnt while writing it."""

    path: str
    grid: list[dt.date]
    interval: int
    height: int
    width: int
    fmin: np.ndarray  # per regular date, over the finite pixels
    fmax: np.ndarray
    block_valid: np.ndarray  # (ceil(H / BLOCK), ceil(W / BLOCK)) all-dates-finite pixels per block
    windows: int  # windows streamed when it was written (0: reused)

    @property
    def count(self) -> int:
        return len(self.grid)

    @property
    def n_valid(self) -> int:
        return int(self.block_valid.sum())


def _signature(info: StackInfo, interval: int) -> str:
    st = os.stat(info.path)
    sig = {
        "input": os.path.abspath(info.path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "shape": list(info.shape),
        "dates": [d.isoformat() for d in info.dates],
        "interval": int(interval),
        "block": BLOCK,
    }
    return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()


def _align(block: int) -> int:
    """Window edges on multiples of BLOCK and, when cheap, of the input's own block."""
    lcm = math.lcm(BLOCK, max(1, int(block)))
    return lcm if lcm <= 1024 else BLOCK


def prep_windows(
    height: int, width: int, pixels: int, align_h: int = BLOCK, align_w: int = BLOCK
) -> list[Window]:
    """Windows covering the raster, edges on multiples of the alignment, about `pixels` each:
    full-width row strips when a strip of `align_h` rows fits, else strips cut across."""
    if width * align_h <= pixels:
        rows = max(align_h, (pixels // width) // align_h * align_h)
        cols = width
    else:
        rows = align_h
        cols = max(align_w, (pixels // rows) // align_w * align_w)
    return [
        Window(c0, r0, min(cols, width - c0), min(rows, height - r0))
        for r0 in range(0, height, rows)
        for c0 in range(0, width, cols)
    ]


def prepare_bytes_per_pixel(n_in: int, n_out: int) -> int:
    """Peak bytes per pixel of one window in :func:`prepare`: the input (float32), its valid flags,
    the float32 copy of the full pixels and its float64 cast, the float64 product, the float32 output."""
    return 18 * n_in + 20 * n_out


def regular_dates(info: StackInfo, interval: int) -> list[dt.date]:
    """The regular grid of the stack's dates (core/resample.py ``regular_grid``, ending on the last)."""
    grid = regular_grid(info.dates, interval, "end")
    if len(grid) < 2:
        raise InputError(
            f"The stack spans {(info.dates[-1] - info.dates[0]).days} days: too short for an interval of "
            f"{interval} days."
        )
    return grid


def prepare(
    info: StackInfo,
    interval: int,
    folder: str,
    run: Run = QUIET,
    window_pixels: int | None = None,
) -> Prepared:
    """Write (or reuse) the regular stack of `info` in `folder`; see the module doc.

    `window_pixels`: pixels per streamed window (default: from the budget of `run`)."""
    grid = regular_dates(info, interval)
    path = os.path.join(folder, WORK_NAME)
    summary = os.path.join(folder, SUMMARY_NAME)
    sig = _signature(info, interval)
    found = _load_summary(summary, path, sig, grid, interval, info)
    if found is not None:
        return found
    os.makedirs(folder, exist_ok=True)
    for stale in (summary, path):
        if os.path.exists(stale):
            os.unlink(stale)
    h, w, n = info.height, info.width, len(grid)
    check_free_space(
        folder,
        n * h * w * 4 + 64 * 2**20,
        f"the training's work file (the stack on the regular {interval}-day grid, uncompressed, "
        "removed after training)",
        "write OUTPUT_MODEL to a disk with more room (the work file goes beside it)",
    )
    with rasterio.open(info.path) as src:
        bh, bw = file_block(src) if src.block_shapes else (1, w)
    if window_pixels is None:
        window_pixels = run.worker_pixel_bytes() // prepare_bytes_per_pixel(info.count, n)
    windows = prep_windows(h, w, max(int(window_pixels), 1), _align(bh), _align(bw))
    fmin = np.full(n, np.inf)
    fmax = np.full(n, -np.inf)
    blocks = np.zeros((-(-h // BLOCK), -(-w // BLOCK)), dtype="int64")
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **_work_profile(info, n)) as dst:
        for i, d in enumerate(grid, start=1):
            dst.set_band_description(i, d.isoformat())
        for win, data in read_windows(info.path, windows):
            reg = interpolate_time(data, info.dates, grid)
            del data
            ok = np.isfinite(reg).all(axis=0)
            reg[:, ~ok] = np.nan
            dst.write(reg, window=win)
            if ok.any():
                vals = reg[:, ok]
                np.minimum(fmin, vals.min(axis=1), out=fmin)
                np.maximum(fmax, vals.max(axis=1), out=fmax)
                del vals
            _count_blocks(blocks, ok, int(win.row_off), int(win.col_off))
    if not blocks.any():
        os.unlink(path)
        raise InputError("INPUT: the stack has no pixel with a value at every date.")
    with atomic_path(summary) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            signature=np.array(sig),
            fmin=fmin,
            fmax=fmax,
            block_valid=blocks,
            grid=np.array([d.isoformat() for d in grid]),
        )
    return Prepared(path, grid, interval, h, w, fmin, fmax, blocks, len(windows))


def _work_profile(info: StackInfo, n: int) -> dict[str, Any]:
    """The work file: uncompressed, BLOCK x BLOCK tiles, band-interleaved, NaN nodata."""
    return dict(
        driver="GTiff",
        count=n,
        height=info.height,
        width=info.width,
        dtype="float32",
        crs=info.crs,
        transform=info.transform,
        nodata=float("nan"),
        tiled=True,
        blockxsize=BLOCK,
        blockysize=BLOCK,
        interleave="band",
        compress=None,
        BIGTIFF="IF_SAFER",
    )


def _count_blocks(blocks: np.ndarray, ok: np.ndarray, row: int, col: int) -> None:
    """Add the finite pixels of a BLOCK-aligned window to the per-block counts."""
    hh, ww = ok.shape
    ph, pw = -hh % BLOCK, -ww % BLOCK
    padded = np.pad(ok, ((0, ph), (0, pw))) if (ph or pw) else ok
    counts = padded.reshape(padded.shape[0] // BLOCK, BLOCK, padded.shape[1] // BLOCK, BLOCK).sum(axis=(1, 3))
    blocks[row // BLOCK : row // BLOCK + counts.shape[0], col // BLOCK : col // BLOCK + counts.shape[1]] += (
        counts
    )


def _load_summary(summary, path, sig, grid, interval, info) -> Prepared | None:
    if not (os.path.isfile(summary) and os.path.isfile(path)):
        return None
    try:
        with np.load(summary, allow_pickle=False) as z:
            if str(z["signature"]) != sig:
                return None
            fmin, fmax, blocks = z["fmin"], z["fmax"], z["block_valid"]
        with rasterio.open(path) as src:
            if (src.count, src.height, src.width) != (len(grid), info.height, info.width):
                return None
    except (OSError, KeyError, ValueError, rasterio.errors.RasterioIOError):
        return None
    return Prepared(path, grid, interval, info.height, info.width, fmin, fmax, blocks, 0)


class WorkStack:
    """Crops of the work file, read through a pool of rasterio handles (see the module doc)."""

    def __init__(self, prep: Prepared):
        self.prep = prep
        self.path = prep.path
        self.height, self.width, self.count = prep.height, prep.width, prep.count
        self._lock = threading.Lock()
        self._free: list = []
        self._handles: list = []
        self.reads = 0  # crops read (for tests and logs)
        self.max_crop_pixels = 0

    def _acquire(self):
        """A handle no other thread is using. tf.data calls the reader on short-lived threads, so
        handles are pooled (at most one per concurrent read), not kept per thread."""
        with self._lock:
            if self._free:
                return self._free.pop()
        src = rasterio.open(self.path)
        with self._lock:
            self._handles.append(src)
        return src

    def read(self, b0: int, b1: int, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Bands [b0, b1) (0-based) of the window (row, col, height, width) as float32; NaN where the
        window leaves the raster (a small raster is padded up to a tile)."""
        rr, cc = min(height, self.height - row), min(width, self.width - col)
        bands = list(range(b0 + 1, b1 + 1))
        src = self._acquire()
        try:
            if (rr, cc) == (height, width) and bands:
                out = src.read(bands, window=Window(col, row, cc, rr), out_dtype="float32")
            else:
                out = np.full((b1 - b0, height, width), np.nan, dtype="float32")
                if rr > 0 and cc > 0 and bands:
                    out[:, :rr, :cc] = src.read(bands, window=Window(col, row, cc, rr), out_dtype="float32")
        finally:
            with self._lock:
                self._free.append(src)
                self.reads += 1
                self.max_crop_pixels = max(self.max_crop_pixels, (b1 - b0) * height * width)
        return out

    @property
    def handles(self) -> int:
        return len(self._handles)

    def close(self) -> None:
        with self._lock:
            for src in self._handles:
                src.close()
            self._handles.clear()
            self._free.clear()

    def __enter__(self) -> WorkStack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sample_blocks(prep: Prepared, max_pixels: int, seed: int) -> list[tuple[int, int]]:
    """(block row, block col) of BLOCK x BLOCK blocks with finite pixels: all of them when they hold
    at most `max_pixels` finite pixels, else a seeded random sample of about that many pixels."""
    valid = np.argwhere(prep.block_valid > 0)
    if prep.n_valid <= max_pixels:
        return [(int(b[0]), int(b[1])) for b in valid]
    mean = prep.n_valid / max(len(valid), 1)
    k = int(min(len(valid), max(1, math.ceil(max_pixels / mean))))
    pick = np.sort(np.random.default_rng(seed).choice(len(valid), size=k, replace=False))
    return [(int(valid[i][0]), int(valid[i][1])) for i in pick]


def sample_series(
    work: WorkStack, blocks: list[tuple[int, int]], b0: int, b1: int, max_bytes: int
) -> Iterator[np.ndarray]:
    """(b1 - b0, n) float32 series of the finite pixels of `blocks`, in chunks of at most about
    `max_bytes` (whole blocks; the concatenation over chunks is every finite pixel of the blocks)."""
    per_block = max(1, (b1 - b0) * BLOCK * BLOCK * 4)
    step = max(1, int(max_bytes // per_block))
    for i in range(0, len(blocks), step):
        parts = []
        for br, bc in blocks[i : i + step]:
            r, c = br * BLOCK, bc * BLOCK
            crop = work.read(b0, b1, r, c, min(BLOCK, work.height - r), min(BLOCK, work.width - c))
            ok = np.isfinite(crop[0]) if b1 > b0 else None
            parts.append(crop[:, ok])
        yield np.concatenate(parts, axis=1)


def score_blocks(height: int, width: int, edge: int) -> list[tuple[int, int, int, int]]:
    """(row, col, height, width) of a partition of the raster into nearly equal blocks of at most
    `edge` pixels a side (no thin strip at the edges)."""
    nr, nc = -(-height // edge), -(-width // edge)
    rs = np.linspace(0, height, nr + 1).round().astype(int)
    cs = np.linspace(0, width, nc + 1).round().astype(int)
    return [
        (int(rs[i]), int(cs[j]), int(rs[i + 1] - rs[i]), int(cs[j + 1] - cs[j]))
        for i in range(nr)
        for j in range(nc)
    ]
