"""The facade, on top of everything: ``load_model`` / ``load_vae`` / ``load`` and the two model classes.

::

    codec = dac_jax.load_model("weights.pth")   # released .pth, a dac-jax folder, a model type, or Hugging Face
    codes = codec.encode(audio)                 # float32 [B, 1, T] at codec.sample_rate -> int32 [B, N, frames]
    audio = codec.decode(codes)                 # -> float32 [B, 1, samples]
    codec.module, codec.variables, codec.config # the pure pieces, for jit / grad / training

    vae = dac_jax.load_vae("checkpoint.pt")     # DAC-VAE: its training checkpoint or a bare state dict
    z, m, logs = vae.encode(audio)              # [B, D, frames] (z = m; pass key= to sample as the original)
    audio = vae.decode(z)                       # -> [B, 1, hop * frames]

:class:`Codec` and :class:`VAECodec` are the runtime's models (:mod:`dac_jax.runtime`) with
checked inputs, long-file methods (:mod:`dac_jax.codec`) and saving (:mod:`dac_jax.weights`).
Each operation is one ``jax.jit``-compiled function of the runtime, cached per input shape (and
per ``n_quantizers``); the variables are an argument, never baked into the compiled code.
Nothing below this module imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from dac_jax import options, runtime, stream
from dac_jax.codec import compress as dac_files, latents as vae_files
from dac_jax.codec.batch import FILES
from dac_jax.codec.signal import DecodedAudio
from dac_jax.errors import AudioError, UsageError
from dac_jax.model.config import PRESETS, ConfigLike, DACConfig, VAEConfigLike, get_config, get_vae_config
from dac_jax.model.dac import DACOutput, EncodeOutput, init_variables
from dac_jax.model.vae import VAELatents, VAEOutput, init_vae_variables
from dac_jax.runtime import DACModel, VAEModel
from dac_jax.weights.formats import read_weights
from dac_jax.weights.hf_format import write_hf_folder
from dac_jax.weights.native import save_native
from dac_jax.weights.torch_format import write_torch_checkpoint
from dac_jax.weights.vae import write_vae_checkpoint


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


def _check_lengths(lengths: Any, shape: tuple, name: str) -> Optional[jax.Array]:
    """``lengths [B]`` of a ragged batch of ``shape [B, C, T]``: integers in 1..T, or None."""
    if lengths is None:
        return None
    if not np.issubdtype(_dtype(lengths), np.integer) or np.shape(lengths) != (shape[0],):
        raise UsageError(f"{name} must be integers, one per item: shape ({shape[0]},); got {_dtype(lengths)} {np.shape(lengths)}")
    lo, hi = int(np.min(lengths)), int(np.max(lengths))
    if lo < 1 or hi > shape[-1]:
        raise UsageError(f"{name} must be in 1..{shape[-1]} (the batch's length); found {lo}..{hi}")
    return jnp.asarray(lengths, jnp.int32)


class _Facade:
    """What both facades add to a runtime model, written once: decoding their files, saving."""

    _export: Callable[[Union[str, Path], dict, Any], Path]  # the original's file format of the model

    def decompress(self, source, win_duration: float = 5.0, batch_size: int = 4, progress=None) -> DecodedAudio:
        """Decode a ``DACFile`` / ``LatentFile`` (or its path) to ``DecodedAudio(samples [B, C, T],
        sample_rate)`` at the input's rate, length and channels (:mod:`dac_jax.codec.compress`,
        :mod:`dac_jax.codec.latents`)."""
        return FILES[self.kind].decode(self, source, win_duration=win_duration, batch_size=batch_size, progress=progress)

    def save(self, path: Union[str, Path], metadata: Optional[dict] = None) -> Path:
        """Write dac-jax's own checkpoint folder (``load_model`` / ``load_vae`` read it without torch)."""
        return save_native(path, self.variables, self.config, metadata)

    def export_torch(self, path: Union[str, Path]) -> Path:
        """Write the original's format (needs torch): DAC's released ``.pth`` (loads with
        ``dac.DAC.load``), DAC-VAE's ``checkpoint.pt`` (``{"generator", "config"}``)."""
        return type(self)._export(path, self.variables, self.config)

    # -- streaming (dac_jax.stream) ---------------------------------------------------------------

    def stream_decoder(self, batch_size: int = 1) -> stream.StreamDecoder:
        """``push(frames [B, C, k])`` -> the audio now final; ``flush()`` -> the rest: together, ``decode``."""
        return stream.stream_decoder(self, batch_size)

    def stream_encoder(self, batch_size: int = 1, n_quantizers: Optional[int] = None) -> stream.StreamEncoder:
        """``push(audio [B, 1, t])`` -> the frames now final; ``flush()`` -> the rest: together, ``encode``."""
        return stream.stream_encoder(self, batch_size, n_quantizers)

    @property
    def stream_latency(self) -> stream.StreamLatency:
        """What must arrive after a frame before its output is final (samples, frames, ms)."""
        return stream.latency(self.module)


