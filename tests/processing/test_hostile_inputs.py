"""Hostile inputs (issue 15): every run gives the numbers of the clean input, or fails with a
QgsProcessingException that names the culprit, and leaves no file under any output name.

Classes: undeclared nodata sentinels (rasters, point CSVs, benchmark CSVs, the second stack of
crossorbit), GDAL masks (internal, external .msk), units (band unit m / cm), incidence angles in
radians or near grazing, broken files (truncated GeoTIFF, a folder for a file, interferogram band
labels), limits (more bands than a GeoTIFF holds), and full / read-only disks on a tmpfs the test
mounts (skipped with the reason where mounting is not permitted).
"""

from __future__ import annotations

import contextlib
import csv
import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from qgis.core import QgsProcessingException

from tests.conftest import make_dates
from tests.tmpfs import fill, tmpfs

X0, Y0, RES = 500000.0, 4300000.0, 20.0
N, H, W = 10, 12, 16
TRANSFORM = Affine(RES, 0, X0, 0, -RES, Y0)
DATES = make_dates(N)
LABELS = [d.isoformat() for d in DATES]
# pixels that carry a sentinel / are masked in the hostile files (row, col)
BAD = [(2, 3), (2, 4), (5, 9), (7, 1), (10, 14), (0, 0)]

# outcome of every case, for the figures of the report (see test_zz_figures)
OUTCOMES: dict[str, str] = {}
MESSAGES: dict[str, str] = {}  # the message of each refusal (printed with -s by test_zz_figures)


