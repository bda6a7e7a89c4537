"""The forecasting networks (Fig. 7): time-distributed CNN encoder, stacked (peephole) LSTM, decoder.

Architectures (``ARCHITECTURE``):

``cnn-phlstm-paper``
    Fig. 7 as published: per date a CNN encoder (conv + 2x2 max-pool stages, channels doubling up to
    ``16 * width``) and global average pooling to ONE vector per date; three stacked PhLSTM layers
    (the last returns only its final state); a decoder that reshapes a dense projection to the
    bottleneck grid and alternates 2x upsampling with a 2x2 convolution (kernel = upsampling factor),
    ReLU, channels shrinking to 1. The output is the next compressed frame.
``cnn-phlstm`` (default)
    The same encoder and PhLSTM cell, but (1) a spatially resolved bottleneck: the stacked PhLSTM runs
    over time at every cell of the bottleneck grid (weights shared), instead of squeezing a date into
    one vector; (2) skip connections from the encoder of the last input date to each decoder stage;
    (3) a residual output. ``residual="trend"`` (the default, see ml/trend.py): three input channels
    per date and a second input, the per-pixel linear trend extrapolated to the target date; the
    output is that trend plus ``out_scale`` times a last layer that starts at zero (an untrained
    network is the linear-trend forecast). ``residual="last"`` (model files of format 1): one channel,
    output = last input frame + increment.
``cnn-lstm`` / ``cnn-lstm-paper``
    The same two networks with Keras's standard LSTM (cuDNN kernel on a GPU), the paper's comparison.

Depth adapts to the tile: ``depth = log2(tile / 4)`` (at most 5) downsamplings, so a 450 x 450 paper
scene (tiles of 128) and a 32 x 32 test scene use the same code.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ..jobs import ARCHITECTURES  # declared once, with TrainJob's ARCHITECTURE parameter
from .peephole import PACKAGE, phlstm

PAPER_UNITS = (512, 256, 128)
RESIDUALS = ("none", "last", "trend")
TREND_CHANNELS = 3  # ml/trend.py: compressed frame, residual over the trend, trend slope


def default_residual(architecture: str) -> str:
    """ "trend" for the improved networks, "none" for the paper's."""
    return "none" if architecture.endswith("-paper") else "trend"