class Codec(_Facade, DACModel):
    """A DAC model with its variables: ``encode`` / ``decode`` on channels-first arrays."""

    _export = staticmethod(write_torch_checkpoint)

    def export_hf(self, path: Union[str, Path]) -> Path:
        """Write a Hugging Face folder (``config.json``, ``model.safetensors``) that
        ``transformers.DacModel.from_pretrained`` loads; no torch needed. A folder read from that
        format is written back bit for bit."""
        return write_hf_folder(path, self.variables, self.config)

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

    def encode(self, audio: Any, n_quantizers: Optional[int] = None, lengths: Any = None) -> jax.Array:
        """``audio [B, 1, T]`` -> ``codes [B, n, ceil(T / hop)]`` (zero-padded to whole frames).

        ``lengths [B]``: a batch of signals of different lengths, right-padded to ``T``. Item b's
        codes are then its first ``frame_lengths(lengths)[b]`` frames, the codes of encoding it alone
        (up to float rounding), followed by zeros; what its padding holds does not matter.
        """
        if not self.checks_codes:
            return self.encode_full(audio, n_quantizers, lengths).codes
        audio = self._check_audio(audio)
        lengths = _check_lengths(lengths, audio.shape, "lengths")
        codes = self.encode_frames(np.asarray(audio), self._check_n_quantizers(n_quantizers),
                                   lengths=None if lengths is None else np.asarray(lengths))
        return jnp.asarray(np.asarray(codes))

    def encode_full(self, audio: Any, n_quantizers: Optional[int] = None, lengths: Any = None) -> EncodeOutput:
        """Like :meth:`encode` but returns ``z``, ``latents`` and the losses too (not masked in a ragged batch)."""
        audio = self._check_audio(audio)
        return runtime.encode(self.module, self.inference_variables, audio, self._check_n_quantizers(n_quantizers),
                              _check_lengths(lengths, audio.shape, "lengths"))

    def decode(self, codes: Any, frame_lengths: Any = None) -> jax.Array:
        """``codes [B, n, frames]`` -> ``audio [B, 1, samples]`` (``output_length`` of the frames' samples).

        ``frame_lengths [B]``: code sequences of different lengths, right-padded; item b's audio is
        then its first ``decoder_samples(frame_lengths[b])`` samples, as decoding it alone gives,
        followed by zeros.
        """
        codes = self._check_codes(codes)
        return runtime.decode(self.module, self.inference_variables, codes,
                              _check_lengths(frame_lengths, codes.shape, "frame_lengths"))

    def __call__(self, audio: Any, n_quantizers: Optional[int] = None) -> DACOutput:
        """Encode and decode (the original's ``forward``): audio cropped to the input length."""
        return runtime.forward(self.module, self.inference_variables, self._check_audio(audio), self._check_n_quantizers(n_quantizers))

    # -- long files -------------------------------------------------------------------------------

    def compress(self, source, sample_rate: Optional[int] = None, win_duration: float = 5.0,
                 n_quantizers: Optional[int] = None, normalize_db: Optional[float] = -16.0,
                 mode: str = "independent", batch_size: int = 4, progress=None):
        """Compress a file or an array into a ``DACFile`` (see :func:`dac_jax.codec.compress.compress`)."""
        return dac_files.compress(self, source, sample_rate, win_duration, n_quantizers, normalize_db, mode, batch_size, progress)


def init_model(config: ConfigLike = "44khz", seed: int = 0) -> Codec:
    """A codec with random weights (PyTorch-like initialisation) for a preset name or config."""
    config = get_config(config)
    return Codec(config, init_variables(config, seed), source=f"random init (seed {seed})")


