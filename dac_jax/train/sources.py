"""Where training audio comes from: folders of files and tensorflow-datasets, read by index.

A *source* is a folder (walked recursively for audio suffixes) or ``"tfds:<name>[:<split>]"``. A
*group* (:class:`Group`) pools the items of its sources in the order given, so that item ``k`` of a
group is one file or one TFDS example; :mod:`dac_jax.train.excerpts` decides which ``k`` each
stream element reads. Each pool item opens as a reader (:class:`Reader`) that gives frames
``[C, n]`` float32 at the item's own sample rate.

* **Files are checked up front.** :func:`scan_group` reads every file's header once (a thread pool)
  and leaves out the unreadable ones (not audio, corrupt, empty) with a warning, recorded in a
  :class:`SkipLog`, where the original would crash mid-training. Files are listed sorted, so the pool
  is the same on every machine.
* **A bad file is bad as a whole.** A file whose header reads fine is *good* if every one of its
  frames decodes and is finite, and as many frames read as its header says; else it is *bad*
  (:func:`check_file`), whichever excerpt one would read from it. Its verdict is reached the first
  time the file is opened in this process (one full read, then remembered), before an excerpt's
  random draws, so :meth:`FolderFiles.open` (and :meth:`TfdsExamples.open`, which decodes the whole
  example anyway) raises :class:`Unreadable` for a bad item before the caller has drawn anything.
  That is what makes a resumed run exact: an item then depends on which files are bad, never on
  whether this process had found that out before (a file that failed only at some offsets used to
  consume its item's draws on its first failure and be skipped without draws afterwards, so a
  resumed process, which did not know, drew other items). The cost is one full read of each file the
  first time a process uses it, on top of its excerpts (~1.5 ms each): per minute of 44.1 kHz stereo,
  ~5 ms for PCM WAV, ~35-60 ms for MP3 and FLAC, ~110 ms for Ogg Vorbis (one shared core). The one
  case left where a resumed run may differ: a read that fails after its file was found good (the
  file changed on disk, an I/O error) is skipped as before, after the item's draws.
* **Too few good files is an error before training.** :func:`require_good_files` (called by
  :func:`scan_group`) checks each source's items in pool order until it finds a good one: a folder
  (or tfds split) with no good item, hence a group with none, raises one
  :class:`~dac_jax.errors.DataError` naming it. One good item per source is the minimum and enough:
  a group draws its items from its pool again on every pass (at other offsets), as the original
  does, so a pool smaller than a batch is not an error.
* **Reads.** Each read opens the file, seeks, and reads only the excerpt's frames (soundfile partial
  reads, as librosa's ``load(offset, duration)``). A fresh open per read because this libsndfile's
  OGG/Vorbis seek after a read returns wrong samples (see :mod:`dac_jax.audio.io`); a seek right
  after opening is exact in every format we read.
* **tensorflow-datasets.** The audio feature is found in the builder's info; integer samples are
  int16-range values and are scaled by 1/32768 (as soundfile scales int16 PCM); float samples are
  used as stored. Examples are read by index through ``builder.as_data_source`` (what
  ``tfds.data_source`` calls), which needs the dataset prepared in a random-access format
  (array_record); one example is decoded whole, then excerpted as a file would be.

Nothing here imports tensorflow at import time (``tensorflow_datasets`` is imported when a
``tfds:`` source is opened).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from dac_jax.quiet_tf import quiet_tensorflow_environment
from dac_jax.errors import DataError

__all__ = [
    "AUDIO_EXTENSIONS",
    "TFDS_PREFIX",
    "FolderFiles",
    "Group",
    "Reader",
    "SkipLog",
    "TfdsExamples",
    "Unreadable",
    "check_file",
    "parse_tfds_spec",
    "require_good_files",
    "scan_group",
]

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
TFDS_PREFIX = "tfds:"


class Unreadable(Exception):
    """A source that cannot give an excerpt (the message says why)."""


class Reader(Protocol):
    """Frames of one pool item: ``frames`` and ``sample_rate`` known, then partial reads."""

    frames: int
    sample_rate: int

    def read(self, start: int, frames: int) -> np.ndarray:
        """float32 ``[C, n]``, ``n <= frames`` (fewer at the end); raises :class:`Unreadable`."""

    def close(self) -> None: ...


class SkipLog:
    """The sources found unreadable (name -> reason), in this process: warned once each.

    Shared by the scan and by the tf.data worker threads that find a bad file later, hence the lock.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._reasons: dict[str, str] = {}

    def add(self, name: str, reason: str) -> None:
        with self._lock:
            if name in self._reasons:
                return
            self._reasons[name] = reason
        logger.warning("skipping %s: %s", name, reason)

    def __contains__(self, name: str) -> bool:
        return name in self._reasons

    def items(self) -> tuple[tuple[str, str], ...]:
        with self._lock:
            return tuple(self._reasons.items())


