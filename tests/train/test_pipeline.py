"""dac_jax.train.pipeline: the excerpt stream on tf.data, batched, resumable, split over hosts.

Every batch is checked against the pure stream (:meth:`AudioPipeline.excerpt`, a function of
``(seed, i)``): equal items, the same stream for the same seed, ``start_step=k`` resuming exactly,
the hosts' shares concatenating to the one-host batch, a fixed validation list; and a process that
ends with a live iterator exits. tensorflow is part of the training extra, not of the reference:
imported plainly, so a missing one is an error here, not a skip.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from dac_jax.errors import UsageError
from dac_jax.train.pipeline import AudioPipeline
from tests.train.audio_corpus import config, take


def test_batches_are_float32_b1t_and_equal_the_pure_items(corpus):
    pipe = AudioPipeline(config([[corpus["low"]], [corpus["high"]]]))
    ds = pipe.train_dataset(process_index=0, process_count=1)
    assert ds.element_spec == {"audio": tf.TensorSpec([4, 1, 1600], tf.float32)}
    batches = take(ds, 2)
    for k, batch in enumerate(batches):
        assert batch.dtype == np.float32 and batch.shape == (4, 1, 1600)
        for j in range(4):
            np.testing.assert_array_equal(batch[j], pipe.excerpt(4 * k + j).audio)
    assert np.abs(np.stack(batches)).max() > 0.1  # real audio, not padding


def test_same_seed_same_stream_other_seed_another(corpus):
    groups = [[corpus["low"], corpus["mid"]], [corpus["high"]]]
    first = take(AudioPipeline(config(groups, seed=0)).train_dataset(process_index=0, process_count=1), 3)
    again = take(AudioPipeline(config(groups, seed=0)).train_dataset(process_index=0, process_count=1), 3)
    other = take(AudioPipeline(config(groups, seed=1)).train_dataset(process_index=0, process_count=1), 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, c) for a, c in zip(first, other))


def test_start_step_resumes_exactly_where_the_stream_was(corpus):
    pipe = AudioPipeline(config([[corpus["low"]], [corpus["mid"], corpus["high"]]], batch_size=3))
    full = take(pipe.train_dataset(process_index=0, process_count=1), 5)
    resumed = take(pipe.train_dataset(start_step=3, process_index=0, process_count=1), 2)
    np.testing.assert_array_equal(resumed[0], full[3])
    np.testing.assert_array_equal(resumed[1], full[4])


def test_hosts_local_batches_concatenate_to_the_one_host_batch(corpus):
    pipe = AudioPipeline(config([[corpus["low"]], [corpus["mid"]], [corpus["high"]]], batch_size=6))
    one = take(pipe.train_dataset(start_step=1, process_index=0, process_count=1), 2)
    for hosts in (2, 3):
        parts = [take(pipe.train_dataset(start_step=1, process_index=h, process_count=hosts), 2)
                 for h in range(hosts)]
        for k in range(2):
            assert parts[0][k].shape == (6 // hosts, 1, 1600)
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), one[k])
    with pytest.raises(UsageError, match="does not split evenly"):
        pipe.train_dataset(process_index=0, process_count=4)
    with pytest.raises(UsageError, match="process_index"):
        pipe.train_dataset(process_index=2, process_count=2)


def test_validation_is_a_fixed_list(corpus):
    cfg = config([[corpus["wav16"]], [corpus["flac"]]], duration=0.25, batch_size=4)
    pipe = AudioPipeline(cfg)
    first = take(pipe.validation_dataset(6, process_index=0, process_count=1), 2)
    again = take(AudioPipeline(cfg).validation_dataset(6, process_index=0, process_count=1), 2)
    assert [b.shape for b in first] == [(4, 1, 4000), (2, 1, 4000)]  # the last batch holds the rest
    items = np.concatenate(first)
    np.testing.assert_array_equal(items, np.concatenate(again))
    np.testing.assert_array_equal(items, np.stack([pipe.excerpt(j, validation=True).audio for j in range(6)]))
    assert not np.array_equal(items, np.stack([pipe.excerpt(j).audio for j in range(6)]))  # not training's
    hosts = [take(pipe.validation_dataset(8, process_index=h, process_count=2), 2) for h in range(2)]
    for k in range(2):
        want = np.stack([pipe.excerpt(j, validation=True).audio for j in range(4 * k, 4 * k + 4)])
        np.testing.assert_array_equal(np.concatenate([hosts[0][k], hosts[1][k]]), want)
    with pytest.raises(UsageError, match="whole batches"):
        pipe.validation_dataset(6, process_index=0, process_count=2)


@pytest.mark.slow  # a fresh interpreter importing jax and tensorflow: ~10 s
def test_dac_jax_does_not_import_tensorflow_and_exit_does_not_hang(corpus):
    """``import dac_jax`` / ``dac_jax.train`` (and the stream's own modules) leave tensorflow alone;
    and a process that ends with a live iterator (its Python workers mid-call) exits instead of
    hanging in TF's destructor. Without ``pipeline._release_live_iterators_at_exit`` this script
    hangs (3 runs of 3 on this machine)."""
    script = f"""
import sys
import dac_jax, dac_jax.train, dac_jax.train.sources, dac_jax.train.excerpts
assert "tensorflow" not in sys.modules, "import dac_jax imported tensorflow"
from dac_jax.train.excerpts import DataConfig
from dac_jax.train.pipeline import AudioPipeline
# silence: every item makes all its 50 tries, so workers are mid-call when the script ends
cfg = DataConfig(groups=(({corpus['silence']!r},),), sample_rate=16000, duration=0.1, batch_size=2,
                 num_tries=50)
it = AudioPipeline(cfg).train_dataset(process_index=0, process_count=1).as_numpy_iterator()
next(it)
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
