"""Residual vector quantiser of DAC: factorised, l2-normalised codebook lookup, straight-through.

Arrays are channels-last inside (``z [B, T, D]``, codes ``[B, T]`` per codebook); the DAC module
converts at its boundary.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.layers import Layer, WNConv1d

_K1 = ConvGeometry(1)


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``x / max(||x||, eps)`` over the last axis (torch.nn.functional.normalize)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)


def nearest_code(encodings: jax.Array, codebook: jax.Array) -> jax.Array:
    """Index of the nearest codebook row for each encoding, after l2-normalising both.

    ``encodings [..., d]``, ``codebook [K, d]`` -> ``[...]`` int32. The distance is kept in the
    original's expanded form ``|e|^2 - 2 e.c + |c|^2``: it rounds differently from a plain cosine
    argmax, and near-ties would flip. The product runs at the highest precision on every backend.
    """
    return jnp.argmax(_scores(encodings, codebook)[0], axis=-1).astype(jnp.int32)


def _scores(encodings: jax.Array, codebook: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(-dist [..., K], the normalised codebook)``: what :func:`nearest_code` ranks."""
    e = l2_normalize(encodings)
    c = l2_normalize(codebook)
    dist = (
        jnp.sum(jnp.square(e), axis=-1, keepdims=True)
        - 2 * jnp.matmul(e, c.T, precision=lax.Precision.HIGHEST)
        + jnp.sum(jnp.square(c), axis=-1)
    )
    return -dist, c


def nearest_code_checked(
    encodings: jax.Array, codebook: jax.Array, radius: jax.Array, score_tolerance: float,
) -> tuple[jax.Array, jax.Array]:
    """:func:`nearest_code` and whether its choice holds for every encoding within ``radius``.

    ``encodings [..., d]``, ``radius [...]`` -> ``(codes [...], slack [...])``. With ``e`` and the
    rows ``c_k`` l2-normalised, the score ranked is ``s_k = -|e - c_k|^2``, and
    ``s_j - s_k = 2 e . (c_j - c_k)``: moving ``e`` by ``u`` changes it by at most
    ``2 |u| |c_j - c_k|``. So if ``e`` may be off by at most ``radius`` (normalised), the chosen row
    ``j`` stays the nearest while ``slack = min_k (s_j - s_k - 2 radius |c_j - c_k|) > 0``, up to the
    float rounding of the scores themselves (``score_tolerance`` is subtracted from the slack).
    ``slack <= 0`` means: another row might win for the encoding the other path computes.
    """
    score, c = _scores(encodings, codebook)
    codes = jnp.argmax(score, axis=-1).astype(jnp.int32)
    chosen = jnp.take(c, codes, axis=0)
    separation = jnp.sqrt(jnp.maximum(2 - 2 * jnp.matmul(chosen, c.T, precision=lax.Precision.HIGHEST), 0.0))
    gap = jnp.max(score, axis=-1, keepdims=True) - score - 2 * radius[..., None] * separation
    gap = jnp.where(jnp.arange(c.shape[0]) == codes[..., None], jnp.inf, gap)
    return codes, jnp.min(gap, axis=-1) - score_tolerance


def dropout_counts(rng: jax.Array, batch: int, n_codebooks: int, dropout: float) -> jax.Array:
    """Codebooks used per item in training (the original's quantizer-dropout mask semantics).

    The first ``int(batch * dropout)`` items use ``randint(1, n_codebooks + 1)`` codebooks; the
    others use all of them (their count is ``n_codebooks + 1``, as in the original).
    """
    n_dropout = int(batch * dropout)
    drawn = jax.random.randint(rng, (batch,), 1, n_codebooks + 1)
    return jnp.where(jnp.arange(batch) < n_dropout, drawn, n_codebooks + 1)


def item_dropout_counts(
    keys: jax.Array, indices: jax.Array, global_batch: int, n_codebooks: int, dropout: float
) -> jax.Array:
    """:func:`dropout_counts` for some items of a global batch, each drawing from its own key.

    ``keys [b]`` and ``indices [b]`` (global item indices): items with an index below
    ``int(global_batch * dropout)`` use ``randint(1, n_codebooks + 1)`` codebooks, the others all.
    Drawn per item, the counts do not depend on how the batch is split across devices.
    """
    drawn = jax.vmap(lambda k: jax.random.randint(k, (), 1, n_codebooks + 1))(keys)
    return jnp.where(indices < int(global_batch * dropout), drawn, n_codebooks + 1)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@flax.struct.dataclass
