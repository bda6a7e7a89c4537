"""A model file that expands far beyond its size (a zip bomb) is refused before anything is
extracted (issue 15). No TensorFlow needed: the checks run before Keras is touched."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from deformation_forecast.core.errors import InputError
from deformation_forecast.core.validity import check_zip_sizes
from deformation_forecast.ml.modelfile import FORMAT, VERSION, _check_inner, read_meta


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


META = json.dumps({"format": FORMAT, "version": VERSION}).encode()


def test_outer_bomb_refused(tmp_path):
    path = tmp_path / "bomb.dfmodel"
    path.write_bytes(
        _zip({"meta.json": META, "network.keras": b"\0" * (64 * 2**20), "compressor.keras": b""})
    )
    assert path.stat().st_size < 2**20
    with pytest.raises(InputError, match=r"'bomb.dfmodel'.*network.keras.*zip bomb"):
        read_meta(str(path))


def test_inner_keras_bomb_refused_before_extraction(tmp_path):
    inner = _zip({"model.weights.h5": b"\0" * (64 * 2**20), "config.json": b"{}"})
    path = tmp_path / "nested.dfmodel"
    path.write_bytes(_zip({"meta.json": META, "network.keras": inner, "compressor.keras": _zip({"a": b"1"})}))
    assert read_meta(str(path))["format"] == FORMAT  # the outer archive is small and sane
    with zipfile.ZipFile(path) as z, pytest.raises(InputError, match=r"network.keras.*zip bomb"):
        _check_inner(z, str(path))


def test_total_size_cap():
    data = _zip({"a": b"x" * 5000, "b": b"y" * 5000})
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        check_zip_sizes(z, "MODEL", max_total=20000)
        with pytest.raises(InputError, match="would expand to"):
            check_zip_sizes(z, "MODEL", max_total=8000)


def test_folder_for_a_model(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        read_meta(str(tmp_path))
