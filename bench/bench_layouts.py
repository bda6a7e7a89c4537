"""Benchmark of the stack's file layout (issue 22): the same data in each layout users bring, every
streamed algorithm on each, as ratios to the best layout.

One stack is generated in the plugin's own layout (core.stack.StackWriter), then rewritten with
gdal_translate / gdalbuildvrt into: pixel- vs band-interleaved, 128/256/512 px tiles vs strips (one
row per strip, one strip per band), deflate / LZW / ZSTD / none, BigTIFF, a VRT of single-date
files, a COG. Each algorithm runs on each layout in a fresh child process (the core functions the
Processing algorithms call, after the input check every algorithm runs, core.stack.check_values,
inside GDAL's block cache of the default 2 GB budget); the child reports wall and CPU seconds and
the bytes it read (/proc/self/io ``rchar``: what GDAL pulled from the files, page cache or not).

    .venv/bin/python bench/bench_layouts.py               # 3000 x 3000 x 60 (about 2 GB per layout)
    .venv/bin/python bench/bench_layouts.py --small       # 400 x 400 x 24, a quick check
    .venv/bin/python bench/bench_layouts.py --size 1000 --bands 30 --algs check,rate

Algorithms: check (the input check alone; the least of 5 runs, as it takes under a second),
profiles (extractprofiles: 6 lines of 0.6 x the raster's side, every date), rate (deformationrate, linear), los (losvertical, constant incidence), evaluate
(evaluateforecast: the last 10 dates of the stack against themselves), faults (faultlithology: 3
faults, 4 units, history of every date), forecast (the forecast's pass over the stack,
ml.forecast.stream_regular: every window resampled to the regular interval, the last 20 regular
dates kept in its tail file and each pixel's interval scale measured; what comes after reads only
that tail file, written by the plugin in one layout, so the network's part does not depend on the
input's layout and is not timed here: it needs a trained network for the grid).
The files are written to --dir (default a temporary folder) and removed unless --keep; with --keep
the files an earlier run kept in --dir are used again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as bc  # noqa: E402

# name: gdal_translate creation options (None: special, see make_layout)
LAYOUTS: dict[str, list[str] | None] = {
    "plugin (band, 128, deflate)": [],
    "pixel, 512, none": [
        "INTERLEAVE=PIXEL",
        "TILED=YES",
        "BLOCKXSIZE=512",
        "BLOCKYSIZE=512",
        "COMPRESS=NONE",
    ],
    "pixel, 256, deflate": [
        "INTERLEAVE=PIXEL",
        "TILED=YES",
        "BLOCKXSIZE=256",
        "BLOCKYSIZE=256",
        "COMPRESS=DEFLATE",
    ],
    "pixel, 128, lzw": ["INTERLEAVE=PIXEL", "TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128", "COMPRESS=LZW"],
    "band, 256, zstd": ["INTERLEAVE=BAND", "TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=ZSTD"],
    "band, 512, none": ["INTERLEAVE=BAND", "TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "COMPRESS=NONE"],
    "band, 128, deflate, BigTIFF": [
        "INTERLEAVE=BAND",
        "TILED=YES",
        "BLOCKXSIZE=128",
        "BLOCKYSIZE=128",
        "COMPRESS=DEFLATE",
        "BIGTIFF=YES",
    ],  # fmt: skip
    "pixel, strips of 1 row, none": ["INTERLEAVE=PIXEL", "TILED=NO", "BLOCKYSIZE=1", "COMPRESS=NONE"],
    "band, strips (GDAL default), none": ["INTERLEAVE=BAND", "TILED=NO", "COMPRESS=NONE"],
    "band, one strip per band, deflate": None,
    "VRT of single-date files": None,
    "COG (deflate)": None,
}
ALGS = ("check", "profiles", "rate", "los", "evaluate", "faults", "forecast")


def _gdal(args: list[str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def make_layout(name: str, src: str, dst: str, size: int, bands: int) -> str:
    """`src` (the plugin's layout) rewritten as layout `name` at `dst` (or beside it)."""
    co = LAYOUTS[name]
    if co is not None:
        if not co:
            shutil.copy(src, dst)
            return dst
        _gdal(["gdal_translate", "-q", *(a for c in co for a in ("-co", c)), src, dst])
        return dst
    if name.startswith("COG"):
        _gdal(["gdal_translate", "-q", "-of", "COG", "-co", "COMPRESS=DEFLATE", src, dst])
        return dst
    if name.startswith("band, one strip"):
        _gdal(["gdal_translate", "-q", "-co", "INTERLEAVE=BAND", "-co", f"BLOCKYSIZE={size}", "-co", "COMPRESS=DEFLATE", src, dst])  # fmt: skip
        return dst
    # a VRT of single-date GeoTIFFs (each tiled 256, deflate), dates in the band descriptions
    import rasterio
    from osgeo import gdal

    with rasterio.open(src) as s:
        labels = list(s.descriptions)
    folder = dst + ".d"
    os.makedirs(folder, exist_ok=True)
    singles = []
    for b, lab in enumerate(labels, start=1):
        one = os.path.join(folder, f"d_{lab.replace('-', '')}.tif")
        _gdal(["gdal_translate", "-q", "-b", str(b), "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE", src, one])
        singles.append(one)
    vrt = dst[:-4] + ".vrt"
    ds = gdal.BuildVRT(vrt, singles, separate=True)
    for b, lab in enumerate(labels, start=1):
        ds.GetRasterBand(b).SetDescription(lab)
    ds = None
    return vrt


def _existing(work: str, i: int) -> str | None:
    """Layout `i` kept in `work` by an earlier run with --keep, if there."""
    for p in (os.path.join(work, f"layout{i}.tif"), os.path.join(work, f"layout{i}.vrt")):
        if os.path.exists(p):
            return p
    return None


def _lines(size: int) -> list:
    import numpy as np

    t = bc.transform_for()
    rng = np.random.default_rng(5)
    out = []
    for i in range(6):
        c0, r0 = rng.uniform(0.05, 0.35, 2) * size
        ang = rng.uniform(0, np.pi / 2)
        c1, r1 = c0 + 0.6 * size * np.cos(ang), r0 + 0.6 * size * np.sin(ang)
        out.append((f"L{i}", [np.array([t * (c0, r0), t * (c1, r1)])]))
    return out


def _units(size: int) -> tuple[list[dict], list[str]]:
    t = bc.transform_for()
    geoms, names = [], []
    for i, (c0, r0) in enumerate(((0, 0), (0.5, 0), (0, 0.5), (0.5, 0.5))):
        pts = [
            t * (c * size, r * size)
            for c, r in ((c0, r0), (c0 + 0.5, r0), (c0 + 0.5, r0 + 0.5), (c0, r0 + 0.5))
        ]
        geoms.append({"type": "Polygon", "coordinates": [[*pts, pts[0]]]})
        names.append(f"unit{i}")
    return geoms, names


def run_one(alg: str, path: str, out: str) -> dict:
    """In the child: the input check then algorithm `alg` on `path`; what it cost."""
    import numpy as np

    from deformation_forecast.core import budget
    from deformation_forecast.core.stack import check_values, read_info

    def rchar() -> int:
        with open("/proc/self/io") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("rchar:"))

    if alg == "check":  # under a second: the least of 5 runs, each in a fresh block cache
        runs = [_check_once(path, rchar) for _ in range(5)]
        return dict(
            wall=min(r["wall"] for r in runs),
            cpu=min(r["cpu"] for r in runs),
            read=runs[0]["read"],
            rss_mb=_peak_rss_mb(),
        )
    r0, t0, c0 = rchar(), time.perf_counter(), time.process_time()
    with budget.gdal_env(None):
        info = read_info(path)
        check_values(info)
        size = info.width
        if alg == "profiles":
            from deformation_forecast.core.profiles import extract_profiles

            extract_profiles(path, _lines(size))
        elif alg == "rate":
            from deformation_forecast.core.rates import deformation_rate

            deformation_rate(path, os.path.join(out, "rate.tif"))
        elif alg == "los":
            from deformation_forecast.core.los import convert_stack

            convert_stack(path, os.path.join(out, "los.tif"), incidence=39.0)
        elif alg == "evaluate":
            from deformation_forecast.core.evaluation import evaluate_files

            k = min(10, info.count)
            pairs = [(i, i) for i in range(info.count - k, info.count)]
            evaluate_files(path, path, pairs)
        elif alg == "faults":
            from deformation_forecast.core.controls import ControlOptions, analyse_controls

            t = bc.transform_for()
            faults = [
                [np.array([t * (0.2 * size, f * size), t * (0.8 * size, (f + 0.1) * size)])]
                for f in (0.2, 0.5, 0.7)
            ]
            geoms, names = _units(size)
            opts = ControlOptions(max_distance=2000.0, history=True)
            analyse_controls(path, info, info.count - 1, faults, geoms, names, opts)
        elif alg == "forecast":
            from deformation_forecast.core.dates import median_interval
            from deformation_forecast.ml.blocks import TailStore
            from deformation_forecast.ml.forecast import stream_regular, window_bytes

            keep = min(20, info.count)
            scale = np.full((info.height, info.width), np.nan, "float32")
            with TailStore(keep, info.height, info.width, False, out) as tail:
                interval = median_interval(info.dates)
                stream_regular(
                    path,
                    info,
                    interval,
                    keep,
                    tail,
                    window_bytes(budget.DEFAULT_MB * 2**20 // 2, info),
                    None,
                    scale,
                )
    return dict(
        wall=time.perf_counter() - t0,
        cpu=time.process_time() - c0,
        read=rchar() - r0,
        rss_mb=_peak_rss_mb(),
    )


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM): unlike getrusage's ru_maxrss, which Linux
    carries over exec from the forked parent, it starts afresh in the child."""
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024.0


def _check_once(path: str, rchar) -> dict:
    from deformation_forecast.core import budget
    from deformation_forecast.core.stack import check_values, read_info

    r0, t0, c0 = rchar(), time.perf_counter(), time.process_time()
    with budget.gdal_env(None):
        check_values(read_info(path))
    return dict(wall=time.perf_counter() - t0, cpu=time.process_time() - c0, read=rchar() - r0)


def _child(alg: str, path: str, out: str) -> dict:
    env = dict(os.environ, GDAL_NUM_THREADS="1")
    p = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", alg, path, out],
        capture_output=True,
        text=True,
        env=env,
    )
    if p.returncode:
        return dict(error=(p.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(p.stdout.strip().splitlines()[-1])


def _merged(path: str, results: dict[str, dict[str, dict]], algs: list[str]):
    """The results of the --json file at `path` with this run's `results` in place of theirs;
    the layouts in the order of LAYOUTS."""
    with open(path, encoding="utf-8") as f:
        old = json.load(f)["results"]
    out: dict[str, dict[str, dict]] = {}
    for name in LAYOUTS:
        cells = dict(old.get(name, {}))
        cells.update(results.get(name, {}))
        if cells:
            out[name] = cells
    every = [x for x in ALGS if x in algs or any(x in c for c in out.values())]
    return out, every


def _table(results: dict[str, dict[str, dict]], algs: list[str]) -> str:
    lines = []
    for key, unit in (("wall", "s"), ("cpu", "s"), ("read", "MB")):
        lines.append(f"\n{key} ({unit}, and ratio to the best layout)")
        lines.append("| layout | " + " | ".join(algs) + " |")
        lines.append("|---|" + "---|" * len(algs))
        best = {
            a: min((r[a][key] for r in results.values() if key in r.get(a, {})), default=0) or 1e-9
            for a in algs
        }
        for name, r in results.items():
            cells = []
            for a in algs:
                v = r.get(a, {})
                if key not in v:
                    cells.append(v.get("error", "-")[:40])
                    continue
                x = v[key] / 2**20 if key == "read" else v[key]
                cells.append(f"{x:.1f} ({v[key] / best[a]:.1f}x)")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="400 x 400 x 24")
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--bands", type=int, default=60)
    ap.add_argument("--algs", default=",".join(ALGS))
    ap.add_argument("--layouts", default="", help="'|'-separated prefixes of layout names (default all)")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    ap.add_argument(
        "--merge",
        default=None,
        help="a --json file of an earlier run on the same machine: its cells fill the table where "
        "this run (fewer --layouts or --algs, e.g. after a change) has none",
    )
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(run_one(*a.child)))
        return 0
    size, bands = (400, 24) if a.small else (a.size, a.bands)
    algs = [x for x in a.algs.split(",") if x]
    names = [n for n in LAYOUTS if not a.layouts or any(n.startswith(p) for p in a.layouts.split("|"))]
    print(bc.machine())
    print(f"stack: {size} x {size} x {bands} float32 ({size * size * bands * 4 / 2**30:.2f} GiB of pixels)")
    work = a.dir or tempfile.mkdtemp(prefix="bench_layouts_")
    os.makedirs(work, exist_ok=True)
    results: dict[str, dict[str, dict]] = {}
    try:
        base = os.path.join(work, "plugin.tif")
        if not os.path.exists(base):
            bc.generate_stack(base, size, bc.dates_for(bands))
        for name in names:
            i = list(LAYOUTS).index(name)  # the file's name does not depend on --layouts
            path = _existing(work, i) if a.keep else None
            path = path or make_layout(name, base, os.path.join(work, f"layout{i}.tif"), size, bands)
            mine = (f"layout{i}.tif", f"layout{i}.vrt")
            mb = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(work) for f in fs if f in mine or dp.endswith(f"layout{i}.tif.d")) / 2**20  # fmt: skip
            results[name] = {}
            for alg in algs:
                out = tempfile.mkdtemp(dir=work)
                results[name][alg] = r = _child(alg, path, out)
                shutil.rmtree(out, ignore_errors=True)
                print(f"{name} ({mb:.0f} MB on disk) {alg}: {r}", flush=True)
            if name != next(iter(LAYOUTS)) and not a.keep:
                for p in (path, os.path.join(work, f"layout{i}.tif")):
                    if os.path.isfile(p):
                        os.unlink(p)
                shutil.rmtree(os.path.join(work, f"layout{i}.tif.d"), ignore_errors=True)
        if a.merge:
            results, algs = _merged(a.merge, results, algs)
        print(_table(results, algs))
        if a.json:
            bc.dump_json(a.json, dict(size=size, bands=bands, machine=bc.machine(), results=results))
    finally:
        if not a.keep and not a.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
