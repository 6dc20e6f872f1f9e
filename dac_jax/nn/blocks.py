"""Residual units and the encoder / decoder blocks of DAC (channels-last ``[B, T, C]``).

Submodule names mirror the original's ``nn.Sequential`` indices (``block_1`` is PyTorch's
``block.1``), which is what lets the weight importer derive PyTorch keys from the parameter tree.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax

from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.layers import Layer, Sequential, Snake, WNConv1d

DILATIONS = (1, 3, 9)


class ResidualUnit(Sequential):
    """Snake, dilated k7 conv, Snake, k1 conv, plus the input.

    In unpadded mode the branch is ``6 * dilation`` samples shorter than the input, and the input
    is cropped by half of that on each side before the sum, as in the original.
    """

    dim: int
    dilation: int = 1
    padded: bool = True

    @nn.nowrap
    def layers(self) -> list[Layer]:
        d = self.dilation
        return [
            Snake(self.dim, name="block_0"),
            WNConv1d(self.dim, self.dim, ConvGeometry(7, dilation=d, padding=3 * d), self.padded, name="block_1"),
            Snake(self.dim, name="block_2"),
            WNConv1d(self.dim, self.dim, ConvGeometry(1), self.padded, name="block_3"),
        ]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.run_layers(x)
        crop = (x.shape[1] - y.shape[1]) // 2
        if crop > 0:
            x = x[:, crop:-crop]
        return x + y


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

    @nn.nowrap
    def layers(self) -> list[Layer]:
        half = self.dim // 2
        units = [ResidualUnit(half, d, self.padded, name=f"block_{i}") for i, d in enumerate(DILATIONS)]
        return units + [
            Snake(half, name="block_3"),
            WNConv1d(half, self.dim, strided_geometry(self.stride, False), self.padded, name="block_4"),
        ]


class DecoderBlock(Sequential):
    """Snake, a transposed conv upsampling by ``stride``, then three residual units.

    The original uses no output_padding: stride 5 gives ``5 * L - 1`` samples, not ``5 * L``.
    """

    input_dim: int
    output_dim: int
    stride: int
    padded: bool = True

    @nn.nowrap
    def layers(self) -> list[Layer]:
        up = strided_geometry(self.stride, True)
        return [
            Snake(self.input_dim, name="block_0"),
            WNConv1d(self.input_dim, self.output_dim, up, self.padded, zero_bias=False, name="block_1"),
        ] + [
            ResidualUnit(self.output_dim, d, self.padded, name=f"block_{i + 2}")
            for i, d in enumerate(DILATIONS)
        ]
