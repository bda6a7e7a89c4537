"""bench/bench_backtest_real.py's pipeline on the real Maoxian StaMPS export (no TensorFlow): the
withheld dates are the file's last ones, both stacks share one grid, the values at the cells that
hold points come from the CSV unchanged, and the scores are right on a known answer."""

from __future__ import annotations

import csv
import datetime as dt
import os
import sys

import numpy as np
import rasterio

from tests.conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_backtest_real as bbr  # noqa: E402


def _csv_series(path):
    """(lon, lat, dates, values) read with the csv module, as SOURCE.txt describes the export."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f)][1:]
    dates = [dt.date.fromordinal(int(float(v)) + 1 - 366) for v in rows[0][3:]]
    arr = np.array([[float(v) for v in r] for r in rows[1:]])
    return arr[:, 0], arr[:, 1], dates, arr[:, 3:]


def test_maoxian_split_withholds_the_last_dates_and_keeps_the_csv_values(shared_data, tmp_path):
    path = os.path.join(shared_data, bbr.DATASETS["maoxian"].path)
    _, _, dates, values = _csv_series(path)
    split = bbr.grid_split(bbr.DATASETS["maoxian"], shared_data, str(tmp_path))
    k = min(20, len(dates) // 5)
    assert (len(dates), k) == (38, 7)
    assert split.withheld == dates[-k:] and split.withheld[-1] == dt.date(2017, 6, 19)
    with rasterio.open(split.full) as full, rasterio.open(split.train) as train:
        assert (full.transform, full.shape, full.crs) == (train.transform, train.shape, train.crs)
        assert train.count == len(dates) - k and full.count == len(dates)
        assert train.descriptions[-1] == dates[-k - 1].isoformat()
        whole, head = full.read(), train.read()
    np.testing.assert_array_equal(head, whole[: len(dates) - k])
    # every cell that holds a point takes, at every date (the withheld ones too), the CSV series of
    # the point nearest its centre (METHOD nearest; StaMPS points lie on a lattice, so some cells
    # have two or three points at the same least distance: one of them), found here by brute force
    s = split.series
    xs, ys = bbr.project(s.x, s.y, s.crs, split.summary["crs"])
    rows, cols = np.nonzero(split.cells)
    t = split.summary["transform"]
    cx, cy = t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e
    d = np.hypot(cx[:, None] - xs, cy[:, None] - ys)
    nearest = d <= d.min(axis=1, keepdims=True) + 1e-6  # (cells, points)
    assert split.cells.sum() == 137 and d.min(axis=1).max() <= 15 * np.sqrt(2) + 1e-6  # in the 30 m cell
    same = np.all(whole[:, rows, cols].T[:, None, :] == values.astype("float32")[None], axis=2)
    assert np.all(np.any(same & nearest, axis=1))
    assert np.ptp(whole[-k:, rows, cols]) > 20  # the withheld values are not all alike


def test_scores_known_answer():
    withheld = [dt.date(2017, 1, d) for d in (5, 10, 15, 20)]
    forecast_dates = [dt.date(2017, 1, d) for d in (10, 20, 30)]
    assert bbr.matched(withheld, forecast_dates) == [(1, 0), (3, 1)]
    obs = np.array([[0.0, 1.0, 2.0, np.nan], [0.0, -3.0, 5.0, 1.0]])
    fc = np.zeros_like(obs)
    s = bbr.score(obs, fc, fc - 2.0, fc + 2.0)  # half-width 2: |error| 0, 1, 2 | 0, 3, 5, 1
    assert s["n"] == 7 and s["coverage"] == 5 / 7 and s["width"] == 4.0
    assert s["MAE"] == 12 / 7 and np.isclose(s["RMSE"], np.sqrt(40 / 7))
    assert np.isclose(s["need"], np.quantile(np.array([0, 1, 2, 0, 3, 5, 1]) / 2, 0.9))
    assert s["coverage_per_date"] == [1.0, 0.5]
