"""The streamed algorithms of rates, los, build, products, crossorbit and decompose take the run
context (core.run.Run): progress on one scale 0..1 reaching 1, cancellation raising
core.errors.Cancelled with nothing written, messages through the run; one check of an incidence
angle (core.los.check_incidence) and one reader of a raster on another grid (core.resample.OnGrid)."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
import rasterio

from deformation_forecast.core import build, crossorbit, decompose, los, products, rates
from deformation_forecast.core.errors import Cancelled, InputError
from deformation_forecast.core.resample import OnGrid
from deformation_forecast.core.run import Run
from deformation_forecast.core.stack import read_info
from tests import h5products as hp
from tests.conftest import make_dates


class Recorder:
    """A Run's report: the fractions and messages it received."""

    def __init__(self) -> None:
        self.fractions: list[float] = []
        self.messages: list[str] = []

    def __call__(self, fraction: float | None, message: str | None) -> None:
        if fraction is not None:
            self.fractions.append(fraction)
        if message:
            self.messages.append(message)


def _stacks(write_stack):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 8, 10)).cumsum(axis=0).astype("float32")
    a = write_stack(data, name="a.tif")
    b = write_stack(data * 1.1, dates=make_dates(6, start=dt.date(2018, 1, 3)), name="b.tif")
    return a, b


def _jobs(write_stack, tmp_path):
    """name -> (call(run, out), the files it writes)."""
    a, b = _stacks(write_stack)
    ia, ib = read_info(a), read_info(b)
    singles = []
    for i, d in enumerate(make_dates(3)):
        p = write_stack(np.full((1, 8, 10), float(i)), dates=[d], name=f"s_{d:%Y%m%d}.tif")
        singles.append(build.Source(p, d))
    h5 = tmp_path / "cum.h5"
    hp.write_licsbas(h5, hp.series())
    out = str(tmp_path / "out.tif")
    up, east = str(tmp_path / "up.tif"), str(tmp_path / "east.tif")
    small = 8 * 10 * 4  # one row of float32 per window: several windows
    return {
        "rates": (lambda run: rates.deformation_rate(a, out, run=run, max_bytes=small), [out]),
        "los": (lambda run: los.convert_stack(a, out, incidence=35.0, run=run, max_bytes=small), [out]),
        "build": (lambda run: build.build_stack(singles, out, run=run, max_bytes=small), [out]),
        "resample": (lambda run: build.resample_stack_file(a, out, 5, run, max_bytes=small), [out]),
        "products": (
            lambda run: products.import_product(products.detect(str(h5)), out, run=run, max_bytes=4 * 4 * 6),
            [out],
        ),
        "crossorbit": (
            lambda run: crossorbit.cross_orbit(
                crossorbit.Side(a, ia, 34.0),
                crossorbit.Side(b, ib, 41.0),
                crossorbit.CrossOrbitOptions(max_bytes=small),
                run,
            ),
            [],
        ),
        "decompose": (
            lambda run: decompose.decompose(
                [decompose.Orbit(a, ia, 34.0, -10.0), decompose.Orbit(b, ib, 41.0, 190.0)],
                decompose.Outputs(up, east),
                run=run,
                max_bytes=small,
            ),
            [up, east],
        ),
    }


NAMES = ["rates", "los", "build", "resample", "products", "crossorbit", "decompose"]


@pytest.mark.parametrize("name", NAMES)
def test_progress_on_one_scale_reaches_one(write_stack, tmp_path, name):
    call, outs = _jobs(write_stack, tmp_path)[name]
    rec = Recorder()
    call(Run(report=rec))
    assert len(rec.fractions) >= 2, rec.fractions  # several windows (strips, rasters)
    assert all(0.0 <= f <= 1.0 for f in rec.fractions)
    assert rec.fractions == sorted(rec.fractions) and rec.fractions[-1] == pytest.approx(1.0)
    assert all(os.path.exists(p) for p in outs)


@pytest.mark.parametrize("name", NAMES)
def test_cancel_raises_cancelled_and_writes_nothing(write_stack, tmp_path, name):
    call, outs = _jobs(write_stack, tmp_path)[name]
    calls = []

    def cancelled() -> bool:  # cancel at the second check: after some work, before the end
        calls.append(1)
        return len(calls) >= 2

    with pytest.raises(Cancelled):
        call(Run(cancelled=cancelled))
    assert not [p for p in outs if os.path.exists(p)]
    assert not [f for f in os.listdir(tmp_path) if ".partial" in f]


def test_stage_maps_progress_onto_part_of_the_bar(write_stack, tmp_path):
    a, _ = _stacks(write_stack)
    rec = Recorder()
    rates.deformation_rate(a, str(tmp_path / "r.tif"), run=Run(report=rec).stage(0.5, 0.9), max_bytes=320)
    assert min(rec.fractions) >= 0.5 and rec.fractions[-1] == pytest.approx(0.9)


