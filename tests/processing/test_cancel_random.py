"""Cancel the TensorFlow algorithms at random moments (issue 9): nothing half-written, input intact.

Each run is cancelled after a delay drawn from a seeded generator, anywhere from the worker's start
(TensorFlow still importing) to the middle of training or forecasting. After every cancel the
output folder holds either nothing or (when the run finished first) complete, readable outputs -
never a temporary or partial file - and the input stack is byte-identical.
"""

import hashlib
import os
import threading

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from tests.ml.scene import bowl_scene

pytestmark = pytest.mark.tf

TINY = {"EPOCHS": 3, "GRU_EPOCHS": 3, "TEST_COUNT": 4, "DEVICE": 2, "WIDTH": 4}
DELAYS = np.random.default_rng(9).uniform(0.3, 12.0, size=3).round(2)


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _run_cancelled(run_alg, alg, params, delay, at_progress=None):
    """Run `alg`, cancelled `delay` s after it starts or, with `at_progress`, as soon as its
    progress reaches that percentage (the middle of the forecast, outputs half-written)."""
    fb = QgsProcessingFeedback()
    timer = threading.Timer(delay, fb.cancel)
    if at_progress is None:
        timer.start()
    else:
        fb.progressChanged.connect(lambda p: p >= at_progress and fb.cancel())
    try:
        run_alg(alg, params, feedback=fb)
        return "finished"
    except QgsProcessingException as e:
        assert "Cancel" in str(e) or fb.isCanceled(), str(e)
        return "cancelled"
    finally:
        timer.cancel()


def _files(folder):
    return sorted(n for n in os.listdir(folder) if not n.endswith(".checkpoint"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from deformation_forecast.core.stack import write_stack

    folder = tmp_path_factory.mktemp("cancel")
    data, dates = bowl_scene(24, 24)
    path = str(folder / "input stack.tif")
    write_stack(path, data, dates, "EPSG:32648", __import__("rasterio").transform.from_origin(0, 0, 20, 20))
    return path


@pytest.mark.parametrize("delay", DELAYS)
def test_cancel_training_at_a_random_moment(run_alg, scene, tmp_path, delay):
    from deformation_forecast.ml.modelfile import read_meta

    before = _digest(scene)
    out = tmp_path / "out"
    out.mkdir()
    model, report = out / "m.dfmodel", out / "r.html"
    how = _run_cancelled(
        run_alg,
        "trainmodel",
        {"INPUT": scene, **TINY, "OUTPUT_MODEL": str(model), "OUTPUT_REPORT": str(report)},
        delay,
    )
    print(f"trainmodel, cancel after {delay} s: {how}")
    assert _digest(scene) == before
    if how == "cancelled":
        assert _files(out) == [], f"cancelled after {delay} s but left {_files(out)}"
    else:
        assert _files(out) == ["m.dfmodel", "r.html"]
        assert read_meta(str(model))["time_step"] > 0


@pytest.fixture(scope="module")
def trained(df_plugin, scene, tmp_path_factory):
    import processing
    from qgis.core import QgsProcessingContext

    folder = tmp_path_factory.mktemp("model")
    model = str(folder / "m.dfmodel")
    processing.run(
        "deformation_forecast:trainmodel",
        {"INPUT": scene, **TINY, "OUTPUT_MODEL": model, "OUTPUT_REPORT": str(folder / "r.html")},
        context=QgsProcessingContext(),
        feedback=QgsProcessingFeedback(),
    )
    return model


@pytest.mark.parametrize("at_progress", np.random.default_rng(9).uniform(6, 90, size=3).round(1))
def test_cancel_forecast_at_a_random_moment(run_alg, scene, trained, tmp_path, at_progress):
    from deformation_forecast.core.stack import read_info

    before = _digest(scene), _digest(trained)
    out = tmp_path / "out"
    out.mkdir()
    params = {
        "INPUT": scene,
        "MODEL": trained,
        "STEPS": 80,
        "DEVICE": 2,
        "OUTPUT": str(out / "fc.tif"),
        "OUTPUT_RATE": str(out / "rate.tif"),
    }
    how = _run_cancelled(run_alg, "forecast", params, 0, at_progress)
    print(f"forecast, cancel at {at_progress} %: {how}")
    assert (_digest(scene), _digest(trained)) == before
    if how == "cancelled":
        assert _files(out) == [], f"cancelled at {at_progress} % but left {_files(out)}"
    else:
        assert _files(out) == ["fc.tif", "rate.tif"]
        assert read_info(str(out / "fc.tif")).count == 80
