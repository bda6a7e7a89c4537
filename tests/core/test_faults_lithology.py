"""Faults and lithology core: signed distances, a step of known height, a unit of known mean."""

import numpy as np
import pytest
from affine import Affine

from deformation_forecast.core.errors import InputError
from deformation_forecast.core.faults import distance_grid, fault_profiles, signed_distance
from deformation_forecast.core.lithology import UnitHistory, rasterize_units, unit_stats


def test_signed_distance_left_negative_right_positive():
    line = [np.array([[0.0, 0.0], [10.0, 0.0]])]  # towards +x: left is +y
    d, f, along = signed_distance(np.array([5.0, 5.0, 15.0]), np.array([3.0, -2.0, 0.0]), [line])
    np.testing.assert_allclose(d[:2], [-3.0, 2.0])
    assert d[2] == pytest.approx(5.0) and not along[2]  # beyond the tip
    assert along[:2].all() and (f == 0).all()


def test_sign_does_not_flip_at_a_bend():
    # an L-shaped line: (0,0) -> (10,0) -> (10,10); points outside the corner are on the right
    line = [np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])]
    pts = np.array([[12.0, -2.0], [13.0, -1.0], [11.0, -5.0], [8.0, 2.0], [9.0, 1.0]])
    d, _, along = signed_distance(pts[:, 0], pts[:, 1], [line])
    assert (d[:3] > 0).all()  # outside the bend: right of the direction
    assert (d[3:] < 0).all()  # inside the bend: left
    np.testing.assert_allclose(abs(d[0]), np.hypot(2, 2))
    assert along.all()


def test_nearest_fault_of_two():
    a = [np.array([[0.0, 0.0], [0.0, 100.0]])]
    b = [np.array([[50.0, 0.0], [50.0, 100.0]])]
    d, f, _ = signed_distance(np.array([10.0, 40.0]), np.array([50.0, 50.0]), [a, b])
    np.testing.assert_array_equal(f, [0, 1])
    np.testing.assert_allclose(np.abs(d), [10.0, 10.0])


def test_step_of_known_height_is_measured_within_noise():
    rng = np.random.default_rng(1)
    h, w, res = 120, 120, 20.0
    tr = Affine(res, 0, 0, 0, -res, h * res)
    fault = [[np.array([[0.0, 0.3 * h * res], [w * res, 0.7 * h * res]])]]  # oblique, towards +x
    dist, idx, along = distance_grid(fault, tr, w, h)
    step, noise = -25.0, 3.0
    values = np.where(dist >= 0, step, 0.0) - 0.01 * np.abs(dist) + rng.normal(0, noise, (h, w))
    values[5:10, 5:10] = np.nan
    prof = fault_profiles(values, dist, idx, along, 1, bin_width=100.0, max_distance=600.0)[0]
    assert prof.n_left > 50 and prof.n_right > 50
    assert abs(prof.step - step) < 4 * prof.step_se + 1.0  # trend over one bin < 1 mm
    assert prof.step_se < 1.0
    rows = prof.rows
    assert {r["side"] for r in rows} == {"left", "right"} and len(rows) == 12


def test_bad_bins_and_empty_faults():
    with pytest.raises(InputError, match="bin width"):
        fault_profiles(np.zeros(4), np.zeros(4), np.zeros(4, int), np.ones(4, bool), 1, 0, 10)
    with pytest.raises(InputError, match="no line"):
        signed_distance(np.zeros(1), np.zeros(1), [[np.array([[1.0, 1.0], [1.0, 1.0]])]])


def _square(x0, y0, x1, y1):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def test_unit_with_known_mean():
    rng = np.random.default_rng(2)
    h = w = 50
    tr = Affine(10, 0, 0, 0, -10, 500)
    geoms = [_square(0, 0, 250, 500), _square(250, 0, 500, 500), _square(0, 0, 100, 100)]
    labels, names = rasterize_units(geoms, ["soft", "hard", "soft"], tr, w, h)
    assert names == ["soft", "hard"]
    values = np.where(labels == 1, -40.0, -5.0) + rng.normal(0, 2, (h, w))
    values[0, 0] = np.nan
    rows = {r["unit"]: r for r in unit_stats(values, labels, names, pixel_area=100.0, threshold=20)}
    assert rows["soft"]["pixels"] == 25 * 50
    assert rows["soft"]["valid"] == 25 * 50 - 1
    assert rows["soft"]["area"] == pytest.approx(25 * 50 * 100.0)
    assert rows["soft"]["mean"] == pytest.approx(-40.0, abs=0.3)
    assert rows["hard"]["mean"] == pytest.approx(-5.0, abs=0.3)
    assert rows["soft"]["share_subsiding"] == pytest.approx(1.0)
    assert rows["hard"]["share_subsiding"] == pytest.approx(0.0)
    assert rows["soft"]["p5"] < rows["soft"]["median"] < rows["soft"]["p95"]

    hist = UnitHistory(len(names), 2)
    hist.add(np.stack([values, 2 * values]), labels)
    m = hist.means()
    assert m.shape == (2, 2)
    np.testing.assert_allclose(m[1], 2 * m[0])
    assert m[0, 0] == pytest.approx(rows["soft"]["mean"])


def test_controls_run_progress_per_window_and_cancel_leaves_no_raster(write_stack, tmp_path):
    """analyse_controls takes the run context: one progress step per window up to 1, and a cancel
    (core.errors.Cancelled) leaves no distance raster behind."""
    import os

    from deformation_forecast.core.controls import ControlOptions, analyse_controls
    from deformation_forecast.core.errors import Cancelled
    from deformation_forecast.core.run import Run
    from deformation_forecast.core.stack import read_info

    x0, y0 = 500000.0, 4300000.0
    path = write_stack(np.arange(2 * 30 * 40, dtype="float32").reshape(2, 30, 40))
    info = read_info(path)
    fault = [np.array([[x0 + 100.0, y0 - 10.0], [x0 + 700.0, y0 - 590.0]])]
    opts = ControlOptions(
        bin_width=40.0, max_distance=200.0, distance_path=str(tmp_path / "d.tif"), max_bytes=4000
    )
    seen = []
    res, _ = analyse_controls(
        path, info, 1, [fault], options=opts, run=Run(report=lambda f, m: seen.append(f))
    )
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert res.profiles[0].n_left > 0 and res.profiles[0].n_right > 0
    assert os.path.exists(tmp_path / "d.tif")
    out = tmp_path / "c.tif"
    calls = []
    stop = Run(report=lambda f, m: calls.append(f), cancelled=lambda: len(calls) >= 2)
    with pytest.raises(Cancelled):
        analyse_controls(
            path, info, 1, [fault], options=ControlOptions(distance_path=str(out), max_bytes=4000), run=stop
        )
    assert len(calls) == 2 and not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith("c.tif") or "partial" in p]
