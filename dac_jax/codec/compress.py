"""DAC on files: audio files or arrays to ``.dac`` files (:mod:`dac_jax.codec.dacfile`) and back.

The signal path is the original's (DAC_SPEC section 3; the shared steps are
:mod:`dac_jax.codec.signal`): resample to the model rate (julius' algorithm), measure loudness and
normalise to ``normalize_db``, limit peaks to 1, code every channel as its own item, then chunk.
``decompress`` decodes, restores the measured loudness, resamples back and crops to the original
length.

Two modes:

- ``"faithful"``: the original's chunks (window-dependent codes, overlapping by twice the delay);
  the codes equal the original's ``compress`` at the same window.
- ``"independent"``: codes equal to encoding the whole file at once, one frame per hop whatever the
  window (frame ``k`` is at ``k / frame_rate`` seconds); written as one padded chunk, which the
  original's ``decompress`` also decodes. Where the decoding would not cover the input (the 16 /
  24 kHz decoders' ``320 * frames - 8`` samples), one padding frame follows (``plan.covering_frames``).

Everything DAC-specific about files and flags is here; :data:`FILES` tells the batch runner and
the command line (:mod:`dac_jax.codec.batch`, :mod:`dac_jax.cli`).
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from dac_jax import options
from dac_jax.audio.loudness import peak_gain
from dac_jax.codec import chunked
from dac_jax.codec.dacfile import DACFile, load as load_dacfile, validate_for_model
from dac_jax.codec.plan import covering_frames, faithful_plan
from dac_jax.codec.signal import (
    CodecFiles, DecodedAudio, Items, PathLike, check_common, check_finite, open_source, restore_loudness,
    to_original, prepare_items as signal_items,
)
from dac_jax.errors import UsageError
from dac_jax.runtime import DACModel

MODES = ("independent", "faithful")
DEFAULT_MODE = "independent"


def _limit_peaks(x: np.ndarray, block: int = 1 << 20) -> None:
    """audiotools' ``ensure_max_of_audio()`` in place: each channel's peak scaled down to 1 if above.

    The peak is gathered block by block: ``abs(x)`` of an hour of stereo audio would be 1.2 GB more.
    """
    peak = np.zeros(x.shape[:-1] + (1,), np.float32)
    for i in range(0, x.shape[-1], block):
        np.maximum(peak, np.max(np.abs(x[..., i : i + block]), axis=-1, keepdims=True), out=peak)
    x *= peak_gain(peak)


def check_options(
    codec: Optional[DACModel], win_duration: float = 5.0, batch_size: int = 4, normalize_db: Optional[float] = None,
    *, n_quantizers: Optional[int] = None, mode: str = DEFAULT_MODE, seed: Optional[int] = None, flag: str = "",
) -> None:
    """Raise :class:`UsageError` for options no input could satisfy, before any work. Without a
    ``codec`` (the command line, before the model loads) only what needs no model is checked.
    ``flag`` prefixes option names in messages (``"--"`` on the command line)."""
    check_common(win_duration, batch_size, normalize_db)
    if seed is not None:
        raise UsageError(f"{flag}seed samples DAC-VAE latents; DAC codes have no sampling")
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if codec is None:
        return
    options.n_quantizers(n_quantizers, codec.n_codebooks)
    if mode == "faithful":  # a window whose chunks have no hop fails for every input longer than it
        faithful_plan(
            10 * codec.hop_length + int(win_duration * codec.sample_rate), codec.sample_rate, codec.hop_length,
            win_duration, codec.delay, codec.output_length, codec.unpadded_module.encoder_frames,
        )


def prepare_items(codec: DACModel, source: Union[PathLike, np.ndarray], sample_rate: Optional[int] = None,
                  normalize_db: Optional[float] = -16.0) -> Items:
    """The original's signal path up to the encoder: resample, measure and normalise loudness, limit
    peaks to 1; every channel an item."""
    return signal_items(source, sample_rate, codec.sample_rate, normalize_db, _limit_peaks)


def compress(
    codec: DACModel, source: Union[PathLike, np.ndarray], sample_rate: Optional[int] = None, win_duration: float = 5.0,
    n_quantizers: Optional[int] = None, normalize_db: Optional[float] = -16.0, mode: str = DEFAULT_MODE,
    batch_size: int = 4, progress: chunked.Progress = None,
) -> DACFile:
    """Compress an audio file or array into a :class:`DACFile`.

    ``source`` is a path (read with soundfile) or an array ``[T]``, ``[C, T]`` or ``[B, C, T]`` at
    ``sample_rate`` (default: the model's). ``batch_size`` windows run per compiled call.
    """
    check_options(codec, win_duration, batch_size, normalize_db, n_quantizers=n_quantizers, mode=mode)
    signal = prepare_items(codec, source, sample_rate, normalize_db)
    items, sample_rate, original_length = signal.items, signal.sample_rate, signal.original_length
    input_db, nac = signal.input_db, signal.channels
    del signal

    if mode == "independent":
        # one frame per hop, plus a padding frame where the original's decompress would otherwise
        # fall short of original_length and crash (see plan.covering_frames)
        frames = -(-items.shape[-1] // codec.hop_length)
        needed = covering_frames(frames, original_length, codec.decoder_samples, codec.sample_rate, sample_rate)
        codes = chunked.encode_independent(
            codec, items, win_duration, n_quantizers, batch_size, progress, padding_frames=needed - frames,
        )
        chunk_length, padding = codes.shape[-1], True
    else:
        plan = faithful_plan(
            items.shape[-1], codec.sample_rate, codec.hop_length, win_duration, codec.delay,
            codec.output_length, codec.unpadded_module.encoder_frames,
        )
        codes = chunked.encode_faithful(codec, items, plan, n_quantizers, batch_size, progress)
        chunk_length, padding = (codes.shape[-1] if plan.padded else plan.frames_per_chunk), plan.padded
    return DACFile(
        codes=codes.astype(np.uint16),
        chunk_length=int(chunk_length),
        original_length=int(original_length),
        input_db=input_db,
        channels=int(nac),
        sample_rate=int(sample_rate),
        padding=bool(padding),
        dac_version="1.0.0",
    )


def decompress(codec: DACModel, source: Union[PathLike, DACFile], win_duration: float = 5.0, batch_size: int = 4,
               progress: chunked.Progress = None) -> DecodedAudio:
    """Decode a :class:`DACFile` (or a ``.dac`` path) to audio at its original rate, length and channels."""
    check_options(codec, win_duration, batch_size)
    dacfile, where = open_source(source, load_dacfile, "DACFile")
    validate_for_model(
        dacfile, codec.n_codebooks, codec.config.codebook_size, sample_rate=codec.sample_rate,
        hop_length=codec.hop_length, encoder_frames=codec.unpadded_module.encoder_frames,
        output_length=codec.output_length, decoder_samples=codec.decoder_samples, path=where,
    )
    codes = np.asarray(dacfile.codes).astype(np.int32)
    if dacfile.padding and dacfile.chunk_length >= codes.shape[-1]:
        # one padded chunk (independent mode, or a short input): whole-sequence decoding, in windows
        audio = chunked.decode_independent(codec, codes, win_duration, batch_size, progress)
    else:
        audio = chunked.decode_faithful(codec, codes, dacfile.chunk_length, dacfile.padding, batch_size, progress)

    # restore the loudness measured before compression, per item (channels code as items; the
    # reader checked that there are input_db * channels of them)
    target = np.repeat(np.asarray(dacfile.input_db, np.float32).reshape(-1), dacfile.channels)
    restore_loudness(audio, codec.sample_rate, target)
    check_finite(audio, where)
    return to_original(audio, codec.sample_rate, dacfile.sample_rate, dacfile.original_length, dacfile.channels)


FILES = CodecFiles(
    name="DAC", suffix=".dac", normalize_db=-16.0, options=("n_quantizers", "mode"), check=check_options,
    encode=compress, decode=decompress, prepare=prepare_items,
)
