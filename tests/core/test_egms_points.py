"""EGMS and other point tables: the coordinate columns follow CSV_CRS, coordinates outside the CRS's
area of use and degenerate grids are refused, dropped points counted (issue 14, section 2). The CSV
follows the EGMS product layout (tests/egms.py)."""

import numpy as np
import pytest

from deformation_forecast.core.errors import InputError
from deformation_forecast.core.points import points_to_stack, read_points_csv
from deformation_forecast.core.run import Run
from deformation_forecast.core.stack import read_info, read_stack
from tests import egms


def _logging(logs: list) -> Run:
    """A Run whose messages go to `logs`."""
    return Run(report=lambda fraction, message: message and logs.append(message))


def test_projected_csv_crs_takes_easting_northing(tmp_path):
    path = tmp_path / "EGMS_L2b_example.csv"
    _, _, e, n = egms.write_egms(path)
    s = read_points_csv(str(path), crs="EPSG:3035")
    np.testing.assert_allclose(s.x, e, atol=0.006)
    np.testing.assert_allclose(s.y, n, atol=0.006)
    assert any("columns 'easting'/'northing' in EPSG:3035" in m for m in s.notes)
    out = str(tmp_path / "s.tif")
    logs = []
    res = points_to_stack(s, out, 20.0, run=_logging(logs))
    info = read_info(out)
    assert info.crs.to_epsg() == 3035 and info.width > 2 and info.height > 2
    assert res["points"] == 30 and res["merged"] == 0
    assert any("Median nearest-neighbour spacing" in m for m in logs)
    # the last date: value = 3 x column index of the lattice, never a 1 x 1 "success"
    assert np.nanmax(read_stack(out)[-1]) == pytest.approx(15.0)


def test_geographic_csv_crs_takes_latitude_longitude(tmp_path):
    path = tmp_path / "egms.csv"
    lon, lat, _, _ = egms.write_egms(path)
    s = read_points_csv(str(path), crs="EPSG:4326")
    np.testing.assert_allclose(s.x, lon, atol=1e-7)
    np.testing.assert_allclose(s.y, lat, atol=1e-7)
    assert any("'longitude'/'latitude' in EPSG:4326" in m for m in s.notes)


def test_degrees_read_as_metres_refused(tmp_path):
    """Only latitude/longitude columns and CSV_CRS=EPSG:3035: degrees read as metres, refused."""
    path = tmp_path / "egms.csv"
    egms.write_egms(path, lonlat_only=True)
    with pytest.raises(InputError, match="'longitude'/'latitude' lie outside the area of use of EPSG:3035"):
        read_points_csv(str(path), crs="EPSG:3035")


def test_degenerate_grid_refused(tmp_path):
    path = tmp_path / "egms.csv"
    egms.write_egms(path)
    s = read_points_csv(str(path), crs="EPSG:3035")
    with pytest.raises(InputError, match="PIXEL_SIZE 5000 m puts the 30 points into a 1 x 1 grid.*CSV_CRS"):
        points_to_stack(s, str(tmp_path / "x.tif"), 5000.0)
    assert not (tmp_path / "x.tif").exists()


def test_merged_points_counted(tmp_path):
    path = tmp_path / "egms.csv"
    egms.write_egms(path, nx=8, ny=8, step_deg=0.0001)  # about 7 x 11 m apart
    s = read_points_csv(str(path), crs="EPSG:3035")
    logs = []
    res = points_to_stack(s, str(tmp_path / "m.tif"), 30.0, radius=1.0, run=_logging(logs))
    assert res["points"] + res["merged"] == 64 and res["merged"] > 0
    assert res["points"] == int(np.isfinite(read_stack(str(tmp_path / "m.tif"))[-1]).sum())
    assert any(f"{res['merged']} of 64 point(s) did not enter the grid" in m for m in logs)
