"""Training from disk (issue 8): the streamed preparation equals the in-memory resampling, the tf.data
items equal the in-memory construction of the same (label, row, col), the sampled statistics equal
the whole-raster ones, and a training run never reads the stack whole."""

import numpy as np
import pytest

from deformation_forecast.core.run import Run
from tests.ml.scene import irregular_scene

pytestmark = pytest.mark.tf


def _write(folder, data, dates, name="stack.tif"):
    from affine import Affine

    from deformation_forecast.core.stack import write_stack

    path = str(folder / name)
    write_stack(path, data, dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    return path


def _in_memory(data, dates, interval):
    """The old in-RAM path: the whole regular stack, its mask and per-date extremes."""
    from deformation_forecast.core.resample import resample_regular
    from deformation_forecast.ml.compressor import frame_extremes

    reg, grid = resample_regular(data, dates, interval, anchor="end")
    mask = np.isfinite(reg).all(axis=0)
    fmin, fmax = frame_extremes(reg)
    return reg, grid, mask, fmin, fmax


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """300 x 260 pixels, 40 irregular dates; prepared with a 64 MB budget (many windows)."""
    from deformation_forecast.core.stack import StackReader, read_info
    from deformation_forecast.ml import source

    folder = tmp_path_factory.mktemp("stream")
    data, dates = irregular_scene(40, 300, 260, seed=1)
    path = _write(folder, data, dates)
    info = read_info(path)
    seen = []
    real = StackReader.read

    def spy(self, window=None, bands=None):
        assert window is not None, "the input was read whole"
        seen.append((int(window.height), int(window.width)))
        return real(self, window, bands)

    StackReader.read = spy  # type: ignore[method-assign]
    try:
        prep = source.prepare(info, 12, str(folder / "work"), Run(budget_mb=64))
    finally:
        StackReader.read = real  # type: ignore[method-assign]
    return folder, path, info, data, dates, prep, seen


def test_streamed_preparation_equals_in_memory(big):
    import rasterio

    from deformation_forecast.ml.source import BLOCK, prepare

    folder, path, info, data, dates, prep, seen = big
    assert Run(budget_mb=64).worker_pixel_bytes() == 4 * 2**20  # the floor: TensorFlow alone is over 64 MB
    assert prep.windows == len(seen) >= 6, seen
    assert max(h * w for h, w in seen) < info.height * info.width
    reg, grid, mask, fmin, fmax = _in_memory(data, dates, 12)
    assert prep.grid == grid and prep.count == len(grid)
    with rasterio.open(prep.path) as src:
        assert src.profile["tiled"] and src.profile["blockxsize"] == BLOCK and src.compression is None
        work = src.read()
    np.testing.assert_array_equal(np.isfinite(work), np.broadcast_to(mask, work.shape))
    np.testing.assert_allclose(work[:, mask], reg[:, mask], rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(prep.fmin, fmin)
    np.testing.assert_array_equal(prep.fmax, fmax)
    # finite pixels per 64 x 64 block
    pad = np.pad(mask, ((0, -mask.shape[0] % BLOCK), (0, -mask.shape[1] % BLOCK)))
    blocks = pad.reshape(pad.shape[0] // BLOCK, BLOCK, pad.shape[1] // BLOCK, BLOCK).sum(axis=(1, 3))
    np.testing.assert_array_equal(prep.block_valid, blocks)
    # the same input and interval: reused, not rewritten; another interval: rewritten
    again = prepare(info, 12, str(folder / "work"), Run(budget_mb=64))
    assert again.windows == 0 and again.path == prep.path
    np.testing.assert_array_equal(again.block_valid, prep.block_valid)
    other = prepare(info, 24, str(folder / "work"), Run(budget_mb=64))
    assert other.windows >= 1 and other.count < prep.count
    back = prepare(info, 12, str(folder / "work"), Run(budget_mb=64))  # rewritten (the fixture's file again)
    assert back.windows == prep.windows
    np.testing.assert_array_equal(back.fmin, prep.fmin)


def _reference_items(reg, mask, fmin, fmax, items, ts, tile, trend):
    """The old WindowTiles construction on whole in-RAM arrays (padded up to a tile)."""
    from deformation_forecast.ml.compressor import compress
    from deformation_forecast.ml.dataset import pad_frames
    from deformation_forecast.ml.trend import label_inputs

    comp = pad_frames(np.nan_to_num(compress(reg, fmin, fmax), nan=0.0).astype("float32"), tile)
    reg0 = pad_frames(np.where(mask, reg, 0.0).astype("float32"), tile)
    m = pad_frames(mask.astype("float32"), tile)
    out = []
    for t, r, c in items:
        rows, cols = slice(r, r + tile), slice(c, c + tile)
        if trend:
            x, line = label_inputs(reg0, comp, t, ts, trend, rows, cols)
            y = np.stack([reg0[t, rows, cols] / trend.frame_scale, m[rows, cols]], -1)
            out.append(({"frames": x, "trend": line[..., None]}, y))
        else:
            x = comp[t - ts : t, rows, cols][..., None]
            out.append((x, np.stack([comp[t, rows, cols], m[rows, cols]], -1)))
    return out


@pytest.mark.parametrize("size,with_trend", [((70, 50), True), ((70, 50), False), ((20, 24), True)])
def test_tf_data_items_equal_in_memory_construction(tmp_path, size, with_trend):
    from deformation_forecast.core.stack import read_info
    from deformation_forecast.ml.dataset import Sampling, TileSpec, tile_dataset, tile_grid, tile_reader
    from deformation_forecast.ml.modelfile import TrendParams
    from deformation_forecast.ml.source import WorkStack, prepare

    data, dates = irregular_scene(36, *size, seed=2)
    info = read_info(_write(tmp_path, data, dates))
    prep = prepare(info, 12, str(tmp_path / "work"), Run(budget_mb=64))
    reg, grid, mask, fmin, fmax = _in_memory(data, dates, 12)
    ts, tile, overlap = 5, 32, 8
    trend = TrendParams(10, 0.5, 80.0) if with_trend else None
    labels = np.array([5, 9, 17, len(grid) - 1])
    rows, cols = tile_grid(info.height, info.width, tile, overlap)
    items = [(int(t), int(r), int(c)) for t in labels for r in rows for c in cols]
    with WorkStack(prep) as work:
        read = tile_reader(work, prep.fmin, prep.fmax, ts, tile, trend)
        spec = TileSpec(rows, cols, ts, tile, trend=bool(trend))
        ds, steps = tile_dataset(read, labels, spec, 3, Sampling(shuffle=False, seed=4))
        batches = list(ds.as_numpy_iterator())
        assert steps == len(batches) == -(-len(items) // 3)
        assert work.max_crop_pixels <= (max(ts, 10) + 1) * tile * tile  # one tile, only its dates
        assert work.handles <= 4  # pooled: not one per item (tf.data's threads are short-lived)
    ref = _reference_items(reg, mask, fmin, fmax, items, ts, tile, trend)
    k = 0
    for xb, yb in batches:
        for i in range(len(yb)):
            rx, ry = ref[k]
            np.testing.assert_allclose(yb[i], ry, rtol=1e-6, atol=1e-6)
            if trend:
                np.testing.assert_allclose(xb["frames"][i], rx["frames"], rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(xb["trend"][i], rx["trend"], rtol=1e-6, atol=1e-6)
            else:
                np.testing.assert_allclose(xb[i], rx, rtol=1e-6, atol=1e-6)
            k += 1
    assert k == len(items)


def test_training_epochs_are_seeded_permutations(tmp_path):
    from deformation_forecast.core.stack import read_info
    from deformation_forecast.ml.dataset import Sampling, TileSpec, tile_dataset, tile_grid, tile_reader
    from deformation_forecast.ml.source import WorkStack, prepare

    data, dates = irregular_scene(30, 70, 50, seed=3)
    info = read_info(_write(tmp_path, data, dates))
    prep = prepare(info, 12, str(tmp_path / "work"))
    ts, tile = 5, 32
    labels = np.arange(ts, 20)
    rows, cols = tile_grid(info.height, info.width, tile, 8)
    n_items = len(labels) * len(rows) * len(cols)

    def keys(seed, epochs, samples):
        with WorkStack(prep) as work:
            read = tile_reader(work, prep.fmin, prep.fmax, ts, tile)
            spec = TileSpec(rows, cols, ts, tile, trend=False)
            sampling = Sampling(shuffle=True, seed=seed, samples=samples, epochs=epochs)
            ds, steps = tile_dataset(read, labels, spec, 4, sampling)
            out = [tuple(np.round(y[..., 0].sum(axis=(1, 2)), 4)) for _, y in ds.as_numpy_iterator()]
        return steps, [v for batch in out for v in batch]

    steps, a = keys(1, (0, 2), 10)
    assert steps == 3 and len(a) == 20  # 10 per epoch, the last batch of each epoch short
    e0, e1 = a[:10], a[10:]
    assert len(set(e0)) == 10 and len(set(e1)) == 10 and e0 != e1
    assert keys(1, (0, 2), 10)[1] == a  # the same seed: the same order
    assert keys(2, (0, 2), 10)[1] != a
    assert keys(1, (1, 2), 10)[1] == e1  # RESUME at epoch 1 sees epoch 1's samples
    _, whole = keys(1, (0, 1), 0)
    assert len(whole) == n_items == len(set(whole))


def test_sampled_trend_statistics_equal_whole_raster(big):
    import dataclasses

    from deformation_forecast.ml.dataset import split_windows
    from deformation_forecast.ml.source import WorkStack, sample_blocks
    from deformation_forecast.ml.train import TrainingData, train_job, trend_settings
    from deformation_forecast.ml.trend import choose_window, scales

    folder, path, info, data, dates, prep, _ = big
    reg, grid, mask, fmin, fmax = _in_memory(data, dates, 12)
    split = split_windows(len(grid), 5, 8, 0.2)
    job = train_job({"input": path, "output_model": str(folder / "m.dfmodel"), "trend_window": 0})
    with WorkStack(prep) as work:
        data_ = TrainingData(info, prep, work, split)
        got, _ = trend_settings(job, data_, 3, Run(budget_mb=64))  # ~1 block per chunk
        assert work.max_crop_pixels <= split.test[0] * 64 * 64
    first_test, first_val = int(split.test[0]), int(split.val[0])
    tw, errs = choose_window(np.nan_to_num(reg[:first_test]), mask, first_val, first_test)
    fs, rs = scales(np.where(mask, reg, 0.0), mask, np.concatenate([split.train, split.val]), 5, tw)
    assert got.trend_window == tw
    assert got.frame_scale == pytest.approx(fs, rel=1e-6)
    assert got.residual_scale == pytest.approx(rs, rel=1e-5)
    # a bounded sample: about stats_pixels finite pixels, the same blocks for the same seed
    few = sample_blocks(prep, 3 * 4096, seed=3)
    assert 2 <= len(few) <= 4 and few == sample_blocks(prep, 3 * 4096, seed=3)
    with WorkStack(prep) as work:
        few_job = dataclasses.replace(job, stats_pixels=3 * 4096)
        sampled, _ = trend_settings(few_job, TrainingData(info, prep, work, split), 3, Run(budget_mb=64))
    assert sampled.frame_scale == got.frame_scale  # exact, from the extremes
    assert sampled.residual_scale == pytest.approx(rs, rel=0.5)


def test_training_reads_the_stack_from_disk_in_tiles(tmp_path, monkeypatch):
    """A whole run under a 64 MB budget: the input is only read by windows, the network's examples
    are one tile each, the test set is scored on several blocks whose pooled persistence scores are
    those of the whole raster, and the predictions npz still holds the whole test set."""
    from deformation_forecast.core import stack as core_stack
    from deformation_forecast.core.metrics import stack_metrics
    from deformation_forecast.ml import source
    from deformation_forecast.ml.train import run_train

    data, dates = irregular_scene(56, 96, 80, seed=4)
    path = _write(tmp_path, data, dates)

    def whole_read(*a, **k):
        raise AssertionError("the stack was read with core.stack.read_stack outside the streamed preparation")

    monkeypatch.setattr(core_stack, "read_stack", whole_read)
    windows = []
    real = core_stack.StackReader.read

    def windowed(self, window=None, bands=None):
        assert window is not None
        windows.append(int(window.height) * int(window.width))
        return real(self, window, bands)

    monkeypatch.setattr(core_stack.StackReader, "read", windowed)
    crops = []
    real_read = source.WorkStack.read

    def spy(self, b0, b1, row, col, height, width):
        crops.append((b1 - b0, height, width))
        return real_read(self, b0, b1, row, col, height, width)

    monkeypatch.setattr(source.WorkStack, "read", spy)
    out = tmp_path / "m.dfmodel"
    res = run_train(
        {
            "input": path,
            "output_model": str(out),
            "predictions": str(tmp_path / "p.npz"),
            "memory_budget_mb": 64,
            "epochs": 1,
            "gru_epochs": 2,
            "test_count": 8,
            "tile_size": 32,
            "samples_per_epoch": 8,
            "width": 4,
            "device": "cpu",
            "seed": 5,
        }
    )
    assert out.exists() and not (tmp_path / "m.dfmodel.checkpoint").exists()
    assert len(windows) >= 2 and max(windows) < 96 * 80
    tiles = [c for c in crops if c[1:] == (32, 32)]
    assert len(tiles) >= 8 and all(b <= 41 for b, _, _ in tiles)  # one tile, its dates only
    blocks = [c for c in crops if c[1:] != (32, 32) and c[0] > 41]  # test-set scoring blocks
    assert len(blocks) >= 2 and all(h * w < 96 * 80 for _, h, w in blocks)
    reg, grid, mask, fmin, fmax = _in_memory(data, dates, 12)
    z = np.load(tmp_path / "p.npz")
    test = np.arange(len(grid) - 8, len(grid))
    np.testing.assert_allclose(z["targets"], reg[test], rtol=1e-6, atol=1e-5)
    assert np.isfinite(z["one_step"][:, mask]).all() and np.isnan(z["one_step"][:, ~mask]).all()
    assert np.isfinite(z["iterative"][:, mask]).all()
    # pooled over the blocks = the whole raster at once (SSIM aside: a mean of the blocks')
    whole = stack_metrics(reg[test - 1], reg[test])[1]
    for key in ("MAE", "MSE", "RMSE", "PSNR", "R2", "N"):
        assert res["persistence_metrics"][key] == pytest.approx(whole[key], rel=1e-6), key
    whole_net = stack_metrics(z["one_step"], z["targets"])[1]
    assert res["test_metrics"]["MAE"] == pytest.approx(whole_net["MAE"], rel=1e-6)


def test_work_file_refused_up_front_when_the_disk_is_too_small(tmp_path, monkeypatch):
    """The uncompressed work file (dates x rows x cols x 4 bytes) is checked against the free
    space of its folder before a byte is written; the message names the need and the fix."""
    import collections
    import shutil

    from deformation_forecast.core.errors import InputError
    from deformation_forecast.core.stack import read_info
    from deformation_forecast.ml.source import prepare

    data, dates = irregular_scene(36, 40, 30, seed=2)
    info = read_info(_write(tmp_path, data, dates))
    usage = collections.namedtuple("usage", "total used free")
    real = shutil.disk_usage
    need = 34 * 40 * 30 * 4 + 64 * 2**20  # ~34 regular dates every 12 days over the 36 irregular

    def fake(path, free=need - 2**20):
        return usage(real(path).total, 0, free)

    monkeypatch.setattr(shutil, "disk_usage", fake)
    with pytest.raises(InputError, match=r"Not enough free disk space.*work file.*OUTPUT_MODEL"):
        prepare(info, 12, str(tmp_path / "work" / "deeper"), Run(budget_mb=64))
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("*.tif"))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1, 0, need + 2**20))
    prep = prepare(info, 12, str(tmp_path / "work" / "deeper"), Run(budget_mb=64))
    assert prep.count * prep.height * prep.width * 4 + 64 * 2**20 <= need + 2**20
