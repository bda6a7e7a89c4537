"""importproduct then deformationrate inside qgis_process.bin, on format-faithful MintPy and LiCSBAS
files (tests/h5products.py). Velocities are checked against a least-squares fit of the source."""

import numpy as np
import pytest

from deformation_forecast.core.stack import read_info, read_stack
from tests import h5products as hp

pytestmark = pytest.mark.e2e


def _years(dates):
    # decimal years as deformationrate counts them: all dates lie in 2019, a 365-day year
    return np.array([(d - dates[0]).days / 365.0 for d in dates])


@pytest.mark.parametrize("fmt", ["mintpy", "licsbas"])
def test_importproduct_then_rate(qgis_process, tmp_path, fmt):
    t = _years(hp.DATES)
    rate_mm = np.arange(30, dtype="float32").reshape(5, 6) - 15.0  # mm/yr, a different rate per pixel
    data = (t[:, None, None] * rate_mm[None]).astype("float32")
    data[:, 1, 2] = np.nan
    if fmt == "mintpy":
        src = tmp_path / "geo_timeseries_ERA5_ramp_demErr.h5"
        hp.write_mintpy(src, data / 1000.0, geo="epsg")
    else:
        src = tmp_path / "cum_filt.h5"
        hp.write_licsbas(src, data)
    stack, rate = tmp_path / "stack.tif", tmp_path / "rate.tif"
    res = qgis_process("run", "deformation_forecast:importproduct", "--", f"INPUT={src}", f"OUTPUT={stack}")
    assert res["results"]["PROCESSOR"] == ("MintPy" if fmt == "mintpy" else "LiCSBAS")
    assert read_info(str(stack)).dates == hp.DATES
    qgis_process(
        "run", "deformation_forecast:deformationrate", "--", f"INPUT={stack}", "MODE=0", f"OUTPUT={rate}"
    )
    v = read_stack(str(rate))[0]
    np.testing.assert_allclose(np.delete(v.ravel(), 8), np.delete(rate_mm.ravel(), 8), atol=1e-3)
    assert np.isnan(v[1, 2])


def test_importproduct_refuses_foreign_hdf5(qgis_process, tmp_path):
    import h5py

    src = tmp_path / "timeseries.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("velocity", data=np.zeros((3, 3)))
    out = tmp_path / "stack.tif"
    p = qgis_process(
        "run", "deformation_forecast:importproduct", "--", f"INPUT={src}", f"OUTPUT={out}", check=False
    )
    assert p.returncode != 0
    assert "neither a MintPy time series" in p.stdout + p.stderr
    assert not out.exists()


def test_gmtsar_netcdf_series_then_rate(qgis_process, tmp_path):
    """GMTSAR SBAS output (disp_YYYYDDD_ll.grd, netCDF-4 as GMT writes it: tests/gmtsar.py) through
    buildstack (dates from year + day of year, EPSG:4326 from the lon/lat axes) then deformationrate:
    the rates of the source; radar-coordinate grids refused naming proj_ra2ll.csh."""
    from tests.processing.test_gmtsar_buildstack import DATES, RATE, gmtsar_series

    paths, data = gmtsar_series(str(tmp_path))
    stack, rate = tmp_path / "stack.tif", tmp_path / "rate.tif"
    qgis_process(
        "run",
        "deformation_forecast:buildstack",
        "--",
        *[f"LAYERS={p}" for p in paths],
        "UNITS=0",
        f"OUTPUT={stack}",
    )
    info = read_info(str(stack))
    assert info.dates == DATES and info.crs.to_epsg() == 4326
    np.testing.assert_allclose(read_stack(str(stack)), data, atol=1e-6, equal_nan=True)
    qgis_process(
        "run", "deformation_forecast:deformationrate", "--", f"INPUT={stack}", "MODE=0", f"OUTPUT={rate}"
    )
    v = read_stack(str(rate))[0]
    ok = np.isfinite(data[0])
    np.testing.assert_allclose(v[ok], RATE[ok], atol=1e-3)
    radar = tmp_path / "radar"
    radar.mkdir()
    rpaths, _ = gmtsar_series(str(radar), geographic=False)
    out = tmp_path / "radar_stack.tif"
    p = qgis_process(
        "run",
        "deformation_forecast:buildstack",
        "--",
        *[f"LAYERS={q}" for q in rpaths],
        f"OUTPUT={out}",
        check=False,
    )
    assert p.returncode != 0 and "proj_ra2ll.csh" in p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert not out.exists()
