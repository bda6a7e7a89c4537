"""DEVICE: auto | gpu | cpu | gpu:N[,M]. GPUs are faked (no GPU on the test machines): TensorFlow's
device listing is monkeypatched, so these tests check the choices, not CUDA."""

import pytest

from deformation_forecast.core.errors import InputError
from deformation_forecast.ml.device import configure_device, cpu_device, parse_choice

pytestmark = pytest.mark.tf


@pytest.fixture
def fake_gpus(monkeypatch):
    """Make TensorFlow report `n` GPUs; records set_visible_devices / set_memory_growth calls."""
    import tensorflow as tf

    calls = {"visible": [], "growth": []}

    def install(n):
        devs = [
            tf.config.PhysicalDevice(name=f"/physical_device:GPU:{i}", device_type="GPU") for i in range(n)
        ]
        real = tf.config.list_physical_devices
        monkeypatch.setattr(
            tf.config, "list_physical_devices", lambda kind=None: list(devs) if kind == "GPU" else real(kind)
        )
        monkeypatch.setattr(
            tf.config, "set_visible_devices", lambda d, kind=None: calls["visible"].append(list(d))
        )
        monkeypatch.setattr(
            tf.config.experimental, "set_memory_growth", lambda d, on: calls["growth"].append((d.name, on))
        )
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        return devs

    install.calls = calls
    return install


@pytest.mark.parametrize(
    "text, expected",
    [
        ("auto", ("auto", None)),
        (None, ("auto", None)),
        ("GPU", ("gpu", None)),
        ("cpu", ("cpu", None)),
        ("gpu:0", ("gpu", [0])),
        ("gpu:1,0", ("gpu", [1, 0])),
    ],
)
def test_parse_choice(text, expected):
    assert parse_choice(text) == expected


@pytest.mark.parametrize("bad", ["tpu", "gpu:", "gpu:x", "gpu:-1", "gpu:0,0", "cuda"])
def test_bad_choice_names_the_forms(bad):
    with pytest.raises(InputError, match=r"auto, gpu, cpu or gpu:N"):
        parse_choice(bad)


def test_auto_uses_every_gpu(fake_gpus):
    fake_gpus(2)
    dev = configure_device("auto")
    assert dev["gpus"] == ["/physical_device:GPU:0", "/physical_device:GPU:1"]
    assert dev["tf_device"] == "/GPU:0" and dev["name"].startswith("GPU (2 GPUs")
    assert fake_gpus.calls["growth"] == [(g, True) for g in dev["gpus"]]
    assert fake_gpus.calls["visible"] == []  # nothing hidden


def test_one_gpu_keeps_the_old_name(fake_gpus):
    fake_gpus(1)
    dev = configure_device("gpu")
    assert dev["name"] == "GPU (/physical_device:GPU:0)" and dev["gpus"] == ["/physical_device:GPU:0"]


def test_gpu_index_selects_and_hides_the_others(fake_gpus):
    devs = fake_gpus(3)
    dev = configure_device("gpu:2,0")
    assert fake_gpus.calls["visible"] == [[devs[2], devs[0]]]
    assert dev["gpus"] == ["/physical_device:GPU:2", "/physical_device:GPU:0"]
    assert "2 of 3" in dev["reason"]


def test_gpu_index_out_of_range(fake_gpus):
    fake_gpus(2)
    with pytest.raises(InputError, match="sees 2 GPU.*no GPU 5"):
        configure_device("gpu:5")


@pytest.mark.parametrize("choice", ["gpu", "gpu:0"])
def test_gpu_without_gpu_is_a_clear_error(fake_gpus, choice):
    fake_gpus(0)
    with pytest.raises(InputError, match="no CUDA GPU|no GPU 0"):
        configure_device(choice)


def test_auto_without_gpu_is_the_cpu(fake_gpus):
    fake_gpus(0)
    dev = configure_device("auto")
    assert dev["tf_device"] == "/CPU:0" and dev["gpus"] == [] and "no CUDA GPU" in dev["reason"]


def test_cpu_hides_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    dev = configure_device("cpu")
    assert dev == cpu_device("DEVICE=cpu requested")
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "-1"
