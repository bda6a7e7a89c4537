"""Block-wise forecasting in bounded memory (issue 8): blending without seams, equality with the
whole-raster forecast, a worker run that never reads the whole stack, nothing left on failure.

The networks here are freshly built "trend" networks (ml/trend.py) whose zero-initialized last layer
is replaced by random weights, so that the forecast depends on each pixel's spatial context (an
untrained trend network is the per-pixel linear trend and would show no seam whatever the blending).
"""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest

pytestmark = pytest.mark.tf

TILE, OVERLAP, TS, STEPS = 16, 4, 4, 12


def smooth_scene(n: int, h: int, w: int) -> np.ndarray:
    """Two wide Gaussian bowls deepening linearly in time and a gentle tilt: a smooth field."""
    t = np.arange(n, dtype="float64")[:, None, None]
    yy, xx = np.mgrid[0:h, 0:w].astype("float64")
    g1 = np.exp(-((yy - 0.35 * h) ** 2 + (xx - 0.4 * w) ** 2) / (2 * (0.25 * h) ** 2))
    g2 = np.exp(-((yy - 0.7 * h) ** 2 + (xx - 0.75 * w) ** 2) / (2 * (0.18 * h) ** 2))
    data = (-1.5 * t * g1 - 0.8 * t * g2 + 0.02 * t * xx / w).astype("float32")
    data[:, :3, :3] = np.nan  # an incoherent corner
    return data


def dates_of(n: int) -> list[dt.date]:
    return [dt.date(2019, 1, 1) + dt.timedelta(days=12 * k) for k in range(n)]


def make_parts(reg: np.ndarray, trend_window: int = 5, kernel_scale: float = 2.0, seed: int = 0):
    """(net, gru, trend params): a trend network with a random last layer, an untrained GRU."""
    import keras

    from deformation_forecast.ml.compressor import ExtremumGRU, frame_extremes
    from deformation_forecast.ml.modelfile import TrendParams
    from deformation_forecast.ml.network import build_network

    keras.utils.set_random_seed(seed)
    fs = float(np.nanmax(np.abs(reg)))
    rs = 0.05 * fs
    net = build_network("cnn-phlstm", TS, TILE, 4, None, "trend", rs / fs)
    layer = net.get_layer("dec_out")
    k, b = layer.get_weights()
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=kernel_scale, size=k.shape).astype("float32"), b])
    fmin, fmax = frame_extremes(reg)
    gru = ExtremumGRU(time_step=4, units=4)
    d = np.diff(np.stack([fmin, fmax], 1), axis=0)
    gru.diff_mean = [float(v) for v in d.mean(0)]
    gru.diff_scale = [float(max(v, 1e-6)) for v in d.std(0)]
    gru.diff_range = [[float(d[:, i].min()), float(d[:, i].max())] for i in range(2)]
    gru.model = gru.build()
    trend = TrendParams(trend_window, rs, fs)
    return net, gru, trend


def blocks_forecast(net, gru, trend, reg, plan, steps=STEPS):
    """The block machinery (forecast.forecast_blocks) on an in-memory stack."""
    from deformation_forecast.ml.compressor import frame_extremes
    from deformation_forecast.ml.forecast import Extremes, ForecastPlan, Predictor, forecast_blocks

    fmin, fmax = frame_extremes(reg)
    pmin, pmax = gru.iterate(fmin, fmax, steps)
    keep = max(TS, trend.trend_window) if trend else TS
    tail = reg[-keep:]
    out = np.full((steps,) + reg.shape[1:], -999.0, "float32")
    hits = np.zeros(reg.shape[1:], "int32")

    def read(win):
        r, c = int(win.row_off), int(win.col_off)
        return tail[:, r : r + int(win.height), c : c + int(win.width)].copy()

    def sink(win, frames):
        r, c = int(win.row_off), int(win.col_off)
        out[:, r : r + int(win.height), c : c + int(win.width)] = frames
        hits[r : r + int(win.height), c : c + int(win.width)] += 1

    fp = ForecastPlan(Predictor(net, TS, TILE, OVERLAP, trend), plan, Extremes(fmin, fmax, pmin, pmax), steps)
    forecast_blocks(fp, read, sink)
    assert (hits == 1).all()  # every pixel written exactly once
    return out


