"""core.validity and core.outputs (issue 15): no nodata sentinel, masked pixel or unit mistake
reaches a statistic; a full disk never leaves a file under the final name."""

from __future__ import annotations

import contextlib
import os
import zipfile

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deformation_forecast.core import validity
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.stack import atomic_path, check_values, read_info, read_stack
from tests.conftest import make_dates
from tests.tmpfs import fill, tmpfs

TRANSFORM = Affine(20, 0, 500000, 0, -20, 4300000)


def _write(path, data, nodata, unit, mask, dtype="float32"):
    n, h, w = data.shape
    prof = dict(
        driver="GTiff", width=w, height=h, count=n, dtype=dtype, crs="EPSG:32647", transform=TRANSFORM
    )
    prof["nodata"] = nodata
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES"), rasterio.open(path, "w", **prof) as dst:
        dst.write(data.astype(dtype))
        for b, d in enumerate(make_dates(n), start=1):
            dst.set_band_description(b, d.isoformat())
            if unit:
                dst.set_band_unit(b, unit)
        if mask is not None:
            dst.write_mask(np.where(mask, 255, 0).astype("uint8"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    # within +-250 mm: no two dates differ by more than SPIKE_MM (spikes: the next test)
    data=hnp.arrays("float64", (4, 5, 6), elements=st.floats(-250, 250, allow_nan=False)),
    spoil=hnp.arrays(bool, (4, 5, 6)),
    sentinel=st.sampled_from(validity.SENTINELS[:12]),
    nodata=st.sampled_from([None, "nan", "sentinel"]),
    unit=st.sampled_from([None, "mm", "m", "cm"]),
    masked=hnp.arrays(bool, (5, 6)),
    use_mask=st.booleans(),
)
def test_no_sentinel_reaches_a_statistic(tmp_path, data, spoil, sentinel, nodata, unit, masked, use_mask):
    """Random sentinels, declared/undeclared nodata, GDAL masks and units: what the stack reader
    gives (and every statistic computed from it) equals the clean values in mm, NaN elsewhere."""
    scale = validity.unit_scale(unit)
    stored = data / scale  # what the file holds in its own unit
    stored = np.where(spoil, sentinel, stored)
    mask = ~masked if use_mask else None
    nd = {None: None, "nan": float("nan"), "sentinel": sentinel}[nodata]
    path = str(tmp_path / f"s{np.random.default_rng().integers(1 << 30)}.tif")
    _write(path, stored, nd, unit, mask)
    got = read_stack(path)
    expected = np.where(spoil, np.nan, stored.astype("float32") * np.float32(scale))
    if mask is not None:
        expected[:, masked] = np.nan
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    finite = got[np.isfinite(got)]
    if finite.size:  # the statistics a user sees
        assert np.abs(finite).max() <= 250 * 1.0001
        assert abs(float(finite.mean())) <= 250 * 1.0001
    assert read_info(path).units == "mm" if unit else True
    validity.take_warnings()


def _spiky(rng, n, h, w, size):
    """A plausible random walk (< 40 mm a date, so never SPIKE_MM in 11 dates) and spikes of `size`
    and more at interior dates, at least two clean dates apart, at no round value."""
    clean = np.cumsum(rng.uniform(-40, 40, (n, h, w)), axis=0)
    clean -= clean[0]  # displacement relative to the first date, steps still < 40 mm
    spikes = np.zeros((n, h, w), bool)
    for r in range(h):
        for c in range(w):
            last = -9
            for t in range(1, n - 1):
                if t - last >= 3 and rng.random() < 0.35:
                    spikes[t, r, c], last = True, t
    # + 40: the walk moves up to 40 mm to either neighbour
    away = rng.choice([-1.0, 1.0], spikes.shape) * (size + 40) * rng.uniform(1.0, 1.5, spikes.shape) + 0.37
    return clean, spikes, np.where(spikes, clean + away, clean)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 12),
    size=st.floats(validity.SPIKE_MM * 1.001, 6e4),  # x 1.5 + 40: below SPIKE_MAX_MM
    unit=st.sampled_from([None, "mm", "m"]),
    sentinel=st.sampled_from([None, -9999.0, 32767.0]),
    use_mask=st.booleans(),
)
def test_no_spike_reaches_a_statistic(tmp_path, seed, n, size, unit, sentinel, use_mask):
    """Random spikes (a value that jumps by more than SPIKE_MM from both neighbouring dates and
    back), with sentinels on other pixels, GDAL masks and units: the reader gives the clean values
    in mm with NaN at every spike, sentinel and masked pixel, the mean and extremes of what it gives
    stay within the clean series', and masked_count() counts each of them once."""
    rng = np.random.default_rng(seed)
    h, w = 5, 6
    clean, spikes, values = _spiky(rng, n, h, w, size)
    spoil = np.zeros_like(spikes)
    if sentinel is not None:  # on pixels without spikes, at random dates
        quiet = ~spikes.any(axis=0)
        spoil = (rng.random(spikes.shape) < 0.3) & quiet[None]
    masked = (rng.random((h, w)) < 0.2) if use_mask else np.zeros((h, w), bool)
    scale = validity.unit_scale(unit)
    stored = np.where(spoil, sentinel if sentinel is not None else 0.0, values / scale)
    path = str(tmp_path / f"k{rng.integers(1 << 30)}.tif")
    _write(path, stored, None, unit, ~masked if use_mask else None)
    validity.take_warnings()
    got = read_stack(path)
    expected = (values / scale).astype("float32") * np.float32(scale)
    expected[spikes | spoil] = np.nan
    expected[:, masked] = np.nan
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(got)
    if finite.any():  # the statistics a user sees
        lo, hi = np.nanmin(clean) - 0.01, np.nanmax(clean) + 0.01
        assert lo <= np.nanmin(got) and np.nanmax(got) <= hi
        assert lo <= float(np.nanmean(got)) <= hi
    hidden = (spikes | spoil) & ~masked[None]
    assert validity.masked_count() == int(hidden.sum() + n * masked.sum())
    warnings = validity.take_warnings()
    assert any("jump by more than" in m for m in warnings) == bool((spikes & ~masked[None]).any())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 12),
    gaps=st.floats(0.0, 0.7),
    interleave=st.sampled_from(["band", "pixel"]),
    frames_per_read=st.sampled_from([1, 2, 5]),
    sentinel=st.sampled_from([None, -9999.0]),
    use_mask=st.booleans(),
)
def test_dated_frames_equal_a_read_of_every_date(
    tmp_path, seed, n, gaps, interleave, frames_per_read, sentinel, use_mask
):
    """Cross-check of the per-date reader (evaluateforecast, the interval coverage): each frame of
    DatedFrames, read alone in any order, equals that date of a read of every date at once
    (spikes found across NaN gaps of any length, sentinels, masks), and the values it masks are
    counted as that read counts them, each pixel-date once however often it is read."""
    rng = np.random.default_rng(seed)
    h, w = 5, 6
    _, spikes, values = _spiky(rng, n, h, w, validity.SPIKE_MM * 2)
    values[(rng.random(values.shape) < gaps) & ~spikes] = np.nan  # gaps beside the spikes too
    if sentinel is not None:
        values[(rng.random(values.shape) < 0.1) & ~spikes] = sentinel
    masked = (rng.random((h, w)) < 0.2) if use_mask else None
    path = str(tmp_path / f"d{rng.integers(1 << 30)}.tif")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES"), rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=n, dtype="float32", crs="EPSG:32647",
        transform=TRANSFORM, interleave=interleave,
    ) as dst:  # fmt: skip
        dst.write(values.astype("float32"))
        dst.descriptions = tuple(d.isoformat() for d in make_dates(n))
        if masked is not None:
            dst.write_mask(np.where(masked, 0, 255).astype("uint8"))
    validity.take_warnings()
    want = read_stack(path)
    want_count = validity.masked_count()
    validity.take_warnings()
    order = list(rng.permutation(n)) + list(range(n))  # any order; each date twice
    with validity.DatedFrames(path, frames_per_read * 4 * h * w) as frames:
        got = {int(b): frames.frame(int(b)) for b in order}
    for b in range(n):
        np.testing.assert_array_equal(got[b], want[b], err_msg=f"band {b + 1}")
    assert validity.masked_count() == want_count
    hit = spikes & ~np.isnan(values) & (masked is None or ~masked[None])
    assert any("jump by more than" in m for m in validity.take_warnings()) == bool(np.isnan(want[hit]).any())


