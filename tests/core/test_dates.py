import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deformation_forecast.core import dates as D
from deformation_forecast.core.errors import InputError


@pytest.mark.parametrize(
    "text,expected",
    [
        ("S1_cum_20170903_mm.tif", dt.date(2017, 9, 3)),
        ("2017-09-03", dt.date(2017, 9, 3)),
        ("2017-09-03T00:00:00", dt.date(2017, 9, 3)),
        ("disp_2017_09_03.tif", dt.date(2017, 9, 3)),
        ("D20170903", dt.date(2017, 9, 3)),
        ("id_120170903", None),  # inside a longer digit run
        ("20171303", None),  # month 13
        ("20170230", None),  # 30 February
        ("", None),
        ("band 1", None),
    ],
)
def test_parse_date(text, expected):
    assert D.parse_date(text) == expected


@pytest.mark.parametrize(
    "name,expected",
    [
        ("D20170903", dt.date(2017, 9, 3)),
        ("d20170903", dt.date(2017, 9, 3)),
        ("20170903", dt.date(2017, 9, 3)),
        ("d_20170903", dt.date(2017, 9, 3)),
        ("a_20170903", None),
        ("h2ph_20170903", None),
        ("pnt_lat", None),
        ("velocity", None),
    ],
)
def test_parse_field_date(name, expected):
    assert D.parse_field_date(name) == expected


@given(
    st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2099, 12, 31)),
    st.sampled_from(["D", "d_", "", "d"]),
)
def test_field_round_trip(d, prefix):
    assert D.parse_field_date(prefix + d.strftime("%Y%m%d")) == d
    assert D.parse_date(D.format_date(d)) == d
    assert D.parse_field_date(D.field_name(d)) == d


@given(
    st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2099, 12, 31)),
    st.text(alphabet="abcxyz_-. ", max_size=8),
)
def test_parse_date_in_any_name(d, junk):
    assert D.parse_date(f"{junk}{d.strftime('%Y%m%d')}{junk}.tif") == d


def test_parse_dates_names_the_culprit():
    with pytest.raises(InputError, match="#2: 'band two'"):
        D.parse_dates(["20170101", "band two"])


def test_check_increasing():
    a, b = dt.date(2017, 1, 1), dt.date(2017, 1, 13)
    D.check_increasing([a, b])
    with pytest.raises(InputError, match="Duplicate date 2017-01-01"):
        D.check_increasing([a, a])
    with pytest.raises(InputError, match="not in time order"):
        D.check_increasing([b, a])


def test_decimal_year_and_intervals():
    assert D.to_decimal_year([dt.date(2020, 1, 1)])[0] == 2020.0
    assert D.to_decimal_year([dt.date(2021, 7, 2)])[0] == pytest.approx(2021 + 182 / 365)
    reg = D.regular_dates(dt.date(2020, 1, 1), dt.date(2020, 2, 1), 12)
    assert reg == [dt.date(2020, 1, 1), dt.date(2020, 1, 13), dt.date(2020, 1, 25)]
    assert D.median_interval([dt.date(2020, 1, 1), dt.date(2020, 1, 13), dt.date(2020, 2, 6)]) == 18
