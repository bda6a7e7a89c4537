"""Spatial blocks for forecasting rasters larger than memory (issue 8).

The raster is cut into rectangular *cores* (a partition of the pixels). Each block is forecast on its
core grown by a *halo* on every side that has a neighbour, and the overlapping halos are blended
with weights that form a partition of unity: along an axis, around every core boundary ``b`` the
left block's weight falls and the right block's rises over ``[b - halo, b + halo)`` along a
smoothstep ramp (``s(t) + s(1 - t) = 1``), and the 2-D weight is the product of the row and column
weights. The weights therefore sum to exactly one at every pixel: inside a core, away from its
boundaries, a pixel is the block's own forecast; near a boundary the two (or four) forecasts are
mixed smoothly, and the zero-padding artefacts at the outer edge of a block's halo get weight ~0.
(``dataset.blend_window`` blends the network's tiles the same way, but normalizes afterwards.)

Blocks are processed in row-major order. :class:`BlendWriter` keeps only the *cells* (pieces of the
raster between the lines ``b +- halo``) that a later block still contributes to, and hands every
cell to a sink (the StackWriter) as soon as its last block is added. What it holds at once is the
transition band below the current block row and the one right of the current block.

Block origins and sizes are multiples of the tile stride (``tile - overlap``) and regions are
extended to the tile grid, so inside a block the network's tiles sit where they sit in a
whole-raster forecast.

:class:`TailStore` keeps the last regularized dates of every pixel (what the network needs at the
forecast origin) in memory when they fit the budget, else in a temporary uncompressed GeoTIFF.
:func:`predict_tiles` is ``dataset.predict_frames`` with the tiles batched together (a forecast
step predicts ONE window, so batching over windows left every network call at batch size 1).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

# -- geometry ---------------------------------------------------------------------------------------


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class Axis:
    """A 1-D partition of ``size`` pixels into cores ``[bounds[i], bounds[i + 1])`` with a halo.

    ``tile`` and ``stride`` (optional) align a block's region with the network's tiles: the region
    is extended (with zero weight) so that its length minus a tile is a multiple of the stride, so
    ``dataset.tile_starts`` on the region gives the tiles of the whole raster, not a shifted last one.
    """

    size: int
    bounds: tuple[int, ...]  # 0 = bounds[0] < ... < bounds[-1] = size
    halo: int
    tile: int = 0
    stride: int = 0

    @property
    def n(self) -> int:
        return len(self.bounds) - 1

    def support(self, i: int) -> tuple[int, int]:
        """Pixels where block ``i`` has a nonzero weight: its core grown by the halo."""
        lo = self.bounds[i] - self.halo if i > 0 else 0
        hi = self.bounds[i + 1] + self.halo if i < self.n - 1 else self.size
        return lo, hi

    def region(self, i: int) -> tuple[int, int]:
        """Pixels block ``i`` is computed on: its support, extended to the tile grid."""
        lo, hi = self.support(i)
        if self.tile and self.stride and hi < self.size and hi - lo > self.tile:
            hi = min(self.size, hi + (self.tile - (hi - lo)) % self.stride)
        return lo, hi

    def weight(self, i: int) -> np.ndarray:
        """Blending weight of block ``i`` on its support (float64); sums to 1 over blocks."""
        lo, hi = self.support(i)
        x = np.arange(lo, hi, dtype="float64") + 0.5
        w = np.ones(hi - lo)
        if self.halo > 0:
            if i > 0:
                w *= _smoothstep((x - (self.bounds[i] - self.halo)) / (2.0 * self.halo))
            if i < self.n - 1:
                w *= _smoothstep(((self.bounds[i + 1] + self.halo) - x) / (2.0 * self.halo))
        return w

    def segments(self) -> list[tuple[int, int, int]]:
        """Pieces ``(lo, hi, last)`` between the lines ``b +- halo``; ``last`` is the highest block
        index that contributes to the piece (after it, the piece is final)."""
        cuts = {0, self.size}
        for b in self.bounds[1:-1]:
            cuts.update((b - self.halo, b + self.halo))
        cuts_sorted = sorted(cuts)
        out = []
        for lo, hi in zip(cuts_sorted[:-1], cuts_sorted[1:], strict=True):
            last = max(i for i in range(self.n) if self.support(i)[0] <= lo)
            out.append((lo, hi, last))
        return out


def split_axis(size: int, core: int, halo: int, tile: int = 0, stride: int = 0) -> Axis:
    """Cores of ``core`` pixels (the last one takes the remainder; one shorter than twice the halo
    is merged into its neighbour, so transition zones never overlap)."""
    if core >= size or size <= 0:
        return Axis(size, (0, size), 0)
    halo = max(0, min(int(halo), core // 2))
    bounds = list(range(0, size, core)) + [size]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < max(2 * halo, 1):
        del bounds[-2]
    if len(bounds) == 2:
        halo = 0
    return Axis(size, tuple(bounds), halo, int(tile), int(stride))


@dataclass(frozen=True)
class BlockPlan:
    rows: Axis
    cols: Axis

    @property
    def n_blocks(self) -> int:
        return self.rows.n * self.cols.n

    @property
    def halo(self) -> int:
        return max(self.rows.halo, self.cols.halo)

    def window(self, i: int, j: int) -> Window:
        r0, r1 = self.rows.region(i)
        c0, c1 = self.cols.region(j)
        return Window(c0, r0, c1 - c0, r1 - r0)

    def blocks(self) -> Iterator[tuple[int, int, Window]]:
        for i in range(self.rows.n):
            for j in range(self.cols.n):
                yield i, j, self.window(i, j)

    def largest_region(self) -> tuple[int, int]:
        h = max(self.rows.region(i)[1] - self.rows.region(i)[0] for i in range(self.rows.n))
        w = max(self.cols.region(j)[1] - self.cols.region(j)[0] for j in range(self.cols.n))
        return h, w


def tile_unit(tile: int, overlap: int) -> tuple[int, int]:
    """(smallest core, halo): the halo is the smallest multiple of the stride (tile - overlap) that
    is at least one tile; the smallest core lcm(tile, stride) (a multiple of the tile, at least
    twice the halo for the usual overlap of a quarter tile). Cores are multiples of the stride, so
    every block region starts on the whole raster's tile grid."""
    stride = max(1, int(tile) - int(overlap))
    unit = tile * stride // math.gcd(int(tile), stride)
    halo = stride * int(math.ceil(tile / stride))
    return unit, halo


