"""The model comparison (Table III) of a stack on disk, in bounded memory (issue 8).

Every baseline is per pixel, so the comparison streams the stack by windows sized from the memory
budget (core.budget):

1. **samples** (SVR and MLP only): each window is resampled to the regular grid, gap-filled, and
   offers its (pixel, target) samples to a bounded bottom-k sample (core.streaming): the same
   samples whatever the windows;
2. the regressors are fitted on those samples;
3. **predictions**: each window again, every baseline predicts the test frames one step ahead and
   iteratively; the predictions, the observed test frames and the per-date min/max of the
   observations go to temporary stacks in a work folder;
4. a network's predictions (the worker's npz) are copied frame by frame into such stacks;
5. **scores**: frame by frame (one frame pair in memory; SSIM needs whole frames), with the
   observed range of the test frames as data range, the report's figure data, and the absolute
   error stacks when asked.

The numbers equal those of the in-memory path (core.baselines.run_baseline +
core.evaluation.comparison_rows) on the same stack.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import metrics as mt
from .baselines import (
    NO_FINITE_PREDICTION,
    BaselineOptions,
    Cancelled,
    LaggedRegressor,
    LinearTrend,
    Persistence,
    TrendAnnual,
    make_baseline,
    predict_test,
    times_of,
)
from .dates import median_interval
from .errors import InputError
from .evaluation import MODES, FrameFigures, MeanErrorMap, ModelFigures, frame_figures, pick_dates
from .resample import interpolate_time, regular_grid
from .split import Split, make_split
from .stack import StackWriter, iter_windows, read_info, read_stack

Progress = Callable[[float, str], None]

# arrays of a window's size (float32, one per grid date) alive at once while predicting: the
# stack's window and its float64 copies in the resampling (about 8), the frames, the observations,
# the predictions of the test dates and the regressors' float64 histories
COPIES = 12


def _budget_cache(method):
    """Run a StreamedComparison method with GDAL's block cache sized from the budget."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        from .budget import gdal_env

        with gdal_env(self.mb):
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class ModelRun:
    """A model's test predictions, as two stacks in the work folder."""

    model: str
    one_step: str  # path of the one-step stack (n_test bands)
    iterative: str
    train_seconds: float = 0.0
    predict_seconds: float = 0.0
    device: str = "CPU"
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)


