"""Forecast accuracy on the sample scene: CNN-PhLSTM vs persistence and a per-pixel linear trend.

Trains on the whole observed ascending stack (or takes a trained model with --model), forecasts the
next 61 regular 12-day steps (two years) with the worker command ``forecast`` (a separate TensorFlow
process), and scores the first 20 and all 61 steps against the sample's noise-free future truth
(``truth_future_asc.tif``): MAE, RMSE, SSIM over the whole scene and MAE, RMSE over the deforming
area (pixels whose true displacement over the two forecast years exceeds --deforming mm). Baselines:
persistence (the last observation, gap-filled) and a per-pixel least-squares line over the last 40
acquisitions, extrapolated to the forecast dates.

    .venv/bin/python bench/bench_forecast.py [--scene DIR] [--model FILE.dfmodel]
        [--architecture cnn-phlstm] [--residual auto|trend|last|none] [--trend-window 0]
        [--epochs 12] [--samples 256] [--max-seconds 150] [--small] [--json FILE]

It forecasts with every METHOD (network, persistence, trend: the plugin's own simple methods, the
line's window chosen on the validation dates) and scores each forecast and its 90 % prediction
interval (OUTPUT_LOWER/OUTPUT_UPPER, issue 17): coverage and
mean width at 20 and 61 steps against the noisy future observations (the sample's
``observed_future_asc.tif``: the noise-free future plus the scene's own noise model drawn for the
dates after the last acquisition) and the truth.

Run it once: it trains a network on shared CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from deformation_forecast.core import metrics as mt  # noqa: E402
from deformation_forecast.core.dates import to_ordinal  # noqa: E402
from deformation_forecast.core.resample import fill_gaps  # noqa: E402
from deformation_forecast.core.stack import read_info, read_stack  # noqa: E402

PY = os.path.join(ROOT, ".venv", "bin", "python")
METHODS = ("network", "persistence", "trend")  # forecast's METHOD, each with its 90 % band


def worker(command: str, params: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(params, f)
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    p = subprocess.run(
        [PY, "-m", "deformation_forecast.ml", command, "--params", f.name],
        capture_output=True,
        text=True,
        env=env,
    )
    os.unlink(f.name)
    result = None
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if "message" in obj and not obj["message"].startswith("step "):
                print("  ", obj["message"][:160], flush=True)
            result = obj.get("result", result)
    if p.returncode or result is None:
        raise SystemExit(f"worker {command} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return result


def linear_trend(obs: np.ndarray, dates, future, last_n: int = 40) -> np.ndarray:
    t = to_ordinal(dates[-last_n:])
    tf = to_ordinal(future)
    y = obs[-last_n:].reshape(last_n, -1).astype("float64")
    a = np.vstack([t - t.mean(), np.ones_like(t)]).T
    ok = np.isfinite(y)
    coef = np.full((2, y.shape[1]), np.nan)
    full = ok.all(axis=0)
    coef[:, full] = np.linalg.lstsq(a, y[:, full], rcond=None)[0]
    for j in np.flatnonzero(~full & (ok.sum(axis=0) >= 2)):
        coef[:, j] = np.linalg.lstsq(a[ok[:, j]], y[ok[:, j], j], rcond=None)[0]
    pred = (np.vstack([tf - t.mean(), np.ones_like(tf)]).T @ coef).astype("float32")
    return pred.reshape((len(future),) + obs.shape[1:])


def score(pred: np.ndarray, truth: np.ndarray, area: np.ndarray, data_range: float) -> dict[str, float]:
    _, whole = mt.stack_metrics(pred, truth, data_range)
    p = np.where(area, pred, np.nan)
    _, deform = mt.stack_metrics(p, np.where(area, truth, np.nan), data_range)
    return {
        "MAE": whole["MAE"],
        "RMSE": whole["RMSE"],
        "SSIM": whole["SSIM"],
        "MAE_def": deform["MAE"],
        "RMSE_def": deform["RMSE"],
    }


def interval_scores(observed_path, truth, lower_path, upper_path, area, nan) -> dict:
    """Coverage and mean width of the forecast's 90 % band at 20 and all steps, against the noisy
    future observations (the sample's observed_future_asc.tif, what the band promises) and the
    noise-free truth, whole scene and deforming."""
    from deformation_forecast.core.intervals import coverage_width

    if not os.path.exists(observed_path):
        raise SystemExit(
            f"{observed_path} is missing: regenerate the scene (python -m deformation_forecast.core.sample)"
        )
    lo, hi = read_stack(lower_path), read_stack(upper_path)
    noisy = np.where(nan, np.nan, read_stack(observed_path))
    out = {}
    print(
        f"\n90 % prediction interval{'':<8}{'coverage':>10}{'width mm':>10}{'cov def':>10}{'width def':>10}"
    )
    for h in (20, truth.shape[0]):
        for name, ref in (("noisy future obs", noisy), ("noise-free truth", truth)):
            c, w, _ = coverage_width(ref[:h], lo[:h], hi[:h])
            cd, wd, _ = coverage_width(ref[:h][:, area], lo[:h][:, area], hi[:h][:, area])
            out[f"{h}/{name}"] = {"coverage": c, "width": w, "coverage_def": cd, "width_def": wd}
            print(f"{h:<4}{name:<28}{c:>10.3f}{w:>10.2f}{cd:>10.3f}{wd:>10.2f}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", help="sample scene folder (generated if not given)")
    ap.add_argument("--model", help="a trained .dfmodel of stack_asc.tif (skips training)")
    ap.add_argument("--architecture", default="cnn-phlstm")
    ap.add_argument("--residual", default="auto", help="auto (trend for cnn-phlstm), trend, last, none")
    ap.add_argument("--trend-window", type=int, default=0, help="dates in the trend line; 0 = chosen")
    ap.add_argument("--json", help="write the scores here")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--max-seconds", type=int, default=150)
    ap.add_argument("--deforming", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=42, help="the generated sample scene's seed (its noise)")
    ap.add_argument("--small", action="store_true", help="smoke test: 64 x 64 scene, 2 short epochs")
    args = ap.parse_args()
    if args.small:
        args.epochs, args.samples, args.max_seconds = 2, 32, 30
    tmp = tempfile.mkdtemp(prefix="bench_forecast_")
    scene = args.scene
    if not scene:
        from deformation_forecast.core.sample import make_sample_scene

        scene = os.path.join(tmp, "scene")
        make_sample_scene(scene, size=64 if args.small else 200, seed=args.seed)
    stack = os.path.join(scene, "stack_asc.tif")
    info = read_info(stack)
    obs = read_stack(stack)
    truth_future_path = os.path.join(scene, "truth_future_asc.tif")
    future = read_info(truth_future_path).dates
    truth = read_stack(truth_future_path)
    model = args.model
    if not model:
        model = os.path.join(tmp, "model.dfmodel")
        t0 = time.monotonic()
        res = worker(
            "train",
            {
                "input": stack,
                "output_model": model,
                "architecture": args.architecture,
                "residual": args.residual,
                "trend_window": args.trend_window,
                "interval_days": 12,
                "epochs": args.epochs,
                "samples_per_epoch": args.samples,
                "max_seconds": args.max_seconds,
                "device": "auto",
                "seed": 42,
                "test_count": 20,
            },
        )
        print(
            f"trained {args.architecture} in {time.monotonic() - t0:.0f} s wall ({res['epochs_run']} epochs); "
            f"test one-step {json.dumps({k: round(v, 4) for k, v in res['test_metrics'].items()})}"
        )
    runs = {}  # METHOD -> (forecast, lower, upper) paths
    for method in METHODS:
        paths = tuple(os.path.join(tmp, f"{k}_{method}.tif") for k in ("forecast", "lower", "upper"))
        t0 = time.monotonic()
        fc_res = worker(
            "forecast",
            {
                "input": stack,
                "model": model,
                "steps": len(future),
                "device": "auto",
                "output": paths[0],
                "output_lower": paths[1],
                "output_upper": paths[2],
                "confidence": 0.9,
                "method": method,
            },
        )
        print(f"forecast ({method}) {fc_res['steps']} steps in {time.monotonic() - t0:.0f} s wall")
        runs[method] = paths
    out = runs["network"][0]
    fc = read_stack(out)
    fc_dates = read_info(out).dates
    if fc_dates != future:
        print(f"note: forecast dates {fc_dates[0]}..{fc_dates[-1]}, truth {future[0]}..{future[-1]}")
    filled = fill_gaps(obs, info.dates)
    persistence = np.repeat(filled[-1:], len(future), axis=0)
    trend = linear_trend(filled, info.dates, future)
    nan = ~np.isfinite(obs[-1])
    truth = np.where(nan, np.nan, truth)
    area = np.abs(truth[-1] - truth[0]) > args.deforming
    lo, hi = np.nanmin(truth), np.nanmax(truth)
    rng = float(hi - lo)
    print(
        f"\ndeforming area: {int(area.sum())} px (> {args.deforming:g} mm over the 2 years); SSIM range {rng:.0f} mm"
    )
    cols = ["MAE", "RMSE", "SSIM", "MAE_def", "RMSE_def"]
    label = args.architecture if args.residual == "auto" else f"{args.architecture}/{args.residual}"
    scores = {}
    print(f"{'horizon':<9}{'method':<22}" + "".join(f"{c:>11}" for c in cols))
    for h in (20, len(future)):
        for name, pred in (
            ("persistence", persistence),
            ("linear trend (40)", trend),
            (label, fc),
            ("METHOD persistence", read_stack(runs["persistence"][0])),
            ("METHOD trend", read_stack(runs["trend"][0])),
        ):
            s = score(pred[:h], truth[:h], area, rng)
            scores[f"{h}/{name}"] = s
            print(f"{h:<9}{name:<22}" + "".join(f"{s[c]:>11.4f}" for c in cols))
    observed_future = os.path.join(scene, "observed_future_asc.tif")
    for method, (_, lower, upper) in runs.items():
        print(f"\nMETHOD {method}:", end="")
        key = "interval" if method == "network" else f"interval/{method}"
        scores[key] = interval_scores(observed_future, truth, lower, upper, area, nan)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"label": label, "scores": scores, "train": res if not args.model else None}, f, indent=1
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
