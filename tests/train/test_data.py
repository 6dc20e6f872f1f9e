"""dac_jax.train.data: the tf.data training input pipeline, on real files written with soundfile.

What is checked against what: a (file, offset) excerpt equals audiotools' loading of it
(``AudioSignal(path, offset, duration).to_mono().resample(sr).zero_pad_to(T)``, the steps of
``AudioLoader.__call__``) and its loudness equals ``AudioSignal.loudness()``; the numpy resampler
equals julius; the stream's structure (round-robin groups, determinism, resume, host shards,
salient excerpts, validation list) is checked on files whose content says where an item came from.
Signals are short (0.1-0.25 s excerpts at 16 kHz) and everything is seeded.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from dac_jax.audio import synth
from dac_jax.errors import DataError, UsageError
from tests.audio import require_reference

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")
from dac_jax.train import data as D  # noqa: E402  (imports tensorflow)

SR = 16000
GROUP_FREQS = (440.0, 1000.0, 2500.0)  # the round-robin groups' tones: multiples of 10 Hz


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Folders of real files: name -> folder path."""
    root = tmp_path_factory.mktemp("corpus")
    dirs = {}

    def folder(name):
        dirs[name] = root / name
        dirs[name].mkdir(parents=True)
        return dirs[name]

    # three groups of tones, told apart by frequency; files within a group by amplitude
    low = folder("low")
    for k, amp in enumerate((0.2, 0.4, 0.6)):
        sf.write(low / f"{k}.wav", tone(440, 1.0, amp=amp), SR, "PCM_16")
    mid = folder("mid")
    sf.write(mid / "a.wav", tone(1000, 1.0), SR, "PCM_16")
    high = folder("high")
    (high / "sub" / "deeper").mkdir(parents=True)  # walked recursively
    sf.write(high / "sub" / "x.flac", tone(2500, 1.0, amp=0.3), SR)
    sf.write(high / "sub" / "deeper" / "y.FLAC", tone(2500, 1.0, amp=0.5), SR)

    # one file per kind, for the comparison with audiotools
    speech = synth.speech_like(1.0, SR, seed=1)
    sf.write(folder("wav16") / "a.wav", speech, SR, "PCM_16")
    sf.write(folder("flac") / "a.flac", synth.speech_like(1.0, SR, seed=2), SR)
    stereo = np.stack([speech, synth.noise(1.0, SR, seed=3, level=0.2)], axis=1)
    sf.write(folder("stereo") / "a.wav", stereo, SR, "FLOAT")
    sf.write(folder("44k") / "a.wav", synth.sine_sweep(1.0, 44100, f0=100.0, f1=7000.0), 44100, "PCM_16")
    sf.write(folder("short") / "a.wav", synth.speech_like(0.05, SR, seed=4), SR, "PCM_16")

    # 2 s of silence with one loud region, [0.8, 1.2) s
    island = np.zeros(2 * SR, np.float32)
    island[int(0.8 * SR):int(1.2 * SR)] = tone(1000, 0.4)
    sf.write(folder("island") / "a.wav", island, SR, "PCM_16")

    sf.write(folder("silence") / "z.wav", np.zeros(SR, np.float32), SR, "PCM_16")

    bad = folder("bad")
    sf.write(bad / "good.wav", tone(440, 1.0), SR, "PCM_16")
    noise_bytes = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (bad / "corrupt.wav").write_bytes(noise_bytes)
    (bad / "empty.flac").write_bytes(b"")
    (bad / "notes.txt").write_text("not audio, and not listed: wrong suffix")

    allbad = folder("allbad")
    (allbad / "corrupt.wav").write_bytes(b"RIFF" + bytes(100))
    (allbad / "empty.wav").write_bytes(b"")

    (folder("emptydir") / "readme.txt").write_text("no audio here")

    nan = folder("nan")  # a header that reads fine, samples that do not
    sf.write(nan / "good.wav", tone(440, 1.0), SR, "PCM_16")
    sf.write(nan / "nan.wav", np.full(SR, np.nan, np.float32), SR, "FLOAT")
    return {k: str(v) for k, v in dirs.items()}


