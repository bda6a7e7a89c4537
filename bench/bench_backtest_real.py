"""Backtest on real point data (issue 17): the last dates withheld, forecast with 90 % bands, scored.

For each point export in ../shared/data (the Maoxian StaMPS SBAS export and the Amsterdam DePSI
example), the points are gridded with the code ``pointstostack`` runs (core.points:
``read_points_csv`` + ``points_to_stack``, the parameters of tests/processing/test_points_to_stack.py)
twice on the same grid: the whole series (the truth) and all but its last K dates (what is trained
on), K = min(20, dates // 5) as ``trainmodel``'s default TEST_COUNT. A network is trained on the
shortened stack through the worker (``python -m deformation_forecast.ml train``, a TrainJob: few
epochs, a time budget) and forecasts the withheld span with OUTPUT_LOWER/OUTPUT_UPPER at CONFIDENCE
0.9 for METHOD network, persistence and trend (a ForecastJob each; METHOD best is the one of them with
the least MAE on the model's own backtest, marked in the table). Each forecast is scored against the
withheld observations on the cells that hold at least one point, at the withheld dates that are
forecast dates (the forecast steps by the model's interval from the last trained date; --interval-days
sets it): MAE, RMSE, coverage of the 90 % band, its mean width, and the factor by which the band's
half-width would have to grow to reach 90 % (the 90 % quantile of |error| / half-width; <= 1: covered).

    .venv/bin/python bench/bench_backtest_real.py [--datasets maoxian,depsi] [--data DIR]
        [--epochs 8] [--max-seconds 90] [--interval-days 0] [--small] [--json FILE]

Runs in a few minutes on 2 CPU cores (the grids are 34 x 23 and 29 x 9 cells). Exits 0 with a note
when the data folder is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import _common  # noqa: F401  (puts the package on sys.path)
import numpy as np
from _common import ROOT, SRC, dump_json, machine

from deformation_forecast.core.intervals import coverage_width
from deformation_forecast.core.points import PointSeries, points_to_stack, project, read_points_csv
from deformation_forecast.core.stack import read_info, read_stack
from deformation_forecast.jobs import ForecastJob, TrainJob

PY = os.path.join(ROOT, ".venv", "bin", "python")
DATA = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))
CONFIDENCE = 0.9
METHODS = ("network", "persistence", "trend")


@dataclass(frozen=True)
class Dataset:
    """A point export and how ``pointstostack`` grids it (PIXEL_SIZE, METHOD, OUTPUT_CRS), and the
    network's input length (a short series cannot spare the default 5)."""

    name: str
    path: str  # under the data folder
    pixel: float
    method: str
    crs: str | None
    time_step: int


DATASETS = {
    "maoxian": Dataset("maoxian", "maoxian_stamps/Maoxian_SBAS.csv", 30.0, "nearest", None, 5),
    # 11 dates: 9 trained on, TIME_STEP 3 (5 needs 10: ml/dataset.split_windows)
    "depsi": Dataset("depsi", "amsterdam_depsi/example.csv", 10.0, "idw", "EPSG:28992", 3),
}


