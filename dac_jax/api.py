"""A small scripting facade over the pure Flax modules.

::

    codec = dac_jax.load_model("weights.pth")   # released .pth, a dac-jax folder, or a model type
    codes = codec.encode(audio)                 # float32 [B, 1, T] at codec.sample_rate -> int32 [B, N, frames]
    audio = codec.decode(codes)                 # -> float32 [B, 1, samples]
    codec.module, codec.variables, codec.config # the pure pieces, for jit / grad / training

    vae = dac_jax.load_vae("checkpoint.pt")     # DAC-VAE: its training checkpoint or a bare state dict
    z, m, logs = vae.encode(audio)              # [B, D, frames] (z = m; pass key= to sample as the original)
    audio = vae.decode(z)                       # -> [B, 1, hop * frames]

Each operation is one ``jax.jit``-compiled function, cached per input shape (and per
``n_quantizers``); the variables are an argument, never baked into the compiled code.
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from dac_jax import options
from dac_jax.errors import AudioError, UsageError, WeightsError
from dac_jax.model.config import (
    PRESETS, ConfigLike, DACConfig, VAEConfig, VAEConfigLike, get_config, get_vae_config,
)
from dac_jax.model.dac import DAC, DACOutput, EncodeOutput, init_variables
from dac_jax.model.vae import DACVAE, VAELatents, VAEOutput, init_vae_variables
from dac_jax.nn.fold import fold_variables

# How many times each jitted entry point was traced (a test hook: one trace per shape).
trace_counts: collections.Counter = collections.Counter()


@functools.partial(jax.jit, static_argnames=("module", "n_quantizers"))
def _encode(module: DAC, variables, audio, n_quantizers):
    trace_counts["encode"] += 1
    return module.apply(variables, audio, n_quantizers, method=lambda m, a, n: m.encode(m.preprocess(a), n))


@functools.partial(jax.jit, static_argnames=("module",))
def _decode(module: DAC, variables, codes):
    trace_counts["decode"] += 1
    return module.apply(variables, codes, method=DAC.decode_codes)


@functools.partial(jax.jit, static_argnames=("module", "n_quantizers"))
def _forward(module: DAC, variables, audio, n_quantizers):
    trace_counts["forward"] += 1
    return module.apply(variables, audio, n_quantizers)


def _dtype(x: Any) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def _check_audio(audio: Any, sample_rate: int) -> jax.Array:
    shape = np.shape(audio)
    if len(shape) != 3 or shape[1] != 1 or shape[2] == 0:
        raise AudioError(
            f"audio must be [batch, 1, samples] at {sample_rate} Hz with samples > 0; got shape {shape}"
        )
    dtype = _dtype(audio)
    if not np.issubdtype(dtype, np.floating):
        raise AudioError(f"audio must be floating point (float32 in [-1, 1]); got {dtype}")
    audio = jnp.asarray(audio, jnp.float32)
    if not bool(jnp.isfinite(audio).all()):
        raise AudioError("audio contains NaN or Inf samples")
    return audio


class _Model:
    """A Flax model with its variables: the parts the DAC and DAC-VAE facades share."""

    _fold_kwargs: dict = {}
    _winograd: Optional[int] = None

    def __init__(self, config, module, variables: dict, source: Optional[str] = None):
        self.config = config
        self.module = module
        self.variables = variables
        self.source = source

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
        from dac_jax.nn.winograd import POINTS

        if m is not None and m not in POINTS:
            raise UsageError(f"winograd must be one of {sorted(POINTS)} or None; got {m!r}")
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config}, source={self.source!r})"

    def save(self, path: Union[str, Path], metadata: Optional[dict] = None) -> Path:
        """Write dac-jax's own checkpoint folder (``load_model`` / ``load_vae`` read it without torch)."""
        from dac_jax.weights.native import save_native

        return save_native(path, self.variables, self.config, metadata)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length


