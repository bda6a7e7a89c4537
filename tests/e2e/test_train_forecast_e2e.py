"""trainmodel -> forecast, and the shipped graphical model, in qgis_process.bin (a separate program)."""

import os

import numpy as np
import pytest

from tests.e2e.conftest import ROOT
from tests.ml.scene import bowl_scene

pytestmark = [pytest.mark.e2e, pytest.mark.tf]
MODEL3 = os.path.join(ROOT, "deformation_forecast", "models", "stack_train_forecast.model3")


def test_trainmodel_then_forecast(qgis_process, write_stack, tmp_path):
    from deformation_forecast.core.stack import read_info

    data, dates = bowl_scene(30, 24)
    stack = write_stack(data, dates)
    model = str(tmp_path / "m.dfmodel")
    res = qgis_process(
        "run",
        "deformation_forecast:trainmodel",
        "--",
        f"INPUT={stack}",
        "EPOCHS=2",
        "GRU_EPOCHS=3",
        "TEST_COUNT=4",
        "DEVICE=2",
        "WIDTH=4",
        f"OUTPUT_MODEL={model}",
        f"OUTPUT_REPORT={tmp_path / 'r.html'}",
    )["results"]
    assert os.path.isfile(model) and np.isfinite(res["TEST_MAE"]) and res["TEST_SSIM"] > 0
    assert all(np.isfinite(res[k]) and res[k] < 1 for k in ("SKILL_VS_PERSISTENCE", "SKILL_VS_TREND"))
    out = str(tmp_path / "fc.tif")
    fc = qgis_process(
        "run",
        "deformation_forecast:forecast",
        "--",
        f"INPUT={stack}",
        f"MODEL={model}",
        "STEPS=6",
        "DEVICE=2",
        "CONFIDENCE=0.8",
        f"OUTPUT={out}",
        f"OUTPUT_LOWER={tmp_path / 'lo.tif'}",
        f"OUTPUT_UPPER={tmp_path / 'hi.tif'}",
    )["results"]
    info = read_info(out)
    assert fc["STEPS_DONE"] == 6 and info.count == 6 and info.dates[0] > dates[-1]
    assert fc["LAST_DATE"] == info.dates[-1].isoformat()
    from deformation_forecast.core.stack import read_stack

    f, lo, hi = (read_stack(p) for p in (out, fc["OUTPUT_LOWER"], fc["OUTPUT_UPPER"]))
    ok = np.isfinite(f)
    assert ok.any() and (lo[ok] < f[ok]).all() and (f[ok] < hi[ok]).all()
    assert np.array_equal(ok, np.isfinite(hi))
    assert fc["METHOD_USED"] == "network"
    # METHOD = 1: the best of network / persistence / trend on the model's iterative backtest
    best = qgis_process(
        "run",
        "deformation_forecast:forecast",
        "--",
        f"INPUT={stack}",
        f"MODEL={model}",
        "STEPS=6",
        "DEVICE=2",
        "METHOD=1",
        f"OUTPUT={tmp_path / 'fc_best.tif'}",
        f"OUTPUT_LOWER={tmp_path / 'lo_best.tif'}",
        f"OUTPUT_UPPER={tmp_path / 'hi_best.tif'}",
    )["results"]
    assert best["METHOD_USED"] in ("network", "persistence", "trend")
    f, lo, hi = (read_stack(best[k]) for k in ("OUTPUT", "OUTPUT_LOWER", "OUTPUT_UPPER"))
    ok = np.isfinite(f)
    assert ok.any() and (lo[ok] < f[ok]).all() and (f[ok] < hi[ok]).all()


def test_forecast_refuses_foreign_file(qgis_process, write_stack, tmp_path):
    data, dates = bowl_scene(12, 8)
    stack = write_stack(data, dates)
    junk = tmp_path / "junk.dfmodel"
    junk.write_text("hello")
    p = qgis_process(
        "run",
        "deformation_forecast:forecast",
        "--",
        f"INPUT={stack}",
        f"MODEL={junk}",
        "DEVICE=2",
        f"OUTPUT={tmp_path / 'o.tif'}",
        check=False,
    )
    assert p.returncode != 0
    assert "not a deformation forecast model" in p.stdout + p.stderr


def test_shipped_graphical_model_runs(qgis_process, tmp_path):
    from affine import Affine

    from deformation_forecast.core.dates import format_date
    from deformation_forecast.core.stack import read_info, write_stack

    data, dates = bowl_scene(30, 24)
    args = []
    for frame, d in zip(data, dates, strict=True):
        path = str(tmp_path / f"cum_{d.strftime('%Y%m%d')}.tif")
        write_stack(path, frame[None], [format_date(d)], "EPSG:32647", Affine(20, 0, 5e5, 0, -20, 4.3e6))
        args.append(f"input_rasters={path}")
    out = str(tmp_path / "forecast.tif")
    res = qgis_process(
        "run",
        MODEL3,
        "--",
        *args,
        "max_epochs=2",
        "test_dates=4",
        "steps=5",
        "worker_device=2",
        f"train:Trained model={tmp_path / 'm.dfmodel'}",
        f"train:Training report={tmp_path / 'r.html'}",
        f"forecast:Forecast stack={out}",
        f"build_stack:Deformation stack={tmp_path / 'stack.tif'}",
    )
    assert os.path.isfile(tmp_path / "m.dfmodel"), res
    info = read_info(out)
    assert info.count == 5 and info.dates[0] > dates[-1]
