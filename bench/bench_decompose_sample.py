"""Vertical from dLOS / cos(theta) vs `decompose` on the sample scene with horizontal motion.

Generates the sample scene with its 3-D model (core.sample --horizontal: the flanks of the bowls
move toward their centres, about 0.3 of the depth), decomposes the ascending and descending 3-D
stacks (incidence rasters, headings -13 / 193 degrees, the ascending dates inside 2018-03-27 ..
2020-10-06) and prints, at the last common date and relative to the first, the error against the
noise-free vertical of: ascending dLOS / cos(theta), descending dLOS / cos(theta) (interpolated to
the same dates) and the decomposed U; and the error of the decomposed E against the true east.
"Flanks" are the pixels where the true horizontal (east) motion exceeds 50 mm.

    .venv/bin/python bench/bench_decompose_sample.py [--size 200] [--small]
    .venv/bin/python bench/bench_decompose_sample.py --scene DIR --up UP.tif --east EAST.tif

The second form (the main job's step scripts/sample_job.d/45-decompose.sh) scores the outputs of
a `decompose` run on a scene written with --horizontal instead of running one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from deformation_forecast.core import decompose as dc  # noqa: E402
from deformation_forecast.core import sample  # noqa: E402
from deformation_forecast.core.stack import read_info, read_stack  # noqa: E402

FLANK_MM = 50.0


def _stats(err: np.ndarray, flank: np.ndarray) -> str:
    ok = np.isfinite(err)
    fl = ok & flank
    rmse = float(np.sqrt(np.mean(err[ok] ** 2)))
    rmse_fl = float(np.sqrt(np.mean(err[fl] ** 2))) if fl.any() else float("nan")
    return f"{rmse:.1f} | {rmse_fl:.1f} | {float(np.max(np.abs(err[ok]))):.1f}"


def score(scene: dict[str, str], up_path: str, east_path: str) -> list[str]:
    """Markdown lines: the errors of dLOS / cos(theta) and of the decomposition against the truth."""
    asc, desc = read_info(scene["stack_asc_3d"]), read_info(scene["stack_desc_3d"])
    dates = read_info(up_path).dates
    first, last = asc.dates.index(dates[0]), asc.dates.index(dates[-1])
    truth_up = read_stack(scene["truth_up"], bands=[first, last]).astype("float64")
    truth_e = read_stack(scene["truth_east"], bands=[first, last]).astype("float64")
    u_true, e_true = truth_up[1] - truth_up[0], truth_e[1] - truth_e[0]
    cos_a = np.cos(np.radians(read_stack(scene["incidence_asc"])[0].astype("float64")))
    cos_d = np.cos(np.radians(read_stack(scene["incidence_desc"])[0].astype("float64")))
    a = read_stack(asc.path, bands=[first, last]).astype("float64")
    dd = dc.interpolate_series(read_stack(desc.path), desc.dates, [dates[0], dates[-1]])
    up = read_stack(up_path, bands=[len(dates) - 1])[0]
    east = read_stack(east_path, bands=[len(dates) - 1])[0]
    flank = np.abs(e_true) > FLANK_MM
    geoms = [(sample.ASC_INCIDENCE, sample.ASC_HEADING), (sample.DESC_INCIDENCE, sample.DESC_HEADING)]
    leak_u, leak_e = dc.solve_up_east([dc.los_coefficients(*g)[2] for g in geoms], geoms)
    lines = [
        f"{dates[0]}..{dates[-1]} ({len(dates)} dates); true vertical {np.nanmin(u_true):.0f} .. "
        f"{np.nanmax(u_true):.0f} mm, true east {np.nanmin(e_true):.0f} .. {np.nanmax(e_true):.0f} mm; "
        f"flanks (|east| > {FLANK_MM:g} mm): {int(flank.sum())} px; north (neglected) leaks into U as "
        f"{float(leak_u):+.2f} N, into E as {float(leak_e):+.2f} N",
        "",
        "| vertical from | RMSE mm | RMSE on the flanks mm | max abs mm |",
        "|---|---|---|---|",
    ]
    for label, err in (
        ("ascending dLOS / cos(theta)", (a[1] - a[0]) / cos_a - u_true),
        ("descending dLOS / cos(theta)", (dd[1] - dd[0]) / cos_d - u_true),
        ("`decompose` U", up - u_true),
        ("`decompose` E (vs true east)", east - e_true),
    ):
        lines.append(f"| {label} | {_stats(err, flank)} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--small", action="store_true", help="80 x 80 pixels")
    ap.add_argument("--scene", help="a scene written with --horizontal (score --up/--east only)")
    ap.add_argument("--up")
    ap.add_argument("--east")
    args = ap.parse_args(argv)
    if args.scene:
        names = {**sample.FILES, **sample.FILES_3D}
        scene = {k: os.path.join(args.scene, name) for k, (name, _) in names.items()}
        print("\n".join(score(scene, args.up, args.east)))
        return 0
    size = 80 if args.small else args.size
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        p = sample.make_sample_scene(d, size, horizontal=True)
        t1 = time.perf_counter()
        asc, desc = read_info(p["stack_asc_3d"]), read_info(p["stack_desc_3d"])
        orbits = [
            dc.Orbit(asc.path, asc, p["incidence_asc"], sample.ASC_HEADING, "ascending"),
            dc.Orbit(desc.path, desc, p["incidence_desc"], sample.DESC_HEADING, "descending"),
        ]
        out = dc.Outputs(os.path.join(d, "up.tif"), os.path.join(d, "east.tif"))
        res = dc.decompose(orbits, out)
        t2 = time.perf_counter()
        print(
            f"sample scene {size} x {size}, 3-D model: scene {t1 - t0:.1f} s, decompose {t2 - t1:.1f} s; "
            f"largest gap {res.max_gap} days, condition {res.condition:.2f}, U's standard error per mm "
            f"of LOS noise {res.se_factor_up:.2f}"
        )
        print("\n".join(score(p, out.vertical, out.east)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
