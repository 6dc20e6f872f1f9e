"""Encoder, Decoder, the DAC model, and the ``Autoencoder`` base it shares with DAC-VAE.

Public arrays are channels-first as in the original (``audio [B, 1, T]``, ``z [B, D, frames]``,
``codes [B, N, frames]``); inside, every module is channels-last ``[B, T, C]``. The conversion
happens once, in the methods of :class:`DAC`.

``DAC(config, padded=True)`` is the padded mode (whole signals, training); ``padded=False`` is the
unpadded mode used for chunked inference. The two are separate module instances sharing one
parameter tree, so each mode gets its own trace and nothing is switched at run time.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from dac_jax.model.config import DACConfig
from dac_jax.nn import geometry as geo
from dac_jax.nn import precision as precision_rules
from dac_jax.nn.blocks import DecoderBlock, EncoderBlock
from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.init import numpy_init
from dac_jax.nn.layers import Layer, Sequential, Snake, Tanh, conv_layer
from dac_jax.nn.quantize import ResidualVectorQuantize


class Encoder(Sequential):
    """k7 conv, one EncoderBlock per stride (channels double), Snake, k3 conv to the latent.

    ``leaky``: every conv is followed by LeakyReLU(0.1) (DAC-VAE).
    """

    d_model: int = 64
    strides: tuple[int, ...] = (2, 4, 8, 8)
    d_latent: int = 64
    padded: bool = True
    leaky: bool = False

    @nn.nowrap
    def layers(self) -> list[Layer]:
        first = conv_layer(1, self.d_model, ConvGeometry(7, padding=3), self.padded, self.leaky, "block_0")
        layers: list[Layer] = [first]
        dim = self.d_model
        for i, stride in enumerate(self.strides):
            dim *= 2
            layers.append(EncoderBlock(dim, stride, self.padded, self.leaky, name=f"block_{i + 1}"))
        n = len(layers)
        return layers + [
            Snake(dim, name=f"block_{n}"),
            conv_layer(dim, self.d_latent, ConvGeometry(3, padding=1), self.padded, self.leaky, f"block_{n + 1}"),
        ]


class Decoder(Sequential):
    """k7 conv, one DecoderBlock per rate (channels halve), Snake, k7 conv to ``d_out``, tanh.

    DAC-VAE's options: ``leaky`` follows every plain conv with LeakyReLU(0.1) (the last one too,
    before the tanh); ``exact_upsampling`` gives odd strides an output_padding of 1, so that the
    padded decoder gives exactly ``hop * frames`` samples (DAC's gives ``320 * frames - 8`` at
    rates (8, 5, 4, 2)).
    """

    input_channel: int
    channels: int
    rates: tuple[int, ...]
    d_out: int = 1
    padded: bool = True
    leaky: bool = False
    exact_upsampling: bool = False

    @nn.nowrap
    def layers(self) -> list[Layer]:
        k7 = ConvGeometry(7, padding=3)
        layers: list[Layer] = [conv_layer(self.input_channel, self.channels, k7, self.padded, self.leaky, "model_0")]
        for i, stride in enumerate(self.rates):
            in_dim, out_dim = self.channels // 2**i, self.channels // 2 ** (i + 1)
            output_padding = stride % 2 if self.exact_upsampling else 0
            layers.append(
                DecoderBlock(in_dim, out_dim, stride, self.padded, self.leaky, output_padding, name=f"model_{i + 1}")
            )
        n = len(layers)
        out_dim = self.channels // 2 ** len(self.rates)
        return layers + [
            Snake(out_dim, name=f"model_{n}"),
            conv_layer(out_dim, self.d_out, k7, self.padded, self.leaky, f"model_{n + 1}"),
            Tanh(name=f"model_{n + 2}"),
        ]


@flax.struct.dataclass
class EncodeOutput:
    z: jax.Array  # [B, D, frames] quantised latent (straight-through)
    codes: jax.Array  # [B, N, frames] int32
    latents: jax.Array  # [B, N * d, frames] projected latents before quantisation
    commitment_loss: jax.Array  # []
    codebook_loss: jax.Array  # []


@flax.struct.dataclass
class DACOutput:
    audio: jax.Array  # [B, 1, T] cropped to the input length (padded mode)
    z: jax.Array
    codes: jax.Array
    latents: jax.Array
    commitment_loss: jax.Array
    codebook_loss: jax.Array


def to_channels_last(x: jax.Array) -> jax.Array:
    """``[B, C, T]`` -> ``[B, T, C]`` (the same swap converts back: ``to_channels_first``)."""
    return jnp.swapaxes(x, 1, 2)


to_channels_first = to_channels_last


class Autoencoder(Layer):
    """What DAC and DAC-VAE share: ``parts()`` is ``(encoder, bottleneck, decoder)``, and every
    length question is answered from their geometries. Subclasses define ``config`` (with a
    ``hop_length``), ``padded``, ``precision`` and ``parts()``.

    ``precision`` (``None``: JAX's default, what training runs; or one of
    :data:`dac_jax.nn.precision.PRECISIONS`) is the matmul precision every ``apply`` of the module
    traces under: a static field, so each setting compiles apart.
    """

    @nn.nowrap
    def precision_context(self) -> contextlib.AbstractContextManager:
        """The matmul precision to trace this module's computations under (for code that runs its
        layers outside ``apply``, such as :mod:`dac_jax.stream`)."""
        if self.precision is None:
            return contextlib.nullcontext()
        return jax.default_matmul_precision(precision_rules.MATMUL[self.precision])

    def apply(self, variables, *args, **kwargs):
        with self.precision_context():
            return super().apply(variables, *args, **kwargs)

    @nn.nowrap
    def parts(self) -> tuple[Encoder, Layer, Decoder]:
        raise NotImplementedError

    # -- geometry (call on the unbound module) ------------------------------------------------------

    @nn.nowrap
    def geometries(self) -> tuple[ConvGeometry, ...]:
        """Every convolution in module order: encoder, bottleneck projections, decoder."""
        return tuple(g for part in self.parts() for g in part.geometries())

    @nn.nowrap
    def output_length(self, length: int) -> int:
        """Unpadded-mode output length for ``length`` input samples (the original's ``get_output_length``)."""
        return geo.output_length(self.geometries(), length)

    @nn.nowrap
    def delay(self) -> int:
        """Context samples consumed on each side in unpadded mode (the original's ``delay``)."""
        return geo.delay(self.geometries())

    @nn.nowrap
    def encoder_frames(self, length: int) -> int:
        """Latent frames the encoder gives for ``length`` samples, in this module's mode."""
        return geo.output_length(self.parts()[0].geometries(), length, self.padded)

    @nn.nowrap
    def decoder_samples(self, frames: int) -> int:
        """Samples the decoder gives for ``frames`` latent frames, in this module's mode."""
        return geo.output_length(self.parts()[2].geometries(), frames, self.padded)

    @nn.nowrap
    def hop_length(self) -> int:
        return geo.total_stride(self.parts()[0].geometries())

    @nn.nowrap
    def encoder_receptive_field(self) -> int:
        """Input samples that one latent frame depends on."""
        return geo.receptive_field(self.parts()[0].geometries())

    @nn.nowrap
    def decoder_receptive_field(self) -> int:
        """Latent frames that one output sample depends on."""
        return geo.receptive_field(self.parts()[2].geometries())

    def preprocess(self, audio: jax.Array) -> jax.Array:
        """Right-pad ``audio [B, 1, T]`` with zeros to a multiple of the hop length."""
        hop = self.config.hop_length
        right = -audio.shape[-1] % hop
        return jnp.pad(audio, ((0, 0), (0, 0), (0, right)))


class DAC(Autoencoder):
    """The DAC codec. Methods take and return channels-first arrays."""

    config: DACConfig
    padded: bool = True
    precision: Optional[str] = None

    @nn.nowrap
    def parts(self) -> tuple[Encoder, ResidualVectorQuantize, Decoder]:
        c = self.config
        quantizer = ResidualVectorQuantize(c.latent_dim, c.n_codebooks, c.codebook_size, c.codebook_dim,
                                           c.quantizer_dropout)
        encoder = Encoder(c.encoder_dim, c.encoder_rates, c.latent_dim, self.padded)
        return encoder, quantizer, Decoder(c.latent_dim, c.decoder_dim, c.decoder_rates, padded=self.padded)

    def setup(self):
        self.encoder, self.quantizer, self.decoder = self.parts()

    # -- forward --------------------------------------------------------------------------------

    def encode(
        self, audio: jax.Array, n_quantizers: Optional[int] = None, train: bool = False,
        codebook_counts: Optional[jax.Array] = None, lengths: Optional[jax.Array] = None,
    ) -> EncodeOutput:
        """``audio [B, 1, T]`` (T a multiple of the hop in padded mode) -> codes and latents.

        ``train`` applies quantizer dropout: ``codebook_counts [B]`` (codebooks kept per item) or,
        without it, a draw from the ``"dropout"`` RNG stream (see ``ResidualVectorQuantize``).
        ``lengths [B]`` (multiples of the hop, zeros beyond): a ragged batch, each item encoded as
        if alone (see :class:`~dac_jax.nn.layers.Layer`); its frames beyond ``lengths / hop`` are
        meaningless, and the losses are not masked.
        """
        z = self.encoder(to_channels_last(audio), lengths)
        if lengths is not None:
            z, _ = z
        q = self.quantizer(z, n_quantizers, train, codebook_counts)
        return EncodeOutput(
            z=to_channels_first(q.z),
            codes=q.codes,
            latents=to_channels_first(q.latents),
            commitment_loss=q.commitment_loss,
            codebook_loss=q.codebook_loss,
        )

    def encode_checked(
        self, audio: jax.Array, relative_error: float, score_tolerance: float,
        n_quantizers: Optional[int] = None, lengths: Optional[jax.Array] = None, residuals: bool = False,
    ) -> tuple[jax.Array, ...]:
        """Inference codes of ``audio`` and, per code, whether it holds if the encoder's output may
        be off by ``relative_error`` times the item's largest frame norm (an absolute l2 error per
        frame; see :mod:`dac_jax.guard`): ``(codes, slack)`` ``[B, N, frames]``, and with
        ``residuals`` each quantiser stage's input ``[B, N, frames, D]`` and that norm ``[B]``."""
        z = self.encoder(to_channels_last(audio), lengths)
        if lengths is not None:
            z, _ = z
        norms = jnp.linalg.norm(z, axis=-1)
        if lengths is not None:  # frames past an item's end are not its frames
            frames = jnp.arange(z.shape[1]) < (lengths // self.config.hop_length)[:, None]
            norms = jnp.where(frames, norms, 0.0)
        scale = jnp.max(norms, axis=-1)
        out = self.quantizer.codes_checked(z, relative_error * scale, score_tolerance, n_quantizers, residuals)
        return out + (scale,) if residuals else out

    def decode(self, z: jax.Array, frame_lengths: Optional[jax.Array] = None) -> jax.Array:
        """``z [B, D, frames]`` -> ``audio [B, 1, samples]``; ``frame_lengths [B]``: a ragged batch
        (each item decoded as if alone; its samples beyond ``decoder_samples`` of them are meaningless)."""
        audio = self.decoder(to_channels_last(z), frame_lengths)
        return to_channels_first(audio if frame_lengths is None else audio[0])

    def from_codes(self, codes: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``codes [B, N, frames]`` -> ``(z [B, D, frames], z_p [B, N * d, frames])``."""
        z, z_p = self.quantizer.from_codes(codes)
        return to_channels_first(z), to_channels_first(z_p)

    def from_latents(self, latents: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Projected ``latents [B, M, frames]`` -> ``(z, z_p, codes)``."""
        z, z_p, codes = self.quantizer.from_latents(to_channels_last(latents))
        return to_channels_first(z), to_channels_first(z_p), codes

    def decode_codes(self, codes: jax.Array, frame_lengths: Optional[jax.Array] = None) -> jax.Array:
        """``codes [B, N, frames]`` -> ``audio [B, 1, samples]`` (``frame_lengths``: see :meth:`decode`)."""
        return self.decode(self.from_codes(codes)[0], frame_lengths)

    def __call__(
        self, audio: jax.Array, n_quantizers: Optional[int] = None, train: bool = False,
        codebook_counts: Optional[jax.Array] = None,
    ) -> DACOutput:
        """Encode and decode ``audio [B, 1, T]``; the output is cropped to ``T`` samples."""
        length = audio.shape[-1]
        enc = self.encode(self.preprocess(audio), n_quantizers, train, codebook_counts)
        out = self.decode(enc.z)
        return DACOutput(
            audio=out[..., :length],
            z=enc.z,
            codes=enc.codes,
            latents=enc.latents,
            commitment_loss=enc.commitment_loss,
            codebook_loss=enc.codebook_loss,
        )


def init_variables(config: DACConfig, seed: int = 0) -> dict:
    """Random variables for ``config`` (PyTorch-like initialisation) as numpy arrays.

    The modules' own initial distributions, drawn with numpy (:func:`dac_jax.nn.init.numpy_init`):
    about a second for a full-size model, where compiling ``jax.jit(module.init)`` takes over 10 s
    on a CPU. Deterministic per seed on every platform.
    """
    audio = jax.ShapeDtypeStruct((1, 1, config.hop_length), jnp.float32)
    return numpy_init(DAC(config), audio, seed=seed)
