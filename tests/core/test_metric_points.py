"""pointstostack's PIXEL_SIZE and RADIUS are metres on the ground on a geographic output CRS too."""

import numpy as np
import pytest

from deformation_forecast.core.metric import metres_per_degree
from deformation_forecast.core.points import points_to_stack, read_points_csv
from deformation_forecast.core.run import Run
from deformation_forecast.core.stack import read_info, read_stack


def test_geographic_output_cells_are_metres(tmp_path):
    csv = tmp_path / "pts.csv"
    lines = ["lon,lat,D20200101,D20200113"]
    # a 5 x 4 lattice of points 0.001 deg apart near 45 N, value = column index
    for j in range(4):
        for i in range(5):
            lines.append(f"{10 + 0.001 * i:.4f},{45 + 0.001 * j:.4f},{i},{i + 1}")
    csv.write_text("\n".join(lines) + "\n")
    series = read_points_csv(str(csv), crs="EPSG:4326")
    out = str(tmp_path / "s.tif")
    logs = []
    points_to_stack(series, out, 50.0, out_crs="EPSG:4326", run=Run(report=lambda f, m: m and logs.append(m)))
    info = read_info(out)
    kx, ky = metres_per_degree(45.0015)
    assert info.transform.a == pytest.approx(50.0 / kx, rel=1e-9)
    assert info.transform.e == pytest.approx(-50.0 / ky, rel=1e-9)
    # 0.001 deg of longitude = 78.9 m: about 1.6 cells of 50 m per point step
    assert info.width == int(np.floor(0.004 * kx / 50.0)) + 1
    assert any("local scale at latitude" in m for m in logs)
    # the westernmost points' value (0) sits in the first column
    assert np.nanmax(read_stack(out)[0][:, 0]) == 0