def _reason(e: BaseException) -> str:
    """The first line of an exception's message: what a warning or DataError quotes."""
    text = getattr(e, "error_string", None) or str(e) or type(e).__name__
    return text.strip().splitlines()[0].rstrip(".")


_CHECK_BLOCK = 1 << 16  # frames per read when a file is checked whole
_INTEGER_SUBTYPES = ("PCM_", "ALAC_", "ULAW", "ALAW")  # samples that cannot be NaN or infinite


def check_file(path: str) -> str | None:
    """None if ``path`` is a good file (every frame decodes and is finite, as many frames as its
    header says), else why it is bad: one full read, ``_CHECK_BLOCK`` frames at a time.

    Integer-coded files (PCM in WAV, AIFF, FLAC; ALAC; mu-law, A-law) are read as int16, as they
    cannot hold non-finite samples (a minute of 44.1 kHz stereo WAV: ~5 ms); the others (float WAV,
    Vorbis, MP3, ...) as float32 and checked.
    """
    got = 0
    try:
        with sf.SoundFile(path) as f:
            expected, sr = int(f.frames), int(f.samplerate)
            floating = not f.subtype.startswith(_INTEGER_SUBTYPES)
            while True:
                data = f.read(_CHECK_BLOCK, dtype="float32" if floating else "int16", always_2d=True)
                if not len(data):
                    break
                if floating and not np.isfinite(data).all():
                    first = int(np.argmin(np.isfinite(data).all(axis=1)))
                    return f"non-finite samples near {(got + first) / sr:.3f} s"
                got += len(data)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        return f"cannot read frames from {got} on ({_reason(e)})"
    if got < expected:
        return f"only {got} of its {expected} frames read"
    return None


# -- readers ---------------------------------------------------------------------------------------


