"""Hostile inputs (issue 15) inside qgis_process.bin: right numbers or a clear refusal naming the
culprit, and no file under any output name. The cases mirror tests/processing/test_hostile_inputs.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio

from tests.processing.test_hostile_inputs import (
    BAD,
    _bench_csv,
    _hostile_stack,
    _lines,
    clean_data,
    read,
    tmpfs,
    with_nan,
    write_raster,
)

pytestmark = pytest.mark.e2e
ALG = "deformation_forecast:"


def run(qgis_process, alg, **params):
    return qgis_process("run", ALG + alg, "--", *[f"{k}={v}" for k, v in params.items()])["results"]


def refused(qgis_process, alg, message, outputs, **params):
    p = qgis_process("run", ALG + alg, "--", *[f"{k}={v}" for k, v in params.items()], check=False)
    text = p.stdout + p.stderr
    assert p.returncode != 0, text[-2000:]
    assert message in text, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    for o in outputs:
        assert not os.path.exists(o), o
    return text


@pytest.fixture
def ref_rate(qgis_process, tmp_path):
    ref = write_raster(tmp_path / "ref.tif", with_nan(clean_data()))
    return read(run(qgis_process, "deformationrate", INPUT=ref, OUTPUT=tmp_path / "ref_rate.tif")["OUTPUT"])


@pytest.mark.parametrize("case", ["sentinel-9999", "mask-internal", "mask-external"])
def test_rate_of_spoilt_stacks(qgis_process, tmp_path, ref_rate, case):
    stack = _hostile_stack(tmp_path, case)
    got = read(run(qgis_process, "deformationrate", INPUT=stack, OUTPUT=tmp_path / "rate.tif")["OUTPUT"])
    np.testing.assert_allclose(got, ref_rate, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_losvertical_sentinels_and_metres(qgis_process, tmp_path):
    data = clean_data()
    spoilt = data / 1000.0
    for r, c in BAD:
        spoilt[:, r, c] = -9999.0
    stack = write_raster(tmp_path / "m.tif", spoilt, unit="m")
    got = read(
        run(qgis_process, "losvertical", INPUT=stack, INCIDENCE=34.17, OUTPUT=tmp_path / "v.tif")["OUTPUT"]
    )
    want = with_nan(data).astype("float64") / np.cos(np.radians(34.17))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, equal_nan=True)
    with rasterio.open(tmp_path / "v.tif") as src:
        assert src.units[0] == "mm"


def test_crossorbit_second_stack_with_sentinels(qgis_process, tmp_path):
    data = clean_data()
    b = data * 0.9
    spoilt = b.copy()
    for r, c in BAD:
        spoilt[:, r, c] = -32768.0
    a = write_raster(tmp_path / "a.tif", data)
    kw = dict(INPUT=a, INCIDENCE=34.17, INCIDENCE_B=41.42, MODE=0)
    got = run(
        qgis_process,
        "crossorbit",
        INPUT_B=write_raster(tmp_path / "b.tif", spoilt),
        OUTPUT=tmp_path / "c1.csv",
        **kw,
    )
    want = run(
        qgis_process,
        "crossorbit",
        INPUT_B=write_raster(tmp_path / "r.tif", with_nan(b)),
        OUTPUT=tmp_path / "c2.csv",
        **kw,
    )
    for key in ("R", "SLOPE", "RMSE", "N"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key


def test_benchmark_csv_with_sentinels(qgis_process, tmp_path):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    x, y = 500000 + 5.5 * 20, 4300000 - 5.5 * 20
    good = _bench_csv(tmp_path / "g.csv", [["BM0", x, y, 0, -1, -2, -3], ["BM1", x + 40, y, 0, "", "", ""]])
    bad = _bench_csv(
        tmp_path / "b.csv", [["BM0", x, y, 0, -1, -2, -3], ["BM1", x + 40, y, 0, -9999, -9999, -9999]]
    )
    kw = dict(INPUT=stack, INCIDENCE=34.17, RADIUS=0)
    got = run(qgis_process, "benchmarkcompare", BENCHMARKS=bad, OUTPUT=tmp_path / "o1.csv", **kw)
    want = run(qgis_process, "benchmarkcompare", BENCHMARKS=good, OUTPUT=tmp_path / "o2.csv", **kw)
    for key in ("MAE", "RMSE", "N", "BENCHMARKS_USED"):
        assert got[key] == pytest.approx(want[key]), key


def test_refusals(qgis_process, tmp_path):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    out = tmp_path / "out"
    out.mkdir()
    v = out / "v.tif"
    refused(qgis_process, "losvertical", "1 / cos", [v], INPUT=stack, INCIDENCE=85, OUTPUT=v)
    refused(qgis_process, "losvertical", "radians", [v], INPUT=stack, INCIDENCE=1.2, OUTPUT=v)
    labels = [f"2018{m:02d}01_2018{m + 1:02d}01" for m in range(1, 11)]
    ifg = write_raster(tmp_path / "ifg.tif", clean_data(), labels=labels)
    refused(qgis_process, "deformationrate", "interferograms", [v], INPUT=ifg, OUTPUT=v)
    blob = open(stack, "rb").read()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(blob[: len(blob) * 2 // 3])
    refused(qgis_process, "deformationrate", "'cut.tif' cannot be read", [v], INPUT=cut, OUTPUT=v)
    folder = tmp_path / "bm.csv"
    folder.mkdir()
    refused(
        qgis_process,
        "benchmarkcompare",
        "is a folder",
        [out / "b.csv"],
        INPUT=stack,
        BENCHMARKS=folder,
        OUTPUT=out / "b.csv",
    )
    assert os.listdir(out) == []


def test_full_and_readonly_disks(qgis_process, tmp_path):
    stack = write_raster(tmp_path / "s.tif", clean_data())
    with tmpfs(tmp_path / "full", "256k") as full:
        with open(full / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        refused(
            qgis_process,
            "deformationrate",
            "No space left",
            [full / "r.tif"],
            INPUT=stack,
            OUTPUT=full / "r.tif",
        )
        assert os.listdir(full) == ["filler"]
    keep = tmp_path / "keep"
    keep.mkdir()
    with tmpfs(tmp_path / "ro", "256k", readonly=True) as ro:
        # the GeoPackage is written, then the CSV fails: neither is left
        refused(
            qgis_process,
            "extractprofiles",
            "Read-only",
            [keep / "p.gpkg", ro / "p.csv"],
            INPUT=stack,
            LINES=_lines(tmp_path),
            OUTPUT=keep / "p.gpkg",
            OUTPUT_CSV=ro / "p.csv",
        )
    assert os.listdir(keep) == []


def test_spikes_alpha_and_counts(qgis_process, tmp_path):
    """A spike at one date (no round value) and a trailing alpha band: the rates of the clean stack
    with NaN there, and MASKED_VALUES counts each spoilt pixel-date once."""
    from rasterio.enums import ColorInterp

    from tests.processing.test_hostile_inputs import LABELS, N

    spiky = _hostile_stack(tmp_path, "spike-one-date")
    ref = write_raster(tmp_path / "ref1.tif", with_nan(clean_data(), bands=N // 2))
    got = run(qgis_process, "deformationrate", INPUT=spiky, OUTPUT=tmp_path / "s.tif")
    want = run(qgis_process, "deformationrate", INPUT=ref, OUTPUT=tmp_path / "w.tif")
    np.testing.assert_allclose(
        read(got["OUTPUT"]), read(want["OUTPUT"]), rtol=1e-6, atol=1e-6, equal_nan=True
    )
    assert (got["MASKED_VALUES"], want["MASKED_VALUES"]) == (len(BAD), 0)
    junk = clean_data()
    alpha = np.full((1,) + junk.shape[1:], 255.0, "float32")
    for r, c in BAD:
        junk[:, r, c], alpha[0, r, c] = 123.0, 0.0
    path = write_raster(tmp_path / "alpha.tif", np.concatenate([junk, alpha]), labels=[*LABELS, ""])
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.gray] * N + [ColorInterp.alpha]
    got = run(qgis_process, "deformationrate", INPUT=path, OUTPUT=tmp_path / "a.tif")
    clean = write_raster(tmp_path / "ref.tif", with_nan(clean_data()))
    want = run(qgis_process, "deformationrate", INPUT=clean, OUTPUT=tmp_path / "c.tif")
    np.testing.assert_allclose(
        read(got["OUTPUT"]), read(want["OUTPUT"]), rtol=1e-6, atol=1e-6, equal_nan=True
    )
    assert got["MASKED_VALUES"] == len(BAD) * N


def test_points_dropped_count(qgis_process, tmp_path):
    """pointstostack: a point outside UTM 47N's area of use and a row without values are dropped,
    DROPPED_COUNT = 2, and the stack equals the one from the clean rows."""
    from tests.processing.test_hostile_inputs import DATES, X0, Y0, N, _points_csv

    clean = [
        [X0 + 40 * (k % 4) + 10, Y0 - 40 * (k // 4) - 10, *[-1.5 * i * (k % 4 + 1) for i in range(N)]]
        for k in range(12)
    ]
    bad = [*clean, [X0 + 2_000_000.0, Y0, *[-1.0] * N], [X0 + 50, Y0 - 50, *[""] * N]]
    kw = dict(CSV_CRS="EPSG:32647", PIXEL_SIZE=40, OUTPUT_CRS="EPSG:32647")
    got = run(
        qgis_process,
        "pointstostack",
        INPUT_CSV=_points_csv(tmp_path / "b.csv", bad),
        OUTPUT=tmp_path / "b.tif",
        **kw,
    )
    want = run(
        qgis_process,
        "pointstostack",
        INPUT_CSV=_points_csv(tmp_path / "c.csv", clean),
        OUTPUT=tmp_path / "c.tif",
        **kw,
    )
    np.testing.assert_array_equal(read(got["OUTPUT"]), read(want["OUTPUT"]))
    assert (got["DROPPED_COUNT"], want["DROPPED_COUNT"], got["POINT_COUNT"]) == (2, 0, 12)
    assert len(DATES) == N