def bytes_per_pixel(keep: int, steps: int, time_step: int, channels: int = 3) -> int:
    """Bytes one pixel of a block's region costs during its forecast: the kept dates (read, and a
    masked copy), the predicted frames (and a weighted copy while blending), the network's input
    window and its temporaries (~5 copies of time_step x channels), float64 accumulators. Measured
    with tracemalloc around forecast.forecast_window (cnn-phlstm, time step 5: 365 B at 5 kept
    dates and 2 steps, 685 B at 40 kept dates)."""
    return 4 * (2 * keep + 2 * steps + 5 * time_step * channels + 10)


def tile_activation_bytes(tile: int, time_step: int, width: int) -> int:
    """What one tile adds to a network call's peak memory (TensorFlow's activations), measured on
    the CPU for cnn-phlstm (tile 64, time step 5, width 8: ~5 MB per tile in a batch)."""
    return 32 * int(tile) ** 2 * int(time_step) * int(width)


def choose_tile_batch(budget: int, tile: int, time_step: int, width: int) -> int:
    """Tiles per network call: 32 (where batching stops paying on the CPU), fewer when their
    activations would take more than a tenth of the `budget` bytes; at least 4."""
    per = tile_activation_bytes(tile, time_step, width)
    return int(max(4, min(32, (budget // 10) // max(per, 1))))


def pending_bytes(plan: BlockPlan, bands: int) -> int:
    """At most what :class:`BlendWriter` holds between blocks: the transition band under the
    current block row (full width) and the one right of the current block, float32."""
    h2 = 2 * plan.halo
    core = max(b - a for a, b in zip(plan.rows.bounds[:-1], plan.rows.bounds[1:], strict=True))
    return 4 * int(bands) * h2 * (plan.cols.size + core + h2)


def plan_blocks(
    shape: tuple[int, int],
    tile: int,
    overlap: int,
    budget: int,
    per_pixel: int,
    steps: int,
    block_size: int = 0,
    halo: int | None = None,
) -> BlockPlan:
    """The largest cores whose largest region (`per_pixel` bytes a pixel) and pending transition
    bands fit in `budget` bytes; multiples of the tile stride, at least :func:`tile_unit`'s
    smallest core. An explicit `block_size` (pixels, rounded up likewise) wins. The whole raster is
    one block when it fits. `shape` = (height, width) of the raster."""
    height, width = (int(v) for v in shape)
    unit, auto_halo = tile_unit(tile, overlap)
    stride = max(1, int(tile) - int(overlap))
    h = auto_halo if halo is None else int(halo)

    def make(core: int) -> BlockPlan:
        return BlockPlan(split_axis(height, core, h, tile, stride), split_axis(width, core, h, tile, stride))

    if block_size and block_size > 0:
        return make(max(unit, int(math.ceil(block_size / stride) * stride)))
    if height * width * per_pixel <= budget:
        return make(max(height, width))
    # from the largest core the budget could hold (a square region, core + 2 halos) down
    side = math.sqrt(max(budget, 0) / max(per_pixel, 1)) - 2 * h
    core = max(unit, int(side // stride) * stride)
    while True:
        plan = make(core)
        rh, rw = plan.largest_region()
        if core <= unit or rh * rw * per_pixel + pending_bytes(plan, steps) <= budget:
            return plan
        core -= stride


# -- blending and writing ---------------------------------------------------------------------------


class BlendWriter:
    """Sum weighted block forecasts into cells; hand each finished cell to ``sink(window, data)``.

    ``data`` of a block is (bands, region rows, region cols). Finished cells get exactly
    ``sum_b w_b * data_b`` (the weights sum to 1), NaN where the blocks have NaN.
    """

    def __init__(self, plan: BlockPlan, bands: int, sink: Callable[[Window, np.ndarray], None]):
        self.plan, self.bands, self.sink = plan, int(bands), sink
        self.row_segs = plan.rows.segments()
        self.col_segs = plan.cols.segments()
        self.pending: dict[tuple[int, int], np.ndarray] = {}
        self.written = 0

    def pending_bytes(self) -> int:
        return sum(a.nbytes for a in self.pending.values())

    def add(self, i: int, j: int, data: np.ndarray) -> None:
        """Add block (i, j)'s forecast, (bands, region rows, region cols) (BlockPlan.window)."""
        win = self.plan.window(i, j)
        r0, c0 = int(win.row_off), int(win.col_off)
        if data.shape != (self.bands, int(win.height), int(win.width)):
            raise ValueError(f"block ({i}, {j}): data {data.shape}, region {win}")
        (s_lo, s_hi), (t_lo, t_hi) = self.plan.rows.support(i), self.plan.cols.support(j)
        wr, wc = self.plan.rows.weight(i), self.plan.cols.weight(j)
        for a, (s0, s1, last_r) in enumerate(self.row_segs):
            if s1 <= s_lo or s0 >= s_hi:
                continue
            for b, (t0, t1, last_c) in enumerate(self.col_segs):
                if t1 <= t_lo or t0 >= t_hi:
                    continue
                piece = data[:, s0 - r0 : s1 - r0, t0 - c0 : t1 - c0]
                w = np.outer(wr[s0 - s_lo : s1 - s_lo], wc[t0 - t_lo : t1 - t_lo]).astype("float32")
                acc = self.pending.pop((a, b), None)
                if acc is None:
                    acc = piece * w
                else:
                    acc += piece * w
                if last_r == i and last_c == j:
                    self.sink(Window(t0, s0, t1 - t0, s1 - s0), acc)
                    self.written += (s1 - s0) * (t1 - t0)
                else:
                    self.pending[(a, b)] = acc

    def finish(self) -> None:
        total = self.plan.rows.size * self.plan.cols.size
        if self.pending or self.written != total:
            raise RuntimeError(
                f"blending incomplete: {self.written} of {total} pixels, {len(self.pending)} pending"
            )


# -- the kept dates ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _no_georef_warning():
    """The temporary file of kept dates has no georeferencing, on purpose."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def _open_quiet(rasterio, *args, **kwargs):
    with _no_georef_warning():
        return rasterio.open(*args, **kwargs)


class TailStore:
    """The last `keep` regularized dates of every pixel, written by row strips, read by windows.

    In memory when `in_memory`, else a temporary uncompressed GeoTIFF (pixel-interleaved tiles) in
    a temporary folder inside `folder`, removed on close.
    """

    def __init__(self, keep: int, height: int, width: int, in_memory: bool, folder: str | None = None):
        self.keep, self.height, self.width = int(keep), int(height), int(width)
        self.in_memory = bool(in_memory)
        self._arr: np.ndarray | None = None
        self._ds = None
        self._dir: str | None = None
        if self.in_memory:
            self._arr = np.full((self.keep, self.height, self.width), np.nan, "float32")
        else:
            import rasterio

            self._dir = tempfile.mkdtemp(prefix=".df_forecast_", dir=folder or None)
            self.path = os.path.join(self._dir, "tail.tif")
            tiled = self.width >= 256 and self.height >= 256
            self._ds = _open_quiet(
                rasterio,
                self.path,
                "w+",
                driver="GTiff",
                count=self.keep,
                height=self.height,
                width=self.width,
                dtype="float32",
                nodata=float("nan"),
                interleave="pixel",
                BIGTIFF="YES" if self.keep * self.height * self.width * 4 > 3.5 * 2**30 else "NO",
                **({"tiled": True, "blockxsize": 256, "blockysize": 256} if tiled else {}),
            )

    def write(self, window: Window, data: np.ndarray) -> None:
        if self._arr is not None:
            r0, c0 = int(window.row_off), int(window.col_off)
            self._arr[:, r0 : r0 + int(window.height), c0 : c0 + int(window.width)] = data
        else:
            with _no_georef_warning():
                assert self._ds is not None
                self._ds.write(np.ascontiguousarray(data, dtype="float32"), window=window)

    def read(self, window: Window) -> np.ndarray:
        if self._arr is not None:
            r0, c0 = int(window.row_off), int(window.col_off)
            return self._arr[:, r0 : r0 + int(window.height), c0 : c0 + int(window.width)].copy()
        assert self._ds is not None
        with _no_georef_warning():
            return self._ds.read(window=window, out_dtype="float32")

    def read_last(self, window: Window) -> np.ndarray:
        """The last kept date on `window` (rows, cols)."""
        if self._arr is not None:
            r0, c0 = int(window.row_off), int(window.col_off)
            return self._arr[-1, r0 : r0 + int(window.height), c0 : c0 + int(window.width)].copy()
        assert self._ds is not None
        with _no_georef_warning():
            return self._ds.read(self.keep, window=window, out_dtype="float32")

    def close(self) -> None:
        self._arr = None
        if self._ds is not None:
            with contextlib.suppress(Exception):
                self._ds.close()
            self._ds = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> TailStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- the network over tiles -------------------------------------------------------------------------


def predict_tiles(
    model,
    windows: np.ndarray,
    tile: int,
    overlap: int,
    batch_size: int = 32,
    trend: np.ndarray | None = None,
) -> np.ndarray:
    """``dataset.predict_frames`` with (window, tile) pairs batched together: the next frame of each
    window (n, T, H, W[, C]); overlapping tiles blended with ``dataset.blend_window``."""
    from .dataset import _compiled, blend_window, pad_frames, tile_starts

    if windows.ndim == 4:
        windows = windows[..., None]
    n, _, h, w, _ = windows.shape
    x = _finite32(windows)  # no copy of a window that is already finite float32
    x = np.moveaxis(pad_frames(np.moveaxis(x, -1, 0), tile), 0, -1)
    tr = None if trend is None else pad_frames(_finite32(trend), tile)
    hp, wp = x.shape[2:4]
    rows, cols = tile_starts(hp, tile, overlap), tile_starts(wp, tile, overlap)
    weight = blend_window(tile, overlap) if len(rows) * len(cols) > 1 else np.ones((tile, tile), "float32")
    acc = np.zeros((n, hp, wp), "float64")
    norm = np.zeros((hp, wp), "float64")
    for r in rows:
        for c in cols:
            norm[r : r + tile, c : c + tile] += weight
    items = [(k, r, c) for k in range(n) for r in rows for c in cols]
    call = _compiled(model)
    for s in range(0, len(items), batch_size):
        sel = items[s : s + batch_size]
        batch = np.stack([x[k, :, r : r + tile, c : c + tile] for k, r, c in sel])
        if tr is None:
            pred = call(batch)
        else:
            tb = np.stack([tr[k, r : r + tile, c : c + tile] for k, r, c in sel])[..., None]
            pred = call({"frames": batch, "trend": tb})
        pred = np.asarray(pred)[..., 0]
        for p, (k, r, c) in zip(pred, sel, strict=True):
            acc[k, r : r + tile, c : c + tile] += p * weight
    acc /= norm
    return acc[:, :h, :w].astype("float32")


def _finite32(a: np.ndarray) -> np.ndarray:
    """`a` as float32 with NaN as 0, copied only when it must be."""
    a = np.asarray(a, dtype="float32")
    return a if np.isfinite(a).all() else np.nan_to_num(a, nan=0.0)
