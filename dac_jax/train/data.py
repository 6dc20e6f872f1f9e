"""The training input pipeline: salient mono excerpts from groups of audio sources, on tf.data.

What it reproduces (descript-audio-codec 1.0.0 ``scripts/train.py`` ``build_dataset``, audiotools
0.7.2 ``AudioLoader`` / ``AudioDataset`` / ``ConcatDataset``):

* **Groups, round-robin.** ``build_dataset(sample_rate, folders)`` makes one loader + dataset per
  key of ``folders`` (a group of folders) and a ``ConcatDataset`` over them: item ``i`` comes from
  group ``i % n_groups``, as that group's item ``j = i // n_groups``. That is the original's data
  balancing (speech, music and general audio in equal shares however many files each has), and it
  is what :class:`DataConfig` ``groups`` means here.
* **A group is one pool of files.** ``AudioLoader(sources=folders)`` lists every audio file of
  every folder of the group and, with ``AudioDataset(without_replacement=True)`` (the default), item
  ``j`` reads file ``audio_indices[j % n_files]`` of a list shuffled once: each file once per pass.
  We do the same (``without_replacement=True``) except that each pass is shuffled afresh (the
  original repeats one order forever); ``without_replacement=False`` draws a file uniformly from
  the group's pool per item (audiotools' with-replacement mode picks a folder of the group
  uniformly first, then a file in it).
* **A salient excerpt.** ``AudioSignal.salient_excerpt(path, duration, state, loudness_cutoff=-40,
  num_tries=8)``: up to ``num_tries`` times, draw ``offset ~ U(0, max(file_seconds - duration, 0))``
  and read ``int(duration * file_rate)`` frames from ``int(offset * file_rate)`` (librosa's rule);
  keep the first excerpt whose loudness (BS.1770, all channels, at the file's rate) is ABOVE the
  cutoff, else the last one tried. Loudness is :func:`dac_jax.audio.loudness.loudness`, equal to
  audiotools' CPU meter. ``loudness_cutoff=None`` takes the first draw.
* **Mono, resampled, padded.** ``to_mono()`` (the mean of the channels), ``resample(sample_rate)``
  (julius' windowed sinc: here its kernel from :mod:`dac_jax.audio.resample`, applied in numpy,
  see :func:`resample_numpy`), ``zero_pad_to(int(duration * sample_rate))``. The original pads but
  never crops (a resampled excerpt one sample too long would break its collate); we also crop, so
  every item has exactly ``T = int(duration * sample_rate)`` samples.

Where it departs, and why:

* **Randomness is a function of (seed, item index).** audiotools seeds ``RandomState(j)`` per
  dataset item (no global seed; every group uses the same ``j`` sequence). We seed a numpy
  ``Generator`` from ``SeedSequence([seed, purpose, i])`` with ``i`` the GLOBAL stream index, so
  element ``i`` is a pure function of ``(seed, i)``: resuming at step ``k`` starts at element
  ``k * batch_size``, and hosts can each compute their share (see below). Draws are therefore not
  bit-equal to audiotools' (a different generator), only equal in distribution; the loading,
  mixing, resampling and padding of a given (file, offset) are equal to the original's (tested).
* **Hosts.** Global batch ``B``, ``P`` hosts: host ``h`` yields items ``[h*B/P, (h+1)*B/P)`` of
  every global batch, so the hosts' local batches concatenated in host order are the 1-host batch.
* **Files are checked up front.** Each file's header is read once when the pipeline is built;
  unreadable files (not audio, corrupt, empty) are skipped with a warning and counted
  (:attr:`AudioPipeline.stats`), where the original would crash mid-training. A file that fails
  later (a bad frame, NaN samples) is skipped the same way and the item redraws a file from its own
  generator, so the stream stays a function of (seed, i) and of the files' contents.
* **Reads.** Each try opens the file, seeks, and reads only the excerpt's frames (soundfile partial
  reads, as librosa's ``load(offset, duration)``). A fresh open per try because this libsndfile's
  OGG/Vorbis seek after a read returns wrong samples (see :mod:`dac_jax.audio.io`); a seek right
  after opening is exact in every format we read.
* **tensorflow-datasets sources** (``tfds:<name>[:<split>]``) join a group's pool next to folders.
  The audio feature is found in the builder's info; integer samples are int16-range values and are
  scaled by 1/32768 (as soundfile scales int16 PCM); float samples are used as stored. Examples are
  read by index through ``builder.as_data_source`` (what ``tfds.data_source`` calls), which needs
  the dataset prepared in a random-access format (array_record); one example is decoded whole, then
  excerpted as a file would be.

Output: ``tf.data.Dataset`` of ``{"audio": float32 [local_batch, 1, T]}``, the per-item work done
by a parallel (AUTOTUNE, deterministic) map over ``tf.numpy_function``, batched and prefetched.
Excerpts are raw: the original's transforms (VolumeNorm, RescaleAudio, ShiftPhase) run on the
device (``dac_jax.train.augment``).

Speed: one 0.38 s excerpt of a 44.1 kHz WAV costs ~5 ms of CPU, about half of it the loudness
meter's IIR filters (scipy; one measure per try, ~1.2 tries per item on music-like audio);
resampling adds ~1-2 ms. ~300 items/s through tf.data on 2 shared cores. The per-item work is
Python, so an iterator still alive at interpreter exit would hang TensorFlow's teardown: an atexit
hook releases this module's iterators first (:func:`_release_iterators_at_exit`).

This module imports tensorflow at import time; nothing imports it from ``dac_jax`` or
``dac_jax.train`` eagerly.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import dataclasses
import functools
import gc
import logging
import math
import operator
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import tensorflow as tf

from dac_jax.audio.loudness import loudness as measure_loudness
from dac_jax.audio.resample import ResamplePlan, resample_kernel
from dac_jax.errors import DataError, UsageError

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioPipeline",
    "DataConfig",
    "DataStats",
    "Excerpt",
    "local_batch_size",
    "parse_tfds_spec",
    "resample_numpy",
]

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
TFDS_PREFIX = "tfds:"

# First words of the SeedSequence entropy: what a generator is for.
_TRAIN, _VALIDATION = 0, 1  # per item: [seed, purpose, index]
_PERMUTATION = 2  # per group and pass: [seed, _PERMUTATION, purpose, group, pass]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Everything that decides the stream; passed whole.

    groups: groups of sources, drawn round-robin (item ``i`` from group ``i % len(groups)``). A
        source is a folder (walked recursively for ``extensions``) or ``"tfds:<name>"`` /
        ``"tfds:<name>:<split>"`` (a version may follow the name: ``"tfds:<name>:1.2.3:<split>"``).
        The original's ``folders`` dict is ``tuple(folders.values())``.
    sample_rate: the model's rate; every excerpt is resampled to it.
    duration: excerpt length in seconds (0.38 in DAC's training, 5.0 for its validation).
        Items have ``T = int(duration * sample_rate)`` samples (:attr:`num_samples`).
    batch_size: the GLOBAL batch (72 in DAC's recipe), split evenly across hosts.
    loudness_cutoff: LUFS an excerpt must exceed to be taken (-40 as DAC); None: the first draw.
    num_tries: draws before settling for the last one (8 as audiotools).
    seed: the stream is a function of (seed, item index).
    without_replacement: each file once per pass through its group (the original's default), each
        pass in a fresh order; False draws a file uniformly per item.
    extensions: file suffixes (case-insensitive) that count as audio in folders.
    tfds_data_dir: where prepared tensorflow-datasets live (None: TFDS' default).
    scan_workers: threads that read the files' headers when the pipeline is built.
    max_redraws: files an item may find unreadable before the pipeline gives up (DataError).
    """

    groups: tuple[tuple[str, ...], ...]
    sample_rate: int
    duration: float
    batch_size: int
    loudness_cutoff: float | None = -40.0
    num_tries: int = 8
    seed: int = 0
    without_replacement: bool = True
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    tfds_data_dir: str | None = None
    scan_workers: int = 8
    max_redraws: int = 32

    def __post_init__(self):
        # lists (from YAML / argbind) and Paths become tuples of str, so the config stays hashable
        if isinstance(self.groups, (str, os.PathLike)) or not _is_sequence(self.groups):
            raise UsageError(f"groups must be a sequence of groups of sources, got {self.groups!r}")
        groups = []
        for k, group in enumerate(self.groups):
            if isinstance(group, (str, os.PathLike)) or not _is_sequence(group):
                raise UsageError(
                    f"group {k} must be a sequence of sources (folders or 'tfds:' names), got {group!r}"
                )
            groups.append(tuple(os.fspath(s) for s in group))
        object.__setattr__(self, "groups", tuple(groups))
        object.__setattr__(self, "extensions", tuple(e.lower() for e in self.extensions))
        if not self.groups:
            raise UsageError("groups is empty: give at least one group of sources")
        for name in ("sample_rate", "batch_size", "num_tries", "scan_workers", "max_redraws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise UsageError(f"seed must be a non-negative integer, got {self.seed!r}")
        duration = self.duration
        if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
            raise UsageError(f"duration must be a positive number of seconds, got {self.duration!r}")
        if self.num_samples < 1:
            raise UsageError(f"duration {self.duration} s is less than one sample at {self.sample_rate} Hz")

    @property
    def num_samples(self) -> int:
        """``T``: samples per item, ``int(duration * sample_rate)`` as audiotools' ``zero_pad_to``."""
        return int(self.duration * self.sample_rate)


def _is_sequence(x) -> bool:
    return isinstance(x, (list, tuple))


@dataclasses.dataclass(frozen=True)
class DataStats:
    """What the pipeline found: usable items per group and the sources it skipped.

    ``skipped`` holds ``(file or tfds example, reason)`` for every unreadable one, those found
    when scanning the folders and those found later while reading (in this process).
    """

    group_sizes: tuple[int, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def skipped_files(self) -> int:
        return len(self.skipped)


@dataclasses.dataclass(frozen=True)
class Excerpt:
    """One stream element and where it came from.

    audio: float32 ``[1, T]``. index: its stream index (global). group: ``index % n_groups``.
    source: the file path, or ``"tfds:<name>:<split>[<k>]"``. offset: seconds into the source
    (audiotools' ``metadata["offset"]``). source_rate: the source's sample rate. tries: draws made.
    loudness: LUFS of the excerpt taken (at the source rate, all channels); None without a cutoff.
    """

    audio: np.ndarray
    index: int
    group: int
    source: str
    offset: float
    source_rate: int
    tries: int
    loudness: float | None


class _Unreadable(Exception):
    """A source that cannot give an excerpt (the message says why)."""


# -- resampling ------------------------------------------------------------------------------------


def resample_numpy(x: np.ndarray, old_sr: int, new_sr: int) -> np.ndarray:
    """julius' ``resample_frac(x, old_sr, new_sr)`` (zeros=24, rolloff=0.945) in numpy, for
    ``x [C, T]`` float32 -> float32 ``[C, T']``.

    :func:`dac_jax.audio.resample.resample_frac` computes the same thing in JAX (a strided
    convolution under ``jit``, one compilation per shape); in tf.data's worker threads we want
    plain host code with no compilation, so this applies the same kernel
    (:func:`~dac_jax.audio.resample.resample_kernel`, julius' float32 kernel) as a matmul over the
    strided windows (by ``einsum``): edge-replicated padding of ``W`` left and ``W + o`` right, window ``f`` =
    ``xpad[f*o : f*o + 2W + o]``, ``y[f*n + i] = kernel[i] . window_f``, cut to julius' length.
    Equal to julius to float32 rounding (~1e-7). Equal rates return ``x`` unchanged.
    """
    plan = ResamplePlan.make(old_sr, new_sr)
    if plan.identity:
        return x
    channels, length = x.shape
    kernel = resample_kernel(old_sr, new_sr)  # [n, K], cached
    w, o = plan.width, plan.old
    xpad = np.pad(x, ((0, 0), (w, w + o)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(xpad, kernel.shape[1], axis=-1)[:, ::o]
    windows = windows[:, : plan.frames(length)]  # [C, frames, K]
    # einsum's own loops, not BLAS: a multi-threaded BLAS called from many tf.data workers at
    # once oversubscribes the cores (a 0.38 s 44.1 -> 16 kHz excerpt: 1.7 ms here, 24 ms by matmul)
    y = np.einsum("cfk,nk->cfn", windows, kernel)  # [C, frames, n]
    return np.ascontiguousarray(y.reshape(channels, -1)[:, : plan.output_length(length)], dtype=np.float32)


# -- sources ---------------------------------------------------------------------------------------


class _FileReader:
    """Excerpts of one file: header once, then a fresh open + seek + partial read per excerpt."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._file = sf.SoundFile(path)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise _Unreadable(_reason(e)) from None
        self.frames = int(self._file.frames)
        self.sample_rate = int(self._file.samplerate)
        self._fresh = True  # nothing read yet: this handle can still seek exactly
        if self.frames <= 0 or self.sample_rate <= 0 or self._file.channels <= 0:
            self.close()
            raise _Unreadable("holds no audio (0 frames)")

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
            raise _Unreadable(f"cannot read frames {start}:{start + frames} ({_reason(e)})") from None
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


def _reason(e: BaseException) -> str:
    text = getattr(e, "error_string", None) or str(e) or type(e).__name__
    return text.strip().splitlines()[0].rstrip(".")


@dataclasses.dataclass
class _FolderFiles:
    """The usable files of one folder (sorted, so the pool is the same on every machine)."""

    folder: str
    paths: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, k: int) -> str:
        return self.paths[k]

    def open(self, k: int):
        return _FileReader(self.paths[k])


@dataclasses.dataclass
class _TfdsExamples:
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

    def open(self, k: int):
        try:
            value = self.source[k]
            for part in self.key:
                value = value[part]
            audio = np.asarray(value)
        except Exception as e:  # a corrupt record: whatever the reader raises
            raise _Unreadable(f"cannot decode ({_reason(e)})") from None
        if audio.ndim == 1:
            audio = audio[None]
        elif audio.ndim == 2:
            audio = audio.T  # TFDS stores [length, channels]
        else:
            raise _Unreadable(f"audio of shape {audio.shape}, expected [length] or [length, channels]")
        if audio.shape[1] == 0 or audio.shape[0] == 0:
            raise _Unreadable("holds no audio (0 frames)")
        audio = audio.astype(np.float32) * np.float32(self.scale) if self.scale else audio.astype(np.float32)
        return _ArrayReader(audio, self.sample_rate)


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


def _open_tfds(spec: str, data_dir: str | None) -> _TfdsExamples:
    import tensorflow_datasets as tfds

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
    return _TfdsExamples(f"{TFDS_PREFIX}{name}:{split}", source, key, int(feature.sample_rate), scale, size)


@dataclasses.dataclass
class _Group:
    index: int
    label: str
    parts: list  # _FolderFiles | _TfdsExamples, in the order given
    starts: np.ndarray  # first pool index of each part

    @property
    def size(self) -> int:
        return int(self.starts[-1])

    def locate(self, k: int):
        p = int(np.searchsorted(self.starts, k, side="right")) - 1
        return self.parts[p], k - int(self.starts[p])


@functools.lru_cache(maxsize=32)
def _permutation(seed: int, purpose: int, group: int, epoch: int, size: int) -> np.ndarray:
    rng = np.random.default_rng([seed, _PERMUTATION, purpose, group, epoch])
    perm = rng.permutation(size).astype(np.int32 if size < 2**31 else np.int64)
    perm.setflags(write=False)
    return perm


def local_batch_size(batch_size: int, process_count: int) -> int:
    """``batch_size / process_count``: the items each host yields per step."""
    if process_count < 1 or batch_size % process_count:
        raise UsageError(f"the global batch {batch_size} does not split evenly over {process_count} hosts")
    return batch_size // process_count


def _hosts(process_index, process_count) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    h, p = operator.index(process_index), operator.index(process_count)
    if p < 1 or not 0 <= h < p:
        raise UsageError(f"process_index {h} is not in [0, process_count={p})")
    return h, p


def _uses_pipeline(dataset) -> bool:
    """Whether ``dataset`` is, or is built on, one of this module's datasets."""
    stack, seen = [dataset], set()
    while stack:
        ds = stack.pop()
        if ds is None or id(ds) in seen:
            continue
        seen.add(id(ds))
        if getattr(ds, "_dac_jax_audio_pipeline", False):
            return True
        try:
            stack.extend(ds._inputs())
        except Exception:  # not a tf.data dataset, or one without inputs
            pass
    return False


def _release_iterators_at_exit() -> None:
    """Destroy live iterators over our datasets while Python can still run their workers.

    The per-item work is Python (``tf.numpy_function``). An iterator still alive when the
    interpreter finalises (a global, a frame kept by a traceback) is destroyed during module
    teardown; its destructor waits for the in-flight Python calls, whose threads can no longer
    take the GIL then, and the process hangs forever on exit (a TensorFlow limitation). atexit
    hooks run before finalisation, so dropping the iterators' resources here lets them finish.
    """
    try:
        from tensorflow.python.data.ops import iterator_ops
    except Exception:
        return
    for obj in gc.get_objects():
        try:
            # type(), not isinstance(): isinstance reads obj.__class__, which some proxies intercept
            # (TFDS' lazy builder imports would import every dataset module)
            if issubclass(type(obj), iterator_ops.OwnedIterator) and _uses_pipeline(obj._dataset):
                del obj._iterator_resource
        except Exception:  # already released, or half-built: nothing to wait for
            pass


atexit.register(_release_iterators_at_exit)


class AudioPipeline:
    """The sources of one :class:`DataConfig`, scanned once, and the streams drawn from them.

    Building it lists the folders, reads every file's header (``scan_workers`` threads) and opens
    the tfds sources; anything unusable raises :class:`~dac_jax.errors.DataError` then, not
    mid-training. Then:

    * :meth:`excerpt` ``(i)``: stream element ``i``, a pure function of ``(seed, i)``;
    * :meth:`train_dataset`: the endless training stream, from ``start_step``, one host's share;
    * :meth:`validation_dataset`: a fixed list of excerpts (other generators than training's);
    * :attr:`stats`: group sizes and skipped files.
    """

    def __init__(self, config: DataConfig):
        if not isinstance(config, DataConfig):
            raise UsageError(f"expected a DataConfig, got {type(config).__name__}")
        self.config = config
        self._lock = threading.Lock()
        self._skipped: dict[str, str] = {}
        self._groups = [self._build_group(g, sources) for g, sources in enumerate(config.groups)]

    # -- building --------------------------------------------------------------------------------

    def _skip(self, name: str, reason: str) -> None:
        with self._lock:
            if name in self._skipped:
                return
            self._skipped[name] = reason
        logger.warning("skipping %s: %s", name, reason)

    def _build_group(self, g: int, sources: tuple[str, ...]) -> _Group:
        label = f"group {g} ({', '.join(sources) or 'no sources'})"
        if not sources:
            raise DataError(f"{label}: a group needs at least one folder or tfds dataset")
        parts = []
        for source in sources:
            if source.startswith(TFDS_PREFIX):
                parts.append(_open_tfds(source, self.config.tfds_data_dir))
                continue
            paths = _list_folder(source, self.config.extensions)
            workers = min(self.config.scan_workers, len(paths))
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                reasons = list(pool.map(_probe, paths))
            for path, reason in zip(paths, reasons):
                if reason is not None:
                    self._skip(path, reason)
            usable = [p for p, r in zip(paths, reasons) if r is None]
            if usable:
                parts.append(_FolderFiles(source, usable))
            else:
                logger.warning("%s: none of its %d audio files is readable", source, len(paths))
        if not parts:
            raise DataError(f"{label}: no usable audio (every file is unreadable; see the warnings)")
        starts = np.cumsum([0] + [len(p) for p in parts])
        return _Group(g, label, parts, starts)

    # -- one item --------------------------------------------------------------------------------

    @property
    def stats(self) -> DataStats:
        with self._lock:
            skipped = tuple(self._skipped.items())
        return DataStats(tuple(grp.size for grp in self._groups), skipped)

    @property
    def num_groups(self) -> int:
        return len(self._groups)

    def excerpt(self, index: int, *, validation: bool = False) -> Excerpt:
        """Element ``index`` of the training stream (or of the validation list): a pure function of
        ``(config, index)``, and of the files' contents."""
        index = operator.index(index)
        if index < 0:
            raise UsageError(f"item index must be >= 0, got {index}")
        cfg = self.config
        purpose = _VALIDATION if validation else _TRAIN
        group = self._groups[index % len(self._groups)]
        j = index // len(self._groups)  # the group's own item (ConcatDataset)
        rng = np.random.default_rng([cfg.seed, purpose, index])
        if cfg.without_replacement:
            epoch, pos = divmod(j, group.size)
            k = int(_permutation(cfg.seed, purpose, group.index, epoch, group.size)[pos])
        else:
            k = int(rng.integers(group.size))
        for _ in range(cfg.max_redraws):
            part, local = group.locate(k)
            name = part.name(local)
            if name not in self._skipped:  # a known-bad file would fail again: same result
                try:
                    return self._salient(part.open(local), rng, index, group.index, name)
                except _Unreadable as e:
                    self._skip(name, str(e))
            k = int(rng.integers(group.size))
        raise DataError(f"{group.label}: {cfg.max_redraws} unreadable sources in a row for item {index}")

    def _salient(self, reader, rng: np.random.Generator, index: int, group: int, name: str) -> Excerpt:
        cfg = self.config
        try:
            sr, frames = reader.sample_rate, reader.frames
            n = int(cfg.duration * sr)
            upper = max(frames / sr - cfg.duration, 0.0)
            tries = 1 if cfg.loudness_cutoff is None else cfg.num_tries
            for t in range(1, tries + 1):
                offset = float(rng.uniform(0.0, upper))
                x = reader.read(int(offset * sr), n)
                if x.shape[1] == 0:
                    raise _Unreadable(f"no frames at {offset:.3f} s")
                if not np.isfinite(x).all():
                    raise _Unreadable(f"non-finite samples near {offset:.3f} s")
                if cfg.loudness_cutoff is None:
                    loud = None
                    break
                loud = float(measure_loudness(x, sr)[0])
                # a file no longer than the excerpt: every draw is the same excerpt
                if loud > cfg.loudness_cutoff or upper == 0.0:
                    break
        finally:
            reader.close()
        mono = x.mean(axis=0, keepdims=True, dtype=np.float32)  # AudioSignal.to_mono
        mono = resample_numpy(mono, sr, cfg.sample_rate)
        audio = np.zeros((1, cfg.num_samples), np.float32)  # zero_pad_to, and a crop
        m = min(cfg.num_samples, mono.shape[1])
        audio[:, :m] = mono[:, :m]
        return Excerpt(audio, index, group, name, offset, sr, t, loud)

    # -- tf.data ---------------------------------------------------------------------------------

    def _batches(self, indices: tf.data.Dataset, validation: bool, local_batch: int, drop_remainder: bool):
        length = self.config.num_samples

        def load(i):
            return self.excerpt(int(i), validation=validation).audio

        def item(i):
            audio = tf.numpy_function(load, [i], tf.float32, stateful=False, name="dac_jax_excerpt")
            audio.set_shape([1, length])
            return {"audio": audio}

        ds = indices.map(item, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(local_batch, drop_remainder=drop_remainder)
        ds = ds.prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = True
        ds = ds.with_options(options)
        ds._dac_jax_audio_pipeline = True  # found by _release_iterators_at_exit
        return ds

    @staticmethod
    def _global_index(n, first_batch: int, global_batch: int, local_batch: int, host: int):
        """Local element ``n`` of host ``host`` -> its global stream index."""
        k = first_batch + n // local_batch
        return k * global_batch + host * local_batch + n % local_batch

    def train_dataset(self, *, start_step: int = 0, process_index: int | None = None,
                      process_count: int | None = None) -> tf.data.Dataset:
        """The endless training stream for one host, from global batch ``start_step``.

        Yields ``{"audio": float32 [B / P, 1, T]}``: batch ``k`` of host ``h`` holds stream items
        ``k*B + h*B/P ... k*B + (h+1)*B/P - 1`` (``B`` = ``config.batch_size``, ``P`` hosts), so
        concatenating the hosts' batches gives the 1-host batch, and ``start_step=k`` yields exactly
        batches ``k, k+1, ...`` of the uninterrupted stream. ``process_index`` / ``process_count``
        default to ``jax.process_index()`` / ``jax.process_count()``.
        """
        start_step = operator.index(start_step)
        if start_step < 0:
            raise UsageError(f"start_step must be >= 0, got {start_step}")
        host, hosts = _hosts(process_index, process_count)
        b, B = local_batch_size(self.config.batch_size, hosts), self.config.batch_size
        indices = tf.data.Dataset.counter(0, dtype=tf.int64).map(
            lambda n: self._global_index(n, start_step, B, b, host))
        return self._batches(indices, False, b, drop_remainder=True)

    def validation_dataset(self, num_examples: int, *, batch_size: int | None = None,
                           process_index: int | None = None,
                           process_count: int | None = None) -> tf.data.Dataset:
        """The fixed validation list: items ``0 .. num_examples-1`` of the validation stream (its own
        generators, so a config shared with training does not repeat training's items), the same
        every time for the same config. Batches of ``batch_size`` (default ``config.batch_size``),
        split over hosts as :meth:`train_dataset`; with one host the last batch may be smaller,
        with several ``num_examples`` must be a multiple of the batch. (The original validates on
        5 s excerpts: give this pipeline a config with ``duration=5.0``.)
        """
        num_examples = operator.index(num_examples)
        if num_examples < 1:
            raise UsageError(f"num_examples must be >= 1, got {num_examples}")
        B = self.config.batch_size if batch_size is None else operator.index(batch_size)
        if B < 1:
            raise UsageError(f"batch_size must be >= 1, got {B}")
        host, hosts = _hosts(process_index, process_count)
        b = local_batch_size(B, hosts)
        if hosts == 1:
            return self._batches(tf.data.Dataset.range(num_examples), True, b, drop_remainder=False)
        if num_examples % B:
            raise UsageError(
                f"{num_examples} validation examples do not fill whole batches of {B} on {hosts} hosts"
            )
        indices = tf.data.Dataset.range(num_examples // hosts).map(
            lambda n: self._global_index(n, 0, B, b, host))
        return self._batches(indices, True, b, drop_remainder=True)
