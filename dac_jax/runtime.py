"""The inference runtime: every compiled entry point of DAC and DAC-VAE, and the models they run.

Layer: ``nn`` -> ``model`` -> **runtime** -> ``codec`` -> ``api`` -> ``cli``. This module knows
no files and no facade; :mod:`dac_jax.codec` and :mod:`dac_jax.api` build on it.

The entry points are pure functions of ``(module, variables, inputs)``, each one ``jax.jit``
keyed by the module (static: its config and padding mode) and the input shapes; the variables are
an argument, never baked into the compiled code. :data:`trace_counts` counts the traces of each
(one per shape is the contract; tests assert it).

:class:`Model` binds a module to its variables (folded for inference once per load) and says what
the codec layer needs of any autoencoder: its rates and hop, its receptive fields in frames, and
its bottleneck's per-frame ``encode_frames`` / ``decode_frames`` on host arrays. :class:`DACModel`
and :class:`VAEModel` are the two bottlenecks; everything built on them is written once.
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dac_jax.errors import UsageError
from dac_jax.model.config import DACConfig, VAEConfig
from dac_jax.model.dac import DAC, Autoencoder, DACOutput, EncodeOutput
from dac_jax.model.vae import DACVAE, VAELatents, VAEOutput
from dac_jax.nn.fold import fold_variables
from dac_jax.nn.winograd import POINTS as WINOGRAD_POINTS

#: How many times each entry point was traced (one trace per input shape and static argument).
trace_counts: collections.Counter = collections.Counter()


# -- DAC ----------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("module", "n_quantizers"))
def encode(module: DAC, variables, audio: jax.Array, n_quantizers: Optional[int] = None) -> EncodeOutput:
    """``audio [B, 1, T]`` -> :class:`EncodeOutput` (``codes [B, n, ceil(T / hop)]`` in padded mode)."""
    trace_counts["encode"] += 1
    return module.apply(variables, audio, n_quantizers, method=lambda m, a, n: m.encode(m.preprocess(a), n))


@functools.partial(jax.jit, static_argnames=("module",))
def decode(module: DAC, variables, codes: jax.Array) -> jax.Array:
    """``codes [B, n, frames]`` -> ``audio [B, 1, decoder_samples(frames)]``."""
    trace_counts["decode"] += 1
    return module.apply(variables, codes, method=DAC.decode_codes)


@functools.partial(jax.jit, static_argnames=("module", "n_quantizers"))
def forward(module: DAC, variables, audio: jax.Array, n_quantizers: Optional[int] = None) -> DACOutput:
    """Encode and decode (the original's ``forward``): :class:`DACOutput`, audio cropped to ``T``."""
    trace_counts["forward"] += 1
    return module.apply(variables, audio, n_quantizers)


# -- DAC-VAE ----------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("module",))
def vae_encode(module: DACVAE, variables, audio: jax.Array, key: Optional[jax.Array] = None) -> VAELatents:
    """``audio [B, 1, T]`` -> ``(z, m, logs)``, each ``[B, D, ceil(T / hop)]``; ``z = m`` without a key."""
    trace_counts["vae_encode"] += 1
    return module.apply(
        variables, audio, key, key is None, method=lambda m, a, k, det: m.encode(m.preprocess(a), k, det)
    )


@functools.partial(jax.jit, static_argnames=("module",))
def vae_decode(module: DACVAE, variables, z: jax.Array) -> jax.Array:
    """``z [B, D, frames]`` -> ``audio [B, 1, hop * frames]``."""
    trace_counts["vae_decode"] += 1
    return module.apply(variables, z, method=DACVAE.decode)


@functools.partial(jax.jit, static_argnames=("module",))
def vae_forward(module: DACVAE, variables, audio: jax.Array, key: Optional[jax.Array] = None) -> VAEOutput:
    """Encode and decode: :class:`VAEOutput` (audio cropped to ``T``, and the KL term)."""
    trace_counts["vae_forward"] += 1
    return module.apply(variables, audio, key, key is None)


# -- bound models -------------------------------------------------------------------------------------


class Model:
    """An autoencoder module with its variables: what the codec layer runs, for DAC and DAC-VAE alike.

    ``module`` is the padded-mode module (the original's default), ``variables`` the trainable
    parametrisation (``{"params": ...}``) and ``inference_variables`` the same with every
    weight-normed convolution folded into its kernel (computed once per assignment of
    ``variables``; see :mod:`dac_jax.nn.fold`). Subclasses give ``encode_frames`` /
    ``decode_frames``: the bottleneck's output per latent frame, on host arrays.
    """

    #: ``"dac"`` or ``"vae"``: the one switch the codec layer keys its file formats on.
    kind: ClassVar[str]
    _fold_kwargs: ClassVar[dict] = {}

    def __init__(self, config: Any, module: Autoencoder, variables: dict, source: Optional[str] = None):
        self.config = config
        self.module = module
        self._winograd: Optional[int] = None
        self.variables = variables
        self.source = source

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config}, source={self.source!r})"

    # -- variables --------------------------------------------------------------------------------

    @property
    def variables(self) -> dict:
        """The model's variables (``{"params": ...}``, the trainable parametrisation)."""
        return self._variables

    @variables.setter
    def variables(self, variables: dict) -> None:
        self._variables = jax.tree_util.tree_map(jnp.asarray, variables)
        self._inference_variables = None

    @property
    def winograd(self) -> Optional[int]:
        """Opt-in experiment: ``2`` or ``4`` runs the wide kernel-7 convolutions as Winograd F(m, 7)
        (:mod:`dac_jax.nn.winograd`); ``None`` (default) keeps direct convolutions, whose float32
        results follow the original's. Setting it refolds the inference variables."""
        return self._winograd

    @winograd.setter
    def winograd(self, m: Optional[int]) -> None:
        if m is not None and m not in WINOGRAD_POINTS:
            raise UsageError(f"winograd must be one of {sorted(WINOGRAD_POINTS)} or None; got {m!r}")
        self._winograd = m
        self._inference_variables = None

    @property
    def inference_variables(self) -> dict:
        """``variables`` with every weight-normed conv folded into its kernel, once per load.

        What ``encode``, ``decode`` and chunked compression run on (same outputs up to float
        rounding; see :mod:`dac_jax.nn.fold`). Recomputed when ``variables`` is assigned.
        """
        if self._inference_variables is None:
            probe = jnp.zeros((1, 1, self.config.hop_length), jnp.float32)
            self._inference_variables = fold_variables(
                self.module, self._variables, probe, winograd=self._winograd, **self._fold_kwargs
            )
        return self._inference_variables

    # -- geometry -----------------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @functools.cached_property
    def encoder_context(self) -> int:
        """Context frames per side that make a window's frames equal whole-signal encoding: the
        encoder's receptive field, in frames."""
        return math.ceil(self.module.encoder_receptive_field() / self.hop_length)

    @functools.cached_property
    def decoder_context(self) -> int:
        """Context frames per side for decoding: the decoder's receptive field, in frames."""
        return self.module.decoder_receptive_field()

    def decoder_samples(self, frames: int) -> int:
        """Samples the padded decoder gives for ``frames`` frames."""
        return self.module.decoder_samples(frames)

    # -- the bottleneck, per frame ----------------------------------------------------------------------

    def encode_frames(self, audio: np.ndarray) -> jax.Array:
        """``audio [B, 1, T]`` -> ``[B, F, ceil(T / hop)]``, one column per latent frame (padded mode;
        a device array: the caller decides when to wait for it)."""
        raise NotImplementedError

    def decode_frames(self, frames: np.ndarray) -> jax.Array:
        """``[B, F', frames]`` -> ``audio [B, decoder_samples(frames)]`` (padded mode)."""
        raise NotImplementedError


