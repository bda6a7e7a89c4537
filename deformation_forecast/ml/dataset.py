"""Windows, split, masks and tiles for the forecasting network (§III-B-2 a).

Multistep-to-one-step: the input is `time_step` consecutive compressed frames, the label the next
frame. The last `test_count` labels are the test set; the labels before them are split in time order,
the first (1 - validation_fraction) for training, the rest for validation. Pixels that are NaN in the
(resampled) stack are 0 in the inputs, masked out of the loss and restored as NaN in outputs.
Rasters are cut into square tiles with overlap; predictions of overlapping tiles are blended.

Training examples (one label date x one tile) are read from the regular stack on disk as they are
needed (:func:`tile_reader`, ml/source.py) by a tf.data pipeline (:func:`tile_dataset`): the stack
is never held whole in memory.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.dates import median_interval
from ..core.errors import InputError
from ..core.resample import resample_regular

if TYPE_CHECKING:
    from .modelfile import TrendParams


def regularize(
    stack: np.ndarray, dates: Sequence[dt.date], interval_days: int = 0
) -> tuple[np.ndarray, list[dt.date], int]:
    """The stack on a regular grid ending on its last date; interval 0 = median acquisition interval."""
    interval = int(interval_days) or median_interval(dates)
    data, grid = resample_regular(stack, dates, interval, anchor="end")
    return data, grid, interval


@dataclass(frozen=True)
class Split:
    time_step: int
    n_dates: int
    train: np.ndarray  # label indices
    val: np.ndarray
    test: np.ndarray


def split_windows(n_dates: int, time_step: int, test_count: int, validation_fraction: float) -> Split:
    labels = np.arange(time_step, n_dates)
    need = test_count + 4
    if len(labels) < need:
        raise InputError(
            f"The stack has {n_dates} dates at this interval: too few for TIME_STEP={time_step} and "
            f"TEST_COUNT={test_count} (at least {time_step + need} are needed). Lower TEST_COUNT or "
            "TIME_STEP, or use a longer stack."
        )
    test = labels[len(labels) - test_count :] if test_count else labels[:0]
    rest = labels[: len(labels) - test_count]
    n_val = int(round(len(rest) * validation_fraction))
    n_val = min(max(n_val, 1 if validation_fraction > 0 else 0), len(rest) - 2)
    return Split(time_step, n_dates, rest[: len(rest) - n_val], rest[len(rest) - n_val :], test)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def pad_frames(frames: np.ndarray, tile: int) -> np.ndarray:
    """Zero-pad (..., H, W) up to at least `tile` in both dimensions."""
    h, w = frames.shape[-2:]
    ph, pw = max(0, tile - h), max(0, tile - w)
    if not (ph or pw):
        return frames
    pad = [(0, 0)] * (frames.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(frames, pad)


def blend_window(tile: int, overlap: int) -> np.ndarray:
    ramp = max(1, overlap)
    i = np.arange(tile) + 0.5
    r = np.clip(np.minimum(i, tile - i) / ramp, 1e-3, 1.0)
    return np.outer(r, r).astype("float32")


def tile_grid(height: int, width: int, tile: int, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Top rows and left columns of the training tiles (a raster smaller than a tile is zero-padded
    up to it, as :func:`pad_frames` does)."""
    rows = tile_starts(max(height, tile), tile, overlap)
    cols = tile_starts(max(width, tile), tile, overlap)
    return np.array(rows, dtype="int64"), np.array(cols, dtype="int64")


def example_bands(t: int, time_step: int, trend_window: int = 0) -> tuple[int, int]:
    """[b0, b1): the regular dates one example with label `t` reads (its window, the dates its line
    is fitted to, and the label)."""
    return max(0, int(t) - max(int(time_step), int(trend_window))), int(t) + 1


def make_example(
    crop: np.ndarray,
    b0: int,
    t: int,
    fmin: np.ndarray,
    fmax: np.ndarray,
    time_step: int,
    trend: TrendParams | None = None,
) -> list[np.ndarray]:
    """One training example from `crop`, the regular stack's dates [b0, t] on one tile (NaN outside
    the all-dates-finite mask and outside the raster).

    Returns [x (T, S, S, 1), y (S, S, 2)] for a compressed network, [frames (T, S, S, 3),
    trend (S, S, 1), y (S, S, 2)] for a "trend" network (ml/trend.py); y = [target, mask]. Inputs
    are 0 outside the mask, frames compressed by eq. 3 with the per-date extremes `fmin`, `fmax`."""
    from .compressor import compress

    tl = int(t) - int(b0)
    mask = np.isfinite(crop[tl]).astype("float32")
    comp = np.nan_to_num(compress(crop, fmin[b0 : t + 1], fmax[b0 : t + 1]), nan=0.0)
    if not trend:
        x = comp[tl - time_step : tl, ..., None]
        return [x.astype("float32"), np.stack([comp[tl], mask], -1).astype("float32")]
    from .trend import label_inputs

    reg0 = np.where(mask > 0, crop, 0.0).astype("float32")
    x, line = label_inputs(reg0, comp, tl, time_step, trend)
    y = np.stack([reg0[tl] / trend.frame_scale, mask], -1).astype("float32")
    return [x, line[..., None], y]


