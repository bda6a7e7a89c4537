"""TensorFlow's own log lines stay out of the Log tab; the run's lines and fatal errors do not."""

from deformation_forecast.worker import is_tensorflow_noise

NOISE = [
    "E0000 00:00:1733000000.123456   12345 meta_optimizer.cc:966] model_pruner failed: INVALID_ARGUMENT: "
    "NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition",
    "W0000 00:00:1733000000.654321   12345 gpu_device.cc:2344] Cannot dlopen some GPU libraries.",
    "I0000 00:00:1733000000.1   777 cuda_executor.cc:1015] successful NUMA node read from SysFS",
    "2024-05-01 10:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off errors.",
    "2024-05-01 10:00:00.5: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] Unable to "
    "register cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.",
]
KEPT = [
    "Traceback (most recent call last):",
    "MemoryError: Unable to allocate 3.2 GiB",
    "F0000 00:00:1733000000.1   12 cuda_blas.cc:190] Check failed: status == CUBLAS_STATUS_SUCCESS",
    "ValueError: INPUT: the stack has 3 dates; training needs at least 12",
]


def test_tensorflow_noise_is_recognised_and_real_errors_are_not():
    assert [line for line in NOISE if not is_tensorflow_noise(line)] == []
    assert [line for line in KEPT if is_tensorflow_noise(line)] == []
