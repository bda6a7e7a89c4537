"""Fault steps on an EPSG:4326 stack (issue 14, section 3): is the plugin or the warp at fault?

test_geographic_distances warps the projected sample stack (20 m pixels) to EPSG:4326 at half the
default resolution (about 10 x 12.7 m) with nearest resampling, and F17's step comes out 10 % off.
Measured here with the same noise-free field (core.sample.SampleScene.vertical_at) sampled at each
grid's own pixel centres, no warp in between (BIN_WIDTH 60 m, MAX_DISTANCE 600 m):

    F17 step (mm)    20 m UTM -24.96   10 m UTM -28.45   5 m UTM -30.08
                     geo x1   -30.51   geo x2   -29.17   geo x4  -29.89

The step of a fault modelled as a 3 m wide edge depends on the pixel size (the bin next to the
fault mixes pixels of both sides: -25 at 20 m, -30 at 5 m), and geographic and projected grids of
the SAME ground resolution agree (within 2.5 % at 10 m, 0.6 % at 5 m; all six faults within 5 %).
So the 10 % of the warped test is the resolution difference (and the warp's half-pixel moves), not
an error of the plugin's geographic distances; this test pins that down at equal resolution.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from affine import Affine
from rasterio.warp import calculate_default_transform, transform

from deformation_forecast.core.sample import PIXEL_SIZE as PIXEL
from deformation_forecast.core.sample import SampleScene, make_sample_scene
from deformation_forecast.core.stack import write_stack

SIZE = 96


def _native(scene: SampleScene, dates, crs: str, dst_t, w: int, h: int) -> np.ndarray:
    """The field at the pixel centres of a `crs` grid (transform `dst_t`, w x h), (dates, h, w)."""
    rows, cols = np.mgrid[0:h, 0:w]
    x, y = dst_t * (cols.ravel() + 0.5, rows.ravel() + 0.5)
    if crs != "EPSG:32647":
        x, y = transform(crs, "EPSG:32647", list(x), list(y))
    return scene.vertical_at(np.asarray(x), np.asarray(y), dates).reshape(len(dates), h, w).astype("float32")


def _steps(path) -> dict[str, float]:
    with open(path, newline="") as f:
        return {r["fault"]: float(r["step"]) for r in csv.DictReader(f)}


def test_fault_steps_of_a_field_sampled_natively_in_epsg4326(run_alg, tmp_path):
    paths = make_sample_scene(str(tmp_path / "utm"), size=SIZE, seed=7)
    scene = SampleScene(SIZE, seed=7)
    dates = scene.asc_dates[::20]
    utm_t = Affine(PIXEL / 2, 0.0, scene.xmin, 0.0, -PIXEL / 2, scene.ymax)  # 10 m, as the geo grid
    bounds = (scene.xmin, scene.ymin, scene.xmin + scene.extent, scene.ymax)
    geo_t, w, h = calculate_default_transform("EPSG:32647", "EPSG:4326", SIZE, SIZE, *bounds)
    geo_t, w, h = calculate_default_transform(
        "EPSG:32647", "EPSG:4326", SIZE, SIZE, *bounds, resolution=geo_t.a / 2
    )
    stacks = {}
    grids = (("utm", "EPSG:32647", utm_t, 2 * SIZE, 2 * SIZE), ("geo", "EPSG:4326", geo_t, w, h))
    for key, crs, t, ww, hh in grids:
        stacks[key] = str(tmp_path / f"{key}.tif")
        write_stack(stacks[key], _native(scene, dates, crs, t, ww, hh), dates, crs, t)
    steps = {}
    for key, stack in stacks.items():
        out = str(tmp_path / f"f_{key}.csv")
        run_alg(
            "faultlithology",
            {"INPUT": stack, "FAULTS": paths["faults"], "FAULT_FIELD": "name", "BIN_WIDTH": 60,
             "MAX_DISTANCE": 600, "OUTPUT_FAULTS": out},
        )  # fmt: skip
        steps[key] = _steps(out)
    assert steps["geo"].keys() == steps["utm"].keys() and len(steps["utm"]) == 6
    for name, step in steps["utm"].items():
        assert steps["geo"][name] == pytest.approx(step, rel=0.05), (name, steps["geo"][name], step)
