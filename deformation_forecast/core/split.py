"""The shared train / validation / test split of a stack (paper §III-B-2 a, §IV-B).

Sliding windows, "multistep to one step": the sample whose target is frame ``t`` has the
``time_step`` frames ``t - time_step .. t - 1`` as input. With ``T`` frames there are
``T - time_step`` samples (targets ``time_step .. T - 1``), in time order. The last ``test_count``
targets are the test set (the paper keeps the last 20); the samples before them are split in time
order, the first ``1 - val_fraction`` for training and the rest for validation (the paper's 80/20;
at least one validation sample when ``val_fraction > 0``, and at least two training samples when
there are that many).

Windows overlap (the paper's "overlapping segmentation"), so the inputs of the first test samples
are frames that were targets of training/validation samples; no test *target* is ever seen in
fitting. Both the scikit-learn baselines (core.baselines) and the networks (ml) use this split, so
their test sets are the same frames (``ml.dataset.split_windows`` applies the same rule and needs at
least four training + validation samples). Both split the stack *after* it was resampled to a
regular interval (:func:`regular_stack`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dates import median_interval
from .errors import InputError
from .resample import resample_regular


@dataclass(frozen=True)
class Split:
    """Target frame indexes of each set; the input of target ``t`` is ``range(t - time_step, t)``."""

    n_frames: int
    time_step: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def first_test(self) -> int:
        """Index of the first test frame (the forecast origin of the iterative protocol)."""
        return int(self.test[0])

    def inputs(self, target: int) -> range:
        return range(target - self.time_step, target)

    def describe(self) -> str:
        def span(idx: np.ndarray) -> str:
            return f"{len(idx)} (frames {idx[0] + 1}-{idx[-1] + 1})" if len(idx) else "0"

        return (
            f"{self.n_frames} frames, time step {self.time_step}: train {span(self.train)}, "
            f"validation {span(self.val)}, test {span(self.test)} targets"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "n_frames": self.n_frames,
            "time_step": self.time_step,
            "train": self.train.tolist(),
            "val": self.val.tolist(),
            "test": self.test.tolist(),
        }


def make_split(n_frames: int, time_step: int = 5, test_count: int = 20, val_fraction: float = 0.2) -> Split:
    """The split of a stack of `n_frames` frames; raises InputError when it does not fit.

    >>> s = make_split(40, time_step=5, test_count=20)
    >>> len(s.train), len(s.val), len(s.test), s.first_test
    (12, 3, 20, 20)
    """
    if time_step < 1:
        raise InputError(f"TIME_STEP must be at least 1, not {time_step}.")
    if test_count < 1:
        raise InputError(f"TEST_COUNT must be at least 1, not {test_count}.")
    if not 0 <= val_fraction < 1:
        raise InputError(f"The validation fraction must be in [0, 1), not {val_fraction}.")
    n_samples = n_frames - time_step
    n_rest = n_samples - test_count
    if n_rest < 1:
        need = time_step + test_count + 1
        raise InputError(
            f"The stack has {n_frames} dates; TIME_STEP={time_step} and TEST_COUNT={test_count} need at "
            f"least {need} (time step inputs + test targets + one training target). Lower TEST_COUNT or "
            "TIME_STEP, or use a longer stack."
        )
    # the same rule as ml/dataset.split_windows, so that the test sets are the same frames
    n_val = int(round(n_rest * val_fraction))
    n_val = min(max(n_val, 1 if val_fraction > 0 else 0), n_rest - 2)
    n_val = max(n_val, 0)
    n_train = n_rest - n_val
    targets = np.arange(time_step, n_frames)
    return Split(
        n_frames=n_frames,
        time_step=time_step,
        train=targets[:n_train],
        val=targets[n_train:n_rest],
        test=targets[n_rest:],
    )


def windows(frames: np.ndarray, targets: np.ndarray, time_step: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, time_step, ...)`` and targets ``(n, ...)`` of the samples ending at `targets`."""
    targets = np.asarray(targets, dtype=int)
    idx = targets[:, None] + np.arange(-time_step, 0)[None, :]
    return frames[idx], frames[targets]


def regular_stack(
    data: np.ndarray, dates: Sequence[dt.date], interval_days: int = 0
) -> tuple[np.ndarray, list[dt.date], int]:
    """The stack on a regular grid ending on its last date, as the networks see it.

    ``interval_days = 0`` takes the median acquisition interval. Values are linear in time and gaps
    filled (``core.resample``); returns (frames, grid dates, interval).
    """
    interval = int(interval_days) or median_interval(dates)
    frames, grid = resample_regular(data, dates, interval, anchor="end")
    return frames, grid, interval


def observed_on_grid(
    data: np.ndarray, dates: Sequence[dt.date], grid: Sequence[dt.date], regular: np.ndarray
) -> tuple[np.ndarray, int]:
    """Observations at the `grid` dates: the acquisition itself (NaN kept) where a grid date is an
    acquisition date, else the interpolated frame. Returns (frames, how many were interpolated)."""
    pos = {d: i for i, d in enumerate(dates)}
    out = np.array(regular, dtype="float32", copy=True)
    interpolated = 0
    for k, d in enumerate(grid):
        if d in pos:
            out[k] = data[pos[d]]
        else:
            interpolated += 1
    return out, interpolated