def plan(h, w, block_size=0, halo=None):
    from deformation_forecast.ml.blocks import plan_blocks

    if not block_size:
        return plan_blocks((h, w), TILE, OVERLAP, 2**60, 1, STEPS)
    return plan_blocks((h, w), TILE, OVERLAP, 0, 1, STEPS, block_size=block_size, halo=halo)


# -- the blending itself (no network) -------------------------------------------------------------


@pytest.mark.parametrize("shape,core,halo", [((144, 144), 48, 24), ((150, 101), 48, 24), ((97, 300), 96, 36)])
def test_blend_weights_sum_to_one_and_every_pixel_is_written_once(shape, core, halo):
    """Blocks that each return an exact function of the global coordinates blend back to it."""
    from deformation_forecast.ml.blocks import BlendWriter, plan_blocks

    h, w = shape
    p = plan_blocks((h, w), TILE, OVERLAP, 0, 1, 3, block_size=core, halo=halo)
    assert p.n_blocks > 1
    yy, xx = np.mgrid[0:h, 0:w].astype("float64")
    truth = np.stack([np.sin(yy / 7.0) + xx / 50.0, yy * xx / 1e3, np.full((h, w), 5.0)]).astype("float32")
    truth[:, 10:13, 20:24] = np.nan
    out = np.full_like(truth, -999.0)
    hits = np.zeros((h, w), "int32")
    peak = [0]

    def sink(win, data):
        r, c = int(win.row_off), int(win.col_off)
        out[:, r : r + int(win.height), c : c + int(win.width)] = data
        hits[r : r + int(win.height), c : c + int(win.width)] += 1

    bw = BlendWriter(p, 3, sink)
    for i, j, win in p.blocks():
        r, c = int(win.row_off), int(win.col_off)
        bw.add(i, j, truth[:, r : r + int(win.height), c : c + int(win.width)])
        peak[0] = max(peak[0], bw.pending_bytes())
    bw.finish()
    assert (hits == 1).all()
    np.testing.assert_allclose(out, truth, rtol=2e-6, atol=2e-6)
    assert np.isnan(out[:, 10:13, 20:24]).all()
    # what is pending at once: the transition band under a block row and the one right of a block
    h2 = 2 * p.halo
    assert peak[0] <= 3 * 4 * (h2 * w + (core + h2) * h2)
    # weights: smooth (C1) ramps that sum to one along each axis
    for ax in (p.rows, p.cols):
        total = np.zeros(ax.size)
        for i in range(ax.n):
            lo, hi = ax.support(i)
            total[lo:hi] += ax.weight(i)
        np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_block_regions_sit_on_the_tile_grid_of_the_whole_raster():
    from deformation_forecast.ml.dataset import tile_starts

    p = plan(150, 150, 48)
    glob = set(tile_starts(150, TILE, OVERLAP))
    for i in range(p.rows.n):
        lo, hi = p.rows.region(i)
        assert {lo + s for s in tile_starts(hi - lo, TILE, OVERLAP)} <= glob


# -- seams on a smooth field -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smooth():
    reg = smooth_scene(40, 144, 144)
    net, gru, trend = make_parts(reg)
    whole = blocks_forecast(net, gru, trend, reg, plan(144, 144))
    blended = blocks_forecast(net, gru, trend, reg, plan(144, 144, 48))
    hard = blocks_forecast(net, gru, trend, reg, plan(144, 144, 48, halo=0))
    # the same network with its last layer at zero: the per-pixel linear trend alone
    layer = net.get_layer("dec_out")
    weights = layer.get_weights()
    layer.set_weights([np.zeros_like(w) for w in weights])
    del net._df_infer  # the traced inference holds the old weights as constants
    trend_only = blocks_forecast(net, gru, trend, reg, plan(144, 144))
    layer.set_weights(weights)
    del net._df_infer
    return reg, whole, blended, hard, trend_only


