"""core.evaluation: the streamed evaluation under a core.run.Run, the report's tables and figures."""

from __future__ import annotations

import os

import numpy as np
import pytest

from deformation_forecast.core import evaluation as ev
from deformation_forecast.core import metrics as mt
from deformation_forecast.core.errors import Cancelled
from deformation_forecast.core.run import Run
from tests.conftest import make_dates


def _pair(write_stack, n=5):
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(n, 12, 13)).astype("float32") * 5
    pred = obs + rng.normal(scale=0.5, size=obs.shape).astype("float32")
    return write_stack(pred, name="pred.tif"), write_stack(obs, name="obs.tif"), pred, obs


def test_evaluate_files_reports_progress_over_both_passes(write_stack):
    pp, op, pred, obs = _pair(write_stack)
    seen: list[float] = []
    res = ev.evaluate_files(pp, op, [(i, i) for i in range(5)], run=Run(report=lambda f, m: seen.append(f)))
    assert seen == pytest.approx([k / 10 for k in range(1, 11)])  # range pass, then scoring pass
    _, overall = mt.stack_metrics(pred, obs)
    assert res.total["MAE"] == pytest.approx(overall["MAE"], rel=1e-12)
    seen.clear()
    ev.evaluate_files(pp, op, [(0, 0), (1, 1)], data_range=10.0, run=Run(report=lambda f, m: seen.append(f)))
    assert seen == pytest.approx([0.5, 1.0])  # a given data range: one pass


def test_evaluate_files_cancelled_writes_nothing(write_stack, tmp_path):
    pp, op, _, _ = _pair(write_stack)
    calls = iter(range(100))
    err = str(tmp_path / "errors.tif")
    with pytest.raises(Cancelled):  # cancelled in the scoring pass, the error stack half written
        ev.evaluate_files(
            pp, op, [(i, i) for i in range(5)], 3.0, err, run=Run(cancelled=lambda: next(calls) >= 3)
        )
    assert not os.path.exists(err)


def test_report_tables_follow_the_one_metrics_tuple():
    assert ev.TABLE_FIELDS[2 : 2 + len(mt.METRICS)] == mt.METRICS
    page = ev._paper_table()
    head = page.split("</tr>")[0]
    assert [c.split("</th>")[0] for c in head.split("<th>")[1:]] == ["model", *mt.TABLE_III, "time"]
    assert "0.9995" in page and "3h48min37s" in page  # CNN-PhLSTM's MS-SSIM and time


def test_timeline_of_an_in_memory_stack():
    obs = np.arange(3 * 4 * 4, dtype="float32").reshape(3, 4, 4)
    obs[1] = np.nan
    t = ev.Timeline.of(make_dates(3), obs, make_dates(3)[1:])
    assert t.observed_min[0] == 0 and t.observed_max[2] == 47
    assert np.isnan(t.observed_min[1]) and np.isnan(t.observed_max[1])
