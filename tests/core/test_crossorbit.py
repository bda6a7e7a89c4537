"""Cross-orbit core: a known factor between orbits gives the known slope."""

import datetime as dt

import numpy as np
import pytest

from deformation_forecast.core.crossorbit import (
    CrossOrbitOptions,
    PairStats,
    Side,
    check_incidence,
    cross_orbit,
    los_to_vertical,
    nearest_pairs,
)
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.stack import read_info
from tests.conftest import make_dates


def test_los_to_vertical_and_incidence_check():
    assert los_to_vertical(-10.0, 60.0) == pytest.approx(-20.0)
    for bad in (0, 90, -5, 120):
        with pytest.raises(InputError, match="between 0 and 90"):
            check_incidence(bad)
    check_incidence(np.array([30.0, np.nan, 45.0]))


def test_nearest_pairs():
    a = [dt.date(2020, 1, d) for d in (1, 13, 25)]
    b = [dt.date(2020, 1, d) for d in (3, 4, 30)]
    assert nearest_pairs(a, b, 6) == [(0, 0, 2), (2, 2, 5)]
    assert nearest_pairs(a, b, 10, one_to_one=True) == [(0, 0, 2), (1, 1, 9), (2, 2, 5)]
    assert nearest_pairs(a, [dt.date(2020, 1, 10)], 30, one_to_one=True) == [(1, 0, 3)]


def test_pair_stats_streams_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 10, 1000)
    y = 1.5 * x + 2 + rng.normal(0, 1, 1000)
    st = PairStats()
    for k in range(0, 1000, 137):
        st.add(x[k : k + 137], y[k : k + 137])
    res = st.result()
    p = np.polyfit(x, y, 1)
    assert res["slope"] == pytest.approx(p[0]) and res["intercept"] == pytest.approx(p[1])
    assert res["r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert res["rmse"] == pytest.approx(np.sqrt(np.mean((y - x) ** 2)))


@pytest.mark.parametrize("mode", ["displacement", "velocity"])
def test_factor_between_orbits_gives_slope(write_stack, mode):
    rng = np.random.default_rng(3)
    n, h, w = 8, 30, 40
    rate = rng.uniform(-60, 5, (h, w))  # vertical mm/yr, spatially varying
    t = np.arange(n) * 12 / 365.25
    vert = rate[None] * t[:, None, None]
    inc_a, inc_b = 34.17, 41.42
    a = vert * np.cos(np.radians(inc_a))
    b = 1.2 * vert * np.cos(np.radians(inc_b)) + 7.0  # other reference: offset removed by zeroing
    a[:, 0, 0] = np.nan
    pa = write_stack(a, name="a.tif")
    # B acquired 2 days later, over a shifted period
    pb = write_stack(b, dates=make_dates(n, start=dt.date(2018, 1, 3)), name="b.tif")
    res = cross_orbit(
        Side(pa, read_info(pa), inc_a),
        Side(pb, read_info(pb), inc_b),
        CrossOrbitOptions(max_days=6, mode=mode),
    )
    ov = res.overall
    assert ov["slope"] == pytest.approx(1.2, rel=1e-4)
    assert ov["r"] == pytest.approx(1.0, abs=1e-6)
    assert ov["n"] == (h * w - 1) * ((n - 1) if mode == "displacement" else 1)
    assert res.sample_a.size > 0 and len(res.rows) == (n if mode == "displacement" else 2)


def test_no_common_dates(write_stack):
    pa = write_stack(np.zeros((3, 4, 4)), name="a.tif")
    pb = write_stack(np.zeros((3, 4, 4)), dates=make_dates(3, start=dt.date(2021, 1, 1)), name="b.tif")
    with pytest.raises(InputError, match="within 6 days"):
        cross_orbit(Side(pa, read_info(pa), 34), Side(pb, read_info(pb), 40), CrossOrbitOptions(max_days=6))
    with pytest.raises(InputError, match="between 0 and 90"):
        cross_orbit(Side(pa, read_info(pa), 95), Side(pb, read_info(pb), 40), CrossOrbitOptions(max_days=6))
