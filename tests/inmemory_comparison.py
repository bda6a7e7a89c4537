"""The in-memory comparison path, kept in the tests as an independent oracle (issue 20: the package
keeps only the streamed path, core.comparison): the whole stack in memory, each baseline fitted and
predicted by core.baselines' own classes, and the metrics over the whole test set at once. The
streamed comparison must give the same numbers (tests/core/test_baselines.py, test_budget.py);
bench/bench_compare.py times both."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deformation_forecast.core import metrics as mt
from deformation_forecast.core.baselines import (
    Baseline,
    Forecasts,
    LaggedRegressor,
    LinearTrend,
    MLPBaseline,
    Persistence,
    Progress,
    ShouldStop,
    TrendAnnual,
    predict_test,
    times_of,
)
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.evaluation import MODES
from deformation_forecast.core.split import Split


def run_baseline(
    model: Baseline,
    frames: np.ndarray,
    dates: Sequence[dt.date],
    split: Split,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> Forecasts:
    """Fit `model` on the split's training targets; predict the test set both ways.

    `frames` (T, rows, cols) must be gap-filled (see :func:`prepare_frames`). `progress(fraction,
    message)` gets 0-1 over the whole run; `should_stop()` is polled between frames and epochs.
    """
    if frames.shape[0] != split.n_frames or len(dates) != split.n_frames:
        raise ValueError("frames, dates and split disagree on the number of frames")
    times = times_of(dates)

    def sub(a: float, b: float) -> Progress | None:
        if progress is None:
            return None
        return lambda f, msg: progress(a + (b - a) * min(max(f, 0.0), 1.0), msg)

    t0 = time.perf_counter()
    fit_share = 0.0 if isinstance(model, Persistence | LinearTrend | TrendAnnual) else 0.5
    model.fit(frames, times, split, sub(0.0, fit_share), should_stop)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    one, it = predict_test(model, frames, times, split, sub(fit_share, 1.0), should_stop)
    predict_s = time.perf_counter() - t1
    extra: dict[str, float] = {}
    if isinstance(model, LaggedRegressor):
        extra["fit_samples"] = float(model.fit_samples)
    if isinstance(model, MLPBaseline):
        extra["epochs"] = float(model.epochs_run)
    return Forecasts(
        model=model.name,
        one_step=one,
        iterative=it,
        train_seconds=train_s,
        predict_seconds=predict_s,
        device="CPU",
        notes=model.notes,
        extra=extra,
    )


def comparison_rows(
    forecasts: Sequence[Forecasts], observed: np.ndarray, data_range: float | None = None
) -> tuple[list[dict], float]:
    """One row per (model, mode) with every metric over the test set; and the data range used.

    The data range is the observed test stack's (unless given), the same for every model.
    """
    L = data_range or mt.default_data_range(observed)
    rows = []
    for f in forecasts:
        for mode in MODES:
            pred = f.one_step if mode == "one-step" else f.iterative
            _, overall = mt.stack_metrics(pred, observed, L)
            row: dict[str, object] = {"model": f.model, "mode": mode}
            row.update({k: overall[k] for k in mt.METRICS})
            row.update(
                train_seconds=round(f.train_seconds, 3),
                predict_seconds=round(f.predict_seconds, 3),
                device=f.device,
            )
            rows.append(row)
    return rows, L


@dataclass
class Comparison:
    """The frames every model of a comparison sees, and the split they share."""

    frames: np.ndarray  # (T, rows, cols) on the regular grid, gaps filled
    dates: list[dt.date]  # the regular grid
    interval: int
    split: Split
    observed: np.ndarray  # observations at the grid dates (NaN kept where a date was acquired)
    interpolated: int  # grid dates that were not acquisition dates (their "observation" is interpolated)

    @property
    def test_dates(self) -> list[dt.date]:
        return [self.dates[t] for t in self.split.test]

    @property
    def observed_test(self) -> np.ndarray:
        return self.observed[self.split.test]


def prepare_comparison(
    data: np.ndarray,
    dates: Sequence[dt.date],
    time_step: int = 5,
    test_count: int = 20,
    val_fraction: float = 0.2,
    interval_days: int = 0,
) -> Comparison:
    """Resample `data` to the networks' regular grid and split it (core.split)."""
    from deformation_forecast.core.split import make_split, observed_on_grid, regular_stack

    frames, grid, interval = regular_stack(np.asarray(data, dtype="float32"), dates, interval_days)
    split = make_split(len(grid), time_step, test_count, val_fraction)
    observed, n_interp = observed_on_grid(data, dates, grid, frames)
    if not np.isfinite(frames).all(axis=0).any():
        raise InputError("The stack has no pixel with a value at any date; nothing to compare.")
    return Comparison(frames, list(grid), interval, split, observed, n_interp)
