"""The test-set scores of a trained network (ml/train.py ``Training.score``): one step ahead and
iterative (Fig. 8) next to persistence and the linear trend, the iterative backtest per horizon
(issue 17) and the prediction intervals' calibration (core/intervals.py) from rolling origins over
the test dates (NETWORK_ORIGINS for the network, every test date for persistence and the line;
on an irregular stack only those whose last known grid date is an acquisition, and the first:
:func:`calibration_origins`), block by block from the work file within the memory budget."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.intervals import calibrate, pixel_scale
from ..core.run import Run
from . import protocol

if TYPE_CHECKING:
    from .train import TrainingData

SCORE_EDGE = 512  # test-set scoring blocks: at most this many pixels a side
KINDS = (
    "test_one_step",
    "test_iterative",
    "persistence",
    "linear_trend",
    "persistence_iterative",
    "trend_iterative",
)


@dataclass(frozen=True)
class TestScoring:
    """What :func:`score_test` scores: the trained network, the compressor, the data, the budget,
    the most blocks to score (``test_tiles``, 0 = all) and the seed of their sample."""

    __test__ = False  # not a pytest class

    model: Any  # forecast.Predictor
    gru: Any  # compressor.ExtremumGRU
    data: TrainingData
    run: Run
    test_tiles: int
    seed: int


def score_test(sc: TestScoring) -> dict[str, Any]:
    """Test-set scores, one step ahead and iterative (Fig. 8), persistence and the linear trend.

    The raster is cut into nearly equal blocks of at most SCORE_EDGE pixels a side (fewer when the
    budget is tight); at most ``test_tiles`` blocks with data are scored (a seeded sample), each read
    from the work file and forecast with the ml/forecast.py functions on its own. One block = the
    whole raster scored at once, as before; several: MAE/MSE/RMSE/PSNR/R2 pooled over their pixels,
    SSIM and MS-SSIM the pixel-weighted mean of the blocks' values. The whole test arrays (for the
    report and the ``predictions`` npz) are kept only when every block is scored and they fit the budget.
    """
    prep, test = sc.data.prep, np.asarray(sc.data.split.test)
    n_test = len(test)
    if not n_test:
        empty = np.zeros((0, prep.height, prep.width), "float32")
        return {
            "metrics": {k: {} for k in KINDS},
            "extremes": {},
            "scoring": {"blocks": 0, "of": 0, "pixels": 0},
            "report_pred": empty,
            "report_obs": empty,
            "full": (empty, empty, empty),
            "calibration": None,
            "horizons": None,
        }
    protocol.progress(87, f"Predicting the {n_test} test dates")
    blocks = ScoreBlocks.plan(sc, test)
    acc = ScoreSums(sc, blocks, test)
    for k, (r, c, h, w) in enumerate(blocks.chosen):
        acc.add_block(r, c, h, w)
        protocol.progress(
            87 + 12 * (k + 1) / len(blocks.chosen), f"Test block {k + 1}/{len(blocks.chosen)} scored"
        )
    return acc.result()


@dataclass(frozen=True)
class ScoreBlocks:
    """The blocks of the test scoring: the first date read (`b0`), the block edge, the blocks with
    data, those scored, and whether the whole test arrays are kept."""

    b0: int
    edge: int
    n_with_data: int
    chosen: list[tuple[int, int, int, int]]
    keep_full: bool

    @classmethod
    def plan(cls, sc: TestScoring, test: np.ndarray) -> ScoreBlocks:
        from ..core.budget import (
            gdal_cache_bytes,
            resident_bytes,
            test_predictions_bytes,
            test_predictions_fit,
        )
        from .source import BLOCK, score_blocks

        prep, mb, n_test = sc.data.prep, sc.run.budget_mb, len(test)
        first_test = int(test[0])
        tw = int(sc.model.trend.trend_window) if sc.model.trend else 0
        b0 = max(0, first_test - max(sc.model.time_step, tw, TREND_BASELINE_DATES))
        budget = sc.run.worker_pixel_bytes()
        # bytes per block pixel: its dates and their compressed copy, five test-date arrays and the
        # float64 copies core.metrics makes (~60 bytes per test date; measured on 1500 x 1500 x 120:
        # 1.97 GB peak RSS at 2 GB with 48 bytes per test date here); a third of the budget is kept
        # for the whole test arrays and an eighth for the windows predicted at once
        # + the iterative persistence and trend, the rolling origins' forecasts and scales (issue 17)
        per_px = 8 * (prep.count - b0) + 128 * n_test
        block_bytes = budget * 2 // 3 - budget // 8
        rss = resident_bytes()
        fits = test_predictions_fit(prep.height, prep.width, n_test, mb)
        if rss is not None:  # what training left resident (the network, tf.data's buffers) counts too
            keep = test_predictions_bytes(prep.height, prep.width, n_test) if fits else 0
            left = sc.run.budget_bytes() - rss - gdal_cache_bytes(mb) - keep - budget // 8
            block_bytes = max(min(block_bytes, left), 0)
        edge = int(min(SCORE_EDGE, max(sc.model.tile, math.isqrt(max(block_bytes // per_px, 1)))))
        blocks = score_blocks(prep.height, prep.width, edge)
        with_data = [b for b in blocks if _block_has_data(prep.block_valid, b, BLOCK)]
        chosen = with_data
        if sc.test_tiles > 0 and len(chosen) > sc.test_tiles:
            pick = np.random.default_rng(sc.seed + 1).choice(len(chosen), size=sc.test_tiles, replace=False)
            chosen = [chosen[i] for i in np.sort(pick)]
        every = len(chosen) == len(with_data)
        return cls(b0, edge, len(with_data), chosen, every and fits)


class ScoreSums:
    """The test scores gathered block by block (see :func:`score_test`)."""

    def __init__(self, sc: TestScoring, blocks: ScoreBlocks, test: np.ndarray):
        prep, n_test = sc.data.prep, len(test)
        self.sc, self.blocks, self.test = sc, blocks, test
        self.first_test = int(test[0])
        self.smin, self.smax = sc.gru.one_step(prep.fmin, prep.fmax, test)
        self.imin, self.imax = sc.gru.iterate(
            prep.fmin[: self.first_test], prep.fmax[: self.first_test], n_test
        )
        self.tw = int(sc.model.trend.trend_window) if sc.model.trend else 0
        self.full = None
        if blocks.keep_full:
            self.full = tuple(np.full((n_test, prep.height, prep.width), np.nan, "float32") for _ in range(3))
        self.parts: dict[str, list] = {k: [] for k in KINDS}
        self.pmin = np.full(n_test, np.nan)
        self.pmax = np.full(n_test, np.nan)
        self.best: tuple[int, Any, Any] = (-1, None, None)
        self.data_range = None
        if len(blocks.chosen) > 1:
            self.data_range = float(np.max(prep.fmax[test]) - np.min(prep.fmin[test])) or None
        n_blocks, seed = len(blocks.chosen), sc.seed
        acquired = origins_held_acquisitions(prep.grid, sc.data.info.dates, test)
        self.offsets = calibration_origins(acquired, NETWORK_ORIGINS)
        base_offsets = calibration_origins(acquired, n_test)
        if not acquired.all():
            protocol.message(
                f"Interval calibration: {int(acquired.sum())} of the {n_test} rolling origins hold an "
                "acquisition (the others a value interpolated on the regular grid, smoother than an "
                "observation); "
                + (
                    f"calibrated from those and the first (network: {len(self.offsets)} origins, "
                    f"persistence and trend: {len(base_offsets)})"
                    if acquired[1:].any()
                    else "none after the first, so calibrated from every origin as on a regular stack"
                )
            )
        self.iext = [  # the GRU's iterated extremes from every rolling origin of the network's backtest
            sc.gru.iterate(prep.fmin[: self.first_test + j], prep.fmax[: self.first_test + j], n_test - j)
            for j in self.offsets
        ]
        self.cal = CalibrationSample(n_test, n_blocks, seed, len(self.offsets))
        self.cal_base = BaselineCalibration(
            n_test, n_blocks, seed, self.tw or TREND_BASELINE_DATES, base_offsets
        )
        self.horizons = HorizonTable(n_test, self.tw or TREND_BASELINE_DATES)

    def add_block(self, r: int, c: int, h: int, w: int) -> None:
        from ..core.metrics import stack_metrics

        b0, n_test = self.blocks.b0, len(self.test)
        tl, ftl = self.test - b0, self.first_test - b0
        reg = self.sc.data.work.read(b0, self.sc.data.prep.count, r, c, h, w)
        mask = np.isfinite(reg[ftl])  # the work file is NaN at every date outside the mask
        scales = [pixel_scale(reg[: int(t)]) for t in tl]  # each pixel's dispersion at every origin
        targets, persistence = reg[tl], reg[tl - 1]
        persistence_it = np.repeat(reg[ftl - 1 : ftl], n_test, axis=0)  # the last observation held
        reg[:, ~mask] = 0.0  # the networks' inputs are 0 outside the mask (compress(0) = 0)
        one_step, iteratives = self._predict(reg, mask, tl, ftl)
        iterative = iteratives[0]
        for j, it in zip(self.offsets, iteratives, strict=True):
            self.cal.add(it - targets[j:], scales[j], it)
        preds = {
            "test_one_step": one_step,
            "test_iterative": iterative,
            "persistence": persistence,
            "linear_trend": _trend_one_step(reg, mask, tl, TREND_BASELINE_DATES),
            "persistence_iterative": persistence_it,
            # the line the network's trend uses (its window chosen on the validation dates)
            "trend_iterative": _trend_iterative(reg[:ftl], mask, n_test, self.tw or TREND_BASELINE_DATES),
        }
        self.horizons.add(
            targets, preds["test_iterative"], preds["persistence_iterative"], preds["trend_iterative"]
        )
        self.cal_base.add(reg, mask, tl, scales)
        del reg
        for kind, pred in preds.items():
            overall = stack_metrics(pred, targets, self.data_range)[1]
            self.parts[kind].append((overall, _sums(pred, targets)))
        del preds
        flat = one_step.reshape(n_test, -1)
        self.pmin = np.fmin(self.pmin, np.fmin.reduce(flat, axis=1))
        self.pmax = np.fmax(self.pmax, np.fmax.reduce(flat, axis=1))
        if self.full is not None:
            for arr, val in zip(self.full, (one_step, iterative, targets), strict=True):
                arr[:, r : r + h, c : c + w] = val
        elif mask.sum() > self.best[0]:
            self.best = (int(mask.sum()), one_step[-1:].copy(), targets[-1:].copy())

    def _predict(
        self, reg: np.ndarray, mask: np.ndarray, tl: np.ndarray, ftl: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """(one step ahead, iterative from every rolling origin ``offsets``) forecasts of the test
        dates on a block (mm, NaN off the mask); the first iterative one starts at the first test date."""
        from .compressor import compress, decompress
        from .dataset import predict_frames
        from .trend import label_inputs

        model, b0, n_test = self.sc.model, self.blocks.b0, len(self.test)
        ts, tile, overlap, trend = model.time_step, model.tile, model.overlap, model.trend
        prep = self.sc.data.prep
        comp = compress(reg, prep.fmin[b0:], prep.fmax[b0:])
        h, w = reg.shape[1:]
        one_step = np.empty((n_test, h, w), "float32")
        budget = self.sc.run.worker_pixel_bytes()
        chunk = max(1, int(budget // 8 // max(1, ts * h * w * 3 * 4 * 3)))  # windows predicted at once
        if trend:
            fs = trend.frame_scale
            for i in range(0, n_test, chunk):
                xs, lines = zip(
                    *(label_inputs(reg, comp, int(t), ts, trend) for t in tl[i : i + chunk]), strict=True
                )
                one_step[i : i + chunk] = (
                    predict_frames(model.net, np.stack(xs), tile, overlap, trend=np.stack(lines)) * fs
                )
                del xs, lines
        else:
            for i in range(0, n_test, chunk):
                windows = np.stack([comp[t - ts : t] for t in tl[i : i + chunk]])
                pred_c = predict_frames(model.net, windows, tile, overlap)
                one_step[i : i + chunk] = decompress(
                    pred_c, self.smin[i : i + chunk], self.smax[i : i + chunk]
                )
                del windows
        iteratives = [self._iterate(reg, comp, mask, ftl + j, k) for k, j in enumerate(self.offsets)]
        del comp
        one_step[:, ~mask] = np.nan
        return one_step, iteratives

    def _iterate(self, reg: np.ndarray, comp: np.ndarray, mask: np.ndarray, o: int, k: int) -> np.ndarray:
        """The network's iterative forecast from origin `o` (block date index, the `k`-th rolling
        origin) to the last test date (mm, NaN off the mask)."""
        from .compressor import decompress
        from .forecast import iterate_compressed, iterate_trend

        model, ts = self.sc.model, self.sc.model.time_step
        imin, imax = self.iext[k]
        n = reg.shape[0] - o
        if model.trend:
            out = iterate_trend(model, reg[:o], comp[o - ts : o], (imin, imax), n, mask)
        else:
            out = decompress(iterate_compressed(model, comp[o - ts : o], n, mask), imin, imax)
        out[:, ~mask] = np.nan
        return out

    def result(self) -> dict[str, Any]:
        from ..core.metrics import psnr_from_mse

        n_test, chosen = len(self.test), self.blocks.chosen
        metrics = {kind: _pool(self.parts[kind], self.data_range, psnr_from_mse) for kind in KINDS}
        scoring = {
            "blocks": len(chosen),
            "of": self.blocks.n_with_data,
            "edge": self.blocks.edge,
            "pixels": int(
                sum(self.parts["test_one_step"][i][1][0] for i in range(len(chosen))) // max(n_test, 1)
            ),
        }
        if len(chosen) != self.blocks.n_with_data:
            protocol.message(
                f"Test set scored on {len(chosen)} of {self.blocks.n_with_data} blocks of up to {self.blocks.edge} x "
                f"{self.blocks.edge} pixels (TEST_TILES = {self.sc.test_tiles}, seeded sample)"
            )
        tm, pm = metrics["test_one_step"], metrics["persistence"]
        protocol.message(
            "Test (one step): "
            + ", ".join(f"{k}={v:.5g}" for k, v in tm.items())
            + f"; persistence MAE={pm['MAE']:.5g}; linear trend MAE={metrics['linear_trend']['MAE']:.5g}"
            + f"; iterative MAE={metrics['test_iterative']['MAE']:.5g}"
        )
        extremes = {
            "gru_one_step_min": self.smin.tolist(),
            "gru_one_step_max": self.smax.tolist(),
            "gru_iterative_min": self.imin.tolist(),
            "gru_iterative_max": self.imax.tolist(),
            "pred_min": self.pmin.tolist(),
            "pred_max": self.pmax.tolist(),
        }
        report = (self.full[0], self.full[2]) if self.full is not None else (self.best[1], self.best[2])
        return {
            "metrics": metrics,
            "extremes": extremes,
            "scoring": scoring,
            "report_pred": report[0],
            "report_obs": report[1],
            "full": self.full,
            "calibration": self.cal.result(),
            "horizons": self.horizons.result() | {"calibration": self.cal_base.result()},
        }


class HorizonTable:
    """Iterative backtest MAE per horizon 1..n_test from the first test date: the network, persistence
    and the trend line (pooled over the scored blocks' pixels)."""

    NAMES = ("network", "persistence", "trend")

    def __init__(self, n_test: int, trend_window: int):
        self.trend_window = int(trend_window)
        self.sums = np.zeros((3, n_test))
        self.counts = np.zeros((3, n_test))

    def add(self, targets: np.ndarray, *preds: np.ndarray) -> None:
        for i, pred in enumerate(preds):
            e = np.abs(pred.astype("float64") - targets).reshape(targets.shape[0], -1)
            ok = np.isfinite(e)
            self.sums[i] += np.where(ok, e, 0.0).sum(axis=1)
            self.counts[i] += ok.sum(axis=1)

    def result(self) -> dict[str, Any]:
        with np.errstate(all="ignore"):
            mae = self.sums / self.counts
            overall = self.sums.sum(axis=1) / self.counts.sum(axis=1)
        out: dict[str, Any] = {
            "horizon": list(range(1, self.sums.shape[1] + 1)),
            "trend_window": self.trend_window,
        }
        for i, name in enumerate(self.NAMES):
            out[f"{name}_mae"] = [float(v) for v in mae[i]]
            out[f"{name}_overall_mae"] = float(overall[i])
        net, pers, trend = (float(v) for v in overall)
        out["skill_vs_persistence"] = 1.0 - net / pers if pers > 0 else math.nan
        out["skill_vs_trend"] = 1.0 - net / trend if trend > 0 else math.nan
        return out


def _trend_iterative(hist: np.ndarray, mask: np.ndarray, steps: int, window: int) -> np.ndarray:
    """Baseline: the per-pixel line over the last `window` dates of `hist`, extrapolated `steps` dates."""
    from .trend import fit_line, line_at

    last, slope = fit_line(np.where(mask, hist[-window:], 0.0))
    out = line_at(last, slope, np.arange(1, steps + 1)).astype("float32")
    out[:, ~mask] = np.nan
    return out


NETWORK_ORIGINS = 5  # rolling origins of the network's calibration backtest (each an iterative forecast)


def origin_offsets(n_test: int, origins: int) -> list[int]:
    """At most `origins` rolling origins of a backtest over `n_test` dates, as offsets from the first
    test date, evenly spaced from 0 (horizon 1 gets them all, the last horizon only the first)."""
    step = max(1, math.ceil(n_test / max(int(origins), 1)))
    return list(range(0, n_test, step))


def origins_held_acquisitions(
    grid: Sequence[dt.date], acquisitions: Sequence[dt.date], test: np.ndarray
) -> np.ndarray:
    """(len(test),) whether each rolling origin's last known date (the grid date before test date j,
    the value persistence holds) is an acquisition, not a value interpolated between two."""
    acq = set(acquisitions)
    return np.array([grid[int(t) - 1] in acq for t in test], dtype=bool)


def calibration_origins(acquired: np.ndarray, origins: int) -> list[int]:
    """At most `origins` rolling origins (offsets from the first test date, evenly spaced) among
    those whose last known date is an acquisition (`acquired`, see
    :func:`origins_held_acquisitions`), as the forecast's own origin always is (the grid ends on the
    last acquisition): an interpolated value is smoother than an observation, and a forecast carries
    its origin's noise into every horizon, so errors from interpolated origins are too small. The
    first origin is kept in any case (it alone reaches the last horizons). When every origin is an
    acquisition (a regular stack) or none after the first is, all candidates stay, as before."""
    cand = list(range(len(acquired)))
    if acquired[1:].any():
        cand = [j for j in cand if j == 0 or acquired[j]]
    step = max(1, math.ceil(len(cand) / max(int(origins), 1)))
    return cand[::step]


class CalibrationSample:
    """A backtest's errors at horizons 1..n_test (fewer from a later rolling origin: NaN beyond),
    the pixels' scales at the origin and the frames whose motion widens the band, gathered block by
    block and origin by origin (at most MAX_PIXELS pixel-origins in all, a seeded sample), for the
    prediction intervals' calibration (core/intervals.py) stored in the model file."""

    MAX_PIXELS = 200_000

    def __init__(self, n_test: int, n_blocks: int, seed: int, origins: int = 1):
        self.n_test, self.origins = n_test, int(origins)
        self.per_block = max(1, self.MAX_PIXELS // max(n_blocks * self.origins, 1))
        self.rng = np.random.default_rng(seed + 2)
        self.errors: list[np.ndarray] = []
        self.scales: list[np.ndarray] = []
        self.forecasts: list[np.ndarray] = []

    def add(self, errors: np.ndarray, scale: np.ndarray, moving: np.ndarray) -> None:
        n = errors.shape[0]
        e = errors.reshape(n, -1)
        s = scale.reshape(-1)
        ok = np.flatnonzero(np.isfinite(e).all(axis=0) & np.isfinite(s))
        if ok.size > self.per_block:
            ok = np.sort(self.rng.choice(ok, size=self.per_block, replace=False))
        for store, arr in ((self.errors, e), (self.forecasts, moving.reshape(n, -1))):
            padded = np.full((self.n_test, ok.size), np.nan, "float32")
            padded[:n] = arr[:, ok]
            store.append(padded)
        self.scales.append(s[ok].astype("float32"))

    def result(self, motion_from: str = "forecast") -> dict[str, Any] | None:
        if not self.errors or not sum(s.size for s in self.scales):
            return None
        return calibrate(
            np.concatenate(self.errors, axis=1),
            np.concatenate(self.scales),
            forecast=np.concatenate(self.forecasts, axis=1),
            motion_from=motion_from,
            origins=self.origins,
        )


class BaselineCalibration:
    """The calibration backtests of persistence and of the trend line (its window `trend_window`)
    from every test date as a rolling origin (cheap, unlike the network's). Persistence's band
    widens with the line's motion (h |recent rate|, ``motion_from`` "trend"): a held value on a bowl
    that keeps sinking is wrong by about that much, which its own (flat) forecast cannot show."""

    def __init__(
        self, n_test: int, n_blocks: int, seed: int, trend_window: int, offsets: Sequence[int] | None = None
    ):
        self.tw = int(trend_window)
        self.offsets = list(range(n_test)) if offsets is None else [int(j) for j in offsets]
        self.samples = {
            k: CalibrationSample(n_test, n_blocks, seed, len(self.offsets)) for k in ("persistence", "trend")
        }

    def add(self, reg: np.ndarray, mask: np.ndarray, tl: np.ndarray, scales: list[np.ndarray]) -> None:
        """One block: `reg` its dates (the test dates `tl` last), `scales` each pixel's scale at
        every test date as origin; the origins are the test dates at `offsets` (default: all)."""
        for j in self.offsets:
            o = int(tl[j])
            targets = reg[tl[j:]]
            line = _trend_iterative(reg[:o], mask, len(targets), self.tw)
            held = np.where(mask, reg[o - 1], np.nan)[None].repeat(len(targets), axis=0)
            self.samples["persistence"].add(held - targets, scales[j], line)
            self.samples["trend"].add(line - targets, scales[j], line)

    def result(self) -> dict[str, Any]:
        return {
            "persistence": self.samples["persistence"].result(motion_from="trend"),
            "trend": self.samples["trend"].result(),
        }


TREND_BASELINE_DATES = 40  # the linear-trend baseline's line (the bench's baseline uses 40 dates)


def _block_has_data(block_valid: np.ndarray, b: tuple[int, int, int, int], size: int) -> bool:
    r, c, h, w = b
    return bool(block_valid[r // size : -(-(r + h) // size), c // size : -(-(c + w) // size)].any())


def _sums(pred: np.ndarray, obs: np.ndarray) -> tuple[int, float, float]:
    """(valid pixels, sum of obs, sum of obs**2) over the pixels finite in both (for a pooled R^2)."""
    ok = np.isfinite(pred) & np.isfinite(obs)
    o = obs[ok].astype("float64")
    return int(ok.sum()), float(o.sum()), float((o * o).sum())


def _pool(parts: list, data_range: float | None, psnr_from_mse: Any) -> dict[str, float]:
    """One block: its metrics as they are. Several: pooled over their pixels (see _score_test)."""
    if len(parts) == 1:
        return {k: float(v) for k, v in parts[0][0].items()}
    n = sum(s[0] for _, s in parts)
    if not n:
        return {k: math.nan for k in parts[0][0]}

    def wmean(key: str) -> float:
        vals = [(m[key], s[0]) for m, s in parts if s[0] and np.isfinite(m[key])]
        wsum = sum(w for _, w in vals)
        return float(sum(v * w for v, w in vals) / wsum) if wsum else math.nan

    mse = wmean("MSE")
    so = sum(s[1] for _, s in parts)
    so2 = sum(s[2] for _, s in parts)
    ss_tot = so2 - so * so / n
    ss_res = mse * n
    L = float(data_range) if data_range else float(parts[0][0]["DATA_RANGE"])
    return {
        "MAE": wmean("MAE"),
        "MSE": mse,
        "RMSE": math.sqrt(mse) if np.isfinite(mse) else math.nan,
        "SSIM": wmean("SSIM"),
        "MS_SSIM": wmean("MS_SSIM"),
        "PSNR": psnr_from_mse(mse, L),
        "R2": 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        "N": float(n),
        "DATA_RANGE": L,
    }


def _trend_one_step(reg: np.ndarray, mask: np.ndarray, labels: np.ndarray, trend_window: int) -> np.ndarray:
    """Baseline: per-pixel line over the last `trend_window` dates before each label, one step on
    (the bench's baseline uses 40 dates)."""
    from .trend import fit_line

    out = np.empty((len(labels),) + reg.shape[1:], "float32")
    for i, t in enumerate(labels):
        last, slope = fit_line(np.where(mask, reg[max(0, int(t) - trend_window) : int(t)], 0.0))
        out[i] = np.where(mask, last + slope, np.nan)
    return out
