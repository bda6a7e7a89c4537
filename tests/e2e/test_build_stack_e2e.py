import datetime as dt

import numpy as np
import pytest
import rasterio
from affine import Affine

from deformation_forecast.core.stack import read_info, read_stack

pytestmark = pytest.mark.e2e


def test_buildstack_through_qgis_process(qgis_process, tmp_path):
    paths = []
    for i, day in enumerate(["20200101", "20200113", "20200125"]):
        p = str(tmp_path / f"cum {day}.tif")  # a space in the path on purpose
        with rasterio.open(
            p,
            "w",
            driver="GTiff",
            width=4,
            height=3,
            count=1,
            dtype="float32",
            crs="EPSG:32647",
            transform=Affine(20, 0, 500000, 0, -20, 4300000),
        ) as dst:
            dst.write(np.full((1, 3, 4), float(i), dtype="float32"))
        paths.append(p)
    out = str(tmp_path / "stack.tif")
    args = (
        ["run", "deformation_forecast:buildstack", "--"] + [f"LAYERS={p}" for p in paths] + [f"OUTPUT={out}"]
    )
    res = qgis_process(*args)
    assert res["results"]["OUTPUT"] == out
    assert read_info(out).dates[-1] == dt.date(2020, 1, 25)
    np.testing.assert_array_equal(read_stack(out)[:, 1, 1], [0, 1, 2])


def test_bad_input_fails_cleanly_through_qgis_process(qgis_process, tmp_path):
    p = str(tmp_path / "nodate.tif")
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=4,
        height=3,
        count=1,
        dtype="float32",
        crs="EPSG:32647",
        transform=Affine(20, 0, 500000, 0, -20, 4300000),
    ) as dst:
        dst.write(np.zeros((1, 3, 4), dtype="float32"))
    out = str(tmp_path / "stack.tif")
    proc = qgis_process(
        "run", "deformation_forecast:buildstack", "--", f"LAYERS={p}", f"OUTPUT={out}", check=False
    )
    assert proc.returncode != 0
    assert "no date in the name of 'nodate.tif'" in proc.stdout + proc.stderr
    assert not (tmp_path / "stack.tif").exists()
