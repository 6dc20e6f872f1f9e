"""Which excerpt stream element ``i`` is: groups round-robin, a file per pass, a salient excerpt.

What it reproduces (descript-audio-codec 1.0.0 ``scripts/train.py`` ``build_dataset``, audiotools
0.7.2 ``AudioLoader`` / ``AudioDataset`` / ``ConcatDataset``):

* **Groups, round-robin.** ``build_dataset(sample_rate, folders)`` makes one loader + dataset per
  key of ``folders`` (a group of folders) and a ``ConcatDataset`` over them: item ``i`` comes from
  group ``i % n_groups``, as that group's item ``j = i // n_groups``. That is the original's data
  balancing (speech, music and general audio in equal shares however many files each has), and it
  is what :class:`DataConfig` ``groups`` means here.
* **A group is one pool of files** (:mod:`dac_jax.train.sources`). ``AudioLoader(sources=folders)``
  lists every audio file of every folder of the group and, with
  ``AudioDataset(without_replacement=True)`` (the default), item ``j`` reads file
  ``audio_indices[j % n_files]`` of a list shuffled once: each file once per pass. We do the same
  (``without_replacement=True``) except that each pass is shuffled afresh (the original repeats one
  order forever); ``without_replacement=False`` draws a file uniformly from the group's pool per
  item (audiotools' with-replacement mode picks a folder of the group uniformly first, then a file
  in it).
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
  ``k * batch_size``, and hosts can each compute their share (:func:`global_index`). Draws are
  therefore not bit-equal to audiotools' (a different generator), only equal in distribution; the
  loading, mixing, resampling and padding of a given (file, offset) are equal to the original's
  (tested).
* **Bad files are redrawn.** A file that fails while reading (a bad frame, NaN samples) is skipped
  and the item redraws a file from its own generator, so the stream stays a function of (seed, i)
  and of the files' contents.

Speed: one 0.38 s excerpt of a 44.1 kHz WAV costs ~5 ms of CPU, about half of it the loudness
meter's IIR filters (scipy; one measure per try, ~1.2 tries per item on music-like audio);
resampling adds ~1-2 ms. Plain numpy, no tensorflow: :mod:`dac_jax.train.pipeline` runs it in
tf.data's workers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import os

import numpy as np

from dac_jax.audio.loudness import loudness as measure_loudness
from dac_jax.audio.resample import ResamplePlan, resample_kernel
from dac_jax.errors import DataError, UsageError
from dac_jax.train.sources import AUDIO_EXTENSIONS, Reader, SkipLog, Unreadable, scan_group

__all__ = [
    "DataConfig",
    "DataStats",
    "Excerpt",
    "SalientExcerpts",
    "global_index",
    "local_batch_size",
    "resample_numpy",
    "salient_excerpt",
]

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


# -- indexing: which pool item, which global element -------------------------------------------------


@functools.lru_cache(maxsize=32)
def _permutation(seed: int, purpose: int, group: int, epoch: int, size: int) -> np.ndarray:
    """Pass ``epoch`` through a group's pool of ``size`` items, in its own order (read-only)."""
    rng = np.random.default_rng([seed, _PERMUTATION, purpose, group, epoch])
    perm = rng.permutation(size).astype(np.int32 if size < 2**31 else np.int64)
    perm.setflags(write=False)
    return perm


def local_batch_size(batch_size: int, process_count: int) -> int:
    """``batch_size / process_count``: the items each host yields per step."""
    if process_count < 1 or batch_size % process_count:
        raise UsageError(f"the global batch {batch_size} does not split evenly over {process_count} hosts")
    return batch_size // process_count


def global_index(n, first_batch: int, global_batch: int, local_batch: int, host: int):
    """Local element ``n`` of host ``host`` -> its global stream index.

    Host ``h`` holds items ``[h*b, (h+1)*b)`` of every global batch (``b`` = ``local_batch``), so
    the hosts' local batches concatenated in host order are the 1-host batch. Plain arithmetic, so
    ``n`` may be an int or a tensor (tf.data maps it over its counter).
    """
    k = first_batch + n // local_batch
    return k * global_batch + host * local_batch + n % local_batch


# -- one element -----------------------------------------------------------------------------------


def salient_excerpt(reader: Reader, rng: np.random.Generator, config: DataConfig, *, index: int, group: int,
                    name: str) -> Excerpt:
    """audiotools' ``salient_excerpt`` from an open ``reader`` (closed on return), then to mono,
    resampled to ``config.sample_rate`` and zero-padded / cropped to ``config.num_samples``."""
    try:
        sr, frames = reader.sample_rate, reader.frames
        n = int(config.duration * sr)
        upper = max(frames / sr - config.duration, 0.0)
        tries = 1 if config.loudness_cutoff is None else config.num_tries
        for t in range(1, tries + 1):
            offset = float(rng.uniform(0.0, upper))
            x = reader.read(int(offset * sr), n)
            if x.shape[1] == 0:
                raise Unreadable(f"no frames at {offset:.3f} s")
            if not np.isfinite(x).all():
                raise Unreadable(f"non-finite samples near {offset:.3f} s")
            if config.loudness_cutoff is None:
                loud = None
                break
            loud = float(measure_loudness(x, sr)[0])
            # a file no longer than the excerpt: every draw is the same excerpt
            if loud > config.loudness_cutoff or upper == 0.0:
                break
    finally:
        reader.close()
    mono = x.mean(axis=0, keepdims=True, dtype=np.float32)  # AudioSignal.to_mono
    mono = resample_numpy(mono, sr, config.sample_rate)
    audio = np.zeros((1, config.num_samples), np.float32)  # zero_pad_to, and a crop
    m = min(config.num_samples, mono.shape[1])
    audio[:, :m] = mono[:, :m]
    return Excerpt(audio, index, group, name, offset, sr, t, loud)


class SalientExcerpts:
    """The sources of one :class:`DataConfig`, scanned once, and stream element ``i`` of them.

    Building it lists the folders, reads every file's header (``scan_workers`` threads) and opens
    the tfds sources; anything unusable raises :class:`~dac_jax.errors.DataError` then, not
    mid-training. :meth:`excerpt` is safe to call from many threads at once.
    """

    def __init__(self, config: DataConfig):
        if not isinstance(config, DataConfig):
            raise UsageError(f"expected a DataConfig, got {type(config).__name__}")
        self.config = config
        self._skipped = SkipLog()
        self._groups = [
            scan_group(g, sources, extensions=config.extensions, tfds_data_dir=config.tfds_data_dir,
                       scan_workers=config.scan_workers, skipped=self._skipped)
            for g, sources in enumerate(config.groups)
        ]

    @property
    def stats(self) -> DataStats:
        return DataStats(tuple(grp.size for grp in self._groups), self._skipped.items())

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
                    return salient_excerpt(part.open(local), rng, cfg, index=index, group=group.index, name=name)
                except Unreadable as e:
                    self._skipped.add(name, str(e))
            k = int(rng.integers(group.size))
        raise DataError(f"{group.label}: {cfg.max_redraws} unreadable sources in a row for item {index}")
