"""Issue 22: the input check and the streamed algorithms on the layouts users bring (pixel- or
band-interleaved, large tiles, strips), not only on the plugin's own.

Reads are counted by opening the file through a Python opener (rasterio >= 1.4) that records the
byte range of every read GDAL makes; each range is mapped onto the file's tiles (their offsets and
sizes from GDAL's TIFF metadata domain).
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import rasterio

from deformation_forecast.core import evaluation as ev
from deformation_forecast.core import stack as stack_mod
from deformation_forecast.core.errors import InputError
from deformation_forecast.core.rates import deformation_rate
from deformation_forecast.core.stack import check_values, read_info, read_stack, sample_blocks
from tests.conftest import make_dates

N, H, W = 12, 96, 160  # 12 dates; with 64 px tiles: 2 x 3 tiles of 64 x 64 x 12 x 4 = 192 KiB each


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(N, dtype="float32")[:, None, None]
    rate = rng.normal(0, 5, size=(1, H, W)).astype("float32")
    data = t * rate + rng.normal(0, 1, size=(N, H, W)).astype("float32")
    data[:, 10:20, 30:50] = np.nan
    return data


def _rewrite(src_path: str, dst_path: str, **layout) -> str:
    """The same stack (values, dates, grid) in another GeoTIFF layout."""
    with rasterio.open(src_path) as src:
        prof = src.profile
        for k in ("blockxsize", "blockysize", "tiled", "compress", "interleave", "predictor"):
            prof.pop(k, None)
        prof.update(layout)
        with rasterio.open(dst_path, "w", **prof) as dst:
            dst.write(src.read())
            dst.descriptions = src.descriptions
            for b in range(1, src.count + 1):
                dst.update_tags(b, **src.tags(b))
    return dst_path


LAYOUTS = {
    "pixel_tiles64": dict(interleave="pixel", tiled=True, blockxsize=64, blockysize=64),
    "band_tiles64": dict(interleave="band", tiled=True, blockxsize=64, blockysize=64),
    "pixel_strips": dict(interleave="pixel", tiled=False, blockysize=1),
    "band_strip_per_band": dict(interleave="band", tiled=False, blockysize=H, compress="deflate"),
}


class _Counter:
    """Records (offset, size) of every read made through the files it opens."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, int]] = []

    def __call__(self, path, mode="rb"):
        counter = self

        class F(io.FileIO):
            def read(self, size=-1):
                off = self.tell()
                out = super().read(size)
                counter.reads.append((off, len(out)))
                return out

            def readinto(self, b):
                off = self.tell()
                n = super().readinto(b)
                counter.reads.append((off, n or 0))
                return n

        return io.BufferedReader(F(path, "rb"), buffer_size=1) if "b" in mode else F(path, "rb")


