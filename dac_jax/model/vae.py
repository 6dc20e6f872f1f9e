"""DAC-VAE (github primepake/dac_vae): DAC's encoder and decoder around a Gaussian bottleneck.

The backbone is DAC's (:class:`~dac_jax.model.dac.Encoder`, :class:`~dac_jax.model.dac.Decoder`)
with the two options its released checkpoints need: every plain conv followed by LeakyReLU(0.1)
(``leaky``) and odd-stride transposed convs with an output_padding of 1 (``exact_upsampling``),
so the padded decoder gives exactly ``hop_length * frames`` samples. The residual vector
quantiser is replaced by :class:`~dac_jax.nn.bottleneck.GaussianBottleneck`.

Public arrays are channels-first as in the original (``audio [B, 1, T]``, ``z``, ``m``, ``logs``
``[B, D, frames]``); modules are channels-last inside, converted once in :class:`DACVAE`'s methods.
``DACVAE(config, padded=False)`` is the unpadded mode (no conv padding, no output_padding: the
length arithmetic of :mod:`dac_jax.nn.geometry`), a second module on the same parameter tree.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from dac_jax.model.config import VAEConfig
from dac_jax.model.dac import Autoencoder, Decoder, Encoder, to_channels_first, to_channels_last
from dac_jax.nn.bottleneck import GaussianBottleneck, kl_divergence
from dac_jax.nn.init import numpy_init


class VAELatents(NamedTuple):
    z: jax.Array  # [B, D, frames] the sampled latent (m in deterministic mode)
    m: jax.Array  # [B, D, frames] mean
    logs: jax.Array  # [B, D, frames] clipped to [-14, 14]; the sampling's log standard deviation


@flax.struct.dataclass
class VAEOutput:
    audio: jax.Array  # [B, 1, T] cropped to the input length
    kl: jax.Array  # [] the original's KL term (see dac_jax.nn.bottleneck.kl_divergence)
    z: jax.Array
    m: jax.Array
    logs: jax.Array


class DACVAE(Autoencoder):
    """The DAC-VAE generator. Methods take and return channels-first arrays.

    Sampling draws ``noise = jax.random.normal(key, m.shape)`` with ``m.shape`` channels-first
    ``[B, D, frames]``, so a caller can reproduce (or hand another implementation) the exact
    noise. The original always samples, in evaluation too; ``deterministic=True`` gives ``z = m``.
    """

    config: VAEConfig
    padded: bool = True
    precision: Optional[str] = None

    @nn.nowrap
    def parts(self) -> tuple[Encoder, GaussianBottleneck, Decoder]:
        c = self.config
        return (
            Encoder(c.encoder_dim, c.encoder_rates, c.latent_dim, self.padded, leaky=True),
            GaussianBottleneck(c.latent_dim, self.padded),
            Decoder(
                c.latent_dim, c.decoder_dim, c.decoder_rates, padded=self.padded, leaky=True, exact_upsampling=True
            ),
        )

    def setup(self):
        self.encoder, self.bottleneck, self.decoder = self.parts()
        # en_conv_post / de_conv_pre at the top of the tree, as in the original's state dict
        nn.share_scope(self, self.bottleneck)

    def encode(
        self, audio: jax.Array, key: Optional[jax.Array] = None, deterministic: bool = False,
        lengths: Optional[jax.Array] = None,
    ) -> VAELatents:
        """``audio [B, 1, T]`` (T a multiple of the hop in padded mode) -> ``(z, m, logs)``.

        ``key`` draws the noise of ``z = m + noise * exp(logs)``; it is required unless
        ``deterministic``, which returns ``z = m``. A typed key array of shape ``[B]`` (one key per
        item) draws each item's noise ``[D, frames]`` from its own key, so an item's latent does not
        depend on the batch it is in (the trainer's per-item keys). ``lengths [B]``: a ragged batch,
        as :meth:`dac_jax.model.dac.DAC.encode`.
        """
        if not deterministic and key is None:
            raise ValueError("sampling z needs a key (jax.random.key); pass deterministic=True for z = m")
        x = self.encoder(to_channels_last(audio), lengths)
        if lengths is not None:
            x, _ = x
        noise = None
        if not deterministic:
            batch, frames, dim = x.shape
            if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == (batch,):  # per item
                noise = jax.vmap(lambda k: jax.random.normal(k, (dim, frames), x.dtype))(key)
            else:
                noise = jax.random.normal(key, (batch, dim, frames), x.dtype)
            noise = to_channels_last(noise)
        z, m, logs = self.bottleneck.encode(x, noise)
        return VAELatents(to_channels_first(z), to_channels_first(m), to_channels_first(logs))

    def decode(self, z: jax.Array, frame_lengths: Optional[jax.Array] = None) -> jax.Array:
        """``z [B, D, frames]`` -> ``audio [B, 1, samples]`` (``hop_length * frames`` in padded mode);
        ``frame_lengths [B]``: a ragged batch, as :meth:`dac_jax.model.dac.DAC.decode`."""
        audio = self.decoder(self.bottleneck.decode(to_channels_last(z)), frame_lengths)
        return to_channels_first(audio if frame_lengths is None else audio[0])

    def __call__(self, audio: jax.Array, key: Optional[jax.Array] = None, deterministic: bool = False) -> VAEOutput:
        """Encode and decode ``audio [B, 1, T]`` (the original's ``forward``); the output is cropped
        to ``T`` samples, and ``kl`` is the original's KL term of ``m`` and ``logs``."""
        length = audio.shape[-1]
        latents = self.encode(self.preprocess(audio), key, deterministic)
        out = self.decode(latents.z)
        return VAEOutput(
            audio=out[..., :length],
            kl=kl_divergence(latents.m, latents.logs, channel_axis=1),
            z=latents.z,
            m=latents.m,
            logs=latents.logs,
        )


def init_vae_variables(config: VAEConfig, seed: int = 0) -> dict:
    """Random variables for ``config`` as numpy arrays (see :func:`dac_jax.model.dac.init_variables`).

    PyTorch's default conv initialisation, as for DAC; the original DAC-VAE re-initialises its
    weights (xavier-normal, a configurable gain), which matters only to training from scratch.
    """
    audio = jax.ShapeDtypeStruct((1, 1, config.hop_length), jnp.float32)
    return numpy_init(DACVAE(config), audio, deterministic=True, seed=seed)