class Codec(_Model):
    """A DAC model with its variables: ``encode`` / ``decode`` on channels-first arrays."""

    def __init__(self, config: DACConfig, variables: dict, source: Optional[str] = None):
        super().__init__(config, DAC(config), variables, source)
        self.unpadded_module = DAC(config, padded=False)

    # -- geometry ----------------------------------------------------------------------------

    @property
    def n_codebooks(self) -> int:
        return self.config.n_codebooks

    @functools.cached_property
    def delay(self) -> int:
        return self.module.delay()

    def output_length(self, length: int) -> int:
        return self.module.output_length(length)

    # -- validation ----------------------------------------------------------------------------

    def _check_audio(self, audio: Any) -> jax.Array:
        return _check_audio(audio, self.sample_rate)

    def _check_n_quantizers(self, n_quantizers: Optional[int]) -> Optional[int]:
        return options.n_quantizers(n_quantizers, self.n_codebooks)

    def _check_codes(self, codes: Any) -> jax.Array:
        shape = np.shape(codes)
        if len(shape) != 3 or not 1 <= shape[1] <= self.n_codebooks or shape[2] == 0:
            raise UsageError(
                f"codes must be [batch, n (1..{self.n_codebooks}), frames] integers; got shape {shape}"
            )
        if not np.issubdtype(_dtype(codes), np.integer):
            raise UsageError(f"codes must be integers; got {_dtype(codes)}")
        lo, hi = int(np.min(codes)), int(np.max(codes))
        if lo < 0 or hi >= self.config.codebook_size:
            raise UsageError(f"codes must be in 0..{self.config.codebook_size - 1}; found {lo}..{hi}")
        return jnp.asarray(codes, jnp.int32)

    # -- inference ----------------------------------------------------------------------------

    def encode(self, audio: Any, n_quantizers: Optional[int] = None) -> jax.Array:
        """``audio [B, 1, T]`` -> ``codes [B, n, ceil(T / hop)]`` (zero-padded to whole frames)."""
        return self.encode_full(audio, n_quantizers).codes

    def encode_full(self, audio: Any, n_quantizers: Optional[int] = None) -> EncodeOutput:
        """Like :meth:`encode` but returns ``z``, ``latents`` and the losses too."""
        return _encode(self.module, self.inference_variables, self._check_audio(audio), self._check_n_quantizers(n_quantizers))

    def decode(self, codes: Any) -> jax.Array:
        """``codes [B, n, frames]`` -> ``audio [B, 1, samples]`` (``output_length`` of the frames' samples)."""
        return _decode(self.module, self.inference_variables, self._check_codes(codes))

    def __call__(self, audio: Any, n_quantizers: Optional[int] = None) -> DACOutput:
        """Encode and decode (the original's ``forward``): audio cropped to the input length."""
        return _forward(self.module, self.inference_variables, self._check_audio(audio), self._check_n_quantizers(n_quantizers))

    # -- long files -------------------------------------------------------------------------------

    def compress(self, source, sample_rate: Optional[int] = None, win_duration: float = 5.0,
                 n_quantizers: Optional[int] = None, normalize_db: Optional[float] = -16.0,
                 mode: str = "independent", batch_size: int = 4, progress=None):
        """Compress a file or an array into a ``DACFile`` (see :func:`dac_jax.codec.compress.compress`)."""
        from dac_jax.codec.compress import compress

        return compress(self, source, sample_rate, win_duration, n_quantizers, normalize_db, mode, batch_size, progress)

    def decompress(self, source, win_duration: float = 5.0, batch_size: int = 4, progress=None):
        """Decode a ``DACFile`` or ``.dac`` path to ``DecodedAudio(samples [B, C, T], sample_rate)``."""
        from dac_jax.codec.compress import decompress

        return decompress(self, source, win_duration, batch_size, progress)

    # -- saving ------------------------------------------------------------------------------------

    def export_torch(self, path: Union[str, Path]) -> Path:
        """Write a released-format ``.pth`` that the original ``dac`` loads (needs torch)."""
        from dac_jax.weights.torch_format import write_torch_checkpoint

        return write_torch_checkpoint(path, self.variables, self.config)


