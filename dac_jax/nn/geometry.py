"""Convolution geometry: the one place where padding and length arithmetic live.

A :class:`ConvGeometry` describes one 1-D convolution (kernel, stride, dilation, transposed or
not, and the padding it uses in *padded* mode). The forward pass takes its padding from it, and
every length question about a stack of convolutions (output length, delay, receptive field) is
answered by composing the geometries of that stack in order. Modules expose their stack with a
``geometries()`` method built from the same layer list their forward pass runs, so the arithmetic
cannot drift from the network.

Two modes, as in the original DAC::

    padded   (whole signals, training)   conv:       L_out = floor((L + 2p - span) / s) + 1
                                         transposed: L_out = (L - 1) * s - 2p + span + op
    unpadded (chunked inference)         p = 0, op = 0

where ``span = dilation * (kernel - 1) + 1`` is the number of input samples one output touches.
For a transposed convolution the left padding ``p`` crops the front of the full output::

    full output:  |<- p ->|<------------- L_out ------------->|<- p - op ->|
                  (L - 1) * s + span samples in all
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """Geometry of one 1-D convolution or transposed convolution."""

    kernel: int
    stride: int = 1
    dilation: int = 1
    transposed: bool = False
    padding: int = 0  # per side, used in padded mode only
    output_padding: int = 0  # transposed only, padded mode only

    def __post_init__(self):
        if self.kernel < 1 or self.stride < 1 or self.dilation < 1:
            raise ValueError(f"invalid convolution geometry {self}")
        if self.output_padding and not self.transposed:
            raise ValueError(f"output_padding needs a transposed convolution: {self}")

    @property
    def span(self) -> int:
        """Input samples touched by one output sample (the dilated kernel's extent)."""
        return self.dilation * (self.kernel - 1) + 1

    def pads(self, padded: bool) -> tuple[int, int]:
        """Padding (left, right) of the equivalent forward convolution.

        For a plain conv this is the zero padding of the input. For a transposed conv, which runs
        as a conv over the stride-dilated input with a flipped kernel, it is the padding of that
        dilated input: ``span - 1 - p`` on the left and ``span - 1 - p + output_padding`` on the
        right (PyTorch's ConvTranspose1d semantics).
        """
        p = self.padding if padded else 0
        if not self.transposed:
            return (p, p)
        op = self.output_padding if padded else 0
        return (self.span - 1 - p, self.span - 1 - p + op)

    def output_length(self, length: int, padded: bool = False) -> int:
        """Output length for an input of ``length`` samples (may be negative, as in the original)."""
        left, right = self.pads(padded)
        if self.transposed:
            # conv over the dilated input: (L - 1) * s + 1 samples, padded, kernel span
            return (length - 1) * self.stride + 1 + left + right - self.span + 1
        return (length + left + right - self.span) // self.stride + 1

    def input_length(self, length: int) -> int:
        """Inverse of the unpadded :meth:`output_length`, rounding up as the original's ``get_delay``."""
        if self.transposed:
            return -((-(length - self.span)) // self.stride) + 1
        return (length - 1) * self.stride + self.span

    def input_span(self, n: int) -> int:
        """Most input samples that ``n`` consecutive output samples can depend on."""
        if self.transposed:
            # inputs i with o0 - span < i * s <= o0 + n - 1: multiples of s in n + span - 1 slots
            return -(-(n + self.span - 1) // self.stride)
        return (n - 1) * self.stride + self.span


def output_length(geometries: Iterable[ConvGeometry], length: int, padded: bool = False) -> int:
    """Length after a stack of convolutions, walked in order (the original's ``get_output_length``)."""
    for g in geometries:
        length = g.output_length(length, padded)
    return length


def delay(geometries: Sequence[ConvGeometry]) -> int:
    """Samples of context on each side that the unpadded stack consumes (the original's ``get_delay``).

    Same arithmetic as the original: the output length of an empty input (negative), walked back
    through the stack with the rounding-up inverse, and half of the difference.
    """
    l_out = output_length(geometries, 0)
    length = l_out
    for g in reversed(geometries):
        length = g.input_length(length)
    return (length - l_out) // 2


def receptive_field(geometries: Sequence[ConvGeometry]) -> int:
    """Most input samples (or frames) that one output sample of the stack can depend on."""
    n = 1
    for g in reversed(geometries):
        n = g.input_span(n)
    return n


def total_stride(geometries: Iterable[ConvGeometry]) -> int:
    """Product of the strides of the plain (downsampling) convolutions."""
    return math.prod(g.stride for g in geometries if not g.transposed)
