"""Forecast of 24 steps on a 2,000 x 2,000 x 156 stack (issue 8): wall time and peak memory vs the budget.

1. Generates the stack on disk, one 128-row strip and one band at a time (StackWriter: tiled,
   deflate), 12-day dates: subsidence bowls deepening in time (linear plus a slight acceleration),
   1 mm of noise, an incoherent (NaN) patch.
2. Trains a tiny network with the worker command ``train`` on a 128 x 128 crop generated from the
   same field and dates (a few samples, a couple of epochs: the forecast's cost does not depend on
   how well it was trained), then points the model file at the large grid (meta.json's ``grid``;
   the network is fully convolutional over its tiles, so it applies to any grid).
3. Runs the worker command ``forecast`` (24 steps) under ``/usr/bin/time -v`` for each memory
   budget (``memory_budget_mb``): wall time, the time of the first pass (read, resample, extremes)
   and of the block forecast (from the worker's progress lines), peak RSS of the worker, blocks.
   A first row gives the worker's baseline (``info``: Python, TensorFlow, one matmul).

    .venv/bin/python bench/bench_forecast_large.py                 # 2000 x 2000 x 156, budgets 2048, 512 MB
    .venv/bin/python bench/bench_forecast_large.py --small         # 500 x 500 x 60, under a minute
    .venv/bin/python bench/bench_forecast_large.py --workdir DIR --keep   # reuse / keep the stack

The stack is about 2.5 GB of float32 pixels (about 2.3 GB on disk); it goes to --workdir (default a
temporary folder under /tmp) and is removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PY = os.path.join(ROOT, ".venv", "bin", "python")
START = dt.date(2017, 1, 3)
STEP_DAYS = 12


def machine() -> str:
    cpu = platform.machine()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    osname = platform.platform()
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    gpu = "no GPU"
    try:
        p = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        if p.returncode == 0 and p.stdout.strip():
            gpu = p.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {cpu}, {osname}, {gpu}"


# -- the stack --------------------------------------------------------------------------------------


def bowls(size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 10
    centres = rng.uniform(0.05 * size, 0.95 * size, (n, 2))
    widths = rng.uniform(40, 160, n)  # pixels: several network tiles wide
    rates = rng.uniform(-120, -10, n)  # mm/yr
    return centres, widths, rates


def rate_field(size: int, r0: int, h: int, c0: int, w: int, seed: int = 0) -> np.ndarray:
    centres, widths, rates = bowls(size, seed)
    rows = np.arange(r0, r0 + h, dtype="float32")[:, None]
    cols = np.arange(c0, c0 + w, dtype="float32")[None]
    out = np.zeros((h, w), "float32")
    for (cy, cx), wd, v in zip(centres, widths, rates, strict=True):
        out += np.float32(v) * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / np.float32(2 * wd * wd))
    return out


def generate(path: str, size: int, bands: int, r0: int = 0, c0: int = 0, crop: int = 0, seed: int = 0):
    """The `size` scene (or its `crop` x `crop` window at (r0, c0)) written strip by strip."""
    from affine import Affine
    from rasterio.windows import Window

    from deformation_forecast.core.stack import StackWriter

    n = crop or size
    dates = [START + dt.timedelta(days=STEP_DAYS * k) for k in range(bands)]
    years = np.array([(d - START).days / 365.25 for d in dates], "float32")
    transform = Affine(20.0, 0, 400000.0 + 20.0 * c0, 0, -20.0, 4300000.0 - 20.0 * r0)
    rng = np.random.default_rng(seed + 1)
    strip = 128
    with StackWriter(path, dates, "EPSG:32647", transform, n, n, tags={"BENCH": f"size={size}"}) as w:
        for s0 in range(0, n, strip):
            h = min(strip, n - s0)
            rate = rate_field(size, r0 + s0, h, c0, n, seed)
            rows = np.arange(r0 + s0, r0 + s0 + h)[:, None]
            cols = np.arange(c0, c0 + n)[None]
            incoherent = (rows - 0.6 * size) ** 2 + (cols - 0.2 * size) ** 2 < (0.03 * size) ** 2
            win = Window(0, s0, n, h)
            for b, t in enumerate(years):
                band = rate * (t + np.float32(0.03) * t * t)
                band += rng.standard_normal((h, n), dtype="float32")
                band[incoherent] = np.nan
                w.write_band(b, band, window=win)


# -- the worker -------------------------------------------------------------------------------------


def worker(command: str, params: dict, folder: str, timed: bool = False) -> dict:
    """Run a worker command; returns its result plus 'wall' and the phases from its progress lines
    ('t_start': to the first progress line, after TensorFlow's import and the model's load;
    't_pass': to the end of the streamed pass) and, when `timed`, 'peak_rss_mb' and 'cpu_s'
    (user + system) from /usr/bin/time -v."""
    pfile = os.path.join(folder, f"{command}.json")
    with open(pfile, "w") as f:
        json.dump(params, f)
    tfile = os.path.join(folder, "time.txt")
    cmd = [PY, "-m", "deformation_forecast.ml", command, "--params", pfile]
    if timed:
        cmd = ["/usr/bin/time", "-v", "-o", tfile] + cmd
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.monotonic()
    t_start = t_pass = None
    result, lines = None, []
    phase = ["start"]
    peaks = {"start": 0, "pass": 0, "forecast": 0}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as p:
        done = threading.Event()
        poller = threading.Thread(target=_poll_rss, args=(p.pid, phase, peaks, done), daemon=True)
        poller.start()
        for line in p.stdout:
            lines.append(line)
            if not line.startswith("{"):
                continue
            obj = json.loads(line)
            msg = obj.get("message", "")
            if t_start is None and "progress" in obj:
                t_start = time.monotonic() - t0
                phase[0] = "pass"
            if msg.startswith("Reading and resampling"):
                t_pass = time.monotonic() - t0
            elif t_pass is not None:
                phase[0] = "forecast"
            if "result" in obj:
                result = obj["result"]
        err = p.stderr.read()
        done.set()
        poller.join()
    wall = time.monotonic() - t0
    if p.returncode or result is None:
        raise SystemExit(f"worker {command} failed:\n{''.join(lines)[-3000:]}\n{err[-3000:]}")
    result = dict(
        result,
        wall=wall,
        t_start=t_start,
        t_pass=t_pass,
        phase_rss_mb={k: v / 1024 for k, v in peaks.items()},
    )
    if timed:
        cpu = 0.0
        with open(tfile) as f:
            for line in f:
                if "Maximum resident set size" in line:
                    result["peak_rss_mb"] = int(line.split()[-1]) / 1024
                if "User time (seconds)" in line or "System time (seconds)" in line:
                    cpu += float(line.split()[-1])
        result["cpu_s"] = cpu
    return result


def _poll_rss(pid: int, phase: list, peaks: dict, done: threading.Event) -> None:
    """Largest VmRSS (kB) per phase of the process tree under `pid` (/usr/bin/time and the worker)."""

    def tree(p: int) -> list[int]:
        out = [p]
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    for c in f.read().split():
                        out += tree(int(c))
        except OSError:
            pass
        return out

    while not done.is_set():
        total = 0
        for q in tree(pid):
            try:
                with open(f"/proc/{q}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        peaks[phase[0]] = max(peaks[phase[0]], total)
        done.wait(0.2)


def regrid(model: str, out: str, stack: str) -> None:
    """Copy of `model` whose meta.json names the grid of `stack` (no TensorFlow needed)."""
    from deformation_forecast.core.stack import read_info
    from deformation_forecast.ml.modelfile import grid_of

    with zipfile.ZipFile(model) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(parts["meta.json"])
    meta["grid"] = grid_of(read_info(stack))
    parts["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in parts.items():
            z.writestr(n, b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--bands", type=int, default=156)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--budgets", default="2048,512", help="memory budgets (MB), comma-separated")
    ap.add_argument("--device", default="cpu", help="cpu | gpu | auto")
    ap.add_argument("--workdir", help="folder for the stack and outputs (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--small", action="store_true", help="500 x 500 x 60, budgets 2048 and 256 MB")
    args = ap.parse_args()
    if args.small:
        args.size, args.bands, args.budgets = 500, 60, "2048,256"
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    work = args.workdir or tempfile.mkdtemp(prefix="bench_forecast_large_", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    load0 = f"{os.getloadavg()[0]:.1f}"
    try:
        stack = os.path.join(work, f"stack_{args.size}_{args.bands}.tif")
        from deformation_forecast.core.stack import read_info

        if not (os.path.exists(stack) and read_info(stack).count == args.bands):
            t0 = time.monotonic()
            generate(stack, args.size, args.bands)
            print(f"stack generated in {time.monotonic() - t0:.0f} s: {stack}", flush=True)
        gb = args.size * args.size * args.bands * 4 / 1e9
        disk = os.path.getsize(stack) / 1e9

        # a tiny network trained on a crop of the same field and dates (reused from --workdir)
        model = os.path.join(work, f"large_{args.size}_{args.bands}.dfmodel")
        if not os.path.exists(model):
            crop = os.path.join(work, "crop.tif")
            c = 96 if args.small else 128
            generate(crop, args.size, args.bands, r0=args.size // 3, c0=args.size // 3, crop=c)
            model_crop = os.path.join(work, "crop.dfmodel")
            t0 = time.monotonic()
            train = {
                "input": crop,
                "output_model": model_crop,
                "epochs": 1 if args.small else 2,
                "samples_per_epoch": 8 if args.small else 32,
                "test_count": 4,
                "gru_epochs": 3 if args.small else 20,
                "tile_size": 64,
                "device": args.device,
                "seed": 1,
                "patience": 0,
            }
            res = worker("train", train, work)
            print(f"model trained on a {c} x {c} crop in {time.monotonic() - t0:.0f} s", flush=True)
            regrid(model_crop, model, stack)

        base = worker("info", {"device": args.device}, work, timed=True)
        head = (
            "run",
            "budget MB",
            "blocks",
            "kept dates",
            "start s",
            "pass s",
            "forecast s",
            "wall s",
            "CPU s",
            "peak RSS MB",
            "RSS - baseline MB",
            "peak RSS pass / forecast MB",
        )
        rows = [
            [
                "worker baseline (info)",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                f"{base['wall']:.0f}",
                f"{base['cpu_s']:.0f}",
            ]
            + [f"{base['peak_rss_mb']:.0f}", "0", "-"]
        ]
        for mb in budgets:
            params = {
                "input": stack,
                "model": model,
                "steps": args.steps,
                "device": args.device,
                "memory_budget_mb": mb,
                "output": os.path.join(work, f"forecast_{mb}.tif"),
                "output_rate": os.path.join(work, f"rate_{mb}.tif"),
            }
            res = worker("forecast", params, work, timed=True)
            rows.append(
                [
                    f"forecast {args.steps} steps",
                    str(mb),
                    str(res["blocks"]),
                    "memory" if res["kept_in_memory"] else "temp file",
                    f"{res['t_start']:.0f}",
                    f"{res['t_pass'] - res['t_start']:.0f}",
                    f"{res['wall'] - res['t_pass']:.0f}",
                    f"{res['wall']:.0f}",
                    f"{res['cpu_s']:.0f}",
                    f"{res['peak_rss_mb']:.0f}",
                    f"{res['peak_rss_mb'] - base['peak_rss_mb']:.0f}",
                    f"{res['phase_rss_mb']['pass']:.0f} / {res['phase_rss_mb']['forecast']:.0f}",
                ]
            )
            print(f"  budget {mb} MB done in {res['wall']:.0f} s", flush=True)
        print()
        tile = json.loads(zipfile.ZipFile(model).read("meta.json"))["tile"]
        print(
            f"Forecast of {args.steps} steps on a {args.size} x {args.size} x {args.bands} stack "
            f"({gb:.2f} GB of float32 pixels, {disk:.2f} GB on disk), device {res['device']}, network "
            f"tile {tile}; load average before / after: {load0} / {os.getloadavg()[0]:.1f}"
        )
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print(
            "\nstart: the worker's start, TensorFlow's import and the model's load; pass: the streamed pass "
            "(read, resample, per-date extremes, kept dates); forecast: the GRU and the blocks (network, "
            "blending, writing OUTPUT and OUTPUT_RATE). Peak RSS of the worker process (/usr/bin/time -v); "
            "the baseline is the worker with TensorFlow imported and one matmul done; the peaks per phase "
            "are sampled every 0.2 s from /proc."
        )
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
