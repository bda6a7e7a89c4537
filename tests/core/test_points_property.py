"""Property-based tests of the point importers: whatever dates, prefixes, delimiters and values a
CSV carries, reading it gives back exactly what was written (units converted), in date order."""

import csv
import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deformation_forecast.core.errors import InputError
from deformation_forecast.core.points import read_points_csv

dates_st = st.lists(
    st.dates(min_value=dt.date(1995, 1, 1), max_value=dt.date(2090, 12, 31)),
    min_size=1,
    max_size=8,
    unique=True,
)
value_st = st.floats(-5000, 5000, allow_nan=False, width=32) | st.just(float("nan"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dates=dates_st,
    prefix=st.sampled_from(["D", "d", "d_", ""]),
    delimiter=st.sampled_from([",", ";", "\t"]),
    coords=st.sampled_from([("x", "y"), ("lon", "lat"), ("Easting", "Northing"), ("pnt_lon", "pnt_lat")]),
    n=st.integers(1, 6),
    data=st.data(),
)
def test_csv_round_trip(tmp_path_factory, dates, prefix, delimiter, coords, n, data):
    lonlat = coords[0].lower() in ("lon", "pnt_lon")
    values = np.array(
        data.draw(
            st.lists(st.lists(value_st, min_size=len(dates), max_size=len(dates)), min_size=n, max_size=n)
        ),
        dtype="float64",
    )
    # a row whose values are all missing is skipped by design: keep at least one value per row
    values[:, 0] = np.where(np.isnan(values[:, 0]), 1.0, values[:, 0])
    xs = np.linspace(100.0, 101.0, n) if lonlat else np.linspace(500000.0, 501000.0, n)
    ys = np.linspace(30.0, 30.5, n) if lonlat else np.linspace(4300000.0, 4301000.0, n)
    path = tmp_path_factory.mktemp("csv") / "points.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow([coords[0], coords[1], *[prefix + d.strftime("%Y%m%d") for d in dates]])
        for i in range(n):
            w.writerow(
                [
                    repr(float(xs[i])),
                    repr(float(ys[i])),
                    *["" if np.isnan(v) else repr(float(v)) for v in values[i]],
                ]
            )
    s = read_points_csv(str(path), units="mm", crs=None if lonlat else "EPSG:32647")
    order = np.argsort(dates)
    assert s.dates == sorted(dates)
    assert s.count == n
    np.testing.assert_array_equal(s.x, xs)
    np.testing.assert_allclose(
        s.values, values[:, order].astype("float64"), rtol=0, atol=1e-9, equal_nan=True
    )
    m = read_points_csv(str(path), units="m", crs=None if lonlat else "EPSG:32647")
    np.testing.assert_allclose(m.values, s.values * 1000.0, rtol=1e-12, equal_nan=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    junk=st.text(alphabet="abcxyz!?# ", min_size=1, max_size=6).filter(
        lambda t: t.strip() not in ("", "nan", "NaN")
    )
)
def test_non_numeric_cell_names_field_and_row(tmp_path_factory, junk):
    path = tmp_path_factory.mktemp("csv") / "bad.csv"
    path.write_text(f"x,y,D20200101,D20200113\n500000,4300000,1.0,2.0\n500010,4300000,1.5,{junk}\n")
    with pytest.raises(InputError, match="D20200113"):
        read_points_csv(str(path), crs="EPSG:32647")
