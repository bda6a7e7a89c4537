"""The OOM fallback wired into training (issue 9): a fit that runs out of memory in its second
epoch is retried with half the batch, continues from the epoch checkpoint, and the model is valid."""

import os

import numpy as np
import pytest

from tests.ml.scene import bowl_scene

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def test_training_survives_an_out_of_memory_error(tmp_path, monkeypatch):
    import keras
    import tensorflow as tf
    from affine import Affine

    from deformation_forecast.core.stack import write_stack
    from deformation_forecast.ml import protocol
    from deformation_forecast.ml.modelfile import load_model
    from deformation_forecast.ml.train import run_train

    data, dates = bowl_scene(40, 24)
    path = str(tmp_path / "stack.tif")
    write_stack(path, data, dates, "EPSG:32647", Affine(20, 0, 500000, 0, -20, 4300000))
    said = []
    monkeypatch.setattr(protocol, "warning", lambda text, **kw: said.append(text))
    real_fit, calls = keras.Model.fit, []

    def fit(self, *args, **kwargs):
        if "steps_per_epoch" not in kwargs:  # the GRU compressor's fit
            return real_fit(self, *args, **kwargs)
        calls.append(kwargs.get("initial_epoch", 0))
        if len(calls) == 1:
            # the first attempt trains one epoch (checkpointed), then the device runs out of memory
            real_fit(self, *args, **{**kwargs, "epochs": 1})
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor on /GPU:0")
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    model = str(tmp_path / "m.dfmodel")
    res = run_train(
        {
            "input": path,
            "output_model": model,
            "epochs": 3,
            "gru_epochs": 3,
            "test_count": 4,
            "batch_size": 4,
            "device": "cpu",
            "width": 4,
            "patience": 0,
        }
    )
    assert calls == [0, 1], calls  # the retry started after the checkpointed epoch
    assert any("batch" in w and "2" in w for w in said), said
    assert res["epochs_run"] == 3
    assert "batch 2" in res["training_plan"]
    net, _, meta = load_model(model)
    assert len(meta.history["loss"]) == 3
    assert np.isfinite(res["test_metrics"]["MAE"])
    assert not os.path.exists(model + ".checkpoint")