class _FileReader:
    """Excerpts of one file: header once, then a fresh open + seek + partial read per excerpt."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._file = sf.SoundFile(path)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise Unreadable(_reason(e)) from None
        self.frames = int(self._file.frames)
        self.sample_rate = int(self._file.samplerate)
        self._fresh = True  # nothing read yet: this handle can still seek exactly
        if self.frames <= 0 or self.sample_rate <= 0 or self._file.channels <= 0:
            self.close()
            raise Unreadable("holds no audio (0 frames)")

    def read(self, start: int, frames: int) -> np.ndarray:
        try:
            if not self._fresh:
                self._file.close()
                self._file = sf.SoundFile(self.path)
            self._fresh = False
            if start:
                self._file.seek(start)
            data = self._file.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
            raise Unreadable(f"cannot read frames {start}:{start + frames} ({_reason(e)})") from None
        return data.T

    def close(self) -> None:
        self._file.close()


class _ArrayReader:
    """Excerpts of a decoded example ``[C, L]`` held in memory."""

    def __init__(self, audio: np.ndarray, sample_rate: int):
        self.audio, self.sample_rate, self.frames = audio, sample_rate, audio.shape[1]

    def read(self, start: int, frames: int) -> np.ndarray:
        return self.audio[:, start : start + frames]

    def close(self) -> None:
        pass


# -- sources: small classes with __len__, name(k) and open(k) ----------------------------------------


@dataclasses.dataclass
class FolderFiles:
    """The files of one folder whose headers read (sorted, so the pool is the same on every
    machine), and the verdicts on them reached so far in this process."""

    folder: str
    paths: list[str]
    _verdicts: dict[int, str | None] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def location(self) -> str:
        """What a message names: the folder."""
        return self.folder

    def name(self, k: int) -> str:
        return self.paths[k]

    def verdict(self, k: int) -> str | None:
        """None if file ``k`` is good, else why it is bad (:func:`check_file` on the first call,
        then remembered; two threads asking at once may both read it, and agree)."""
        with self._lock:
            if k in self._verdicts:
                return self._verdicts[k]
        reason = check_file(self.paths[k])
        with self._lock:
            return self._verdicts.setdefault(k, reason)

    def open(self, k: int) -> Reader:
        """File ``k``'s reader; :class:`Unreadable` if the file is bad (before anything is drawn)."""
        reason = self.verdict(k)
        if reason is not None:
            raise Unreadable(reason)
        return _FileReader(self.paths[k])


@dataclasses.dataclass
class TfdsExamples:
    """The examples of one prepared tensorflow-datasets split, read by index."""

    spec: str  # "tfds:<name>:<split>", as resolved
    source: Any  # the random-access data source
    key: tuple[str, ...]  # path of the audio feature in an example
    sample_rate: int
    scale: float | None  # integer samples: 1/32768; float samples: None
    size: int

    def __len__(self) -> int:
        return self.size

    @property
    def location(self) -> str:
        """What a message names: the spec."""
        return self.spec

    def name(self, k: int) -> str:
        return f"{self.spec}[{k}]"

    def verdict(self, k: int) -> str | None:
        """None if example ``k`` is good (decodes, holds audio, all of it finite), else why not."""
        try:
            self.open(k).close()
        except Unreadable as e:
            return str(e)
        return None

    def open(self, k: int) -> Reader:
        """Example ``k`` decoded whole; :class:`Unreadable` if it is bad."""
        try:
            value = self.source[k]
            for part in self.key:
                value = value[part]
            audio = np.asarray(value)
        except Exception as e:  # a corrupt record: whatever the reader raises
            raise Unreadable(f"cannot decode ({_reason(e)})") from None
        if audio.ndim == 1:
            audio = audio[None]
        elif audio.ndim == 2:
            audio = audio.T  # TFDS stores [length, channels]
        else:
            raise Unreadable(f"audio of shape {audio.shape}, expected [length] or [length, channels]")
        if audio.shape[1] == 0 or audio.shape[0] == 0:
            raise Unreadable("holds no audio (0 frames)")
        audio = audio.astype(np.float32) * np.float32(self.scale) if self.scale else audio.astype(np.float32)
        finite = np.isfinite(audio).all(axis=0)
        if not finite.all():
            raise Unreadable(f"non-finite samples near {int(np.argmin(finite)) / self.sample_rate:.3f} s")
        return _ArrayReader(audio, self.sample_rate)


@dataclasses.dataclass
class Group:
    """One pool of items: the items of its sources, in the order given."""

    index: int
    label: str
    parts: list[FolderFiles | TfdsExamples]
    starts: np.ndarray  # first pool index of each part, then the pool's size

    @property
    def size(self) -> int:
        return int(self.starts[-1])

    def locate(self, k: int) -> tuple[FolderFiles | TfdsExamples, int]:
        """Pool item ``k`` -> (its source, its index in that source)."""
        p = int(np.searchsorted(self.starts, k, side="right")) - 1
        return self.parts[p], k - int(self.starts[p])


# -- folders ---------------------------------------------------------------------------------------


