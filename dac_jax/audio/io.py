"""Audio files: read (whole, or lazily by range) and write (atomically), with soundfile.

Samples are float32, channels-first ``[channels, frames]``, in [-1, 1]: exactly what the original
DAC sees, since its CLI loads files through ``AudioSignal(path)`` -> ``librosa.load(sr=None,
mono=False)``, which opens a ``soundfile.SoundFile`` and reads it from the start in float32
without seeking. (``soundfile.read`` seeks to frame 0 first; for MP3 that restarts the decoder and
changes some samples by one float32 ulp. We read as librosa does.)

Seeking in lossy files is not to be trusted with this libsndfile: in OGG/Vorbis a seek after a read
returns wrong samples (errors of 0.3) or none, and an MP3 seek restarts the decoder (1-ulp
differences). :class:`AudioReader` therefore never seeks in a lossy file: it decodes forward and
discards (reopening the file to go back). Sequential reads, the streaming case, never seek at all,
and every read equals the same frames of the whole-file read, in every format.

Formats are whatever the bundled libsndfile reads. With soundfile 0.14 / libsndfile 1.2.2 that is
WAV (8/16/24/32-bit int, 32/64-bit float), FLAC, OGG/Vorbis, MP3 (MPEG layer I-III, read and
write; writing only at 8-48 kHz MPEG rates), AIFF, CAF, W64, RF64 and a few more; not MP4/AAC (the
original reaches those through ffmpeg).

Every failure a user can cause (a missing file, a file that is not audio, an empty file, NaN or Inf
samples, an unsupported suffix) raises :class:`dac_jax.errors.AudioError` with a one-line message
that starts with the path.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from dac_jax.errors import AudioError
from dac_jax.fileio import atomic_path

# Subtypes whose seeks are unreliable (see the module docstring): emulated by decoding forward.
NO_SEEK_SUBTYPES = {"VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"}

READ_BLOCK = 1 << 20  # frames decoded at once by read_audio

# Final suffix -> libsndfile major format, for writing. Reading ignores the suffix.
WRITE_FORMATS = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".mp3": "MP3",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".caf": "CAF",
    ".w64": "W64",
    ".rf64": "RF64",
}


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: no samples read."""

    path: Path
    frames: int
    sample_rate: int
    channels: int
    format: str  # libsndfile major format, e.g. "WAV", "FLAC", "MP3"
    subtype: str  # e.g. "PCM_16", "FLOAT", "VORBIS"

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.frames / self.sample_rate


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")


def _open(path: Path) -> sf.SoundFile:
    _check_path(path)
    try:
        return sf.SoundFile(str(path))
    except sf.LibsndfileError as e:
        # e.error_string is libsndfile's reason, e.g. "Format not recognised."
        reason = getattr(e, "error_string", str(e)).rstrip(".")
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    except OSError as e:  # permissions and the like
        raise AudioError(f"{path}: cannot open ({e.strerror or e})") from None


def _info_of(path: Path, f: sf.SoundFile) -> AudioInfo:
    info = AudioInfo(path, int(f.frames), int(f.samplerate), int(f.channels), f.format, f.subtype)
    if info.frames <= 0:
        raise AudioError(f"{path}: the file holds no audio (0 frames)")
    if info.channels <= 0 or info.sample_rate <= 0:
        raise AudioError(f"{path}: invalid header ({info.channels} channels, {info.sample_rate} Hz)")
    promised = _promised_frames(f)
    if promised is not None and promised > info.frames:
        warnings.warn(TruncatedAudioWarning(
            f"{path}: truncated: its header promises {promised} frames, the file holds {info.frames}; "
            f"using the {info.frames} frames it holds"), stacklevel=1)  # one location: shown once per file
    return info


class TruncatedAudioWarning(UserWarning):
    """A file shorter than its header says (an interrupted copy or download)."""