def test_build_stack_says_a_raster_was_warped_through_the_run(write_stack, tmp_path):
    a = write_stack(np.ones((1, 8, 10)), dates=make_dates(1), name="a_20180101.tif")
    b = write_stack(
        np.ones((1, 8, 10)), dates=[dt.date(2018, 1, 13)], name="b.tif", origin=(500020.0, 4300000.0)
    )
    rec = Recorder()
    build.build_stack(build.sources_with_dates([a, b]), str(tmp_path / "s.tif"), run=Run(report=rec))
    assert any("b.tif: grid differs from the first raster" in m for m in rec.messages)


def test_run_import_keeps_the_callbacks_of_the_worker(tmp_path):
    """The worker's importproduct still calls run_import(params, log, progress): progress 0..100."""
    h5 = tmp_path / "cum.h5"
    hp.write_licsbas(h5, hp.series())
    seen, lines = [], []
    params = {"input": str(h5), "output": str(tmp_path / "s.tif"), "reference_date": hp.DATES[2].isoformat()}
    out = products.run_import(params, lines.append, seen.append)
    assert out["OUTPUT"] == params["output"] and out["DATE_COUNT"] == len(hp.DATES)
    assert seen[-1] == pytest.approx(100.0) and max(seen) <= 100.0
    assert any(line.startswith("Re-referenced every pixel") for line in lines)


# -- one check of an incidence angle ------------------------------------------------------------------
def test_check_incidence_one_contract():
    assert crossorbit.check_incidence is los.check_incidence  # the validation tools use the same one
    assert los.check_incidence(34.17) == 34.17 and isinstance(los.check_incidence(34), float)
    arr = los.check_incidence(np.array([30.0, np.nan, 45.0]))
    assert isinstance(arr, np.ndarray) and np.isnan(arr[1]) and arr[2] == 45.0
    for bad in (0, 90, -5, 120, float("nan"), np.array([30.0, 91.0, np.nan])):
        with pytest.raises(
            InputError, match=r"^INCIDENCE_B: the incidence angle must lie strictly between 0 and 90"
        ):
            los.check_incidence(bad, "INCIDENCE_B")
    with pytest.raises(InputError, match="only NaN"):
        los.check_incidence(np.array([np.nan, np.nan]))
    for radians in (0.6, np.array([0.5, 0.7])):
        with pytest.raises(InputError, match="radians"):
            los.check_incidence(radians)


# -- one reader of a raster on another grid -----------------------------------------------------------
def test_on_grid_reads_the_same_grid_as_is_and_warps_another(write_stack, tmp_path):
    yy, xx = np.mgrid[0:8, 0:10]
    plane = (30 + xx + 0.5 * yy).astype("float32")
    target = read_info(write_stack(plane[None], name="t.tif"))
    same = write_stack(plane[None], name="same.tif")
    with OnGrid(same, target, length=False) as g:
        assert not g.resampled
        np.testing.assert_array_equal(g.read_band(), plane)
    # the same plane on a grid shifted by one pixel: bilinear is exact on a plane, NaN outside
    shifted = write_stack((plane - 1.0)[None], name="shifted.tif", origin=(500020.0, 4300000.0))
    with OnGrid(shifted, target, length=False) as g:
        assert g.resampled
        arr = g.read_band()
    np.testing.assert_allclose(arr[:, 1:], (plane - 1.0)[:, :-1], atol=1e-4)
    assert np.isnan(arr[:, 0]).all()


def test_on_grid_converts_lengths_not_angles(write_stack, tmp_path):
    data = np.full((2, 4, 5), 0.25, dtype="float32")
    path = write_stack(data, name="m.tif")  # dated bands
    with rasterio.open(path, "r+") as dst:
        dst.set_band_unit(1, "m")
        dst.set_band_unit(2, "m")
    target = read_info(write_stack(np.zeros((1, 4, 5)), name="t.tif"))
    with OnGrid(path, target) as g:
        np.testing.assert_allclose(g.read([0, 1]), 250.0)
    with OnGrid(path, target, length=False) as g:
        np.testing.assert_allclose(g.read([0, 1]), 0.25)


def test_on_grid_without_crs_on_another_grid_is_refused(write_stack, tmp_path):
    target = read_info(write_stack(np.zeros((1, 4, 5)), name="t.tif"))
    other = str(tmp_path / "nocrs.tif")
    with rasterio.open(other, "w", driver="GTiff", count=1, height=3, width=3, dtype="float32") as dst:
        dst.write(np.ones((1, 3, 3), dtype="float32"))
    with pytest.raises(InputError, match=r"^INCIDENCE_RASTER: 'nocrs.tif' is on another grid .* no CRS"):
        OnGrid(other, target, length=False, what="INCIDENCE_RASTER")