def config(groups, **kw) -> D.DataConfig:
    kw.setdefault("sample_rate", SR)
    kw.setdefault("duration", 0.1)
    kw.setdefault("batch_size", 4)
    return D.DataConfig(groups=tuple(tuple(g) for g in groups), **kw)


def take(ds, n: int) -> list[np.ndarray]:
    it = ds.as_numpy_iterator()
    out = [next(it)["audio"] for _ in range(n)]
    del it  # release the workers now rather than at garbage collection
    return out


def dominant_hz(x: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x.reshape(-1)))
    return float(np.argmax(spectrum) * sr / x.size)


# -- the stream ------------------------------------------------------------------------------------


def test_batches_are_float32_b1t_and_equal_the_pure_items(corpus):
    pipe = D.AudioPipeline(config([[corpus["low"]], [corpus["high"]]]))
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
    first = take(D.AudioPipeline(config(groups, seed=0)).train_dataset(process_index=0, process_count=1), 3)
    again = take(D.AudioPipeline(config(groups, seed=0)).train_dataset(process_index=0, process_count=1), 3)
    other = take(D.AudioPipeline(config(groups, seed=1)).train_dataset(process_index=0, process_count=1), 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, c) for a, c in zip(first, other))


def test_start_step_resumes_exactly_where_the_stream_was(corpus):
    pipe = D.AudioPipeline(config([[corpus["low"]], [corpus["mid"], corpus["high"]]], batch_size=3))
    full = take(pipe.train_dataset(process_index=0, process_count=1), 5)
    resumed = take(pipe.train_dataset(start_step=3, process_index=0, process_count=1), 2)
    np.testing.assert_array_equal(resumed[0], full[3])
    np.testing.assert_array_equal(resumed[1], full[4])


def test_hosts_local_batches_concatenate_to_the_one_host_batch(corpus):
    pipe = D.AudioPipeline(config([[corpus["low"]], [corpus["mid"]], [corpus["high"]]], batch_size=6))
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


def test_groups_are_drawn_round_robin_and_files_once_per_pass(corpus):
    pipe = D.AudioPipeline(config([[corpus["low"]], [corpus["mid"]], [corpus["high"]]]))
    assert pipe.stats.group_sizes == (3, 1, 2)
    items = [pipe.excerpt(i) for i in range(18)]
    for i, item in enumerate(items):
        assert item.group == i % 3
        assert dominant_hz(item.audio) == GROUP_FREQS[i % 3], (i, item.source)
    # without replacement: each pass through a group's pool reads each of its files once
    low = [item.source for item in items[0::3]]  # the low group's items 0..5: two passes of 3 files
    assert sorted(low[:3]) == sorted(low[3:]) == sorted(set(low))
    assert low[:3] != low[3:]  # each pass in its own order (seed 0)
    # with replacement: a file drawn per item (so files repeat within 3 draws), still a function of
    # (seed, i): a second pipeline draws the same files
    cfg = config([[corpus["low"]]], without_replacement=False)
    first, second = D.AudioPipeline(cfg), D.AudioPipeline(cfg)
    drawn = [first.excerpt(i).source for i in range(12)]
    assert drawn == [second.excerpt(i).source for i in range(12)]
    assert any(len(set(drawn[k:k + 3])) < 3 for k in range(0, 12, 3))


def test_salient_excerpts_land_in_the_loud_region_given_enough_tries(corpus):
    groups = [[corpus["island"]]]
    many = D.AudioPipeline(config(groups, duration=0.2, num_tries=16))
    once = D.AudioPipeline(config(groups, duration=0.2, num_tries=1))
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
    pipe = D.AudioPipeline(config([[corpus["silence"]]], num_tries=5))
    item = pipe.excerpt(0)
    assert item.tries == 5 and item.loudness == -70.0
    assert not item.audio.any()