def _probe(path: str) -> str | None:
    """None if ``path``'s header describes audio, else why not."""
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        return f"not a readable audio file ({_reason(e)})"
    if info.frames <= 0:
        return "holds no audio (0 frames)"
    if info.samplerate <= 0 or info.channels <= 0:
        return f"invalid header ({info.channels} channels, {info.samplerate} Hz)"
    return None


def _list_folder(folder: str, extensions: tuple[str, ...]) -> list[str]:
    root = Path(folder).expanduser()
    if not root.exists():
        raise DataError(f"{folder}: no such folder")
    if not root.is_dir():
        raise DataError(f"{folder}: not a folder (a source is a folder of audio files or 'tfds:<name>')")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=None):
        dirnames.sort()
        found.extend(os.path.join(dirpath, f) for f in filenames if f.lower().endswith(extensions))
    if not found:
        raise DataError(f"{folder}: no audio files ({', '.join(extensions)}) in this folder or below it")
    return sorted(found)


def _no_good_audio(label: str, source: str) -> DataError:
    return DataError(f"{label}: no usable audio in {source}: every file or example in it is unreadable or "
                     f"holds non-finite samples (see the warnings)")


def _scan_folder(folder: str, extensions: tuple[str, ...], workers: int, skipped: SkipLog,
                 label: str) -> FolderFiles:
    """The folder's files whose headers read (read by ``workers`` threads); DataError if none do."""
    paths = _list_folder(folder, extensions)
    with concurrent.futures.ThreadPoolExecutor(min(workers, len(paths))) as pool:
        reasons = list(pool.map(_probe, paths))
    for path, reason in zip(paths, reasons):
        if reason is not None:
            skipped.add(path, reason)
    usable = [p for p, r in zip(paths, reasons) if r is None]
    if not usable:
        raise _no_good_audio(label, folder)
    return FolderFiles(folder, usable)


# -- tensorflow-datasets ---------------------------------------------------------------------------

_VERSION = re.compile(r"^(\d+\.\d+\.\d+)(?::(.*))?$")


def parse_tfds_spec(spec: str) -> tuple[str, str | None]:
    """``"tfds:<name>[:<version>][:<split>]"`` -> ``(name[:version], split or None)``.

    The name may carry a config (``"nsynth/gansynth_subset"``); the split may use TFDS' slicing
    syntax (``"train[:10%]"``, ``"train_clean100+train_clean360"``).
    """
    body = spec[len(TFDS_PREFIX):]
    name, _, split = body.partition(":")
    version = _VERSION.match(split)
    if version:
        name, split = f"{name}:{version.group(1)}", version.group(2) or ""
    if not name:
        raise DataError(f"{spec}: no dataset name (expected 'tfds:<name>' or 'tfds:<name>:<split>')")
    return name, split or None


def _find_audio_features(features, prefix=()) -> list[tuple[tuple[str, ...], Any]]:
    quiet_tensorflow_environment()
    import tensorflow_datasets as tfds

    found = []
    if isinstance(features, tfds.features.FeaturesDict):
        for key, feature in features.items():
            found.extend(_find_audio_features(feature, prefix + (key,)))
    elif isinstance(features, tfds.features.Audio):
        found.append((prefix, features))
    return found


