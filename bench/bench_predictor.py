"""Benchmark of the TIFF predictor in the plugin's layout (issue 22): size on disk and decoding CPU
of the same stacks written band-interleaved, 128 px tiles, deflate level 1, without a predictor
(what the plugin writes) and with the floating-point predictor (PREDICTOR=3, what it wrote before).

Stacks: the sample scene's observed ascending stack (core.sample, 200 x 200 x 156, with its
noise, atmosphere and incoherent pixels), the same with three quarters of its pixels masked in
patches (as low coherence leaves a real SBAS product), and the synthetic bowls of
bench_layouts.py; `--files` adds any stacks of your own (e.g. the sample
job's sample_out/maoxian_stack.tif, interpolated from the real Maoxian points). Decoding: the least
CPU seconds of three whole reads of each file through a 64 MB block cache, one GDAL thread.

    .venv/bin/python bench/bench_predictor.py            # sample 200^2 x 156, synthetic 1024^2 x 60
    .venv/bin/python bench/bench_predictor.py --small    # synthetic 400^2 x 24
    .venv/bin/python bench/bench_predictor.py --files sample_out/maoxian_stack.tif
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as bc  # noqa: E402

BASE = ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128", "INTERLEAVE=BAND", "COMPRESS=DEFLATE", "ZLEVEL=1"]
VARIANTS = {"none (the plugin's)": [], "floating point (3)": ["PREDICTOR=3"]}


def _rewrite(src: str, dst: str, extra: list[str]) -> str:
    args = ["gdal_translate", "-q", *(a for c in BASE + extra for a in ("-co", c)), src, dst]
    subprocess.run(args, check=True)
    return dst


def decode_cpu(path: str, repeats: int = 3) -> float:
    """Least process CPU seconds of a whole read of `path`."""
    import rasterio

    best = float("inf")
    for _ in range(repeats):
        with rasterio.Env(GDAL_CACHEMAX=64, GDAL_NUM_THREADS=1), rasterio.open(path) as src:
            c = time.process_time()
            src.read()
            best = min(best, time.process_time() - c)
    return best


def _masked(src: str, dst: str, seed: int = 0) -> str:
    """`src` with about three quarters of its pixels NaN, in smooth patches (as a coherence mask)."""
    import rasterio
    from scipy.ndimage import gaussian_filter

    with rasterio.open(src) as s:
        data, prof, desc = s.read(), s.profile, s.descriptions
    noise = gaussian_filter(np.random.default_rng(seed).normal(size=data.shape[1:]), 4)
    data[:, noise < np.quantile(noise, 0.75)] = np.nan
    with rasterio.open(dst, "w", **prof) as d:
        d.write(data)
        d.descriptions = desc
    return dst


def stacks(work: str, small: bool, files: list[str]) -> dict[str, str]:
    from deformation_forecast.core.sample import make_sample_scene

    out: dict[str, str] = {}
    if not small:
        scene = make_sample_scene(os.path.join(work, "scene"))
        asc = scene["stack_asc"]
        out["sample scene, ascending LOS"] = asc
        out["the same, 3/4 masked"] = _masked(asc, os.path.join(work, "masked.tif"))
    size, bands = (400, 24) if small else (1024, 60)
    synth = os.path.join(work, "synthetic.tif")
    bc.generate_stack(synth, size, bc.dates_for(bands))
    out[f"synthetic bowls {size}^2 x {bands}"] = synth
    for f in files:
        out[os.path.basename(f)] = f
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="only the synthetic stack, 400^2 x 24")
    ap.add_argument("--files", nargs="*", default=[], help="more stacks to measure")
    a = ap.parse_args(argv)
    print(bc.machine())
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_predictor_") as work:
        for name, path in stacks(work, a.small, a.files).items():
            cells = []
            for i, extra in enumerate(VARIANTS.values()):
                f = _rewrite(path, os.path.join(work, f"v{len(rows)}_{i}.tif"), extra)
                cells.append((os.path.getsize(f) / 2**20, decode_cpu(f)))
            rows.append((name, cells))
    print(
        "| stack | "
        + " | ".join(f"{v}: MB, decode CPU s" for v in VARIANTS)
        + " | size with 3 | decode with 3 |"
    )
    print("|---|" + "---|" * (len(VARIANTS) + 2))
    for name, cells in rows:
        (mb0, c0), (mb3, c3) = cells
        line = " | ".join(f"{mb:.1f}, {c:.2f}" for mb, c in cells)
        print(f"| {name} | {line} | {100 * (mb3 / mb0 - 1):+.0f} % | {c3 / max(c0, 1e-9):.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
