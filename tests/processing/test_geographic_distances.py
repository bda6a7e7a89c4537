"""Distances are metres on the ground whatever the CRS (issue 14, section 3): benchmarkcompare and
faultlithology on the sample scene warped to EPSG:4326 (rasterio.warp) give the projected results."""

import csv

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from deformation_forecast.core.metric import ground_scale, metres_per_degree
from deformation_forecast.core.stack import read_info, write_stack

SIZE = 96


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return make_geo_scene(tmp_path_factory.mktemp("geo"))


def make_geo_scene(folder):
    """The sample scene (EPSG:32647) and its stack and incidence warped to EPSG:4326."""
    from deformation_forecast.core.sample import make_sample_scene

    paths = make_sample_scene(str(folder / "utm"), size=SIZE, seed=7)
    geo = {"stack_asc": str(folder / "stack_4326.tif"), "incidence_asc": str(folder / "inc_4326.tif")}
    info = read_info(paths["stack_asc"])
    # pixels of about half the original size, nearest: every value is a copy of the projected one,
    # so that what differs is the geometry (distances), not a smoothing of the fault steps
    dst_t, w, h = calculate_default_transform(info.crs, "EPSG:4326", info.width, info.height, *info.bounds)
    res = dst_t.a / 2
    dst_t, w, h = calculate_default_transform(
        info.crs, "EPSG:4326", info.width, info.height, *info.bounds, resolution=res
    )
    for key, is_stack in (("stack_asc", True), ("incidence_asc", False)):
        with rasterio.open(paths[key]) as src:
            data = src.read(out_dtype="float32")
            out = np.full((src.count, h, w), np.nan, dtype="float32")
            reproject(
                data, out, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                dst_transform=dst_t, dst_crs="EPSG:4326", dst_nodata=np.nan,
                resampling=Resampling.nearest,
            )  # fmt: skip
        if is_stack:
            write_stack(geo[key], out, info.dates, "EPSG:4326", dst_t)
        else:
            with rasterio.open(
                geo[key], "w", driver="GTiff", count=1, width=w, height=h, dtype="float32",
                crs="EPSG:4326", transform=dst_t, nodata=np.nan,
            ) as dst:  # fmt: skip
                dst.write(out)
    return paths, geo


def test_metres_per_degree_known_values():
    # against the series of the WGS84 lengths of a degree: latitude 111132.954 - 559.822 cos 2phi
    # + 1.175 cos 4phi, longitude 111412.84 cos phi - 93.5 cos 3phi + 0.118 cos 5phi
    kx, _ = metres_per_degree(0.0)
    assert kx == pytest.approx(111319.49, abs=0.01)
    assert metres_per_degree(45.0)[1] == pytest.approx(111132.954 - 1.175, abs=0.01)
    assert metres_per_degree(60.0)[0] == pytest.approx(55799.98, rel=1e-4)


def test_ground_scale_of_crs_kinds():
    from rasterio.crs import CRS

    assert ground_scale(CRS.from_epsg(32647), (0, 0, 1, 1)).identity
    g = ground_scale(CRS.from_epsg(4326), (102.0, 38.0, 102.2, 39.0))
    assert g.kx == pytest.approx(metres_per_degree(38.5)[0]) and "latitude 38.5000" in g.note
    ft = ground_scale(CRS.from_epsg(2227), (0, 0, 1, 1))  # California zone 3, US survey feet
    assert ft.kx == pytest.approx(0.3048006, rel=1e-6) and "metres, converted" in ft.note


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_benchmarkcompare_on_epsg4326_matches_projected(run_alg, scenes, tmp_path):
    paths, geo = scenes
    common = {"BENCHMARKS": paths["benchmarks_csv"], "BENCHMARKS_CRS": "EPSG:32647", "RADIUS": 20}
    proj = run_alg(
        "benchmarkcompare",
        {**common, "INPUT": paths["stack_asc"], "INCIDENCE_RASTER": paths["incidence_asc"]},
    )
    res = run_alg(
        "benchmarkcompare", {**common, "INPUT": geo["stack_asc"], "INCIDENCE_RASTER": geo["incidence_asc"]}
    )
    assert res["BENCHMARKS_USED"] == proj["BENCHMARKS_USED"] > 0
    assert abs(res["MAE"] - proj["MAE"]) < 1.0
    # 20 read as degrees would average the whole scene: far from the projected answer
    assert proj["MAE"] < 8.0


def test_faultlithology_on_epsg4326_matches_projected(run_alg, scenes, tmp_path):
    """Steps within 5 % of the projected ones, or within the projected step's standard error where
    the warp's half-pixel moves of values across a fault weigh more (measured, BIN_WIDTH 60 m: F3,
    F6, F16, F23 within 0.9-2.7 %; F1 5.4 % = a third of its standard error, F17 10 % = a fifth of
    it); the distances themselves agree within 0.5 m."""
    import json

    from rasterio.warp import transform as warp_points

    from deformation_forecast.core.faults import signed_distance

    paths, geo = scenes
    steps = {}
    dist_geo = str(tmp_path / "dist_geo.tif")
    for key, src in (("utm", paths["stack_asc"]), ("geo", geo["stack_asc"])):
        out = str(tmp_path / f"f_{key}.csv")
        run_alg(
            "faultlithology",
            {"INPUT": src, "FAULTS": paths["faults"], "FAULT_FIELD": "name", "BIN_WIDTH": 60,
             "MAX_DISTANCE": 600, "OUTPUT_FAULTS": out,
             "OUTPUT_DISTANCE": dist_geo if key == "geo" else "TEMPORARY_OUTPUT"},
        )  # fmt: skip
        steps[key] = {r["fault"]: (float(r["step"]), float(r["step_se"])) for r in _rows(out)}
        assert max(abs(float(r["dist_to"])) for r in _rows(out)) == pytest.approx(600)
    assert steps["geo"].keys() == steps["utm"].keys() and len(steps["utm"]) == 6
    close = 0
    for name, (step, se) in steps["utm"].items():
        diff = abs(steps["geo"][name][0] - step)
        assert diff <= max(0.05 * abs(step), se), name
        close += diff <= 0.05 * abs(step)
    assert close >= 4
    # the signed distance raster on EPSG:4326 is in metres: equal to the distance computed in UTM
    with open(paths["faults"]) as f:
        faults = [[np.asarray(ft["geometry"]["coordinates"], float)] for ft in json.load(f)["features"]]
    with rasterio.open(dist_geo) as r:
        d = r.read(1)
        rows, cols = np.mgrid[0 : r.height : 7, 0 : r.width : 7]
        lon, lat = r.xy(rows.ravel(), cols.ravel())
        got = d[rows.ravel(), cols.ravel()]
    x, y = warp_points("EPSG:4326", "EPSG:32647", lon, lat)
    want, _, _ = signed_distance(np.asarray(x), np.asarray(y), faults)
    near = np.abs(want) < 2000
    assert near.sum() > 50
    # UTM grid distances are 0.9996 x ground distances (scale factor), hence the relative term
    np.testing.assert_allclose(got[near], want[near] / 0.9996, atol=0.5, rtol=1e-3)
