"""deformationrate, losvertical, buildstack, crossorbit, decompose and importproduct take their
progress and cancel button through the run context (processing.base.run_context): a cancelled run
says "Cancelled; nothing was written." and leaves no output, a finished one reaches 100 %."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from tests import h5products as hp
from tests.conftest import make_dates


def _params(name, write_stack, tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(5, 6, 7)).cumsum(axis=0)
    a = write_stack(data, name="a.tif")
    b = write_stack(data * 1.2, dates=make_dates(5, start=dt.date(2018, 1, 3)), name="b.tif")
    out = str(tmp_path / "out.tif")
    if name == "deformationrate":
        return {"INPUT": a, "VERTICAL": True, "OUTPUT": out}, [out]
    if name == "losvertical":
        return {"INPUT": a, "OUTPUT": out}, [out]
    if name == "buildstack":
        singles = [
            write_stack(data[i : i + 1], dates=[d], name=f"s_{d:%Y%m%d}.tif")
            for i, d in enumerate(make_dates(3))
        ]
        return {"LAYERS": singles, "INTERVAL_DAYS": 5, "OUTPUT": out}, [out]
    if name == "crossorbit":
        table = str(tmp_path / "t.csv")
        return {"INPUT": a, "INPUT_B": b, "OUTPUT": table}, [table]
    if name == "decompose":
        up, east = str(tmp_path / "up.tif"), str(tmp_path / "east.tif")
        return {"ASCENDING": a, "DESCENDING": b, "OUTPUT_VERTICAL": up, "OUTPUT_EAST": east}, [up, east]
    h5 = tmp_path / "cum.h5"
    hp.write_licsbas(h5, hp.series())
    return {"INPUT": str(h5), "OUTPUT": out}, [out]


NAMES = ["deformationrate", "losvertical", "buildstack", "crossorbit", "decompose", "importproduct"]


@pytest.mark.parametrize("name", NAMES)
def test_cancelled_run_writes_nothing(run_alg, write_stack, tmp_path, name):
    params, outs = _params(name, write_stack, tmp_path)
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Cancelled; nothing was written"):
        run_alg(name, params, feedback)
    assert not [p for p in outs if os.path.exists(p)]


@pytest.mark.parametrize("name", NAMES)
def test_finished_run_reaches_100_percent(run_alg, write_stack, tmp_path, name):
    params, outs = _params(name, write_stack, tmp_path)
    feedback = QgsProcessingFeedback()
    seen = []
    feedback.progressChanged.connect(seen.append)
    res = run_alg(name, params, feedback)
    assert seen and max(seen) == pytest.approx(100.0) and min(seen) >= 0.0
    assert all(os.path.exists(p) for p in outs), res
