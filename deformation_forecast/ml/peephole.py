"""Peephole LSTM cell (PhLSTM), eqs. 5-10 of He et al. 2022, as a Keras 3 RNN cell.

    f_t = sigma(W_xf x_t + W_hf h_{t-1} + w_cf * C_{t-1} + b_f)        (5)
    i_t = sigma(W_xi x_t + W_hi h_{t-1} + w_ci * C_{t-1} + b_i)        (6)
    C~_t = tanh(W_xc x_t + W_hc h_{t-1} + b_c)                         (7)
    C_t = f_t * C_{t-1} + i_t * C~_t                                   (8)
    o_t = sigma(W_xo x_t + W_ho h_{t-1} + w_co * C_t + b_o)            (9)
    h_t = o_t * tanh(C_t)                                              (10)

The peephole weights w_cf, w_ci, w_co are diagonal (one per unit, Gers & Schmidhuber), so the gates
f and i see C_{t-1} and the gate o sees the updated C_t. Use it through ``keras.layers.RNN(cell)``.
Keras 3 dropped ``PeepholeLSTMCell``; this one is registered for saving and safe-mode loading.

Speed (bench/bench_peephole.py, the networks' two layers, time step 5, CPU): the gates are taken with
one ``split`` and the peepholes with one ``unstack`` (their gradients are one concatenation, where
slices cost a zero-filled tensor each), and :func:`phlstm` unrolls short sequences; together -31 to
-37 % CPU time for forward + backward, as fast as Keras's LSTM as ``cnn-lstm`` uses it. Tried and not
kept: one matmul of concat([x, h]) with a stacked kernel (slower: a concatenation of the kernels and
of the inputs per step), the input projection of all dates at once before the loop (no faster at
these sizes), XLA on the layers (forward -5 to -25 %, forward + backward no faster, 10 s of compilation).
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "deformation_forecast"
# longer sequences keep the symbolic loop (graph size and compile time grow with the unrolled length)
UNROLL_MAX_STEPS = 12


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeepholeLSTMCell(keras.layers.Layer):
    """One PhLSTM memory block; kernels are packed in the Keras LSTM order [i, f, c, o]."""

    def __init__(
        self,
        units: int,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        peephole_initializer=None,
        unit_forget_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.peephole_initializer = keras.initializers.get(
            peephole_initializer or {"class_name": "RandomUniform", "config": {"minval": -0.1, "maxval": 0.1}}
        )
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_size = [self.units, self.units]  # h, C
        self.output_size = self.units

    def build(self, input_shape):
        dim = int(input_shape[-1])
        u = self.units
        self.kernel = self.add_weight(shape=(dim, 4 * u), initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(u, 4 * u), initializer=self.recurrent_initializer, name="recurrent_kernel"
        )
        # diagonal peepholes, shape (3, units): rows are w_ci, w_cf, w_co
        self.peephole = self.add_weight(shape=(3, u), initializer=self.peephole_initializer, name="peephole")
        if self.unit_forget_bias:

            def bias_init(shape, dtype=None):
                return ops.concatenate(
                    [ops.zeros((u,), dtype), ops.ones((u,), dtype), ops.zeros((2 * u,), dtype)]
                )

        else:
            bias_init = "zeros"
        self.bias = self.add_weight(shape=(4 * u,), initializer=bias_init, name="bias")
        self.built = True

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states[0], states[1]
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias
        # split/unstack, not slicing: a slice's gradient is a full-size zero tensor per gate, a split's is
        # one concatenation (fwd+bwd of the networks' PhLSTM stack: -20 % CPU time, bench/bench_peephole.py)
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        w_ci, w_cf, w_co = ops.unstack(self.peephole, 3, axis=0)
        i = ops.sigmoid(zi + w_ci * c_prev)  # (6)
        f = ops.sigmoid(zf + w_cf * c_prev)  # (5)
        c = f * c_prev + i * ops.tanh(zc)  # (7), (8)
        o = ops.sigmoid(zo + w_co * c)  # (9)
        h = o * ops.tanh(c)  # (10)
        return h, [h, c]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in range(2)]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            units=self.units,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            peephole_initializer=keras.initializers.serialize(self.peephole_initializer),
            unit_forget_bias=self.unit_forget_bias,
        )
        return cfg


def unroll_for(time_step: int | None) -> bool:
    """Unroll the time loop of sequences of at most :data:`UNROLL_MAX_STEPS` dates (known length)."""
    return time_step is not None and 0 < int(time_step) <= UNROLL_MAX_STEPS


def phlstm(
    units: int, return_sequences: bool = False, name: str | None = None, time_step: int | None = None
) -> keras.layers.RNN:
    """A PhLSTM layer: ``keras.layers.RNN`` around :class:`PeepholeLSTMCell`.

    ``time_step``: the sequence length when known; short sequences (:func:`unroll_for`) are unrolled,
    which on a CPU saves the ``while_loop`` machinery and, in training, its gradient's (fwd+bwd of the
    networks' stack at time step 5: another -10 to -20 % CPU time). The weights and the cell are the same either way; ``unroll``
    is only a flag of the layer's config, so model files written with or without it load alike.
    """
    return keras.layers.RNN(
        PeepholeLSTMCell(units), return_sequences=return_sequences, unroll=unroll_for(time_step), name=name
    )