def test_a_steady_fast_subsidence_is_not_a_spike():
    """Real motion, however fast, goes one way: 400 mm a date for 10 dates is kept whole; a step
    (away, not back) too."""
    ramp = (-400.0 * np.arange(10))[:, None, None] * np.ones((10, 2, 2))
    assert not validity.spike_mask(ramp).any()
    step = np.where(np.arange(10)[:, None, None] < 5, 0.0, -3000.0) * np.ones((10, 2, 2))
    assert not validity.spike_mask(step).any()


def test_sentinel_warning_names_the_file_and_value(tmp_path):
    data = np.zeros((3, 4, 4))
    data[:, 1, 1] = -9999
    _write(str(tmp_path / "w.tif"), data, None, None, None)
    validity.take_warnings()
    read_stack(str(tmp_path / "w.tif"))
    (msg,) = validity.take_warnings()
    assert "'w.tif'" in msg and "-9999" in msg and "nodata" in msg
    assert validity.take_warnings() == []


def test_int16_stack_fill_value(tmp_path):
    data = np.arange(3 * 4 * 4).reshape(3, 4, 4).astype("int16")
    data[:, 0, :] = -32768
    _write(str(tmp_path / "i.tif"), data, None, None, None, dtype="int16")
    got = read_stack(str(tmp_path / "i.tif"))
    assert np.isnan(got[:, 0, :]).all() and np.isfinite(got[:, 1:, :]).all()
    check_values(read_info(str(tmp_path / "i.tif")))  # no longer "not a plausible displacement"