# libsndfile reads what a truncated WAV/AIFF holds and notes the header's claim in its log:
# "data : 32000 (should be 15978)"
_DATA_CLAIM = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _promised_frames(f: sf.SoundFile) -> int | None:
    """Frames the header of a truncated file claims, or None where libsndfile logged no such claim."""
    m = _DATA_CLAIM.search(f.extra_info)
    if not m:
        return None
    claimed, held = int(m[1]), int(m[2])
    if claimed <= held or f.frames <= 0:
        return None
    return int(f.frames * claimed // held) if held else None


def _check_finite(path: Path, samples: np.ndarray, offset: int = 0, block: int = 1 << 20) -> None:
    # block by block: a boolean mask of a whole hour of audio would be another 300 MB
    if not all(np.isfinite(samples[:, i : i + block]).all() for i in range(0, samples.shape[-1], block)):
        bad = np.argwhere(~np.isfinite(samples))[0]
        value = samples[tuple(bad)]
        raise AudioError(
            f"{path}: non-finite sample ({value}) at frame {offset + int(bad[1])}, channel {int(bad[0])}"
        )


def audio_info(path: str | Path) -> AudioInfo:
    """Frames, sample rate, channels (and duration, format, subtype) from the header alone.

    Raises AudioError for a missing file, a file that is not audio, or an empty one.
    """
    path = Path(path)
    with _open(path) as f:
        return _info_of(path, f)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The whole file: ``(samples float32 [channels, frames], sample_rate)``.

    Integer files are scaled to [-1, 1) as soundfile does (int16 / 32768, ...); float files are
    returned as stored and must be finite (NaN or Inf raise AudioError; values beyond +-1 are kept,
    as in the original).
    """
    path = Path(path)
    with _open(path) as f:
        info = _info_of(path, f)
        try:
            if info.subtype in NO_SEEK_SUBTYPES:
                # one read, as librosa does: libsndfile's MP3 output depends on the read sizes
                samples = np.ascontiguousarray(f.read(dtype="float32", always_2d=True).T)
            else:  # blocks into the result: no second full-size copy for the transpose
                samples = np.empty((info.channels, info.frames), np.float32)
                done = 0
                while done < info.frames:
                    block = f.read(min(READ_BLOCK, info.frames - done), dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    samples[:, done:done + block.shape[0]] = block.T
                    done += block.shape[0]
                if done < info.frames:  # the header promised more than the file holds
                    samples = np.ascontiguousarray(samples[:, :done])
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(f"{path}: cannot decode ({e})") from None
    if samples.shape[1] == 0:
        raise AudioError(f"{path}: the file holds no audio (0 frames)")
    for start in range(0, samples.shape[1], READ_BLOCK):  # no full-size boolean temporary either
        _check_finite(path, samples[:, start:start + READ_BLOCK], offset=start)
    return samples, info.sample_rate


class AudioReader:
    """A file opened for random access, looking like a lazy float32 array ``[channels, frames]``.

    ``reader[:, a:b]`` (or ``reader[..., a:b]``, or ``reader.read(a, b)``) decodes just those
    frames, so a long file can be resampled and measured in blocks with bounded memory:
    ``resample.iter_resample(reader, ...)`` / ``resample_long(reader, ...)`` take it directly and
    read it strictly in order. A read that continues the previous one never seeks; a jump seeks in
    PCM/FLAC files and decodes forward in lossy ones (see the module docstring). Each read checks
    for NaN/Inf. Use as a context manager, or call ``close()``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = _open(self.path)
        self._position = 0  # the decoder's position: seek only when a read jumps
        try:
            self.info = _info_of(self.path, self._file)
        except AudioError:
            self._file.close()
            raise

    @property
    def shape(self) -> tuple[int, int]:
        return (self.info.channels, self.info.frames)

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self):
        return np.dtype(np.float32)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` (clipped to the file) as float32 ``[channels, n]``."""
        start = max(0, min(int(start), self.info.frames))
        stop = max(start, min(int(stop), self.info.frames))
        try:
            self._seek(start)
            data = self._file.read(stop - start, dtype="float32", always_2d=True)
            self._position = start + data.shape[0]
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(f"{self.path}: cannot decode frames {start}:{stop} ({e})") from None
        samples = np.ascontiguousarray(data.T)
        if samples.shape[1] != stop - start:
            raise AudioError(
                f"{self.path}: truncated, read {samples.shape[1]} of {stop - start} frames at frame {start}"
            )
        _check_finite(self.path, samples, offset=start)
        return samples

    def _seek(self, start: int) -> None:
        if start == self._position:
            return
        if self.info.subtype not in NO_SEEK_SUBTYPES:
            self._file.seek(start)
            self._position = start
            return
        if start < self._position:  # back to the start of the stream
            self._file.close()
            self._file = _open(self.path)
            self._position = 0
        while self._position < start:  # decode forward, discarding
            skipped = self._file.read(min(1 << 16, start - self._position), dtype="float32", always_2d=True)
            if skipped.shape[0] == 0:
                raise AudioError(f"{self.path}: truncated, cannot reach frame {start}")
            self._position += skipped.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        """Only a time slice with step 1, after an optional ``:`` or ``...`` for the channels."""
        if not isinstance(key, tuple):
            key = (slice(None), key)
        if len(key) != 2 or not (key[0] is Ellipsis or key[0] == slice(None)) or not isinstance(key[1], slice):
            raise TypeError("AudioReader supports reader[:, a:b] and reader[..., a:b] only")
        start, stop, step = key[1].indices(self.info.frames)
        if step != 1:
            raise TypeError("AudioReader slices must have step 1")
        return self.read(start, stop)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _format_for(path: Path) -> str:
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(WRITE_FORMATS))
        raise AudioError(f"{path}: cannot write audio with suffix {path.suffix!r} (known: {known})")
    return fmt


def write_audio(path: str | Path, samples, sample_rate: int, subtype: str | None = None, overwrite: bool = True) -> Path:
    """Write ``samples`` (``[channels, frames]`` or ``[frames]``, float) to ``path``, atomically.

    The format comes from the final suffix (``.wav``, ``.flac``, ``.ogg``, ``.mp3``, ``.aiff``,
    ...); ``subtype`` defaults to soundfile's default for that format (WAV and FLAC: PCM_16, OGG:
    VORBIS, MP3: MPEG_LAYER_III), or e.g. ``"FLOAT"``, ``"PCM_24"``. As with ``soundfile.write``
    (and so the original's ``AudioSignal.write``), integer subtypes clip to [-1, 1].

    The file appears whole under ``path`` or not at all: it is written to a temporary name in the
    same folder and renamed. Bad arguments (suffix, subtype, rank, empty or non-finite samples,
    rate) raise AudioError before anything is written.
    """
    path = Path(path)
    fmt = _format_for(path)
    if subtype is not None:
        subtype = subtype.upper()
        if not sf.check_format(fmt, subtype):
            ok = ", ".join(sorted(sf.available_subtypes(fmt)))
            raise AudioError(f"{path}: subtype {subtype!r} is not valid for {fmt} (valid: {ok})")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioError(f"{path}: sample rate must be a positive integer, got {sample_rate!r}")
    data = np.asarray(samples)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise AudioError(f"{path}: samples must be [channels, frames] or [frames], got shape {data.shape}")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise AudioError(f"{path}: samples must be a float or int array, got dtype {data.dtype}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{path}: nothing to write (shape {data.shape})")
    block = 1 << 18  # frames per write: memory stays bounded by a block, not by the signal
    if np.issubdtype(data.dtype, np.floating) and not all(
        np.isfinite(data[:, i : i + block]).all() for i in range(0, data.shape[1], block)
    ):
        raise AudioError(f"{path}: samples contain NaN or Inf")
    if np.issubdtype(data.dtype, np.floating) and data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float32)
    with atomic_path(path, overwrite=overwrite) as tmp:
        try:
            with sf.SoundFile(str(tmp), "w", int(sample_rate), data.shape[0], subtype, format=fmt) as f:
                for i in range(0, data.shape[1], block):
                    f.write(np.ascontiguousarray(data[:, i : i + block].T))
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
            reason = getattr(e, "error_string", None) or str(e).replace(str(tmp), str(path))
            raise AudioError(f"{path}: cannot write {fmt}/{subtype or sf.default_subtype(fmt)} ({reason})") from None
    return path
