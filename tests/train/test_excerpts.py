"""dac_jax.train.excerpts: which salient excerpt stream element ``i`` is, on real files.

What is checked against what: a (file, offset) excerpt equals audiotools' loading of it
(``AudioSignal(path, offset, duration).to_mono().resample(sr).zero_pad_to(T)``, the steps of
``AudioLoader.__call__``) and its loudness equals ``AudioSignal.loudness()``; the numpy resampler
equals julius; the stream's structure (round-robin groups, a file once per pass, salient excerpts,
redraws) is checked on files whose content says where an item came from. Signals are short
(0.1-0.25 s excerpts at 16 kHz) and everything is seeded. No tensorflow here: the stream is plain
numpy, and tf.data (tests/train/test_pipeline.py) only batches it.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from dac_jax.errors import UsageError
from dac_jax.train.excerpts import DataConfig, SalientExcerpts, global_index, local_batch_size, resample_numpy
from tests.requires import require_reference
from tests.train.audio_corpus import GROUP_FREQS, SR, config, dominant_hz


def test_groups_are_drawn_round_robin_and_files_once_per_pass(corpus):
    items = SalientExcerpts(config([[corpus["low"]], [corpus["mid"]], [corpus["high"]]]))
    assert items.stats.group_sizes == (3, 1, 2) and items.num_groups == 3
    drawn = [items.excerpt(i) for i in range(18)]
    for i, item in enumerate(drawn):
        assert item.group == i % 3
        assert dominant_hz(item.audio) == GROUP_FREQS[i % 3], (i, item.source)
    # without replacement: each pass through a group's pool reads each of its files once
    low = [item.source for item in drawn[0::3]]  # the low group's items 0..5: two passes of 3 files
    assert sorted(low[:3]) == sorted(low[3:]) == sorted(set(low))
    assert low[:3] != low[3:]  # each pass in its own order (seed 0)
    # with replacement: a file drawn per item (so files repeat within 3 draws), still a function of
    # (seed, i): a second stream draws the same files
    cfg = config([[corpus["low"]]], without_replacement=False)
    first, second = SalientExcerpts(cfg), SalientExcerpts(cfg)
    sources = [first.excerpt(i).source for i in range(12)]
    assert sources == [second.excerpt(i).source for i in range(12)]
    assert any(len(set(sources[k:k + 3])) < 3 for k in range(0, 12, 3))


def test_validation_items_have_their_own_generators(corpus):
    items = SalientExcerpts(config([[corpus["wav16"]], [corpus["flac"]]], duration=0.25))
    train = np.stack([items.excerpt(j).audio for j in range(6)])
    val = np.stack([items.excerpt(j, validation=True).audio for j in range(6)])
    assert not np.array_equal(train, val)
    np.testing.assert_array_equal(val, np.stack([items.excerpt(j, validation=True).audio for j in range(6)]))


def test_salient_excerpts_land_in_the_loud_region_given_enough_tries(corpus):
    groups = [[corpus["island"]]]
    many = SalientExcerpts(config(groups, duration=0.2, num_tries=16))
    once = SalientExcerpts(config(groups, duration=0.2, num_tries=1))
    silent = 0
    for i in range(16):
        a, b = many.excerpt(i), once.excerpt(i)
        assert a.loudness > -40.0 and np.abs(a.audio).max() > 0.1  # in the loud region
        if b.loudness > -40.0:  # the first draw was loud: both stopped there
            assert a.tries == 1 and a.offset == b.offset
            np.testing.assert_array_equal(a.audio, b.audio)
        else:  # one try may fall in the silence; more tries go on
            assert a.tries > 1 and b.tries == 1
            silent += np.abs(b.audio).max() == 0.0
    assert silent >= 3  # 1 in 3 draws overlaps the loud region


def test_silence_settles_for_the_last_try(corpus):
    item = SalientExcerpts(config([[corpus["silence"]]], num_tries=5)).excerpt(0)
    assert item.tries == 5 and item.loudness == -70.0
    assert not item.audio.any()


@pytest.mark.parametrize("kind", ["wav16", "flac", "stereo", "44k", "short"])
def test_excerpts_equal_audiotools_loading_of_the_same_file_and_offset(corpus, kind):
    AudioSignal = require_reference("audiotools").AudioSignal
    duration = 0.1
    items = SalientExcerpts(config([[corpus[kind]]], duration=duration))
    for i in range(3):
        item = items.excerpt(i)
        signal = AudioSignal(item.source, offset=item.offset, duration=duration)
        assert item.loudness == pytest.approx(signal.loudness().item(), abs=1e-3)
        signal = signal.to_mono().resample(SR)
        if signal.duration < duration:
            signal = signal.zero_pad_to(int(duration * SR))
        reference = signal.audio_data[0].numpy()
        assert reference.shape == item.audio.shape == (1, 1600)
        np.testing.assert_allclose(item.audio, reference, rtol=0, atol=1e-6)
    if kind == "stereo":  # to_mono: the mean of the channels, after the same partial read
        data, _ = sf.read(item.source, dtype="float32")
        start = int(item.offset * SR)
        np.testing.assert_array_equal(item.audio[0], data[start:start + 1600].mean(axis=1, dtype=np.float32))
    if kind == "44k":
        assert item.source_rate == 44100
    if kind == "short":  # 0.05 s of audio, zero-padded to 0.1 s
        assert item.offset == 0.0
        assert not item.audio[0, 800:].any() and np.abs(item.audio[0, :800]).max() > 0


@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 44100), (16000, 24000)])
def test_numpy_resampler_equals_julius(rates):
    julius = require_reference("julius")
    torch = require_reference("torch")
    x = np.random.default_rng(0).standard_normal((2, 3001)).astype(np.float32)
    ours = resample_numpy(x, *rates)
    theirs = julius.resample_frac(torch.from_numpy(x), *rates).numpy()
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-6)


def test_a_file_that_fails_while_reading_is_skipped_and_redrawn(corpus, caplog):
    items = SalientExcerpts(config([[corpus["nan"]]]))
    assert items.stats.skipped_files == 0  # its header is fine
    with caplog.at_level(logging.WARNING, logger="dac_jax.train.sources"):
        drawn = [items.excerpt(i) for i in range(4)]  # the first pass reads both files
    assert {item.source for item in drawn} == {f"{corpus['nan']}/good.wav"}
    assert all(np.isfinite(item.audio).all() for item in drawn)
    [(path, reason)] = items.stats.skipped
    assert path == f"{corpus['nan']}/nan.wav" and reason.startswith("non-finite samples")
    assert "nan.wav" in caplog.text
    np.testing.assert_array_equal(SalientExcerpts(config([[corpus["nan"]]])).excerpt(1).audio, drawn[1].audio)


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_hosts_share_every_global_batch_in_host_order(hosts):
    global_batch, local = 6, local_batch_size(6, hosts)
    for first in (0, 5):
        indices = [[global_index(n, first, global_batch, local, h) for n in range(2 * local)] for h in range(hosts)]
        for k in range(2):  # batch k: the hosts' local batches, concatenated, are the global one
            got = [i for h in range(hosts) for i in indices[h][k * local:(k + 1) * local]]
            assert got == list(range((first + k) * global_batch, (first + k + 1) * global_batch))
    with pytest.raises(UsageError, match="does not split evenly"):
        local_batch_size(6, 4)


def test_config_is_checked_and_normalised(corpus):
    cfg = DataConfig(groups=[[corpus["low"]]], sample_rate=SR, duration=0.38, batch_size=8)
    assert cfg.groups == ((corpus["low"],),) and cfg.num_samples == int(0.38 * SR)
    hash(cfg)
    with pytest.raises(UsageError, match="group 0 must be a sequence"):
        DataConfig(groups=[corpus["low"]], sample_rate=SR, duration=0.1, batch_size=1)
    with pytest.raises(UsageError, match="duration"):
        DataConfig(groups=[[corpus["low"]]], sample_rate=SR, duration=0.0, batch_size=1)
    with pytest.raises(UsageError, match="batch_size"):
        DataConfig(groups=[[corpus["low"]]], sample_rate=SR, duration=0.1, batch_size=0)
    with pytest.raises(UsageError, match="expected a DataConfig"):
        SalientExcerpts({"groups": [[corpus["low"]]]})
