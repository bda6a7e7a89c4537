"""Training throughput: CNN-PhLSTM vs CNN-LSTM vs a Keras ConvLSTM2D next-frame model, same windows.

The windows come from the sample scene's noise-free ascending stack (``core.sample.synthetic_truth``,
the deformation of ``python -m deformation_forecast.core.sample``, 156 dates) at ``--size`` pixels:
every date scaled to [-1, 1] by its own extremes (what the extremum compressor does), cut into tiles
of ``--tile`` with a quarter-tile overlap (as ml/train.py), time step 5 -> the next date. A fixed,
seeded draw of ``--steps x --batch`` of them is fed in the same order to every model (the loss is
training's: eq. 11, MAE and MS-SSIM, Adam with clipnorm 1). Models:

- ``cnn-phlstm`` and ``cnn-lstm``: ml/network.py's networks (``--width``, residual "last": the one
  input channel all three models share; the default "trend" residual only adds two input channels
  to the first convolution and the trend input);
- ``convlstm``: two ``keras.layers.ConvLSTM2D`` (3 x 3, full resolution, the first returning
  sequences) and a 3 x 3 convolution to the increment over the last frame, the filters chosen so the
  parameter count is the closest to cnn-phlstm's.

Each model is compiled as ml/train.py does (``--jit`` adds rows compiled with XLA), warmed up for
``--warmup`` steps (tracing and the first steps are excluded), then trained ``--epochs`` epochs of
``--steps`` steps. Printed per model: parameters, samples/s (wall), the epoch time (wall, median),
process CPU seconds per 100 samples (less sensitive to other work on the machine), the warm-up time.
On a machine with a GPU every model also runs there.

    .venv/bin/python bench/bench_training.py [--size 128] [--tile 64] [--batch 4] [--steps 32]
        [--epochs 2] [--width 8] [--jit] [--models cnn-phlstm cnn-lstm convlstm] [--small]

The micro-benchmark of the recurrent layers alone is bench/bench_peephole.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from _common import cpu_model  # noqa: E402  (bench/ is the script's folder)

from deformation_forecast.core.sample import synthetic_truth  # noqa: E402

TIME_STEP = 5
MODELS = ("cnn-phlstm", "cnn-lstm", "convlstm")


def windows(size: int, tile: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` (frames (N, 5, tile, tile, 1), labels (N, tile, tile, 2) = [target, mask])."""
    stack = synthetic_truth(size).data.astype("float32")  # (dates, size, size), no NaN
    lo = stack.min(axis=(1, 2), keepdims=True)
    hi = stack.max(axis=(1, 2), keepdims=True)
    comp = (2.0 * (stack - lo) / np.maximum(hi - lo, 1e-6) - 1.0).astype("float32")
    stride = tile - tile // 4
    starts = sorted(set(list(range(0, size - tile + 1, stride)) + [size - tile]))
    cand = [(t, r, c) for t in range(len(comp) - TIME_STEP) for r in starts for c in starts]
    pick = np.random.default_rng(seed).choice(len(cand), size=count, replace=count > len(cand))
    x = np.empty((count, TIME_STEP, tile, tile, 1), "float32")
    y = np.ones((count, tile, tile, 2), "float32")
    for n, k in enumerate(pick):
        t, r, c = cand[k]
        x[n, ..., 0] = comp[t : t + TIME_STEP, r : r + tile, c : c + tile]
        y[n, ..., 0] = comp[t + TIME_STEP, r : r + tile, c : c + tile]
    return x, y


def convlstm_params(filters: int) -> int:
    f = filters
    return 4 * (9 * (1 + f) * f + f) + 4 * (9 * 2 * f * f + f) + 9 * f + 1


def build_convlstm(tile: int, target_params: int):
    """Keras's next-frame ConvLSTM2D model, sized to about ``target_params`` weights."""
    import keras

    from deformation_forecast.ml.network import LastStep

    filters = min(range(4, 257), key=lambda f: abs(convlstm_params(f) - target_params))
    inp = keras.Input((TIME_STEP, tile, tile, 1), name="frames")
    x = keras.layers.ConvLSTM2D(filters, 3, padding="same", return_sequences=True, name="convlstm1")(inp)
    x = keras.layers.ConvLSTM2D(filters, 3, padding="same", name="convlstm2")(x)
    x = keras.layers.Conv2D(1, 3, padding="same", name="out")(x)
    out = keras.layers.Add(name="residual")([LastStep(name="last_frame")(inp), x])
    return keras.Model(inp, out, name="convlstm"), filters


def build(name: str, tile: int, width: int, target_params: int):
    from deformation_forecast.ml.network import build_network

    if name == "convlstm":
        model, filters = build_convlstm(tile, target_params)
        return model, f"ConvLSTM2D x2, {filters} filters"
    return build_network(name, TIME_STEP, tile, width, residual="last"), f"width {width}, residual last"


