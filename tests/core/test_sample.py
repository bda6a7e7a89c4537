"""The deterministic sample scene (core/sample.py): dates, files, truth, noise, benchmarks, vectors."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os

import numpy as np
import pytest
import rasterio

from deformation_forecast.core import sample
from deformation_forecast.core.dates import parse_field_date
from deformation_forecast.core.stack import read_info, read_stack

SIZE = 64


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> dict[str, str]:
    return sample.make_sample_scene(str(tmp_path_factory.mktemp("scene")), size=SIZE, seed=7)


@pytest.fixture(scope="module")
def meta(scene_dir) -> dict:
    with open(scene_dir["scene"], encoding="utf-8") as f:
        return json.load(f)


def _features(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["type"] == "FeatureCollection"
    assert "32647" in doc["crs"]["properties"]["name"]
    return doc["features"]


# ------------------------------------------------------------------------------------------ dates


def test_ascending_dates_are_the_papers_irregular_12_day_calendar():
    dates = sample.asc_dates()
    assert len(dates) == 156
    assert dates[0] == dt.date(2014, 10, 14) and dates[-1] == dt.date(2021, 4, 16)
    gaps = np.diff([d.toordinal() for d in dates])
    assert np.all(gaps > 0) and np.all(gaps % 12 == 0)
    assert gaps.max() > 12, "irregular dates are the normal case"
    assert gaps.max() <= 48
    early = [d for d in dates if d < dt.date(2017, 1, 1)]
    late = [d for d in dates if d >= dt.date(2018, 1, 1)]
    early_days = (early[-1] - early[0]).days
    late_days = (late[-1] - late[0]).days
    assert early_days / (len(early) - 1) > 1.15 * late_days / (len(late) - 1), "2014-2016 must be sparser"
    assert sample.asc_dates() == dates, "the calendar does not change between calls"


def test_descending_future_and_survey_dates():
    desc = sample.desc_dates()
    assert len(desc) == 71
    assert desc[0] == dt.date(2018, 3, 27) and desc[-1] <= dt.date(2020, 10, 11)
    assert all((d - desc[0]).days % 12 == 0 for d in desc)
    fut = sample.future_dates()
    assert len(fut) == 61
    assert fut[0] == dt.date(2021, 4, 28)
    assert set(np.diff([d.toordinal() for d in fut]).tolist()) == {12}
    surveys = sample.survey_dates()
    assert all(d.day == 3 for d in surveys) and len(surveys) == 35


# ------------------------------------------------------------------------------------------ files


def test_all_files_written_with_crs_and_dates(scene_dir):
    assert set(scene_dir) == set(sample.FILES)
    for path in scene_dir.values():
        assert os.path.getsize(path) > 0
    assert not [n for n in os.listdir(os.path.dirname(scene_dir["scene"])) if "partial" in n]
    expected = {
        "stack_asc": sample.asc_dates(),
        "truth_asc": sample.asc_dates(),
        "truth_future_asc": sample.future_dates(),
        "observed_future_asc": sample.future_dates(),
        "stack_desc": sample.desc_dates(),
    }
    for key, dates in expected.items():
        info = read_info(scene_dir[key])
        assert info.dates == dates
        assert info.shape == (len(dates), SIZE, SIZE)
        assert info.crs.to_epsg() == 32647
        assert info.res == (20.0, 20.0)
        assert info.nodata is not None and math.isnan(info.nodata)
    for key, (lo, hi) in {"incidence_asc": (33.0, 35.0), "incidence_desc": (40.0, 43.0)}.items():
        with rasterio.open(scene_dir[key]) as src:
            inc = src.read(1)
            assert src.crs.to_epsg() == 32647
        assert lo < inc.min() < inc.max() < hi and inc.max() - inc.min() > 0.2


def test_cli_prints_what_it_wrote(tmp_path, capsys):
    assert sample.main([str(tmp_path / "out"), "--size", "24", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for name, _ in sample.FILES.values():
        path = tmp_path / "out" / name
        assert path.exists()
        assert str(path) in out


# ------------------------------------------------------------------------------------------ truth


def test_truth_subsidence_uplift_and_future(scene_dir, meta):
    truth = read_stack(scene_dir["truth_asc"])
    assert not np.isnan(truth).any()
    assert np.all(truth[0] == 0)
    final = truth[-1]
    assert -1250 < final.min() < -950, "one area reaches about -1 m LOS"
    assert 40 < final.max() < 150, "uplift beside Longshou"
    areas = {a["key"]: a for a in meta["areas"]}
    assert areas["second_western"]["los_at_centre_end_mm"] == pytest.approx(-1000, abs=1)
    r, c = areas["second_western"]["centre_rowcol"]
    assert final[r, c] == pytest.approx(-1000, abs=60)
    # three subsidence areas with different rates, and onsets visible in the series
    rates = [areas[k]["mean_los_rate_mm_per_year"] for k in ("longshou", "second_western", "third_eastern")]
    assert len(set(rates)) == 3 and all(x < -20 for x in rates)
    r3, c3 = areas["third_eastern"]["centre_rowcol"]
    onset = dt.date.fromisoformat(areas["third_eastern"]["onset"])
    before = [i for i, d in enumerate(sample.asc_dates()) if d < onset - dt.timedelta(days=200)]
    assert abs(truth[before[-1], r3, c3]) < 5
    # subsidence keeps growing (monotone), the future continues with a slow deceleration
    series = truth[:, r, c]
    assert np.all(np.diff(series) <= 1e-3)
    future = read_stack(scene_dir["truth_future_asc"])[:, r, c]
    assert future[0] < series[-1] and future[-1] < future[0]
    rate_last = (series[-1] - series[-32]) / (sample.asc_dates()[-1] - sample.asc_dates()[-32]).days
    rate_future = (future[-1] - future[-31]) / (30 * 12)
    assert 0.6 < rate_future / rate_last < 1.0


def test_synthetic_truth_matches_the_written_truth(scene_dir):
    s = sample.synthetic_truth(SIZE)
    np.testing.assert_array_equal(s.data, read_stack(scene_dir["truth_asc"]))
    assert s.transform == read_info(scene_dir["truth_asc"]).transform
    vert = sample.synthetic_truth(SIZE, dates=[sample.ASC_END], vertical=True).data[0]
    with rasterio.open(scene_dir["incidence_asc"]) as src:
        cos_i = np.cos(np.radians(src.read(1).astype("float64")))
    np.testing.assert_allclose(vert * cos_i, s.data[-1], atol=0.01)


def test_fault_step_and_lithology(scene_dir, meta):
    steps = {(s["fault"], s["area"]): s for s in meta["fault_steps"]}
    f6 = steps[("F6", "Longshou")]
    assert f6["step_los_mm"] > 100
    # the step is in the raster: pixels one pixel either side of the fault at the foot point
    scene = sample.SampleScene(SIZE)
    final = read_stack(scene_dir["truth_asc"], bands=[155])[0]
    ((fault, pts),) = [(f, p) for f, p in scene.fault_lines() if f.name == "F6"]
    d = np.subtract(pts[1], pts[0]) / np.hypot(*np.subtract(pts[1], pts[0]))
    right = np.array([d[1], -d[0]])
    foot = np.array(f6["at_xy"])
    left_rc = scene.rowcol(*(foot - 30 * right))
    right_rc = scene.rowcol(*(foot + 30 * right))
    assert final[left_rc] - final[right_rc] < -50, "the cut side (east, factor 0.55) subsides less"
    units = {u["strength"]: u for u in meta["lithology"]}
    assert units["soft"]["factor"] > units["medium"]["factor"] > units["hard"]["factor"]
    assert units["soft"]["mean_final_los_mm"] < units["hard"]["mean_final_los_mm"]
    assert sum(u["pixels"] for u in meta["lithology"]) == SIZE * SIZE


# ------------------------------------------------------------------------------------------ noise


def test_observed_noise_and_incoherent_pixels(scene_dir, meta):
    obs = read_stack(scene_dir["stack_asc"])
    truth = read_stack(scene_dir["truth_asc"])
    nan = np.isnan(obs)
    assert (nan == nan[0]).all(), "incoherent pixels are the same on every date"
    frac = nan[0].mean()
    assert 0.01 < frac < 0.08
    assert frac == pytest.approx(meta["ascending"]["nan_fraction"], abs=1e-4)
    assert np.all(obs[0][~nan[0]] == 0)
    # NaN where the gradient is steepest
    gy, gx = np.gradient(truth[-1].astype("float64"))
    g = np.hypot(gx, gy)
    assert np.median(g[nan[0]]) > 5 * np.median(g[~nan[0]])
    res = obs[1:] - truth[1:]
    stds = np.nanstd(res, axis=(1, 2))
    assert 1.0 < np.median(stds) < 6.0
    # spatially correlated: neighbours are alike
    r = res[len(res) // 2]
    a, b = r[:, :-1].ravel(), r[:, 1:].ravel()
    ok = ~np.isnan(a) & ~np.isnan(b)
    assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.7
    desc = read_stack(scene_dir["stack_desc"])
    assert 0.01 < np.isnan(desc[0]).mean() < 0.08
    assert np.nanmin(desc[-1]) < -100


def test_noisy_future_has_the_scenes_noise_and_the_truths_dates(scene_dir):
    """observed_future_asc = the future truth + the scene's noise model: its dates are the truth's,
    its residual has the past's noise level (per-date std and its spread over dates), spatially
    correlated, the past's NaN mask, and fresh draws (not a copy of past bands' noise)."""
    fut_truth, fut_obs = (
        read_stack(scene_dir["truth_future_asc"]),
        read_stack(scene_dir["observed_future_asc"]),
    )
    assert read_info(scene_dir["observed_future_asc"]).dates == read_info(scene_dir["truth_future_asc"]).dates
    past = read_stack(scene_dir["stack_asc"])[1:] - read_stack(scene_dir["truth_asc"])[1:]
    future = fut_obs - fut_truth
    nan = np.isnan(read_stack(scene_dir["stack_asc"], bands=[0])[0])
    assert (np.isnan(fut_obs) == nan[None]).all(), "the stack's incoherent pixels, on every date"
    past_std, fut_std = np.nanstd(past, axis=(1, 2)), np.nanstd(future, axis=(1, 2))
    assert np.median(fut_std) == pytest.approx(np.median(past_std), rel=0.2)
    assert np.std(fut_std) == pytest.approx(np.std(past_std), rel=0.5)  # the per-date amplitude varies alike
    assert np.nanstd(future) == pytest.approx(np.nanstd(past), rel=0.15)
    assert abs(np.nanmean(future)) < 0.5  # zero-mean noise around the truth
    r = future[len(future) // 2]
    a, b = r[:, :-1].ravel(), r[:, 1:].ravel()
    ok = ~np.isnan(a) & ~np.isnan(b)
    assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.7  # the atmosphere, spatially correlated
    d = np.abs(future[:, None] - past[None]).reshape(len(future), len(past), -1)
    assert np.nanmin(np.nanmax(d, axis=2)) > 0.1, "no future date repeats a past date's noise"


def test_same_seed_same_pixels_other_seed_other_noise(tmp_path):
    a = sample.make_sample_scene(str(tmp_path / "a"), size=32, seed=5)
    b = sample.make_sample_scene(str(tmp_path / "b"), size=32, seed=5)
    c = sample.make_sample_scene(str(tmp_path / "c"), size=32, seed=6)
    for key in ("stack_asc", "stack_desc", "truth_asc", "truth_future_asc", "observed_future_asc"):
        assert read_stack(a[key]).tobytes() == read_stack(b[key]).tobytes(), key
    with open(a["benchmarks_csv"]) as fa, open(b["benchmarks_csv"]) as fb:
        assert fa.read() == fb.read()
    assert read_stack(a["truth_asc"]).tobytes() == read_stack(c["truth_asc"]).tobytes()
    assert read_stack(a["stack_asc"]).tobytes() != read_stack(c["stack_asc"]).tobytes()


# ------------------------------------------------------------------------------------------ vectors


def test_benchmarks_csv_and_geojson_match_the_truth(scene_dir):
    with open(scene_dir["benchmarks_csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    assert header[:3] == ["id", "x", "y"]
    surveys = [parse_field_date(h) for h in header[3:]]
    assert surveys == sample.survey_dates() and header[3].startswith("D")
    assert len(rows) >= 20
    feats = _features(scene_dir["benchmarks"])
    assert [f["properties"]["id"] for f in feats] == [r["id"] for r in rows]
    for f, r in zip(feats, rows, strict=True):
        assert f["geometry"]["type"] == "Point"
        assert f["geometry"]["coordinates"] == pytest.approx([float(r["x"]), float(r["y"])])
        assert [f["properties"][h] for h in header[3:]] == pytest.approx([float(r[h]) for h in header[3:]])

    info = read_info(scene_dir["truth_asc"])
    truth = read_stack(scene_dir["truth_asc"])
    with rasterio.open(scene_dir["incidence_asc"]) as src:
        cos_i = np.cos(np.radians(src.read(1).astype("float64")))
    t_acq = np.array([d.toordinal() for d in info.dates], dtype=float)
    t_srv = np.array([d.toordinal() for d in surveys], dtype=float)
    left, bottom, right, top = info.bounds
    residuals, moving = [], 0
    for r in rows:
        x, y = float(r["x"]), float(r["y"])
        assert left < x < right and bottom < y < top
        col, row = ~info.transform * (x, y)
        row, col = int(row), int(col)
        vert = truth[:, row, col] / cos_i[row, col]
        expected = np.interp(t_srv, t_acq, vert)
        values = np.array([float(r[h]) for h in header[3:]])
        residuals.append(values - expected)
        moving += abs(expected[-1]) > 50
    res = np.concatenate(residuals)
    assert np.abs(res).max() < 12
    assert 1.5 < res.std() < 3.5 and abs(res.mean()) < 1.0
    assert moving >= 8, "most benchmarks are in the subsidence areas"


def test_profiles_faults_lithology_layers(scene_dir):
    info = read_info(scene_dir["truth_asc"])
    left, bottom, right, top = info.bounds
    profiles = _features(scene_dir["profiles"])
    assert [f["properties"]["name"] for f in profiles] == ["I", "II", "III"]
    for f in profiles:
        assert f["geometry"]["type"] == "LineString"
        xy = np.array(f["geometry"]["coordinates"])
        assert np.all((xy[:, 0] >= left) & (xy[:, 0] <= right) & (xy[:, 1] >= bottom) & (xy[:, 1] <= top))
    faults = _features(scene_dir["faults"])
    assert {f["properties"]["name"] for f in faults} >= {"F3", "F6", "F16", "F17", "F23"}
    assert all(f["geometry"]["type"] == "LineString" for f in faults)
    units = _features(scene_dir["lithology"])
    assert len(units) == 3
    assert {f["properties"]["unit"] for f in units} == {"gneiss", "ultrabasic", "marble"}
    total = 0.0
    for f in units:
        ring = np.array(f["geometry"]["coordinates"][0])
        assert np.all(ring[0] == ring[-1])
        x, y = ring[:, 0], ring[:, 1]
        total += 0.5 * abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))
    assert total == pytest.approx((right - left) * (top - bottom), rel=1e-6), "units cover the scene"


def test_profile_one_crosses_the_three_areas(scene_dir, meta):
    (line,) = [f for f in _features(scene_dir["profiles"]) if f["properties"]["name"] == "I"]
    p0, p1 = (np.array(p) for p in line["geometry"]["coordinates"])
    d = (p1 - p0) / np.linalg.norm(p1 - p0)
    for area in meta["areas"]:
        if area["kind"] != "subsidence":
            continue
        c = np.array(area["centre_xy"]) - p0
        assert abs(c[0] * d[1] - c[1] * d[0]) < 100, area["name"]


def test_scene_reports_through_run_and_stops_on_cancel(tmp_path):
    """make_sample_scene takes a core.run.Run: stage messages, progress ending at 1; cancelled, it
    raises core.errors.Cancelled and leaves no partial stack behind."""
    from deformation_forecast.core.errors import Cancelled
    from deformation_forecast.core.run import Run

    events: list[tuple] = []
    sample.make_sample_scene(
        str(tmp_path / "a"), size=16, seed=1, run=Run(report=lambda f, m: events.append((f, m)))
    )
    messages = [m for _, m in events if m]
    assert messages[0].startswith("ascending stack and truth") and "vectors" in messages
    fractions = [f for f, _ in events if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    calls = iter(range(10_000))
    with pytest.raises(Cancelled):
        sample.make_sample_scene(
            str(tmp_path / "b"), size=16, seed=1, run=Run(cancelled=lambda: next(calls) > 20)
        )
    assert not any("stack_asc" in n for n in os.listdir(tmp_path / "b"))  # nor its ".partial" file