class VQOutput:
    z_q: jax.Array  # [B, T, D] after out_proj, straight-through
    commitment_loss: jax.Array  # [B]
    codebook_loss: jax.Array  # [B]
    codes: jax.Array  # [B, T]
    z_e: jax.Array  # [B, T, d] projected latents


@flax.struct.dataclass
class RVQOutput:
    z: jax.Array  # [B, T, D]
    codes: jax.Array  # [B, N, T]
    latents: jax.Array  # [B, T, N * d]
    commitment_loss: jax.Array  # []
    codebook_loss: jax.Array  # []


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


class Codebook(nn.Module):
    """The embedding table, named ``weight`` as in PyTorch's nn.Embedding (init N(0, 1))."""

    size: int
    dim: int

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("weight", nn.initializers.normal(1.0), (self.size, self.dim))

    @nn.nowrap
    def numpy_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"weight": rng.standard_normal((self.size, self.dim)).astype(np.float32)}


class VectorQuantize(Layer):
    input_dim: int
    codebook_size: int
    codebook_dim: int

    @nn.nowrap
    def geometries(self) -> tuple[ConvGeometry, ...]:
        return (_K1, _K1)

    def setup(self):
        self.in_proj = WNConv1d(self.input_dim, self.codebook_dim, _K1)
        self.out_proj = WNConv1d(self.codebook_dim, self.input_dim, _K1)
        self.codebook = Codebook(self.codebook_size, self.codebook_dim)

    def __call__(self, z: jax.Array) -> VQOutput:
        z_e = self.in_proj(z)
        z_q, codes = self.decode_latents(z_e)
        commitment = jnp.mean(jnp.square(z_e - lax.stop_gradient(z_q)), axis=(1, 2))
        codebook = jnp.mean(jnp.square(z_q - lax.stop_gradient(z_e)), axis=(1, 2))
        z_q = z_e + lax.stop_gradient(z_q - z_e)  # straight-through estimator
        return VQOutput(self.out_proj(z_q), commitment, codebook, codes, z_e)

    def quantize_checked(
        self, z: jax.Array, error: jax.Array, score_tolerance: float,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Inference on ``z [B, T, D]`` that also says whether each code holds for any input within
        ``error [B]`` of ``z`` (l2, per frame): ``(z_q, codes [B, T], slack [B, T])``, ``slack``
        as :func:`nearest_code_checked`. The in-projection moves ``z_e`` by at most its operator
        norm times ``error``, and the normalised ``z_e`` by at most twice that over ``|z_e|``."""
        z_e = self.in_proj(z)
        radius = 2 * self.in_proj.operator_norm() * error[:, None] / jnp.maximum(jnp.linalg.norm(z_e, axis=-1), 1e-12)
        codes, slack = nearest_code_checked(z_e, self.codebook(), radius, score_tolerance)
        z_q = self.decode_code(codes)
        z_q = z_e + (z_q - z_e)  # the numbers __call__ passes on (its straight-through sum)
        return self.out_proj(z_q), codes, slack

    def decode_code(self, codes: jax.Array) -> jax.Array:
        """``codes [B, T]`` -> un-normalised codebook rows ``[B, T, d]``."""
        return jnp.take(self.codebook(), codes, axis=0)

    def decode_latents(self, z_e: jax.Array) -> tuple[jax.Array, jax.Array]:
        codes = nearest_code(z_e, self.codebook())
        return self.decode_code(codes), codes


class ResidualVectorQuantize(Layer):
    input_dim: int = 512
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.0

    @nn.nowrap
    def geometries(self) -> tuple[ConvGeometry, ...]:
        return (_K1, _K1) * self.n_codebooks

    def setup(self):
        self.quantizers = [
            VectorQuantize(self.input_dim, self.codebook_size, self.codebook_dim)
            for _ in range(self.n_codebooks)
        ]

    def __call__(
        self, z: jax.Array, n_quantizers: Optional[int] = None, train: bool = False,
        codebook_counts: Optional[jax.Array] = None,
    ) -> RVQOutput:
        """Quantise ``z [B, T, D]``.

        Inference uses the first ``n_quantizers`` codebooks (all by default). Training runs every
        codebook and masks each item's sum: item ``b`` keeps codebooks ``i < counts[b]``, where
        ``counts`` is ``codebook_counts [B]`` when given (the trainer draws it per global item, so
        that it does not depend on how a batch is split across devices), else
        :func:`dropout_counts` from the RNG stream ``"dropout"``, as the original does.
        ``n_quantizers`` is ignored in training, as in the original.
        """
        batch = z.shape[0]
        if train:
            n_used = self.n_codebooks
            if codebook_counts is not None:
                counts = codebook_counts
            elif self.quantizer_dropout > 0:
                counts = dropout_counts(
                    self.make_rng("dropout"), batch, self.n_codebooks, self.quantizer_dropout
                )
            else:
                counts = jnp.full((batch,), self.n_codebooks + 1)
        else:
            n_used = self.n_codebooks if n_quantizers is None else n_quantizers
            if not 1 <= n_used <= self.n_codebooks:
                raise ValueError(f"n_quantizers must be in 1..{self.n_codebooks}, got {n_quantizers}")
            counts = None

        z_q = jnp.zeros_like(z)
        residual = z
        commitment = jnp.zeros((), z.dtype)
        codebook = jnp.zeros((), z.dtype)
        codes, latents = [], []
        for i in range(n_used):
            out = self.quantizers[i](residual)
            mask = jnp.ones((batch,), z.dtype) if counts is None else (i < counts).astype(z.dtype)
            z_q = z_q + out.z_q * mask[:, None, None]
            residual = residual - out.z_q
            commitment = commitment + jnp.mean(out.commitment_loss * mask)
            codebook = codebook + jnp.mean(out.codebook_loss * mask)
            codes.append(out.codes)
            latents.append(out.z_e)
        return RVQOutput(
            z=z_q,
            codes=jnp.stack(codes, axis=1),
            latents=jnp.concatenate(latents, axis=-1),
            commitment_loss=commitment,
            codebook_loss=codebook,
        )

    def codes_checked(
        self, z: jax.Array, error: jax.Array, score_tolerance: float, n_quantizers: Optional[int] = None,
        residuals: bool = False,
    ) -> tuple[jax.Array, ...]:
        """Inference codes of ``z [B, T, D]`` and their slack ``[B, N, T]`` against an input error
        of at most ``error [B]`` per frame (:meth:`VectorQuantize.quantize_checked`); with
        ``residuals``, also each stage's input ``[B, N, T, D]`` (for measuring the error). The
        residual passed on is the numbers ``__call__`` passes on, so the codes are its codes."""
        n_used = self.n_codebooks if n_quantizers is None else n_quantizers
        if not 1 <= n_used <= self.n_codebooks:
            raise ValueError(f"n_quantizers must be in 1..{self.n_codebooks}, got {n_quantizers}")
        residual, codes, slack, inputs = z, [], [], []
        for i in range(n_used):
            inputs.append(residual)
            z_q, c, s = self.quantizers[i].quantize_checked(residual, error, score_tolerance)
            residual = residual - z_q
            codes.append(c)
            slack.append(s)
        out = (jnp.stack(codes, axis=1), jnp.stack(slack, axis=1))
        return out + (jnp.stack(inputs, axis=1),) if residuals else out

    def from_codes(self, codes: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``codes [B, N, T]`` (N <= n_codebooks) -> ``(z [B, T, D], z_p [B, T, N * d])``."""
        z_q, z_p = 0.0, []
        for i in range(codes.shape[1]):
            z_p_i = self.quantizers[i].decode_code(codes[:, i])
            z_p.append(z_p_i)
            z_q = z_q + self.quantizers[i].out_proj(z_p_i)
        return z_q, jnp.concatenate(z_p, axis=-1)

    def from_latents(self, latents: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Projected ``latents [B, T, M]`` -> ``(z, z_p, codes [B, N, T])`` with N = M // d whole codebooks."""
        n = min(latents.shape[-1] // self.codebook_dim, self.n_codebooks)
        z_q, z_p, codes = 0.0, [], []
        for i in range(n):
            sl = latents[..., i * self.codebook_dim : (i + 1) * self.codebook_dim]
            z_p_i, codes_i = self.quantizers[i].decode_latents(sl)
            z_p.append(z_p_i)
            codes.append(codes_i)
            z_q = z_q + self.quantizers[i].out_proj(z_p_i)
        return z_q, jnp.concatenate(z_p, axis=-1), jnp.stack(codes, axis=1)
