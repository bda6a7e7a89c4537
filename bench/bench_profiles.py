"""Benchmark of profile extraction (core of `extractprofiles`): windowed reads vs the whole stack.

Generates a stack on disk window by window with StackWriter (the plugin's own format: tiled 256 x 256
GeoTIFF, deflate, float32), draws N straight lines of a given length at random positions and angles
inside it, then measures, each in a fresh child process so memory figures are not mixed up:

- extract: `core.profiles.extract_profiles` over all lines and dates (bilinear, spacing = pixel);
- full read: reading every pixel of the stack once, row strip by row strip (what an
  implementation without windows would at least do).

For each: wall time, bytes the process read through read() syscalls (/proc/self/io `rchar`: what
GDAL pulled from the file, compressed, page cache or not), pixel bytes requested (windows x bands x 4),
and peak RSS of the child.

    .venv/bin/python bench/bench_profiles.py             # 3000 x 3000 x 156, 10 lines of 5 km
    .venv/bin/python bench/bench_profiles.py --small     # 400 x 400 x 20, quick check
    .venv/bin/python bench/bench_profiles.py --stack s.tif --no-full   # reuse a stack

The full-size stack is about 5.6 GB of pixels; it is written to --dir (default a temporary folder)
and removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

RES = 20.0
ORIGIN = (400000.0, 4300000.0)


def _rchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return -1


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def generate(
    path: str, size: int, bands: int, tile: int = 256, compress: str = "deflate", seed: int = 0
) -> None:
    """Smooth subsidence bowls growing in time plus 2 mm noise, written in row strips.

    The layout is StackWriter's (band interleaved, `tile` x `tile` tiles, deflate level 1, NaN
    nodata, dates in the band descriptions), or the same uncompressed.
    """
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from deformation_forecast.core.stack import _profile

    rng = np.random.default_rng(seed)
    dates = [dt.date(2014, 10, 14) + dt.timedelta(days=12 * i) for i in range(bands)]
    t = np.arange(bands, dtype="float32") * (12 / 365.25)
    centres = rng.uniform(0, size, (6, 2))
    widths = rng.uniform(size / 40, size / 10, 6)
    rates = rng.uniform(-150, 20, 6)
    strip = tile * max(1, int(128 * 2**20 // (size * bands * 4 * tile)))  # whole tile rows, ~128 MB
    transform = Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    prof = _profile(bands, size, size, "EPSG:32647", transform)
    prof.update(compress=compress)
    if compress == "none":
        prof.pop("compress")
    if size >= tile:
        prof.update(tiled=True, blockxsize=tile, blockysize=tile)
    cols = np.arange(size, dtype="float32")
    with rasterio.open(path, "w", **prof) as dst:
        for i, d in enumerate(dates, start=1):
            dst.set_band_description(i, d.isoformat())
        for r0 in range(0, size, strip):
            h = min(strip, size - r0)
            rows = np.arange(r0, r0 + h, dtype="float32")[:, None]
            rate = np.zeros((h, size), dtype="float32")
            for (cy, cx), wd, v in zip(centres, widths, rates, strict=True):
                rate += v * np.exp(-(((rows - cy) ** 2 + (cols[None] - cx) ** 2) / (2 * wd * wd)))
            block = t[:, None, None] * rate[None]
            block += rng.normal(0, 2.0, block.shape).astype("float32")
            dst.write(block, window=Window(0, r0, size, h))


def random_lines(size: int, n: int, length_m: float, seed: int = 1) -> list[tuple[str, list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    extent = size * RES
    lines = []
    for i in range(n):
        ang = rng.uniform(0, np.pi)
        dx, dy = np.cos(ang) * length_m, np.sin(ang) * length_m
        x0 = rng.uniform(max(0.0, -dx), min(extent, extent - dx)) if abs(dx) < extent else 0.0
        y0 = rng.uniform(0.0, extent - dy) if dy < extent else 0.0
        a = (ORIGIN[0] + x0, ORIGIN[1] - extent + y0)
        b = (a[0] + dx, a[1] + dy)
        lines.append((f"L{i + 1}", [np.array([a, b])]))
    return lines


def child_extract(stack: str, size: int, n: int, length: float, threads: str = "ALL_CPUS") -> dict:
    from deformation_forecast.core.profiles import ProfileOptions, ReadStats, ReadTuning, extract_profiles
    from deformation_forecast.core.stack import read_info

    read_info(stack)  # first open: GDAL drivers and the PROJ database load outside the measurement
    lines = random_lines(size, n, length)
    rss0 = _peak_rss_mb()
    stats = ReadStats()
    r0, t0 = _rchar(), time.perf_counter()
    profs = extract_profiles(
        stack, lines, ProfileOptions(method="bilinear"), stats=stats, tuning=ReadTuning(threads=threads)
    )
    secs = time.perf_counter() - t0
    return {
        "seconds": secs,
        "rchar": _rchar() - r0,
        "pixel_bytes": stats.bytes,
        "windows": stats.windows,
        "samples": int(sum(p.size for p in profs)),
        "outside": int(sum(p.outside for p in profs)),
        "rss_before_mb": rss0,
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_full(stack: str) -> dict:
    """Every pixel once: one open dataset, strips of whole tile rows (each tile decoded once)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(stack) as src:
        bh = src.block_shapes[0][0]
        rows = bh * max(1, int(128 * 2**20 // (src.width * src.count * 4 * bh)))
        rss0 = _peak_rss_mb()
        r0, t0 = _rchar(), time.perf_counter()
        total = 0
        for y in range(0, src.height, rows):
            total += src.read(
                window=Window(0, y, src.width, min(rows, src.height - y)), out_dtype="float32"
            ).nbytes
    return {
        "seconds": time.perf_counter() - t0,
        "rchar": _rchar() - r0,
        "pixel_bytes": total,
        "windows": -1,
        "rss_before_mb": rss0,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_child(*args: str) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _mb(b: float) -> str:
    return f"{b / 2**20:,.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="400 x 400 x 20 stack, 10 lines of 2 km")
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--bands", type=int, default=156)
    ap.add_argument("--lines", type=int, default=10)
    ap.add_argument("--length", type=float, default=5000.0, help="line length in metres (20 m pixels)")
    ap.add_argument(
        "--tile", type=int, default=256, help="tile size of the generated stack (StackWriter: 256)"
    )
    ap.add_argument(
        "--compress",
        default="deflate",
        choices=["deflate", "zstd", "lzw", "none"],
        help="compression of the generated stack (StackWriter: deflate)",
    )
    ap.add_argument("--threads", default="1", help="GDAL_NUM_THREADS for the extraction (1 = off)")
    ap.add_argument("--stack", help="use this stack (made with the same --size) instead of generating one")
    ap.add_argument("--dir", help="where to write the generated stack (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated stack")
    ap.add_argument("--no-full", action="store_true", help="skip the full-stack read")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child:
        kind, *rest = a.child
        if kind == "generate":
            t0 = time.perf_counter()
            generate(rest[0], int(rest[1]), int(rest[2]), int(rest[3]), rest[4])
            print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb()}))
        elif kind == "extract":
            print(json.dumps(child_extract(rest[0], int(rest[1]), int(rest[2]), float(rest[3]), rest[4])))
        else:
            print(json.dumps(child_full(rest[0])))
        return 0

    if a.small:
        a.size, a.bands, a.length = 400, 20, 2000.0
    folder = None
    stack = a.stack
    if not stack:
        folder = a.dir or tempfile.mkdtemp(prefix="df_bench_")
        os.makedirs(folder, exist_ok=True)
        stack = os.path.join(folder, f"bench_{a.size}x{a.size}x{a.bands}_t{a.tile}_{a.compress}.tif")
        print(f"generating {stack} ({a.size} x {a.size} x {a.bands}) ...", flush=True)
        gen = _run_child("generate", stack, str(a.size), str(a.bands), str(a.tile), a.compress)
        print(f"  generated in {gen['seconds']:.1f} s, {_mb(os.path.getsize(stack))} MB on disk", flush=True)
    try:
        from deformation_forecast.core.stack import read_info

        info = read_info(stack)
        pixels = info.width * info.height * info.count * 4
        ext = _run_child("extract", stack, str(info.width), str(a.lines), str(a.length), a.threads)
        full = None if a.no_full else _run_child("full", stack)
        print()
        print(
            f"stack {info.width} x {info.height} x {info.count} float32: {_mb(pixels)} MB of pixels, "
            f"{_mb(os.path.getsize(stack))} MB file; {a.lines} lines of {a.length / 1000:g} km, "
            f"{ext['samples']} samples ({ext['outside']} outside), {ext['windows']} windows"
        )
        print()
        head = f"{'':<22}{'time s':>9}{'read() MB':>12}{'pixels MB':>12}{'peak RSS MB':>13}{'RSS before':>12}"
        print(head)
        print("-" * len(head))
        for name, r in (("extract (windows)", ext), ("full stack read", full)):
            if r is None:
                continue
            print(
                f"{name:<22}{r['seconds']:>9.2f}{_mb(r['rchar']):>12}{_mb(r['pixel_bytes']):>12}"
                f"{r['peak_rss_mb']:>13.0f}{r['rss_before_mb']:>12.0f}"
            )
        if full:
            print()
            print(
                f"extract / full: time {ext['seconds'] / full['seconds']:.3%}, "
                f"bytes read {ext['rchar'] / max(full['rchar'], 1):.3%}"
            )
        print(
            f"targets: extract under 2 s -> {'yes' if ext['seconds'] < 2 else 'NO'}; "
            f"peak RSS under 500 MB -> {'yes' if ext['peak_rss_mb'] < 500 else 'NO'}"
        )
    finally:
        if folder and not a.keep:
            if a.dir:  # the user's folder: remove only what we wrote
                for p in (stack, stack + ".aux.xml"):
                    if os.path.exists(p):
                        os.unlink(p)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        elif folder:
            print(f"stack kept: {stack}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
