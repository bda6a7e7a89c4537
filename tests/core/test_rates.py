"""Rates: known velocity within the noise, NaN-awareness, annual rates vs yearly differences."""

import datetime as dt
import math

import numpy as np
import pytest

from deformation_forecast.core.dates import to_decimal_year
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.rates import (
    annual_rates,
    deformation_rate,
    interp_at,
    linear_velocity,
    year_spans,
)
from deformation_forecast.core.stack import read_info, read_stack
from tests.conftest import make_dates


def _signal(dates, v, amp, shape, noise, seed=0):
    t = to_decimal_year(dates)
    rng = np.random.default_rng(seed)
    base = v * (t - t[0]) + amp * np.sin(2 * np.pi * t)
    return base[:, None, None] + rng.normal(0, noise, (len(dates), *shape)), t


def test_known_velocity_within_the_noise():
    dates = make_dates(122, dt.date(2017, 1, 3), 12)  # about four years, 12-day repeat
    v_true = np.array([[-30.0, 5.0], [0.0, -120.0]])
    t = to_decimal_year(dates)
    rng = np.random.default_rng(1)
    y = v_true[None] * (t - t[0])[:, None, None] + 4.0 * np.sin(2 * np.pi * t)[:, None, None]
    y = y + rng.normal(0, 2.0, y.shape)
    v, se = linear_velocity(y, t)
    assert np.all(np.abs(v - v_true) < 4 * se)
    assert np.all((se > 0.05) & (se < 1.0))
    # exact line: exact velocity, zero error
    v2, se2 = linear_velocity(7.5 * (t - 2017)[:, None], t)
    assert v2[0] == pytest.approx(7.5) and se2[0] == pytest.approx(0.0, abs=1e-9)


def test_standard_error_matches_ordinary_least_squares():
    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(2018, 2021, 40))
    y = 3 * t + rng.normal(0, 1, 40)
    v, se = linear_velocity(y[:, None], t)
    A = np.column_stack([t - t.mean(), np.ones_like(t)])
    coef, ssr, *_ = np.linalg.lstsq(A, y, rcond=None)
    cov = ssr[0] / (40 - 2) * np.linalg.inv(A.T @ A)
    assert v[0] == pytest.approx(coef[0])
    assert se[0] == pytest.approx(math.sqrt(cov[0, 0]))


def test_nan_aware():
    t = to_decimal_year(make_dates(10))
    y = np.repeat((-12.0 * (t - t[0]))[:, None], 3, axis=1)
    y[[1, 4, 7], 0] = np.nan
    y[1:, 1] = np.nan  # one valid date only
    y[:, 2] = np.nan
    v, se = linear_velocity(y, t)
    assert v[0] == pytest.approx(-12.0)
    assert np.isnan(v[1]) and np.isnan(v[2]) and np.isnan(se[1])


def test_annual_rates_sum_to_yearly_differences():
    dates = make_dates(95, dt.date(2018, 1, 1), 12)  # 2018-01-01 .. 2021-02-09
    y, t = _signal(dates, -50.0, 6.0, (3, 4), 1.5)
    y[5:9, 0, 0] = np.nan
    spans = year_spans(dates)
    assert [s.year for s in spans] == [2018, 2019, 2020, 2021]
    rates = annual_rates(y, t, spans)
    flat = y.reshape(len(dates), -1)
    d = {yr: interp_at(flat, t, float(yr)).reshape(3, 4) for yr in (2018, 2019, 2020, 2021)}
    for k, yr in enumerate((2018, 2019, 2020)):
        np.testing.assert_allclose(rates[k], d[yr + 1] - d[yr], rtol=1e-12)
    np.testing.assert_allclose(rates[:3].sum(0), d[2021] - d[2018], rtol=1e-9, atol=1e-9)
    # partial last year: mean rate over the covered part, times the coverage = its difference
    last = interp_at(flat, t, t[-1]).reshape(3, 4)
    np.testing.assert_allclose(rates[3] * spans[3].coverage, last - d[2021], rtol=1e-9, atol=1e-9)


def test_annual_rates_recover_piecewise_rates():
    # a date on every 1 January: the per-year slopes are recovered exactly
    dates = sorted(
        {
            *make_dates(92, dt.date(2018, 1, 1), 12),
            dt.date(2019, 1, 1),
            dt.date(2020, 1, 1),
            dt.date(2021, 1, 1),
        }
    )
    t = to_decimal_year(dates)
    slope = {2018: -10.0, 2019: -40.0, 2020: 5.0}
    y = np.array([sum(slope[yr] * np.clip(ti - yr, 0, 1) for yr in slope) for ti in t])
    spans = [s for s in year_spans(dates) if s.year in slope]
    np.testing.assert_allclose(annual_rates(y[:, None], t, spans)[:, 0], list(slope.values()), rtol=1e-9)


def test_interp_at_uses_nearest_valid_neighbours():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([[0.0], [np.nan], [20.0], [30.0]])
    assert interp_at(y, t, 1.5)[0] == pytest.approx(15.0)
    assert interp_at(y, t, 1.0)[0] == pytest.approx(10.0)
    assert np.isnan(interp_at(y, t, -0.1)[0]) and np.isnan(interp_at(y, t, 3.1)[0])


def test_deformation_rate_rasters(write_stack, tmp_path):
    dates = make_dates(61, dt.date(2019, 1, 1), 12)
    y, t = _signal(dates, -25.0, 0.0, (30, 20), 0.0)
    path = write_stack(y.astype("float32"), dates)
    out = str(tmp_path / "v.tif")
    res = deformation_rate(path, out, "linear", max_bytes=30 * 20 * 61 * 4 // 3)  # several windows
    assert res["labels"] == ["velocity_mm_per_yr", "velocity_stderr_mm_per_yr"]
    v = read_stack(out)
    np.testing.assert_allclose(v[0], -25.0, rtol=1e-5)
    assert np.nanmax(v[1]) < 1e-3
    assert res["min"] == pytest.approx(-25.0, rel=1e-5)

    outv = str(tmp_path / "vv.tif")
    deformation_rate(path, outv, "linear", vertical=True, incidence=34.17)
    np.testing.assert_allclose(read_stack(outv)[0], -25.0 / math.cos(math.radians(34.17)), rtol=1e-5)

    outa = str(tmp_path / "a.tif")
    res = deformation_rate(path, outa, "annual", vertical=True, incidence=40.0)
    assert [yr for yr, _ in res["years"]] == [2019, 2020]  # 2019-01-01 .. 2020-12-21
    a = read_stack(outa)
    assert a.shape == (2, 30, 20)
    np.testing.assert_allclose(a, -25.0 / math.cos(math.radians(40.0)), rtol=1e-4)
    assert read_info(outa, require_dates=False).tags["RATE_MODE"] == "annual"


def test_deformation_rate_bad_input(write_stack, tmp_path):
    one = write_stack(np.zeros((1, 4, 4)), name="one.tif")
    with pytest.raises(InputError, match="at least two dates"):
        deformation_rate(one, str(tmp_path / "o.tif"))
    two = write_stack(np.zeros((2, 4, 4)), name="two.tif")
    with pytest.raises(InputError, match=r"between 0 and 90"):
        deformation_rate(two, str(tmp_path / "o.tif"), vertical=True, incidence=90)
    with pytest.raises(InputError, match="MODE"):
        deformation_rate(two, str(tmp_path / "o.tif"), mode="weekly")
