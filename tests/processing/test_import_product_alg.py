"""importproduct through processing.run: MintPy and LiCSBAS files written by tests/h5products.py
(format-faithful copies; the docstring there names the documentation each layout follows)."""

from __future__ import annotations

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from deformation_forecast.core.stack import read_info, read_stack
from tests import h5products as hp


class Log(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def pushInfo(self, info):  # noqa: N802
        self.lines.append(info)

    def pushWarning(self, warning):  # noqa: N802
        self.lines.append(warning)


def test_importproduct_mintpy_utm_with_geometry(run_alg, tmp_path):
    data = hp.series(ref=1)
    src = tmp_path / "geo_timeseries_ERA5_ramp_demErr.h5"
    attrs = hp.write_mintpy(src, data / 1000, geo="utm_zone", ref=1)
    geom = tmp_path / "geometryGeo.h5"
    inc = hp.write_geometry(geom, 5, 6, attrs)
    out, inc_out = str(tmp_path / "stack.tif"), str(tmp_path / "inc.tif")
    log = Log()
    res = run_alg(
        "importproduct",
        {"INPUT": str(src), "GEOMETRY": str(geom), "OUTPUT": out, "OUTPUT_INCIDENCE": inc_out},
        feedback=log,
    )
    assert res["PROCESSOR"] == "MintPy" and res["DATE_COUNT"] == 4
    assert res["FIRST_DATE"] == "2019-01-06" and res["LAST_DATE"] == "2019-02-11"
    assert res["REFERENCE_DATE_USED"] == "2019-01-18"
    np.testing.assert_allclose(read_stack(out), (data / 1000).astype("float32") * 1000, rtol=1e-6)
    assert read_info(out).crs.to_epsg() == 32611
    import rasterio

    with rasterio.open(res["OUTPUT_INCIDENCE"]) as r:
        np.testing.assert_array_equal(r.read(1), inc)
    text = "\n".join(log.lines)
    assert "MintPy" in text and "unit 'm' (x 1000 to mm)" in text and "EPSG:32611" in text
    assert "row 3, col 4" in text


def test_importproduct_licsbas_rereferenced(run_alg, tmp_path):
    data = hp.series(seed=5)
    src = tmp_path / "cum_filt.h5"
    hp.write_licsbas(src, data)
    out = str(tmp_path / "stack.tif")
    res = run_alg("importproduct", {"INPUT": str(src), "REFERENCE_DATE": "20190130", "OUTPUT": out})
    assert res["PROCESSOR"] == "LiCSBAS" and res["REFERENCE_DATE_USED"] == "2019-01-30"
    np.testing.assert_allclose(read_stack(out), data - data[2:3], atol=1e-5)


def test_importproduct_unit_warning(run_alg, tmp_path):
    """A file in metres that says mm: every value within +-1 mm gets a warning naming UNIT."""
    import h5py

    src = tmp_path / "geo_timeseries.h5"
    hp.write_mintpy(src, hp.series() / 1000)
    with h5py.File(src, "a") as f:
        f.attrs["UNIT"] = "mm"
        f["timeseries"][...] = np.clip(f["timeseries"][...], -0.004, 0.004)
    log = Log()
    run_alg("importproduct", {"INPUT": str(src), "OUTPUT": str(tmp_path / "s.tif")}, feedback=log)
    assert any("fix its UNIT attribute" in line for line in log.lines)


def test_importproduct_refusals_leave_nothing(run_alg, tmp_path):
    radar = tmp_path / "timeseries.h5"
    hp.write_mintpy(radar, hp.series() / 1000, radar=True)
    out = tmp_path / "stack.tif"
    with pytest.raises(QgsProcessingException, match="radar geometry.*geocode.py"):
        run_alg("importproduct", {"INPUT": str(radar), "OUTPUT": str(out)})
    src = tmp_path / "cum.h5"
    hp.write_licsbas(src, hp.series())
    with pytest.raises(QgsProcessingException, match="REFERENCE_DATE: 2020-01-01 is not an acquisition"):
        run_alg("importproduct", {"INPUT": str(src), "REFERENCE_DATE": "2020-01-01", "OUTPUT": str(out)})
    assert not out.exists()
