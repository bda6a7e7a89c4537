"""The sample scene's optional 3-D model (issue 19): extra files only, inward horizontal motion, and
`decompose` beating dLOS / cos(theta) on it."""

from __future__ import annotations

import json

import numpy as np

from deformation_forecast.core import decompose as dc
from deformation_forecast.core import sample
from deformation_forecast.core.stack import read_info, read_stack


def test_horizontal_model_adds_files_and_changes_nothing_else(tmp_path):
    plain = sample.make_sample_scene(str(tmp_path / "plain"), size=48, seed=5)
    three = sample.make_sample_scene(str(tmp_path / "3d"), size=48, seed=5, horizontal=True)
    assert set(three) - set(plain) == set(sample.FILES_3D)
    for key in ("stack_asc", "stack_desc", "truth_asc", "truth_future_asc", "incidence_asc"):
        assert read_stack(plain[key]).tobytes() == read_stack(three[key]).tobytes(), key
    with open(plain["scene"]) as f:
        meta_plain = json.load(f)
    with open(three["scene"]) as f:
        meta_3d = json.load(f)
    assert "horizontal" not in meta_plain and meta_3d.pop("horizontal")["heading_deg"]["ascending"] == -13.0
    assert meta_plain == meta_3d
    # the 3-D stacks carry the same noise and NaN: their difference is the horizontal motion's LOS
    a, a3 = read_stack(plain["stack_asc"]), read_stack(three["stack_asc_3d"])
    np.testing.assert_array_equal(np.isnan(a), np.isnan(a3))
    # the flanks of the second western bowl move toward its centre: east on its west side, west on its east
    scene = sample.SampleScene(48, 5)
    r, c = scene.rowcol(*scene.to_map(*sample.AREAS[1].centre))
    east = read_stack(three["truth_east"], bands=[155])[0]
    assert east[r, c - 6] > 20 and east[r, c + 6] < -20
    np.testing.assert_allclose(
        read_stack(three["truth_up"], bands=[155])[0], scene.vertical(scene.asc_dates[-1])
    )

    # decompose on the 3-D stacks: much closer to the true vertical than dLOS / cos(theta)
    asc, desc = read_info(three["stack_asc_3d"]), read_info(three["stack_desc_3d"])
    orbits = [
        dc.Orbit(asc.path, asc, three["incidence_asc"], sample.ASC_HEADING),
        dc.Orbit(desc.path, desc, three["incidence_desc"], sample.DESC_HEADING),
    ]
    res = dc.decompose(orbits, dc.Outputs(str(tmp_path / "u.tif"), str(tmp_path / "e.tif")))
    i0, i1 = asc.dates.index(res.dates[0]), asc.dates.index(res.dates[-1])
    tu = read_stack(three["truth_up"], bands=[i0, i1]).astype("float64")
    te = read_stack(three["truth_east"], bands=[i0, i1]).astype("float64")
    u_true, e_true = tu[1] - tu[0], te[1] - te[0]
    flank = np.abs(e_true) > 30
    naive = (a3[i1] - a3[i0]) / np.cos(np.radians(read_stack(three["incidence_asc"])[0]))
    up = read_stack(str(tmp_path / "u.tif"), bands=[len(res.dates) - 1])[0]

    def rmse(err):
        return float(np.sqrt(np.nanmean(err[flank] ** 2)))

    assert flank.sum() > 20
    assert rmse(up - u_true) < 0.4 * rmse(naive - u_true), (rmse(up - u_true), rmse(naive - u_true))
