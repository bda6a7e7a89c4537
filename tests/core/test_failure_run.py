"""core.failure_run: a stack streamed in several windows gives the whole raster and the alerted
pixels; points; the chart; cancel leaves nothing."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from deformation_forecast.core import failure as F
from deformation_forecast.core import failure_run as R
from deformation_forecast.core import failure_synthetic as S
from deformation_forecast.core.errors import Cancelled
from deformation_forecast.core.run import Run
from deformation_forecast.core.stack import write_stack

LEAD = 60


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    rng = np.random.default_rng(4)
    dates = S.regular_dates(dt.date(2019, 1, 1), 62, 12)
    d = S.field("linear", dates, 24, rng)
    creep = -S.voight_series(dates, dates[-1] + dt.timedelta(days=LEAD), 2.0, LEAD)
    d[:, 3:9, 3:9] = creep[:, None, None] + rng.normal(0, 1.5, (len(dates), 6, 6))
    d[:, 20:, 20:] = np.nan  # incoherent corner
    path = str(tmp_path_factory.mktemp("fr") / "s.tif")
    write_stack(path, d.astype("float32"), dates, "EPSG:32647", Affine(10, 0, 0, 0, -10, 240))
    return path, dates, d


def test_stack_in_windows(scene, tmp_path):
    path, dates, _ = scene
    out = str(tmp_path / "o.tif")
    seen = []
    # 62 dates x 4 bytes x 48 pixels per window: a dozen windows
    recs, crit, summary = R.analyse_stack(
        path, out, F.Params(), run=Run(report=lambda f, m: seen.append(f)), max_bytes=62 * 4 * 48
    )
    assert len(seen) > 5 and seen[-1] == pytest.approx(1.0)
    with rasterio.open(out) as src:
        a = src.read()
        assert src.tags()["LAST_ACQUISITION"] == dates[-1].isoformat()
    assert np.isnan(a[:, 20:, 20:]).all() and np.isfinite(a[0, :20]).all()
    alert = np.nan_to_num(a[3])
    assert (alert[3:9, 3:9] >= 1).all()
    assert (
        len(recs)
        == int((alert > 0).sum())
        == summary["counts"][1] + summary["counts"][2] + summary["counts"][3]
    )
    ids = {r.values["point_id"] for r in recs}
    assert {r * 24 + c + 1 for r in range(3, 9) for c in range(3, 9)} <= ids
    # pixel centres
    xs = sorted({r.x for r in recs if r.values["alert"] >= 2})
    assert xs[0] >= 35.0 and xs[-1] <= 85.0
    assert abs(np.nanmedian(a[2, 3:9, 3:9]) - LEAD) <= 0.1 * LEAD
    assert summary["earliest"] is not None and summary["earliest"] > dates[-1]
    chart = str(tmp_path / "c.svg")
    assert R.save_chart(chart, crit.items(), dates, F.Params()) == R.PLOT_POINTS
    assert "inverse velocity" in open(chart).read()


def test_area_restricts_the_stack(scene):
    path, _, _ = scene
    square = {"type": "Polygon", "coordinates": [[(0, 240), (60, 240), (60, 180), (0, 180), (0, 240)]]}
    recs, _, summary = R.analyse_stack(path, None, F.Params(), geoms=[square])
    assert summary["points"] == 36  # the 6 x 6 pixels inside
    assert all(r.x < 60 and r.y > 180 for r in recs)


def test_cancel_leaves_no_raster(scene, tmp_path):
    path, _, _ = scene
    out = tmp_path / "x.tif"
    with pytest.raises(Cancelled):
        R.analyse_stack(path, str(out), F.Params(), run=Run(cancelled=lambda: True))
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if "partial" in p]


def test_points_records_and_ids(scene):
    _, dates, d = scene
    vals = d.reshape(len(dates), -1).T
    keep = np.isfinite(vals).all(axis=1)
    x = np.arange(vals.shape[0], dtype=float)
    recs, crit, summary = R.analyse_points(
        vals[keep], (x[keep], x[keep]), dates, F.Params(), ids=np.flatnonzero(keep) + 7
    )
    assert len(recs) == keep.sum() == summary["points"]
    assert recs[0].values["point_id"] == 7
    top = crit.items()[0]
    assert top[4]["alert"] >= 2 and "point" in top[2]