class DACModel(Model):
    """DAC: frames are integer codes ``[B, n, frames]``; also runs the original's unpadded mode."""

    kind = "dac"

    def __init__(self, config: DACConfig, variables: dict, source: Optional[str] = None):
        super().__init__(config, DAC(config), variables, source)
        self.unpadded_module = DAC(config, padded=False)

    @property
    def n_codebooks(self) -> int:
        return self.config.n_codebooks

    @functools.cached_property
    def delay(self) -> int:
        return self.module.delay()

    def output_length(self, length: int) -> int:
        return self.module.output_length(length)

    def encode_frames(self, audio: np.ndarray, n_quantizers: Optional[int] = None, padded: bool = True) -> jax.Array:
        module = self.module if padded else self.unpadded_module
        return encode(module, self.inference_variables, audio, n_quantizers).codes

    def decode_frames(self, codes: np.ndarray, padded: bool = True) -> jax.Array:
        module = self.module if padded else self.unpadded_module
        return decode(module, self.inference_variables, codes)[:, 0]


class VAEModel(Model):
    """DAC-VAE: frames are the Gaussian's mean and log-scale stacked, ``[B, 2 * D, frames]``, on
    the way in, and latents ``z [B, D, frames]`` on the way out."""

    kind = "vae"
    _fold_kwargs = {"deterministic": True}

    def __init__(self, config: VAEConfig, variables: dict, source: Optional[str] = None):
        super().__init__(config, DACVAE(config), variables, source)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode_frames(self, audio: np.ndarray) -> jax.Array:
        latents = vae_encode(self.module, self.inference_variables, audio, None)
        return jnp.concatenate([latents.m, latents.logs], axis=1)

    def decode_frames(self, z: np.ndarray) -> jax.Array:
        return vae_decode(self.module, self.inference_variables, z)[:, 0]


__all__ = [
    "DACModel", "Model", "VAEModel", "decode", "encode", "forward", "trace_counts", "vae_decode", "vae_encode",
    "vae_forward",
]