def init_model(config: ConfigLike = "44khz", seed: int = 0) -> Codec:
    """A codec with random weights (PyTorch-like initialisation) for a preset name or config."""
    config = get_config(config)
    return Codec(config, init_variables(config, seed), source=f"random init (seed {seed})")


def _check_source(source: Any) -> None:
    if not isinstance(source, (str, Path)) or not str(source):
        raise UsageError(f"the model to load must be a path or a model type (a non-empty string); got {source!r}")


def load_model(
    source: Union[str, Path] = "44khz",
    model_bitrate: str = "8kbps",
    tag: str = "latest",
    config: Optional[DACConfig] = None,
) -> Codec:
    """Load a codec from a released-format ``.pth``, a dac-jax checkpoint folder, or a model type.

    A model type (``"44khz"``, ``"24khz"``, ``"16khz"``, ``"44khz-16kbps"``) loads the released
    weights from the original's cache, downloading them on first use. ``config`` is only needed
    for a bare state dict without metadata.
    """
    from dac_jax.weights import native, registry

    _check_source(source)
    path = Path(source)
    if not path.exists() and isinstance(source, str) and source.split("-")[0].lower() in {"44khz", "24khz", "16khz"}:
        path = registry.download(source, model_bitrate, tag)
    if path.is_dir():
        cfg, variables, _ = native.load_native(path)
        if isinstance(cfg, VAEConfig):
            raise WeightsError(f"{path}: a DAC-VAE checkpoint folder, not a DAC model; load it with dac_jax.load_vae")
        return Codec(cfg, variables, source=str(path))
    if path.is_file():
        from dac_jax.weights.torch_format import read_torch_checkpoint, state_dict_to_variables

        ckpt = read_torch_checkpoint(path, config)
        variables = state_dict_to_variables(ckpt.state_dict, ckpt.config, source=str(path))
        return Codec(ckpt.config, variables, source=str(path))
    raise WeightsError(
        f"{source}: no such file or folder, and not a model type (44khz, 44khz-16kbps, 24khz, 16khz)"
    )


# -- DAC-VAE ------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("module",))
def _vae_encode(module: DACVAE, variables, audio, key):
    trace_counts["vae_encode"] += 1
    return module.apply(
        variables, audio, key, key is None, method=lambda m, a, k, det: m.encode(m.preprocess(a), k, det)
    )


@functools.partial(jax.jit, static_argnames=("module",))
def _vae_decode(module: DACVAE, variables, z):
    trace_counts["vae_decode"] += 1
    return module.apply(variables, z, method=DACVAE.decode)


@functools.partial(jax.jit, static_argnames=("module",))
def _vae_forward(module: DACVAE, variables, audio, key):
    trace_counts["vae_forward"] += 1
    return module.apply(variables, audio, key, key is None)


