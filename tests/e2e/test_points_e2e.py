"""`pointstostack` inside qgis_process.bin on the real StaMPS export."""

import os

import numpy as np
import pytest
import rasterio

pytestmark = pytest.mark.e2e


def test_stamps_export_to_stack_in_qgis_process(qgis_process, shared_data, tmp_path):
    csv = os.path.join(shared_data, "maoxian_stamps", "Maoxian_SBAS.csv")
    out = str(tmp_path / "maoxian.tif")
    res = qgis_process(
        "run",
        "deformation_forecast:pointstostack",
        "--",
        f"INPUT_CSV={csv}",
        "PIXEL_SIZE=25",
        "METHOD=1",
        f"OUTPUT={out}",
    )
    r = res["results"]
    assert r["OUTPUT"] == out
    assert r["POINT_COUNT"] == 608 and r["DATE_COUNT"] == 38
    assert r["OUTPUT_CRS_USED"] == "EPSG:32648"
    with rasterio.open(out) as src:
        assert src.count == 38 and src.crs.to_epsg() == 32648 and src.res == (25.0, 25.0)
        assert src.descriptions[0] == "2014-11-26" and src.descriptions[-1] == "2017-06-19"
        arr = src.read()
    assert int(np.any(np.isfinite(arr), axis=0).sum()) == r["FILLED_CELLS"] > 0
