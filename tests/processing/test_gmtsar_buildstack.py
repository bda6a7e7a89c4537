"""GMTSAR SBAS time series (issue 14): single-date disp_YYYYDDD_ll.grd netCDF grids, written as GMTSAR
writes them (tests/gmtsar.py), through buildstack and deformationrate: dates from year + day of
year, values (mm) and grid exact, NaN kept; a grid still in radar coordinates refused naming the
geocoding step."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from deformation_forecast.core.stack import read_info, read_stack
from tests.gmtsar import scene_id, write_grd

DATES = [dt.date(2017, 9, 3) + dt.timedelta(days=12 * k) for k in range(5)]
LON = 110.25 + 0.001 * np.arange(7)  # node longitudes (gridline registration)
LAT = 35.60 - 0.001 * np.arange(5)  # node latitudes, north to south
RATE = (np.arange(35, dtype="float64").reshape(5, 7) - 17.0) * 2.0  # mm/yr, one per pixel


def gmtsar_series(folder, geographic: bool = True) -> tuple[list[str], np.ndarray]:
    """One disp_YYYYDDD(_ll).grd per date (mm): RATE x years since the first date, NaN at (1, 2)."""
    years = np.array([(d - DATES[0]).days / 365.0 for d in DATES])
    data = (years[:, None, None] * RATE[None]).astype("float32")
    data[:, 1, 2] = np.nan
    paths = []
    for k, d in enumerate(DATES):
        name = f"disp_{scene_id(d)}{'_ll' if geographic else ''}.grd"
        x, y = (LON, LAT) if geographic else (np.arange(7.0), np.arange(5.0)[::-1])
        paths.append(write_grd(os.path.join(folder, name), data[k], x, y, index=k + 1, geographic=geographic))
    return paths, data


def test_gmtsar_grids_build_the_stack_exactly(run_alg, tmp_path):
    paths, data = gmtsar_series(str(tmp_path))
    out = str(tmp_path / "stack.tif")
    # given out of order, as a folder listing may: the dates (year + day of year) sort them
    run_alg("buildstack", {"LAYERS": paths[::-1], "UNITS": 0, "OUTPUT": out})
    info = read_info(out)
    assert info.dates == DATES
    assert info.crs.to_epsg() == 4326
    a, b, c, d, e, f = tuple(info.transform)[:6]
    assert (b, d) == (0.0, 0.0)
    assert a == pytest.approx(0.001, abs=1e-12) and e == pytest.approx(-0.001, abs=1e-12)
    assert c == pytest.approx(LON[0] - 0.0005, abs=1e-9) and f == pytest.approx(LAT[0] + 0.0005, abs=1e-9)
    got = read_stack(out)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(data))
    np.testing.assert_allclose(got, data, rtol=0, atol=1e-6, equal_nan=True)
    rate = read_stack(
        run_alg("deformationrate", {"INPUT": out, "MODE": 0, "OUTPUT": str(tmp_path / "r.tif")})["OUTPUT"]
    )[0]
    ok = np.isfinite(data[0])
    np.testing.assert_allclose(rate[ok], RATE[ok], atol=1e-3)
    assert np.isnan(rate[1, 2])


def test_gmtsar_grids_in_radar_coordinates_are_refused(run_alg, tmp_path):
    folder = tmp_path / "radar"
    folder.mkdir()
    paths, _ = gmtsar_series(str(folder), geographic=False)
    out = tmp_path / "out" / "stack.tif"
    out.parent.mkdir()
    with pytest.raises(
        QgsProcessingException, match=r"'disp_2017246.grd' is a grid in radar coordinates.*proj_ra2ll"
    ):
        run_alg("buildstack", {"LAYERS": paths, "UNITS": 0, "OUTPUT": str(out)})
    assert os.listdir(out.parent) == []
