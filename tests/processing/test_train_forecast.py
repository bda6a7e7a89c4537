"""trainmodel then forecast through processing.run (TensorFlow only in the worker process)."""

import sys

import numpy as np
import pytest

from tests.ml.scene import bowl_scene

pytestmark = pytest.mark.tf

TINY = {
    "EPOCHS": 2,
    "GRU_EPOCHS": 3,
    "TEST_COUNT": 4,
    "DEVICE": 2,
    "WIDTH": 4,
}


def test_train_then_forecast(run_alg, write_stack, tmp_path):
    from deformation_forecast.core.stack import read_info, read_stack

    data, dates = bowl_scene(30, 24)
    stack = write_stack(data, dates)
    model = str(tmp_path / "m.dfmodel")
    report = str(tmp_path / "r.html")
    res = run_alg("trainmodel", {"INPUT": stack, **TINY, "OUTPUT_MODEL": model, "OUTPUT_REPORT": report})
    assert res["OUTPUT_MODEL"] == model
    for k in ("TEST_MAE", "TEST_RMSE", "TEST_SSIM", "TEST_MS_SSIM", "TEST_PSNR"):
        assert np.isfinite(res[k]), k
    assert "<img" in open(report, encoding="utf-8").read()
    assert all(np.isfinite(res[k]) and res[k] < 1 for k in ("SKILL_VS_PERSISTENCE", "SKILL_VS_TREND"))
    out = str(tmp_path / "fc.tif")
    rate = str(tmp_path / "rate.tif")
    lower, upper = str(tmp_path / "lo.tif"), str(tmp_path / "hi.tif")
    fc = run_alg(
        "forecast",
        {
            "INPUT": stack,
            "MODEL": model,
            "STEPS": 0,
            "DEVICE": 2,
            "OUTPUT": out,
            "OUTPUT_RATE": rate,
            "OUTPUT_LOWER": lower,
            "OUTPUT_UPPER": upper,
        },
    )
    assert (fc["OUTPUT_LOWER"], fc["OUTPUT_UPPER"]) == (lower, upper)
    f, lo, hi = read_stack(out), read_stack(lower), read_stack(upper)
    ok = np.isfinite(f)
    np.testing.assert_array_equal(ok, np.isfinite(lo))
    assert (lo[ok] < f[ok]).all() and (f[ok] < hi[ok]).all()
    # calibrated on 4 test dates, then the fitted growth and each pixel's forecast motion: wider at the last of 61 horizons
    assert np.median((hi - lo)[-1][ok[-1]]) > 2 * np.median((hi - lo)[0][ok[0]])
    assert read_info(upper).dates == read_info(out).dates
    assert fc["OUTPUT"] == out and fc["STEPS_DONE"] == 61  # two years of 12 days
    info = read_info(out)
    assert info.count == 61 and info.dates[0] > dates[-1] and info.width == 24
    assert np.isnan(read_stack(out)[:, 0, 0]).all()
    assert read_info(rate).count == 2
    assert "tensorflow" not in sys.modules


def test_forecast_refuses_a_file_that_is_not_a_model(run_alg, write_stack, tmp_path):
    from qgis.core import QgsProcessingException

    data, dates = bowl_scene(20, 16)
    stack = write_stack(data, dates)
    junk = tmp_path / "junk.dfmodel"
    junk.write_bytes(b"not a zip")
    with pytest.raises(QgsProcessingException, match="not a deformation forecast model"):
        run_alg(
            "forecast", {"INPUT": stack, "MODEL": str(junk), "DEVICE": 2, "OUTPUT": str(tmp_path / "o.tif")}
        )