class _Clock:
    def __init__(self):
        import keras

        clock = self

        class Cb(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock.t0, clock.c0 = time.perf_counter(), time.process_time()

            def on_epoch_end(self, epoch, logs=None):
                clock.wall.append(time.perf_counter() - clock.t0)
                clock.cpu.append(time.process_time() - clock.c0)
                clock.loss.append(float((logs or {}).get("loss", float("nan"))))

        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.loss: list[float] = []
        self.callback = Cb()


def run_one(name, device, x, y, a, target_params, jit: bool) -> dict:
    import keras
    import tensorflow as tf

    from deformation_forecast.ml.network import make_loss

    with tf.device(device):
        keras.utils.set_random_seed(a.seed)
        model, desc = build(name, a.tile, a.width, target_params)
        model.compile(
            optimizer=keras.optimizers.Adam(5e-4, clipnorm=1.0),
            loss=make_loss(0.7, a.tile),
            jit_compile=jit,
        )
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(a.batch, drop_remainder=True).repeat()
        ds = ds.prefetch(tf.data.AUTOTUNE)
        t0 = time.perf_counter()
        model.fit(ds, epochs=1, steps_per_epoch=a.warmup, verbose=0, shuffle=False)
        warm = time.perf_counter() - t0
        clock = _Clock()
        model.fit(
            ds, epochs=a.epochs, steps_per_epoch=a.steps, verbose=0, shuffle=False, callbacks=[clock.callback]
        )
    samples = a.steps * a.batch
    epoch = float(np.median(clock.wall))
    return {
        "model": name + (" +XLA" if jit else ""),
        "desc": desc,
        "params": model.count_params(),
        "samples_s": samples / epoch,
        "epoch_s": epoch,
        "cpu_100": 100.0 * float(np.median(clock.cpu)) / samples,
        "warmup_s": warm,
        "loss": clock.loss[-1],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="sample-scene pixels per side")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4, help="ml/train.py's default batch size")
    ap.add_argument("--steps", type=int, default=32, help="training steps per measured epoch")
    ap.add_argument("--epochs", type=int, default=2, help="measured epochs (the median is reported)")
    ap.add_argument("--warmup", type=int, default=3, help="steps before timing (tracing included)")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--jit", action="store_true", help="also compile every model with XLA")
    ap.add_argument("--cpu-only", action="store_true", help="skip the GPU even when one is visible")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--small", action="store_true", help="quick: 64 px, tiles of 32, width 4, 4 steps, 1 epoch"
    )
    a = ap.parse_args(argv)
    if a.small:
        a.size, a.tile, a.width, a.steps, a.epochs, a.warmup = 64, 32, 4, 4, 1, 1

    import keras
    import tensorflow as tf

    gpus = [] if a.cpu_only else tf.config.list_physical_devices("GPU")
    devices = [("CPU", "/CPU:0")] + ([(f"GPU {gpus[0].name}", "/GPU:0")] if gpus else [])
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}; TensorFlow {tf.__version__}, Keras {keras.__version__}; "
        f"devices: {', '.join(d[0] for d in devices)}"
        + ("" if gpus else " (no GPU visible)")
        + f"; TF intra-op threads {threads}"
    )
    x, y = windows(a.size, a.tile, a.steps * a.batch, a.seed)
    print(
        f"windows: sample scene {a.size} x {a.size} px, 156 dates, tiles {a.tile}, time step {TIME_STEP}; "
        f"{len(x)} samples, batch {a.batch}, {a.steps} steps per epoch, {a.epochs} measured epochs "
        f"after {a.warmup} warm-up steps"
    )
    from deformation_forecast.ml.network import build_network

    target = build_network("cnn-phlstm", TIME_STEP, a.tile, a.width, residual="last").count_params()
    rows = []
    for dev_name, dev in devices:
        for name in a.models:
            for jit in (False, True) if a.jit else (False,):
                r = run_one(name, dev, x, y, a, target, jit)
                r["device"] = dev_name
                rows.append(r)
                print(
                    f"  {dev_name} {r['model']}: {r['samples_s']:.1f} samples/s, epoch {r['epoch_s']:.2f} s",
                    flush=True,
                )
    print()
    hdr = (
        f"| {'device':8s} | {'model':16s} | {'':30s} | weights | samples/s | epoch s | CPU s/100 samples "
        f"| warm-up s | loss, last epoch |"
    )
    print(hdr)
    print("|" + "|".join("-" * len(c) for c in hdr.split("|")[1:-1]) + "|")
    for r in rows:
        print(
            f"| {r['device'][:8]:8s} | {r['model']:16s} | {r['desc']:30s} | {r['params']:7d} | {r['samples_s']:9.1f} "
            f"| {r['epoch_s']:7.2f} | {r['cpu_100']:17.2f} | {r['warmup_s']:9.1f} | {r['loss']:16.4f} |"
        )
    print(
        f"\nepoch = {a.steps} steps x {a.batch} samples; samples/s and epoch s: wall time; warm-up: tracing and "
        f"{a.warmup} step(s), excluded."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