def test_blocks_have_no_seam_on_a_smooth_field(smooth):
    """3 x 3 blocks (cores 48, halo 24) vs one block.

    Bound: the per-pixel trend is identical in both, so they can only differ by what the network
    adds to it (R = max |whole - trend only|, here ~0.2 mm of 77 mm), and only where a block's
    outer edge (zero padding, missing neighbour tiles) is seen with a nonzero weight: in the outer
    part of its halo, where the smoothstep weight is small. Blocks sit on the whole raster's tile
    grid, so away from region edges the tiles are the same ones. We require 2 % of R (measured
    ~0.4 %); without the halo (hard cuts) the difference is ~2 R, so the bound discriminates.
    """
    reg, whole, blended, hard, trend_only = smooth
    contribution = float(np.nanmax(np.abs(whole - trend_only)))
    assert contribution > 0.05  # the network really depends on the context
    err = float(np.nanmax(np.abs(blended - whole)))
    err_hard = float(np.nanmax(np.abs(hard - whole)))
    assert err <= 0.02 * contribution, (err, contribution)
    assert err_hard > 0.5 * contribution, (err_hard, contribution)
    np.testing.assert_array_equal(np.isnan(blended), np.isnan(whole))
    assert np.isnan(blended[:, :3, :3]).all()

    # no visible seam: the curvature (second difference) across the block boundaries (rows and
    # columns 48 and 96) is that of the whole-raster forecast; hard cuts make kinks
    def curvature_at_bounds(f):
        cx = np.abs(np.diff(f, 2, axis=-1))[..., [46, 47, 94, 95]]
        cy = np.abs(np.diff(f, 2, axis=-2))[..., [46, 47, 94, 95], :]
        return max(np.nanmax(cx), np.nanmax(cy))

    ref = curvature_at_bounds(whole)
    assert curvature_at_bounds(blended) <= 1.02 * ref + 1e-4
    assert curvature_at_bounds(hard) > 1.5 * ref
    # and the gradient of the difference across a boundary is tiny next to the field's gradient
    grad = np.nanmedian(np.abs(np.diff(whole[-1], axis=1)))
    jump = np.nanmax(np.abs(np.diff(blended[-1] - whole[-1], axis=1))[:, [47, 95]])
    assert jump < 1e-3 * grad


def test_forecast_stack_is_the_single_block_forecast(smooth):
    """forecast_stack (whole stack in memory) = the block machinery with one block."""
    from deformation_forecast.ml.forecast import Predictor, forecast_stack

    reg, whole, *_ = smooth
    net, gru, trend = make_parts(reg)
    frames, _, _ = forecast_stack(Predictor(net, TS, TILE, OVERLAP, trend), gru, reg, STEPS)
    np.testing.assert_allclose(frames, whole, rtol=0, atol=1e-5)