def tile_reader(
    work: Any,
    fmin: np.ndarray,
    fmax: np.ndarray,
    time_step: int,
    tile: int,
    trend: TrendParams | None = None,
) -> Callable[[Any, Any, Any], list[np.ndarray]]:
    """read(t, r, c) -> :func:`make_example` of label t on the tile at (r, c), reading only the bands
    and the window it needs from the work file (ml/source.py WorkStack)."""
    tw = int(trend.trend_window) if trend else 0

    def read(t: Any, r: Any, c: Any) -> list[np.ndarray]:
        t, r, c = int(t), int(r), int(c)
        b0, b1 = example_bands(t, time_step, tw)
        return make_example(work.read(b0, b1, r, c, tile, tile), b0, t, fmin, fmax, time_step, trend)

    return read


EVAL_SEED = 7919  # the fixed subset of validation items (same every epoch)


@dataclass(frozen=True)
class TileSpec:
    """The examples' tiling: tile tops `rows` and lefts `cols` (:func:`tile_grid`), the window
    length, the tile edge, and whether the network is a "trend" network (three inputs)."""

    rows: np.ndarray
    cols: np.ndarray
    time_step: int
    tile: int
    trend: bool

    def items(self, labels: np.ndarray) -> int:
        return len(labels) * len(self.rows) * len(self.cols)


@dataclass(frozen=True)
class Sampling:
    """Which items one pipeline reads, in which order (see :func:`tile_dataset`)."""

    shuffle: bool
    seed: int = 0
    samples: int = 0  # per epoch; 0 = all
    epochs: tuple[int, int] = (0, 1)
    shard: tuple[int, int, int] = (0, 1, 0)  # (index, count, per_replica)


def tile_dataset(
    read: Callable[[Any, Any, Any], list[np.ndarray]],
    labels: np.ndarray,
    spec: TileSpec,
    batch_size: int,
    sampling: Sampling,
    ram_budget: int = 0,
) -> tuple[Any, int]:
    """A tf.data pipeline of (inputs, labels) batches for Keras ``fit``; returns (dataset, steps).

    ``sampling.shard`` = (index, count, per_replica), for training across machines (ml/loop.py): of
    each batch of `batch_size` items (the global batch) only the index-th of `count` equal parts is
    read, in batches of `per_replica` items; ``samples`` must then be a multiple of `batch_size`.
    Every worker reads different tiles, and together they read exactly the batches of one process.

    Items are (label, tile row, tile column), all combinations; ``samples`` (0 = all) per epoch.
    ``shuffle``: every epoch e in ``range(*epochs)`` takes the first ``samples`` items of its own
    seeded permutation (``tf.random.experimental.index_shuffle``: nothing is materialized), and
    the epochs follow each other in one dataset (fit with ``steps_per_epoch`` = steps). Otherwise
    one pass over a fixed subset (all items when ``samples`` covers them). Each item is read from
    disk by `read` (:func:`tile_reader`) in a parallel ``map`` (``tf.numpy_function``, stateless so
    that op determinism keeps it parallel), then batched and prefetched."""
    import tensorflow as tf

    n_items = spec.items(labels)
    samples = min(int(sampling.samples) or n_items, n_items)
    steps = max(1, math.ceil(samples / batch_size))
    part, parts, per_replica = (int(v) for v in sampling.shard)
    if parts > 1 and (samples % batch_size or batch_size % parts):
        raise ValueError(f"{samples} samples in batches of {batch_size} cannot be split {parts} ways")
    items = _ItemPipeline(read, labels, spec, samples, sampling.shuffle)

    def one_pass(seed_pair: Any) -> Any:
        idx = items(seed_pair)
        out_batch = batch_size
        if parts > 1:  # this worker's share of every global batch, before any tile is read
            size = batch_size // parts
            idx = idx.batch(batch_size).map(lambda b: b[part * size : (part + 1) * size]).unbatch()
            out_batch = per_replica or size
        return (
            idx.map(items.decode)
            .map(items.load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(out_batch)
        )

    seed = int(sampling.seed)
    if sampling.shuffle:
        ds = tf.data.Dataset.range(int(sampling.epochs[0]), int(sampling.epochs[1])).flat_map(
            lambda e: one_pass(tf.stack([tf.constant(seed, tf.int64), e]))
        )
    else:
        ds = one_pass(tf.constant([seed, EVAL_SEED], tf.int64))
        per_step = (batch_size // parts) // (per_replica or batch_size // parts) if parts > 1 else 1
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps * per_step))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    opts = tf.data.Options()
    opts.deterministic = True
    if ram_budget:
        opts.autotune.ram_budget = int(ram_budget)
    return ds.with_options(opts), steps


