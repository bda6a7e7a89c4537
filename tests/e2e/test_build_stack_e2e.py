import datetime as dt

import numpy as np
import pytest

from deformation_forecast.core.stack import read_info, read_stack
from tests.conftest import plain_raster

pytestmark = pytest.mark.e2e


def test_buildstack_through_qgis_process(qgis_process, tmp_path):
    paths = []
    for i, day in enumerate(["20200101", "20200113", "20200125"]):
        # a space in the path on purpose
        paths.append(plain_raster(tmp_path / f"cum {day}.tif", np.full((1, 3, 4), float(i))))
    out = str(tmp_path / "stack.tif")
    args = (
        ["run", "deformation_forecast:buildstack", "--"] + [f"LAYERS={p}" for p in paths] + [f"OUTPUT={out}"]
    )
    res = qgis_process(*args)
    assert res["results"]["OUTPUT"] == out
    assert read_info(out).dates[-1] == dt.date(2020, 1, 25)
    np.testing.assert_array_equal(read_stack(out)[:, 1, 1], [0, 1, 2])


def test_bad_input_fails_cleanly_through_qgis_process(qgis_process, tmp_path):
    p = plain_raster(tmp_path / "nodate.tif", np.zeros((1, 3, 4)))
    out = str(tmp_path / "stack.tif")
    proc = qgis_process(
        "run", "deformation_forecast:buildstack", "--", f"LAYERS={p}", f"OUTPUT={out}", check=False
    )
    assert proc.returncode != 0
    assert "no date in the name of 'nodate.tif'" in proc.stdout + proc.stderr
    assert not (tmp_path / "stack.tif").exists()
