import datetime as dt

import numpy as np
import pytest

from deformation_forecast.core.errors import InputError
from deformation_forecast.core.resample import (
    fill_gaps,
    interpolate_time,
    regular_grid,
    resample_regular,
)


def _dates(days):
    return [dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in days]


def test_regular_grid_ends_on_last_date():
    g = regular_grid(_dates([0, 5, 13, 30]), 12)
    assert g[-1] == dt.date(2020, 1, 31)
    assert [(b - a).days for a, b in zip(g, g[1:], strict=False)] == [12, 12]
    assert g[0] >= dt.date(2020, 1, 1)
    assert regular_grid(_dates([0, 30]), 12, anchor="start")[0] == dt.date(2020, 1, 1)


def test_linear_in_time_is_exact_for_a_linear_series():
    days = np.array([0, 7, 12, 31, 36, 60, 71])
    rate = np.linspace(-2, 1, 12).reshape(3, 4)
    data = days[:, None, None] * rate[None] + 3.0
    out, grid = resample_regular(data, _dates(days), 6)
    t = np.array([(d - dt.date(2020, 1, 1)).days for d in grid])
    np.testing.assert_allclose(out, t[:, None, None] * rate[None] + 3.0, rtol=1e-5, atol=1e-4)


def test_gaps_filled_and_empty_pixels_stay_nan():
    days = [0, 10, 20, 30, 40]
    data = np.tile(np.array([0, 1, 2, 3, 4], "float32")[:, None, None], (1, 2, 2))
    data[2, 0, 0] = np.nan  # a gap
    data[0, 0, 1] = np.nan  # a missing start: end value held
    data[:, 1, 1] = np.nan  # never valid
    out = fill_gaps(data, _dates(days))
    assert out[2, 0, 0] == pytest.approx(2.0)
    assert out[0, 0, 1] == pytest.approx(1.0)
    assert np.isnan(out[:, 1, 1]).all()
    np.testing.assert_allclose(out[:, 1, 0], data[:, 1, 0])


def test_single_valid_sample_is_held():
    data = np.array([np.nan, 5.0, np.nan], "float32")[:, None]
    out = interpolate_time(data, _dates([0, 10, 20]), _dates([0, 5, 20]))
    np.testing.assert_allclose(out[:, 0], [5, 5, 5])


def test_too_short_is_refused():
    with pytest.raises(InputError, match="too short"):
        resample_regular(np.zeros((2, 1, 1)), _dates([0, 5]), 12)