@pytest.mark.parametrize("kind", ["wav16", "flac", "stereo", "44k", "short"])
def test_excerpts_equal_audiotools_loading_of_the_same_file_and_offset(corpus, kind):
    AudioSignal = require_reference("audiotools").AudioSignal
    duration = 0.1
    pipe = D.AudioPipeline(config([[corpus[kind]]], duration=duration))
    for i in range(3):
        item = pipe.excerpt(i)
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
    ours = D.resample_numpy(x, *rates)
    theirs = julius.resample_frac(torch.from_numpy(x), *rates).numpy()
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-6)


# -- tensorflow-datasets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,key,scale", [("tfds:librispeech", "speech", 1 / 32768), ("tfds:nsynth:train", "audio", 1.0)]
)
def test_tfds_source_mixed_with_a_folder_group(corpus, spec, key, scale):
    with tfds.testing.mock_data(num_examples=5, max_value=20000):
        pipe = D.AudioPipeline(config([[corpus["low"]], [spec]], batch_size=4))
        name = spec.split(":")[1]
        examples = tfds.data_source(name, split="train", download=False)
        batch = take(pipe.train_dataset(process_index=0, process_count=1), 1)[0]
        assert pipe.stats.group_sizes == (3, 5)
        for i in range(4):
            item = pipe.excerpt(i)
            np.testing.assert_array_equal(batch[i], item.audio)
            if i % 2 == 0:
                assert item.source.startswith(corpus["low"]) and dominant_hz(item.audio) == 440.0
                continue
            assert item.source.startswith(f"tfds:{name}:train[") and item.source_rate == 16000
            audio = np.asarray(examples[int(item.source.split("[")[1][:-1])][key], np.float64) * scale
            start = int(item.offset * 16000)
            want = audio[start:start + 1600]  # mock librispeech holds 5-49 samples: zero-padded
            np.testing.assert_allclose(item.audio[0, :want.size], want, rtol=0, atol=1e-7)
            assert not item.audio[0, want.size:].any()


def test_tfds_errors_name_the_dataset(corpus, tmp_path):
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(DataError, match="no tensorflow-datasets dataset named 'no_such_dataset_xyz'"):
            D.AudioPipeline(config([["tfds:no_such_dataset_xyz"]]))
        with pytest.raises(DataError, match="tfds:mnist: expected one audio feature"):
            D.AudioPipeline(config([["tfds:mnist"]]))
    # not mocked: a real dataset that was never prepared here (nothing is downloaded)
    unprepared = r"tfds:speech_commands: cannot read split 'train' by index \(not prepared"
    with pytest.raises(DataError, match=unprepared):
        D.AudioPipeline(config([["tfds:speech_commands"]], tfds_data_dir=str(tmp_path)))
    assert D.parse_tfds_spec("tfds:nsynth/full:2.3.3:valid[:10%]") == ("nsynth/full:2.3.3", "valid[:10%]")
    assert D.parse_tfds_spec("tfds:librispeech") == ("librispeech", None)


# -- validation ------------------------------------------------------------------------------------


def test_validation_is_a_fixed_list(corpus):
    cfg = config([[corpus["wav16"]], [corpus["flac"]]], duration=0.25, batch_size=4)
    pipe = D.AudioPipeline(cfg)
    first = take(pipe.validation_dataset(6, process_index=0, process_count=1), 2)
    again = take(D.AudioPipeline(cfg).validation_dataset(6, process_index=0, process_count=1), 2)
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


# -- errors ----------------------------------------------------------------------------------------


def test_unreadable_files_are_skipped_warned_and_counted(corpus, caplog):
    with caplog.at_level(logging.WARNING, logger="dac_jax.train.data"):
        pipe = D.AudioPipeline(config([[corpus["bad"]]]))
    stats = pipe.stats
    assert stats.group_sizes == (1,) and stats.skipped_files == 2
    skipped = dict(stats.skipped)
    assert set(skipped) == {f"{corpus['bad']}/corrupt.wav", f"{corpus['bad']}/empty.flac"}
    for path in skipped:
        assert path in caplog.text
    assert {pipe.excerpt(i).source for i in range(4)} == {f"{corpus['bad']}/good.wav"}


