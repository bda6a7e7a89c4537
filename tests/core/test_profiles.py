"""Profiles: analytic surfaces, distances, skimage cross-check, windows, bad lines. No QGIS."""

import math

import numpy as np
import pytest

from deformation_forecast.core.errors import InputError
from deformation_forecast.core.profiles import (
    ProfileOptions,
    ReadStats,
    ReadTuning,
    densify,
    extract_profiles,
    read_csv,
    sample_array,
    write_csv,
)
from deformation_forecast.core.stack import read_info

RES = 20.0
X0, Y0 = 500000.0, 4300000.0


def _centres(h, w):
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    return X0 + (cols + 0.5) * RES, Y0 - (rows + 0.5) * RES


def _bilinear_surface(x, y, k):
    """Exactly reproduced by bilinear interpolation between pixel centres (a + bx + cy + dxy)."""
    u, v = (x - X0) / 1000.0, (Y0 - y) / 1000.0
    return (k + 1) * (3.0 - 7.0 * u + 11.0 * v + 5.0 * u * v) - 2.0 * k


@pytest.fixture
def analytic(write_stack):
    h, w, n = 40, 50, 4
    xc, yc = _centres(h, w)
    data = np.stack([_bilinear_surface(xc, yc, k) for k in range(n)])
    return write_stack(data), data


def _polyline_point(xy, s):
    """Point at arc length s along polyline xy (independent of densify)."""
    for a, b in zip(xy[:-1], xy[1:], strict=False):
        seg = math.dist(a, b)
        if s <= seg + 1e-9:
            f = s / seg
            return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
        s -= seg
    return tuple(xy[-1])


def test_densify_distances_follow_vertices():
    xy = np.array([[0.0, 0.0], [30.0, 40.0], [30.0, 100.0], [130.0, 100.0]])  # 50 + 60 + 100 = 210
    x, y, d, part = densify([xy], 20.0)
    assert d[-1] == pytest.approx(210.0)
    np.testing.assert_allclose(d[:-1], np.arange(11) * 20.0)
    assert (x[-1], y[-1]) == (130.0, 100.0)
    for xi, yi, di in zip(x, y, d, strict=False):
        np.testing.assert_allclose((xi, yi), _polyline_point(xy, di), atol=1e-9)
    assert set(part) == {0}


def test_densify_multipart_continues_distance_without_the_gap():
    a = np.array([[0.0, 0.0], [0.0, 50.0]])
    b = np.array([[1000.0, 0.0], [1030.0, 40.0]])
    x, y, d, part = densify([a, b], 10.0)
    assert list(part).count(0) == 6 and list(part).count(1) == 6
    assert d[list(part).index(1)] == pytest.approx(50.0)
    assert d[-1] == pytest.approx(100.0)


def test_densify_rejects_bad_spacing():
    with pytest.raises(InputError, match="SPACING"):
        densify([np.array([[0, 0], [1, 1]])], 0.0)


