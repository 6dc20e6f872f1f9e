"""compress / decompress: audio files or arrays to ``.dac`` files and back.

The signal path is the original's (DAC_SPEC section 3): resample to the model rate (julius'
algorithm), measure loudness and normalise to ``normalize_db``, limit peaks to 1, code every channel
as its own item, then chunk. ``decompress`` decodes, restores the measured loudness, resamples back
and crops to the original length.

Two modes:

- ``"faithful"``: the original's chunks (window-dependent codes, overlapping by twice the delay);
  the codes equal the original's ``compress`` at the same window.
- ``"independent"``: codes equal to encoding the whole file at once, one frame per hop whatever the
  window (frame ``k`` is at ``k / frame_rate`` seconds); written as one padded chunk, which the
  original's ``decompress`` also decodes. Where the decoding would not cover the input (the 16 /
  24 kHz decoders' ``320 * frames - 8`` samples), one padding frame follows (``plan.covering_frames``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Union

import numpy as np

from dac_jax import options
from dac_jax.api import Codec
from dac_jax.audio.io import _NO_SEEK_SUBTYPES, AudioReader, audio_info, read_audio
from dac_jax.audio.loudness import loudness, normalize_gain, peak_gain
from dac_jax.audio.resample import resample_long
from dac_jax.codec import chunked
from dac_jax.codec.dacfile import DACFile, load as load_dacfile, validate_for_model
from dac_jax.codec.plan import covering_frames, faithful_plan
from dac_jax.errors import AudioError, FileFormatError, UsageError

MODES = ("independent", "faithful")
DEFAULT_MODE = "independent"

PathLike = Union[str, Path]


@dataclasses.dataclass
class DecodedAudio:
    samples: np.ndarray  # float32 [batch, channels, original_length]
    sample_rate: int  # the original file's rate


def _as_batch(audio: np.ndarray, where: str) -> np.ndarray:
    """``[T]``, ``[C, T]`` or ``[B, C, T]`` -> float32 ``[B, C, T]``, checked."""
    audio = np.asarray(audio)
    if not np.issubdtype(audio.dtype, np.floating):
        raise AudioError(f"{where}: audio must be floating point, got {audio.dtype}")
    if audio.ndim == 1:
        audio = audio[None, None]
    elif audio.ndim == 2:
        audio = audio[None]
    if audio.ndim != 3 or audio.shape[-1] == 0 or 0 in audio.shape:
        raise AudioError(f"{where}: expected audio [samples], [channels, samples] or [batch, channels, samples]; got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{where}: audio contains NaN or Inf samples")
    return audio.astype(np.float32, copy=False)


def _limit_peaks(x: np.ndarray, block: int = 1 << 20) -> None:
    """audiotools' ``ensure_max_of_audio()`` in place: each channel's peak scaled down to 1 if above.

    The peak is gathered block by block: ``abs(x)`` of an hour of stereo audio would be 1.2 GB more.
    """
    peak = np.zeros(x.shape[:-1] + (1,), np.float32)
    for i in range(0, x.shape[-1], block):
        np.maximum(peak, np.max(np.abs(x[..., i : i + block]), axis=-1, keepdims=True), out=peak)
    x *= peak_gain(peak)


def check_finite(audio: np.ndarray, where: str, block: int = 1 << 20) -> None:
    """Decoded audio must be finite: NaN or Inf means a corrupt file or corrupt weights."""
    for i in range(0, audio.shape[-1], block):  # no full-size boolean temporary
        if not np.isfinite(audio[..., i : i + block]).all():
            raise FileFormatError(f"{where}: decodes to non-finite audio (NaN or Inf) from sample {i}; "
                                  "the file or the model's weights are corrupt")


def _check_options(win_duration: float, batch_size: int, mode: str) -> None:
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    options.win_duration(win_duration)
    options.batch_size(batch_size)


def check_options(codec: Codec, win_duration: float, n_quantizers: Optional[int], mode: str, batch_size: int,
                  normalize_db: Optional[float] = None) -> None:
    """Raise :class:`UsageError` / :class:`AudioError` for options no input could satisfy (before any work)."""
    _check_options(win_duration, batch_size, mode)
    codec._check_n_quantizers(n_quantizers)
    options.normalize_db(normalize_db)
    if mode == "faithful":  # a window whose chunks have no hop fails for every input longer than it
        faithful_plan(
            10 * codec.hop_length + int(win_duration * codec.sample_rate), codec.sample_rate, codec.hop_length,
            win_duration, codec.delay, codec.output_length, codec.unpadded_module.encoder_frames,
        )


def check_vae_options(win_duration: float, batch_size: int, normalize_db: Optional[float] = None,
                      seed: Optional[int] = None) -> None:
    """:func:`check_options` for DAC-VAE's encode and decode (window-independent only)."""
    _check_options(win_duration, batch_size, DEFAULT_MODE)
    options.normalize_db(normalize_db)
    options.seed(seed)


