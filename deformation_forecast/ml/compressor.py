"""Extremum compression (§III-B-1, eqs. 1-4): a GRU model of the per-date min and max.

The per-date minimum and maximum of the stack form two sequences. Two identical sub-models of three
GRU layers (one per sequence, concatenated) are fitted to them with the LogCosh loss (eq. 1) and the
cosine-similarity metric (eq. 2). Frames are compressed to [-1, 1] by the max (positive pixels) and
|min| (non-positive pixels) of their date (eq. 3) and network outputs are scaled back by the GRU's
predicted extremes of the target date (eq. 4).

Deviation from the paper, with the reason: the GRUs predict the *increment* of each extremum over
the previous date (normalized by the spread of the increments) instead of the normalized extremum
itself. A GRU ends in bounded activations and cannot extrapolate a level that keeps growing past
everything it saw in training (a subsidence deepening year after year); an increment can (see
tests/ml/test_compressor.py, which checks the next extremes of a known trend).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPS = 1e-6


def frame_extremes(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-date (min, max) over the finite pixels of a (T, H, W) stack."""
    flat = stack.reshape(stack.shape[0], -1)
    return np.nanmin(flat, axis=1).astype("float64"), np.nanmax(flat, axis=1).astype("float64")


def _floors(fmin: np.ndarray, fmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.maximum(np.abs(fmin), np.abs(fmax))
    floor = np.maximum(scale * 1e-3, EPS)
    return np.maximum(np.abs(fmin), floor), np.maximum(fmax, floor)


def compress(frames: np.ndarray, fmin: np.ndarray, fmax: np.ndarray) -> np.ndarray:
    """Eq. 3: frames (T, H, W) / fmax[t] where positive, / |fmin[t]| where non-positive."""
    neg, pos = _floors(np.atleast_1d(fmin), np.atleast_1d(fmax))
    shape = (-1,) + (1,) * (frames.ndim - 1)
    return np.where(frames > 0, frames / pos.reshape(shape), frames / neg.reshape(shape)).astype("float32")


def decompress(frames: np.ndarray, fmin: np.ndarray, fmax: np.ndarray) -> np.ndarray:
    """Eq. 4: the inverse of :func:`compress` with the extremes of the target dates."""
    neg, pos = _floors(np.atleast_1d(fmin), np.atleast_1d(fmax))
    shape = (-1,) + (1,) * (frames.ndim - 1)
    return np.where(frames > 0, frames * pos.reshape(shape), frames * neg.reshape(shape)).astype("float32")


@dataclass
class ExtremumGRU:
    """Two 3-layer GRU sub-models (min, max), concatenated; one step of increments ahead."""

    time_step: int = 15
    units: int = 16
    epochs: int = 64
    batch_size: int = 64
    learning_rate: float = 1e-3
    # filled by fit()
    diff_mean: list[float] = field(default_factory=lambda: [0.0, 0.0])
    diff_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    diff_range: list[list[float]] = field(default_factory=lambda: [[-1.0, 1.0], [-1.0, 1.0]])
    history: dict[str, list[float]] = field(default_factory=dict)
    model: Any = None

    def params(self) -> dict[str, Any]:
        return {
            "time_step": self.time_step,
            "units": self.units,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "diff_mean": self.diff_mean,
            "diff_scale": self.diff_scale,
            "diff_range": self.diff_range,
        }

    @classmethod
    def from_params(cls, p: dict[str, Any], model: Any = None) -> ExtremumGRU:
        keys = ("time_step", "units", "epochs", "batch_size", "learning_rate")
        obj = cls(**{k: p[k] for k in keys})
        obj.diff_mean = list(p["diff_mean"])
        obj.diff_scale = list(p["diff_scale"])
        obj.diff_range = [list(r) for r in p["diff_range"]]
        obj.model = model
        return obj

    # -- the network -------------------------------------------------------------------
    def build(self):
        import keras

        inputs, outs = [], []
        for name in ("min", "max"):
            x = inp = keras.Input((self.time_step, 1), name=f"{name}_in")
            for k in range(3):
                x = keras.layers.GRU(self.units, return_sequences=k < 2, name=f"{name}_gru{k + 1}")(x)
            outs.append(keras.layers.Dense(1, name=f"{name}_out")(x))
            inputs.append(inp)
        out = keras.layers.Concatenate(name="extremes")(outs)
        return keras.Model(inputs, out, name="extremum_gru")

    def _norm(self, fmin: np.ndarray, fmax: np.ndarray) -> np.ndarray:
        d = np.diff(np.stack([fmin, fmax], axis=1), axis=0)  # (T-1, 2)
        return (d - np.array(self.diff_mean)) / np.array(self.diff_scale)

    def fit(self, fmin: np.ndarray, fmax: np.ndarray, verbose: int = 0) -> dict[str, list[float]]:
        """Fit on the extremes of the training dates (the shorter `time_step` if the series is short)."""
        import keras

        d = np.diff(np.stack([fmin, fmax], axis=1), axis=0)
        self.time_step = int(max(2, min(self.time_step, (len(d) - 1) // 2)))
        self.diff_mean = [float(v) for v in d.mean(axis=0)]
        self.diff_scale = [float(max(v, EPS)) for v in d.std(axis=0)]
        self.diff_range = [[float(d[:, k].min()), float(d[:, k].max())] for k in range(2)]
        z = self._norm(fmin, fmax)
        n = len(z) - self.time_step
        x = np.stack([z[i : i + self.time_step] for i in range(n)]).astype("float32")  # (n, ts, 2)
        y = z[self.time_step :].astype("float32")  # (n, 2)
        self.model = self.build()
        self.model.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=keras.losses.LogCosh(),
            metrics=[keras.metrics.CosineSimilarity(name="cosine_similarity")],
        )
        h = self.model.fit(
            [x[..., :1], x[..., 1:]],
            y,
            epochs=self.epochs,
            batch_size=self.batch_size,
            shuffle=True,
            verbose=verbose,
        )
        self.history = {k: [float(v) for v in vals] for k, vals in h.history.items()}
        return self.history

    def _step(self, z_windows: np.ndarray) -> np.ndarray:
        """Next normalized increments for windows (n, ts, 2)."""
        x = z_windows.astype("float32")
        return np.asarray(self.model([x[..., :1], x[..., 1:]], training=False))

    def _denorm(self, z: np.ndarray) -> np.ndarray:
        d = z * np.array(self.diff_scale) + np.array(self.diff_mean)
        lo = np.array([r[0] for r in self.diff_range])
        hi = np.array([r[1] for r in self.diff_range])
        span = hi - lo
        return np.clip(d, lo - 0.5 * span, hi + 0.5 * span)  # no runaway extrapolation

    def one_step(
        self, fmin: np.ndarray, fmax: np.ndarray, targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted extremes at each index of `targets` from the observed extremes before it."""
        z = self._norm(fmin, fmax)
        ts = self.time_step
        wins: list[np.ndarray | None] = []
        last = []
        for t in targets:
            t = int(t)
            if t - 1 < ts:  # not enough history: persistence of the observed extreme
                wins.append(None)
            else:
                wins.append(z[t - 1 - ts : t - 1])
            last.append((fmin[t - 1], fmax[t - 1]))
        out = np.array(last, dtype="float64")
        have = [i for i, w in enumerate(wins) if w is not None]
        if have:
            d = self._denorm(self._step(np.stack([w for w in wins if w is not None])))
            out[have] += d
        return out[:, 0], out[:, 1]

    def iterate(self, fmin: np.ndarray, fmax: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Extremes of the `steps` dates after the observed ones, each prediction fed back."""
        mins, maxs = list(fmin), list(fmax)
        for _ in range(steps):
            z = self._norm(np.array(mins), np.array(maxs))
            if len(z) < self.time_step:
                d = np.array(self.diff_mean)
            else:
                d = self._denorm(self._step(z[None, -self.time_step :]))[0]
            mins.append(mins[-1] + d[0])
            maxs.append(maxs[-1] + d[1])
        return np.array(mins[len(fmin) :]), np.array(maxs[len(fmax) :])
