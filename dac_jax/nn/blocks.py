"""Residual units and the encoder / decoder blocks of DAC (channels-last ``[B, T, C]``).

Submodule names mirror the original's ``nn.Sequential`` indices (``block_1`` is PyTorch's
``block.1``), which is what lets the weight importer derive PyTorch keys from the parameter tree.

The same blocks build DAC-VAE's generator. Its two differences are options, off by default (DAC's
parameter tree is unchanged): ``leaky`` follows every plain conv with LeakyReLU(0.1), nested as
child ``0`` as in its state dicts (:class:`~dac_jax.nn.layers.LeakyWNConv1d`); a decoder block's
``output_padding`` lengthens its transposed conv's output.
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax

from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.layers import Layer, Sequential, Snake, WNConv1d, conv_layer, pointwise

DILATIONS = (1, 3, 9)


class ResidualUnit(Sequential):
    """Snake, dilated k7 conv, Snake, k1 conv, plus the input.

    In unpadded mode the branch is ``6 * dilation`` samples shorter than the input, and the input
    is cropped by half of that on each side before the sum, as in the original. ``leaky``: each
    conv is followed by LeakyReLU(0.1) (DAC-VAE).
    """

    dim: int
    dilation: int = 1
    padded: bool = True
    leaky: bool = False

    @nn.nowrap
    def layers(self) -> list[Layer]:
        d, dim = self.dilation, self.dim
        return [
            Snake(dim, name="block_0"),
            conv_layer(dim, dim, ConvGeometry(7, dilation=d, padding=3 * d), self.padded, self.leaky, "block_1"),
            Snake(dim, name="block_2"),
            conv_layer(dim, dim, ConvGeometry(1), self.padded, self.leaky, "block_3"),
        ]

    @nn.compact
    def __call__(self, x: jax.Array, lengths: Optional[jax.Array] = None) -> jax.Array:
        y = self.run_layers(x, lengths)
        if lengths is not None:  # padded mode: lengths do not change
            y, lengths = y
        crop = (x.shape[1] - y.shape[1]) // 2
        if crop > 0:
            x = x[:, crop:-crop]
        return pointwise(x + y, lengths)


def strided_geometry(stride: int, transposed: bool, output_padding: int = 0) -> ConvGeometry:
    """The up/down-sampling conv of a block: kernel 2s, stride s, padding ceil(s/2)."""
    return ConvGeometry(
        2 * stride,
        stride=stride,
        transposed=transposed,
        padding=math.ceil(stride / 2),
        output_padding=output_padding,
    )


class EncoderBlock(Sequential):
    """Three residual units at ``dim // 2`` channels, Snake, then a strided conv to ``dim`` channels."""

    dim: int
    stride: int
    padded: bool = True
    leaky: bool = False

    @nn.nowrap
    def layers(self) -> list[Layer]:
        half = self.dim // 2
        units = [ResidualUnit(half, d, self.padded, self.leaky, name=f"block_{i}") for i, d in enumerate(DILATIONS)]
        down = strided_geometry(self.stride, False)
        return units + [
            Snake(half, name="block_3"),
            conv_layer(half, self.dim, down, self.padded, self.leaky, "block_4"),
        ]


class DecoderBlock(Sequential):
    """Snake, a transposed conv upsampling by ``stride``, then three residual units.

    DAC uses no output_padding: stride 5 gives ``5 * L - 1`` samples, not ``5 * L``. DAC-VAE gives
    odd strides an ``output_padding`` of 1, which makes every block upsample exactly by ``stride``
    (padded mode; unpadded mode has none, see :meth:`ConvGeometry.pads`). The transposed conv is
    never followed by a LeakyReLU, ``leaky`` or not.
    """

    input_dim: int
    output_dim: int
    stride: int
    padded: bool = True
    leaky: bool = False
    output_padding: int = 0

    @nn.nowrap
    def layers(self) -> list[Layer]:
        up = strided_geometry(self.stride, True, self.output_padding)
        return [
            Snake(self.input_dim, name="block_0"),
            WNConv1d(self.input_dim, self.output_dim, up, self.padded, zero_bias=False, name="block_1"),
        ] + [
            ResidualUnit(self.output_dim, d, self.padded, self.leaky, name=f"block_{i + 2}")
            for i, d in enumerate(DILATIONS)
        ]
