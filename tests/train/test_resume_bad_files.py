"""Resume is exact with bad files in the corpus: a pipeline restarted at step ``s`` yields, item by
item, what the uninterrupted one yields from ``s``, over several passes through a group that holds
a file of NaN samples, a file NaN in its second half only, and a FLAC whose middle does not decode
(all three with headers that read fine, so only reading finds them out).

Badness is a property of the file (:mod:`dac_jax.train.sources`), decided before any of an item's
random draws, so an item does not depend on whether this process found a file bad before.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from dac_jax.errors import DataError
from dac_jax.train.pipeline import AudioPipeline
from dac_jax.train.sources import FolderFiles, Group, SkipLog, require_good_files
from tests.train.audio_corpus import SR, config, take, tone

STEPS = 16  # x 4 items, half of them from the 7-file flaky group: ~4.5 passes through it
RESTARTS = (1, 4, 7, 10, 13)
BAD = ("broken.flac", "halfnan.wav", "nan.wav")


def _broken_flac(path, seconds: float = 2.0) -> None:
    """A FLAC whose header reads fine and whose first ~0.5 s decode, then garbage."""
    sf.write(path, tone(700, seconds, amp=0.4), SR)
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def flaky(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("flaky")
    for k, amp in enumerate((0.1, 0.2, 0.3, 0.4)):
        sf.write(folder / f"good{k}.wav", tone(440, 1.0, amp=amp), SR, "PCM_16")
    half = tone(440, 2.0, amp=0.7)
    half[SR:] = np.nan  # offsets in [0, 1.9] s: about half the excerpts read fine
    sf.write(folder / "halfnan.wav", half, SR, "FLOAT")
    sf.write(folder / "nan.wav", np.full(SR, np.nan, np.float32), SR, "FLOAT")
    _broken_flac(folder / "broken.flac")
    return str(folder)


def _items(pipe: AudioPipeline, start_step: int, steps: int) -> list[np.ndarray]:
    batches = take(pipe.train_dataset(start_step=start_step, process_index=0, process_count=1), steps)
    return [item for batch in batches for item in batch]


def _differing(want: list[np.ndarray], got: list[np.ndarray], first: int) -> list[int]:
    assert len(got) == len(want) - first
    return [first + n for n, (a, b) in enumerate(zip(want[first:], got)) if not np.array_equal(a, b)]


@pytest.mark.parametrize("without_replacement", [True, False])
def test_a_restarted_pipeline_yields_what_the_continuous_one_yields(corpus, flaky, without_replacement):
    cfg = config([[flaky], [corpus["low"]]], batch_size=4, without_replacement=without_replacement)
    continuous = AudioPipeline(cfg)
    want = _items(continuous, 0, STEPS)
    # the stream really met the bad files, and none of them is the source of an item
    assert {p.rsplit("/", 1)[1] for p, _ in continuous.stats.skipped} == set(BAD)
    sources = {continuous.excerpt(i).source.rsplit("/", 1)[1] for i in range(0, 4 * STEPS, 2)}
    assert sources == {f"good{k}.wav" for k in range(4)}
    assert all(np.isfinite(x).all() for x in want)

    differing = {}
    for s in RESTARTS:  # a fresh process: it knows no bad file yet
        differing[s] = _differing(want, _items(AudioPipeline(cfg), s, STEPS - s), 4 * s)
    # a process that already knows every bad file, found in another order (the stream backwards)
    knowing = AudioPipeline(cfg)
    backwards = [knowing.excerpt(i).audio for i in reversed(range(4 * STEPS))][::-1]
    differing["backwards"] = _differing(want, backwards, 0)
    for s in RESTARTS:
        differing[f"{s}, knowing"] = _differing(want, _items(knowing, s, STEPS - s), 4 * s)
    assert not any(differing.values()), {k: v for k, v in differing.items() if v}


def test_non_finite_samples_make_a_file_bad_before_any_draw(flaky):
    """A file NaN in part is never a source, even for excerpts that would miss its NaN half."""
    pipe = AudioPipeline(config([[flaky]], batch_size=4))
    drawn = [pipe.excerpt(i) for i in range(28)]  # 4 passes
    assert {d.source.rsplit("/", 1)[1] for d in drawn} == {f"good{k}.wav" for k in range(4)}
    skipped = {p.rsplit("/", 1)[1]: r for p, r in pipe.stats.skipped}
    assert set(skipped) == set(BAD)
    assert skipped["halfnan.wav"].startswith("non-finite samples")
    assert skipped["nan.wav"].startswith("non-finite samples")
    assert "broken.flac" in skipped and not skipped["broken.flac"].startswith("non-finite")


def test_too_few_good_files_is_a_one_line_error_before_training(corpus, tmp_path):
    """A folder whose files are all unreadable but one, which holds NaN samples, has no good file:
    an error naming it when the pipeline is built (the trainer builds it before anything else)."""
    folder = tmp_path / "one_nan"
    folder.mkdir()
    (folder / "corrupt.wav").write_bytes(b"RIFF" + bytes(100))
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "nan.wav", np.full(SR, np.nan, np.float32), SR, "FLOAT")
    want = rf"^group 0 \({folder}\): no usable audio in {folder}: every file or example in it is unreadable"
    with pytest.raises(DataError, match=want) as e:
        AudioPipeline(config([[str(folder)]]))
    assert "\n" not in str(e.value) and "see the warnings" in str(e.value)
    # beside a good folder in its group, and for a folder whose headers all fail: still an error
    with pytest.raises(DataError, match=rf"group 1 \({corpus['low']}, {folder}\): no usable audio in {folder}:"):
        AudioPipeline(config([[corpus["mid"]], [corpus["low"], str(folder)]]))
    with pytest.raises(DataError, match=rf"no usable audio in {corpus['allbad']}:"):
        AudioPipeline(config([[corpus["low"], corpus["allbad"]]]))
    # the function on its own, on a pool of that one file
    skipped = SkipLog()
    nan_only = Group(0, "group 0 (x)", [FolderFiles(str(folder), [str(folder / "nan.wav")])], np.array([0, 1]))
    with pytest.raises(DataError, match=f"group 0 \\(x\\): no usable audio in {folder}:"):
        require_good_files(nan_only, skipped=skipped)
    assert [p for p, _ in skipped.items()] == [str(folder / "nan.wav")]
    # one good file is enough, and it is the only one read up front (bad ones later are skipped)
    pipe = AudioPipeline(config([[corpus["nan"]]]))
    assert pipe.stats.group_sizes == (2,) and pipe.stats.skipped_files == 0


def test_the_trainer_stops_on_it_before_its_run_folder_exists(tmp_path):
    from dac_jax.train.config import TrainConfig
    from dac_jax.train.loop import train_and_evaluate
    from tests.train import tiny

    folder = tmp_path / "nan"
    folder.mkdir()
    sf.write(folder / "nan.wav", np.full(SR, np.nan, np.float32), SR, "FLOAT")
    config = TrainConfig(step=tiny.STEP, train_groups=((str(folder),),), batch_size=2, duration=0.1,
                         val_batch_size=2, num_steps=1)
    with pytest.raises(DataError, match=f"no usable audio in {folder}:"):
        train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