def clean_data() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    bowl = np.exp(-((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / 30.0)
    return (-np.linspace(0, 40, N)[:, None, None] * bowl).round(1).astype("float32")


def with_nan(data: np.ndarray, pixels=BAD, bands=None) -> np.ndarray:
    out = data.copy()
    for r, c in pixels:
        out[bands if bands is not None else slice(None), r, c] = np.nan
    return out


def write_raster(path, data, nodata=None, dtype="float32", unit=None, labels=LABELS, mask=None, **opts):
    """A plain GeoTIFF with rasterio: band descriptions = `labels`, optional nodata, band unit and
    GDAL per-dataset mask (`mask` True = valid; internal unless opts say otherwise)."""
    prof = dict(
        driver="GTiff",
        width=W,
        height=H,
        count=data.shape[0],
        dtype=dtype,
        crs="EPSG:32647",
        transform=TRANSFORM,
        nodata=nodata,
    )
    env = {"GDAL_TIFF_INTERNAL_MASK": opts.pop("internal_mask", "YES")}
    with rasterio.Env(**env), rasterio.open(str(path), "w", **prof, **opts) as dst:
        dst.write(np.asarray(data).astype(dtype))
        for b, lab in enumerate(labels, start=1):
            dst.set_band_description(b, lab)
            if unit:
                dst.set_band_unit(b, unit)
        if mask is not None:
            dst.write_mask(np.where(mask, 255, 0).astype("uint8"))
    return str(path)


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        arr = src.read(out_dtype="float64")
        if src.nodata is not None and not np.isnan(src.nodata):
            arr[arr == src.nodata] = np.nan
        return arr


@pytest.fixture
def outdir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def files_in(d) -> list[str]:
    return sorted(os.listdir(d))


# ---------------------------------------------------------------- rasters: right numbers


def _rate(run_alg, stack, out) -> tuple[np.ndarray, dict]:
    res = run_alg("deformationrate", {"INPUT": stack, "OUTPUT": str(out)})
    return read(res["OUTPUT"]), res


def _hostile_stack(tmp_path, case: str) -> str:
    """The clean stack with BAD pixels spoilt in the way `case` names."""
    data = clean_data()
    p = tmp_path / f"{case}.tif"
    spoilt = data.copy()
    for r, c in BAD:
        spoilt[:, r, c] = -9999.0
    if case == "sentinel-9999":
        return write_raster(p, spoilt)
    if case == "sentinel-9999-nan-declared":
        return write_raster(p, spoilt, nodata=float("nan"))
    if case == "sentinel-9999-other-declared":
        return write_raster(p, spoilt, nodata=-1.0e10)
    if case == "sentinel-32768-int16":
        ints = np.round(data).astype("int16")
        for r, c in BAD:
            ints[:, r, c] = -32768
        return write_raster(p, ints, dtype="int16")
    if case == "sentinel-9999-one-date":
        one = data.copy()
        for r, c in BAD:
            one[N // 2, r, c] = 9999.0
        return write_raster(p, one)
    if case == "spike-one-date":  # a fill value at no round number, at one date: away and back
        one = data.copy()
        for k, (r, c) in enumerate(BAD):
            one[N // 2, r, c] = 4321.7 if k % 2 else -2718.3
        return write_raster(p, one)
    if case in ("mask-internal", "mask-external"):
        valid = np.ones((H, W), bool)
        for r, c in BAD:
            valid[r, c] = False
        junk = data.copy()
        for r, c in BAD:
            junk[:, r, c] = 123.0  # an ordinary value under the mask
        internal = "YES" if case == "mask-internal" else "NO"
        path = write_raster(p, junk, mask=valid, internal_mask=internal)
        if case == "mask-external":
            assert os.path.exists(path + ".msk")
        return path
    raise AssertionError(case)


def _expected_rate_input(case: str) -> np.ndarray:
    data = clean_data()
    if case == "sentinel-32768-int16":
        data = np.round(data).astype("float32")
    if case in ("sentinel-9999-one-date", "spike-one-date"):
        return with_nan(data, bands=N // 2)
    return with_nan(data)


RASTER_CASES = [
    "sentinel-9999",
    "sentinel-9999-nan-declared",
    "sentinel-9999-other-declared",
    "sentinel-32768-int16",
    "sentinel-9999-one-date",
    "spike-one-date",
    "mask-internal",
    "mask-external",
]


@pytest.mark.parametrize("case", RASTER_CASES)
def test_rate_of_a_spoilt_stack_equals_the_clean_one(run_alg, tmp_path, outdir, case):
    stack = _hostile_stack(tmp_path, case)
    ref_path = write_raster(tmp_path / f"ref_{case}.tif", _expected_rate_input(case))
    got, res = _rate(run_alg, stack, outdir / "rate.tif")
    want, ref = _rate(run_alg, ref_path, tmp_path / "ref_rate.tif")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert res["MIN_RATE"] == pytest.approx(ref["MIN_RATE"]) and res["MIN_RATE"] > -1000
    # the values read as nodata are an output number: every spoilt pixel-date, once
    one_date = case in ("sentinel-9999-one-date", "spike-one-date")
    assert res["MASKED_VALUES"] == len(BAD) * (1 if one_date else N)
    assert ref["MASKED_VALUES"] == 0
    OUTCOMES[f"rate/{case}"] = "correct"


@pytest.mark.parametrize("case", ["sentinel-9999", "mask-internal"])
def test_losvertical_of_a_spoilt_stack_equals_the_clean_one(run_alg, tmp_path, outdir, case):
    stack = _hostile_stack(tmp_path, case)
    ref_path = write_raster(tmp_path / "ref.tif", _expected_rate_input(case))
    got = read(
        run_alg("losvertical", {"INPUT": stack, "INCIDENCE": 34.17, "OUTPUT": str(outdir / "v.tif")})[
            "OUTPUT"
        ]
    )
    want = read(
        run_alg("losvertical", {"INPUT": ref_path, "INCIDENCE": 34.17, "OUTPUT": str(tmp_path / "rv.tif")})[
            "OUTPUT"
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    assert np.nanmin(got) > -100
    OUTCOMES[f"losvertical/{case}"] = "correct"


def test_masked_values_and_null_geometries_are_output_numbers(run_alg, tmp_path, outdir):
    """losvertical returns MASKED_VALUES (each spoilt pixel-date once); extractprofiles and
    benchmarkcompare return NULL_GEOMETRY_COUNT for the features they skipped."""
    import json

    stack = _hostile_stack(tmp_path, "sentinel-9999")
    res = run_alg("losvertical", {"INPUT": stack, "INCIDENCE": 34.17, "OUTPUT": str(outdir / "v.tif")})
    assert res["MASKED_VALUES"] == len(BAD) * N
    clean = write_raster(tmp_path / "clean.tif", clean_data())
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32647"}}
    line = {"type": "LineString", "coordinates": [[X0 + 10, Y0 - 50], [X0 + 310, Y0 - 50]]}
    lines = tmp_path / "l.geojson"
    feats = [
        {"type": "Feature", "properties": {"name": n}, "geometry": g} for n, g in (("I", line), ("II", None))
    ]
    lines.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": feats}))
    res = run_alg("extractprofiles", {"INPUT": clean, "LINES": str(lines), "OUTPUT": "TEMPORARY_OUTPUT"})
    assert (res["PROFILE_COUNT"], res["NULL_GEOMETRY_COUNT"], res["MASKED_VALUES"]) == (1, 1, 0)
    # on the spoilt stack the line (row 2) reads the two spoilt pixels of that row at every date
    res = run_alg("extractprofiles", {"INPUT": stack, "LINES": str(lines), "OUTPUT": "TEMPORARY_OUTPUT"})
    assert res["MASKED_VALUES"] == sum(r == 2 for r, _ in BAD) * N == 2 * N
    pts = [((X0 + 110, Y0 - 110), "BM0"), ((X0 + 150, Y0 - 110), "BM1"), (None, "BM2"), (None, "BM3")]
    dates = [d.strftime("%Y%m%d") for d in DATES[::3]]
    bms = [
        {
            "type": "Feature",
            "properties": {"id": n, **{f"D{d}": -float(i + k) for i, d in enumerate(dates)}},
            "geometry": {"type": "Point", "coordinates": list(xy)} if xy else None,
        }
        for k, (xy, n) in enumerate(pts)
    ]
    bm = tmp_path / "bm.geojson"
    bm.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": bms}))
    kw = {"INPUT": clean, "INCIDENCE": 34.17, "RADIUS": 0, "OUTPUT": "TEMPORARY_OUTPUT"}
    res = run_alg("benchmarkcompare", {**kw, "BENCHMARKS": str(bm)})
    assert (res["BENCHMARKS_USED"], res["NULL_GEOMETRY_COUNT"]) == (2, 2)
    OUTCOMES["counts/masked-and-null-geometries"] = "correct"


def _lines(tmp_path, crs: str | None = "EPSG:32647") -> str:
    import json

    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "I"},
                "geometry": {"type": "LineString", "coordinates": [[X0 + 10, Y0 - 50], [X0 + 310, Y0 - 50]]},
            }
        ],
    }
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:{crs.replace(':', '::')}"}}
    p = tmp_path / f"lines_{crs is not None}.geojson"
    p.write_text(json.dumps(doc))
    return str(p)


def _profile_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_profiles_of_a_spoilt_stack_equal_the_clean_ones(run_alg, tmp_path, outdir):
    data = clean_data()
    spoilt = data.copy()
    spoilt[:, 2, 3:8] = -9999.0  # along the line (row 2)
    stack = write_raster(tmp_path / "s.tif", spoilt)
    ref = write_raster(tmp_path / "r.tif", with_nan(data, [(2, c) for c in range(3, 8)]))
    lines = _lines(tmp_path)
    kw = {"LINES": lines, "INTERPOLATION": 0, "OUTPUT": "TEMPORARY_OUTPUT"}
    got = _profile_rows(
        run_alg("extractprofiles", {"INPUT": stack, **kw, "OUTPUT_CSV": str(outdir / "p.csv")})["OUTPUT_CSV"]
    )
    want = _profile_rows(
        run_alg("extractprofiles", {"INPUT": ref, **kw, "OUTPUT_CSV": str(tmp_path / "r.csv")})["OUTPUT_CSV"]
    )
    assert got == want
    values = [
        float(v)
        for row in got
        for k, v in row.items()
        if k not in ("profile", "part", "date") and v not in ("",)
    ]
    assert min(values) > -1000
    OUTCOMES["extractprofiles/sentinel-9999"] = "correct"


def test_crossorbit_second_stack_with_sentinels(run_alg, tmp_path):
    data = clean_data()
    b = data * 0.9
    spoilt = b.copy()
    for r, c in BAD:
        spoilt[:, r, c] = -32768.0
    a_path = write_raster(tmp_path / "a.tif", data)
    kw = {"INPUT": a_path, "INCIDENCE": 34.17, "INCIDENCE_B": 41.42, "MODE": 0, "OUTPUT": "TEMPORARY_OUTPUT"}
    got = run_alg("crossorbit", {**kw, "INPUT_B": write_raster(tmp_path / "b.tif", spoilt)})
    want = run_alg("crossorbit", {**kw, "INPUT_B": write_raster(tmp_path / "bref.tif", with_nan(b))})
    for key in ("R", "SLOPE", "RMSE", "BIAS", "N"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
    OUTCOMES["crossorbit/INPUT_B-sentinel-32768"] = "correct"


def test_crossorbit_second_stack_on_another_grid_with_two_sentinels(run_alg, tmp_path):
    """A second stack on a shifted grid is warped: with two different undeclared sentinels, both
    are nodata for the warp (core.validity.warp_source_bands), not only the most frequent, so the
    numbers equal those of the same stack with NaN there."""
    import rasterio
    from affine import Affine

    data = clean_data()
    b = data * 0.9
    spoilt = b.copy()
    for k, (r, c) in enumerate(BAD):
        spoilt[:, r, c] = -9999.0 if k % 2 else -32768.0
    shifted = TRANSFORM * Affine.translation(0.3, 0.4)  # 0.3 and 0.4 of a pixel

    def write(name, arr):
        prof = dict(driver="GTiff", width=W, height=H, count=N, dtype="float32", crs="EPSG:32647")
        with rasterio.open(str(tmp_path / name), "w", transform=shifted, **prof) as dst:
            dst.write(arr)
            for i, lab in enumerate(LABELS, start=1):
                dst.set_band_description(i, lab)
        return str(tmp_path / name)

    a_path = write_raster(tmp_path / "a.tif", data)
    kw = {"INPUT": a_path, "INCIDENCE": 34.17, "INCIDENCE_B": 41.42, "MODE": 0, "OUTPUT": "TEMPORARY_OUTPUT"}
    got = run_alg("crossorbit", {**kw, "INPUT_B": write("b.tif", spoilt)})
    want = run_alg("crossorbit", {**kw, "INPUT_B": write("bref.tif", with_nan(b))})
    for key in ("R", "SLOPE", "RMSE", "BIAS", "N"):
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
    assert got["N"] > 0 and abs(got["BIAS"]) < 100  # no -9999 blended into a valid pixel
    OUTCOMES["crossorbit/INPUT_B-warped-two-sentinels"] = "correct"


def test_band_unit_metres_is_converted(run_alg, tmp_path, outdir):
    data = clean_data()
    metres = write_raster(tmp_path / "m.tif", data / 1000.0, unit="m")
    mm = write_raster(tmp_path / "mm.tif", data, unit="mm")
    got, res = _rate(run_alg, metres, outdir / "rate.tif")
    want, ref = _rate(run_alg, mm, tmp_path / "rate_mm.tif")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert res["MIN_RATE"] == pytest.approx(ref["MIN_RATE"], rel=1e-5)
    # and a metre stack compared with a millimetre one (crossorbit) gives slope 1, not 1000
    co = run_alg(
        "crossorbit",
        {
            "INPUT": mm,
            "INPUT_B": metres,
            "INCIDENCE": 34.17,
            "INCIDENCE_B": 34.17,
            "MODE": 0,
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )
    assert co["SLOPE"] == pytest.approx(1.0, abs=1e-4)
    OUTCOMES["rate/unit-m"] = OUTCOMES["crossorbit/unit-m-vs-mm"] = "correct"


# ---------------------------------------------------------------- tables: right numbers


def _bench_csv(path, rows) -> str:
    header = ["id", "x", "y"] + ["D" + d.strftime("%Y%m%d") for d in DATES[::3]]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return str(path)


def test_benchmark_csv_with_sentinels(run_alg, tmp_path):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    rng = np.random.default_rng(3)
    rows, spoilt = [], []
    for k in range(6):
        x, y = X0 + (3 + 2 * k + 0.5) * RES, Y0 - (4 + k + 0.5) * RES
        vals = [round(v, 2) for v in rng.normal(-5 * k, 1, len(DATES[::3]))]
        rows.append([f"BM{k}", x, y, *vals])
        bad = list(vals)
        if k in (1, 4):
            bad[2] = -9999
        spoilt.append([f"BM{k}", x, y, *bad])
    for r in rows:
        if r[0] in ("BM1", "BM4"):
            r[3 + 2] = ""
    kw = {"INPUT": stack, "INCIDENCE": 34.17, "RADIUS": 0, "OUTPUT": "TEMPORARY_OUTPUT"}
    got = run_alg("benchmarkcompare", {**kw, "BENCHMARKS": _bench_csv(tmp_path / "bad.csv", spoilt)})
    want = run_alg("benchmarkcompare", {**kw, "BENCHMARKS": _bench_csv(tmp_path / "ref.csv", rows)})
    for key in ("MAE", "RMSE", "MAX_ABS", "BIAS", "N", "BENCHMARKS_USED"):
        assert got[key] == pytest.approx(want[key]), key
    assert got["MAX_ABS"] < 100
    assert (got["MASKED_VALUES"], want["MASKED_VALUES"]) == (2, 0)
    OUTCOMES["benchmarkcompare/csv-sentinel-9999"] = "correct"


def test_benchmark_with_too_few_dates_is_counted_as_skipped(run_alg, tmp_path):
    """A benchmark whose only survey paired with an acquisition is the reference: skipped, counted
    in BENCHMARKS_SKIPPED and named in the log; the statistics equal those without it."""
    stack = write_raster(tmp_path / "s.tif", clean_data())
    x, y = X0 + 5.5 * RES, Y0 - 5.5 * RES
    good = [["BM0", x, y, 0, -1, -2, -3], ["BM1", x + 40, y, 0, -2, -3, -4]]
    lonely = ["BM2", x + 80, y, 0, "", "", ""]
    kw = {"INPUT": stack, "INCIDENCE": 34.17, "RADIUS": 0, "OUTPUT": "TEMPORARY_OUTPUT"}
    fb = Recorder()
    got = run_alg(
        "benchmarkcompare", {**kw, "BENCHMARKS": _bench_csv(tmp_path / "b.csv", [*good, lonely])}, feedback=fb
    )
    want = run_alg("benchmarkcompare", {**kw, "BENCHMARKS": _bench_csv(tmp_path / "g.csv", good)})
    for key in ("MAE", "RMSE", "MAX_ABS", "BIAS", "N"):
        assert got[key] == pytest.approx(want[key]), key
    assert (got["BENCHMARKS_USED"], got["BENCHMARKS_SKIPPED"]) == (2, 1)
    assert any("'BM2' skipped: too few dates" in w for w in fb.warnings + fb.infos), fb.warnings
    OUTCOMES["benchmarkcompare/too-few-dates-counted"] = "correct"


def test_point_csv_with_sentinels(run_alg, tmp_path):
    header = ["x", "y"] + ["D" + d.strftime("%Y%m%d") for d in DATES]
    rows, spoilt = [], []
    for k in range(12):
        vals = [round(-1.5 * i * (k % 4 + 1), 2) for i in range(N)]
        xy = [X0 + 40 * (k % 4) + 10, Y0 - 40 * (k // 4) - 10]
        rows.append(xy + vals)
        bad = list(vals)
        if k % 5 == 0:
            bad[3] = -9999
        spoilt.append(xy + bad)
    for r, s in zip(rows, spoilt, strict=True):
        if s[5] == -9999:
            r[5] = ""
    files = {}
    for name, table in (("bad", spoilt), ("ref", rows)):
        files[name] = str(tmp_path / f"{name}.csv")
        with open(files[name], "w", newline="") as f:
            csv.writer(f).writerows([header, *table])
    kw = {"CSV_CRS": "EPSG:32647", "PIXEL_SIZE": 40.0, "OUTPUT_CRS": "EPSG:32647"}
    got = run_alg("pointstostack", {"INPUT_CSV": files["bad"], **kw, "OUTPUT": str(tmp_path / "bad.tif")})
    want = run_alg("pointstostack", {"INPUT_CSV": files["ref"], **kw, "OUTPUT": str(tmp_path / "ref.tif")})
    np.testing.assert_array_equal(read(got["OUTPUT"]), read(want["OUTPUT"]))
    assert np.nanmin(read(got["OUTPUT"])) > -100
    assert (got["MASKED_VALUES"], want["MASKED_VALUES"]) == (3, 0)  # rows 0, 5 and 10
    assert got["DROPPED_COUNT"] == want["DROPPED_COUNT"] == 0
    OUTCOMES["pointstostack/csv-sentinel-9999"] = "correct"


def _points_csv(path, rows) -> str:
    header = ["x", "y"] + ["D" + d.strftime("%Y%m%d") for d in DATES]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return str(path)


def test_points_dropped_are_counted_with_their_reasons(run_alg, tmp_path):
    """A point outside the CSV_CRS's area of use (a minority), a row without any value and a point
    sharing a cell (METHOD nearest) are dropped: DROPPED_COUNT = 3, each reason in the log, and the
    stack equals the one made from the clean rows alone."""
    clean = []
    for k in range(12):
        clean.append(
            [X0 + 40 * (k % 4) + 10, Y0 - 40 * (k // 4) - 10, *[-1.5 * i * (k % 4 + 1) for i in range(N)]]
        )
    hostile = [
        *clean,
        [X0 + 2_000_000.0, Y0, *[-1.0] * N],  # ~122 E: outside UTM 47N (96-102 E)
        [X0 + 50, Y0 - 50, *[""] * N],  # no value at any date
        [X0 + 12, Y0 - 12, *[-99.0] * N],  # the cell of the first point, farther from its centre
    ]
    kw = {"CSV_CRS": "EPSG:32647", "PIXEL_SIZE": 40.0, "OUTPUT_CRS": "EPSG:32647", "METHOD": 0}
    fb = Recorder()
    got = run_alg(
        "pointstostack",
        {"INPUT_CSV": _points_csv(tmp_path / "bad.csv", hostile), **kw, "OUTPUT": str(tmp_path / "b.tif")},
        feedback=fb,
    )
    want = run_alg(
        "pointstostack",
        {"INPUT_CSV": _points_csv(tmp_path / "ref.csv", clean), **kw, "OUTPUT": str(tmp_path / "r.tif")},
    )
    np.testing.assert_array_equal(read(got["OUTPUT"]), read(want["OUTPUT"]))
    assert (got["DROPPED_COUNT"], want["DROPPED_COUNT"]) == (3, 0)
    assert (got["SKIPPED_COUNT"], got["MERGED_COUNT"], got["POINT_COUNT"]) == (1, 1, 12)
    log = "\n".join(fb.infos + fb.warnings)
    assert "1 point(s) in columns 'x'/'y' lie outside the area of use of EPSG:32647: dropped" in log, log
    assert (
        "Points dropped: 3 (1 outside the area of use of their CRS, 1 without a value at any date, "
        "1 sharing a cell with a nearer point (METHOD nearest))." in log
    ), log
    OUTCOMES["pointstostack/dropped-counted"] = "correct"


# ---------------------------------------------------------------- refusals


def _refused(run_alg, alg, params, pattern, outdir, label):
    with pytest.raises(QgsProcessingException, match=pattern) as e:
        run_alg(alg, params)
    assert files_in(outdir) == []
    OUTCOMES[label] = "refused"
    MESSAGES[label] = str(e.value)


@pytest.mark.parametrize("angle,pattern", [(1.2, "radians"), (85.0, "1 / cos"), (89.9, "1 / cos")])
@pytest.mark.parametrize("alg", ["losvertical", "crossorbit"])
def test_incidence_radians_or_grazing(run_alg, tmp_path, outdir, alg, angle, pattern):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    if alg == "losvertical":
        params = {"INPUT": stack, "INCIDENCE": angle, "OUTPUT": str(outdir / "v.tif")}
    else:
        params = {"INPUT": stack, "INPUT_B": stack, "INCIDENCE": angle, "OUTPUT": str(outdir / "c.csv")}
    _refused(run_alg, alg, params, pattern, outdir, f"{alg}/incidence-{angle}")


def test_warped_incidence_raster_with_two_sentinels(run_alg, tmp_path, outdir):
    """An incidence raster on another grid (warped, bilinear) holding two different undeclared
    sentinels: both reach GDAL as nodata, so the vertical stack equals the one made with NaN there
    (never a blend of -9999 into the angles, never 'incidence angle out of range')."""
    stack = write_raster(tmp_path / "s.tif", clean_data())
    angles = np.full((1, H, W + 1), 34.0, "float32") + np.linspace(0, 2, W + 1)[None, None, :]
    spoilt, nan = angles.copy(), angles.copy()
    for j, (r, c) in enumerate(BAD):
        spoilt[0, r, c + 1] = -9999.0 if j % 2 else -32768.0
        nan[0, r, c + 1] = np.nan
    kw = dict(width=W + 1, transform=Affine(RES, 0, X0 - RES / 2, 0, -RES, Y0), labels=["incidence"])
    inc = {}
    for name, arr in (("spoilt", spoilt), ("nan", nan)):
        prof = dict(driver="GTiff", height=H, count=1, dtype="float32", crs="EPSG:32647")
        with rasterio.open(
            tmp_path / f"inc_{name}.tif", "w", width=kw["width"], transform=kw["transform"], **prof
        ) as dst:
            dst.write(arr)
        inc[name] = str(tmp_path / f"inc_{name}.tif")
    got = read(
        run_alg(
            "losvertical",
            {"INPUT": stack, "INCIDENCE_RASTER": inc["spoilt"], "OUTPUT": str(outdir / "v.tif")},
        )["OUTPUT"]
    )
    want = read(
        run_alg(
            "losvertical", {"INPUT": stack, "INCIDENCE_RASTER": inc["nan"], "OUTPUT": str(tmp_path / "w.tif")}
        )["OUTPUT"]
    )
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert np.isnan(got).sum() > 0 and np.nanmin(got) > -100
    OUTCOMES["losvertical/warped-incidence-two-sentinels"] = "correct"


def test_incidence_raster_in_radians(run_alg, tmp_path, outdir):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    inc = write_raster(tmp_path / "inc.tif", np.full((1, H, W), 0.6), labels=["incidence"])
    params = {"INPUT": stack, "INCIDENCE_RASTER": inc, "OUTPUT": str(outdir / "v.tif")}
    _refused(run_alg, "losvertical", params, "radians", outdir, "losvertical/incidence-raster-radians")


def test_interferogram_labels(run_alg, tmp_path, outdir):
    labels = [
        f"{a.strftime('%Y%m%d')}_{b.strftime('%Y%m%d')}"
        for a, b in zip(DATES, DATES[1:] + DATES[:1], strict=True)
    ]
    ifg = write_raster(tmp_path / "ifg.tif", clean_data(), labels=labels)
    _refused(
        run_alg,
        "deformationrate",
        {"INPUT": ifg, "OUTPUT": str(outdir / "r.tif")},
        "interferograms",
        outdir,
        "rate/interferograms",
    )


def test_truncated_geotiff(run_alg, tmp_path, outdir):
    good = write_raster(tmp_path / "good.tif", clean_data())
    blob = open(good, "rb").read()
    bad = tmp_path / "cut.tif"
    bad.write_bytes(blob[: len(blob) * 2 // 3])
    _refused(
        run_alg,
        "deformationrate",
        {"INPUT": str(bad), "OUTPUT": str(outdir / "r.tif")},
        "'cut.tif' cannot be read.*truncated or corrupt",
        outdir,
        "rate/truncated-geotiff",
    )


def test_folder_instead_of_benchmark_file(run_alg, tmp_path, outdir):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    folder = tmp_path / "bm.csv"
    folder.mkdir()
    params = {"INPUT": stack, "BENCHMARKS": str(folder), "OUTPUT": str(outdir / "b.csv")}
    _refused(
        run_alg,
        "benchmarkcompare",
        params,
        "BENCHMARKS: .*bm.csv is a folder",
        outdir,
        "benchmarkcompare/folder-for-file",
    )


def test_too_many_bands_refused_before_writing(tmp_path):
    from deformation_forecast.core.errors import InputError
    from deformation_forecast.core.stack import StackWriter

    dates = [f"band{i}" for i in range(65536)]
    with pytest.raises(InputError, match="65535"):
        StackWriter(str(tmp_path / "big.tif"), dates, "EPSG:32647", TRANSFORM, 4, 4)
    assert os.listdir(tmp_path) == []
    OUTCOMES["core/65536-bands"] = "refused"


# ---------------------------------------------------------------- full and read-only disks


def _fill(folder) -> None:
    """Fill the file system of `folder` to the last byte."""
    fill(folder)


WRITERS = {
    # algorithm -> (params given the stack and the output folder, output names)
    "deformationrate": lambda s, d: {"INPUT": s, "OUTPUT": str(d / "rate.tif")},
    "buildstack": lambda s, d: {"LAYERS": None, "UNITS": 0, "OUTPUT": str(d / "stack.tif")},
    "losvertical": lambda s, d: {"INPUT": s, "INCIDENCE": 34.17, "OUTPUT": str(d / "v.tif")},
    "extractprofiles-gpkg": lambda s, d: {"INPUT": s, "LINES": None, "OUTPUT": str(d / "p.gpkg")},
    "extractprofiles-csv": lambda s, d: {
        "INPUT": s,
        "LINES": None,
        "OUTPUT": "TEMPORARY_OUTPUT",
        "OUTPUT_CSV": str(d / "p.csv"),
    },
    "extractprofiles-png": lambda s, d: {
        "INPUT": s,
        "LINES": None,
        "OUTPUT": "TEMPORARY_OUTPUT",
        "OUTPUT_PLOT": str(d / "p.png"),
    },
}


def _single_rasters(tmp_path, data) -> list[str]:
    """One single-band raster per date, the date in the name (buildstack's input)."""
    paths = []
    for k, band in enumerate(data):
        p = tmp_path / f"cum_{DATES[k].strftime('%Y%m%d')}.tif"
        paths.append(write_raster(p, band[None], labels=[""]))
    return paths


@pytest.mark.parametrize("readonly", [False, True], ids=["full", "readonly"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_full_or_readonly_disk(run_alg, tmp_path, writer, readonly):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "256k", readonly=readonly) as mnt:
        if not readonly:
            _fill(mnt)
        params = WRITERS[writer](stack, mnt)
        if "LINES" in params:
            params["LINES"] = _lines(tmp_path)
        if "LAYERS" in params:
            params["LAYERS"] = _single_rasters(tmp_path, clean_data()[:3])
        alg = writer.split("-")[0]
        with pytest.raises(QgsProcessingException, match=r"No space left|Read-only|cannot be written") as e:
            run_alg(alg, params)
        MESSAGES[f"{writer}/{readonly}"] = str(e.value)
        left = [f for f in os.listdir(mnt) if f != "filler"]
        assert left == []
    OUTCOMES[f"{writer}/{'readonly' if readonly else 'full'}-disk"] = "refused"


def test_a_later_output_failing_removes_the_earlier_ones(run_alg, tmp_path, outdir):
    """extractprofiles writes its GeoPackage, then its CSV on a read-only disk: neither is left."""
    stack = write_raster(tmp_path / "s.tif", clean_data())
    mnt = tmp_path / "ro"
    with tmpfs(mnt, "256k", readonly=True) as mnt:
        params = {
            "INPUT": stack,
            "LINES": _lines(tmp_path),
            "OUTPUT": str(outdir / "p.gpkg"),
            "OUTPUT_CSV": str(mnt / "p.csv"),
        }
        with pytest.raises(QgsProcessingException, match=r"Read-only|cannot be written"):
            run_alg("extractprofiles", params)
        assert os.listdir(mnt) == []
    assert files_in(outdir) == []
    OUTCOMES["extractprofiles/later-output-fails"] = "refused"


# ---------------------------------------------------------------- warnings, CRS, silent drops


class Recorder:
    """A QgsProcessingFeedback that keeps the warnings pushed to it."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class _Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.warnings: list[str] = []
                self.infos: list[str] = []

            def pushInfo(self, info):  # noqa: N802
                self.infos.append(info)
                super().pushInfo(info)

            def reportError(self, error, fatalError=False):  # noqa: N802, N803
                self.warnings.append(error)
                super().reportError(error, fatalError)

            def pushWarning(self, warning):  # noqa: N802
                self.warnings.append(warning)
                super().pushWarning(warning)

        return _Feedback()


def test_sentinels_are_reported_to_the_user(run_alg, tmp_path, outdir):
    stack = _hostile_stack(tmp_path, "sentinel-9999")
    fb = Recorder()
    run_alg("deformationrate", {"INPUT": stack, "OUTPUT": str(outdir / "r.tif")}, feedback=fb)
    assert any("'sentinel-9999.tif'" in w and "-9999" in w and "nodata" in w for w in fb.warnings), (
        fb.warnings
    )


def test_spikes_are_reported_to_the_user(run_alg, tmp_path, outdir):
    stack = _hostile_stack(tmp_path, "spike-one-date")
    fb = Recorder()
    res = run_alg("deformationrate", {"INPUT": stack, "OUTPUT": str(outdir / "r.tif")}, feedback=fb)
    want = f"'spike-one-date.tif': {len(BAD)} value(s) jump by more than 500 mm from both neighbouring dates"
    assert any(want in w and f"band {N // 2 + 1}" in w for w in fb.warnings), fb.warnings
    assert res["MASKED_VALUES"] == len(BAD)


def _spikes_at_two_dates(data: np.ndarray, nan: bool = False) -> np.ndarray:
    """`data` with a spike (or NaN) at band N // 2 on half of BAD and at band N - 3 on the rest:
    values at no round number that jump away and come back."""
    out = data.copy()
    for k, (r, c) in enumerate(BAD):
        band = N // 2 if k < len(BAD) // 2 else N - 3
        out[band, r, c] = np.nan if nan else (4321.7 if k % 2 else -2718.3) + data[band, r, c]
    return out


@pytest.mark.parametrize("interleave", ["band", "pixel"])
def test_evaluateforecast_sees_a_spike_in_the_observed_stack(run_alg, tmp_path, interleave):
    """evaluateforecast reads one date at a time (and its interval coverage too): a spike in the
    OBSERVED stack, whatever its layout (a band-interleaved file is read band by band), is NaN as
    in every other reader: the metrics, the coverage and the width equal those of the stack with
    NaN there, and MASKED_VALUES counts each spike once; the user is warned."""
    data = clean_data() - 5.0
    kw = {
        "PREDICTED": write_raster(tmp_path / "p.tif", data + 1.0),
        "LOWER": write_raster(tmp_path / "lo.tif", data + np.where(np.arange(W) % 3, -1.0, 0.5)),
        "UPPER": write_raster(tmp_path / "hi.tif", data + 2.0),
        "OUTPUT_TABLE": "TEMPORARY_OUTPUT",
    }
    spiky = write_raster(tmp_path / "o.tif", _spikes_at_two_dates(data), interleave=interleave)
    ref = write_raster(tmp_path / "r.tif", _spikes_at_two_dates(data, nan=True), interleave=interleave)
    fb = Recorder()
    got = run_alg("evaluateforecast", {**kw, "OBSERVED": spiky}, feedback=fb)
    want = run_alg("evaluateforecast", {**kw, "OBSERVED": ref})
    for key in ("MAE", "RMSE", "SSIM", "PSNR", "R2", "COVERAGE", "MEAN_WIDTH", "DATA_RANGE_USED"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    assert 0.3 < want["COVERAGE"] < 1 and want["MAE"] == pytest.approx(1.0)
    assert got["MASKED_VALUES"] == len(BAD) and want["MASKED_VALUES"] == 0
    assert any("'o.tif'" in w and "jump by more than 500 mm" in w for w in fb.warnings), fb.warnings
    OUTCOMES[f"evaluateforecast/spike-observed-{interleave}"] = "correct"


def test_comparemodels_sees_a_spike_in_the_stack(run_alg, tmp_path):
    """comparemodels (every model, both modes, the observed test frames) on a stack with spikes at
    a training and a test date equals the stack with NaN there; MASKED_VALUES counts them."""
    data = clean_data() - 5.0
    kw = {"MODELS": [0, 1, 6], "TIME_STEP": 2, "TEST_COUNT": 4, "OUTPUT_TABLE": "TEMPORARY_OUTPUT"}
    spiky = write_raster(tmp_path / "o.tif", _spikes_at_two_dates(data), interleave="band")
    ref = write_raster(tmp_path / "r.tif", _spikes_at_two_dates(data, nan=True), interleave="band")
    got = run_alg("comparemodels", {**kw, "INPUT": spiky})
    want = run_alg("comparemodels", {**kw, "INPUT": ref})
    keys = [k for k in want if k.startswith(("MAE_", "RMSE_", "SSIM_", "R2_"))] + ["DATA_RANGE_USED"]
    assert len(keys) > 6
    for key in keys:
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    rows = [[f.attributes() for f in r[k].getFeatures()] for r in (got, want) for k in ["OUTPUT_TABLE"]]
    cols = [i for i, f in enumerate(got["OUTPUT_TABLE"].fields()) if "seconds" not in f.name()]
    assert [[r[i] for i in cols] for r in rows[0]] == [[r[i] for i in cols] for r in rows[1]]
    assert got["MASKED_VALUES"] == len(BAD) and want["MASKED_VALUES"] == 0
    OUTCOMES["comparemodels/spike"] = "correct"


@pytest.mark.parametrize("unit", [None, "mm"])
def test_undeclared_metres_are_warned_naming_units(run_alg, tmp_path, outdir, unit):
    """A stack in metres that says mm (or nothing): every value within +-1. Kept as mm (the rate is
    the clean one / 1000: nothing is guessed), with a warning naming metres and UNITS."""
    metres = write_raster(tmp_path / "m.tif", clean_data() / 1000.0, unit=unit)
    fb = Recorder()
    got = read(
        run_alg("deformationrate", {"INPUT": metres, "OUTPUT": str(outdir / "r.tif")}, feedback=fb)["OUTPUT"]
    )
    want, _ = _rate(run_alg, write_raster(tmp_path / "mm.tif", clean_data()), tmp_path / "w.tif")
    np.testing.assert_allclose(got * 1000.0, want, rtol=1e-4, atol=1e-4)
    assert any(
        "'m.tif' lies within +-0.04 mm" in w and "UNITS" in w and "metres" in w for w in fb.warnings
    ), fb.warnings
    OUTCOMES[f"rate/undeclared-metres-unit-{unit}"] = "correct"


def test_geojson_without_crs_holding_projected_coordinates(run_alg, tmp_path, outdir):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    lines = _lines(tmp_path, crs=None)  # metres, read as WGS 84 (RFC 7946)
    params = {"INPUT": stack, "LINES": lines, "OUTPUT": str(outdir / "p.gpkg")}
    _refused(
        run_alg,
        "extractprofiles",
        params,
        "LINES: .*not longitude/latitude",
        outdir,
        "extractprofiles/geojson-no-crs",
    )


def test_features_without_geometry_are_counted(run_alg, tmp_path, outdir):
    import json

    stack = write_raster(tmp_path / "s.tif", clean_data())
    line = {"type": "LineString", "coordinates": [[X0 + 100, Y0 - 10], [X0 + 100, Y0 - 230]]}
    poly = {
        "type": "Polygon",
        "coordinates": [[[X0, Y0], [X0 + 320, Y0], [X0 + 320, Y0 - 240], [X0, Y0 - 240], [X0, Y0]]],
    }
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32647"}}

    def fc(path, feats):
        doc = {
            "type": "FeatureCollection",
            "crs": crs,
            "features": [{"type": "Feature", "properties": p, "geometry": g} for p, g in feats],
        }
        path.write_text(json.dumps(doc))
        return str(path)

    faults = fc(
        tmp_path / "f.geojson", [({"name": "F1"}, line), ({"name": "F2"}, None), ({"name": "F3"}, None)]
    )
    litho = fc(tmp_path / "l.geojson", [({"unit": "A"}, poly), ({"unit": "B"}, None)])
    fb = Recorder()
    res = run_alg(
        "faultlithology",
        {
            "INPUT": stack,
            "FAULTS": faults,
            "LITHOLOGY": litho,
            "LITHOLOGY_FIELD": "unit",
            "OUTPUT_FAULTS": str(outdir / "f.csv"),
            "OUTPUT_LITHOLOGY": str(outdir / "l.csv"),
        },
        feedback=fb,
    )
    assert res["FAULT_COUNT"] == 1 and res["NULL_GEOMETRY_COUNT"] == 3
    assert any("FAULTS: 2 feature(s) without geometry" in w for w in fb.warnings), fb.warnings
    assert any("LITHOLOGY: 1 feature(s) without geometry" in w for w in fb.warnings), fb.warnings
    OUTCOMES["faultlithology/null-geometries-counted"] = "correct"


@pytest.mark.parametrize("readonly", [False, True], ids=["full", "readonly"])
def test_table_sinks_on_full_or_readonly_disk(run_alg, tmp_path, readonly):
    """benchmarkcompare's CSV tables (QGIS sinks) on a full / read-only disk: refused, nothing left."""
    stack = write_raster(tmp_path / "s.tif", clean_data())
    x, y = X0 + 5.5 * RES, Y0 - 5.5 * RES
    bm = _bench_csv(tmp_path / "bm.csv", [["BM0", x, y, 0, -1, -2, -3], ["BM1", x + 40, y, 0, -2, -3, -4]])
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "256k", readonly=readonly) as mnt:
        if not readonly:
            _fill(mnt)
        params = {
            "INPUT": stack,
            "BENCHMARKS": bm,
            "RADIUS": 0,
            "OUTPUT": str(mnt / "pairs.csv"),
            "OUTPUT_SUMMARY": str(mnt / "sum.csv"),
        }
        with pytest.raises(
            QgsProcessingException,
            match=r"No space left|Read-only|cannot be written|a full or read-only disk",
        ) as e:
            run_alg("benchmarkcompare", params)
        MESSAGES[f"benchmarkcompare-csv/{readonly}"] = str(e.value)
        assert [f for f in os.listdir(mnt) if f != "filler"] == []
    OUTCOMES[f"benchmarkcompare-csv/{'readonly' if readonly else 'full'}-disk"] = "refused"


def test_the_plot_failing_after_two_tables_removes_them(run_alg, tmp_path, outdir):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    x, y = X0 + 5.5 * RES, Y0 - 5.5 * RES
    bm = _bench_csv(tmp_path / "bm.csv", [["BM0", x, y, 0, -1, -2, -3], ["BM1", x + 40, y, 0, -2, -3, -4]])
    mnt = tmp_path / "ro"
    with tmpfs(mnt, "256k", readonly=True) as mnt:
        params = {
            "INPUT": stack,
            "BENCHMARKS": bm,
            "RADIUS": 0,
            "OUTPUT": str(outdir / "pairs.csv"),
            "OUTPUT_SUMMARY": str(outdir / "sum.csv"),
            "OUTPUT_PLOT": str(mnt / "plot.png"),
        }
        with pytest.raises(QgsProcessingException, match=r"Read-only|cannot be written"):
            run_alg("benchmarkcompare", params)
        assert os.listdir(mnt) == []
    assert files_in(outdir) == []
    OUTCOMES["benchmarkcompare/plot-fails-after-tables"] = "refused"


def test_forecast_steps_beyond_a_geotiff_refused_up_front(run_alg, tmp_path, outdir):
    """STEPS = 70000 would need 70000 bands: refused before the worker (TensorFlow) starts."""
    stack = write_raster(tmp_path / "s.tif", clean_data())
    model = tmp_path / "m.dfmodel"
    model.write_bytes(b"never opened")
    params = {
        "INPUT": stack,
        "MODEL": str(model),
        "STEPS": 70000,
        "DEVICE": 2,
        "OUTPUT": str(outdir / "f.tif"),
    }
    _refused(run_alg, "forecast", params, "STEPS: 70000 bands .*65535", outdir, "forecast/steps-70000")


def test_evaluateforecast_observed_in_metres(run_alg, tmp_path):
    """A forecast in mm against observations stored in metres (band unit m): compared in mm."""
    data = clean_data() - 5.0
    pred = write_raster(tmp_path / "p.tif", data + 1.0, unit="mm")
    obs_m = write_raster(tmp_path / "o.tif", data / 1000.0, unit="m")
    obs_mm = write_raster(tmp_path / "omm.tif", data, unit="mm")
    got = run_alg(
        "evaluateforecast", {"PREDICTED": pred, "OBSERVED": obs_m, "OUTPUT_TABLE": "TEMPORARY_OUTPUT"}
    )
    want = run_alg(
        "evaluateforecast", {"PREDICTED": pred, "OBSERVED": obs_mm, "OUTPUT_TABLE": "TEMPORARY_OUTPUT"}
    )
    assert got["MAE"] == pytest.approx(1.0, abs=1e-4)
    for key in ("MAE", "RMSE", "MATCHED_DATES"):
        assert got[key] == pytest.approx(want[key], rel=1e-5), key
    OUTCOMES["evaluateforecast/observed-in-m"] = "correct"


def test_benchmarkcompare_stack_in_centimetres(run_alg, tmp_path):
    data = clean_data()
    x, y = X0 + 5.5 * RES, Y0 - 5.5 * RES
    bm = _bench_csv(tmp_path / "bm.csv", [["BM0", x, y, 0, -1, -2, -3], ["BM1", x + 40, y, 0, -2, -3, -4]])
    kw = {"BENCHMARKS": bm, "RADIUS": 0, "OUTPUT": "TEMPORARY_OUTPUT"}
    got = run_alg(
        "benchmarkcompare", {"INPUT": write_raster(tmp_path / "cm.tif", data / 10.0, unit="cm"), **kw}
    )
    want = run_alg("benchmarkcompare", {"INPUT": write_raster(tmp_path / "mm.tif", data), **kw})
    for key in ("MAE", "RMSE", "BIAS", "N"):
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-5), key
    OUTCOMES["benchmarkcompare/stack-in-cm"] = "correct"


@pytest.mark.parametrize("fill", [-10000.0, -999.0, 5000.0])
def test_other_repeated_fill_values_refused(run_alg, tmp_path, outdir, fill):
    """A fill value outside the known sentinels, constant in time over many pixels: refused, named."""
    spoilt = clean_data()
    for r, c in BAD:
        spoilt[:, r, c] = fill
    stack = write_raster(tmp_path / "fill.tif", spoilt)
    params = {"INPUT": stack, "OUTPUT": str(outdir / "r.tif")}
    v = f"{fill:.0f}"
    _refused(run_alg, "deformationrate", params, f"exactly {v} .*undeclared nodata", outdir, f"rate/fill{v}")


def test_alpha_band_is_read_as_a_mask(run_alg, tmp_path, outdir):
    """A stack with a trailing alpha band (0 = transparent at BAD, ordinary values under it): the
    alpha is the mask of every band, not a date; the rate equals the clean stack's with NaN there."""
    from rasterio.enums import ColorInterp

    junk = clean_data()
    alpha = np.full((1, H, W), 255.0, "float32")
    for r, c in BAD:
        junk[:, r, c] = 123.0
        alpha[0, r, c] = 0.0
    path = write_raster(tmp_path / "alpha.tif", np.concatenate([junk, alpha]), labels=[*LABELS, ""])
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.gray] * N + [ColorInterp.alpha]
    got, res = _rate(run_alg, path, outdir / "r.tif")
    want, _ = _rate(run_alg, write_raster(tmp_path / "ref.tif", with_nan(clean_data())), tmp_path / "w.tif")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert res["MASKED_VALUES"] == len(BAD) * N
    OUTCOMES["rate/alpha-band-mask"] = "correct"


def test_buildstack_single_rasters_with_sentinels(run_alg, tmp_path, outdir):
    """Single-date rasters with undeclared sentinels, one on another grid (warped) holding two
    different ones: the stack holds NaN there, the clean values (m -> mm) elsewhere, and never
    -9999 mm or -32768 m."""
    data = clean_data()[:3] - 1.0
    paths = []
    for k, sentinel in enumerate((-9999.0, None, -32768.0)):
        one = (data[k] / 1000.0).astype("float32")
        if sentinel is not None:  # the warped raster holds two sentinels: both reach GDAL as nodata
            for j, (r, c) in enumerate(BAD):
                one[r, c] = sentinel if k == 0 or j % 2 else -9999.0
        origin = X0 - RES * (k == 2)  # the third raster: one column more on the west (warped)
        arr = one if k != 2 else np.concatenate([np.full((H, 1), 0.5, "float32"), one], axis=1)
        with rasterio.open(
            tmp_path / f"cum_{DATES[k].strftime('%Y%m%d')}.tif",
            "w",
            driver="GTiff",
            width=arr.shape[1],
            height=H,
            count=1,
            dtype="float32",
            crs="EPSG:32647",
            transform=Affine(RES, 0, origin, 0, -RES, Y0),
        ) as dst:
            dst.write(arr[None])
        paths.append(str(tmp_path / f"cum_{DATES[k].strftime('%Y%m%d')}.tif"))
    res = run_alg("buildstack", {"LAYERS": paths, "UNITS": 1, "OUTPUT": str(outdir / "stack.tif")})
    got = read(res["OUTPUT"])
    want = with_nan(data.astype("float64"), bands=[0, 2])
    keep = np.isfinite(want)
    assert np.array_equal(np.isnan(got[keep]), np.zeros(keep.sum(), bool))
    np.testing.assert_allclose(got[keep], want[keep], rtol=1e-5, atol=1e-3)
    assert np.isnan(got[~keep]).all()
    OUTCOMES["buildstack/single-rasters-sentinels"] = "correct"


@pytest.mark.parametrize("readonly", [False, True], ids=["full", "readonly"])
def test_html_report_on_full_or_readonly_disk(run_alg, tmp_path, outdir, readonly):
    """evaluateforecast: its CSV table is written, then the HTML report fails: neither is left."""
    data = clean_data() - 5.0
    pred = write_raster(tmp_path / "p.tif", data + 1.0)
    obs = write_raster(tmp_path / "o.tif", data)
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "256k", readonly=readonly) as mnt:
        if not readonly:
            _fill(mnt)
        params = {
            "PREDICTED": pred,
            "OBSERVED": obs,
            "OUTPUT_TABLE": str(outdir / "t.csv"),
            "OUTPUT_REPORT": str(mnt / "report.html"),
        }
        with pytest.raises(QgsProcessingException, match=r"'report.html': (No space left|Read-only)") as e:
            run_alg("evaluateforecast", params)
        MESSAGES[f"evaluateforecast-html/{readonly}"] = str(e.value)
        assert [f for f in os.listdir(mnt) if f != "filler"] == []
    assert files_in(outdir) == []
    OUTCOMES[f"evaluateforecast-html/{'readonly' if readonly else 'full'}-disk"] = "refused"


@pytest.mark.tf
def test_trainmodel_model_file_on_a_full_disk(run_alg, write_stack, tmp_path, outdir):
    """OUTPUT_MODEL on a full disk: the TensorFlow worker refuses before training (its work file
    and checkpoint go beside the model) naming the folder, and leaves neither the model, nor its
    checkpoint folder, nor the report (elsewhere). The model file's own write on a full disk
    (atomic zip) is tested at core level (tests/core/test_validity.py)."""
    from tests.ml.scene import bowl_scene
    from tests.processing.test_train_forecast import TINY

    data, dates = bowl_scene(24, 16)
    stack = write_stack(data, dates)
    with tmpfs(tmp_path / "mnt", "256k") as mnt:
        fill(mnt)
        params = {
            "INPUT": stack,
            **TINY,
            "OUTPUT_MODEL": str(mnt / "m.dfmodel"),
            "OUTPUT_REPORT": str(outdir / "r.html"),
        }
        with pytest.raises(QgsProcessingException, match=r"'m.dfmodel': No space left") as e:
            run_alg("trainmodel", params)
        MESSAGES["trainmodel-model/full"] = str(e.value)
        assert [f for f in os.listdir(mnt) if f != "filler"] == []
    assert files_in(outdir) == []
    OUTCOMES["trainmodel-model/full-disk"] = "refused"


def _fill_when(path, folder, stop, held: list) -> None:
    """Fill the file system of `folder` to the last byte as soon as `path` exists (polled; give up
    when `stop`, a threading.Event, is set). The files beside `path` are opened first and kept open
    in `held`: removing them later frees no room (the training's work file, which the worker
    deletes before it writes the model, would otherwise make room for a small model)."""
    while not stop.is_set():
        if os.path.exists(path):
            held.extend(open(p, "rb") for p in path.parent.iterdir() if p.is_file())
            with contextlib.suppress(OSError), open(os.path.join(folder, "filler"), "wb", buffering=0) as f:
                for size in (2**20, 4096):  # big chunks first, then the last pages
                    with contextlib.suppress(OSError):
                        while True:
                            f.write(b"\0" * size)
            return
        stop.wait(0.005)


@pytest.mark.tf
def test_trainmodel_model_file_fails_during_its_own_write(run_alg, write_stack, tmp_path, outdir):
    """The disk of OUTPUT_MODEL fills after training (once the last epoch is checkpointed), so the
    model file's own write fails: a QgsProcessingException names the output, the disk error and the
    fix; no model file and no temporary file are left, nor the training's work file; the
    checkpoint (weights and state, for RESUME) is what remains, and the message says so."""
    import threading

    from tests.ml.scene import bowl_scene
    from tests.processing.test_train_forecast import TINY

    data, dates = bowl_scene(20, 12)
    stack = write_stack(data, dates)
    with tmpfs(tmp_path / "mnt", "80m") as mnt:  # room for the up-front check (64 MiB + work file)
        model = mnt / "m.dfmodel"
        stop = threading.Event()
        state = mnt / "m.dfmodel.checkpoint" / "state.json"
        held: list = []
        filler = threading.Thread(target=_fill_when, args=(state, mnt, stop, held), daemon=True)
        filler.start()
        params = {
            "INPUT": stack,
            **TINY,
            "EPOCHS": 1,
            "GRU_EPOCHS": 1,
            "SAMPLES_PER_EPOCH": 8,
            "OUTPUT_MODEL": str(model),
            "OUTPUT_REPORT": str(outdir / "r.html"),
        }
        try:
            with pytest.raises(QgsProcessingException) as e:
                run_alg("trainmodel", params)
        finally:
            stop.set()
            filler.join()
            for f in held:
                f.close()
        msg = str(e.value)
        MESSAGES["trainmodel-model/filled-during-write"] = msg.split("\nWorker log")[0]
        assert "Cannot write the output 'm.dfmodel': No space left on device" in msg, msg
        assert "free some space" in msg and "run again with RESUME" in msg, msg
        assert not model.exists()
        left = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))
        # the checkpoint RESUME needs, and nothing else: no temporary file, no work file
        kept = ["compressor.weights.h5", "network.weights.h5", "state.json"]
        assert left == ["filler", "m.dfmodel.checkpoint", *(f"m.dfmodel.checkpoint/{k}" for k in kept)]
    assert files_in(outdir) == []
    OUTCOMES["trainmodel-model/filled-during-write"] = "refused"


def test_zz_figures(capsys):
    """Print the outcome of every case of this module (the report's figures); nothing else."""
    counts: dict[str, int] = {}
    for v in OUTCOMES.values():
        counts[v] = counts.get(v, 0) + 1
    with capsys.disabled():
        print(f"\nhostile inputs: {len(OUTCOMES)} cases: {counts}")
        if os.environ.get("HOSTILE_MESSAGES"):
            for k, v in MESSAGES.items():
                print(f"{k}: {v}")
    assert set(counts) <= {"correct", "refused"}


def test_every_algorithm_that_reads_a_raster_reports_masked_values():
    """MASKED_VALUES is an output of every algorithm that reads a deformation raster (filled by
    processing.base when the algorithm does not set it)."""
    from qgis.core import QgsApplication

    readers = {
        "benchmarkcompare", "comparemodels", "crossorbit", "decompose", "deformationrate", "evaluateforecast",
        "extractprofiles", "failuretime", "faultlithology", "losvertical", "pointstostack",
    }  # fmt: skip
    for name in sorted(readers):
        alg = QgsApplication.processingRegistry().algorithmById(f"deformation_forecast:{name}")
        assert alg is not None and alg.outputDefinition("MASKED_VALUES") is not None, name
