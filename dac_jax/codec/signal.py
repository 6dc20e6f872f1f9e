"""The signal path that DAC and DAC-VAE share, from an input to the model's rate and back.

``prepare`` reads a file (or checks an array), resamples it to the model's rate (julius'
algorithm, block by block for seekable files), measures each signal's loudness and normalises it
if asked; ``restore_loudness`` and ``to_original`` undo that after decoding. What each codec does
in between (DAC's peak limit and codes, DAC-VAE's clamp and latents) is in its own module:
:mod:`dac_jax.codec.compress`, :mod:`dac_jax.codec.latents`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from dac_jax import options
from dac_jax.audio.io import NO_SEEK_SUBTYPES, AudioReader, audio_info, read_audio
from dac_jax.audio.loudness import loudness, normalize_gain
from dac_jax.audio.resample import resample_long
from dac_jax.errors import AudioError, FileFormatError

PathLike = Union[str, Path]


@dataclasses.dataclass(frozen=True)
class CodecFiles:
    """What one codec does with files, stated once (``compress.FILES``, ``latents.FILES``); the
    batch runner (:mod:`dac_jax.codec.batch`) and the command line are written once on top.

    ``encode(model, source, *, win_duration, batch_size, normalize_db, progress, **options)`` gives
    an object with ``save(path, overwrite=)``; ``decode(model, source, *, win_duration, batch_size,
    progress)`` gives :class:`DecodedAudio`; ``check(model or None, win_duration, batch_size,
    normalize_db, *, flag="", **options)`` refuses, before any work, what no input could satisfy,
    including the other codec's options (``flag`` prefixes option names: ``"--"`` for the CLI).
    """

    name: str  # "DAC", "DAC-VAE"
    suffix: str  # what encode writes: ".dac", ".npz"
    normalize_db: Optional[float]  # the default loudness target of encoding (None: not normalised)
    options: tuple[str, ...]  # the codec's own encode options, beyond the shared ones
    check: Callable[..., None]
    encode: Callable[..., Any]
    decode: Callable[..., "DecodedAudio"]
    prepare: Callable[..., "Items"]  # (model, source, sample_rate, normalize_db) -> what encode codes


@dataclasses.dataclass
class Items:
    """A signal ready for a codec's encoder: every channel of every signal as one item."""

    items: np.ndarray  # float32 [batch * channels, T] at the model's rate, conditioned for the codec
    sample_rate: int  # the input's own rate
    original_length: int  # its length, at its own rate
    input_db: np.ndarray  # float32 [batch]: each signal's loudness before normalisation
    channels: int


def open_source(source: Any, load: Callable[[PathLike], Any], what: str) -> tuple[Any, str]:
    """A codec's file given as its object or a path: ``(the object, how messages name it)``."""
    return (load(source), str(source)) if isinstance(source, (str, Path)) else (source, what)


def check_common(win_duration: float, batch_size: int, normalize_db: Optional[float] = None) -> None:
    """The options every codec's file functions take (:class:`UsageError` before any work)."""
    options.win_duration(win_duration)
    options.batch_size(batch_size)
    options.normalize_db(normalize_db)


@dataclasses.dataclass
class DecodedAudio:
    samples: np.ndarray  # float32 [batch, channels, original_length]
    sample_rate: int  # the original file's rate


def as_batch(audio: np.ndarray, where: str) -> np.ndarray:
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


def check_finite(audio: np.ndarray, where: str, block: int = 1 << 20) -> None:
    """Decoded audio must be finite: NaN or Inf means a corrupt file or corrupt weights."""
    for i in range(0, audio.shape[-1], block):  # no full-size boolean temporary
        if not np.isfinite(audio[..., i : i + block]).all():
            raise FileFormatError(f"{where}: decodes to non-finite audio (NaN or Inf) from sample {i}; "
                                  "the file or the model's weights are corrupt")


def resampled_from_file(path: PathLike, model_rate: int) -> Optional[tuple[np.ndarray, int, int]]:
    """``(x [1, C, T'], rate, frames)`` of a seekable file at another rate, resampled as it is read
    (block by block: an hour of 44.1 kHz stereo is never held at its own rate); ``None`` where
    the whole file must be read first (same rate, MP3, or a file shorter than its header says)."""
    info = audio_info(path)
    if info.sample_rate == model_rate or info.subtype in NO_SEEK_SUBTYPES:
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
    x = resampled_from_file(source, model_rate) if isinstance(source, (str, Path)) else None
    if x is not None:  # streamed: the file's own-rate signal was never held whole
        x, sample_rate, original_length = x
    else:
        if isinstance(source, (str, Path)):
            samples, sample_rate = read_audio(source)
            audio = samples[None]
        else:
            audio = as_batch(source, "audio array")
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


def prepare_items(
    source: Union[PathLike, np.ndarray], sample_rate: Optional[int], model_rate: int, normalize_db: Optional[float],
    condition: Callable[[np.ndarray], None],
) -> Items:
    """:func:`prepare`, then a codec's own in-place ``condition`` (DAC's peak limit, DAC-VAE's
    clamp), then every channel of every signal as one item: what the codec's encoder codes."""
    x, sample_rate, original_length, input_db = prepare(source, sample_rate, model_rate, normalize_db)
    nb, nac, _ = x.shape
    condition(x)
    return Items(x.reshape(nb * nac, -1), sample_rate, original_length, input_db, nac)


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
