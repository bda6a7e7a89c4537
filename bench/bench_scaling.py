"""Profiles and benchmark comparison on stacks of increasing size (issue 8): the time should follow
the pixels touched, not the size of the stack.

Stacks of 1000^2, 3000^2 and 6000^2 pixels x 156 dates (StackWriter's layout: 128 px tiles,
deflate; the 6000^2 one is reused from bench_memory's workdir when it is there) share their origin,
so the SAME 10 profile lines (600 px each) and the SAME 40 leveling benchmarks (40 m radius) lie on
the same pixels and tiles of each. For each stack, in fresh processes of the venv's python:

- profiles: `core.profiles.extract_profiles` (bilinear, all dates) - pixels touched = the pixels of
  the windows it reads, all bands counted (ReadStats);
- benchmarks: `core.benchmarks.read_benchmarks` + `sample_circles` + `compare` - pixels touched = the
  pixels of the windows around each benchmark, all bands counted;

best of --repeat runs (warm page cache), then once each through `qgis_process run
deformation_forecast:extractprofiles / benchmarkcompare` (wall time, QGIS start included).

    .venv/bin/python bench/bench_scaling.py            # 1000^2, 3000^2, 6000^2 x 156
    .venv/bin/python bench/bench_scaling.py --small    # 300^2, 600^2, 1200^2 x 60
    .venv/bin/python bench/bench_scaling.py --sizes 1000,3000 --no-qgis
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as bc  # noqa: E402

ROOT = bc.ROOT
INC = 34.17
RADIUS = 40.0
MEMORY_WORKDIR = "/tmp/df_bench_memory"


def lines_and_points(s0: int, length_px: float, n_lines: int = 10, n_points: int = 40, seed: int = 3):
    """Lines of `length_px` pixels and benchmark pixel positions inside the s0 x s0 top-left square
    (every stack of this benchmark contains it)."""
    rng = np.random.default_rng(seed)
    lo, hi = 0.03 * s0, 0.97 * s0
    lines = []
    while len(lines) < n_lines:
        ang = rng.uniform(0, np.pi)
        c0, r0 = rng.uniform(lo, hi, 2)
        c1, r1 = c0 + length_px * np.cos(ang), r0 + length_px * np.sin(ang)
        if lo <= c1 <= hi and lo <= r1 <= hi:
            lines.append((f"L{len(lines) + 1}", [(c0, r0), (c1, r1)]))
    pts = rng.integers(int(0.05 * s0), int(0.95 * s0), (n_points, 2))
    return lines, pts


def _map(col: float, row: float) -> tuple[float, float]:
    return (bc.ORIGIN[0] + col * bc.RES, bc.ORIGIN[1] - row * bc.RES)


def write_inputs(folder: str, s0: int, length_px: float, dates: list[dt.date]) -> tuple[str, str]:
    lines, pts = lines_and_points(s0, length_px)
    gj = os.path.join(folder, f"lines_{s0}_{length_px:g}.geojson")
    feats = [
        {
            "type": "Feature",
            "properties": {"name": name},
            "geometry": {"type": "LineString", "coordinates": [list(_map(c, r)) for c, r in rc]},
        }
        for name, rc in lines
    ]
    with open(gj, "w", encoding="utf-8") as f:
        json.dump(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32647"}},
                "features": feats,
            },
            f,
        )
    bm = os.path.join(folder, f"benchmarks_{s0}_{len(dates)}.csv")
    surveys = dates[1::3]  # a survey 2 days after every 3rd acquisition
    surveys = [d + dt.timedelta(days=2) for d in surveys]
    t = np.array([(d - bc.START).days / 365.25 for d in surveys])
    rng = np.random.default_rng(4)
    with open(bm, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "x", "y", *(f"D{d:%Y%m%d}" for d in surveys)])
        for k, (r, c) in enumerate(pts):
            x, y = _map(c + 0.5, r + 0.5)
            vals = bc.rate_at(s0, [r], [c])[0] * t + rng.normal(0, 1, t.size)
            w.writerow([f"BM{k + 1:02d}", f"{x:.2f}", f"{y:.2f}", *(f"{v:.1f}" for v in vals)])
    return gj, bm


def _read_lines(path: str):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    return [(ft["properties"]["name"], [np.array(ft["geometry"]["coordinates"])]) for ft in doc["features"]]


# --------------------------------------------------------------------------------- child processes


def _block(stack: str) -> tuple[int, int]:
    import rasterio

    with rasterio.open(stack) as src:
        return src.block_shapes[0]


def child_profiles(stack: str, lines_path: str) -> dict:
    from deformation_forecast.core.profiles import ProfileOptions, ReadStats, extract_profiles
    from deformation_forecast.core.stack import read_info

    read_info(stack)  # GDAL drivers and PROJ load outside the measurement
    lines = _read_lines(lines_path)
    stats = ReadStats()
    t0, c0 = time.perf_counter(), time.process_time()
    profs = extract_profiles(stack, lines, ProfileOptions(method="bilinear"), stats=stats)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    # the tiles GDAL decodes: those holding a sample's bilinear support (2 x 2 pixels)
    info = read_info(stack)
    tiles = set()
    inv = ~info.transform
    bh, bw = _block(stack)
    for p in profs:
        col, row = inv * (p.x, p.y)
        r0, c0 = np.floor(np.asarray(row) - 0.5).astype(int), np.floor(np.asarray(col) - 0.5).astype(int)
        for dr in (0, 1):
            for dc in (0, 1):
                r = np.clip(r0 + dr, 0, info.height - 1)
                c = np.clip(c0 + dc, 0, info.width - 1)
                tiles |= set(zip((r // bh).tolist(), (c // bw).tolist(), strict=True))
    return {
        "seconds": secs,
        "cpu": cpu,
        "tile_pixels": len(tiles) * bh * bw * info.count,
        "pixels": stats.pixels,
        "windows": stats.windows,
        "samples": int(sum(p.size for p in profs)),
        "nan": int(sum(np.isnan(p.values).sum() for p in profs)),
    }


def child_benchmarks(stack: str, csv_path: str) -> dict:
    import math

    from deformation_forecast.core import benchmarks as cb
    from deformation_forecast.core.stack import read_info

    read_info(stack)
    t0, c0 = time.perf_counter(), time.process_time()
    info = read_info(stack)
    bms = cb.read_benchmarks(csv_path)
    sampled = cb.sample_circles(stack, info, bms.x, bms.y, RADIUS)
    cmp = cb.compare(bms, sampled, info.dates, INC, 12)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    # the windows sample_circles reads (same arithmetic), all bands
    inv = ~info.transform
    rx, ry = info.res
    pixels = 0
    bh, bw = _block(stack)
    tiles = set()
    for x, y in zip(bms.x, bms.y, strict=True):
        col, row = inv * (x, y)
        pc, pr = RADIUS / rx + 1, RADIUS / ry + 1
        c0, c1 = max(0, math.floor(col - pc)), min(info.width, math.ceil(col + pc))
        r0, r1 = max(0, math.floor(row - pr)), min(info.height, math.ceil(row + pr))
        pixels += (c1 - c0) * (r1 - r0) * info.count
        tiles |= {
            (r, c) for r in range(r0 // bh, (r1 - 1) // bh + 1) for c in range(c0 // bw, (c1 - 1) // bw + 1)
        }
    return {
        "seconds": secs,
        "cpu": cpu,
        "pixels": pixels,
        "tile_pixels": len(tiles) * bh * bw * info.count,
        "pairs": len(cmp.rows),
        "rmse": cmp.overall.get("rmse"),
    }


def _child(src: str, *args: str) -> dict:
    p = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", *args],
        capture_output=True,
        env=dict(os.environ, DF_BENCH_SRC=src),
        text=True,
        cwd=ROOT,
    )
    if p.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _commit() -> str:
    p = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return p.stdout.strip()[:70]


def _qgis(alg: str, params: list[str], env: dict) -> tuple[int, float]:
    cmd = [
        os.path.join(ROOT, "scripts", "qgis_process.sh"),
        "run",
        f"deformation_forecast:{alg}",
        "--",
        *params,
    ]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        print(
            f"  qgis_process {alg} failed ({p.returncode}): {p.stdout[-500:]} {p.stderr[-1500:]}",
            file=sys.stderr,
        )
    return p.returncode, wall


# ------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="300^2, 600^2, 1200^2 x 60")
    ap.add_argument("--sizes", default="1000,3000,6000")
    ap.add_argument("--bands", type=int, default=156)
    ap.add_argument("--length", type=float, default=600, help="profile line length in pixels")
    ap.add_argument("--repeat", type=int, default=5, help="rounds over all sizes; the best is kept")
    ap.add_argument("--workdir", default="/tmp/df_bench_scaling")
    ap.add_argument("--no-qgis", action="store_true", help="skip the qgis_process runs")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        kind, stack, path = a.child
        print(
            json.dumps(child_profiles(stack, path) if kind == "profiles" else child_benchmarks(stack, path))
        )
        return 0
    if a.small:
        a.sizes, a.bands, a.length, a.repeat = "300,600,1200", 60, 180, 2
        a.workdir = a.workdir + "_small" if a.workdir == "/tmp/df_bench_scaling" else a.workdir

    print(bc.machine(), flush=True)
    sizes = sorted(int(s) for s in a.sizes.split(","))
    os.makedirs(a.workdir, exist_ok=True)
    dates = bc.dates_for(a.bands)
    stacks = {}
    for s in sizes:
        reuse = os.path.join(MEMORY_WORKDIR, f"stack_{s}x{s}x{a.bands}.tif")
        path = (
            reuse
            if bc.stack_ok(reuse, s, a.bands)
            else os.path.join(a.workdir, f"stack_{s}x{s}x{a.bands}.tif")
        )
        if not bc.stack_ok(path, s, a.bands):
            print(f"generating {path} ...", flush=True)
            t0 = time.perf_counter()
            bc.generate_stack(path, s, dates)
            print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
        stacks[s] = path
    lines_path, bm_path = write_inputs(a.workdir, sizes[0], a.length, dates)
    print(f"commit: {_commit()}", flush=True)

    from bench_memory import build_plugin

    # one version of the code for every measurement: a snapshot of the last commit
    plugin = build_plugin(os.path.join(a.workdir, "plugin"))
    prof_dir = os.path.join(a.workdir, "qgis_profile")
    os.makedirs(prof_dir, exist_ok=True)
    env = dict(
        os.environ, QGIS_PLUGINPATH=plugin, QGIS_CUSTOM_CONFIG_PATH=prof_dir, QT_QPA_PLATFORM="offscreen"
    )

    # rounds over all sizes, so that a busy spell of the machine does not fall on one size only
    runs: dict = {s: {"profiles": [], "benchmarks": []} for s in stacks}
    for k in range(a.repeat):
        for s, path in stacks.items():
            runs[s]["profiles"].append(_child(plugin, "profiles", path, lines_path))
            runs[s]["benchmarks"].append(_child(plugin, "benchmarks", path, bm_path))
            rp, rb = runs[s]["profiles"][-1], runs[s]["benchmarks"][-1]
            print(
                f"  round {k + 1}, {s}: profiles {rp['seconds']:.2f} s (cpu {rp['cpu']:.2f}), "
                f"benchmarks {rb['seconds']:.2f} s (cpu {rb['cpu']:.2f})",
                flush=True,
            )
    rows = []
    out = os.path.join(a.workdir, "out")
    os.makedirs(out, exist_ok=True)
    for s, path in stacks.items():
        prof = min(runs[s]["profiles"], key=lambda r: r["seconds"])
        bm = min(runs[s]["benchmarks"], key=lambda r: r["seconds"])
        prof["cpu"] = min(r["cpu"] for r in runs[s]["profiles"])
        bm["cpu"] = min(r["cpu"] for r in runs[s]["benchmarks"])
        qp = qb = (None, float("nan"))
        if not a.no_qgis:
            qp = _qgis(
                "extractprofiles",
                [f"INPUT={path}", f"LINES={lines_path}", "ID_FIELD=name", "INTERPOLATION=1",
                 f"OUTPUT={os.path.join(out, f'profiles_{s}.gpkg')}", f"OUTPUT_CSV={os.path.join(out, f'profiles_{s}.csv')}"],
                env,
            )  # fmt: skip
            qb = _qgis(
                "benchmarkcompare",
                [f"INPUT={path}", f"BENCHMARKS={bm_path}", f"INCIDENCE={INC}", f"RADIUS={RADIUS:g}",
                 f"OUTPUT={os.path.join(out, f'bm_{s}.csv')}"],
                env,
            )  # fmt: skip
        rows.append((s, os.path.getsize(path) / 1e9, prof, bm, qp, qb))

    print()
    print(bc.machine())
    print(
        f"{a.bands} dates; 10 lines of {a.length:g} px (bilinear, all dates) and 40 benchmarks (radius "
        f"{RADIUS:g} m = {RADIUS / bc.RES:g} px) on the same pixels of every stack; core: best of {a.repeat} "
        "(warm page cache; wall and CPU seconds each the best of the runs: CPU time is what other "
        "processes on a shared machine do not inflate); qgis_process: one run, QGIS start included"
    )
    print(
        "a profile reads windows of up to 64 px around its samples (all dates); a benchmark a window of "
        "the pixels within its radius; GDAL decodes the 128 x 128 tiles holding them"
    )
    for title, k, qk in (("extractprofiles", 2, 4), ("benchmarkcompare", 3, 5)):
        print()
        head = (
            f"{title + ' on':<22}{'GB on disk':>11}{'px touched':>12}{'tile px':>10}{'wall s':>9}{'cpu s':>8}"
            f"{'wall s/M px':>13}{'cpu s/M tile px':>17}{'qgis_process s':>16}"
        )
        print(head)
        print("-" * len(head))
        for r in rows:
            s, gb, res, q = r[0], r[1], r[k], r[qk]
            mpx, tpx = res["pixels"] / 1e6, res["tile_pixels"] / 1e6
            qs = f"{q[1]:.1f}" if q[0] == 0 else ("-" if q[0] is None else f"rc {q[0]}")
            print(
                f"{f'{s} x {s} x {a.bands}':<22}{gb:>11.2f}{f'{mpx:,.1f} M':>12}{f'{tpx:,.0f} M':>10}"
                f"{res['seconds']:>9.2f}{res['cpu']:>8.2f}{res['seconds'] / max(mpx, 1e-9):>13.4f}"
                f"{res['cpu'] / max(tpx, 1e-9):>17.5f}{qs:>16}"
            )
    print(
        "px touched: pixels of the windows read, all dates; tile px: pixels of the 128 x 128 tiles "
        "holding them (what GDAL decodes), all dates"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
