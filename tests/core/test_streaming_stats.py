"""Statistics of sorted float32 values without a float64 copy (core.streaming), checked against
numpy and against matplotlib's own box-plot statistics."""

from __future__ import annotations

import numpy as np
import pytest

from deformation_forecast.core.streaming import (
    GroupValues,
    box_stats,
    count_below,
    sorted_percentiles,
    sorted_stats,
)


def _samples():
    rng = np.random.default_rng(3)
    yield np.array([2.5], "float32")
    yield np.array([-1.0, 4.0], "float32")
    yield rng.normal(-12, 9, size=1001).astype("float32")
    # heavy tails: whiskers stop short of the extremes
    yield np.concatenate([rng.normal(0, 1, 5000), rng.standard_cauchy(300) * 40]).astype("float32")
    # more than one accumulation chunk (2**20), a large offset: float32 sums would drift
    yield (rng.normal(-300.0, 2.0, size=2_300_000)).astype("float32")


@pytest.mark.parametrize("v", list(_samples()), ids=lambda v: str(v.size))
def test_stats_of_sorted_values_equal_numpy_in_float64(v):
    s = np.sort(v)
    x = s.astype(np.float64)
    st = sorted_stats(s)
    assert st["n"] == v.size
    assert st["mean"] == pytest.approx(x.mean(), rel=1e-12, abs=1e-12)
    assert st["median"] == pytest.approx(np.median(x), rel=1e-12, abs=1e-12)
    assert st["min"] == x.min() and st["max"] == x.max()
    if v.size > 1:
        assert st["std"] == pytest.approx(x.std(ddof=1), rel=1e-9)
    else:
        assert np.isnan(st["std"])
    q = [0, 5, 25, 37.5, 50, 95, 100]
    np.testing.assert_allclose(sorted_percentiles(s, q), np.percentile(x, q), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("v", list(_samples())[1:4], ids=lambda v: str(v.size))
def test_box_equals_matplotlib_boxplot_stats(v):
    from matplotlib.cbook import boxplot_stats

    ref = boxplot_stats(v.astype(np.float64))[0]
    got = box_stats(np.sort(v), "u")
    for k in ("med", "q1", "q3", "whislo", "whishi", "mean"):
        assert got[k] == pytest.approx(float(ref[k]), rel=1e-9, abs=1e-9), k
    assert got["label"] == "u"


def test_count_below_is_exact_at_a_threshold_float32_cannot_hold():
    t = -0.1  # float32(-0.1) is below -0.1
    near = np.float32(t)
    v = np.sort(np.array([-5, near, np.nextafter(near, np.float32(0)), -0.05, 3], "float32"))
    assert count_below(v, t) == int((v.astype(np.float64) < t).sum()) == 2
    assert count_below(v, -10.0) == 0 and count_below(v, 10.0) == 5
    assert count_below(v, float(near)) == 1


def test_group_values_pop_sorted_in_the_added_dtype_whatever_the_chunks():
    rng = np.random.default_rng(0)
    vals = rng.normal(size=3000).astype("float32")
    groups = rng.integers(0, 4, size=3000)
    one, many = GroupValues(), GroupValues()
    one.add(groups, vals)
    for a in range(0, 3000, 250):
        many.add(groups[a : a + 250], vals[a : a + 250])
    assert one.nbytes == many.nbytes == vals.nbytes
    for g in range(4):
        a, b = one.pop(g), many.pop(g)
        assert a.dtype == np.float32 and np.array_equal(a, b)
        assert np.array_equal(a, np.sort(vals[groups == g]))
    assert one.nbytes == 0 and one.pop(9).size == 0
