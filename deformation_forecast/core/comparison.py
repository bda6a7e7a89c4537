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

The numbers equal those of the in-memory oracle kept in the tests (tests/inmemory_comparison.py:
run_baseline + comparison_rows) on the same stack.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from rasterio.windows import Window

from . import metrics as mt
from .baselines import (
    NO_FINITE_PREDICTION,
    BaselineOptions,
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
from .run import QUIET, Run
from .split import Split, make_split
from .stack import (
    StackInfo,
    StackWriter,
    atomic_path,
    crop_stack,
    extent_window,
    iter_windows,
    read_info,
    read_stack,
    read_windows,
)

if TYPE_CHECKING:  # the jobs' declarations (jobs.py), imported only for the types
    from ..jobs import CompareJob, TrainJob

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

        with gdal_env(self.run.budget_mb):
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
        run: Run = QUIET,
        max_bytes: int | None = None,
    ):
        """`run`: the memory budget (windows sized from it) and, for the methods that take none,
        nothing else; `max_bytes` overrides the window size (tests)."""
        self.path = path
        self.work_dir = work_dir
        self.run = run
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
        self.windows = iter_windows(self.info, max_bytes, bands=bands, copies=COPIES, mb=run.budget_mb)
        self.observed_test_path = os.path.join(work_dir, "observed_test.tif")
        self.observed_min = np.full(len(grid), np.inf)
        self.observed_max = np.full(len(grid), -np.inf)
        self.test_lo, self.test_hi = np.inf, -np.inf
        self._observed_done = False

    @property
    def test_dates(self) -> list[dt.date]:
        return [self.dates[t] for t in self.split.test]

    def _windows(self) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
        """(window, frames, observations) of each window on the regular grid, one pass over the
        stack: frames gap-filled, observations the acquisition itself (NaN kept) where a grid date
        was acquired, else interpolated."""
        for win, data in read_windows(self.path, self.windows):
            yield (win, *self._on_grid(data))

    def _on_grid(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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

    def _prepare_trends(self, models: dict, check: Any) -> None:
        """The trend baselines' settings: the seasonal one's span from the dates, the linear trend's
        window chosen on the validation dates (one pass over the raster's windows)."""
        for m in models.values():
            if isinstance(m, TrendAnnual):
                m.fit(None, self.times, self.split)
        auto = [m for m in models.values() if isinstance(m, LinearTrend) and m.auto]
        if not auto:
            return
        for _, frames, _ in self._windows():
            check()
            for m in auto:
                m.gather(frames, self.times, self.split)
            del frames
        for m in auto:
            m.choose()

    @_budget_cache
    def run_baselines(
        self, names: Sequence[str], options: BaselineOptions | None = None, run: Run = QUIET
    ) -> list[ModelRun]:
        """Fit and run the baselines `names`; also writes the observed test frames (always call it,
        with no names when only networks are compared). Returns one ModelRun per name. `run`:
        progress 0..1 and cancellation (core.errors.Cancelled)."""
        models = {n: make_baseline(n, self.split.time_step, options) for n in names}
        regressors = {n: m for n, m in models.items() if isinstance(m, LaggedRegressor)}
        train_s = dict.fromkeys(names, 0.0)
        predict_s = dict.fromkeys(names, 0.0)
        share = 0.4 if regressors else 0.0
        if regressors:
            self._fit_regressors(regressors, train_s, run.stage(0.0, share))
        self._prepare_trends(models, run.check_cancelled)
        runs = {
            n: ModelRun(
                n,
                os.path.join(self.work_dir, f"{n}_one_step.tif"),
                os.path.join(self.work_dir, f"{n}_iterative.tif"),
                notes=models[n].notes,
            )
            for n in names
        }
        self._predict(models, runs, predict_s, run.stage(share, 1.0))
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

    def _fit_regressors(
        self, regressors: dict[str, LaggedRegressor], train_s: dict[str, float], run: Run
    ) -> None:
        """Gather the regressors' samples window by window (a quarter of `run`), then fit them."""
        samplers = {n: m.samplers() for n, m in regressors.items()}
        nw = len(self.windows)
        for k, (win, frames, _) in enumerate(self._windows()):
            run.check_cancelled()
            t0 = time.perf_counter()
            ids = _pixel_ids(win, self.info.width)
            for n, m in regressors.items():
                m.gather(frames, ids, self.times, self.split, *samplers[n])
            del frames
            for n in regressors:
                train_s[n] += (time.perf_counter() - t0) / len(regressors)
            run.progress(0.25 * (k + 1) / nw, f"samples for the regressors, window {k + 1}/{nw}")
        for j, (n, m) in enumerate(regressors.items()):
            t0 = time.perf_counter()
            fit_run = run.stage(0.25 + 0.75 * j / len(regressors), 0.25 + 0.75 * (j + 1) / len(regressors))
            m.fit_from(*samplers[n], self.split, fit_run.progress, run.is_cancelled)
            train_s[n] += time.perf_counter() - t0

    def _predict(
        self, models: dict[str, Any], runs: dict[str, ModelRun], predict_s: dict[str, float], run: Run
    ) -> None:
        """Every model's test predictions and the observed test frames, window by window, into the
        work folder's stacks; the observed per-date extremes and test range on the way."""
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
            self._observe_and_predict(models, obs_w, out_w, predict_s, run)
            for w in writers:
                w.close()
            writers = []
        except BaseException as e:
            for w in writers:
                w.abort(e)
            raise
        self._observed_done = True

    def _observe_and_predict(
        self, models: dict[str, Any], obs_w: StackWriter, out_w: dict, predict_s: dict[str, float], run: Run
    ) -> None:
        test = self.split.test
        obs_min = np.full(len(self.dates), np.inf)
        obs_max = np.full(len(self.dates), -np.inf)
        lo, hi = np.inf, -np.inf
        any_valid = False
        nw = len(self.windows)
        for k, (win, frames, observed) in enumerate(self._windows()):
            run.check_cancelled()
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
                one, it = predict_test(model, frames, self.times, self.split, None, run.is_cancelled)
                predict_s[n] += time.perf_counter() - t0
                out_w[n][0].write(one, window=win)
                out_w[n][1].write(it, window=win)
                del one, it
            del frames
            run.progress((k + 1) / nw, f"predictions, window {k + 1}/{nw}")
        if not any_valid:
            raise InputError("The stack has no pixel with a value at any date; nothing to compare.")
        self.observed_min, self.observed_max = obs_min, obs_max
        self.test_lo, self.test_hi = lo, hi

    @_budget_cache
    def add_network(self, model: str, npz_path: str) -> ModelRun:
        """The predictions the worker's ``train`` wrote (npz: one_step, iterative, test_dates,
        train_seconds, predict_seconds, device) as a ModelRun, copied frame by frame into stacks.
        Raises InputError when its test dates are not this split's, or when it wrote none."""
        if not os.path.exists(npz_path):
            raise InputError(
                f"{model}: the worker wrote no test predictions (they did not fit its memory budget; "
                "see its warning above); give a smaller EXTENT or raise the memory budget."
            )
        with np.load(npz_path, allow_pickle=False) as z:
            got = [str(d) for d in z["test_dates"].tolist()]
            train_s, predict_s = float(z["train_seconds"]), float(z["predict_seconds"])
            device = str(z["device"])
        want = [d.isoformat() for d in self.test_dates]
        if got != want:
            raise InputError(
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
                        raise InputError(
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
        run: Run = QUIET,
    ) -> tuple[list[dict], float, list[ModelFigures]]:
        """Rows (model, mode, metrics, seconds, device) as the in-memory oracle (tests/inmemory_comparison.py), the
        data range, and each model's figure data; with `errors_dir`, the absolute error stack of
        every model and mode (abs_error_<model>_<mode>.tif). `run`: progress and cancellation."""
        if not self._observed_done:
            raise RuntimeError("run_baselines() first: it writes the observed test frames")
        L = data_range or self.data_range()
        shown = set(pick_dates(len(self.split.test)))
        rows, figures = [], []
        total = max(1, len(runs) * 2)
        for r_i, mr in enumerate(runs):
            mf = ModelFigures(mr.model, mr.notes)
            for m_i, (mode, path) in enumerate((("one-step", mr.one_step), ("iterative", mr.iterative))):
                acc = mt.StackAccumulator(L)
                err_map = MeanErrorMap()
                figs: list[FrameFigures] = []
                writer = None
                if errors_dir:
                    key = mode.replace("-", "_")
                    name = "".join(c if c.isalnum() else "_" for c in mr.model.upper()).lower()
                    writer = self._writer(
                        os.path.join(errors_dir, f"abs_error_{name}_{key}.tif"),
                        self.test_dates,
                        {"MODEL": mr.model, "MODE": key, "CONTENT": "absolute error"},
                    )
                with writer or contextlib.nullcontext():  # published when complete
                    for k in range(len(self.split.test)):
                        run.check_cancelled()
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
                row: dict[str, object] = {"model": mr.model, "mode": MODES[m_i]}
                row.update({k: ov[k] for k in mt.METRICS})
                row.update(
                    train_seconds=round(mr.train_seconds, 3),
                    predict_seconds=round(mr.predict_seconds, 3),
                    device=mr.device,
                )
                rows.append(row)
                if mode == "one-step":
                    mf.one_step, mf.mean_error_one_step = figs, err_map.value()
                else:
                    mf.iterative, mf.mean_error_iterative = figs, err_map.value()
                run.progress((2 * r_i + m_i + 1) / total)
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


# -- the whole comparison (comparemodels): folders, cropping, the budget, stages, cancellation ------


class NetworkTrainer(Protocol):
    """Trains one network in the TensorFlow worker (the Processing adapter runs the TrainJob) and
    returns the worker's result; progress and cancellation through `run`."""

    def __call__(self, job: TrainJob, run: Run) -> dict[str, Any]: ...


@dataclass
class ComparisonResult:
    """What comparemodels reports: the table rows (SKILL added), the data range, the figure data,
    the timeline and split text of the report, the models' runs and the notes."""

    rows: list[dict]
    data_range: float
    figures: list[ModelFigures]
    timeline: Any  # core.evaluation.Timeline
    split_text: str
    test_count: int
    runs: dict[str, ModelRun]
    notes: list[str] = field(default_factory=list)

    def best(self, mode: str) -> str:
        """The model of least finite MAE in `mode` ("one-step" or "iterative"); "" when none."""
        finite = [r for r in self.rows if r["mode"] == mode and np.isfinite(r["MAE"])]
        return str(min(finite, key=lambda r: r["MAE"])["model"]) if finite else ""


def add_skill(rows: list[dict]) -> None:
    """SKILL = 1 - MAE / MAE of persistence in the same mode (NaN without persistence)."""
    pers = {r["mode"]: float(r["MAE"]) for r in rows if r["model"] == "persistence"}
    for r in rows:
        ref = pers.get(r["mode"], float("nan"))
        r["SKILL"] = 1.0 - float(r["MAE"]) / ref if ref > 0 else float("nan")


def check_networks_fit(
    networks: Sequence[str], height: int, width: int, n_test: int, cropped: bool, run: Run
) -> None:
    """Refuse before any work when the worker could not hold the networks' whole test predictions
    (core.budget.test_predictions_fit) within `run`'s budget, naming what would do."""
    from .budget import (
        budget_mb,
        smallest_budget,
        test_predictions_bytes,
        test_predictions_fit,
        worker_pixel_bytes,
    )

    mb = run.budget_mb
    if not networks or test_predictions_fit(height, width, n_test, mb):
        return
    need = smallest_budget(lambda b: test_predictions_fit(height, width, n_test, b))
    side = math.isqrt(max(1, worker_pixel_bytes(mb) // 3 // test_predictions_bytes(1, 1, n_test)))
    raise InputError(
        f"The networks ({', '.join(networks)}) are scored on every pixel of the {n_test} test dates: "
        f"{test_predictions_bytes(height, width, n_test) / 2**20:.0f} MB of predictions for "
        f"{'this EXTENT' if cropped else 'this stack'} of {width} x {height} pixels, more than the "
        f"worker may hold with the {budget_mb(mb):.0f} MB memory budget. Give an EXTENT of at most "
        f"about {side} x {side} pixels (e.g. around the deformation), fewer TEST_COUNT, leave the "
        f"networks out of MODELS, or raise the memory budget to {need} MB (plugin setting or "
        "DEFORMATION_FORECAST_MEMORY_MB)."
    )


def compare(
    job: CompareJob, train: NetworkTrainer, run: Run = QUIET, temp_root: str | None = None
) -> ComparisonResult:
    """Compare `job`'s models on its stack (cropped to its extent): the baselines here, streamed
    within `run`'s budget, each network through `train` (the worker), then the scores; writes the
    absolute error stacks in ``job.output_errors`` and the HTML report at ``job.output_report``
    when given. Work files live in a folder of `temp_root`, removed at the end. Progress: the
    baselines, each network and the scores are equal stages of `run`; every stage checks `run`
    for cancellation (core.errors.Cancelled)."""
    work = tempfile.mkdtemp(prefix="df_compare_", dir=temp_root)
    try:
        result = _Comparison(job, work, train, run).run_all()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if job.output_report:
        write_report(result, job.output_report)
    return result


class _Comparison:
    """The steps of :func:`compare` over one work folder."""

    def __init__(self, job: CompareJob, work: str, train: NetworkTrainer, run: Run):
        self.job, self.work, self.train, self.run = job, work, train, run
        self.networks = job.networks
        self.n_stages = len(self.networks) + 2  # baselines, each network, scores

    def stage(self, k: int) -> Run:
        return self.run.stage(k / self.n_stages, (k + 1) / self.n_stages)

    def run_all(self) -> ComparisonResult:
        info, cropped = self.stack()
        cmp = self.comparison(info, cropped)
        runs = {r.model: r for r in cmp.run_baselines(self.job.baselines, self.options(), self.stage(0))}
        for k, model in enumerate(self.networks):
            self.run.check_cancelled()
            self.run.message(f"— {_label(model)}")
            runs[model] = self.network(cmp, model, self.stage(k + 1))
        return self.score(cmp, runs)

    def options(self) -> BaselineOptions:
        if self.job.baselines:
            self.run.message("— " + ", ".join(_label(m) for m in self.job.baselines))
        j = self.job
        return BaselineOptions(
            trend_window=j.trend_window, svr_samples=j.svr_samples, mlp_samples=j.mlp_samples, seed=j.seed
        )

    def stack(self) -> tuple[StackInfo, bool]:
        """The stack to compare on: the job's, or its EXTENT copied into the work folder (refused
        first when the networks' test predictions would not fit there)."""
        info = read_info(self.job.input)
        self.run.message(f"Reading {info.path}: {info.count} dates, {info.width} x {info.height} pixels")
        if self.job.extent is None:
            return info, False
        bounds = tuple(float(v) for v in self.job.extent)
        window = extent_window(info, (bounds[0], bounds[1], bounds[2], bounds[3]))
        check_networks_fit(
            self.networks, int(window.height), int(window.width), self.job.test_count, True, self.run
        )
        info = crop_stack(info, window, os.path.join(self.work, "extent.tif"), self.run.budget_mb)
        self.run.message(
            f"EXTENT: comparing on {info.width} x {info.height} pixels from column "
            f"{int(window.col_off)}, row {int(window.row_off)}"
        )
        self.run.check_cancelled()
        return info, True

    def comparison(self, info: StackInfo, cropped: bool) -> StreamedComparison:
        j = self.job
        cmp = StreamedComparison(
            info.path, self.work, j.time_step, j.test_count, j.validation_fraction, j.interval_days, self.run
        )
        check_networks_fit(self.networks, info.height, info.width, len(cmp.split.test), cropped, self.run)
        self.run.message(
            f"Regular interval {cmp.interval} days, {len(cmp.dates)} frames; {cmp.split.describe()}; "
            f"streamed in {len(cmp.windows)} window(s)"
        )
        if cmp.interpolated:
            self.run.message(
                f"{cmp.interpolated} grid dates are not acquisition dates: their observations are interpolated."
            )
        return cmp

    def network(self, cmp: StreamedComparison, model: str, stage: Run) -> ModelRun:
        """Train `model` in the worker on the comparison's stack and split; its test predictions
        copied into the work folder."""
        folder = tempfile.mkdtemp(prefix=f"df_compare_{model.replace('-', '_')}_", dir=self.work)
        job = self.job.network_job(model, cmp.path, cmp.interval, folder)
        t0 = time.perf_counter()
        try:
            res = self.train(job, stage)
            mr = cmp.add_network(model, res.get("predictions", job.predictions))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if mr.notes == NO_FINITE_PREDICTION:
            return mr
        mr.notes = (
            f"trained in the TensorFlow worker: {res.get('epochs_run', '?')} epochs (EPOCHS={job.epochs}), "
            f"worker wall time {time.perf_counter() - t0:.0f} s"
        )
        mr.extra["epochs"] = float(res.get("epochs_run") or 0)
        return mr

    def score(self, cmp: StreamedComparison, runs: dict[str, ModelRun]) -> ComparisonResult:
        from .evaluation import Timeline

        errors_dir = self.job.output_errors or None
        if errors_dir:
            os.makedirs(errors_dir, exist_ok=True)
        ordered = [runs[m] for m in self.job.models]
        stage = self.stage(self.n_stages - 1)
        rows, data_range, figures = cmp.score(ordered, self.job.data_range or None, errors_dir, stage)
        add_skill(rows)
        notes = []
        if cmp.interpolated:
            notes.append(
                f"{cmp.interpolated} grid dates were not acquired; their observations are interpolated."
            )
        result = ComparisonResult(
            rows,
            data_range,
            figures,
            Timeline(cmp.dates, list(cmp.observed_min), list(cmp.observed_max), cmp.test_dates),
            f"Regular interval {cmp.interval} days; {cmp.split.describe()}.",
            len(cmp.split.test),
            runs,
            notes,
        )
        _log(result, self.run)
        return result


def _label(model: str) -> str:
    from .evaluation import label

    return label(model)


def _log(result: ComparisonResult, run: Run) -> None:
    """Each model's one-step scores and seconds, a model that predicted nothing, the table and the
    skills, to the run's log."""
    from .evaluation import text_table

    for r in result.rows:
        mr = result.runs[r["model"]]
        if r["mode"] != "one-step":
            continue
        run.message(
            f"{_label(r['model'])}: one-step {mt.format_metrics(r)}; "
            f"train {mr.train_seconds:.1f} s, predict {mr.predict_seconds:.1f} s on {mr.device}"
        )
        if mr.notes == NO_FINITE_PREDICTION:
            run.log.warning(f"{mr.model}: {mr.notes}")
    run.message("\n" + text_table(result.rows))
    for r in result.rows:
        run.message(f"{_label(r['model'])} ({r['mode']}): skill vs persistence {r['SKILL']:.3f}")


def write_report(result: ComparisonResult, path: str) -> None:
    """The HTML report of the comparison at `path`, written atomically."""
    from .evaluation import comparison_report_html

    page = comparison_report_html(
        result.rows, result.figures, result.timeline, result.data_range, result.split_text, result.notes
    )
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
