"""decompose through processing.run: a known bowl with inward horizontal motion, outputs that are
deformation stacks, refusals that write nothing."""

import csv
import datetime as dt
import os

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException

from deformation_forecast.core import decompose as dc
from deformation_forecast.core.stack import read_info, read_stack
from tests.conftest import ROOT, make_dates
from tests.core.test_decompose import ASC, DESC, N_DATES, bowl_fields, make_orbits, truth_on


def params(orbits, tmp_path, **extra):
    return {
        "ASCENDING": orbits[0].path,
        "DESCENDING": orbits[1].path,
        "INCIDENCE_ASC": ASC[0],
        "HEADING_ASC": ASC[1],
        "INCIDENCE_DESC": DESC[0],
        "HEADING_DESC": DESC[1],
        "OUTPUT_VERTICAL": str(tmp_path / "up.tif"),
        "OUTPUT_EAST": str(tmp_path / "east.tif"),
        **extra,
    }


def test_known_bowl(run_alg, tmp_path, write_stack):
    up_rate, east_rate = bowl_fields()
    orbits = make_orbits(write_stack, up_rate, east_rate, noise=1.0, seed=5)
    res = run_alg("decompose", params(orbits, tmp_path, OUTPUT_RATES=str(tmp_path / "rates.tif")))
    assert res["DATE_COUNT"] == N_DATES - 1 and res["MAX_GAP_DAYS"] == 6
    assert res["CONDITION_NUMBER"] == pytest.approx(float(dc.condition_number([ASC, DESC])))
    su, se = dc.standard_errors([ASC, DESC], [np.sqrt(2), 1.0])  # see tests/core/test_decompose.py
    info = read_info(res["OUTPUT_VERTICAL"])
    assert info.dates == make_dates(N_DATES)[1:] and info.units == "mm" and info.crs.to_epsg() == 32647
    assert info.tags["COMPONENT"] == "vertical" and info.tags["REFERENCE_DATE"] == "2018-01-13"
    with rasterio.open(res["OUTPUT_EAST"]) as src:
        assert np.isnan(src.nodata)
    up, east = read_stack(res["OUTPUT_VERTICAL"]), read_stack(res["OUTPUT_EAST"])
    err_u = up - truth_on(up_rate, info.dates)
    err_e = east - truth_on(east_rate, info.dates)
    assert np.std(err_u[1:]) == pytest.approx(float(su), rel=0.15)
    assert np.std(err_e[1:]) == pytest.approx(float(se), rel=0.15)
    rates = read_stack(res["OUTPUT_RATES"])
    with rasterio.open(res["OUTPUT_RATES"]) as src:
        assert list(src.descriptions) == list(dc.RATE_LABELS) and src.units[0] == "mm/yr"
    for band, truth in ((0, up_rate), (2, east_rate)):  # within a few standard errors of the truth
        assert np.mean(np.abs(rates[band] - truth) < 4 * rates[band + 1]) > 0.99


def test_union_dates_and_geometry_rasters(run_alg, tmp_path, write_stack):
    up_rate, east_rate = bowl_fields(h=8, w=8)
    orbits = make_orbits(write_stack, up_rate, east_rate, res_d=40.0)
    with rasterio.open(orbits[0].path) as src:
        prof = dict(src.profile, count=1)
    inc = np.full((1, 8, 8), DESC[0], "float32")
    inc[0, :, 4:] = 30.0  # the right half seen more steeply: other standard errors there
    with rasterio.open(tmp_path / "inc.tif", "w", **prof) as dst:
        dst.write(inc)
    res = run_alg(
        "decompose",
        params(
            orbits,
            tmp_path,
            DATES=1,
            INTERVAL_DAYS=24,
            INCIDENCE_DESC=20.0,
            INCIDENCE_DESC_RASTER=str(tmp_path / "inc.tif"),
            OUTPUT_STDERR=str(tmp_path / "se.tif"),
        ),
    )
    se = read_stack(res["OUTPUT_STDERR"])
    for cols, theta in ((slice(0, 4), DESC[0]), (slice(4, 8), 30.0)):
        su, se_e = dc.standard_errors([ASC, (theta, DESC[1])], [1.0, 1.0])
        np.testing.assert_allclose(se[0][:, cols], float(su), rtol=1e-5)
        np.testing.assert_allclose(se[1][:, cols], float(se_e), rtol=1e-5)
    dates = read_info(res["OUTPUT_EAST"]).dates
    assert dates[0] == dt.date(2018, 1, 7) and (dates[1] - dates[0]).days == 24
    assert 0 < res["MAX_GAP_DAYS"] <= 6 and res["VALID_PIXELS"] > 0