def withheld_count(n_dates: int) -> int:
    """The dates withheld: the smaller of 20 and a fifth of the dates (trainmodel's TEST_COUNT -1)."""
    return max(1, min(20, n_dates // 5))


@dataclass(frozen=True)
class Split:
    """The gridded backtest: the whole series' stack, the stack of all but the last dates, the
    withheld dates and the cells (H, W) that hold at least one point."""

    full: str
    train: str
    withheld: list[dt.date]
    cells: np.ndarray
    series: PointSeries
    summary: dict


def point_cells(series: PointSeries, summary: dict) -> np.ndarray:
    """(H, W) True where at least one point of `series` falls in a cell of the grid `summary`
    (points_to_stack's result; a projected output CRS, whose transform is the grid's)."""
    from rasterio.transform import rowcol

    xs, ys = project(series.x, series.y, series.crs, summary["crs"])
    rows, cols = rowcol(summary["transform"], xs, ys)
    rows, cols = np.asarray(rows), np.asarray(cols)
    h, w = summary["height"], summary["width"]
    ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    cells = np.zeros((h, w), dtype=bool)
    cells[rows[ok], cols[ok]] = True
    return cells


def grid_split(ds: Dataset, data: str, folder: str, k: int | None = None) -> Split:
    """Grid dataset `ds` whole and without its last `k` dates (default :func:`withheld_count`) on
    the same grid (the grid depends on the points' coordinates only)."""
    series = read_points_csv(os.path.join(data, ds.path))
    n = len(series.dates)
    k = withheld_count(n) if k is None else int(k)
    full = os.path.join(folder, f"{ds.name}_full.tif")
    train = os.path.join(folder, f"{ds.name}_train.tif")
    summary = points_to_stack(series, full, ds.pixel, ds.crs, ds.method)
    head = dataclasses.replace(series, values=series.values[:, : n - k], dates=series.dates[: n - k])
    points_to_stack(head, train, ds.pixel, ds.crs, ds.method)
    return Split(full, train, series.dates[n - k :], point_cells(series, summary), series, summary)


# ------------------------------------------------------------------------------------- the worker


def worker(job: TrainJob | ForecastJob) -> dict:
    """Run `job` in the worker (``python -m deformation_forecast.ml <command> --params``); its result."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(job.to_json())
    env = dict(os.environ, PYTHONPATH=SRC, TF_CPP_MIN_LOG_LEVEL="2")
    p = subprocess.run(
        [PY, "-m", "deformation_forecast.ml", job.COMMAND, "--params", f.name],
        capture_output=True,
        text=True,
        env=env,
    )
    os.unlink(f.name)
    result, said = None, []
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            said.append(obj.get("message", ""))
            result = obj.get("result", result)
    if p.returncode or result is None:
        raise SystemExit(f"worker {job.COMMAND} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    result["log"] = [m for m in said if m and not m.startswith(("step ", "epoch "))]
    return result


def train(split: Split, ds: Dataset, folder: str, args) -> tuple[str, dict, float]:
    """Train on the shortened stack; (model path, train result, wall seconds)."""
    model = os.path.join(folder, f"{ds.name}.dfmodel")
    job = TrainJob(
        input=split.train,
        output_model=model,
        time_step=ds.time_step,
        test_count=-1,
        epochs=args.epochs,
        max_seconds=args.max_seconds,
        interval_days=args.interval_days,
        device="auto",
        seed=42,
        test_tiles=0,
    )
    t0 = time.monotonic()
    res = worker(job)
    return model, res, time.monotonic() - t0


def forecast(split: Split, model: str, method: str, steps: int, folder: str) -> dict:
    """Forecast `steps` dates after the shortened stack by `method`, with the 90 % band."""
    out = {k: os.path.join(folder, f"{method}_{k}.tif") for k in ("output", "output_lower", "output_upper")}
    job = ForecastJob(
        input=split.train,
        model=model,
        steps=steps,
        device="auto",
        method=method,
        confidence=CONFIDENCE,
        **out,
    )
    return worker(job)


# ------------------------------------------------------------------------------------------ scores


def matched(withheld: list[dt.date], forecast_dates: list[dt.date]) -> list[tuple[int, int]]:
    """(withheld index, forecast index) of the withheld dates that are forecast dates."""
    where = {d: i for i, d in enumerate(forecast_dates)}
    return [(j, where[d]) for j, d in enumerate(withheld) if d in where]


def score(obs: np.ndarray, fc: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict:
    """MAE, RMSE, coverage, mean width and the half-width factor needed for 90 % over the finite
    entries of (dates, cells) arrays; per date too."""
    ok = np.isfinite(obs) & np.isfinite(fc) & np.isfinite(lo) & np.isfinite(hi)
    err = (fc - obs).astype("float64")
    cov, width, n = coverage_width(obs, lo, hi)
    half = (hi - lo).astype("float64") / 2
    with np.errstate(all="ignore"):
        ratio = np.abs(err) / half
    per_date = [coverage_width(obs[i], lo[i], hi[i])[0] for i in range(obs.shape[0])]
    return {
        "MAE": float(np.mean(np.abs(err[ok]))) if n else math.nan,
        "RMSE": float(np.sqrt(np.mean(err[ok] ** 2))) if n else math.nan,
        "coverage": cov,
        "width": width,
        "n": n,
        "need": float(np.quantile(ratio[ok & (half > 0)], CONFIDENCE)) if n else math.nan,
        "coverage_per_date": per_date,
        "MAE_per_date": [float(np.nanmean(np.abs(np.where(ok[i], err[i], np.nan)))) for i in range(len(err))],
        "need_per_date": [
            float(np.quantile(ratio[i][ok[i] & (half[i] > 0)], CONFIDENCE)) for i in range(len(err))
        ],
    }


def best_method(meta: dict) -> str:
    """The method METHOD best resolves to: the least overall MAE on the model's own backtest."""
    bt = meta.get("backtest") or {}
    maes = {m: float(bt.get(f"{m}_overall_mae", math.nan)) for m in METHODS}
    return min(maes, key=lambda m: maes[m] if math.isfinite(maes[m]) else math.inf)


def model_facts(model: str) -> dict:
    """What the model file says about its calibration (no TensorFlow: meta.json only)."""
    from deformation_forecast.core.intervals import horizon_quantiles
    from deformation_forecast.ml.modelfile import read_meta

    meta = read_meta(model)
    cal = meta.get("calibration") or {}
    bt = meta.get("backtest") or {}
    facts = {
        "interval_days": meta.get("interval_days"),
        "best": best_method(meta),
        "calibrated_horizons": len(cal.get("quantiles", [])),
        "calibration_pixels": cal.get("counts"),
        "calibration_origins": cal.get("origins", 1),
        "q90": [float(v) for v in horizon_quantiles(cal, CONFIDENCE, len(cal["quantiles"]))] if cal else [],
        "backtest_mae": {m: bt.get(f"{m}_overall_mae") for m in METHODS},
        "floor": cal.get("floor"),
        "trend_window": bt.get("trend_window"),
    }
    return facts


def acquired_targets(dates: list[dt.date], interval: int, n_test: int) -> int:
    """How many of the calibration's targets (the last `n_test` dates of the regular grid the worker
    resamples `dates` to, ending on the last date) are acquisitions, not interpolated values."""
    from deformation_forecast.core.resample import regular_grid

    grid = regular_grid(dates, interval, anchor="end")
    return sum(d in set(dates) for d in grid[len(grid) - n_test :]) if n_test else 0


def run_dataset(ds: Dataset, args, folder: str) -> dict:
    """Grid, train, forecast by each method and score one dataset; prints its tables."""
    split = grid_split(ds, args.data, folder)
    info = read_info(split.train)
    n_cells = int(split.cells.sum())
    print(
        f"\n== {ds.name}: {split.series.count} points, {len(split.series.dates)} dates "
        f"{split.series.dates[0]}..{split.series.dates[-1]}; grid {info.width} x {info.height} cells of "
        f"{ds.pixel:g} m ({ds.method}), {n_cells} cells hold a point; withheld the last {len(split.withheld)}: "
        f"{split.withheld[0]}..{split.withheld[-1]}",
        flush=True,
    )
    model, tres, t_train = train(split, ds, folder, args)
    facts = model_facts(model)
    interval = int(facts["interval_days"])
    facts["calibration_acquisitions"] = acquired_targets(info.dates, interval, facts["calibrated_horizons"])
    steps = max(1, math.ceil((split.withheld[-1] - info.dates[-1]).days / interval))
    truth = read_stack(split.full)[-len(split.withheld) :]
    rows: dict[str, dict] = {}
    pairs: list[tuple[int, int]] = []
    for method in METHODS:
        res = forecast(split, model, method, steps, folder)
        fdates = [dt.date.fromisoformat(d) for d in res["dates"]]
        pairs = matched(split.withheld, fdates)
        wi, fi = [p[0] for p in pairs], [p[1] for p in pairs]
        arrays = [read_stack(res[k])[fi][:, split.cells] for k in ("output", "output_lower", "output_upper")]
        rows[method] = score(truth[wi][:, split.cells], *arrays)
    print_tables(split, info.dates[-1], facts, tres, t_train, rows, pairs)
    return {
        "dataset": dataclasses.asdict(ds),
        "points": split.series.count,
        "dates": len(split.series.dates),
        "withheld": [d.isoformat() for d in split.withheld],
        "scored_dates": [split.withheld[j].isoformat() for j, _ in pairs],
        "grid": [info.width, info.height],
        "cells_with_points": n_cells,
        "train_seconds": t_train,
        "epochs_run": tres.get("epochs_run"),
        "model": facts,
        "scores": rows,
    }


def print_tables(split: Split, last: dt.date, facts: dict, tres: dict, t_train: float, rows, pairs) -> None:
    """The dataset's model facts, its score table and the per-date table."""
    scored = [split.withheld[j] for j, _ in pairs]
    print(
        f"trained in {t_train:.0f} s wall ({tres.get('epochs_run')} epochs) at {facts['interval_days']} d, "
        f"trend window {facts['trend_window']} dates; "
        f"intervals calibrated on {facts['calibrated_horizons']} horizon(s), "
        f"{min(facts['calibration_pixels'] or [0])} pixel-origins each ({facts['calibration_origins']} "
        "rolling origins), the first origin's target dates "
        f"{facts['calibration_acquisitions']} acquisition(s), the others interpolated; q90 per horizon "
        + ", ".join(f"{q:.2f}" for q in facts["q90"])
        + "; backtest MAE "
        + ", ".join(f"{m} {v:.2f}" for m, v in facts["backtest_mae"].items() if v is not None)
        + f" mm -> METHOD best = {facts['best']}"
    )
    print(
        f"scored: {len(scored)} of {len(split.withheld)} withheld dates are forecast dates "
        f"({', '.join(d.isoformat() for d in scored)}), {int(split.cells.sum())} cells with points"
    )
    print(f"{'method':<22}{'MAE mm':>9}{'RMSE mm':>9}{'cover 90%':>11}{'width mm':>10}{'need x':>8}{'n':>7}")
    for m, s in rows.items():
        label = m + (" (= best)" if m == facts["best"] else "")
        print(
            f"{label:<22}{s['MAE']:>9.2f}{s['RMSE']:>9.2f}{s['coverage']:>11.3f}{s['width']:>10.2f}"
            f"{s['need']:>8.2f}{s['n']:>7d}"
        )
    print("per scored date (days after the last trained date): coverage / MAE mm / need x")
    print(f"{'date':<12}{'days':>5}" + "".join(f"{m:>22}" for m in rows))
    for i, d in enumerate(scored):
        cells = (
            f"{rows[m]['coverage_per_date'][i]:.2f} / {rows[m]['MAE_per_date'][i]:.2f} / "
            f"{rows[m]['need_per_date'][i]:.2f}"
            for m in rows
        )
        print(f"{d.isoformat():<12}{(d - last).days:>5}" + "".join(f"{c:>22}" for c in cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--data", default=DATA, help="the folder holding maoxian_stamps/ and amsterdam_depsi/")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--max-seconds", type=int, default=90)
    ap.add_argument("--interval-days", type=int, default=0, help="training interval; 0 = the median")
    ap.add_argument("--small", action="store_true", help="smoke test: 1 epoch, 20 s")
    ap.add_argument("--json", help="write the scores here")
    args = ap.parse_args()
    if args.small:
        args.epochs, args.max_seconds = 1, 20
    print(machine())
    if not os.path.isdir(args.data):
        print(f"skipped: no data folder {args.data} (the shared Maoxian and DePSI exports)")
        return 0
    out = []
    with tempfile.TemporaryDirectory(prefix="bench_backtest_real_") as tmp:
        for name in args.datasets.split(","):
            out.append(run_dataset(DATASETS[name], args, tmp))
    if args.json:
        dump_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
