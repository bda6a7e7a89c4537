"""Windows, split, masks and tiles for the forecasting network (§III-B-2 a).

Multistep-to-one-step: the input is `time_step` consecutive compressed frames, the label the next
frame. The last `test_count` labels are the test set; the labels before them are split in time order,
the first (1 - validation_fraction) for training, the rest for validation. Pixels that are NaN in the
(resampled) stack are 0 in the inputs, masked out of the loss and restored as NaN in outputs.
Rasters are cut into square tiles with overlap; predictions of overlapping tiles are blended.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from ..core.dates import median_interval
from ..core.errors import InputError
from ..core.resample import resample_regular


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


class WindowTiles(keras.utils.PyDataset):
    """Batches of (inputs (B, T, S, S, 1), labels (B, S, S, 2) = [target, mask]) for Keras fit."""

    def __init__(
        self,
        comp: np.ndarray,
        mask: np.ndarray,
        labels: np.ndarray,
        time_step: int,
        tile: int,
        overlap: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        samples_per_epoch: int = 0,
        trend: dict | None = None,
    ):
        super().__init__()
        self.comp = pad_frames(np.nan_to_num(comp, nan=0.0).astype("float32"), tile)
        # residual over the linear trend (ml/trend.py): {reg (mm, 0 outside the mask), trend_window,
        # residual_scale, frame_scale}
        self.trend = dict(trend) if trend else None
        if self.trend:
            self.trend["reg"] = pad_frames(np.nan_to_num(trend["reg"], nan=0.0).astype("float32"), tile)
        self.mask = pad_frames(mask.astype("float32"), tile)
        self.time_step, self.tile, self.batch_size = time_step, tile, batch_size
        rows = tile_starts(self.comp.shape[1], tile, overlap)
        cols = tile_starts(self.comp.shape[2], tile, overlap)
        self.items = np.array([(t, r, c) for t in labels for r in rows for c in cols], dtype="int64")
        self.shuffle = shuffle
        self.samples = int(samples_per_epoch) if samples_per_epoch else len(self.items)
        self.samples = min(self.samples, len(self.items))
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(self.items))
        self.on_epoch_end()

    def __len__(self) -> int:
        return max(1, int(np.ceil(self.samples / self.batch_size)))

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.items)) if self.shuffle else np.arange(len(self.items))
        self.order = self.order[: self.samples]

    def __getitem__(self, idx: int):
        sel = self.items[self.order[idx * self.batch_size : (idx + 1) * self.batch_size]]
        s, ts = self.tile, self.time_step
        if self.trend:
            return self._trend_item(sel)
        x = np.stack([self.comp[t - ts : t, r : r + s, c : c + s] for t, r, c in sel])[..., None]
        y = np.stack(
            [
                np.stack([self.comp[t, r : r + s, c : c + s], self.mask[r : r + s, c : c + s]], -1)
                for t, r, c in sel
            ]
        )
        return x, y

    def _trend_item(self, sel):
        from .trend import label_inputs

        s, ts, tr = self.tile, self.time_step, self.trend
        xs, lines, ys = [], [], []
        for t, r, c in sel:
            rows, cols = slice(r, r + s), slice(c, c + s)
            x, line = label_inputs(
                tr["reg"],
                self.comp,
                int(t),
                ts,
                tr["trend_window"],
                tr["residual_scale"],
                tr["frame_scale"],
                rows,
                cols,
            )
            xs.append(x)
            lines.append(line[..., None])
            ys.append(np.stack([tr["reg"][t, rows, cols] / tr["frame_scale"], self.mask[rows, cols]], -1))
        return {"frames": np.stack(xs), "trend": np.stack(lines)}, np.stack(ys).astype("float32")


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