def test_bilinear_equals_analytic_surface_and_nearest_is_exact(analytic):
    path, data = analytic
    # a bent line well inside the hull of the pixel centres
    line = np.array([[X0 + 55.0, Y0 - 63.0], [X0 + 611.3, Y0 - 402.7], [X0 + 930.0, Y0 - 90.0]])
    [p] = extract_profiles(path, [("I", [line])], ProfileOptions(spacing=7.3, method="bilinear"))
    assert p.outside == 0
    for k in range(data.shape[0]):
        expected = _bilinear_surface(p.x, p.y, k)
        np.testing.assert_allclose(p.values[k], expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    length = math.dist(line[0], line[1]) + math.dist(line[1], line[2])
    assert p.distance[-1] == pytest.approx(length)

    [q] = extract_profiles(path, [("I", [line])], ProfileOptions(spacing=7.3, method="nearest"))
    rows = np.floor((Y0 - q.y) / RES).astype(int)
    cols = np.floor((q.x - X0) / RES).astype(int)
    np.testing.assert_array_equal(q.values, data.astype("float32")[:, rows, cols].astype("float64"))


def test_cross_check_with_skimage_profile_line(write_stack):
    from skimage.measure import profile_line

    rng = np.random.default_rng(3)
    img = rng.normal(size=(80, 90)).astype("float32")
    path = write_stack(img)
    src, dst = (10.0, 12.0), (10.0 + 30.0, 12.0 + 40.0)  # (row, col) of pixel centres, length 50 px
    line = np.array([[X0 + (c + 0.5) * RES, Y0 - (r + 0.5) * RES] for r, c in (src, dst)])
    for order, method in ((1, "bilinear"), (0, "nearest")):
        ref = profile_line(img.astype("float64"), src, dst, order=order, mode="constant")
        [p] = extract_profiles(path, [("s", [line])], ProfileOptions(spacing=RES, method=method))
        assert p.size == ref.size == 51
        np.testing.assert_allclose(p.values[0], ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(p.distance, np.arange(51) * RES)


def test_sample_array_nan_neighbours_and_outside():
    arr = np.arange(16, dtype="float32").reshape(1, 4, 4)
    arr[0, 1, 1] = np.nan
    # centre of pixel (2, 2): the NaN pixel has weight 0 -> value kept
    v = sample_array(arr, np.array([2.5, 1.9, -0.1, 4.0]), np.array([2.5, 1.9, 1.0, 1.0]), "bilinear")[0]
    assert v[0] == 10.0
    assert np.isnan(v[1])  # interpolates with the NaN pixel
    assert np.isnan(v[2]) and np.isnan(v[3])  # outside
    nearest = sample_array(arr, np.array([1.2, 0.99]), np.array([1.7, 3.99]), "nearest")[0]
    assert np.isnan(nearest[0]) and nearest[1] == 3.0


def test_partly_outside_gives_nan_and_count_wholly_outside_raises(analytic):
    path, _ = analytic
    info = read_info(path)
    left, bottom, right, top = info.bounds
    y = (bottom + top) / 2
    part_out = np.array([[left - 200.0, y], [left + 400.0, y]])
    [p] = extract_profiles(path, [("half", [part_out])], ProfileOptions(spacing=20.0))
    assert p.outside == int(np.isnan(p.values[0]).sum()) > 0
    assert np.isfinite(p.values[:, p.x >= left]).all()

    out = np.array([[right + 100.0, y], [right + 900.0, y]])
    with pytest.raises(InputError, match=r"line 'far' lies wholly outside the raster"):
        extract_profiles(path, [("ok", [part_out]), ("far", [out])])


def test_reads_only_small_windows(write_stack):
    data = np.zeros((3, 400, 400), dtype="float32")
    path = write_stack(data)
    line = np.array([[X0 + 100.0, Y0 - 100.0], [X0 + 7900.0, Y0 - 7900.0]])  # corner to corner
    stats = ReadStats()
    [p] = extract_profiles(path, [("d", [line])], stats=stats)
    assert p.outside == 0
    full = data.size * 4
    assert stats.windows > 1
    assert stats.bytes < full / 5  # the bounding box of the diagonal would be the whole raster


def test_band_subset_and_csv_roundtrip(analytic, tmp_path):
    path, _ = analytic
    info = read_info(path)
    line = np.array([[X0 + 30.0, Y0 - 30.0], [X0 + 500.0, Y0 - 30.0]])
    profs = extract_profiles(
        path, [("A", [line]), ("B", [line + [0.0, -200.0]])], ProfileOptions(bands=[1, 3])
    )
    assert profs[0].values.shape == (2, profs[0].size)
    dates = [info.dates[1], info.dates[3]]
    csv_path = write_csv(str(tmp_path / "p.csv"), profs, dates)
    back, back_dates = read_csv(csv_path)
    assert back_dates == dates
    assert [b.name for b in back] == ["A", "B"]
    np.testing.assert_allclose(back[1].values, profs[1].values, rtol=1e-5)
    np.testing.assert_allclose(back[1].distance, profs[1].distance)


def test_plot_has_one_curve_per_date_and_profile(analytic, tmp_path):
    pytest.importorskip("matplotlib")
    from deformation_forecast.core.profile_plot import default_date_indexes, save_profile_plot

    path, _ = analytic
    info = read_info(path)
    line = np.array([[X0 + 30.0, Y0 - 30.0], [X0 + 500.0, Y0 - 300.0]])
    profs = extract_profiles(path, [("I", [line]), ("II", [line[::-1]])])
    out = str(tmp_path / "plot.png")
    assert save_profile_plot(out, profs, info.dates) == 2 * info.count
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert save_profile_plot(str(tmp_path / "plot.svg"), profs, info.dates, [0, 3]) == 4
    with pytest.raises(InputError, match="OUTPUT_PLOT"):
        save_profile_plot(str(tmp_path / "plot.txt"), profs, info.dates)
    assert default_date_indexes(156, 12)[0] == 0 and default_date_indexes(156, 12)[-1] == 155
    assert default_date_indexes(5) == [0, 1, 2, 3, 4]


def test_small_cache_budget_reopens_without_changing_values(write_stack):
    rng = np.random.default_rng(5)
    path = write_stack(rng.normal(size=(3, 300, 300)).astype("float32"))
    lines = [
        ("a", [np.array([[X0 + 100.0, Y0 - 100.0], [X0 + 5900.0, Y0 - 5000.0]])]),
        ("b", [np.array([[X0 + 5900.0, Y0 - 100.0], [X0 + 100.0, Y0 - 5900.0]])]),
    ]
    ref = extract_profiles(path, lines, tuning=ReadTuning(threads=1))
    tiny = extract_profiles(path, lines, tuning=ReadTuning(cache_budget=1))
    for p, q in zip(ref, tiny, strict=True):
        np.testing.assert_array_equal(p.values, q.values)


def test_run_reports_each_line_and_cancel_stops(analytic):
    """The run context (core.run.Run) gets one progress step per line, on its stage's scale, and
    its cancel button stops the sampling with core.errors.Cancelled."""
    from deformation_forecast.core.errors import Cancelled
    from deformation_forecast.core.run import Run

    path, _ = analytic
    line = np.array([[X0 + 30.0, Y0 - 30.0], [X0 + 500.0, Y0 - 300.0]])
    lines = [("I", [line]), ("II", [line[::-1]]), ("III", [line + 40.0])]
    seen = []
    run = Run(report=lambda f, m: seen.append(f)).stage(0.0, 0.8)
    profs = extract_profiles(path, lines, run=run)
    assert seen == pytest.approx([0.8 / 3, 1.6 / 3, 0.8])
    assert [p.name for p in profs] == ["I", "II", "III"]
    calls = []
    with pytest.raises(Cancelled):
        extract_profiles(
            path, lines, run=Run(report=lambda f, m: calls.append(f), cancelled=lambda: len(calls) >= 1)
        )
    assert len(calls) == 1  # stopped after the first line
