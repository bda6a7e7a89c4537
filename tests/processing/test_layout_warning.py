"""Issue 22: a stack in a layout that is slow to stream is named once in the log, with the fix,
and the algorithm still gives the same numbers as on the plugin's own layout."""

from __future__ import annotations

import numpy as np
import rasterio
from qgis.core import QgsProcessingFeedback

from deformation_forecast.core import stack as stack_mod
from deformation_forecast.core.stack import read_stack
from tests.conftest import make_dates


class _Log(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.warnings: list[str] = []

    def pushWarning(self, text):  # noqa: N802
        self.warnings.append(text)
        super().pushWarning(text)


def test_slow_layout_warned_once_and_same_rates(run_alg, write_stack, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    t = np.arange(8, dtype="float32")[:, None, None]
    data = t * rng.normal(0, 4, size=(1, 130, 140)).astype("float32")
    base = write_stack(data, make_dates(8))
    strip = str(tmp_path / "one_strip_per_band.tif")
    with rasterio.open(base) as src:
        prof = src.profile
        for k in ("blockxsize", "blockysize", "tiled"):
            prof.pop(k, None)
        prof.update(interleave="band", tiled=False, blockysize=130, compress="deflate")
        with rasterio.open(strip, "w", **prof) as dst:
            dst.write(src.read())
            dst.descriptions = src.descriptions
    # a 130 x 140 strip is 72800 bytes, a 128 x 128 tile of the plugin's layout 65536
    monkeypatch.setattr(stack_mod, "SLOW_BLOCK_BYTES", 70_000)
    outs = []
    for path, warned in ((base, False), (strip, True)):
        log = _Log()
        out = str(tmp_path / f"rate_{len(outs)}.tif")
        run_alg("deformationrate", {"INPUT": path, "OUTPUT": out}, feedback=log)
        slow = [w for w in log.warnings if "slow to read" in w]
        assert len(slow) == int(warned), log.warnings
        if warned:
            assert "INPUT: 'one_strip_per_band.tif' is slow to read" in slow[0]
            assert "gdal_translate -co TILED=YES" in slow[0]
        outs.append(read_stack(out))
    np.testing.assert_array_equal(outs[0], outs[1])
