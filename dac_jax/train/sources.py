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
    "parse_tfds_spec",
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
    """The usable files of one folder (sorted, so the pool is the same on every machine)."""

    folder: str
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, k: int) -> str:
        return self.paths[k]

    def open(self, k: int) -> Reader:
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

    def name(self, k: int) -> str:
        return f"{self.spec}[{k}]"

    def open(self, k: int) -> Reader:
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


def _scan_folder(folder: str, extensions: tuple[str, ...], workers: int, skipped: SkipLog) -> FolderFiles | None:
    """The folder's readable files (headers read by ``workers`` threads), None if there are none."""
    paths = _list_folder(folder, extensions)
    with concurrent.futures.ThreadPoolExecutor(min(workers, len(paths))) as pool:
        reasons = list(pool.map(_probe, paths))
    for path, reason in zip(paths, reasons):
        if reason is not None:
            skipped.add(path, reason)
    usable = [p for p, r in zip(paths, reasons) if r is None]
    if not usable:
        logger.warning("%s: none of its %d audio files is readable", folder, len(paths))
        return None
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
    import tensorflow_datasets as tfds

    found = []
    if isinstance(features, tfds.features.FeaturesDict):
        for key, feature in features.items():
            found.extend(_find_audio_features(feature, prefix + (key,)))
    elif isinstance(features, tfds.features.Audio):
        found.append((prefix, features))
    return found


def _open_tfds(spec: str, data_dir: str | None) -> TfdsExamples:
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


def scan_group(index: int, sources: tuple[str, ...], *, extensions: tuple[str, ...], tfds_data_dir: str | None,
               scan_workers: int, skipped: SkipLog) -> Group:
    """Group ``index``'s pool: its folders scanned (unreadable files recorded in ``skipped``) and its
    tfds sources opened; :class:`~dac_jax.errors.DataError` if nothing in it is usable."""
    label = f"group {index} ({', '.join(sources) or 'no sources'})"
    if not sources:
        raise DataError(f"{label}: a group needs at least one folder or tfds dataset")
    parts: list[FolderFiles | TfdsExamples] = []
    for source in sources:
        if source.startswith(TFDS_PREFIX):
            parts.append(_open_tfds(source, tfds_data_dir))
            continue
        files = _scan_folder(source, extensions, scan_workers, skipped)
        if files is not None:
            parts.append(files)
    if not parts:
        raise DataError(f"{label}: no usable audio (every file is unreadable; see the warnings)")
    starts = np.cumsum([0] + [len(p) for p in parts])
    return Group(index, label, parts, starts)