class _ItemPipeline:
    """``items(seed_pair)``: the item indices of one pass (a seeded permutation of the first
    `samples` when shuffling or sampling); ``decode`` makes an index (label, row, col), ``load``
    reads that item."""

    def __init__(self, read: Callable, labels: np.ndarray, spec: TileSpec, samples: int, shuffle: bool):
        import tensorflow as tf

        self.read, self.spec, self.samples = read, spec, samples
        self.sampled = samples < spec.items(labels) or shuffle
        self.lab_t = tf.constant(np.asarray(labels, dtype="int64"))
        self.row_t, self.col_t = tf.constant(spec.rows, tf.int64), tf.constant(spec.cols, tf.int64)
        self.last = tf.constant(spec.items(labels) - 1, tf.int64)
        s, ts = spec.tile, spec.time_step
        n_out = 3 if spec.trend else 2
        self.tout = [tf.float32] * n_out
        self.shapes = [(ts, s, s, 3), (s, s, 1), (s, s, 2)] if spec.trend else [(ts, s, s, 1), (s, s, 2)]

    def __call__(self, seed_pair: Any) -> Any:
        import tensorflow as tf

        idx = tf.data.Dataset.range(self.samples)
        if self.sampled:
            idx = idx.map(lambda k: tf.random.experimental.index_shuffle(k, seed_pair, self.last))
        return idx

    def decode(self, i: Any) -> Any:
        import tensorflow as tf

        nr, nc = len(self.spec.rows), len(self.spec.cols)
        return (
            tf.gather(self.lab_t, i // (nr * nc)),
            tf.gather(self.row_t, (i // nc) % nr),
            tf.gather(self.col_t, i % nc),
        )

    def load(self, t: Any, r: Any, c: Any) -> Any:
        import tensorflow as tf

        out = tf.numpy_function(self.read, [t, r, c], self.tout, stateful=False)
        for o, shape in zip(out, self.shapes, strict=True):
            o.set_shape(shape)
        if self.spec.trend:
            return {"frames": out[0], "trend": out[1]}, out[2]
        return out[0], out[1]


def predict_frames(
    model,
    windows: np.ndarray,
    tile: int,
    overlap: int,
    batch_size: int = 8,
    trend: np.ndarray | None = None,
) -> np.ndarray:
    """Predict the next frame of each window (n, T, H, W) or (n, T, H, W, C) tile by tile; overlapping
    tiles blended. `trend` (n, H, W): the second input of a "trend" network (ml/trend.py)."""
    if windows.ndim == 4:
        windows = windows[..., None]
    n, _, h, w, _ = windows.shape
    # pad the spatial axes (pad_frames pads the last two)
    x = np.moveaxis(
        pad_frames(np.moveaxis(np.nan_to_num(windows, nan=0.0).astype("float32"), -1, 0), tile), 0, -1
    )
    tr = None if trend is None else pad_frames(np.nan_to_num(trend, nan=0.0).astype("float32"), tile)
    hp, wp = x.shape[2:4]
    rows, cols = tile_starts(hp, tile, overlap), tile_starts(wp, tile, overlap)
    weight = blend_window(tile, overlap) if len(rows) * len(cols) > 1 else np.ones((tile, tile), "float32")
    acc = np.zeros((n, hp, wp), "float64")
    norm = np.zeros((hp, wp), "float64")
    places = [(r, c) for r in rows for c in cols]
    for r, c in places:
        norm[r : r + tile, c : c + tile] += weight
    call = _compiled(model)
    for r, c in places:
        batch = x[:, :, r : r + tile, c : c + tile]
        if tr is None:
            parts = [call(batch[i : i + batch_size]) for i in range(0, n, batch_size)]
        else:
            tb = tr[:, r : r + tile, c : c + tile, None]
            parts = [
                call({"frames": batch[i : i + batch_size], "trend": tb[i : i + batch_size]})
                for i in range(0, n, batch_size)
            ]
        pred = np.concatenate([np.asarray(p) for p in parts])[..., 0]
        acc[:, r : r + tile, c : c + tile] += pred * weight
    return (acc / norm)[:, :h, :w].astype("float32")


def _compiled(model):
    """The model's inference as one traced graph (eager calls cost ~10x more per small batch)."""
    fn = getattr(model, "_df_infer", None)
    if fn is None:
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        model._df_infer = fn
    return fn


def choose_tile(height: int, width: int, tile_size: int) -> int:
    """The tile edge: TILE_SIZE, or less for a small raster, a multiple of the network's 2**depth."""
    from .network import tile_multiple

    tile = min(int(tile_size), max(height, width))
    tile = max(tile, 16)
    m = tile_multiple(tile)
    return int(np.ceil(tile / m) * m)