def _resampled_from_file(path: PathLike, model_rate: int) -> Optional[tuple[np.ndarray, int, int]]:
    """``(x [1, C, T'], rate, frames)`` of a seekable file at another rate, resampled as it is read
    (block by block: an hour of 44.1 kHz stereo is never held at its own rate); ``None`` where
    the whole file must be read first (same rate, MP3, or a file shorter than its header says)."""
    info = audio_info(path)
    if info.sample_rate == model_rate or info.subtype in _NO_SEEK_SUBTYPES:
        return None
    try:
        with AudioReader(path) as reader:
            x = resample_long(reader, info.sample_rate, model_rate)
    except AudioError as e:
        if "truncated" in str(e):  # read_audio keeps what the file holds
            return None
        raise
    return x[None], info.sample_rate, info.frames


def prepare(
    source: Union[PathLike, np.ndarray], sample_rate: Optional[int], model_rate: int, normalize_db: Optional[float]
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Read (or check) the input, resample it to ``model_rate``, measure its loudness and normalise it.

    Returns ``(x [B, C, T] float32 at model_rate, the input's rate, its length, input_db [B])``;
    ``x`` is never the caller's array, so it may be changed in place.
    """
    options.normalize_db(normalize_db)
    if sample_rate is not None:
        options.sample_rate(sample_rate)
    x = _resampled_from_file(source, model_rate) if isinstance(source, (str, Path)) else None
    if x is not None:  # streamed: the file's own-rate signal was never held whole
        x, sample_rate, original_length = x
    else:
        if isinstance(source, (str, Path)):
            samples, sample_rate = read_audio(source)
            audio = samples[None]
        else:
            audio = _as_batch(source, "audio array")
            sample_rate = model_rate if sample_rate is None else int(sample_rate)
        original_length = audio.shape[-1]
        if sample_rate != model_rate:
            x = resample_long(audio, sample_rate, model_rate)
        else:  # changed in place by callers: a file's samples are ours, a caller's array is not
            x = audio if isinstance(source, (str, Path)) else audio.copy()
        del audio
    if isinstance(source, (str, Path)) and sample_rate > options.SAMPLE_RATES[1]:
        raise AudioError(f"{source}: {sample_rate} Hz is above the {options.SAMPLE_RATES[1]} Hz a .dac file may hold")
    nb = x.shape[0]
    input_db = np.asarray(loudness(x, model_rate), np.float32).reshape(nb)
    if normalize_db is not None:
        x *= normalize_gain(input_db, normalize_db)[:, None, None]
    return x, int(sample_rate), int(original_length), input_db


def compress(
    codec: Codec,
    source: Union[PathLike, np.ndarray],
    sample_rate: Optional[int] = None,
    win_duration: float = 5.0,
    n_quantizers: Optional[int] = None,
    normalize_db: Optional[float] = -16.0,
    mode: str = DEFAULT_MODE,
    batch_size: int = 4,
    progress: chunked.Progress = None,
) -> DACFile:
    """Compress an audio file or array into a :class:`DACFile`.

    ``source`` is a path (read with soundfile) or an array ``[T]``, ``[C, T]`` or ``[B, C, T]`` at
    ``sample_rate`` (default: the model's). ``batch_size`` windows run per compiled call.
    """
    _check_options(win_duration, batch_size, mode)
    n_quantizers = codec._check_n_quantizers(n_quantizers)
    x, sample_rate, original_length, input_db = prepare(source, sample_rate, codec.sample_rate, normalize_db)
    nb, nac, _ = x.shape
    _limit_peaks(x)
    items = x.reshape(nb * nac, -1)

    if mode == "independent":
        # one frame per hop, plus a padding frame where the original's decompress would otherwise
        # fall short of original_length and crash (see plan.covering_frames)
        frames = -(-items.shape[-1] // codec.hop_length)
        needed = covering_frames(frames, original_length, codec.module.decoder_samples, codec.sample_rate, sample_rate)
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


def decompress(
    codec: Codec,
    source: Union[PathLike, DACFile],
    win_duration: float = 5.0,
    batch_size: int = 4,
    progress: chunked.Progress = None,
) -> DecodedAudio:
    """Decode a :class:`DACFile` (or a ``.dac`` path) to audio at its original rate, length and channels."""
    _check_options(win_duration, batch_size, DEFAULT_MODE)
    dacfile = load_dacfile(source) if isinstance(source, (str, Path)) else source
    where = str(source) if isinstance(source, (str, Path)) else "DACFile"
    validate_for_model(
        dacfile, codec.n_codebooks, codec.config.codebook_size, sample_rate=codec.sample_rate,
        hop_length=codec.hop_length, encoder_frames=codec.unpadded_module.encoder_frames,
        output_length=codec.output_length, decoder_samples=codec.module.decoder_samples, path=where,
    )
    codes = np.asarray(dacfile.codes).astype(np.int32)
    if dacfile.padding and dacfile.chunk_length >= codes.shape[-1]:
        # one padded chunk (independent mode, or a short input): whole-sequence decoding, in windows
        audio = chunked.decode_independent(codec, codes, win_duration, batch_size, progress)
    else:
        audio = chunked.decode_faithful(codec, codes, dacfile.chunk_length, dacfile.padding, batch_size, progress)

    # restore the loudness measured before compression, per item (channels code as items)
    items = audio.shape[0]
    target = np.repeat(np.asarray(dacfile.input_db, np.float32).reshape(-1), dacfile.channels)
    if target.shape[0] != items:
        target = np.broadcast_to(np.asarray(dacfile.input_db, np.float32).reshape(-1), (items,))
    restore_loudness(audio, codec.sample_rate, target)
    check_finite(audio, where)
    return to_original(audio, codec.sample_rate, dacfile.sample_rate, dacfile.original_length, dacfile.channels)


def restore_loudness(audio: np.ndarray, rate: int, target_db: np.ndarray) -> None:
    """Scale each item of ``audio [items, T]`` in place so that it measures ``target_db [items]``."""
    measured = np.asarray(loudness(audio[:, None, :], rate), np.float32).reshape(audio.shape[0])
    audio *= normalize_gain(measured, target_db)[:, None]


def to_original(audio: np.ndarray, model_rate: int, rate: int, length: int, channels: int) -> DecodedAudio:
    """Decoded items ``[items, T]`` at ``model_rate`` back to the input's rate, length and channels."""
    if rate != model_rate:
        audio = resample_long(audio, model_rate, rate)
    if audio.shape[-1] < length:
        audio = np.pad(audio, ((0, 0), (0, length - audio.shape[-1])))
    # a view, not a copy: an hour of stereo audio is 1.3 GB
    return DecodedAudio(audio[:, :length].reshape(-1, channels, length), rate)
