"""GMTSAR-style names with year + day of year (disp_2017246.grd = 2017-09-03) for buildstack."""

import datetime as dt

import numpy as np

from deformation_forecast.core.build import sources_with_dates
from deformation_forecast.core.dates import parse_year_doy
from tests.conftest import plain_raster


def test_parse_year_doy():
    assert parse_year_doy("disp_2017246.grd") == dt.date(2017, 9, 3)
    assert parse_year_doy("disp_2016366.grd") == dt.date(2016, 12, 31)  # leap year
    assert parse_year_doy("disp_2017366.grd") is None  # 2017 has 365 days
    assert parse_year_doy("disp_20170903.grd") is None  # 8 digits: not year + day of year
    assert parse_year_doy("stack_v2.tif") is None


def test_buildstack_sources_from_year_doy_names(tmp_path):
    paths = [plain_raster(tmp_path / f"disp_{n}.tif", np.zeros((2, 2))) for n in ("2017258", "2017246")]
    got = sources_with_dates(paths)
    assert [s.date for s in got] == [dt.date(2017, 9, 3), dt.date(2017, 9, 15)]
