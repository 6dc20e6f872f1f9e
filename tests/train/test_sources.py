"""dac_jax.train.sources: folders scanned up front (bad files skipped, warned and counted, unusable
sources an error naming them) and tensorflow-datasets read by index, mixed with folders.

tensorflow-datasets is part of the training extra, not of the reference: it is imported plainly,
so a missing one is an error here, not a skip.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dac_jax.errors import DataError
from dac_jax.train.excerpts import SalientExcerpts
from dac_jax.train.pipeline import AudioPipeline
from dac_jax.train.sources import TfdsExamples, Unreadable, parse_tfds_spec
from tests.train.audio_corpus import config, dominant_hz, take


def test_unreadable_files_are_skipped_warned_and_counted(corpus, caplog):
    with caplog.at_level(logging.WARNING, logger="dac_jax.train.sources"):
        items = SalientExcerpts(config([[corpus["bad"]]]))
    stats = items.stats
    assert stats.group_sizes == (1,) and stats.skipped_files == 2
    skipped = dict(stats.skipped)
    assert set(skipped) == {f"{corpus['bad']}/corrupt.wav", f"{corpus['bad']}/empty.flac"}
    for path in skipped:
        assert path in caplog.text
    assert {items.excerpt(i).source for i in range(4)} == {f"{corpus['bad']}/good.wav"}


def test_unusable_sources_raise_data_error_naming_them(corpus, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"{missing}: no such folder"):
        SalientExcerpts(config([[corpus["low"]], [missing]]))
    with pytest.raises(DataError, match=f"{corpus['emptydir']}: no audio files"):
        SalientExcerpts(config([[corpus["emptydir"]]]))
    with pytest.raises(DataError, match=rf"group 1 \({corpus['allbad']}\): no usable audio"):
        SalientExcerpts(config([[corpus["low"]], [corpus["allbad"]]]))
    with pytest.raises(DataError, match="not a folder"):
        SalientExcerpts(config([[f"{corpus['low']}/0.wav"]]))
    with pytest.raises(DataError, match="group 0"):
        SalientExcerpts(config([[]]))
    assert issubclass(DataError, ValueError)


@pytest.mark.parametrize(
    "spec,key,scale", [("tfds:librispeech", "speech", 1 / 32768), ("tfds:nsynth:train", "audio", 1.0)]
)
def test_tfds_source_mixed_with_a_folder_group(corpus, spec, key, scale):
    with tfds.testing.mock_data(num_examples=5, max_value=20000):
        pipe = AudioPipeline(config([[corpus["low"]], [spec]], batch_size=4))
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
            SalientExcerpts(config([["tfds:no_such_dataset_xyz"]]))
        with pytest.raises(DataError, match="tfds:mnist: expected one audio feature"):
            SalientExcerpts(config([["tfds:mnist"]]))
    # not mocked: a real dataset that was never prepared here (nothing is downloaded)
    unprepared = r"tfds:speech_commands: cannot read split 'train' by index \(not prepared"
    with pytest.raises(DataError, match=unprepared):
        SalientExcerpts(config([["tfds:speech_commands"]], tfds_data_dir=str(tmp_path)))
    assert parse_tfds_spec("tfds:nsynth/full:2.3.3:valid[:10%]") == ("nsynth/full:2.3.3", "valid[:10%]")
    assert parse_tfds_spec("tfds:librispeech") == ("librispeech", None)


def test_a_tfds_example_with_non_finite_samples_is_bad_when_opened():
    audio = np.zeros((40, 2), np.float32)  # TFDS stores [length, channels]
    audio[25, 1] = np.inf
    examples = TfdsExamples("tfds:fake:train", [{"audio": audio}, {"audio": np.ones(8, np.float32)}],
                            ("audio",), 10, None, 2)
    with pytest.raises(Unreadable, match=r"^non-finite samples near 2\.500 s$"):
        examples.open(0)
    assert examples.verdict(0) == "non-finite samples near 2.500 s" and examples.verdict(1) is None
    np.testing.assert_array_equal(examples.open(1).read(0, 8), np.ones((1, 8), np.float32))
