"""Weight-normed convolutions, Snake, and the small layer protocol the blocks are built on.

Every module here works on channels-last arrays ``[B, T, C]``. Parameters keep the original
PyTorch layouts exactly (``weight_v`` ``[out, in, k]`` for a conv, ``[in, out, k]`` for a
transposed conv; ``weight_g`` ``[dim0, 1, 1]``; Snake ``alpha`` ``[1, C, 1]``), so importing a
PyTorch state dict is a renaming of keys and nothing else. The training state holds the same
numbers rearranged into the layout the convolution runs (``kernel_v`` / ``kernel_g``,
:mod:`dac_jax.nn.layout`); both layers read either form.

:class:`WNConv1d` is the codecs' conv (padded/unpadded modes, transposed, dilated, folded for
inference); :class:`WNConv` is a plain ``nn.Conv1d`` / ``nn.Conv2d`` (grouped, ``[B, T, C]`` or
``[B, H, W, C]``) described by a :class:`ConvSpec`, the discriminator's. Both create their
parameters the same way (PyTorch's default init).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dac_jax.nn import precision, winograd
from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.trig import sin_squared


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def weight_norm(v: jax.Array, g: jax.Array) -> jax.Array:
    """``w = v * (g / ||v||)``, the norm over every axis but 0, no epsilon (PyTorch's legacy weight_norm).

    For a conv ``v`` is ``[out, in, k]`` (a norm per output channel); for a transposed conv it is
    ``[in, out, k]``, so the norm is per *input* channel, as in the original.
    """
    return v * (g / _l2_norm_except_0(v))


def conv_weight_norm(kernel_v: jax.Array, kernel_g: jax.Array) -> jax.Array:
    """:func:`weight_norm` of parameters in the conv layout (:mod:`dac_jax.nn.layout`): the norm is
    over every axis on which ``kernel_g`` has size 1 (its one other axis holds the channel the
    norm belongs to)."""
    axes = tuple(a for a, n in enumerate(kernel_g.shape) if n == 1)
    return kernel_v * (kernel_g / jnp.sqrt(jnp.sum(jnp.square(kernel_v), axis=axes, keepdims=True)))


def snake(x: jax.Array, alpha: jax.Array) -> jax.Array:
    """Snake activation ``x + 1 / (alpha + 1e-9) * sin(alpha * x) ** 2``; ``alpha`` broadcasts over x.

    ``sin ** 2`` comes from :func:`dac_jax.nn.trig.sin_squared` (XLA's CPU ``sin`` is slow).
    """
    return x + jnp.reciprocal(alpha + 1e-9) * sin_squared(alpha * x)


def fold_kernel(weight: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """A PyTorch-layout weight rearranged into the kernel :func:`conv1d_folded` runs.

    * a conv ``[out, in, k]`` becomes ``[k, in, out]`` (XLA's ``WIO``, channels-last);
    * an undilated transposed conv ``[in, out, k]`` becomes the polyphase kernel
      ``[J, in, s * out]`` of :func:`conv_transpose_polyphase`;
    * a dilated transposed conv becomes its time-flipped ``[k, in, out]``.

    Inference folds every weight once per load (:mod:`dac_jax.nn.fold`): on XLA's CPU backend the
    per-call rearrangement of a large kernel costs as much as a short chunk's convolution.
    """
    xp = np if isinstance(weight, np.ndarray) else jnp  # numpy when folding once per load
    if not geometry.transposed:
        return xp.transpose(weight, (2, 1, 0))
    if geometry.dilation != 1:
        return xp.transpose(xp.flip(weight, axis=-1), (2, 0, 1))
    s, k = geometry.stride, geometry.kernel
    n_in, n_out, _ = weight.shape
    taps = -(-k // s)
    w = xp.pad(weight, ((0, 0), (0, 0), (0, taps * s - k)))  # [in, out, J*s]
    w = w.reshape(n_in, n_out, taps, s)[:, :, ::-1]  # taps reversed: a correlation in time
    return xp.transpose(w, (2, 0, 3, 1)).reshape(taps, n_in, s * n_out)  # [J, in, s*out]


def conv1d(x: jax.Array, weight: jax.Array, geometry: ConvGeometry, padded: bool) -> jax.Array:
    """1-D convolution of channels-last ``x [B, T, Cin]`` with a PyTorch-layout weight."""
    return conv1d_folded(x, fold_kernel(weight, geometry), geometry, padded)


def conv1d_folded(x: jax.Array, kernel: jax.Array, geometry: ConvGeometry, padded: bool) -> jax.Array:
    """:func:`conv1d` with the kernel already rearranged by :func:`fold_kernel`.

    A transposed convolution runs in polyphase form (:func:`conv_transpose_polyphase`) when
    undilated; otherwise as a plain convolution over the input dilated by the stride, with the
    flipped kernel and the padding from :meth:`ConvGeometry.pads`.
    """
    if geometry.transposed and geometry.dilation == 1:
        return conv_transpose_polyphase(x, kernel, geometry, padded)
    x, accumulate = precision.operands(x, kernel)
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1,) if geometry.transposed else (geometry.stride,),
        padding=[geometry.pads(padded)],
        lhs_dilation=(geometry.stride,) if geometry.transposed else None,
        rhs_dilation=(geometry.dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"),
        preferred_element_type=accumulate,
    )


def conv_transpose_polyphase(x: jax.Array, kernel: jax.Array, geometry: ConvGeometry, padded: bool) -> jax.Array:
    """PyTorch's ConvTranspose1d (``W [in, out, k]``, stride s, dilation 1) as one stride-1 convolution.

    The full (uncropped) output splits into s phases: ``z[q*s + r] = sum_j x[q - j] W[j*s + r]``,
    so one convolution with ``J = ceil(k / s)`` taps and ``s * out`` output channels (``kernel``,
    from :func:`fold_kernel`) computes every phase, and a reshape interleaves them::

        x [B, L, in] --conv, J taps, pad J-1 both sides--> [B, L+J-1, s*out] --reshape--> z [B, (L+J-1)*s, out]

    and the result is ``z[p : p + L_out]`` (``p`` the padding in padded mode, 0 unpadded). XLA's CPU
    backend runs the equivalent stride-dilated convolution up to 10x slower, worst at short inputs.
    """
    s = geometry.stride
    taps = kernel.shape[0]
    n_out = kernel.shape[2] // s
    y = full_correlation(x, kernel)
    batch, length = x.shape[0], x.shape[1]
    z = y.reshape(batch, (length + taps - 1) * s, n_out)
    start = geometry.padding if padded else 0
    return z[:, start : start + geometry.output_length(length, padded)]


@jax.custom_vjp
def full_correlation(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``y[b, q] = sum_j x[b, q + j - (J - 1)] @ kernel[j]`` for every ``q`` in ``[0, L + J - 1)``:
    the stride-1 convolution of ``x [B, L, in]`` zero-padded by ``J - 1`` on both sides with
    ``kernel [J, in, out]`` (what :func:`conv_transpose_polyphase` runs).

    Its gradient is written out (:func:`_full_correlation_backward`) because XLA's CPU backend
    derives the kernel's gradient as a convolution with the whole signal as its window, which for
    the decoder's upsampling convolutions ran 10-90x slower than the matrix product it is
    (measured: 8.0 s instead of 0.09 s for ``[4, 760, 384]`` at stride 4), and made the training
    step's backward pass through the decoder most of the step. The forward pass is unchanged.
    """
    taps = kernel.shape[0]
    x, accumulate = precision.operands(x, kernel)
    return lax.conv_general_dilated(
        x, kernel, window_strides=(1,), padding=[(taps - 1, taps - 1)], dimension_numbers=("NWC", "WIO", "NWC"),
        preferred_element_type=accumulate,
    )


def _full_correlation_forward(x, kernel):
    return full_correlation(x, kernel), (x, kernel)


def _full_correlation_backward(residuals, grad):
    x, kernel = residuals
    taps, length = kernel.shape[0], x.shape[1]
    padded = jnp.pad(x, ((0, 0), (taps - 1, taps - 1), (0, 0)))
    outputs = length + taps - 1
    # d kernel[j] = sum over batch and time of x_padded[q + j] (x) grad[q]: one matrix product per tap
    d_kernel = jnp.stack([jnp.einsum("bti,bto->io", padded[:, j : j + outputs], grad) for j in range(taps)])
    # d x[t] = sum_j grad[t + J - 1 - j] @ kernel[j]^T: a valid correlation with the flipped kernel
    if kernel.size > grad.size:
        # a kernel larger than the signal (the first upsampling convs, over a few frames): one
        # product per tap reads the kernel as it lies, where the correlation would first transpose
        # it (measured at the 16 kHz model's first one, [2, 1536, 6144] over 19 frames: 67 vs 126 ms)
        d_x = sum(jnp.einsum("bto,io->bti", grad[:, taps - 1 - j : taps - 1 - j + length], kernel[j])
                  for j in range(taps))
    else:
        d_x = lax.conv_general_dilated(
            grad, jnp.transpose(jnp.flip(kernel, 0), (0, 2, 1)), window_strides=(1,), padding=[(0, 0)],
            dimension_numbers=("NWC", "WIO", "NWC"),
        )
    return d_x, d_kernel


full_correlation.defvjp(_full_correlation_forward, _full_correlation_backward)


_DIMENSION_NUMBERS = {1: ("NWC", "OIW", "NWC"), 2: ("NHWC", "OIHW", "NHWC")}
_CONV_LAYOUT_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


def conv_nd(x: jax.Array, weight: jax.Array, stride: Sequence[int], padding: Sequence[int], groups: int = 1,
            conv_layout: bool = False) -> jax.Array:
    """``nn.Conv1d`` / ``nn.Conv2d`` (undilated, zero padding ``padding`` on both sides of each
    axis, ``groups``) of channels-last ``x [B, T, Cin]`` / ``[B, H, W, Cin]`` with a PyTorch-layout
    weight ``[out, in / groups, *kernel]``, or with ``conv_layout`` a kernel ``[*kernel, in / groups, out]``.
    A strided ungrouped 2-D one runs as :func:`strided_conv2d` (the same forward, a faster gradient)."""
    if weight.ndim == 4 and groups == 1 and any(s > 1 for s in stride):
        kernel = weight if conv_layout else jnp.transpose(weight, (2, 3, 1, 0))  # OIHW -> HWIO
        return strided_conv2d(x, kernel, tuple(stride), tuple(padding))
    numbers = _CONV_LAYOUT_DIMENSION_NUMBERS if conv_layout else _DIMENSION_NUMBERS
    return lax.conv_general_dilated(
        x,
        weight,
        window_strides=tuple(stride),
        padding=[(p, p) for p in padding],
        dimension_numbers=numbers[weight.ndim - 2],
        feature_group_count=groups,
    )


def _conv2d(x: jax.Array, kernel: jax.Array, stride: tuple[int, int], padding: tuple[int, int]) -> jax.Array:
    return lax.conv_general_dilated(
        x, kernel, window_strides=stride, padding=[(p, p) for p in padding], dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _space_to_depth(x: jax.Array, kernel: jax.Array, axis: int, stride: int, pad: int, out: int):
    """One strided spatial ``axis`` of a convolution turned into channels: ``x`` zero-padded by
    ``pad`` and cut to ``(out + J - 1) * stride`` samples (``J = ceil(k / stride)`` taps), its
    ``stride`` phases moved beside the channels; the kernel's taps padded to ``J * stride`` and split
    the same way. A stride-1 convolution of the two (no padding along ``axis``) is the strided one."""
    k = kernel.shape[axis - 1]
    taps = -(-k // stride)
    need = (out + taps - 1) * stride
    widths = [(0, 0)] * x.ndim
    widths[axis] = (pad, max(0, need - x.shape[axis] - pad))
    x = lax.slice_in_dim(jnp.pad(x, widths), 0, need, axis=axis)
    shape = list(x.shape)
    shape[axis : axis + 1] = [need // stride, stride]
    x = jnp.moveaxis(x.reshape(shape), axis + 1, -2)
    x = x.reshape(*x.shape[:-2], stride * x.shape[-1])  # channel r * C + c: phase r of channel c
    widths = [(0, 0)] * kernel.ndim
    widths[axis - 1] = (0, taps * stride - k)
    kernel = jnp.pad(kernel, widths)
    shape = list(kernel.shape)
    shape[axis - 1 : axis] = [taps, stride]
    kernel = jnp.moveaxis(kernel.reshape(shape), axis, -3)
    kernel = kernel.reshape(*kernel.shape[:-3], stride * kernel.shape[-2], kernel.shape[-1])
    return x, kernel


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv2d(x: jax.Array, kernel: jax.Array, stride: tuple[int, int], padding: tuple[int, int]) -> jax.Array:
    """A strided ``nn.Conv2d`` of channels-last ``x [B, H, W, Cin]`` with ``kernel [kh, kw, Cin,
    Cout]``: XLA's strided convolution forward, the same numbers as :func:`conv_nd`.

    Its input gradient is taken through the space-to-depth form instead (each strided axis's
    phases as channels, then a stride-1 convolution: :func:`_space_to_depth`). XLA's CPU backend
    derives the strided convolution's input gradient as a convolution over the stride-dilated
    output gradient, which for the discriminator's multi-band STFT convolutions (``(3, 9)``,
    stride ``(1, 2)``, 32 channels) ran 7x slower than the stride-1 convolution it becomes here
    (measured 34 vs 4.4 ms at ``[8, 12, 257, 32]``); that made each multi-band discriminator's
    backward pass 1.8x the original's, and the discriminator's update alone 1.6 s instead of 1.4 s
    (in the whole training step the difference was not measurable: benchmarks/RESULTS.md). The
    kernel gradient stays XLA's (as fast as the forward).
    """
    return _conv2d(x, kernel, stride, padding)


def _strided_conv2d_forward(x, kernel, stride, padding):
    return _conv2d(x, kernel, stride, padding), (x, kernel)


def _strided_conv2d_backward(stride, padding, residuals, grad):
    x, kernel = residuals

    def as_stride_one(x):
        z, k, pads = x, kernel, list(padding)
        for axis, s in ((1, stride[0]), (2, stride[1])):
            if s > 1:
                z, k = _space_to_depth(z, k, axis, s, pads[axis - 1], grad.shape[axis])
                pads[axis - 1] = 0
        return _conv2d(z, k, (1, 1), tuple(pads))

    d_x = jax.vjp(as_stride_one, x)[1](grad)[0]
    d_kernel = jax.vjp(lambda k: _conv2d(x, k, stride, padding), kernel)[1](grad)[0]
    return d_x, d_kernel


strided_conv2d.defvjp(_strided_conv2d_forward, _strided_conv2d_backward)


# --------------------------------------------------------------------------------------------
# Initialisers matching PyTorch's defaults for conv layers
# --------------------------------------------------------------------------------------------


def _uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _np_uniform(rng: np.random.Generator, bound: float, shape: Sequence[int]) -> np.ndarray:
    return rng.uniform(-bound, bound, size=tuple(shape)).astype(np.float32)


def _torch_fan_in(shape: Sequence[int]) -> int:
    # PyTorch computes fan_in from dim 1 of the weight for convs and transposed convs alike
    return shape[1] * math.prod(shape[2:])


def _weight_norm_params(
    module: nn.Module, shape: Sequence[int], n_bias: int, zero_bias: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``weight_v``, ``weight_g``, ``bias`` created on ``module`` (call from its compact method) with
    PyTorch's default conv init: ``v`` uniform ``+-1/sqrt(fan_in)``, ``g = ||v||``, bias the same
    uniform, or zeros. Every weight-normed conv here creates its parameters through this."""
    bound = 1.0 / math.sqrt(_torch_fan_in(shape))
    v = module.param("weight_v", _uniform(bound), tuple(shape))
    g = module.param("weight_g", lambda _: _l2_norm_except_0(v))
    bias = module.param("bias", nn.initializers.zeros if zero_bias else _uniform(bound), (n_bias,))
    return v, g, bias


def _numpy_weight_norm_params(
    rng: np.random.Generator, shape: Sequence[int], n_bias: int, zero_bias: bool
) -> dict[str, np.ndarray]:
    """:func:`_weight_norm_params`' distributions drawn with numpy, in the same order (v, then bias)."""
    bound = 1.0 / math.sqrt(_torch_fan_in(shape))
    v = _np_uniform(rng, bound, shape)
    bias = np.zeros(n_bias, np.float32) if zero_bias else _np_uniform(rng, bound, (n_bias,))
    return {"weight_v": v, "weight_g": np.asarray(_l2_norm_except_0(v)), "bias": bias}


# --------------------------------------------------------------------------------------------
# Layer protocol
# --------------------------------------------------------------------------------------------


def pointwise(y: jax.Array, lengths: Optional[jax.Array]):
    """A pointwise layer's return: ``y``, or ``(y, lengths)`` in a ragged batch (see :class:`Layer`)."""
    return y if lengths is None else (y, lengths)


def mask_time(x: jax.Array, lengths: jax.Array, axis: int = 1) -> jax.Array:
    """``x`` (``[B, T, C]``; time on another ``axis`` of a 3-D array for channels-first) with every
    time step ``t >= lengths[b]`` of item ``b`` set to zero."""
    shape = [1, 1, 1]
    shape[axis] = x.shape[axis]
    valid = jnp.arange(x.shape[axis]).reshape(shape) < lengths[:, None, None]
    return jnp.where(valid, x, jnp.zeros((), x.dtype))


class Layer(nn.Module):
    """A module that can list the convolution geometries on its main path, in order.

    Ragged batches: a layer called as ``layer(x, lengths)`` treats item ``b`` of ``x [B, T, C]`` as
    ``lengths[b]`` steps long, right-padded to ``T``, computes for it exactly what it computes for
    that item alone (padded mode), and returns ``(y, output lengths)``. Only convolutions look past
    a time step, so only they act on ``lengths``: each zeroes its input beyond them (what its own
    zero padding shows the item alone) and maps them through its geometry. Pointwise layers pass
    them on (:func:`pointwise`).
    """

    @nn.nowrap
    def geometries(self) -> tuple[ConvGeometry, ...]:
        return ()


class Sequential(Layer):
    """Runs ``layers()`` in order; its geometry is the concatenation of theirs.

    Subclasses define ``layers()`` once; the forward pass and the length arithmetic both read it.
    """

    @nn.nowrap
    def layers(self) -> list[Layer]:
        raise NotImplementedError

    @nn.nowrap
    def geometries(self) -> tuple[ConvGeometry, ...]:
        return tuple(g for layer in self.layers() for g in layer.geometries())

    @nn.compact
    def __call__(self, x: jax.Array, lengths: Optional[jax.Array] = None) -> jax.Array:
        return self.run_layers(x, lengths)

    @nn.nowrap
    def run_layers(self, x: jax.Array, lengths: Optional[jax.Array] = None) -> jax.Array:
        """Build and apply ``layers()`` in order; call only from a compact method.

        With ``lengths [B]`` (a ragged batch, see :class:`Layer`) each layer gets its input's valid
        lengths and gives the next layer's, and the result is ``(x, lengths)``.
        """
        for layer in self.layers():
            if lengths is None:
                x = layer(x)
            else:
                x, lengths = layer(x, lengths)
        return pointwise(x, lengths)


class WNConv1d(Layer):
    """Weight-normed Conv1d or ConvTranspose1d (by ``geometry.transposed``), channels-last.

    ``padded`` selects the mode: padded (the geometry's padding) or unpadded (none). Parameters
    are ``weight_v``, ``weight_g`` and ``bias`` in PyTorch's layouts. For inference the variables
    may instead hold this layer's folded ``kernel`` and ``bias`` in the ``"folded"`` collection
    (:func:`dac_jax.nn.fold.fold_variables`): weight norm and layout are then not recomputed per call.
    """

    in_features: int
    features: int
    geometry: ConvGeometry
    padded: bool = True
    zero_bias: bool = True  # the original zeroes Conv1d biases at init; transposed ones keep torch's

    @nn.nowrap
    def geometries(self) -> tuple[ConvGeometry, ...]:
        return (self.geometry,)

    @nn.nowrap
    def _shapes(self) -> tuple[tuple[int, int, int], int]:
        """``(weight_v shape, bias size)`` in PyTorch's layouts."""
        k = self.geometry.kernel
        if self.geometry.transposed:
            shape = (self.in_features, self.features, k)
        else:
            shape = (self.features, self.in_features, k)
        return shape, (shape[1] if self.geometry.transposed else shape[0])

    @nn.nowrap
    def numpy_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The same initial distribution as the Flax initialisers, drawn with numpy."""
        return _numpy_weight_norm_params(rng, *self._shapes(), self.zero_bias)

    @nn.compact
    def __call__(self, x: jax.Array, lengths: Optional[jax.Array] = None) -> jax.Array:
        if lengths is not None:
            if not self.padded:
                raise ValueError("ragged batches (lengths) run in padded mode only")
            y = self.convolve(mask_time(x, lengths))
            return y, self.geometry.output_length(lengths, padded=True)
        return self.convolve(x)

    def operator_norm(self) -> jax.Array:
        """The largest singular value of a kernel-1 convolution's ``[in, out]`` matrix: the most it
        can stretch a difference between two inputs (what :mod:`dac_jax.guard` bounds with)."""
        if self.geometry.kernel != 1 or self.geometry.transposed:
            raise ValueError("operator_norm is for kernel-1 convolutions")
        if self.has_variable(FOLDED, "kernel"):
            kernel = self.get_variable(FOLDED, "kernel")
        elif self.has_variable("params", KERNEL_V):
            kernel = conv_weight_norm(self.get_variable("params", KERNEL_V), self.get_variable("params", KERNEL_G))
        else:
            v, g, _ = _weight_norm_params(self, *self._shapes(), self.zero_bias)
            kernel = fold_kernel(weight_norm(v, g), self.geometry)
        return jnp.linalg.norm(kernel.reshape(kernel.shape[-2], kernel.shape[-1]), ord=2)

    @nn.nowrap
    def convolve(self, x: jax.Array) -> jax.Array:
        if self.has_variable(FOLDED, "winograd_kernel"):  # see dac_jax.nn.winograd
            u, bias = self.get_variable(FOLDED, "winograd_kernel"), self.get_variable(FOLDED, "bias")
            m = u.shape[0] - self.geometry.kernel + 1
            return winograd.conv1d(x, u, m, self.geometry.dilation, self.geometry.pads(self.padded), bias)
        if self.has_variable(FOLDED, "kernel"):
            kernel, bias = self.get_variable(FOLDED, "kernel"), self.get_variable(FOLDED, "bias")
        elif self.has_variable("params", KERNEL_V):  # training's conv layout (dac_jax.nn.layout)
            kernel = conv_weight_norm(self.get_variable("params", KERNEL_V), self.get_variable("params", KERNEL_G))
            bias = self.get_variable("params", "bias")
            m = winograd.training_tile(self.geometry, kernel)
            if m is not None:  # the training step's choice (winograd.in_training)
                return winograd.trainable_conv1d(x, kernel, m, self.geometry.dilation, self.geometry.pads(self.padded)) + bias
        else:
            v, g, bias = _weight_norm_params(self, *self._shapes(), self.zero_bias)
            kernel = fold_kernel(weight_norm(v, g), self.geometry)
        return conv1d_folded(x, kernel, self.geometry, self.padded) + bias


#: The variable collection holding folded inference kernels (see :class:`WNConv1d`).
FOLDED = "folded"
#: The parameters of a weight-normed convolution in the conv layout (:mod:`dac_jax.nn.layout`).
KERNEL_V, KERNEL_G = "kernel_v", "kernel_g"


def _l2_norm_except_0(v):
    xp = np if isinstance(v, np.ndarray) else jnp
    return xp.sqrt(xp.sum(xp.square(v), axis=tuple(range(1, v.ndim)), keepdims=True))


class Snake(Layer):
    """Snake activation with a learnt per-channel ``alpha`` stored as ``[1, C, 1]`` (PyTorch layout)."""

    channels: int

    @nn.compact
    def __call__(self, x: jax.Array, lengths: Optional[jax.Array] = None) -> jax.Array:
        alpha = self.param("alpha", nn.initializers.ones, (1, self.channels, 1))
        return pointwise(snake(x, alpha.reshape(1, 1, self.channels)), lengths)

    @nn.nowrap
    def numpy_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"alpha": np.ones((1, self.channels, 1), np.float32)}


class Tanh(Layer):
    @nn.compact
    def __call__(self, x: jax.Array, lengths: Optional[jax.Array] = None) -> jax.Array:
        return pointwise(jnp.tanh(x), lengths)


class LeakyReLU(Layer):
    negative_slope: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array, lengths: Optional[jax.Array] = None) -> jax.Array:
        return pointwise(nn.leaky_relu(x, self.negative_slope), lengths)


class LeakyWNConv1d(Sequential):
    """DAC-VAE's ``nn.Sequential(WNConv1d(...), nn.LeakyReLU(0.1))``: the conv is child ``0``.

    The DAC-VAE generator wraps every plain weight-normed Conv1d this way (its module redefines
    ``WNConv1d`` after the classes that call it), so its state-dict keys carry an extra ``.0.``
    (``encoder.block.0.0.weight_v``); naming the conv ``"0"`` reproduces them.
    """

    in_features: int
    features: int
    geometry: ConvGeometry
    padded: bool = True

    @nn.nowrap
    def layers(self) -> list[Layer]:
        return [
            WNConv1d(self.in_features, self.features, self.geometry, self.padded, name="0"),
            LeakyReLU(0.1, name="1"),
        ]


def conv_layer(in_features: int, features: int, geometry: ConvGeometry, padded: bool, leaky: bool, name: str) -> Layer:
    """A plain (not transposed) weight-normed conv: DAC's :class:`WNConv1d`, or DAC-VAE's
    :class:`LeakyWNConv1d` when ``leaky``."""
    if leaky:
        return LeakyWNConv1d(in_features, features, geometry, padded, name=name)
    return WNConv1d(in_features, features, geometry, padded, name=name)


# --------------------------------------------------------------------------------------------
# Plain 1-D / 2-D weight-normed convolutions (grouped), described by a ConvSpec
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One ``nn.Conv1d`` / ``nn.Conv2d``: channels, kernel, stride, symmetric padding per axis, groups."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    groups: int = 1

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    def time_geometry(self) -> ConvGeometry:
        """The 1-D geometry along the first axis, for a 1-D conv or a ``(k, 1)`` one (stride ``(s, 1)``,
        padding ``(p, 0)``) that runs along time alone; ``ValueError`` for any other."""
        if any(n != 1 for n in self.kernel[1:] + self.stride[1:]) or any(self.padding[1:]):
            raise ValueError(f"{self} is not a convolution along its first axis alone")
        return ConvGeometry(self.kernel[0], self.stride[0], padding=self.padding[0])


class WNConv(Layer):
    """Weight-normed ``nn.Conv1d`` / ``nn.Conv2d`` (``torch.nn.utils.weight_norm``), channels-last.

    PyTorch's default init (the discriminator keeps it): ``weight_v`` ``[out, in / groups,
    *kernel]`` kaiming-uniform (``+-1/sqrt(fan_in)``), ``weight_g = ||v||``, ``bias`` uniform
    ``+-1/sqrt(fan_in)``. With ``along_time`` a ``(k, 1)`` kernel (2-D parameters) is applied to
    ``[N, L, C]`` as a 1-D conv over ``L`` (:func:`conv1d`): XLA's CPU convolution is several times
    faster so than with the ``(k, 1)`` 2-D kernel in PyTorch's layout.
    """

    spec: ConvSpec
    along_time: bool = False

    @nn.nowrap
    def geometries(self) -> tuple[ConvGeometry, ...]:
        return (self.spec.time_geometry(),) if self.along_time or len(self.spec.kernel) == 1 else ()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.spec
        if self.along_time and s.groups != 1:
            raise ValueError(f"along_time runs ungrouped convolutions only, got {s}")
        if self.has_variable("params", KERNEL_V):  # training's conv layout [*kernel, in / groups, out]
            w = conv_weight_norm(self.get_variable("params", KERNEL_V), self.get_variable("params", KERNEL_G))
            bias = self.get_variable("params", "bias")
            if self.along_time:
                return conv1d_folded(x, w[:, 0], s.time_geometry(), padded=True) + bias
            return conv_nd(x, w, s.stride, s.padding, s.groups, conv_layout=True) + bias
        v, g, bias = _weight_norm_params(self, s.weight_shape, s.out_channels, zero_bias=False)
        w = weight_norm(v, g)
        if self.along_time:
            return conv1d(x, w[..., 0], s.time_geometry(), padded=True) + bias
        return conv_nd(x, w, s.stride, s.padding, s.groups) + bias

    @nn.nowrap
    def numpy_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The distributions of the initialisers above, drawn with numpy (:func:`dac_jax.nn.init.numpy_init`)."""
        return _numpy_weight_norm_params(rng, self.spec.weight_shape, self.spec.out_channels, zero_bias=False)


class LeakyWNConv(Sequential):
    """``nn.Sequential(WNConv, nn.LeakyReLU(0.1))``: the conv is child ``0`` (as :class:`LeakyWNConv1d`)."""

    spec: ConvSpec
    along_time: bool = False

    @nn.nowrap
    def layers(self) -> list[Layer]:
        return [WNConv(self.spec, self.along_time, name="0"), LeakyReLU(0.1, name="1")]
