import sys

import pytest


@pytest.mark.tf
def test_check_worker_in_processing(run_alg):
    res = run_alg("checkworker", {"DEVICE": 2})
    assert res["CHECKSUM"] == 394
    assert res["GPU_COUNT"] == 0
    assert "tensorflow" not in sys.modules


def test_gpu_request_without_gpu_fails_clearly(run_alg):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="DEVICE=gpu but TensorFlow sees no CUDA GPU"):
        run_alg("checkworker", {"DEVICE": 1})