@keras.saving.register_keras_serializable(package=PACKAGE)
class LastStep(keras.layers.Layer):
    """(B, T, ...) -> (B, ...): the last date of a time-distributed tensor."""

    def call(self, x):
        return x[:, -1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class CellsToBatch(keras.layers.Layer):
    """(B, T, b, b, C) -> (B * b * b, T, C): one sequence per bottleneck cell.

    (A plain reshape: ``TimeDistributed(RNN)`` does the same through a vectorized map whose graph
    takes over a minute to build on a small CPU.)
    """

    def call(self, x):
        shape = ops.shape(x)
        t, c = x.shape[1], x.shape[-1]
        x = ops.transpose(x, (0, 2, 3, 1, 4))
        return ops.reshape(x, (shape[0] * x.shape[1] * x.shape[2], t, c))

    def compute_output_shape(self, input_shape):
        return (None, input_shape[1], input_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchToCells(keras.layers.Layer):
    """(B * b * b, U) -> (B, b, b, U), the inverse of :class:`CellsToBatch`."""

    def __init__(self, cells: int, **kwargs):
        super().__init__(**kwargs)
        self.cells = int(cells)

    def call(self, x):
        return ops.reshape(x, (-1, self.cells, self.cells, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (None, self.cells, self.cells, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "cells": self.cells}


def depth_for(tile: int) -> int:
    return int(max(1, min(5, math.floor(math.log2(max(tile, 8) / 4)))))


def tile_multiple(tile: int) -> int:
    """Tiles must be a multiple of 2**depth."""
    return 2 ** depth_for(tile)


def _rnn(cell_type: str, units: int, return_sequences: bool, name: str, time_step: int):
    if cell_type == "phlstm":
        return phlstm(units, return_sequences, name, time_step)  # unrolled when short
    # not unrolled: that would lose the cuDNN kernel on a GPU
    return keras.layers.LSTM(units, return_sequences=return_sequences, name=name)


def build_network(
    architecture: str = "cnn-phlstm",
    time_step: int = 5,
    tile: int = 64,
    width: int = 8,
    lstm_units: tuple[int, ...] | None = None,
    residual: str | None = None,
    out_scale: float = 1.0,
) -> keras.Model:
    """A model mapping (B, time_step, tile, tile, C) frames to the next frame (B, tile, tile, 1).

    ``residual``: "none" (the paper), "last" (increment over the last input frame) or "trend"
    (inputs [frames with C = 3 channels, trend (B, tile, tile, 1)]; see the module doc); None:
    :func:`default_residual`.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; one of {ARCHITECTURES}")
    depth = depth_for(tile)
    if tile % (2**depth):
        raise ValueError(f"tile {tile} is not a multiple of {2**depth}")
    cell_type = "phlstm" if "phlstm" in architecture else "lstm"
    paper = architecture.endswith("-paper")
    residual = residual or default_residual(architecture)
    if residual not in RESIDUALS:
        raise ValueError(f"unknown residual {residual!r}; one of {RESIDUALS}")
    if paper and residual != "none":
        raise ValueError(f"{architecture} is the paper's network: residual must be 'none'")
    chans = [width * 2**k for k in range(depth)]
    b = tile // 2**depth
    n_in = TREND_CHANNELS if residual == "trend" else 1
    inp = keras.Input((time_step, tile, tile, n_in), name="frames")
    x = inp
    skips = []
    for k, c in enumerate(chans):
        x = keras.layers.TimeDistributed(
            keras.layers.Conv2D(c, 3, padding="same", activation="relu"), name=f"enc_conv{k + 1}"
        )(x)
        skips.append(x)
        x = keras.layers.TimeDistributed(keras.layers.MaxPooling2D(2), name=f"enc_pool{k + 1}")(x)
    if paper:
        units = tuple(lstm_units or PAPER_UNITS)
        v = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D(), name="enc_gap")(x)
        for k, u in enumerate(units):
            v = _rnn(cell_type, u, k < len(units) - 1, f"{cell_type}{k + 1}", time_step)(v)
        y = keras.layers.Dense(b * b * chans[-1], activation="relu", name="dec_dense")(v)
        y = keras.layers.Reshape((b, b, chans[-1]), name="dec_reshape")(y)
    else:
        units = tuple(lstm_units or (2 * chans[-1], chans[-1]))
        seq = CellsToBatch(name="cells_to_batch")(x)  # (B * cells, T, C)
        for k, u in enumerate(units):
            seq = _rnn(cell_type, u, k < len(units) - 1, f"{cell_type}{k + 1}", time_step)(seq)
        y = BatchToCells(b, name="batch_to_cells")(seq)
    for k in range(depth - 1, -1, -1):
        y = keras.layers.UpSampling2D(2, name=f"dec_up{k + 1}")(y)
        y = keras.layers.Conv2D(chans[k], 2, padding="same", activation="relu", name=f"dec_conv{k + 1}")(y)
        if not paper:
            y = keras.layers.Concatenate(name=f"dec_skip{k + 1}")(
                [y, LastStep(name=f"skip{k + 1}")(skips[k])]
            )
            y = keras.layers.Conv2D(chans[k], 3, padding="same", activation="relu", name=f"dec_mix{k + 1}")(y)
    # the output head is float32 also under mixed precision (ml/distribute.py): the loss and the
    # trend / last frame it is added to keep their precision
    f32 = "float32"
    if residual == "trend":
        out = keras.layers.Conv2D(
            1, 1, kernel_initializer="zeros", bias_initializer="zeros", name="dec_out", dtype=f32
        )(y)
        out = keras.layers.Rescaling(float(out_scale), name="out_scale", dtype=f32)(out)
        trend = keras.Input((tile, tile, 1), name="trend")
        out = keras.layers.Add(name="residual", dtype=f32)([trend, out])
        return keras.Model([inp, trend], out, name=architecture.replace("-", "_"))
    out = keras.layers.Conv2D(1, 1, name="dec_out", dtype=f32)(y)
    if residual == "last":
        out = keras.layers.Add(name="residual", dtype=f32)([LastStep(name="last_frame", dtype=f32)(inp), out])
    return keras.Model(inp, out, name=architecture.replace("-", "_"))


def ms_ssim_scales(tile: int, filter_size: int = 11) -> int:
    """How many MS-SSIM scales a tile allows (at most 5)."""
    m = 1
    while m < 5 and tile / 2**m >= filter_size:
        m += 1
    return m


def _gauss(size: int, sigma: float = 1.5):
    import numpy as np

    x = np.arange(size, dtype="float64") - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    k = np.outer(g, g) / np.outer(g, g).sum()
    return k[:, :, None, None].astype("float32")


def ms_ssim_tf(x, y, max_val: float, power: tuple[float, ...], filter_size: int, eps: float = 1e-4):
    """MS-SSIM of (B, H, W, 1) images as tf.image.ssim_multiscale, but with every factor clamped to
    `eps` before its power: the library's relu(x) ** w has an infinite gradient at 0, which turned
    the training loss into NaN after a few epochs on the sample scene."""
    import tensorflow as tf

    k = tf.constant(_gauss(filter_size))
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2

    def conv(a):
        return tf.nn.conv2d(a, k, strides=1, padding="VALID")

    out = 1.0
    for i, w in enumerate(power):
        mx, my = conv(x), conv(y)
        sxx, syy, sxy = conv(x * x) - mx * mx, conv(y * y) - my * my, conv(x * y) - mx * my
        cs = tf.reduce_mean((2 * sxy + c2) / (sxx + syy + c2), axis=(1, 2, 3))
        if i == len(power) - 1:
            lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
            ssim = tf.reduce_mean(lum * (2 * sxy + c2) / (sxx + syy + c2), axis=(1, 2, 3))
            out = out * tf.maximum(ssim, eps) ** w
        else:
            out = out * tf.maximum(cs, eps) ** w
            x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
            y = tf.nn.avg_pool2d(y, 2, 2, "VALID")
    return out


def make_loss(mae_weight: float = 0.7, tile: int = 64):
    """Eq. 11: w * MAE + (1 - w) * (1 - MS-SSIM), masked; y_true is (B, S, S, 2) = [target, mask]."""
    scales = ms_ssim_scales(tile)
    filt = min(11, tile)
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)[:scales]
    power = tuple(w / sum(weights) for w in weights)
    w_mae = float(mae_weight)

    def loss(y_true, y_pred):
        target, mask = y_true[..., :1], y_true[..., 1:]
        err = ops.sum(ops.abs(y_pred - target) * mask, axis=(1, 2, 3)) / ops.maximum(
            ops.sum(mask, axis=(1, 2, 3)), 1.0
        )
        if w_mae >= 1.0:
            return err
        pred = y_pred * mask + target * (1.0 - mask)
        # compressed frames live in [-1, 1]: shift to [0, 1] with max_val 1
        msssim = ms_ssim_tf((target + 1.0) / 2.0, (pred + 1.0) / 2.0, 1.0, power, filt)
        return w_mae * err + (1.0 - w_mae) * (1.0 - msssim)

    return loss


def masked_mae(y_true, y_pred):
    target, mask = y_true[..., :1], y_true[..., 1:]
    return ops.sum(ops.abs(y_pred - target) * mask) / ops.maximum(ops.sum(mask), 1.0)


def ssim_metric(tile: int):
    import tensorflow as tf

    filt = min(11, tile)

    def ssim(y_true, y_pred):
        target, mask = y_true[..., :1], y_true[..., 1:]
        pred = y_pred * mask + target * (1.0 - mask)
        return tf.reduce_mean(tf.image.ssim((target + 1.0) / 2.0, (pred + 1.0) / 2.0, 1.0, filter_size=filt))

    return ssim