def test_undated_rasters_keep_their_unit(tmp_path):
    """A distance raster in metres is not a displacement stack: no conversion."""
    prof = dict(driver="GTiff", width=3, height=3, count=1, dtype="float32", transform=TRANSFORM)
    with rasterio.open(tmp_path / "d.tif", "w", **prof) as dst:
        dst.write(np.full((1, 3, 3), 5.0, "float32"))
        dst.set_band_unit(1, "m")
    assert read_stack(str(tmp_path / "d.tif"))[0, 0, 0] == 5.0


@pytest.mark.parametrize(
    "labels,bad",
    [
        (["20150302_20150314", "20150314_20150326"], True),
        (["ifg 20150302-20150314"], True),
        (["2015-03-02", "20150314"], False),
        (["band_1"], False),
    ],
)
def test_interferogram_labels(labels, bad):
    if bad:
        with pytest.raises(InputError, match="interferograms"):
            validity.check_not_interferograms(labels, "INPUT")
    else:
        validity.check_not_interferograms(labels, "INPUT")


@pytest.mark.parametrize("lo,hi,msg", [(0.3, 0.8, "radians"), (30, 85, "1 / cos"), (20, 46, None)])
def test_angle_range(lo, hi, msg):
    if msg:
        with pytest.raises(InputError, match=msg):
            validity.check_angle_range(lo, hi, "INCIDENCE")
    else:
        validity.check_angle_range(lo, hi, "INCIDENCE")


def test_band_limit():
    validity.check_bands_limit(65535)
    with pytest.raises(InputError, match="65535"):
        validity.check_bands_limit(65536)


