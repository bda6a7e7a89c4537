"""The checkpoint protocol of training (ml/train.py Checkpoint, issue 20): what one epoch leaves in
``<output_model>.checkpoint/``, what RESUME reads back, and what it refuses. The whole kill-and-resume
cycle through the worker is tests/ml/test_resume.py (slow)."""

import os

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def _parts(seed):
    import keras

    from deformation_forecast.ml.compressor import ExtremumGRU

    keras.utils.set_random_seed(seed)
    gru = ExtremumGRU(time_step=3, units=2, epochs=1)
    gru.fit(np.linspace(-5, 0, 12), np.linspace(0, 3, 12))
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    return gru, net


def test_save_then_resume_reads_it_back_once(tmp_path, monkeypatch):
    from deformation_forecast.ml import protocol
    from deformation_forecast.ml.train import Checkpoint

    said = []
    monkeypatch.setattr(protocol, "warning", lambda text: said.append(text))
    monkeypatch.setattr(protocol, "message", lambda text: said.append(text))
    folder = str(tmp_path / "m.dfmodel.checkpoint")
    gru, net = _parts(1)
    ck = Checkpoint(folder, "sig-a")
    assert ck.read_state() is None  # nothing yet
    ck.save(net, gru, 3, {"loss": [0.3, 0.2, 0.1]}, own_compressor=True)
    assert sorted(os.listdir(folder)) == ["compressor.weights.h5", "network.weights.h5", "state.json"]
    state = ck.read_state()
    assert state["epoch"] == 3 and state["history"] == {"loss": [0.3, 0.2, 0.1]}
    assert state["compressor"] == gru.params() and state["signature"] == "sig-a"
    # the compressor and the network come back with their weights
    gru2 = ck.load_compressor(state)
    z = np.random.default_rng(0).normal(size=(2, 3, 1)).astype("float32")
    np.testing.assert_array_equal(np.asarray(gru.model([z, z])), np.asarray(gru2.model([z, z])))
    _, other = _parts(2)
    ck.load_network(other, 0)  # epoch 0: a fresh start loads nothing
    assert not np.array_equal(other.get_weights()[0], net.get_weights()[0])
    ck.load_network(other, 3)
    np.testing.assert_array_equal(other.get_weights()[0], net.get_weights()[0])
    assert any("RESUME: continuing after epoch 3" in s for s in said)
    # a resumed run keeps the compressor it loaded; a later save does not overwrite it
    stamp = os.path.getmtime(ck.path(Checkpoint.COMPRESSOR))
    gru3, _ = _parts(3)
    ck.save(net, gru3, 4, {"loss": [0.3, 0.2, 0.1, 0.05]}, own_compressor=False)
    assert os.path.getmtime(ck.path(Checkpoint.COMPRESSOR)) == stamp
    # other parameters or data: not resumed, said
    assert Checkpoint(folder, "sig-b").read_state() is None
    assert any("other parameters or data" in s for s in said)
    assert not [n for n in os.listdir(folder) if ".tmp." in n]  # temp names renamed
    ck.remove()
    assert not os.path.exists(folder)


def test_signature_ignores_what_does_not_shape_the_result(tmp_path):
    """RESUME continues with more epochs, another device or budget; not with another seed or input."""
    import dataclasses

    from deformation_forecast.jobs import TrainJob
    from deformation_forecast.ml.train import _signature

    job = TrainJob(input=str(tmp_path / "s.tif"), output_model=str(tmp_path / "m.dfmodel"))
    same = [
        dataclasses.replace(job, epochs=99),
        dataclasses.replace(job, device="cpu", memory_budget_mb=512.0),
    ]
    differ = [dataclasses.replace(job, seed=1), dataclasses.replace(job, input=str(tmp_path / "t.tif"))]

    class Info:
        shape = (10, 8, 8)

    assert all(_signature(j, Info) == _signature(job, Info) for j in same)
    assert all(_signature(j, Info) != _signature(job, Info) for j in differ)
