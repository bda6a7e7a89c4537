"""Micro-benchmark: the PhLSTM layers of the network against Keras's LSTM of the same size.

The shapes are those of the default ``cnn-phlstm`` network (ml/network.py, tile 64, width 8): the
CNN encoder leaves a 4 x 4 bottleneck of 64 features per date, the stacked recurrent layers (128 units
returning sequences, then 64) run over the time step 5 at each of the 16 cells of a tile, so a batch of
B tiles is 16 B sequences (5, 64). Rows: the PhLSTM cell as first written (commit 5e35b62: gates by
slicing, ``while_loop``), the current cell with a loop and unrolled (what the networks build for time
steps <= 12), Keras's LSTM as ``cnn-lstm`` builds it (loop; cuDNN on a GPU) and unrolled, and the
same compiled with XLA (``jit_compile``). Per batch: forward (inference) and forward + backward
(gradients of all weights), each a ``tf.function`` traced before timing.

CPU columns: milliseconds of process CPU time per batch, the minimum over the repeats, with one
TensorFlow thread (``--threads``). Ops this small do not spread over cores, and CPU time is what a
shared machine does not distort (the wall time, printed too, is the median). GPU column: wall time
on the first visible GPU, or "n/a: no GPU".

    .venv/bin/python bench/bench_peephole.py [--tiles 4 32] [--repeats 60] [--threads 1] [--small]
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

TIME_STEP, FEATURES, UNITS, CELLS = 5, 64, (128, 64), 16


def variants():
    import keras
    from keras import ops

    from deformation_forecast.ml.peephole import PeepholeLSTMCell, phlstm

    class SlicedCell(PeepholeLSTMCell):
        """The cell of commit 5e35b62 (same weights; gates taken by slicing)."""

        def call(self, inputs, states, training=False):
            h_prev, c_prev = states[0], states[1]
            z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias
            u = self.units
            zi, zf, zc, zo = z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
            i = ops.sigmoid(zi + self.peephole[0] * c_prev)
            f = ops.sigmoid(zf + self.peephole[1] * c_prev)
            c = f * c_prev + i * ops.tanh(zc)
            o = ops.sigmoid(zo + self.peephole[2] * c)
            h = o * ops.tanh(c)
            return h, [h, c]

    def stack(make):
        inp = keras.Input((TIME_STEP, FEATURES))
        x = inp
        for k, u in enumerate(UNITS):
            x = make(u, k < len(UNITS) - 1)(x)
        return keras.Model(inp, x)

    return [
        (
            "PhLSTM 5e35b62 (slices, loop)",
            False,
            lambda: stack(lambda u, rs: keras.layers.RNN(SlicedCell(u), rs)),
        ),
        ("PhLSTM loop", False, lambda: stack(lambda u, rs: phlstm(u, rs))),
        (
            "PhLSTM unrolled (networks)",
            False,
            lambda: stack(lambda u, rs: phlstm(u, rs, time_step=TIME_STEP)),
        ),
        ("PhLSTM unrolled + XLA", True, lambda: stack(lambda u, rs: phlstm(u, rs, time_step=TIME_STEP))),
        (
            "LSTM loop (cnn-lstm)",
            False,
            lambda: stack(lambda u, rs: keras.layers.LSTM(u, return_sequences=rs)),
        ),
        (
            "LSTM unrolled",
            False,
            lambda: stack(lambda u, rs: keras.layers.LSTM(u, return_sequences=rs, unroll=True)),
        ),
        ("LSTM loop + XLA", True, lambda: stack(lambda u, rs: keras.layers.LSTM(u, return_sequences=rs))),
    ]


def functions(model, jit: bool):
    import tensorflow as tf

    @tf.function(jit_compile=jit)
    def forward(x):
        return model(x, training=False)

    @tf.function(jit_compile=jit)
    def forward_backward(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
        return tape.gradient(loss, model.trainable_variables)

    return forward, forward_backward


def time_fn(fn, x, repeats: int) -> tuple[float, float]:
    """(min CPU ms, median wall ms) per call; the result is fetched to the host each time."""
    import tensorflow as tf

    for _ in range(3):
        tf.nest.map_structure(lambda t: t.numpy(), fn(x))
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn(x))
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return 1e3 * min(cpu), 1e3 * float(np.median(wall))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tiles", type=int, nargs="+", default=[4, 32], help="tiles per batch (16 sequences each)"
    )
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3, help="the repeats are spread over this many rounds")
    ap.add_argument("--threads", type=int, default=1, help="TensorFlow intra/inter-op threads (0: default)")
    ap.add_argument("--small", action="store_true", help="quick: 4 tiles, 10 repeats, one round")
    a = ap.parse_args(argv)
    if a.small:
        a.tiles, a.repeats, a.rounds = [4], 10, 1

    import keras
    import tensorflow as tf

    if a.threads:
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    gpus = tf.config.list_physical_devices("GPU")
    devices = [("CPU", "/CPU:0")] + ([("GPU", "/GPU:0")] if gpus else [])
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}; TensorFlow {tf.__version__}, Keras {keras.__version__}; "
        f"GPU: {', '.join(g.name for g in gpus) if gpus else 'none'}; TF threads {a.threads or 'default'}"
    )
    print(
        f"layers: {UNITS[0]} (sequences) -> {UNITS[1]} units over ({TIME_STEP}, {FEATURES}) sequences, "
        f"{CELLS} per tile"
    )
    rng = np.random.default_rng(0)
    results: dict[tuple[str, int, str], tuple] = {}
    for tiles in a.tiles:
        x = rng.normal(size=(tiles * CELLS, TIME_STEP, FEATURES)).astype("float32")
        entries = []
        for name, jit, build in variants():
            for dev_name, dev in devices:
                with tf.device(dev):
                    keras.utils.set_random_seed(0)
                    model = build()
                    xt = tf.constant(x)
                    fns = functions(model, jit)
                    t0 = time.perf_counter()
                    for fn in fns:
                        fn(xt)
                    entries.append(
                        (name, dev_name, dev, fns, xt, model.count_params(), time.perf_counter() - t0)
                    )
        per_round = max(1, a.repeats // a.rounds)
        acc: dict[tuple[str, str], list] = {}
        for _ in range(a.rounds):  # interleaved, so a busy spell of the machine hits every row alike
            for name, dev_name, dev, fns, xt, _n, _c in entries:
                with tf.device(dev):
                    acc.setdefault((name, dev_name), []).append([time_fn(fn, xt, per_round) for fn in fns])
        for name, dev_name, _dev, _fns, _xt, n_params, compile_s in entries:
            runs = acc[(name, dev_name)]
            fwd = (min(r[0][0] for r in runs), float(np.median([r[0][1] for r in runs])))
            fb = (min(r[1][0] for r in runs), float(np.median([r[1][1] for r in runs])))
            results[(name, tiles, dev_name)] = (fwd, fb, n_params, compile_s)

    names = [v[0] for v in variants()]
    for tiles in a.tiles:
        print(f"\nbatch {tiles} tiles = {tiles * CELLS} sequences; ms per batch")
        hdr = (
            f"| {'layers':32s} | weights | CPU fwd | CPU fwd+bwd | wall fwd | wall fwd+bwd "
            f"| {'GPU fwd':11s} | {'GPU fwd+bwd':11s} | trace s |"
        )
        print(hdr)
        print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
        base = results[(names[0], tiles, "CPU")][1][0]
        for name in names:
            fwd, fb, n_params, compile_s = results[(name, tiles, "CPU")]
            g = results.get((name, tiles, "GPU"))
            gcol = f"{g[0][1]:11.2f} | {g[1][1]:11.2f}" if g else "n/a: no GPU | n/a: no GPU"
            print(
                f"| {name:32s} | {n_params:7d} | {fwd[0]:7.2f} | {fb[0]:6.2f} {fb[0] / base:4.2f}x "
                f"| {fwd[1]:8.2f} | {fb[1]:12.2f} | {gcol} | {compile_s:7.1f} |"
            )
    print("\nCPU: min process CPU ms; wall: median; 'Nx': fwd+bwd CPU time relative to the first row.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