@contextlib.contextmanager
def full_tmpfs(path):
    """A 128 KiB tmpfs (tests.tmpfs: without root where user namespaces allow) with ~16 KiB free:
    small files fit, larger ones do not."""
    with tmpfs(path, "128k") as mnt:
        fill(mnt, leave=16 * 1024)
        yield mnt


def test_model_like_zip_on_a_full_disk(tmp_path):
    """The model file (ml.modelfile: a zip written through atomic_path) on a full disk: a clear
    InputError, no file under the final name, no temporary file left."""
    with full_tmpfs(tmp_path / "mnt") as mnt:
        target = mnt / "m.dfmodel"
        with pytest.raises(InputError, match="No space left"):
            with atomic_path(str(target)) as tmp, zipfile.ZipFile(tmp, "w") as z:
                z.writestr("weights.bin", os.urandom(200_000))
        assert sorted(os.listdir(mnt)) == ["filler"]


def test_stack_on_a_nearly_full_disk(tmp_path):
    """Small outputs fit, a stack that does not fit fails at close with GDAL's error, cleanly."""
    from deformation_forecast.core.stack import write_stack

    with full_tmpfs(tmp_path / "mnt") as mnt:
        write_stack(
            str(mnt / "small.tif"), np.zeros((1, 4, 4), "float32"), make_dates(1), "EPSG:32647", TRANSFORM
        )
        big = np.random.default_rng(0).normal(size=(8, 64, 64)).astype("float32")
        with pytest.raises(InputError, match="No space left"):
            write_stack(str(mnt / "big.tif"), big, make_dates(8), "EPSG:32647", TRANSFORM)
        assert sorted(os.listdir(mnt)) == ["filler", "small.tif"]
        assert read_stack(str(mnt / "small.tif")).shape == (1, 4, 4)


def test_cleaning_a_block_needs_a_fraction_of_it_beside_it(monkeypatch):
    """The sentinel and spike masks of a (dates, rows, cols) block hold bool masks and bounded
    pieces beside it, never a float copy of the whole block (np.abs of the block was one: a fault
    analysis window of 790 MB peaked at 1.85 GB of arrays), with the same masks as in one go."""
    import tracemalloc

    from deformation_forecast.core import validity

    rng = np.random.default_rng(4)
    block = rng.normal(0, 5, size=(24, 400, 500)).astype("float32")  # 19 MB
    block[:, :200] += np.linspace(0, 900, 24, dtype="float32")[:, None, None]  # wide series
    block[5, 10, 10] = -9999.0
    block[7, 300, 20] = 3000.0  # a spike in a calm series
    block[9, 50, 60] += 2000.0  # a spike in a wide one
    monkeypatch.setattr(validity, "SENTINEL_CHUNK", 2**18)
    monkeypatch.setattr(validity, "SPIKE_CHUNK", 2**14)
    tracemalloc.start()
    try:
        for fn in (validity.sentinel_mask, validity.spike_mask):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            got = fn(block)
            extra = tracemalloc.get_traced_memory()[1] - base
            assert extra < 0.5 * block.nbytes, (fn.__name__, extra / block.nbytes)
            monkeypatch.setattr(validity, "SENTINEL_CHUNK", block.size)
            monkeypatch.setattr(validity, "SPIKE_CHUNK", block.size)
            np.testing.assert_array_equal(fn(block), got)  # in one go: the same mask
            monkeypatch.setattr(validity, "SENTINEL_CHUNK", 2**18)
            monkeypatch.setattr(validity, "SPIKE_CHUNK", 2**14)
    finally:
        tracemalloc.stop()
    assert validity.sentinel_mask(block).sum() == 1 and validity.sentinel_mask(block)[5, 10, 10]
    spikes = validity.spike_mask(block)  # the sentinel, not yet NaN here, is one too
    assert {tuple(int(v) for v in p) for p in np.argwhere(spikes)} == {(5, 10, 10), (7, 300, 20), (9, 50, 60)}
