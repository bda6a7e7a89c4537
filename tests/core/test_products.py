"""MintPy / LiCSBAS HDF5 products -> stacks (core.products). The test files are format-faithful
copies written with h5py; tests/h5products.py says which documentation each layout follows
(MintPy's "api/data_structure" docs, LiCSBAS13_sb_inv.py's writer)."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from deformation_forecast.core.errors import InputError
from deformation_forecast.core.products import (
    LICSBAS,
    MINTPY,
    detect,
    import_product,
    reference_index,
    write_incidence,
)
from deformation_forecast.core.stack import read_info, read_stack
from tests import h5products as hp


@pytest.mark.parametrize("geo,epsg", [("geographic", 4326), ("epsg", 32611), ("utm_zone", 32611)])
def test_mintpy_imports_equal_to_source(tmp_path, geo, epsg):
    """Values x 1000 (m -> mm), the transform = X_FIRST/Y_FIRST corner exactly, dates exact, the
    reference date (not the first) kept, NaN kept."""
    data = hp.series(ref=2)
    src = tmp_path / "geo_timeseries_ERA5_ramp_demErr.h5"
    attrs = hp.write_mintpy(src, data / 1000.0, geo=geo, ref=2)
    prod = detect(str(src))
    assert prod.processor == MINTPY and prod.crs.to_epsg() == epsg
    assert prod.ref_date == hp.DATES[2]
    out = str(tmp_path / "stack.tif")
    # a tiny memory limit: the file is read in strips of one row
    import_product(prod, out, max_bytes=4 * 4 * 6)
    info = read_info(out)
    assert info.dates == hp.DATES
    assert info.crs.to_epsg() == epsg
    xf, yf, xs, ys = (float(attrs[k]) for k in ("X_FIRST", "Y_FIRST", "X_STEP", "Y_STEP"))
    assert info.transform == Affine(xs, 0, xf, 0, ys, yf)
    got = read_stack(out)
    np.testing.assert_allclose(got, (data / 1000.0).astype("float32") * np.float32(1000), rtol=1e-6)
    assert np.isnan(got[:, 1, 2]).all()
    np.testing.assert_array_equal(np.nan_to_num(got[2]), 0)  # zero at the product's reference date
    assert info.tags["PROCESSOR"] == MINTPY and info.tags["REFERENCE_DATE"] == "2019-01-30"
    assert info.units == "mm"


def test_licsbas_imports_equal_to_source(tmp_path):
    """corner_* is the centre of the first pixel: origin = corner - post / 2; values in mm as is."""
    data = hp.series(seed=3)
    src = tmp_path / "cum_filt.h5"
    hp.write_licsbas(src, data)
    prod = detect(str(src))
    assert prod.processor == LICSBAS and prod.factor == 1.0
    out = str(tmp_path / "stack.tif")
    import_product(prod, out)
    info = read_info(out)
    (lat, lon), (dlat, dlon) = hp.LICSBAS_CORNER, hp.LICSBAS_POST
    assert info.transform == Affine(dlon, 0, lon - dlon / 2, 0, dlat, lat - dlat / 2)
    # the centre of pixel (0, 0) is the corner given by LiCSBAS
    assert info.transform * (0.5, 0.5) == pytest.approx((lon, lat), abs=1e-12)
    assert info.crs.to_epsg() == 4326 and info.dates == hp.DATES
    np.testing.assert_array_equal(read_stack(out), data)
    assert "refarea 2:3/1:2" in info.tags["PRODUCT_REFERENCE_POINT"]


def test_reference_date_rereferences_every_pixel(tmp_path):
    data = hp.series(seed=1)
    src = tmp_path / "cum.h5"
    hp.write_licsbas(src, data)
    prod = detect(str(src))
    out = str(tmp_path / "stack.tif")
    import_product(prod, out, ref_index=reference_index(prod, hp.DATES[3]))
    np.testing.assert_allclose(read_stack(out), data - data[3:4], atol=1e-5)
    assert read_info(out).tags["REFERENCE_DATE"] == "2019-02-11"
    with pytest.raises(
        InputError, match="REFERENCE_DATE: 2019-02-12 is not an acquisition.*closest: 2019-02-11"
    ):
        reference_index(prod, hp.DATES[3].replace(day=12))


def test_radar_geometry_refused_naming_geocode(tmp_path):
    src = tmp_path / "timeseries.h5"
    hp.write_mintpy(src, hp.series() / 1000, radar=True)
    with pytest.raises(InputError, match="radar geometry.*geocode.py"):
        detect(str(src))


def test_foreign_hdf5_and_non_hdf5_refused(tmp_path):
    import h5py

    src = tmp_path / "timeseries.h5"  # the name of a MintPy file, but not its content
    with h5py.File(src, "w") as f:
        f.create_dataset("velocity", data=np.zeros((3, 3)))
    with pytest.raises(InputError, match="neither a MintPy.*its datasets: velocity"):
        detect(str(src))
    txt = tmp_path / "cum.h5"
    txt.write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        detect(str(txt))


def test_geometry_incidence_written_on_the_grid(tmp_path):
    import rasterio

    src = tmp_path / "geo_timeseries.h5"
    attrs = hp.write_mintpy(src, hp.series() / 1000)
    geom = tmp_path / "geometryGeo.h5"
    inc = hp.write_geometry(geom, 5, 6, attrs)
    prod = detect(str(src))
    out = str(tmp_path / "inc.tif")
    write_incidence(str(geom), prod, out)
    with rasterio.open(out) as r:
        np.testing.assert_array_equal(r.read(1), inc)
        assert r.transform == prod.transform and r.units[0] == "degrees"
    bad = tmp_path / "geometryOther.h5"
    hp.write_geometry(bad, 4, 6, attrs)
    with pytest.raises(InputError, match="GEOMETRY.*not on the grid"):
        write_incidence(str(bad), prod, str(tmp_path / "inc2.tif"))
