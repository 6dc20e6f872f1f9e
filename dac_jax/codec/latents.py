"""DAC-VAE on files: audio files or arrays to latent files (:mod:`dac_jax.codec.latentfile`) and back.

The signal path follows the original's ``inference.py``: resample to the model's rate (24 kHz;
julius' algorithm, as for the codec), clamp to [-1, 1], no loudness normalisation unless asked for.
Unlike the original, which downmixes to mono, every channel is encoded as its own item, so a
stereo file comes back stereo. The loudness is measured and stored either way.

Encoding and decoding are window-independent: the latents equal the whole signal's encoding (the
mean; a sample draws its noise for the whole signal at once, from one key) and the audio equals the
whole latent sequence's decoding, whatever ``win_duration``; windows are batched ``batch_size`` per
compiled call and only one batch is on the device at a time.

Everything DAC-VAE-specific about files and flags is here (:data:`FILES`); the shared signal
path is :mod:`dac_jax.codec.signal`.
"""

from __future__ import annotations

from typing import Optional, Union

import jax
import numpy as np

from dac_jax import options
from dac_jax.codec import chunked
from dac_jax.codec.latentfile import LatentFile, load as load_latentfile
from dac_jax.codec.signal import (
    CodecFiles, DecodedAudio, Items, PathLike, check_common, check_finite, open_source, restore_loudness,
    to_original, prepare_items as signal_items,
)
from dac_jax.errors import FileFormatError, UsageError
from dac_jax.runtime import VAEModel


def _clamp(x: np.ndarray, block: int = 1 << 20) -> None:
    """``x.clamp(-1, 1)`` in place, block by block (no full-size temporary for an hour of audio)."""
    flat = x.reshape(-1, x.shape[-1])
    for i in range(0, flat.shape[-1], block):
        np.clip(flat[:, i : i + block], -1.0, 1.0, out=flat[:, i : i + block])


def model_config(vae: VAEModel) -> dict:
    return vae.config.to_kwargs()


def check_options(
    vae: Optional[VAEModel], win_duration: float = 5.0, batch_size: int = 4, normalize_db: Optional[float] = None,
    *, seed: Optional[int] = None, n_quantizers: Optional[int] = None, mode: str = "independent", flag: str = "",
) -> None:
    """Raise :class:`UsageError` for options no input could satisfy, before any work, and for
    DAC's options (``flag`` prefixes option names in messages: ``"--"`` on the command line)."""
    check_common(win_duration, batch_size, normalize_db)
    options.seed(seed)
    if n_quantizers is not None:
        raise UsageError(f"{flag}n_quantizers applies to DAC codes; DAC-VAE latents are continuous")
    if mode != "independent":
        raise UsageError(f"{flag}mode {mode} is the original DAC's chunking; DAC-VAE runs window-independent only")


def prepare_items(vae: VAEModel, source: Union[PathLike, np.ndarray], sample_rate: Optional[int] = None,
                  normalize_db: Optional[float] = None) -> Items:
    """The signal path up to the encoder: resample, measure (and, if asked, normalise) loudness,
    clamp to [-1, 1]; every channel an item."""
    return signal_items(source, sample_rate, vae.sample_rate, normalize_db, _clamp)


def encode(
    vae: VAEModel,
    source: Union[PathLike, np.ndarray],
    sample_rate: Optional[int] = None,
    win_duration: float = 5.0,
    normalize_db: Optional[float] = None,
    seed: Optional[int] = None,
    batch_size: int = 4,
    progress: chunked.Progress = None,
) -> LatentFile:
    """Encode an audio file or array to a :class:`LatentFile`.

    ``source`` is a path (read with soundfile) or an array ``[T]``, ``[C, T]`` or ``[B, C, T]`` at
    ``sample_rate`` (default: the model's). ``z`` is the mean unless ``seed`` is given, in which
    case ``z = mu + noise * exp(logs)`` with ``noise = jax.random.normal(jax.random.key(seed), mu.shape)``.
    """
    check_options(vae, win_duration, batch_size, normalize_db, seed=seed)
    signal = prepare_items(vae, source, sample_rate, normalize_db)
    items, sample_rate, original_length = signal.items, signal.sample_rate, signal.original_length
    input_db, nac = signal.input_db, signal.channels
    del signal

    mu, logs = chunked.encode_latents(vae, items, win_duration, batch_size, progress)
    if seed is None:
        z = mu
    else:
        noise = np.asarray(jax.random.normal(jax.random.key(seed), mu.shape, np.float32))
        z = mu + noise * np.exp(logs)
    return LatentFile(
        z=z, mu=mu, logs=logs, model_config=model_config(vae), sample_rate=vae.sample_rate,
        hop_length=vae.hop_length, length=int(items.shape[-1]), original_sample_rate=int(sample_rate),
        original_length=int(original_length), channels=int(nac), input_db=input_db,
        normalize_db=None if normalize_db is None else float(normalize_db),
        latent="mean" if seed is None else "sample", seed=seed,
    )


def check_fits(vae: VAEModel, latents: LatentFile, where: str) -> None:
    """Raise :class:`FileFormatError` if ``latents`` are not this model's latent space."""
    ours = model_config(vae)
    if latents.model_config != ours:
        differ = sorted(k for k in set(ours) | set(latents.model_config) if ours.get(k) != latents.model_config.get(k))
        detail = ", ".join(f"{k}={latents.model_config.get(k)!r} (model: {ours.get(k)!r})" for k in differ)
        raise FileFormatError(f"{where}: latents of another DAC-VAE ({detail})")
    if (latents.sample_rate, latents.hop_length, latents.latent_dim) != (vae.sample_rate, vae.hop_length, vae.config.latent_dim):
        raise FileFormatError(
            f"{where}: latents at {latents.sample_rate} Hz, hop {latents.hop_length}, {latents.latent_dim} dims; "
            f"the model has {vae.sample_rate} Hz, hop {vae.hop_length}, {vae.config.latent_dim} dims"
        )


def decode(vae: VAEModel, source: Union[PathLike, LatentFile], win_duration: float = 5.0, batch_size: int = 4,
           progress: chunked.Progress = None) -> DecodedAudio:
    """Decode a :class:`LatentFile` (or its path) to audio at the input's rate, length and channels."""
    check_options(vae, win_duration, batch_size)
    latents, where = open_source(source, load_latentfile, "LatentFile")
    check_fits(vae, latents, where)
    z, length, channels = latents.z, latents.length, latents.channels
    normalize_db, input_db = latents.normalize_db, latents.input_db
    rate, original_length = latents.original_sample_rate, latents.original_length
    del latents  # a loaded file's mu and logs (an hour of stereo: 230 MB) are not needed any more
    audio = chunked.decode_latents(vae, z, win_duration, batch_size, progress)
    del z
    audio = audio[:, :length]
    if normalize_db is not None:  # undo the normalisation: back to the measured loudness
        restore_loudness(audio, vae.sample_rate, np.repeat(input_db, channels))
    check_finite(audio, where)
    return to_original(audio, vae.sample_rate, rate, original_length, channels)


FILES = CodecFiles(
    name="DAC-VAE", suffix=".npz", normalize_db=None, options=("seed",), check=check_options,
    encode=encode, decode=decode, prepare=prepare_items,
)

__all__ = ["FILES", "LatentFile", "check_fits", "check_options", "decode", "encode", "prepare_items"]