def load_model(
    source: Union[str, Path] = "44khz",
    model_bitrate: str = "8kbps",
    tag: str = "latest",
    config: Optional[DACConfig] = None,
) -> Codec:
    """Load a codec from a released-format ``.pth``, a dac-jax checkpoint folder, a model type, or
    a Hugging Face DAC (a ``save_pretrained`` folder or a hub id).

    A model type (``"44khz"``, ``"24khz"``, ``"16khz"``, ``"44khz-16kbps"``) loads the released
    weights from the original's cache, downloading them on first use. A hub id
    (``"descript/dac_44khz"``) is read from the Hugging Face cache or downloaded into it (not with
    ``HF_HUB_OFFLINE=1``); ``tag`` other than ``"latest"`` is its revision. ``config`` is only
    needed for a bare state dict without metadata.
    """
    return _bind(read_weights(source, "dac", config=config, model_bitrate=model_bitrate, tag=tag))


def load(source: Union[str, Path], kind: Optional[str] = None, **kwargs) -> Union[Codec, VAECodec]:
    """Load whichever model ``source`` holds: a dac-jax folder says which; a file is read as
    ``kind`` (``"dac"``, the default, or ``"vae"``). ``kwargs`` as :func:`load_model` / :func:`load_vae`."""
    return _bind(read_weights(source, kind, **kwargs))


def _bind(weights) -> Union[Codec, VAECodec]:
    return _CLASSES[weights.kind](weights.config, weights.variables, source=weights.source)


# -- DAC-VAE ------------------------------------------------------------------------------------------


class VAECodec(_Facade, VAEModel):
    """A DAC-VAE generator with its variables: ``encode`` / ``decode`` on channels-first arrays.

    Without a ``key`` the latent is the mean (``z = m``); with one, ``z`` is sampled as the
    original always does (noise ``jax.random.normal(key, [B, D, frames])``).
    """

    _export = staticmethod(write_vae_checkpoint)

    def encode(self, audio: Any, key: Optional[jax.Array] = None, lengths: Any = None) -> VAELatents:
        """``audio [B, 1, T]`` -> ``(z, m, logs)``, each ``[B, D, ceil(T / hop)]`` (zero-padded to whole frames).

        ``lengths [B]``: a ragged batch, as :meth:`Codec.encode` (zeros past each item's frames).
        """
        audio = _check_audio(audio, self.sample_rate)
        return runtime.vae_encode(self.module, self.inference_variables, audio, key,
                                  _check_lengths(lengths, audio.shape, "lengths"))

    def decode(self, z: Any, frame_lengths: Any = None) -> jax.Array:
        """``z [B, D, frames]`` -> ``audio [B, 1, hop * frames]``; ``frame_lengths [B]``: a ragged
        batch, as :meth:`Codec.decode`."""
        shape = np.shape(z)
        if len(shape) != 3 or shape[1] != self.config.latent_dim or shape[2] == 0:
            raise UsageError(f"z must be [batch, {self.config.latent_dim}, frames] with frames > 0; got shape {shape}")
        return runtime.vae_decode(self.module, self.inference_variables, jnp.asarray(z, jnp.float32),
                                  _check_lengths(frame_lengths, shape, "frame_lengths"))

    def __call__(self, audio: Any, key: Optional[jax.Array] = None) -> VAEOutput:
        """Encode and decode (the original's ``forward``): audio cropped to the input length, and the KL term."""
        return runtime.vae_forward(self.module, self.inference_variables, _check_audio(audio, self.sample_rate), key)

    # -- long files -------------------------------------------------------------------------------

    def compress(self, source, sample_rate: Optional[int] = None, win_duration: float = 5.0,
                 normalize_db: Optional[float] = None, seed: Optional[int] = None, batch_size: int = 4,
                 progress=None):
        """Encode a file or an array to a ``LatentFile`` in windows (see :func:`dac_jax.codec.latents.encode`):
        latents equal to encoding the whole signal at once, whatever ``win_duration``."""
        return vae_files.encode(self, source, sample_rate, win_duration, normalize_db, seed, batch_size, progress)


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
    return _bind(read_weights(path, "vae", config=config, default_config=default_config))


_CLASSES = {"dac": Codec, "vae": VAECodec}

__all__ = ["Codec", "VAECodec", "init_model", "init_vae", "load", "load_model", "load_vae", "PRESETS"]
