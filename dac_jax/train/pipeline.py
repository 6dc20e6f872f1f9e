"""The training input pipeline on tf.data: the excerpt stream batched, one host's share, prefetched.

:class:`AudioPipeline` wires :class:`~dac_jax.train.excerpts.SalientExcerpts` (element ``i`` of the
stream, a pure function of ``(seed, i)``; :mod:`dac_jax.train.excerpts` says how it reproduces the
original's ``build_dataset``) into ``tf.data``:

* **Output**: ``tf.data.Dataset`` of ``{"audio": float32 [local_batch, 1, T]}``, the per-item work
  done by a parallel (AUTOTUNE, deterministic) map over ``tf.numpy_function``, batched and
  prefetched. Excerpts are raw: the original's transforms (VolumeNorm, RescaleAudio, ShiftPhase)
  run on the device (:mod:`dac_jax.train.augment`).
* **Resume**: ``train_dataset(start_step=k)`` starts at element ``k * batch_size``, so a resumed run
  reads exactly the batches the uninterrupted run would have, bad files included: a file is bad as
  a whole and is found out before an item's draws (:mod:`dac_jax.train.sources`), so an item does
  not depend on what this process had read before.
* **Hosts**: global batch ``B``, ``P`` hosts: host ``h`` yields items ``[h*B/P, (h+1)*B/P)`` of
  every global batch, so the hosts' local batches concatenated in host order are the 1-host batch.

~300 items/s through tf.data on 2 shared cores. The per-item work is Python, so an iterator still
alive at interpreter exit would hang TensorFlow's teardown: an atexit hook releases this module's
iterators first (:func:`_release_live_iterators_at_exit`).

This module imports tensorflow at import time; nothing imports it from ``dac_jax`` or
``dac_jax.train`` eagerly.
"""

from __future__ import annotations

import atexit
import gc
import operator

import jax

from dac_jax.quiet_tf import import_tensorflow
from dac_jax.errors import UsageError
from dac_jax.train.excerpts import DataConfig, DataStats, Excerpt, SalientExcerpts, global_index, local_batch_size

__all__ = ["AudioPipeline"]

tf = import_tensorflow()

_OURS = "_dac_jax_audio_pipeline"  # an attribute set on every dataset this module returns


def _hosts(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """``(process_index, process_count)``, each defaulting to JAX's, checked."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    h, p = operator.index(process_index), operator.index(process_count)
    if p < 1 or not 0 <= h < p:
        raise UsageError(f"process_index {h} is not in [0, process_count={p})")
    return h, p


class AudioPipeline:
    """The sources of one :class:`~dac_jax.train.excerpts.DataConfig`, scanned once, and the
    streams drawn from them.

    Building it lists the folders, reads every file's header (``scan_workers`` threads) and opens
    the tfds sources; anything unusable raises :class:`~dac_jax.errors.DataError` then, not
    mid-training. Then:

    * :meth:`excerpt` ``(i)``: stream element ``i``, a pure function of ``(seed, i)``;
    * :meth:`train_dataset`: the endless training stream, from ``start_step``, one host's share;
    * :meth:`validation_dataset`: a fixed list of excerpts (other generators than training's);
    * :attr:`stats`: group sizes and skipped files.
    """

    def __init__(self, config: DataConfig):
        self.items = SalientExcerpts(config)

    @property
    def config(self) -> DataConfig:
        return self.items.config

    @property
    def stats(self) -> DataStats:
        return self.items.stats

    @property
    def num_groups(self) -> int:
        return self.items.num_groups

    def excerpt(self, index: int, *, validation: bool = False) -> Excerpt:
        """Element ``index`` of the training stream (or of the validation list)."""
        return self.items.excerpt(index, validation=validation)

    def _batches(self, indices: tf.data.Dataset, validation: bool, local_batch: int,
                 drop_remainder: bool) -> tf.data.Dataset:
        """The excerpts of the stream ``indices``, read by parallel Python workers, batched."""
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
        setattr(ds, _OURS, True)  # found by _release_live_iterators_at_exit
        return ds

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
            lambda n: global_index(n, start_step, B, b, host))
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
            lambda n: global_index(n, 0, B, b, host))
        return self._batches(indices, True, b, drop_remainder=True)


def _release_live_iterators_at_exit() -> None:
    """Destroy live iterators over our datasets while Python can still run their workers.

    Why: the per-item work is Python (``tf.numpy_function``). An iterator still alive when the
    interpreter finalises (a global, a frame kept by a traceback) is destroyed during module
    teardown; its destructor waits for the in-flight Python calls, whose threads can no longer
    take the GIL then, and the process hangs forever on exit (a TensorFlow limitation; without
    this hook tests/train/test_data.py's exit test hangs every time). atexit hooks run before
    finalisation, so dropping the iterators' resources here lets them finish.

    Why TensorFlow's private fields: tf.data has no public way to close an iterator (it is released
    only when its last reference dies, and the references that matter here die only during
    finalisation). So we find the live ``OwnedIterator``s (its class lives in a private module),
    keep those whose dataset (``_dataset``) is, or is built on (``_inputs()``), one of ours, and
    delete their ``_iterator_resource``. Any failure (a TF version that moved these) leaves exit as
    it was without the hook.
    """
    try:
        from tensorflow.python.data.ops import iterator_ops
    except Exception:
        return

    def is_ours(dataset) -> bool:
        stack, seen = [dataset], set()
        while stack:
            ds = stack.pop()
            if ds is None or id(ds) in seen:
                continue
            seen.add(id(ds))
            if getattr(ds, _OURS, False):
                return True
            try:
                stack.extend(ds._inputs())
            except Exception:  # not a tf.data dataset, or one without inputs
                pass
        return False

    for obj in gc.get_objects():
        try:
            # type(), not isinstance(): isinstance reads obj.__class__, which some proxies intercept
            # (TFDS' lazy builder imports would import every dataset module)
            if issubclass(type(obj), iterator_ops.OwnedIterator) and is_ours(obj._dataset):
                del obj._iterator_resource
        except Exception:  # already released, or half-built: nothing to wait for
            pass


atexit.register(_release_live_iterators_at_exit)
