"""core.decompose: geometry conventions, known U/E fields recovered within the propagated noise,
date handling (common dates, no extrapolation, gaps), refusals (singular geometry, no overlap)."""

import datetime as dt

import numpy as np
import pytest

from deformation_forecast.core import decompose as dc
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.stack import read_info, read_stack
from tests.conftest import make_dates

ASC = (34.0, -10.0)
DESC = (41.0, 190.0)
N_DATES = 12
START_A, START_D = dt.date(2018, 1, 1), dt.date(2018, 1, 7)  # descending 6 days later


def bowl_fields(h=24, w=30, depth=150.0, horizontal=0.4):
    """Yearly rates (mm/yr) of a subsidence bowl whose flanks move toward its centre: E = -k dU/dx."""
    yy, xx = np.mgrid[0:h, 0:w].astype("float64")
    s = 6.0
    g = np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (2 * s**2))
    up = -depth * g
    east = -horizontal * depth * g * (xx - w / 2) / s  # toward the centre, |E| up to ~0.24 depth
    return up, east


def series(rate, dates):
    """Cumulative displacement linear in time (exactly interpolable)."""
    t = np.array([(d - dates[0]).days / 365.25 for d in dates])
    return rate[None] * t[:, None, None], t


def make_orbits(write_stack, up_rate, east_rate, noise=0.0, seed=0, geom_d=DESC, dates_d=None, res_d=20.0):
    rng = np.random.default_rng(seed)
    dates_a = make_dates(N_DATES, start=START_A)
    dates_d = dates_d or make_dates(N_DATES, start=START_D)
    paths = []
    for name, dates, (th, hd), res in (("asc.tif", dates_a, ASC, 20.0), ("desc.tif", dates_d, geom_d, res_d)):
        t0 = np.array([(d - START_A).days / 365.25 for d in dates])[:, None, None]
        los = dc.los_from(up_rate[None] * t0, east_rate[None] * t0, 0.0, th, hd)
        los = los + rng.normal(0, noise, los.shape)
        if res != 20.0:
            k = int(res // 20)
            n, h, w = los.shape
            los = los.reshape(n, h // k, k, w // k, k).mean(axis=(2, 4))
        paths.append(write_stack(los.astype("float32"), dates=dates, name=name, res=res))
    return [
        dc.Orbit(paths[0], read_info(paths[0]), ASC[0], ASC[1]),
        dc.Orbit(paths[1], read_info(paths[1]), geom_d[0], geom_d[1]),
    ]


def truth_on(rate, dates):
    t = np.array([(d - START_A).days / 365.25 for d in dates])[:, None, None]
    v = rate[None] * t
    return v - v[:1]


def run(tmp_path, orbits, **kw):
    out = dc.Outputs(str(tmp_path / "up.tif"), str(tmp_path / "east.tif"), kw.pop("rates", None))
    res = dc.decompose(orbits, out, **kw)
    return res, read_stack(out.vertical), read_stack(out.east)


def test_geometry_conventions():
    # straight up is seen as cos(theta) toward the satellite
    assert dc.los_from(1.0, 0.0, 0.0, 30.0, -10.0) == pytest.approx(np.cos(np.radians(30)))
    # a right-looking ascending satellite looks east: eastward motion moves away from it (negative),
    # a descending one looks west: eastward motion comes toward it (positive)
    assert dc.los_from(0.0, 1.0, 0.0, 34.0, -10.0) < -0.5
    assert dc.los_from(0.0, 1.0, 0.0, 41.0, 190.0) > 0.6
    # north is nearly invisible to near-polar orbits
    assert abs(dc.los_from(0.0, 0.0, 1.0, 34.0, -10.0)) < 0.1
    # exact solution of two geometries, and a well-conditioned Sentinel-1 pair
    u, e = np.array([-12.0, 3.0]), np.array([4.0, -7.0])
    los = [dc.los_from(u, e, 0.0, *g) for g in (ASC, DESC)]
    uu, ee = dc.solve_up_east(los, [ASC, DESC])
    np.testing.assert_allclose(uu, u, atol=1e-9)
    np.testing.assert_allclose(ee, e, atol=1e-9)
    assert 1.0 < float(dc.condition_number([ASC, DESC])) < 2.0
    # least squares with a third geometry still recovers the exact field
    g3 = (44.0, -12.0)
    uu, ee = dc.solve_up_east([*los, dc.los_from(u, e, 0.0, *g3)], [ASC, DESC, g3])
    np.testing.assert_allclose(uu, u, atol=1e-9)


def test_standard_errors_match_monte_carlo():
    rng = np.random.default_rng(1)
    sig = [2.0, 3.0]
    los = [rng.normal(0, s, 200_000) for s in sig]  # no motion: the solution is pure noise
    u, e = dc.solve_up_east(los, [ASC, DESC])
    su, se = dc.standard_errors([ASC, DESC], sig)
    assert np.std(u) == pytest.approx(float(su), rel=0.02)
    assert np.std(e) == pytest.approx(float(se), rel=0.02)


def test_known_bowl_recovered_within_propagated_noise(tmp_path, write_stack):
    up_rate, east_rate = bowl_fields()
    sigma = 2.0
    orbits = make_orbits(write_stack, up_rate, east_rate, noise=sigma, seed=3)
    res, up, east = run(tmp_path, orbits, rates=str(tmp_path / "rates.tif"))
    # common dates = the ascending dates inside the descending span: all but the first
    assert res.dates == make_dates(N_DATES, start=START_A)[1:]
    assert res.gaps[0].max() == 0 and res.gaps[1].max() == 6 and res.max_gap == 6
    u_true, e_true = truth_on(up_rate, res.dates), truth_on(east_rate, res.dates)
    # LOS noise after re-referencing: ascending d_i - d_0 has 2 sigma^2; descending, interpolated
    # halfway between two acquisitions, (sigma^2 / 2) twice
    su, se = dc.standard_errors([ASC, DESC], [sigma * np.sqrt(2), sigma])
    err_u, err_e = (up[1:] - u_true[1:]).ravel(), (east[1:] - e_true[1:]).ravel()
    assert np.std(err_u) == pytest.approx(float(su), rel=0.1)
    assert np.std(err_e) == pytest.approx(float(se), rel=0.1)
    assert abs(np.mean(err_u)) < 0.1 and abs(np.mean(err_e)) < 0.1
    np.testing.assert_array_equal(up[0], 0.0)  # zero at the first common date
    # the signal is far above the noise: the bowl and its inward flanks are there
    assert up[-1].min() < -40 and east[-1, 12, 22] < -5 and east[-1, 12, 8] > 5
    rates = read_stack(str(tmp_path / "rates.tif"))
    assert rates.shape[0] == 4
    # velocities within a few of their own standard errors of the truth
    z = (rates[0] - up_rate) / rates[1]
    assert np.nanmean(np.abs(z) < 4) > 0.99
    assert res.condition == pytest.approx(float(dc.condition_number([ASC, DESC])))
    assert res.se_factor_up == pytest.approx(float(dc.standard_errors([ASC, DESC], [1, 1])[0]))


def test_pure_vertical_gives_no_east(tmp_path, write_stack):
    up_rate, _ = bowl_fields()
    orbits = make_orbits(write_stack, up_rate, np.zeros_like(up_rate))
    res, up, east = run(tmp_path, orbits, max_bytes=30 * 4 * 5)  # many small windows
    assert np.abs(east).max() < 1e-3
    np.testing.assert_allclose(up, truth_on(up_rate, res.dates), atol=1e-3)
    # dLOS / cos(theta) is right here too (no horizontal motion)
    info = read_info(orbits[0].path)
    asc = read_stack(orbits[0].path)
    k = info.dates.index(res.dates[-1])
    v = (asc[k] - asc[info.dates.index(res.dates[0])]) / np.cos(np.radians(ASC[0]))
    np.testing.assert_allclose(up[-1], v, atol=1e-3)


def test_union_dates_other_grid_and_rasters(tmp_path, write_stack):
    import rasterio

    up_rate, east_rate = bowl_fields()
    orbits = make_orbits(write_stack, up_rate, east_rate, res_d=40.0)
    res, up, east = run(tmp_path, orbits, dates_mode="union", interval_days=10)
    assert res.dates[0] == START_D and all(
        (b - a).days == 10 for a, b in zip(res.dates, res.dates[1:], strict=False)
    )
    assert res.resampled == [False, True]
    assert 0 < res.max_gap <= 6
    # incidence and heading rasters equal to the constants give the same result
    with rasterio.open(orbits[0].path) as src:
        prof = dict(src.profile, count=1)
    for name, value in (("inc.tif", ASC[0]), ("head.tif", ASC[1])):
        with rasterio.open(tmp_path / name, "w", **prof) as dst:
            dst.write(np.full((1, prof["height"], prof["width"]), value, "float32"))
    orbits[0].incidence, orbits[0].heading = str(tmp_path / "inc.tif"), str(tmp_path / "head.tif")
    res2, up2, east2 = run(tmp_path, orbits, dates_mode="union", interval_days=10)
    np.testing.assert_allclose(up2, up, atol=1e-4, equal_nan=True)
    np.testing.assert_allclose(east2, east, atol=1e-4, equal_nan=True)


def test_no_extrapolation(tmp_path, write_stack):
    up_rate, east_rate = bowl_fields(h=4, w=4)
    orbits = make_orbits(write_stack, up_rate, east_rate)
    data = read_stack(orbits[1].path)
    data[-1, 0, 0] = np.nan  # the descending series of pixel (0, 0) stops one acquisition early
    path = write_stack(data, dates=orbits[1].info.dates, name="desc_gap.tif")
    orbits[1] = dc.Orbit(path, read_info(path), *DESC)
    res, up, _ = run(tmp_path, orbits)
    assert np.isnan(up[-1, 0, 0]) and np.isfinite(up[-2, 0, 0]) and np.isfinite(up[-1, 1, 1])


def test_near_identical_geometries_refused(tmp_path, write_stack):
    up_rate, east_rate = bowl_fields(h=4, w=4)
    orbits = make_orbits(write_stack, up_rate, east_rate, geom_d=(34.5, -11.0))
    with pytest.raises(InputError, match=r"condition number of the LOS system is \d"):
        run(tmp_path, orbits)
    assert not (tmp_path / "up.tif").exists() and not (tmp_path / "east.tif").exists()


def test_dates_that_do_not_overlap_refused(tmp_path, write_stack):
    up_rate, east_rate = bowl_fields(h=4, w=4)
    later = make_dates(N_DATES, start=dt.date(2021, 1, 1))
    orbits = make_orbits(write_stack, up_rate, east_rate, dates_d=later)
    with pytest.raises(InputError, match="do not overlap in time"):
        run(tmp_path, orbits)
    assert not (tmp_path / "up.tif").exists()
    with pytest.raises(InputError, match="at least two are needed"):
        dc.common_dates([make_dates(3), make_dates(3, start=dt.date(2018, 1, 20))], "first")


@pytest.mark.slow
def test_peak_memory_within_a_64_mb_budget(tmp_path, monkeypatch):
    """Two 37 MB stacks (and the rates) decomposed with a 64 MB budget: the traced peak stays under it."""
    import tracemalloc

    from affine import Affine

    from deformation_forecast.core import budget
    from deformation_forecast.core.stack import StackWriter

    n, h, w = 40, 480, 480
    yy, xx = np.mgrid[:h, :w]
    bowl = np.exp(-(((yy - h / 2) / 90.0) ** 2 + ((xx - w / 2) / 120.0) ** 2)).astype("float32")
    orbits = []
    for name, start, geom in (("a.tif", START_A, ASC), ("d.tif", START_D, DESC)):
        path = str(tmp_path / name)
        dates = make_dates(n, start=start)
        with StackWriter(path, dates, "EPSG:32647", Affine(20, 0, 5e5, 0, -20, 4.3e6), w, h) as wr:
            for i in range(n):
                wr.write_band(i, -0.5 * i * bowl)
        orbits.append(dc.Orbit(path, read_info(path), *geom))
    monkeypatch.setenv(budget.ENV, "64")
    limit = budget.budget_bytes()
    assert 2 * n * h * w * 4 > limit
    out = dc.Outputs(str(tmp_path / "u.tif"), str(tmp_path / "e.tif"), str(tmp_path / "r.tif"))
    tracemalloc.start()
    try:
        dc.decompose(orbits, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"decompose peak {peak / 2**20:.1f} MB for a {limit / 2**20:.0f} MB budget")
    assert peak < limit
    assert np.isfinite(read_stack(out.vertical, bands=[n - 2])).all()
