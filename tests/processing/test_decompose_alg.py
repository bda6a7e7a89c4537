"""decompose through processing.run: a known bowl with inward horizontal motion, outputs that are
deformation stacks, refusals that write nothing."""

import datetime as dt

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException

from deformation_forecast.core import decompose as dc
from deformation_forecast.core.stack import read_info, read_stack
from tests.conftest import make_dates
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
    with rasterio.open(tmp_path / "inc.tif", "w", **prof) as dst:
        dst.write(np.full((1, 8, 8), DESC[0], "float32"))
    res = run_alg(
        "decompose",
        params(
            orbits,
            tmp_path,
            DATES=1,
            INTERVAL_DAYS=24,
            INCIDENCE_DESC=20.0,
            INCIDENCE_DESC_RASTER=str(tmp_path / "inc.tif"),
        ),
    )
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
