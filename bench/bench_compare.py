"""Table III on the sample scene: comparemodels' core (baselines here, networks in the worker).

Generates the sample scene (core.sample, 200 x 200 px, 156 irregular ascending dates), puts it on the
networks' regular 12-day grid, keeps the last 20 frames for test (time step 5, 80/20 train/val),
fits persistence, the linear trend, SVR and MLP in this process and trains CNN-LSTM and CNN-PhLSTM
with the worker command `train` (a separate TensorFlow process, as comparemodels does), then prints a
Table III-style table with this machine's train/predict times next to the paper's numbers.

    .venv/bin/python bench/bench_compare.py [--size 200] [--epochs 3] [--max-seconds 300]
                                            [--no-networks] [--small]

The paper's numbers come from its Jinchuan data (7 years, 450 x 450 px) and its hardware; the sample
scene is synthetic, so compare rankings and orders of magnitude, not values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from deformation_forecast.core import baselines as bl  # noqa: E402
from deformation_forecast.core import evaluation as ev  # noqa: E402
from deformation_forecast.core.stack import read_info, read_stack  # noqa: E402
from tests import inmemory_comparison as imc  # noqa: E402  (the in-memory oracle, kept in the tests)


def train_network(arch: str, stack: str, args, tmp: str, test_dates) -> bl.Forecasts:
    """`python -m deformation_forecast.ml train` as comparemodels runs it; returns its predictions."""
    params = {
        "input": stack,
        "architecture": arch,
        "time_step": args.time_step,
        "test_count": args.test_count,
        "validation_fraction": 0.2,
        "epochs": args.epochs,
        "device": "auto",
        "seed": 42,
        "max_seconds": args.max_seconds,
        "output_model": os.path.join(tmp, f"{arch}.dfmodel"),
        "predictions": os.path.join(tmp, f"{arch}.npz"),
    }
    pfile = os.path.join(tmp, f"{arch}.json")
    with open(pfile, "w", encoding="utf-8") as f:
        json.dump(params, f)
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "deformation_forecast.ml", "train", "--params", pfile],
        capture_output=True,
        text=True,
        env=env,
    )
    result = None
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if "result" in obj:
                result = obj["result"]
            elif "error" in obj:
                print(f"  {arch}: {obj['error']}", file=sys.stderr)
    if p.returncode != 0 or result is None:
        raise RuntimeError(f"{arch} training failed ({p.returncode}):\n{p.stderr[-3000:]}")
    print(
        f"  {arch}: {result.get('epochs_run')} epochs, worker wall {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return bl.load_network_predictions(params["predictions"], arch, test_dates)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--time-step", type=int, default=5)
    ap.add_argument("--test-count", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-seconds", type=int, default=300, help="training budget per network")
    ap.add_argument("--no-networks", action="store_true")
    ap.add_argument("--small", action="store_true", help="quick smoke run: 64 px, no networks")
    ap.add_argument("--report", help="also write the HTML report here")
    args = ap.parse_args(argv)
    if args.small:
        args.size, args.no_networks = 64, True

    from deformation_forecast.core.sample import make_sample_scene

    with tempfile.TemporaryDirectory(prefix="bench_compare_") as tmp:
        t0 = time.perf_counter()
        scene = make_sample_scene(os.path.join(tmp, "scene"), size=args.size, seed=42)
        stack = scene["stack_asc"]
        info = read_info(stack)
        data = read_stack(stack)
        cmp = imc.prepare_comparison(data, info.dates, args.time_step, args.test_count, 0.2)
        print(
            f"sample scene {info.width} x {info.height} px, {info.count} acquisitions "
            f"({time.perf_counter() - t0:.1f} s to generate); regular {cmp.interval}-day grid of "
            f"{len(cmp.dates)} frames; {cmp.split.describe()}; {cmp.interpolated} grid dates interpolated",
            flush=True,
        )
        forecasts = []
        for name in bl.BASELINES:
            f = imc.run_baseline(bl.make_baseline(name, args.time_step), cmp.frames, cmp.dates, cmp.split)
            print(
                f"  {name}: train {f.train_seconds:.1f} s, predict {f.predict_seconds:.1f} s; {f.notes}",
                flush=True,
            )
            forecasts.append(f)
        if not args.no_networks:
            for arch in ("cnn-lstm", "cnn-phlstm"):
                try:
                    f = train_network(arch, stack, args, tmp, cmp.test_dates)
                except RuntimeError as e:
                    print(f"  {arch}: skipped: {e}", file=sys.stderr)
                    continue
                if f.notes:
                    print(f"  {arch}: {f.notes}", file=sys.stderr)
                forecasts.append(f)
        rows, L = imc.comparison_rows(forecasts, cmp.observed_test)
        print(f"\nTable III on the sample scene (data range L = {L:.1f} mm; PSNR = 10 log10(L^2/MSE))")
        print("one-step-ahead on the test set (the paper's protocol), the paper's values below each model:")
        print(ev.text_table([r for r in rows if r["mode"] == "one-step"]))
        print("\niterative over the 20-frame test horizon (predictions fed back):")
        print(ev.text_table([r for r in rows if r["mode"] == "iterative"], with_paper=False))
        if args.report:
            shown = ev.pick_dates(len(cmp.test_dates))
            page = ev.comparison_report_html(
                rows,
                [ev.model_figures(f, cmp.observed_test, shown) for f in forecasts],
                ev.Timeline.of(cmp.dates, cmp.observed, cmp.test_dates),
                L,
                f"Regular interval {cmp.interval} days; {cmp.split.describe()}.",
            )
            with open(args.report, "w", encoding="utf-8") as fh:
                fh.write(page)
            print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