def _open_tfds(spec: str, data_dir: str | None) -> TfdsExamples:
    quiet_tensorflow_environment()
    import tensorflow_datasets as tfds  # deferred: it imports tensorflow (seconds), needed for tfds: only

    name, split = parse_tfds_spec(spec)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"{spec}: no tensorflow-datasets dataset named {name!r} (see tfds.list_builders())"
        ) from None
    except Exception as e:  # a bad config or version name, and the like
        raise DataError(f"{spec}: cannot open the tensorflow-datasets builder ({_reason(e)})") from None
    found = _find_audio_features(builder.info.features)
    if len(found) > 1:  # several audio features: take the one called "audio", if any
        found = [f for f in found if f[0][-1] == "audio"] or found
    if len(found) != 1:
        keys = ", ".join("/".join(k) for k, _ in found) or "none"
        raise DataError(f"{spec}: expected one audio feature in {name!r}, found: {keys}")
    key, feature = found[0]
    if getattr(feature, "sample_rate", None) is None:
        raise DataError(f"{spec}: the audio feature {'/'.join(key)!r} does not declare its sample rate")
    if split is None:
        known = list(builder.info.splits) if builder.info.splits else []
        trains = [s for s in known if s.startswith("train")]
        if not known or "train" in known:
            split = "train"
        elif trains:  # e.g. librispeech: train_clean100 + train_clean360 + train_other500
            split = "+".join(trains)
        else:
            raise DataError(
                f"{spec}: no 'train' split; name one of {', '.join(known)} as 'tfds:{name}:<split>'"
            )
    try:
        source = builder.as_data_source(split=split)
    except Exception as e:
        try:
            reason = _reason(e) if builder.is_prepared() else f"not prepared in {builder.data_dir}"
        except Exception:
            reason = _reason(e)
        build = f"tfds build {name.split(':')[0]} --file_format=array_record"
        raise DataError(
            f"{spec}: cannot read split {split!r} by index ({reason.rstrip(':')}); prepare it first in a "
            f"random-access format, e.g. `{build}` (nothing is downloaded while training)"
        ) from None
    size = len(source)
    if size == 0:
        raise DataError(f"{spec}: split {split!r} holds no examples")
    dtype = np.dtype(getattr(feature.dtype, "as_numpy_dtype", feature.dtype))  # a numpy or tf dtype
    scale = 1.0 / 32768.0 if np.issubdtype(dtype, np.integer) else None
    return TfdsExamples(f"{TFDS_PREFIX}{name}:{split}", source, key, int(feature.sample_rate), scale, size)


# -- a group ---------------------------------------------------------------------------------------


def require_good_files(group: Group, *, skipped: SkipLog, workers: int = 8) -> None:
    """:class:`~dac_jax.errors.DataError` (one line, naming the group and the source) unless every
    source of ``group`` holds at least one good item (:func:`check_file`).

    Each source's items are checked in pool order until a good one is found: the first alone, then
    ``workers`` at a time (threads); the bad ones found are recorded in ``skipped`` (and warned).
    Usually one full read per source. :func:`scan_group` calls it, so building a pipeline (the
    trainer does that before anything else) fails here rather than mid-training.
    """
    for part in group.parts:
        n, k = len(part), 0
        while k < n:
            ks = range(k, min(n, k + (1 if k == 0 else max(1, workers))))
            with concurrent.futures.ThreadPoolExecutor(len(ks)) as pool:
                reasons = list(pool.map(part.verdict, ks))
            for j, reason in zip(ks, reasons):
                if reason is not None:
                    skipped.add(part.name(j), reason)
            if None in reasons:
                break
            k = ks[-1] + 1
        else:
            raise _no_good_audio(group.label, part.location)


def scan_group(index: int, sources: tuple[str, ...], *, extensions: tuple[str, ...], tfds_data_dir: str | None,
               scan_workers: int, skipped: SkipLog) -> Group:
    """Group ``index``'s pool: its folders scanned (unreadable files recorded in ``skipped``) and its
    tfds sources opened; :class:`~dac_jax.errors.DataError` if a source holds no good item
    (:func:`require_good_files`)."""
    label = f"group {index} ({', '.join(sources) or 'no sources'})"
    if not sources:
        raise DataError(f"{label}: a group needs at least one folder or tfds dataset")
    parts: list[FolderFiles | TfdsExamples] = []
    for source in sources:
        if source.startswith(TFDS_PREFIX):
            parts.append(_open_tfds(source, tfds_data_dir))
        else:
            parts.append(_scan_folder(source, extensions, scan_workers, skipped, label))
    starts = np.cumsum([0] + [len(p) for p in parts])
    group = Group(index, label, parts, starts)
    require_good_files(group, skipped=skipped, workers=scan_workers)
    return group
