"""Model files written by earlier plugins still load and forecast the same (issue 20): every
tests/ml/data/model_v*.dfmodel (tests/ml/make_model_fixture.py, one per model-file format) is read,
checked against its stack and forecast; the forecast equals the one its own plugin wrote."""

import glob
import os

import numpy as np
import pytest

from tests.ml.make_model_fixture import DATA, STEPS, forecast_params, write_fixture_stack

pytestmark = pytest.mark.tf
FIXTURES = sorted(glob.glob(os.path.join(DATA, "model_v*.dfmodel")))


def test_there_is_a_fixture_of_the_current_format():
    from deformation_forecast.ml.modelfile import VERSION

    names = {os.path.basename(f) for f in FIXTURES}
    assert f"model_v{VERSION}.dfmodel" in names and "model_v1.dfmodel" in names


@pytest.mark.parametrize("model", FIXTURES, ids=os.path.basename)
def test_fixture_loads_and_forecasts_as_written(model, tmp_path):
    from deformation_forecast.core.stack import read_info, read_stack
    from deformation_forecast.ml.forecast import run_forecast
    from deformation_forecast.ml.modelfile import read_meta

    meta = read_meta(model)
    stack = write_fixture_stack(str(tmp_path / "stack.tif"))
    out = str(tmp_path / "fc.tif")
    res = run_forecast(forecast_params(stack, model, out))
    assert res["steps"] == STEPS and read_info(out).count == STEPS
    fc = read_stack(out)
    ref = np.load(model.replace(".dfmodel", "_forecast.npz"))["forecast"]
    np.testing.assert_array_equal(np.isnan(fc), np.isnan(ref))
    np.testing.assert_allclose(fc, ref, rtol=1e-5, atol=1e-4)
    assert np.isfinite(fc[:, 8, 8]).all() and np.isnan(fc[:, 0, 0]).all()
    assert meta is not None