@pytest.mark.parametrize(
    "extra, dates_d, match",
    [
        ({"HEADING_DESC": -12.0, "INCIDENCE_DESC": 35.0}, None, r"condition number of the LOS system is \d"),
        ({}, make_dates(N_DATES, start=dt.date(2020, 1, 1)), "do not overlap in time"),
        (
            {"INCIDENCE_ASC": 95.0},
            None,
            "INCIDENCE_ASC: the incidence angle must lie strictly between 0 and 90",
        ),
    ],
)
def test_refused_writes_nothing(run_alg, tmp_path, write_stack, extra, dates_d, match):
    up_rate, east_rate = bowl_fields(h=4, w=4)
    orbits = make_orbits(write_stack, up_rate, east_rate, dates_d=dates_d)
    with pytest.raises(QgsProcessingException, match=match):
        run_alg("decompose", params(orbits, tmp_path, OUTPUT_RATES=str(tmp_path / "r.tif"), **extra))
    assert not any((tmp_path / n).exists() for n in ("up.tif", "east.tif", "r.tif"))


MODEL3 = os.path.join(ROOT, "deformation_forecast", "models", "decompose_benchmarks.model3")
X0, Y0, RES = 500000.0, 4300000.0, 20.0
BM_PIXELS = [(12, 6), (12, 9), (12, 21), (12, 24), (6, 15), (18, 15), (8, 10), (16, 20)]  # flanks


def chain_scene(tmp_path, write_stack, noise=0.3):
    """Ascending/descending stacks of the bowl and a leveling CSV of its true vertical motion at
    benchmarks on the flanks, where the horizontal motion is largest."""
    rng = np.random.default_rng(11)
    up_rate, east_rate = bowl_fields()
    orbits = make_orbits(write_stack, up_rate, east_rate, noise=noise, seed=12)
    surveys = make_dates(N_DATES)[1::2]
    lev = truth_on(up_rate, surveys)
    header = ["id", "x", "y"] + ["D" + d.strftime("%Y%m%d") for d in surveys]
    rows = [
        [
            f"BM{k}",
            X0 + (c + 0.5) * RES,
            Y0 - (r + 0.5) * RES,
            *(lev[:, r, c] + rng.normal(0, noise, len(surveys))),
        ]
        for k, (r, c) in enumerate(BM_PIXELS)
    ]
    path = tmp_path / "leveling.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return orbits, str(path)


def load_model():
    from qgis.core import QgsProcessingModelAlgorithm

    m = QgsProcessingModelAlgorithm()
    assert m.fromFile(MODEL3), MODEL3
    return m


def test_graphical_model_decompose_then_benchmarks(df_plugin, run_alg, tmp_path, write_stack):
    """The shipped model (decompose -> benchmarkcompare) gives true vertical: a small error at the
    benchmarks, where dLOS / cos(theta) of either orbit is wrong by the horizontal motion."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    orbits, lev = chain_scene(tmp_path, write_stack)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    summary = str(tmp_path / "summary.csv")
    res = processing.run(
        load_model(),
        {
            "ascending": orbits[0].path,
            "descending": orbits[1].path,
            "benchmarks": lev,
            "incidence_asc": ASC[0],
            "incidence_desc": DESC[0],
            "heading_asc": ASC[1],
            "heading_desc": DESC[1],
            "radius": 5.0,
            "decompose:Vertical stack": str(tmp_path / "up.tif"),
            "decompose:East stack": str(tmp_path / "east.tif"),
            "benchmarks:Benchmark pairs": str(tmp_path / "pairs.csv"),
            "benchmarks:Per-benchmark summary": summary,
        },
        context=context,
        feedback=QgsProcessingFeedback(),
    )
    assert os.path.isfile(tmp_path / "east.tif"), res
    with open(summary, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(BM_PIXELS) and all(r["status"] == "ok" for r in rows)
    mae_decomposed = np.mean([float(r["mae"]) for r in rows])
    naive = [
        run_alg(
            "benchmarkcompare",
            {
                "INPUT": o.path,
                "BENCHMARKS": lev,
                "INCIDENCE": g[0],
                "RADIUS": 5.0,
                "OUTPUT": str(tmp_path / f"n{k}.csv"),
            },
        )["MAE"]
        for k, (o, g) in enumerate(zip(orbits, (ASC, DESC), strict=True))
    ]
    print(
        f"benchmark MAE: decomposed {mae_decomposed:.2f} mm, dLOS/cos asc/desc {naive[0]:.2f}/{naive[1]:.2f} mm"
    )
    assert mae_decomposed < 1.0 and min(naive) > 3 * mae_decomposed, (mae_decomposed, naive)
    # benchmarkcompare recognises decompose's vertical stack by its tag (no 1 / cos(incidence))
    by_tag = run_alg(
        "benchmarkcompare", {"INPUT": str(tmp_path / "up.tif"), "BENCHMARKS": lev, "RADIUS": 5.0}
    )
    by_flag = run_alg(
        "benchmarkcompare",
        {"INPUT": str(tmp_path / "up.tif"), "BENCHMARKS": lev, "RADIUS": 5.0, "VERTICAL_INPUT": True},
    )
    assert by_tag["MAE"] == pytest.approx(by_flag["MAE"]) and by_tag["MAE"] < 1.0