# -- the worker command ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker_scene(tmp_path_factory):
    from affine import Affine

    from deformation_forecast.core.stack import read_info, write_stack
    from deformation_forecast.ml.modelfile import ModelMeta, grid_of, save_model

    folder = tmp_path_factory.mktemp("blocks")
    n, h, w = 60, 200, 200
    data = smooth_scene(n, h, w)
    data[7, 50:60, 50:60] = np.nan  # a gap in time, filled by the resampling
    dates = dates_of(n)
    path = str(folder / "stack.tif")
    write_stack(path, data, dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    info = read_info(path)
    net, gru, trend = make_parts(data, trend_window=20)
    meta = ModelMeta(
        architecture="cnn-phlstm",
        residual="trend",
        trend=trend,
        time_step=TS,
        interval_days=12,
        tile=TILE,
        overlap=OVERLAP,
        width=4,
        grid=grid_of(info),
        units="mm",
        compressor=gru.params(),
    )
    model = str(folder / "m.dfmodel")
    save_model(model, net, gru.model, meta)
    return folder, path, model, data, dates


def _run(folder, path, model, tag, **extra):
    from deformation_forecast.ml.forecast import run_forecast

    params = {
        "input": path,
        "model": model,
        "steps": 6,
        "device": "cpu",
        "output": str(folder / f"fc_{tag}.tif"),
        "output_rate": str(folder / f"rate_{tag}.tif"),
        **extra,
    }
    return params, run_forecast(params)


def test_worker_one_block_equals_the_in_memory_forecast(worker_scene):
    from deformation_forecast.core.stack import read_info, read_stack
    from deformation_forecast.ml.compressor import ExtremumGRU
    from deformation_forecast.ml.dataset import regularize
    from deformation_forecast.ml.forecast import Predictor, annual_rates, forecast_stack
    from deformation_forecast.ml.modelfile import load_model

    folder, path, model, data, dates = worker_scene
    params, res = _run(folder, path, model, "big", memory_budget_mb=4096)
    assert res["blocks"] == 1 and res["kept_in_memory"]
    net, gru_model, meta = load_model(model)
    reg, grid, _ = regularize(read_stack(path), dates, 12)
    gru = ExtremumGRU.from_params(meta.compressor, gru_model)
    frames, _, _ = forecast_stack(Predictor.of_model(net, meta), gru, reg, 6)
    out = read_stack(params["output"])
    np.testing.assert_allclose(out, frames, rtol=0, atol=1e-5)
    info = read_info(params["output"])
    assert info.dates == [grid[-1] + dt.timedelta(days=12 * (k + 1)) for k in range(6)]
    assert info.units == "mm" and info.crs.to_epsg() == 32647
    assert tuple(info.transform)[:6] == (20, 0, 500000, 0, -20, 4300000)
    assert res["min_forecast"] == pytest.approx(float(np.nanmin(frames[-1])))
    rates, labels = annual_rates(reg[-1], grid[-1], frames, info.dates)
    np.testing.assert_allclose(read_stack(params["output_rate"]), rates, rtol=0, atol=1e-4)
    assert read_info(params["output_rate"]).units == "mm/yr"


def test_worker_with_a_tiny_budget_streams_and_blends(worker_scene, monkeypatch):
    """A budget below what TensorFlow needs (64 MB) with the floor for pixels lowered to 3 MB: the
    stack is read in windows (never whole, each pixel once), the kept dates go to a temporary file,
    several blocks; the result is the one-block forecast up to the blending error."""
    import deformation_forecast.core.stack as stack_mod
    import deformation_forecast.ml.forecast as fc
    from deformation_forecast.core.stack import read_info, read_stack

    folder, path, model, data, dates = worker_scene
    real_read = stack_mod.StackReader.read
    reads = []

    def spy(self, window=None, bands=None):
        if os.path.abspath(self.path) == os.path.abspath(path):
            reads.append((window, bands))
        return real_read(self, window, bands)

    with monkeypatch.context() as m:
        m.setattr(stack_mod.StackReader, "read", spy)
        m.setattr(fc, "MIN_DATA_MB", 3)
        warned = []
        m.setattr(fc.protocol, "warning", warned.append)
        params, res = _run(folder, path, model, "tiny", memory_budget_mb=64)
    assert any("The memory budget of 64 MB is less than the forecast needs" in w for w in warned)
    assert res["blocks"] >= 4 and not res["kept_in_memory"]
    assert len(reads) >= 3 and all(b is None for _, b in reads)  # all bands, by windows
    areas = [int(w.height) * int(w.width) for w, _ in reads]
    assert max(areas) < 200 * 200 / 2 and sum(areas) == 200 * 200  # each pixel read once
    assert not [f for f in os.listdir(folder) if f.startswith(".")]  # temporary files gone
    _, _ = _run(folder, path, model, "big2", memory_budget_mb=4096)
    small = read_stack(params["output"])
    big = read_stack(str(folder / "fc_big2.tif"))
    np.testing.assert_array_equal(np.isnan(small), np.isnan(big))
    assert np.nanmax(np.abs(small - big)) < 5e-3  # the blending error (see the seam test)
    np.testing.assert_allclose(
        read_stack(params["output_rate"]), read_stack(str(folder / "rate_big2.tif")), rtol=0, atol=0.05
    )
    assert read_info(params["output"]).dates == read_info(str(folder / "fc_big2.tif")).dates


def test_tail_store_on_disk_round_trip(tmp_path):
    from rasterio.windows import Window

    from deformation_forecast.ml.blocks import TailStore

    rng = np.random.default_rng(1)
    full = rng.normal(size=(7, 300, 280)).astype("float32")
    full[:, 5:9, 7:11] = np.nan
    for in_memory in (False, True):
        with TailStore(7, 300, 280, in_memory, str(tmp_path)) as tail:
            for r0 in range(0, 300, 64):
                win = Window(0, r0, 280, min(64, 300 - r0))
                tail.write(win, full[:, r0 : r0 + int(win.height)])
            win = Window(100, 190, 150, 77)
            np.testing.assert_array_equal(tail.read(win), full[:, 190:267, 100:250])
            np.testing.assert_array_equal(tail.read_last(Window(0, 0, 20, 20)), full[-1, :20, :20])
            if not in_memory:
                assert os.path.isfile(tail.path) and os.path.dirname(tail.path).startswith(str(tmp_path))
        assert os.listdir(tmp_path) == []


def test_blocks_sized_from_the_budget():
    """2,000 x 2,000, tile 64, 24 steps: 1.5 GB of pixels gives a few large blocks, 400 MB more,
    smaller ones, each within its share; a raster that fits is one block."""
    from deformation_forecast.ml.blocks import bytes_per_pixel, pending_bytes, plan_blocks, tile_unit

    per = bytes_per_pixel(40, 24, 5)
    unit, halo = tile_unit(64, 16)
    assert (unit, halo) == (192, 96)
    sizes = {}
    for budget_mb in (1536, 400):
        p = plan_blocks((2000, 2000), 64, 16, budget_mb * 2**20, per, 24)
        h, w = p.largest_region()
        assert h * w * per + pending_bytes(p, 24) <= budget_mb * 2**20
        assert (p.rows.bounds[1] - p.rows.bounds[0]) % 48 == 0  # the tile stride
        sizes[budget_mb] = p.n_blocks
    assert 1 < sizes[1536] < sizes[400]
    assert plan_blocks((300, 300), 64, 16, 1536 * 2**20, per, 24).n_blocks == 1


def test_first_pass_windows_hold_whole_blocks_only_within_the_budget():
    """The first pass's windows hold at least one block of the file (all bands), so that no
    block is decoded twice, but never more than the budget's share: a file of one strip per
    band, whose block of all bands is the whole stack (2 GB here), is cut (its forecast pass
    peaked at 23 GB of RSS within a 2 GB budget before)."""
    import dataclasses

    from deformation_forecast.core.stack import StackInfo
    from deformation_forecast.ml.forecast import PASS_COPIES, PASS_MAX_BYTES, window_bytes

    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=12 * i) for i in range(60)]
    info = StackInfo("x.tif", dates, None, None, 3000, 3000, block=(128, 128))
    budget = 1536 * 2**20
    assert window_bytes(budget, info) == PASS_MAX_BYTES  # 3.9 MB blocks: the usual windows
    big = dataclasses.replace(info, block=(512, 512))  # 63 MB of all bands: still whole
    assert window_bytes(budget, big) == max(PASS_MAX_BYTES, 512 * 512 * 60 * 4)
    assert budget / PASS_COPIES == 192 * 2**20  # the share: 1024 px blocks (240 MB) are cut
    assert window_bytes(budget, dataclasses.replace(info, block=(896, 896))) == 896 * 896 * 60 * 4
    assert window_bytes(budget, dataclasses.replace(info, block=(1024, 1024))) == PASS_MAX_BYTES
    strip = dataclasses.replace(info, block=(3000, 3000))
    assert window_bytes(budget, strip) == PASS_MAX_BYTES <= budget / PASS_COPIES
    assert window_bytes(64 * 2**20, strip) == 8 * 2**20  # a small budget's share


def test_worker_failure_leaves_nothing(worker_scene, monkeypatch):
    import deformation_forecast.ml.forecast as fc

    folder, path, model, *_ = worker_scene
    calls = []
    real = fc.forecast_window

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("block 3 failed")
        return real(*a, **k)

    monkeypatch.setattr(fc, "forecast_window", failing)
    before = set(os.listdir(folder))
    with pytest.raises(RuntimeError, match="block 3 failed"):
        _run(folder, path, model, "fail", block_size=48)
    assert set(os.listdir(folder)) == before
