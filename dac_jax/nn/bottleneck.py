"""DAC-VAE's Gaussian bottleneck, which takes the place of DAC's residual vector quantiser.

Channels-last inside (``x [B, T, D]``), as every module in :mod:`dac_jax.nn`; the model converts at
its boundary. The maths is in pure functions; the module holds the two 1x1 projections::

    encoder output [B, T, D] --leaky_relu(0.01)--> en_conv_post (D -> 2D, LeakyReLU 0.1)
        --split--> m, logs (first half m) --clip logs to [-14, 14]--> z = m + noise * exp(logs)
    z [B, T, D] --de_conv_pre (D -> D, LeakyReLU 0.1)--> decoder input
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.layers import Layer, LeakyWNConv1d

LOGS_RANGE = (-14.0, 14.0)


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def split_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``[..., 2D]`` -> ``(m, logs)``, each ``[..., D]``: the first half is the mean, and ``logs`` is
    clipped to [-14, 14] (the original's ``torch.split`` then ``clamp``)."""
    m, logs = jnp.split(x, 2, axis=-1)
    return m, jnp.clip(logs, *LOGS_RANGE)


def sample(m: jax.Array, logs: jax.Array, noise: jax.Array) -> jax.Array:
    """``m + noise * exp(logs)``: ``logs`` is a log standard deviation here (but see :func:`kl_divergence`)."""
    return m + noise * jnp.exp(logs)


def kl_divergence(m: jax.Array, logs: jax.Array, channel_axis: int = -1) -> jax.Array:
    """The original's KL term ``0.5 * (m^2 + exp(logs) - logs - 1)``, summed over channels and
    averaged over everything else (batch and frames).

    This is the KL divergence from N(0, 1) of a Gaussian whose log *variance* is ``logs``, while
    :func:`sample` uses ``logs`` as the log *standard deviation*: for the distribution actually
    sampled the term would be ``0.5 * (m^2 + exp(2 logs) - 2 logs - 1)``. The released models were
    trained with this one, so it is reproduced as it is.
    """
    per_channel = 0.5 * (jnp.square(m) + jnp.exp(logs) - logs - 1.0)
    return jnp.mean(jnp.sum(per_channel, axis=channel_axis))


# --------------------------------------------------------------------------------------------
# Module
# --------------------------------------------------------------------------------------------


class GaussianBottleneck(Layer):
    """``en_conv_post`` (D -> 2D) and ``de_conv_pre`` (D -> D), each a 1x1 weight-normed conv followed
    by LeakyReLU(0.1) (keys ``en_conv_post.0.weight_v`` ...), around the sampling step.

    The DAC-VAE model shares this module's scope (``nn.share_scope``), so both projections sit at
    the top of its parameter tree as in the original's state dict.
    """

    latent_dim: int
    padded: bool = True

    @nn.nowrap
    def projections(self) -> tuple[LeakyWNConv1d, LeakyWNConv1d]:
        d, k1 = self.latent_dim, ConvGeometry(1)
        return LeakyWNConv1d(d, 2 * d, k1, self.padded), LeakyWNConv1d(d, d, k1, self.padded)

    @nn.nowrap
    def geometries(self) -> tuple[ConvGeometry, ...]:
        return tuple(g for p in self.projections() for g in p.geometries())

    def setup(self):
        self.en_conv_post, self.de_conv_pre = self.projections()

    def encode(self, x: jax.Array, noise: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Encoder output ``x [B, T, D]`` -> ``(z, m, logs)``, each ``[B, T, D]``.

        ``z`` is :func:`sample` with ``noise`` (standard normal, ``[B, T, D]``), or ``m`` without.
        """
        m, logs = split_moments(self.en_conv_post(nn.leaky_relu(x, 0.01)))
        return (m if noise is None else sample(m, logs, noise)), m, logs

    def decode(self, z: jax.Array) -> jax.Array:
        """Latent ``z [B, T, D]`` -> the decoder's input ``[B, T, D]``."""
        return self.de_conv_pre(z)