class VAECodec(_Model):
    """A DAC-VAE generator with its variables: ``encode`` / ``decode`` on channels-first arrays.

    Without a ``key`` the latent is the mean (``z = m``); with one, ``z`` is sampled as the
    original always does (noise ``jax.random.normal(key, [B, D, frames])``).
    """

    _fold_kwargs = {"deterministic": True}

    def __init__(self, config: VAEConfig, variables: dict, source: Optional[str] = None):
        super().__init__(config, DACVAE(config), variables, source)

    def encode(self, audio: Any, key: Optional[jax.Array] = None) -> VAELatents:
        """``audio [B, 1, T]`` -> ``(z, m, logs)``, each ``[B, D, ceil(T / hop)]`` (zero-padded to whole frames)."""
        return _vae_encode(self.module, self.inference_variables, _check_audio(audio, self.sample_rate), key)

    def decode(self, z: Any) -> jax.Array:
        """``z [B, D, frames]`` -> ``audio [B, 1, hop * frames]``."""
        shape = np.shape(z)
        if len(shape) != 3 or shape[1] != self.config.latent_dim or shape[2] == 0:
            raise UsageError(f"z must be [batch, {self.config.latent_dim}, frames] with frames > 0; got shape {shape}")
        return _vae_decode(self.module, self.inference_variables, jnp.asarray(z, jnp.float32))

    def __call__(self, audio: Any, key: Optional[jax.Array] = None) -> VAEOutput:
        """Encode and decode (the original's ``forward``): audio cropped to the input length, and the KL term."""
        return _vae_forward(self.module, self.inference_variables, _check_audio(audio, self.sample_rate), key)

    # -- long files -------------------------------------------------------------------------------

    def compress(self, source, sample_rate: Optional[int] = None, win_duration: float = 5.0,
                 normalize_db: Optional[float] = None, seed: Optional[int] = None, batch_size: int = 4,
                 progress=None):
        """Encode a file or an array to a ``LatentFile`` in windows (see :func:`dac_jax.codec.latents.encode`):
        latents equal to encoding the whole signal at once, whatever ``win_duration``."""
        from dac_jax.codec import latents

        return latents.encode(self, source, sample_rate, win_duration, normalize_db, seed, batch_size, progress)

    def decompress(self, source, win_duration: float = 5.0, batch_size: int = 4, progress=None):
        """Decode a ``LatentFile`` or its path to ``DecodedAudio(samples [B, C, T], sample_rate)``
        at the input's rate and length (see :func:`dac_jax.codec.latents.decode`)."""
        from dac_jax.codec import latents

        return latents.decode(self, source, win_duration, batch_size, progress)

    # -- saving ------------------------------------------------------------------------------------

    def export_torch(self, path: Union[str, Path]) -> Path:
        """Write a ``checkpoint.pt`` the original's inference loads (``{"generator", "config"}``; needs torch)."""
        from dac_jax.weights.vae import write_vae_checkpoint

        return write_vae_checkpoint(path, self.variables, self.config)


def init_vae(config: VAEConfigLike = "vae24khz-x2", seed: int = 0) -> VAECodec:
    """A DAC-VAE with random weights (PyTorch's default conv initialisation) for a preset name or config."""
    config = get_vae_config(config)
    return VAECodec(config, init_vae_variables(config, seed), source=f"random init (seed {seed})")


def load_vae(
    path: Union[str, Path], config: Optional[VAEConfigLike] = None, default_config: Optional[VAEConfigLike] = None
) -> VAECodec:
    """Load a DAC-VAE from the original's ``checkpoint.pt`` (its ``generator``), a bare state dict,
    or a dac-jax checkpoint folder (:meth:`VAECodec.save`; no torch needed).

    ``config``, a preset name (``"vae24khz-x2"``, ``"vae24khz-x3"``) or a :class:`VAEConfig`, is
    needed for a bare state dict; otherwise it comes from the checkpoint's ``config["vae"]``.
    ``default_config`` is used only for a file without one. Keys and shapes are checked strictly.
    """
    from dac_jax.weights import native
    from dac_jax.weights.vae import read_vae_checkpoint, vae_state_dict_to_variables

    _check_source(path)
    if Path(path).is_dir():
        cfg, variables, _ = native.load_native(path)
        if not isinstance(cfg, VAEConfig):
            raise WeightsError(f"{path}: a DAC checkpoint folder, not a DAC-VAE; load it with dac_jax.load_model")
        if config is not None and get_vae_config(config) != cfg:
            raise WeightsError(f"{path}: holds the DAC-VAE {cfg}, not the requested {get_vae_config(config)}")
        return VAECodec(cfg, variables, source=str(path))

    ckpt = read_vae_checkpoint(path, config, default_config)
    variables = vae_state_dict_to_variables(ckpt.state_dict, ckpt.config, source=str(ckpt.path))
    return VAECodec(ckpt.config, variables, source=str(ckpt.path))


__all__ = ["Codec", "VAECodec", "init_model", "init_vae", "load_model", "load_vae", "PRESETS"]