def _tile_ranges(path: str) -> list[tuple[int, int]]:
    with rasterio.open(path) as src:
        bh, bw = src.block_shapes[0]
        out = []
        for y in range(-(-src.height // bh)):
            for x in range(-(-src.width // bw)):
                off = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1)
                size = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1)
                out.append((int(off), int(size)))
        return out


def _reads_per_tile(path: str, monkeypatch, fn) -> list[int]:
    """How many times each tile was decoded while `fn()` ran with a block cache smaller than a
    tile: reads that start at the tile's offset (BLOCK_OFFSET). Reads that only overlap a tile are
    not decodes: GDAL 3.10 fetches the tag arrays after the last tile with page-aligned reads that
    start inside it, and reads the first bytes of the file (the header) at every open."""
    tiles = _tile_ranges(path)
    counter = _Counter()
    real_open = rasterio.open

    def counting_open(fp, *args, **kwargs):
        if str(fp) == str(path):
            kwargs["opener"] = counter
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(stack_mod.rasterio, "open", counting_open)
    with rasterio.Env(GDAL_CACHEMAX=100_000):  # bytes: about half a tile
        fn()
    monkeypatch.setattr(stack_mod.rasterio, "open", real_open)
    return [sum(1 for o, n in counter.reads if n and o == t0) for t0, _ in tiles]


def test_input_check_reads_each_tile_of_a_pixel_interleaved_stack_once(write_stack, tmp_path, monkeypatch):
    base = write_stack(_data(), make_dates(N))
    path = _rewrite(base, str(tmp_path / "pixel_tiles.tif"), **LAYOUTS["pixel_tiles64"])
    info = read_info(path)
    assert info.block == (64, 64)
    counts = _reads_per_tile(path, monkeypatch, lambda: check_values(info))
    assert len(counts) == 6
    assert max(counts) <= 1, counts
    assert sum(counts) == 6  # a small stack is checked whole: every tile, once


def test_input_check_samples_a_bounded_deterministic_set_of_whole_blocks(write_stack):
    info = read_info(write_stack(_data(), make_dates(N)))
    import dataclasses

    assert info.interleave == "band"
    big = dataclasses.replace(info, width=8000, height=8000, block=(512, 512), interleave="pixel")
    wins = sample_blocks(big, max_blocks=32, max_bytes=64 * 2**20)
    # 512 x 512 x 12 bands x 4 bytes = 12 MiB a block: 5 fit in 64 MiB
    assert len(wins) == 5
    assert wins == sample_blocks(big, max_blocks=32, max_bytes=64 * 2**20)
    # band-interleaved, each window reads 12 blocks, one per band: 2 windows are 24 of the 32 reads
    banded = sample_blocks(dataclasses.replace(big, interleave="band"), max_blocks=32, max_bytes=64 * 2**20)
    assert len(banded) == 2 and set(banded) <= set(wins)
    # one-row strips of a band-interleaved file (GDAL's default): bounded by the reads, not the bytes
    rows = dataclasses.replace(info, width=3000, height=3000, block=(1, 3000))
    assert len(sample_blocks(rows, max_blocks=1024, max_bytes=64 * 2**20)) == 1024 // 12
    assert len(sample_blocks(dataclasses.replace(rows, interleave="pixel"), 1024, 64 * 2**20)) == 466
    assert all(w.row_off % 512 == 0 and w.col_off % 512 == 0 and w.width == 512 == w.height for w in wins)
    assert len({(w.row_off, w.col_off) for w in wins}) == 5
    # one strip holding the whole band: cut to the rows that fit
    strip = dataclasses.replace(info, width=8000, height=8000, block=(8000, 8000))
    (w,) = sample_blocks(strip, max_bytes=64 * 2**20)
    assert w.width == 8000 and w.height * 8000 * 12 * 4 <= 64 * 2**20


@pytest.mark.parametrize(
    "case,match",
    [("inf", "infinite values"), ("huge", "not a plausible displacement"), ("allnan", "no valid pixel")],
)
def test_input_check_verdicts_are_the_same_in_every_layout(write_stack, tmp_path, case, match):
    data = _data()
    if case == "inf":
        data[-1, 70, 150] = np.inf
    elif case == "huge":
        data[3, 90, 2] = 3.0e7
    else:
        data[-1] = np.nan
    base = write_stack(data, make_dates(N))
    check_data = _data()
    good = write_stack(check_data, make_dates(N), name="good.tif")
    for name, layout in LAYOUTS.items():
        path = _rewrite(base, str(tmp_path / f"{case}_{name}.tif"), **layout)
        with pytest.raises(InputError, match=match):
            check_values(read_info(path))
        check_values(read_info(_rewrite(good, str(tmp_path / f"good_{name}.tif"), **layout)))


def test_the_last_band_valid_in_one_block_only_passes(write_stack, tmp_path, monkeypatch):
    """A stack valid in a corner that a sample of blocks may miss is not refused as all-NaN."""
    data = np.full((N, H, W), np.nan, dtype="float32")
    data[:, 90, 155] = 1.0
    path = _rewrite(write_stack(data, make_dates(N)), str(tmp_path / "corner.tif"), **LAYOUTS["band_tiles64"])
    info = read_info(path)
    monkeypatch.setattr(stack_mod, "CHECK_BLOCKS", 1)
    assert (sample_blocks(info, max_blocks=1)[0].row_off, sample_blocks(info, max_blocks=1)[0].col_off) != (
        64,
        128,
    )
    check_values(info)


def test_rates_identical_across_layouts(write_stack, tmp_path):
    base = write_stack(_data(), make_dates(N))
    ref = None
    for name, layout in LAYOUTS.items():
        path = _rewrite(base, str(tmp_path / f"{name}.tif"), **layout)
        np.testing.assert_array_equal(read_stack(path), read_stack(base))
        out = str(tmp_path / f"rate_{name}.tif")
        deformation_rate(path, out, max_bytes=64 * 1024)  # many small windows
        got = read_stack(out)
        if ref is None:
            ref = got
        np.testing.assert_array_equal(got, ref)


def test_frames_of_a_pixel_interleaved_stack_are_read_in_groups(write_stack, tmp_path, monkeypatch):
    from deformation_forecast.core.evaluation import evaluate_files
    from deformation_forecast.core.validity import DatedFrames

    base = write_stack(_data(), make_dates(N))
    band = _rewrite(base, str(tmp_path / "band.tif"), **LAYOUTS["band_tiles64"])
    # compressed: every read of a tile is a decode (an uncompressed one is read with direct I/O)
    pixel = _rewrite(base, str(tmp_path / "pixel.tif"), **LAYOUTS["pixel_tiles64"], compress="deflate")
    frame = H * W * 4
    for path, chunk in ((band, 1), (pixel, 5)):  # frames read one at a time, or 5 at a time
        with DatedFrames(path, 5 * frame) as frames:
            assert frames.chunk == chunk
    pairs = [(i, i) for i in range(2, N)]
    ref = evaluate_files(band, base, pairs)
    got = evaluate_files(pixel, pixel, pairs)
    assert got.rows == ref.rows and got.total == ref.total
    # the whole evaluation (two passes over 10 frames of each of the two files) decodes each tile
    # of the pixel-interleaved file at most twice: once per file, not once per frame; the frames
    # fit in memory, so the scoring pass takes the range pass's frames instead of reading again
    counts = _reads_per_tile(pixel, monkeypatch, lambda: evaluate_files(pixel, pixel, pairs))
    assert max(counts) <= 2, counts
    # frames that do not fit are read again, once per pass and file, with the same figures
    monkeypatch.setattr(ev._FramePairs, "_fit_in_memory", lambda self: False)
    again = _reads_per_tile(pixel, monkeypatch, lambda: evaluate_files(pixel, pixel, pairs))
    assert 2 < max(again) <= 4, again
    reread = evaluate_files(pixel, pixel, pairs)
    assert reread.rows == got.rows and reread.total == got.total and reread.data_range == got.data_range


def test_the_scoring_pass_keeps_frames_only_within_the_budget(write_stack):
    from deformation_forecast.core.run import Run

    path = write_stack(_data(), make_dates(N))
    pairs = [(i, i) for i in range(N)]  # 2 x 12 frames of 96 x 160 float32: 1.4 MiB
    need = 2 * N * H * W * 4
    fits = ev._FramePairs(path, path, pairs, Run(), 2)
    assert fits._fit_in_memory()
    assert Run(budget_mb=1).working_bytes(2) >= need  # the smallest budget holds these
    big = write_stack(np.zeros((2, 2000, 2000), "float32"), make_dates(2), name="big.tif")
    tiny = ev._FramePairs(big, big, [(0, 0), (1, 1)], Run(budget_mb=1), 2)  # 64 MB of frames
    assert not tiny._fit_in_memory()
    assert ev._FramePairs(big, big, [(0, 0), (1, 1)], Run(budget_mb=2048), 2)._fit_in_memory()
    frames = ev._FramePairs(path, path, pairs, Run(), 2)
    first = list(frames.frames())
    assert frames.kept is not None and len(frames.kept) == N
    second = list(frames.frames())
    assert frames.kept is None  # released as handed out
    assert all(a[:2] == b[:2] and a[2] is b[2] and a[3] is b[3] for a, b in zip(first, second, strict=True))


def test_a_slow_layout_is_named_once_with_the_fix(write_stack, tmp_path, monkeypatch, caplog):
    from deformation_forecast.core.stack import layout_advice

    base = write_stack(_data(), make_dates(N))
    strip = _rewrite(base, str(tmp_path / "strip.tif"), **LAYOUTS["band_strip_per_band"])
    tiles = _rewrite(base, str(tmp_path / "tiles.tif"), **LAYOUTS["band_tiles64"])
    monkeypatch.setattr(stack_mod, "SLOW_BLOCK_BYTES", 32 * 1024)  # a 96 x 160 strip is 60 KiB
    assert layout_advice(base) is None  # the plugin's own layout
    assert layout_advice(tiles) is None
    advice = layout_advice(strip)
    assert "strip (96 x 160 pixels) decodes to" in advice
    assert "gdal_translate" in advice and "-co INTERLEAVE=BAND" in advice and "-co TILED=YES" in advice
    with caplog.at_level("WARNING", logger="deformation_forecast"):
        check_values(read_info(strip), "INPUT")
        check_values(read_info(tiles), "INPUT")
    assert [r.getMessage() for r in caplog.records] == [f"INPUT: {advice}"]


def test_windows_that_cut_blocks_larger_than_the_cache_are_named(write_stack, tmp_path, caplog):
    from deformation_forecast.core.stack import iter_windows

    base = write_stack(_data(), make_dates(N))
    pixel = _rewrite(base, str(tmp_path / "pixel.tif"), **LAYOUTS["pixel_tiles64"])
    info = read_info(pixel)
    with caplog.at_level("WARNING", logger="deformation_forecast"):
        # windows of 64 KiB cut the 192 KiB tiles; the cache of a 1 GB budget holds them: quiet
        wins = iter_windows(info, max_bytes=64 * 1024, mb=1024)
        assert not caplog.records
        assert all(w.height < 64 for w in wins)
        iter_windows(info, max_bytes=4 * 2**20, mb=1024)  # whole tiles: quiet
        assert not caplog.records
    from deformation_forecast.core import budget

    orig = budget.gdal_cache_bytes
    try:
        budget.gdal_cache_bytes = lambda mb=None: 100_000 if mb == 64 else orig(mb)
        with caplog.at_level("WARNING", logger="deformation_forecast"):
            iter_windows(info, max_bytes=64 * 1024, mb=64)
    finally:
        budget.gdal_cache_bytes = orig
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "'pixel.tif': its blocks (64 x 64 pixels, 0 MB decoded) do not fit" in msg
    assert "raise the memory budget to at least" in msg and "gdal_translate -co TILED=YES" in msg


def test_profiles_identical_across_layouts(write_stack, tmp_path):
    """Profiles read with GDAL's direct I/O from uncompressed files equal those from the plugin's."""
    from deformation_forecast.core.profiles import extract_profiles

    base = write_stack(_data(), make_dates(N))
    t = read_info(base).transform
    lines = [
        ("a", [np.array([t * (3.5, 5.2), t * (150.1, 90.3)])]),
        ("b", [np.array([t * (2, 80), t * (158, 7)])]),
    ]
    ref = extract_profiles(base, lines)
    for name, layout in LAYOUTS.items():
        got = extract_profiles(_rewrite(base, str(tmp_path / f"{name}.tif"), **layout), lines)
        for r, g in zip(ref, got, strict=True):
            np.testing.assert_array_equal(g.values, r.values)
            assert np.isfinite(g.values).sum() > 100


def _vrt_of_singles(base: str, folder, tile: int, shift: int = 0) -> str:
    """A VRT (gdalbuildvrt -separate) of single-date GeoTIFFs tiled `tile` px, the first shifted
    by `shift` pixels to the east when given (then its sources no longer lie on the VRT's grid)."""
    from osgeo import gdal

    with rasterio.open(base) as src:
        labels, prof, data = list(src.descriptions), src.profile, src.read()
    singles = []
    for b in range(len(labels)):
        p = dict(prof, count=1, tiled=True, blockxsize=tile, blockysize=tile, compress="deflate")
        if shift and b == 0:
            p["transform"] = prof["transform"] * rasterio.Affine.translation(shift, 0)
        one = str(folder / f"d_{b}.tif")
        with rasterio.open(one, "w", **p) as dst:
            dst.write(data[b], 1)
        singles.append(one)
    vrt = str(folder / "stack.vrt")
    ds = gdal.BuildVRT(vrt, singles, separate=True)
    for b, lab in enumerate(labels, start=1):
        ds.GetRasterBand(b).SetDescription(lab)
    ds = None
    return vrt


def test_a_vrt_of_single_date_files_is_read_by_its_sources_blocks(write_stack, tmp_path):
    # a VRT's own blocks are 128 px; its sources' tiles are 32 px here (64 px below): windows
    # and the input check's sample must follow the tiles GDAL decodes, not the VRT's blocks
    base = write_stack(_data(), make_dates(N))
    (tmp_path / "a").mkdir()
    vrt = _vrt_of_singles(base, tmp_path / "a", 32)
    with rasterio.open(vrt) as src:
        own = src.block_shapes[0]
    assert own[1] == 128  # the VRT's own blocks (at most its 96 rows high)
    info = read_info(vrt)
    assert info.block == (32, 32)
    np.testing.assert_array_equal(read_stack(vrt), read_stack(base))
    assert all(w.width <= 32 and w.height <= 32 for w in sample_blocks(info, max_bytes=32 * 32 * 4 * N))
    # a source off the VRT's grid: the VRT's own blocks (no claim about the sources)
    (tmp_path / "b").mkdir()
    shifted = _vrt_of_singles(base, tmp_path / "b", 64, shift=3)
    assert read_info(shifted).block == own


def test_reads_of_a_pass_while_a_stack_is_written_match_across_layouts(write_stack, tmp_path):
    """The reader of a streamed pass (one open dataset, direct I/O for an uncompressed
    pixel-interleaved file) returns the values of a plain read, window by window, while a stack
    is being written through a block cache smaller than one window."""
    from deformation_forecast.core.budget import direct_io_options
    from deformation_forecast.core.stack import StackWriter, iter_windows, read_windows

    data = _data(3)
    data[4, 50:60, 100:110] = -9999.0  # nodata
    base = _rewrite(
        write_stack(data, make_dates(N)), str(tmp_path / "base.tif"), nodata=-9999.0, interleave="band"
    )
    pixel = _rewrite(base, str(tmp_path / "pixel.tif"), **LAYOUTS["pixel_tiles64"])
    packed = _rewrite(
        base, str(tmp_path / "pixel_deflate.tif"), **LAYOUTS["pixel_tiles64"], compress="deflate"
    )
    expected = read_stack(base)
    assert np.isnan(expected[4, 50:60, 100:110]).all()
    for path, direct in ((pixel, True), (packed, False), (base, False)):
        with rasterio.open(path) as src:
            assert direct_io_options(src) == ({"GTIFF_DIRECT_IO": "YES"} if direct else {})
        info = read_info(path)
        out = str(tmp_path / "out.tif")
        with rasterio.Env(GDAL_CACHEMAX=64 * 1024):
            wins = iter_windows(info, max_bytes=N * 4 * 32 * 160)
            assert len(wins) > 2
            with StackWriter(out, info.dates, info.crs, info.transform, W, H) as w:
                for win, block in read_windows(path, wins):
                    r0, c0 = int(win.row_off), int(win.col_off)
                    want = expected[:, r0 : r0 + int(win.height), c0 : c0 + int(win.width)]
                    np.testing.assert_array_equal(block, want)
                    # the writer writes its windows out only while a compressed pixel-interleaved
                    # input is being read (StackWriter._flush)
                    assert stack_mod._PACKED_READERS[0] == (1 if path == packed else 0)
                    w.write(block * 2, window=win)
        assert stack_mod._PACKED_READERS[0] == 0
        np.testing.assert_array_equal(read_stack(out), expected * 2)


def test_a_streamed_pass_opens_its_input_once(write_stack, tmp_path, monkeypatch):
    """losvertical's pass reads all its windows through one open dataset, not one per window."""
    from deformation_forecast.core.los import convert_stack

    base = write_stack(_data(), make_dates(N))
    tiles16 = dict(interleave="pixel", tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    pixel = _rewrite(base, str(tmp_path / "pixel.tif"), **tiles16)
    max_bytes = N * 4 * 16 * 16  # windows of one 16 x 16 tile: 60 of them
    assert len(stack_mod.iter_windows(read_info(pixel), max_bytes=max_bytes)) == 60
    opened: list[str] = []
    real_open = rasterio.open

    def counting(path, *a, **kw):
        if str(path) == pixel and not a and kw.get("mode", "r") == "r":
            opened.append(str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(rasterio, "open", counting)
    out = str(tmp_path / "los.tif")
    convert_stack(pixel, out, incidence=30.0, max_bytes=max_bytes)
    assert len(opened) <= 6, opened  # the grid, the labels, the input check, the pass: not 60 more
    np.testing.assert_allclose(read_stack(out), read_stack(base) / np.cos(np.deg2rad(30.0)), rtol=1e-6)


def test_the_writer_writes_whole_tiles_out_once(tmp_path, monkeypatch):
    """StackWriter writes a window's blocks out of GDAL's block cache when the window holds only
    whole tiles (so a cache full of unwritten output cannot slow the next read), and never
    when it cuts a tile (that tile would be compressed twice and stored twice)."""
    from rasterio.windows import Window

    from deformation_forecast.core.stack import StackWriter

    data = _data(7).repeat(3, axis=1).repeat(2, axis=2)  # 288 x 320: tiles of 128 px, cut at the edges
    n, h, w = data.shape
    flushed = []
    real = StackWriter._flush

    def spy(self):
        flushed.append(True)
        real(self)

    monkeypatch.setattr(StackWriter, "_flush", spy)
    monkeypatch.setattr(stack_mod, "_PACKED_READERS", [1])  # as while a packed input is read
    sizes = {}
    for name, rows in (("aligned", 128), ("cut", 100), ("whole", h)):
        out = str(tmp_path / f"{name}.tif")
        flushed.clear()
        with StackWriter(out, make_dates(n), "EPSG:32647", rasterio.Affine(20, 0, 0, 0, -20, 0), w, h) as wr:
            for r0 in range(0, h, rows):
                win = Window(0, r0, w, min(rows, h - r0))
                wr.write(data[:, r0 : r0 + int(win.height)], window=win)
        np.testing.assert_array_equal(read_stack(out), data)
        sizes[name] = os.path.getsize(out)
        assert len(flushed) == {"aligned": 3, "cut": 0, "whole": 1}[name], (name, flushed)
    # no tile stored twice (3 x 60 of them would double the file); each reopening stores the
    # tile index again (about 2 % here, 0.6 % on a 3000 x 3000 x 60 stack written in 20 windows)
    assert sizes["aligned"] <= sizes["whole"] * 1.07


def test_open_for_reads_opens_again_only_for_direct_io(write_stack, tmp_path, monkeypatch):
    """Only an uncompressed pixel-interleaved GeoTIFF is opened a second time (GDAL takes
    GTIFF_DIRECT_IO when it opens a file); any other file is opened once and read as it is."""
    from deformation_forecast.core.budget import open_for_reads

    base = write_stack(_data(), make_dates(N))
    pixel = _rewrite(base, str(tmp_path / "pixel.tif"), **LAYOUTS["pixel_tiles64"])
    packed = _rewrite(base, str(tmp_path / "packed.tif"), **LAYOUTS["pixel_tiles64"], compress="deflate")
    with rasterio.open(base) as src:
        expected = src.read()
    opened: list[str] = []
    real_open = rasterio.open

    def counting(path, *a, **kw):
        opened.append(str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(rasterio, "open", counting)
    for path, opens in ((base, 1), (packed, 1), (pixel, 2)):
        opened.clear()
        with open_for_reads(path) as src:
            np.testing.assert_array_equal(src.read(), expected)
        assert opened == [path] * opens
