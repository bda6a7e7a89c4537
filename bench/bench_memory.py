"""Memory ceiling (issue 8): every algorithm of the provider on a stack much larger than the budget.

Generates (once; reused while valid) in --workdir a 6000 x 6000 x 156 float32 stack (about 22 GB of
pixels: smooth subsidence bowls growing in time plus 2 mm noise, a date every 12 days, UTM 47N,
written strip by strip with core.stack.StackWriter) and the inputs the algorithms need: an incidence
raster, a second-orbit stack with every 4th date (crossorbit), a 24-date prediction stack
(evaluateforecast), profile lines, faults, lithology polygons, leveling benchmarks (CSV), a point
time-series CSV (pointstostack) and one single-date VRT per band (buildstack). Then runs every
algorithm through `scripts/qgis_process.sh run deformation_forecast:<name>` with
DEFORMATION_FORECAST_MEMORY_MB set to the budget, polling /proc every 0.2 s for the peak RSS of
qgis_process.bin and of any TensorFlow worker (`python -m deformation_forecast.ml`) it starts.
The forecast uses the model trainmodel has just written (trained with a few small epochs and a
time limit: the point is memory, not accuracy). Large outputs are deleted after each algorithm.

    .venv/bin/python bench/bench_memory.py                 # 6000 x 6000 x 156, 2048 MB (hours)
    .venv/bin/python bench/bench_memory.py --small         # 600 x 600 x 40, 1024 MB, no training
    .venv/bin/python bench/bench_memory.py --small --worker  # the same with trainmodel and forecast
    .venv/bin/python bench/bench_memory.py --only extractprofiles,forecast --timeout 1800
    .venv/bin/python bench/bench_memory.py --prepare-only  # generate the inputs and stop

"Within budget" means the peak RSS of each process (qgis_process.bin, the worker) is at most the
budget; the tree column is the largest sum over all processes at one poll (including, during
trainmodel/forecast/comparemodels, the idle qgis_process.bin beside the worker). The `idle` row
(checkworker: QGIS, the plugin and a worker that only imports TensorFlow) shows what the processes
take before any pixel is read. Results also go to <workdir>/results_<size>.json and each
algorithm's log to <workdir>/logs/.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as bc  # noqa: E402

ROOT = bc.ROOT
INC_A, INC_B = 34.17, 41.42


# ---------------------------------------------------------------------------------------- inputs


def _geojson(path: str, features: list[dict]) -> None:
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32647"}},
        "features": features,
    }
    with open(path + ".part", "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(path + ".part", path)


def _line(name_field: str, name: str, pts) -> dict:
    return {
        "type": "Feature",
        "properties": {name_field: name},
        "geometry": {"type": "LineString", "coordinates": [[round(x, 2), round(y, 2)] for x, y in pts]},
    }


def _xy(size: int, col: float, row: float) -> tuple[float, float]:
    return (bc.ORIGIN[0] + col * bc.RES, bc.ORIGIN[1] - row * bc.RES)


def _extent(size: int, side: int) -> str:
    """A centred square of `side` pixels as a qgis_process EXTENT (xmin,xmax,ymin,ymax [CRS])."""
    side = min(side, size)
    c0 = (size - side) // 2
    x0, y1 = _xy(size, c0, c0)
    x1, y0 = _xy(size, c0 + side, c0 + side)
    return f"{x0:.2f},{x1:.2f},{y0:.2f},{y1:.2f} [{bc.CRS}]"


def _monthly(first: dt.date, last: dt.date) -> list[dt.date]:
    out, y, m = [], first.year, first.month
    while True:
        d = dt.date(y, m, 3)
        if d > last:
            return out
        if d >= first:
            out.append(d)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def _truth(size: int, rows, cols, dates) -> np.ndarray:
    """Noise-free LOS (points, dates) at pixel (rows, cols), as generate_stack draws it."""
    rate = bc.rate_at(size, np.floor(rows), np.floor(cols))
    t = np.array([(d - bc.START).days / 365.25 for d in dates])
    return rate[:, None] * (t + 0.03 * t * t)[None]


def prepare(workdir: str, size: int, bands: int, n_points: int, log=print) -> dict:
    """Every input, generated once (each file is published only when complete)."""
    os.makedirs(workdir, exist_ok=True)
    dates = bc.dates_for(bands)
    p = {
        "stack": os.path.join(workdir, f"stack_{size}x{size}x{bands}.tif"),
        "stack_b": os.path.join(workdir, f"stack_b_{size}x{size}x{(bands + 3) // 4}.tif"),
        "pred": os.path.join(workdir, f"pred_{size}x{size}x24.tif"),
        "incidence": os.path.join(workdir, f"incidence_{size}.tif"),
        "lines": os.path.join(workdir, f"profiles_{size}.geojson"),
        "faults": os.path.join(workdir, f"faults_{size}.geojson"),
        "lithology": os.path.join(workdir, f"lithology_{size}.geojson"),
        "benchmarks": os.path.join(workdir, f"benchmarks_{size}x{bands}.csv"),
        "points": os.path.join(workdir, f"points_{size}x{bands}_{n_points}.csv"),
        "vrt_dir": os.path.join(workdir, f"bands_{size}x{size}x{bands}"),
    }

    def gen(key, n_dates, **kw):
        path = p[key]
        if bc.stack_ok(path, size, len(n_dates)):
            return
        log(f"generating {path} ({size} x {size} x {len(n_dates)}) ...")
        t0 = time.perf_counter()
        bc.generate_stack(path, size, n_dates, **kw)
        log(f"  {time.perf_counter() - t0:.0f} s, {os.path.getsize(path) / 2**30:.2f} GiB on disk")

    gen("stack", dates)
    # the other orbit: every 4th date, another incidence (LOS scales with cos), its own noise
    cos_ratio = float(np.cos(np.radians(INC_B)) / np.cos(np.radians(INC_A)))
    gen("stack_b", dates[::4], scale=cos_ratio, noise_seed=7)
    # a "prediction" of the last 24 dates: the noise-free field, 5 % too deep
    gen("pred", dates[-24:], scale=1.05, noise_mm=0.0)

    if not os.path.exists(p["incidence"]):
        import rasterio
        from rasterio.windows import Window

        from deformation_forecast.core.stack import atomic_path

        prof = dict(
            driver="GTiff", count=1, width=size, height=size, dtype="float32", crs=bc.CRS,
            transform=bc.transform_for(), nodata=float("nan"), compress="deflate", tiled=True,
            blockxsize=256, blockysize=256,
        )  # fmt: skip
        cols = np.linspace(INC_A - 3, INC_A + 3, size, dtype="float32")  # near to far range
        with atomic_path(p["incidence"]) as tmp, rasterio.open(tmp, "w", **prof) as dst:
            for r0 in range(0, size, 512):
                h = min(512, size - r0)
                dst.write(np.broadcast_to(cols, (h, size))[None], window=Window(0, r0, size, h))

    rng = np.random.default_rng(5)
    if not os.path.exists(p["lines"]):
        feats = []
        for i in range(10):  # long lines across the scene, about 0.8 x size pixels
            ang = rng.uniform(0, np.pi)
            half = 0.4 * size
            cx, cy = rng.uniform(0.45 * size, 0.55 * size, 2)
            a = _xy(size, cx - half * np.cos(ang), cy - half * np.sin(ang))
            b = _xy(size, cx + half * np.cos(ang), cy + half * np.sin(ang))
            feats.append(_line("name", f"P{i + 1}", [a, b]))
        _geojson(p["lines"], feats)
    if not os.path.exists(p["faults"]):
        feats = []
        for i in range(6):
            r0, r1 = rng.uniform(0.05 * size, 0.95 * size, 2)
            pts = [_xy(size, c, r0 + (r1 - r0) * c / size) for c in np.linspace(0, size - 1, 5)]
            feats.append(_line("name", f"F{i + 1}", pts))
        _geojson(p["faults"], feats)
    if not os.path.exists(p["lithology"]):
        feats, units, k = [], ["gneiss", "marble", "schist", "granite"], 0
        edges = np.linspace(0, size, 4)
        for i in range(3):
            for j in range(3):
                ring = [
                    _xy(size, edges[j], edges[i]),
                    _xy(size, edges[j + 1], edges[i]),
                    _xy(size, edges[j + 1], edges[i + 1]),
                    _xy(size, edges[j], edges[i + 1]),
                ]
                ring.append(ring[0])
                feats.append(
                    {
                        "type": "Feature",
                        "properties": {"unit": units[k % len(units)]},
                        "geometry": {"type": "Polygon", "coordinates": [[list(map(float, q)) for q in ring]]},
                    }
                )
                k += 1
        _geojson(p["lithology"], feats)
    if not os.path.exists(p["benchmarks"]):
        n = 40
        rows, cols = rng.integers(int(0.1 * size), int(0.9 * size), (2, n))
        surveys = _monthly(dates[0] + dt.timedelta(days=20), dates[-1])
        lev = _truth(size, rows, cols, surveys) / np.cos(np.radians(INC_A))
        lev += rng.normal(0, 1.0, lev.shape)
        with open(p["benchmarks"] + ".part", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "x", "y", *(f"D{d:%Y%m%d}" for d in surveys)])
            for k in range(n):
                x, y = _xy(size, cols[k] + 0.5, rows[k] + 0.5)
                w.writerow([f"BM{k + 1:02d}", f"{x:.2f}", f"{y:.2f}", *(f"{v:.1f}" for v in lev[k])])
        os.replace(p["benchmarks"] + ".part", p["benchmarks"])
    if not os.path.exists(p["points"]):
        log(f"writing {n_points} point time series to {p['points']} ...")
        t = np.array([(d - bc.START).days / 365.25 for d in dates])
        with open(p["points"] + ".part", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "x", "y", *(f"D{d:%Y%m%d}" for d in dates)])
            for k0 in range(0, n_points, 5000):
                k1 = min(n_points, k0 + 5000)
                rows = rng.uniform(0, size - 1, k1 - k0)
                cols = rng.uniform(0, size - 1, k1 - k0)
                rate = bc.rate_at(size, np.floor(rows), np.floor(cols))
                vals = rate[:, None] * (t + 0.03 * t * t)[None] + rng.normal(0, 2.0, (k1 - k0, t.size))
                for k in range(k1 - k0):
                    x, y = _xy(size, cols[k], rows[k])
                    w.writerow([f"PS{k0 + k}", f"{x:.2f}", f"{y:.2f}", *(f"{v:.1f}" for v in vals[k])])
        os.replace(p["points"] + ".part", p["points"])
    vrts = [os.path.join(p["vrt_dir"], f"disp_{d:%Y%m%d}.vrt") for d in dates]
    if not all(os.path.exists(v) for v in vrts):
        os.makedirs(p["vrt_dir"], exist_ok=True)
        for b, v in enumerate(vrts, start=1):  # single-date rasters that cost no disk: VRTs of each band
            subprocess.run(
                ["gdal_translate", "-q", "-of", "VRT", "-b", str(b), p["stack"], v],
                check=True,
                capture_output=True,
            )
    p["vrts"] = vrts
    return p


def build_plugin(dest: str, worktree: bool = False) -> str:
    """A snapshot of the plugin as scripts/build_plugin.sh makes it, in `dest`: its own copy, so that a
    long run is not disturbed by others rebuilding build/. From the last commit (git archive HEAD),
    or with `worktree` from the files as they are now."""
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    out = os.path.join(tmp, "deformation_forecast")
    if worktree:
        shutil.copytree(
            os.path.join(ROOT, "deformation_forecast"),
            out,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    else:
        arch = subprocess.run(
            [
                "git",
                "-C",
                ROOT,
                "archive",
                "--format=tar",
                "HEAD",
                "deformation_forecast",
                "metadata.txt",
                "resources.qrc",
            ],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-C", tmp, "-xf", "-"], input=arch, check=True)
    meta = os.path.join(out, "metadata.txt")
    if os.path.lexists(meta):
        os.unlink(meta)
    shutil.copy(os.path.join(ROOT, "metadata.txt"), meta)
    if shutil.which("pyrcc5") and os.path.exists(os.path.join(ROOT, "resources.qrc")):
        subprocess.run(
            ["pyrcc5", "-o", os.path.join(out, "resources_rc.py"), "resources.qrc"], check=True, cwd=ROOT
        )
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


# ---------------------------------------------------------------------------------------- the runs


def jobs(p: dict, out: str, a) -> list[tuple[str, str, list[str], list[str]]]:
    """(label, algorithm, parameters, large outputs to delete afterwards)."""
    o = lambda name: os.path.join(out, name)  # noqa: E731
    tiny = "1" if a.small else "2"
    return [
        ("idle (checkworker)", "checkworker", ["DEVICE=2"], []),
        (
            "extractprofiles",
            "extractprofiles",
            [
                f"INPUT={p['stack']}",
                f"LINES={p['lines']}",
                "ID_FIELD=name",
                "INTERPOLATION=1",
                f"OUTPUT={o('profiles.gpkg')}",
                f"OUTPUT_CSV={o('profiles.csv')}",
                f"OUTPUT_PLOT={o('profiles.png')}",
            ],
            [o("profiles.gpkg"), o("profiles.csv")],
        ),  # fmt: skip
        (
            "benchmarkcompare",
            "benchmarkcompare",
            [
                f"INPUT={p['stack']}",
                f"BENCHMARKS={p['benchmarks']}",
                f"INCIDENCE={INC_A}",
                "RADIUS=40",
                f"OUTPUT={o('bm_pairs.csv')}",
                f"OUTPUT_SUMMARY={o('bm_summary.csv')}",
                f"OUTPUT_PLOT={o('bm.png')}",
            ],
            [],
        ),  # fmt: skip
        (
            "faultlithology",
            "faultlithology",
            [
                f"INPUT={p['stack']}",
                f"FAULTS={p['faults']}",
                "FAULT_FIELD=name",
                f"LITHOLOGY={p['lithology']}",
                "LITHOLOGY_FIELD=unit",
                "BIN_WIDTH=100",
                "MAX_DISTANCE=2000",
                f"OUTPUT_LITHOLOGY={o('litho.csv')}",
                f"OUTPUT_HISTORY={o('litho_history.csv')}",
                f"OUTPUT_FAULTS={o('faults.csv')}",
                f"OUTPUT_DISTANCE={o('fault_distance.tif')}",
                f"OUTPUT_PLOT={o('faults.png')}",
            ],
            [o("fault_distance.tif")],
        ),  # fmt: skip
        (
            "crossorbit",
            "crossorbit",
            [
                f"INPUT={p['stack']}",
                f"INCIDENCE={INC_A}",
                f"INPUT_B={p['stack_b']}",
                f"INCIDENCE_B={INC_B}",
                "MODE=0",
                f"OUTPUT={o('crossorbit.csv')}",
                f"OUTPUT_PLOT={o('crossorbit.png')}",
            ],
            [],
        ),  # fmt: skip
        (
            "crossorbit (velocity)",
            "crossorbit",
            [
                f"INPUT={p['stack']}",
                f"INCIDENCE={INC_A}",
                f"INPUT_B={p['stack_b']}",
                f"INCIDENCE_B={INC_B}",
                "MODE=1",
                f"OUTPUT={o('crossorbit_v.csv')}",
            ],
            [],
        ),  # fmt: skip
        (
            "evaluateforecast",
            "evaluateforecast",
            [
                f"PREDICTED={p['pred']}",
                f"OBSERVED={p['stack']}",
                "MAX_DAYS=0",
                f"OUTPUT_TABLE={o('evaluate.csv')}",
                f"OUTPUT_ERRORS={o('evaluate_errors.tif')}",
                f"OUTPUT_REPORT={o('evaluate.html')}",
            ],
            [o("evaluate_errors.tif")],
        ),  # fmt: skip
        (
            "deformationrate (velocity)",
            "deformationrate",
            [
                f"INPUT={p['stack']}",
                "MODE=0",
                "VERTICAL=true",
                f"INCIDENCE_RASTER={p['incidence']}",
                f"OUTPUT={o('velocity.tif')}",
            ],
            [o("velocity.tif")],
        ),  # fmt: skip
        (
            "deformationrate (annual)",
            "deformationrate",
            [f"INPUT={p['stack']}", "MODE=1", "VERTICAL=false", f"OUTPUT={o('annual.tif')}"],
            [o("annual.tif")],
        ),  # fmt: skip
        (
            "losvertical",
            "losvertical",
            [f"INPUT={p['stack']}", f"INCIDENCE_RASTER={p['incidence']}", f"OUTPUT={o('vertical.tif')}"],
            [o("vertical.tif")],
        ),  # fmt: skip
        (
            "buildstack",
            "buildstack",
            [*(f"LAYERS={v}" for v in p["vrts"]), "UNITS=0", "INTERVAL_DAYS=0", f"OUTPUT={o('built.tif')}"],
            [o("built.tif")],
        ),  # fmt: skip
        (
            "pointstostack",
            "pointstostack",
            [
                f"INPUT_CSV={p['points']}",
                "FORMAT=1",
                f"CSV_CRS={bc.CRS}",
                "UNITS=1",
                f"PIXEL_SIZE={bc.RES:g}",
                "METHOD=1",
                f"OUTPUT={o('points_stack.tif')}",
            ],
            [o("points_stack.tif")],
        ),  # fmt: skip
        (
            "trainmodel",
            "trainmodel",
            [
                f"INPUT={p['stack']}",
                "ARCHITECTURE=0",
                "TIME_STEP=5",
                f"TEST_COUNT={a.test_count}",
                "INTERVAL_DAYS=12",
                f"EPOCHS={tiny}",
                f"SAMPLES_PER_EPOCH={a.samples}",
                f"MAX_SECONDS={a.max_seconds}",
                "TILE_SIZE=64",
                "GRU_EPOCHS=1",
                "BATCH_SIZE=8",
                "WIDTH=8",
                "DEVICE=0",
                "SEED=42",
                f"OUTPUT_MODEL={o('model.dfmodel')}",
                f"OUTPUT_REPORT={o('train.html')}",
            ],
            [],
        ),  # fmt: skip
        (
            f"forecast ({a.steps} steps)",
            "forecast",
            [
                f"INPUT={p['stack']}",
                f"MODEL={o('model.dfmodel')}",
                f"STEPS={a.steps}",
                "DEVICE=0",
                f"OUTPUT={o('forecast.tif')}",
                f"OUTPUT_RATE={o('forecast_rate.tif')}",
            ],
            [o("forecast.tif"), o("forecast_rate.tif")],
        ),  # fmt: skip
        (
            "comparemodels (baselines)",
            "comparemodels",
            [
                f"INPUT={p['stack']}",
                f"MODELS={a.baselines}",
                "TIME_STEP=5",
                f"TEST_COUNT={a.compare_test_count}",
                "SEED=42",
                "SVR_SAMPLES=500",
                "MLP_SAMPLES=2000",
                f"OUTPUT_TABLE={o('compare.csv')}",
                f"OUTPUT_REPORT={o('compare.html')}",
                f"OUTPUT_ERRORS={o('compare_errors')}",
            ],
            [o("compare_errors")],
        ),  # fmt: skip
    ] + (
        [
            (
                # the networks are scored on every test pixel, which the worker must hold: on the whole
                # 6000^2 stack comparemodels refuses them up front; an EXTENT of --extent-px a side fits
                f"comparemodels (networks on EXTENT {a.extent_px}^2)",
                "comparemodels",
                [
                    f"INPUT={p['stack']}",
                    f"MODELS={a.networks}",
                    f"EXTENT={_extent(a.size, a.extent_px)}",
                    "TIME_STEP=5",
                    f"TEST_COUNT={a.compare_test_count}",
                    "EPOCHS=1",
                    "DEVICE=0",
                    "SEED=42",
                    f"MAX_SECONDS={a.max_seconds}",
                    f"OUTPUT_TABLE={o('compare_net.csv')}",
                    f"OUTPUT_REPORT={o('compare_net.html')}",
                ],
                [],
            )  # fmt: skip
        ]
        if a.networks
        else []
    )


# outputs (and the worker's regular-grid copy of the stack) in fractions of the input stack's file
DISK_NEED = {
    "losvertical": 1.1,
    "buildstack": 1.1,
    "trainmodel": 1.1,
    "comparemodels": 1.1,
    "pointstostack": 0.5,
    "evaluateforecast": 0.3,
    "forecast": 0.3,
}


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        for q in (path, path + ".aux.xml"):
            if os.path.exists(q):
                os.unlink(q)


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", ROOT, "log", "-1", "--format=%h %s"], capture_output=True, text=True
        ).stdout.strip()[:70]
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--small", action="store_true", help="600 x 600 x 40, budget 1024 MB, tiny training: a smoke test"
    )
    ap.add_argument("--size", type=int, default=6000)
    ap.add_argument("--bands", type=int, default=156)
    ap.add_argument("--budget-mb", type=int, default=2048, help="DEFORMATION_FORECAST_MEMORY_MB")
    ap.add_argument("--workdir", default="/tmp/df_bench_memory")
    ap.add_argument("--points", type=int, default=50000, help="point time series for pointstostack")
    ap.add_argument("--samples", type=int, default=64, help="trainmodel SAMPLES_PER_EPOCH")
    ap.add_argument("--max-seconds", type=int, default=120, help="training time limit per network")
    ap.add_argument("--steps", type=int, default=24, help="forecast STEPS")
    ap.add_argument("--test-count", type=int, default=20, help="TEST_COUNT of trainmodel")
    ap.add_argument("--baselines", default="0,1,2,3", help="comparemodels MODELS on the whole stack")
    ap.add_argument("--networks", default="0,4,5", help="comparemodels MODELS on the EXTENT")
    ap.add_argument("--extent-px", type=int, default=2000, help="comparemodels EXTENT side (pixels, centred)")
    ap.add_argument(
        "--compare-test-count",
        type=int,
        default=5,
        help="comparemodels TEST_COUNT (each model predicts every pixel of each test date)",
    )
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per algorithm before it is killed")
    ap.add_argument("--only", help="comma-separated algorithm names or labels")
    ap.add_argument("--skip", help="comma-separated algorithm names or labels to leave out")
    ap.add_argument(
        "--worker",
        action="store_true",
        help="with --small: also trainmodel, forecast and comparemodels' networks (minutes more)",
    )
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--keep-outputs", action="store_true")
    ap.add_argument(
        "--worktree",
        action="store_true",
        help="run the plugin as the files are now (default: the last commit)",
    )
    a = ap.parse_args(argv)
    if a.small:
        a.size, a.bands, a.budget_mb, a.points = 600, 40, 1024, 2000
        a.samples, a.max_seconds, a.steps, a.test_count, a.compare_test_count = 8, 10, 6, 10, 5
        if not a.worker:  # training takes minutes even tiny: the idle worker row checks the polling
            a.skip = ",".join(filter(None, [a.skip, "trainmodel,forecast"]))
            a.networks = ""
        a.extent_px = min(a.extent_px, a.size // 2)
        a.workdir = a.workdir.rstrip("/") + "_small" if a.workdir == "/tmp/df_bench_memory" else a.workdir

    print(bc.machine())
    print(f"commit: {_commit()}", flush=True)
    t0 = time.perf_counter()
    p = prepare(a.workdir, a.size, a.bands, a.points, log=lambda s: print(s, flush=True))
    gib = os.path.getsize(p["stack"]) / 2**30
    raw = a.size * a.size * a.bands * 4 / 2**30
    print(
        f"inputs ready in {time.perf_counter() - t0:.0f} s: {p['stack']} ({raw:.1f} GiB of pixels, {gib:.1f} GiB file)"
    )
    if a.prepare_only:
        return 0

    plugin = build_plugin(os.path.join(a.workdir, "plugin"), a.worktree)
    out = os.path.join(a.workdir, "out")
    logs = os.path.join(a.workdir, "logs")
    os.makedirs(out, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    profile_dir = os.path.join(a.workdir, "qgis_profile")
    os.makedirs(profile_dir, exist_ok=True)
    env = dict(
        os.environ,
        DEFORMATION_FORECAST_MEMORY_MB=str(a.budget_mb),
        QGIS_PLUGINPATH=plugin,
        QGIS_CUSTOM_CONFIG_PATH=profile_dir,
        QT_QPA_PLATFORM="offscreen",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    only = set(a.only.split(",")) if a.only else None
    skip = set(a.skip.split(",")) if a.skip else set()
    results = []
    res_path = os.path.join(a.workdir, f"results_{a.size}.json")
    for label, alg, params, big in jobs(p, out, a):
        if (only and alg not in only and label not in only) or alg in skip or label in skip:
            continue
        slug = label.replace(" ", "_").replace("(", "").replace(")", "")
        need = DISK_NEED.get(alg, 0.0) * os.path.getsize(p["stack"]) + 2 * 2**30
        free = shutil.disk_usage(out).free
        if free < need:
            print(
                f"[{time.strftime('%H:%M:%S')}] {label}: skipped, {free / 2**30:.0f} GiB free < {need / 2**30:.0f}"
            )
            results.append(
                dict(
                    label=label,
                    alg=alg,
                    rc="disk",
                    wall_s=0,
                    main_mb=0,
                    worker_mb=0,
                    tree_mb=0,
                    workers=0,
                    within=None,
                )
            )
            continue
        cmd = [
            os.path.join(ROOT, "scripts", "qgis_process.sh"),
            "run",
            f"deformation_forecast:{alg}",
            "--",
            *params,
        ]
        print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
        rc, wall, peaks, tail = bc.run_monitored(
            cmd, env=env, timeout=a.timeout, log=os.path.join(logs, slug + ".log"), cwd=ROOT
        )
        within = max(peaks.main_mb, peaks.worker_mb) <= a.budget_mb
        r = dict(
            label=label, alg=alg, rc=rc, wall_s=round(wall, 1), main_mb=round(peaks.main_mb),
            worker_mb=round(peaks.worker_mb), tree_mb=round(peaks.total_mb), workers=peaks.workers_seen,
            within=within,
        )  # fmt: skip
        if rc != 0:
            r["error"] = "timeout" if rc == -9 else tail.strip().splitlines()[-1:] if tail.strip() else ""
        results.append(r)
        print(
            f"    rc {rc}, {wall:.0f} s, qgis_process {peaks.main_mb:.0f} MB, worker {peaks.worker_mb:.0f} MB, "
            f"tree {peaks.total_mb:.0f} MB" + ("" if rc == 0 else f"  ({r['error']})"),
            flush=True,
        )
        if not a.keep_outputs:
            for q in big:
                _remove(q)
        bc.dump_json(
            res_path,
            {"machine": bc.machine(), "commit": _commit(), "size": a.size, "bands": a.bands,
             "budget_mb": a.budget_mb, "results": results},
        )  # fmt: skip

    print()
    print(bc.machine())
    print(
        f"stack {a.size} x {a.size} x {a.bands} float32 ({raw:.1f} GiB of pixels, {gib:.1f} GiB deflate file); "
        f"DEFORMATION_FORECAST_MEMORY_MB={a.budget_mb}; commit {_commit()}"
    )
    head = f"{'algorithm':<28}{'wall s':>9}{'qgis_process MB':>17}{'worker MB':>11}{'tree MB':>9}{'within':>8}{'rc':>5}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['label']:<28}{r['wall_s']:>9.0f}{r['main_mb']:>17}{(r['worker_mb'] or '-'):>11}{r['tree_mb']:>9}"
            f"{ ({True: 'yes', False: 'NO'}.get(r['within'], '-')):>8}{r['rc']:>5}"
        )
    print(
        f"within = peak RSS of qgis_process.bin and of the worker each <= {a.budget_mb} MB; rc -9 = killed after {a.timeout:.0f} s"
    )
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
