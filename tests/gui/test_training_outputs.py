"""trainmodel's model never lands in a temporary file by default; a cancel says where the
checkpoint is and how to resume or delete it."""

from __future__ import annotations

import os

from qgis.core import QgsProcessing, QgsProcessingOutputLayerDefinition

from deformation_forecast.processing.alg_train_model import _is_temporary, cancel_message, default_model_path


def test_default_model_goes_beside_the_stack_and_keeps_an_interrupted_name(tmp_path):
    stack = tmp_path / "asc stack.tif"
    stack.write_bytes(b"")
    first = default_model_path(str(stack))
    assert first == str(tmp_path / "asc stack.dfmodel")
    os.makedirs(first + ".checkpoint")  # an interrupted run: the same name, so RESUME finds it
    assert default_model_path(str(stack)) == first
    open(first, "w").close()  # a finished model is never overwritten
    assert default_model_path(str(stack)) == str(tmp_path / "asc stack_2.dfmodel")


def test_temporary_output_is_recognised(qgis_app):
    assert _is_temporary(QgsProcessing.TEMPORARY_OUTPUT)
    assert _is_temporary(QgsProcessingOutputLayerDefinition(QgsProcessing.TEMPORARY_OUTPUT))
    assert _is_temporary(None)
    assert not _is_temporary("/data/m.dfmodel")


def test_cancel_message_names_the_checkpoint_and_how_to_resume(tmp_path):
    model = str(tmp_path / "m.dfmodel")
    assert "no checkpoint" in cancel_message(model)
    os.makedirs(model + ".checkpoint")
    msg = cancel_message(model)
    assert model + ".checkpoint" in msg and "Resume" in msg and "delete that folder" in msg
