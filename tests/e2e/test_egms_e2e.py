"""An EGMS-layout CSV (tests/egms.py) through qgis_process.bin: CSV_CRS=EPSG:3035 takes
easting/northing (not latitude/longitude read as metres), and degrees given as EPSG:3035 are refused."""

import numpy as np
import pytest

from deformation_forecast.core.stack import read_info, read_stack
from tests import egms

pytestmark = pytest.mark.e2e


def test_egms_csv_epsg3035(qgis_process, tmp_path):
    csv = tmp_path / "EGMS_L2b_example.csv"
    egms.write_egms(csv)
    out = str(tmp_path / "egms.tif")
    res = qgis_process(
        "run", "deformation_forecast:pointstostack", "--", f"INPUT_CSV={csv}", "CSV_CRS=EPSG:3035",
        "PIXEL_SIZE=20", f"OUTPUT={out}",
    )  # fmt: skip
    r = res["results"]
    assert r["POINT_COUNT"] == 30 and r["MERGED_COUNT"] == 0 and r["OUTPUT_CRS_USED"] == "EPSG:3035"
    info = read_info(out)
    assert info.width > 2 and info.height > 2
    assert np.nanmax(read_stack(out)[-1]) == 15.0
    assert "'easting'/'northing' in EPSG:3035" in str(res.get("log", res))
    bad = tmp_path / "lonlat.csv"
    egms.write_egms(bad, lonlat_only=True)
    p = qgis_process(
        "run", "deformation_forecast:pointstostack", "--", f"INPUT_CSV={bad}", "CSV_CRS=EPSG:3035",
        "PIXEL_SIZE=20", f"OUTPUT={tmp_path / 'bad.tif'}", check=False,
    )  # fmt: skip
    assert p.returncode != 0 and "outside the area of use of EPSG:3035" in p.stdout + p.stderr
    assert not (tmp_path / "bad.tif").exists()