class StreamedComparison:
    """The comparison of the stack at `path`: its regular grid, its split, and the temporary
    stacks of the observed test frames and of each model's predictions (in `work_dir`)."""

    def __init__(
        self,
        path: str,
        work_dir: str,
        time_step: int = 5,
        test_count: int = 20,
        val_fraction: float = 0.2,
        interval_days: int = 0,
        mb: float | None = None,
        max_bytes: int | None = None,
    ):
        self.path = path
        self.work_dir = work_dir
        self.mb = mb
        self.info = read_info(path)
        self.interval = int(interval_days) or median_interval(self.info.dates)
        grid = regular_grid(self.info.dates, self.interval, "end")
        if len(grid) < 2:
            raise InputError(
                f"The stack spans {(self.info.dates[-1] - self.info.dates[0]).days} days: too short for "
                f"an interval of {self.interval} days."
            )
        self.dates: list[dt.date] = grid
        self.split: Split = make_split(len(grid), time_step, test_count, val_fraction)
        acquired = set(self.info.dates)
        self.interpolated = sum(1 for d in grid if d not in acquired)
        self.times = times_of(grid)
        bands = max(self.info.count, len(grid))
        self.windows = iter_windows(self.info, max_bytes, bands=bands, copies=COPIES, mb=mb)
        self.observed_test_path = os.path.join(work_dir, "observed_test.tif")
        self.observed_min = np.full(len(grid), np.inf)
        self.observed_max = np.full(len(grid), -np.inf)
        self.test_lo, self.test_hi = np.inf, -np.inf
        self._observed_done = False

    @property
    def test_dates(self) -> list[dt.date]:
        return [self.dates[t] for t in self.split.test]

    def _window(self, win) -> tuple[np.ndarray, np.ndarray]:
        """(frames, observations) of a window on the regular grid: frames gap-filled, observations
        the acquisition itself (NaN kept) where a grid date was acquired, else interpolated."""
        data = read_stack(self.path, window=win)
        frames = interpolate_time(data, self.info.dates, self.dates)
        pos = {d: i for i, d in enumerate(self.info.dates)}
        observed = frames.copy()
        for k, d in enumerate(self.dates):
            if d in pos:
                observed[k] = data[pos[d]]
        return frames, observed

    def _writer(self, path: str, dates, tags: dict | None = None) -> StackWriter:
        i = self.info
        return StackWriter(path, dates, i.crs, i.transform, i.width, i.height, i.units, tags)

    def _prepare_trends(self, models: dict, check) -> None:
        """The trend baselines' settings: the seasonal one's span from the dates, the linear trend's
        window chosen on the validation dates (one pass over the raster's windows)."""
        for m in models.values():
            if isinstance(m, TrendAnnual):
                m.fit(None, self.times, self.split)
        auto = [m for m in models.values() if isinstance(m, LinearTrend) and m.auto]
        if not auto:
            return
        for win in self.windows:
            check()
            frames, _ = self._window(win)
            for m in auto:
                m.gather(frames, self.times, self.split)
            del frames
        for m in auto:
            m.choose()

    @_budget_cache
    def run_baselines(
        self,
        names: Sequence[str],
        options: BaselineOptions | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[ModelRun]:
        """Fit and run the baselines `names`; also writes the observed test frames (always call it,
        with no names when only networks are compared). Returns one ModelRun per name."""

        def check():
            if should_stop is not None and should_stop():
                raise Cancelled()

        def report(f, msg):
            if progress is not None:
                progress(min(max(f, 0.0), 1.0), msg)

        models = {n: make_baseline(n, self.split.time_step, options) for n in names}
        regressors = {n: m for n, m in models.items() if isinstance(m, LaggedRegressor)}
        train_s = dict.fromkeys(names, 0.0)
        predict_s = dict.fromkeys(names, 0.0)
        nw = len(self.windows)
        share = 0.4 if regressors else 0.0
        if regressors:
            samplers = {n: m.samplers() for n, m in regressors.items()}
            for k, win in enumerate(self.windows):
                check()
                t0 = time.perf_counter()
                frames, _ = self._window(win)
                ids = _pixel_ids(win, self.info.width)
                for n, m in regressors.items():
                    m.gather(frames, ids, self.times, self.split, *samplers[n])
                del frames
                for n in regressors:
                    train_s[n] += (time.perf_counter() - t0) / len(regressors)
                report(0.1 * (k + 1) / nw, f"samples for the regressors, window {k + 1}/{nw}")
            for j, (n, m) in enumerate(regressors.items()):
                t0 = time.perf_counter()

                def sub(f, msg, j=j):
                    report(0.1 + 0.3 * (j + f) / len(regressors), msg)

                m.fit_from(*samplers[n], self.split, sub, should_stop)
                train_s[n] += time.perf_counter() - t0
        self._prepare_trends(models, check)
        runs = {
            n: ModelRun(
                n,
                os.path.join(self.work_dir, f"{n}_one_step.tif"),
                os.path.join(self.work_dir, f"{n}_iterative.tif"),
                notes=models[n].notes,
            )
            for n in names
        }
        test = self.split.test
        writers: list[StackWriter] = []
        try:
            obs_w = self._writer(self.observed_test_path, self.test_dates)
            writers.append(obs_w)
            out_w = {}
            for n, r in runs.items():
                out_w[n] = (
                    self._writer(r.one_step, self.test_dates),
                    self._writer(r.iterative, self.test_dates),
                )
                writers.extend(out_w[n])
            obs_min = np.full(len(self.dates), np.inf)
            obs_max = np.full(len(self.dates), -np.inf)
            lo, hi = np.inf, -np.inf
            any_valid = False
            for k, win in enumerate(self.windows):
                check()
                frames, observed = self._window(win)
                any_valid = any_valid or bool(np.isfinite(frames).all(axis=0).any())
                _minmax(observed, obs_min, obs_max)
                ot = observed[test]
                del observed
                fin = ot[np.isfinite(ot)]
                if fin.size:
                    lo, hi = min(lo, float(fin.min())), max(hi, float(fin.max()))
                del fin
                obs_w.write(ot, window=win)
                del ot
                for n, model in models.items():
                    t0 = time.perf_counter()
                    one, it = predict_test(model, frames, self.times, self.split, None, should_stop)
                    predict_s[n] += time.perf_counter() - t0
                    out_w[n][0].write(one, window=win)
                    out_w[n][1].write(it, window=win)
                    del one, it
                del frames
                report(share + (1 - share) * (k + 1) / nw, f"predictions, window {k + 1}/{nw}")
            if not any_valid:
                raise InputError("The stack has no pixel with a value at any date; nothing to compare.")
            for w in writers:
                w.close()
            writers = []
        except BaseException as e:
            for w in writers:
                w.abort(e)
            raise
        self.observed_min, self.observed_max = obs_min, obs_max
        self.test_lo, self.test_hi = lo, hi
        self._observed_done = True
        out = []
        for n, r in runs.items():
            r.train_seconds, r.predict_seconds = train_s[n], predict_s[n]
            r.notes = models[n].notes
            fitted = models[n]
            if isinstance(fitted, LaggedRegressor):
                r.extra["fit_samples"] = float(fitted.fit_samples)
            if hasattr(fitted, "epochs_run"):
                r.extra["epochs"] = float(fitted.epochs_run)
            if isinstance(fitted, Persistence | LinearTrend):
                r.train_seconds = 0.0
            out.append(r)
        return out

    @_budget_cache
    def add_network(self, model: str, npz_path: str) -> ModelRun:
        """The predictions the worker's ``train`` wrote (npz: one_step, iterative, test_dates,
        train_seconds, predict_seconds, device) as a ModelRun, copied frame by frame into stacks.
        Raises ValueError when its test dates are not this split's, or when it wrote none."""
        if not os.path.exists(npz_path):
            raise ValueError(
                f"{model}: the worker wrote no test predictions (they did not fit its memory budget; "
                "see its warning above); give a smaller EXTENT or raise the memory budget."
            )
        with np.load(npz_path, allow_pickle=False) as z:
            got = [str(d) for d in z["test_dates"].tolist()]
            train_s, predict_s = float(z["train_seconds"]), float(z["predict_seconds"])
            device = str(z["device"])
        want = [d.isoformat() for d in self.test_dates]
        if got != want:
            raise ValueError(
                f"{model}: the worker's test dates {got[:2]}..{got[-1:]} ({len(got)}) differ from the "
                f"baselines' {want[:2]}..{want[-1:]} ({len(want)}); the split is not the same."
            )
        run = ModelRun(
            model,
            os.path.join(self.work_dir, f"{model}_one_step.tif"),
            os.path.join(self.work_dir, f"{model}_iterative.tif"),
            train_seconds=train_s,
            predict_seconds=predict_s,
            device=device,
        )
        finite = False
        for key, path in (("one_step", run.one_step), ("iterative", run.iterative)):
            with self._writer(path, self.test_dates) as w:
                for k, frame in enumerate(npz_frames(npz_path, key)):
                    if frame.shape != (self.info.height, self.info.width):
                        raise ValueError(
                            f"{model}: the worker's predictions are {frame.shape[1]} x {frame.shape[0]} "
                            f"pixels, the stack {self.info.width} x {self.info.height}."
                        )
                    if key == "one_step":
                        finite = finite or bool(np.isfinite(frame).any())
                    w.write_band(k, frame)
        if not finite:
            run.notes = NO_FINITE_PREDICTION
        return run

    def data_range(self) -> float:
        """The observed range of the test frames (SSIM's and PSNR's L), as core.metrics."""
        return mt.range_from(self.test_lo, self.test_hi)

    @_budget_cache
    def score(
        self,
        runs: Sequence[ModelRun],
        data_range: float | None = None,
        errors_dir: str | None = None,
        progress: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[list[dict], float, list[ModelFigures]]:
        """Rows (model, mode, metrics, seconds, device) as core.evaluation.comparison_rows, the
        data range, and each model's figure data; with `errors_dir`, the absolute error stack of
        every model and mode (abs_error_<model>_<mode>.tif)."""
        if not self._observed_done:
            raise RuntimeError("run_baselines() first: it writes the observed test frames")
        L = data_range or self.data_range()
        shown = set(pick_dates(len(self.split.test)))
        rows, figures = [], []
        total = max(1, len(runs) * 2)
        for r_i, run in enumerate(runs):
            mf = ModelFigures(run.model, run.notes)
            for m_i, (mode, path) in enumerate((("one-step", run.one_step), ("iterative", run.iterative))):
                acc = mt.StackAccumulator(L)
                err_map = MeanErrorMap()
                figs: list[FrameFigures] = []
                writer = None
                if errors_dir:
                    key = mode.replace("-", "_")
                    name = "".join(c if c.isalnum() else "_" for c in run.model.upper()).lower()
                    writer = self._writer(
                        os.path.join(errors_dir, f"abs_error_{name}_{key}.tif"),
                        self.test_dates,
                        {"MODEL": run.model, "MODE": key, "CONTENT": "absolute error"},
                    )
                with writer or contextlib.nullcontext():  # published when complete
                    for k in range(len(self.split.test)):
                        if should_stop is not None and should_stop():
                            raise Cancelled()
                        pred = read_stack(path, bands=[k])[0]
                        obs = read_stack(self.observed_test_path, bands=[k])[0]
                        acc.add(pred, obs)
                        shown_k = mode == "one-step" and k in shown
                        figs.append(frame_figures(pred, obs, sample=shown_k, preview=False))
                        err_map.add(pred, obs)
                        if writer is not None:
                            writer.write_band(k, mt.abs_error_stack(pred, obs))
                        del pred, obs
                ov = acc.overall()
                row: dict[str, object] = {"model": run.model, "mode": MODES[m_i]}
                row.update({k: ov[k] for k in mt.METRICS})
                row.update(
                    train_seconds=round(run.train_seconds, 3),
                    predict_seconds=round(run.predict_seconds, 3),
                    device=run.device,
                )
                rows.append(row)
                if mode == "one-step":
                    mf.one_step, mf.mean_error_one_step = figs, err_map.value()
                else:
                    mf.iterative, mf.mean_error_iterative = figs, err_map.value()
                if progress is not None:
                    progress((2 * r_i + m_i + 1) / total)
            figures.append(mf)
        return rows, L, figures


def _pixel_ids(win, width: int) -> np.ndarray:
    from .streaming import pixel_index

    return pixel_index(win, width).ravel()


def _minmax(stack: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Update per-band running min/max (NaN ignored) with a (bands, rows, cols) window."""
    for b in range(stack.shape[0]):
        fin = stack[b][np.isfinite(stack[b])]
        if fin.size:
            lo[b] = min(lo[b], float(fin.min()))
            hi[b] = max(hi[b], float(fin.max()))


def npz_frames(path: str, key: str) -> Iterator[np.ndarray]:
    """The frames of the (n, rows, cols) array `key` of an npz written by ``np.savez`` (not
    compressed), one at a time, read from the zip member as a stream: never the whole array."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if fortran or len(shape) != 3:
            raise ValueError(f"{path}: {key} is not a C-ordered (n, rows, cols) array")
        n, h, w = shape
        size = h * w * dtype.itemsize
        for _ in range(n):
            buf = f.read(size)
            if len(buf) != size:
                raise ValueError(f"{path}: {key} is truncated")
            yield np.frombuffer(buf, dtype=dtype).reshape(h, w).astype("float32")