def test_a_file_that_fails_while_reading_is_skipped_and_redrawn(corpus, caplog):
    pipe = D.AudioPipeline(config([[corpus["nan"]]]))
    assert pipe.stats.skipped_files == 0  # its header is fine
    with caplog.at_level(logging.WARNING, logger="dac_jax.train.data"):
        items = [pipe.excerpt(i) for i in range(4)]  # the first pass reads both files
    assert {item.source for item in items} == {f"{corpus['nan']}/good.wav"}
    assert all(np.isfinite(item.audio).all() for item in items)
    [(path, reason)] = pipe.stats.skipped
    assert path == f"{corpus['nan']}/nan.wav" and reason.startswith("non-finite samples")
    assert "nan.wav" in caplog.text
    np.testing.assert_array_equal(D.AudioPipeline(config([[corpus["nan"]]])).excerpt(1).audio, items[1].audio)


def test_unusable_sources_raise_data_error_naming_them(corpus, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"{missing}: no such folder"):
        D.AudioPipeline(config([[corpus["low"]], [missing]]))
    with pytest.raises(DataError, match=f"{corpus['emptydir']}: no audio files"):
        D.AudioPipeline(config([[corpus["emptydir"]]]))
    with pytest.raises(DataError, match=rf"group 1 \({corpus['allbad']}\): no usable audio"):
        D.AudioPipeline(config([[corpus["low"]], [corpus["allbad"]]]))
    with pytest.raises(DataError, match="not a folder"):
        D.AudioPipeline(config([[f"{corpus['low']}/0.wav"]]))
    with pytest.raises(DataError, match="group 0"):
        D.AudioPipeline(config([[]]))
    assert issubclass(DataError, ValueError)


def test_config_is_checked_and_normalised(corpus):
    cfg = D.DataConfig(groups=[[corpus["low"]]], sample_rate=SR, duration=0.38, batch_size=8)
    assert cfg.groups == ((corpus["low"],),) and cfg.num_samples == int(0.38 * SR)
    hash(cfg)
    with pytest.raises(UsageError, match="group 0 must be a sequence"):
        D.DataConfig(groups=[corpus["low"]], sample_rate=SR, duration=0.1, batch_size=1)
    with pytest.raises(UsageError, match="duration"):
        D.DataConfig(groups=[[corpus["low"]]], sample_rate=SR, duration=0.0, batch_size=1)
    with pytest.raises(UsageError, match="batch_size"):
        D.DataConfig(groups=[[corpus["low"]]], sample_rate=SR, duration=0.1, batch_size=0)


# -- process hygiene -------------------------------------------------------------------------------


@pytest.mark.slow  # a fresh interpreter importing jax and tensorflow: ~10 s
def test_dac_jax_does_not_import_tensorflow_and_exit_does_not_hang(corpus):
    """``import dac_jax`` / ``dac_jax.train`` leave tensorflow alone; and a process that ends with a
    live iterator (its Python workers mid-call) exits instead of hanging in TF's destructor.
    Without ``data._release_iterators_at_exit`` this script hangs (3 runs of 3 on this machine)."""
    script = f"""
import sys
import dac_jax, dac_jax.train
assert "tensorflow" not in sys.modules, "import dac_jax imported tensorflow"
from dac_jax.train import data as D
# silence: every item makes all its 50 tries, so workers are mid-call when the script ends
cfg = D.DataConfig(groups=(({corpus['silence']!r},),), sample_rate=16000, duration=0.1, batch_size=2,
                   num_tries=50)
it = D.AudioPipeline(cfg).train_dataset(process_index=0, process_count=1).as_numpy_iterator()
next(it)
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
