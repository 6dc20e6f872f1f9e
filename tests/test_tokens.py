"""The tokenized-corpus format (dac_jax.tokens): records, shards and sidecars, the manifest, and the
Grain and tf.data readers, on real ArrayRecord files."""

from __future__ import annotations

import io
import json
import os
import pickle
import sys

import numpy as np
import pytest

from dac_jax import tokens
from dac_jax.errors import FileFormatError, MissingDependencyError, UsageError
from dac_jax.fileio import is_temp

FRAME_RATE = 44100 / 512


def dac_fields(i: int, frames: int | None = None, n_codebooks: int = 4) -> dict:
    """Record ``i`` of a DAC corpus: distinct codes, source and scalars per ``i``."""
    frames = 3 + i % 5 if frames is None else frames
    rng = np.random.default_rng(i)
    return {
        "codes": rng.integers(0, 1024, (n_codebooks, frames)).astype(np.uint16),
        "source": f"speaker {i % 3}/take_{i}.wav",
        "channel": i % 2,
        "sample_rate": 44100 if i % 2 else 48000,
        "length": 1000 + i,
        "input_db": -20.0 - i / 4,
        "frame_rate": FRAME_RATE,
        "model": "dac_44khz",
    }


def vae_fields(i: int, dtype=np.float32, logs: bool = True) -> dict:
    fields = dac_fields(i)
    del fields["codes"]
    rng = np.random.default_rng(100 + i)
    fields["mu"] = rng.standard_normal((8, 2 + i % 4)).astype(dtype)
    if logs:
        fields["logs"] = rng.standard_normal((8, 2 + i % 4)).astype(dtype)
    fields["model"] = "vae_test"
    return fields


HEADERS = {
    "dac": {"kind": "dac", "model": "dac_44khz", "config": {"n_codebooks": 4}, "dtype": "uint16",
            "frame_rate": FRAME_RATE},
    "vae": {"kind": "vae", "model": "vae_test", "config": {"latent_dim": 8}, "dtype": "float32",
            "frame_rate": FRAME_RATE},
}


def make_corpus(folder, sizes=(3, 0, 4, 2), kind="dac", **extra) -> list[dict]:
    """A corpus of shards holding ``sizes`` records (process 0 then 1), its manifest written; the
    records' fields in global order."""
    fields, i = [], 0
    for k, size in enumerate(sizes):
        shard = [dac_fields(j) if kind == "dac" else vae_fields(j) for j in range(i, i + size)]
        i += size
        tokens.write_shard(folder, tokens.shard_name(k // 2, k % 2), map(tokens.encode_record, shard),
                           {"files": size, "seconds": 1.5 * size})
        fields += shard
    tokens.write_manifest(folder, tokens.build_manifest(folder, {**HEADERS[kind], **extra}))
    return fields


def assert_same_record(decoded: dict, fields: dict) -> None:
    assert set(decoded) == set(fields)
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            assert decoded[name].dtype == value.dtype and decoded[name].shape == value.shape
            np.testing.assert_array_equal(decoded[name], value)
        else:
            assert decoded[name] == pytest.approx(value) if isinstance(value, float) else decoded[name] == value
            assert type(decoded[name]) is type(value), name


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


# -- records -------------------------------------------------------------------------------------------


def test_dac_record_round_trip():
    fields = dac_fields(7)
    decoded = tokens.decode_record(tokens.encode_record(fields))
    assert_same_record(decoded, fields)
    assert decoded["input_db"] == np.float32(fields["input_db"])  # stored as float32
    assert decoded["frame_rate"] == FRAME_RATE  # float64: exact


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("logs", [True, False])
def test_vae_record_round_trip(dtype, logs):
    fields = vae_fields(3, dtype, logs)
    decoded = tokens.decode_record(tokens.encode_record(fields))
    assert_same_record(decoded, fields)
    assert decoded["mu"].dtype == dtype and ("logs" in decoded) == logs


def test_record_reads_with_numpy_and_array_record_alone(tmp_path):
    from array_record.python.array_record_module import ArrayRecordReader

    fields = [dac_fields(0), dac_fields(1, frames=11)]
    path = tokens.write_shard(tmp_path, tokens.shard_name(0, 0), map(tokens.encode_record, fields), {})

    # the reading path: array_record and numpy only
    reader = ArrayRecordReader(str(path))
    assert reader.num_records() == 2
    records = reader.read([0, 1])
    reader.close()
    for record, want in zip(records, fields):
        with np.load(io.BytesIO(record), allow_pickle=False) as npz:
            got = {name: npz[name] for name in npz.files}
        assert set(got) == set(want)
        assert got["codes"].dtype == np.uint16 and got["codes"].shape == want["codes"].shape
        np.testing.assert_array_equal(got["codes"], want["codes"])
        assert got["source"].ndim == 0 and got["source"].dtype.kind == "U"
        assert str(got["source"]) == want["source"] and str(got["model"]) == want["model"]
        for name, dtype in [("channel", np.int32), ("sample_rate", np.int32), ("length", np.int64),
                            ("input_db", np.float32), ("frame_rate", np.float64)]:
            assert got[name].dtype == dtype and got[name].ndim == 0
            assert got[name] == np.asarray(want[name], dtype)


@pytest.mark.parametrize("change, message", [
    ({"codes": np.zeros((4, 3), np.int32)}, "uint16"),
    ({"codes": np.zeros(3, np.uint16)}, "2-D"),
    ({"codes": [[1, 2]]}, "numpy array"),
    ({"mu": np.zeros((8, 3), np.float32)}, "exactly one"),
    ({"codes": None, "mu": np.zeros((8, 3), np.float64)}, "float32 or float16"),
    ({"codes": None, "mu": np.zeros((8, 3), np.float32), "logs": np.zeros((8, 2), np.float32)}, "match"),
    ({"codes": None, "mu": np.zeros((8, 3), np.float32), "logs": np.zeros((8, 3), np.float16)}, "match"),
    ({"logs": np.zeros((4, 3), np.float32)}, "'logs' comes with 'mu'"),
    ({"codes": None}, "exactly one"),
    ({"sample_rate": None}, "lacks"),
    ({"extra": 1}, "unknown record field"),
    ({"channel": 1.0}, "integer"),
    ({"channel": True}, "bool"),
    ({"sample_rate": 0}, "sample_rate"),
    ({"length": -1}, "length"),
    ({"frame_rate": 0.0}, "frame_rate"),
    ({"input_db": float("nan")}, "NaN"),
    ({"input_db": "loud"}, "number"),
    ({"source": "/abs/path.wav"}, "relative"),
    ({"source": 3}, "str"),
    ({"model": ""}, "empty"),
])
def test_encode_record_refuses_bad_input(change, message):
    fields = dac_fields(0)
    for name, value in change.items():
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    with pytest.raises(ValueError) as e:
        tokens.encode_record(fields)
    assert isinstance(e.value, UsageError)
    assert message in one_line(e)


def test_encode_record_takes_numpy_scalars_and_silence():
    fields = {**dac_fields(0), "channel": np.int64(1), "input_db": -np.inf, "sample_rate": np.array(16000)}
    decoded = tokens.decode_record(tokens.encode_record(fields))
    assert decoded["channel"] == 1 and decoded["sample_rate"] == 16000 and decoded["input_db"] == -np.inf


def test_decode_record_refuses_what_is_not_a_record():
    buffer = io.BytesIO()
    np.savez(buffer, codes=np.zeros((2, 2), np.uint16))  # fields missing
    pickled = io.BytesIO()
    np.savez(pickled, codes=np.array([{"a": 1}], dtype=object))  # would need pickle to load
    single = io.BytesIO()
    np.save(single, np.zeros(3))
    wrong_dtype = io.BytesIO()
    np.savez(wrong_dtype, **{**tokens.decode_record(tokens.encode_record(dac_fields(0))), "channel": np.int64(0)})
    for data in [b"not a record", buffer.getvalue(), pickled.getvalue(), single.getvalue(), wrong_dtype.getvalue()]:
        with pytest.raises(FileFormatError) as e:
            tokens.decode_record(data)
        one_line(e)


# -- shards -------------------------------------------------------------------------------------------


def test_shard_name():
    assert tokens.shard_name(0, 0) == "shard-00000-00000.array_record"
    assert tokens.shard_name(12, 345) == "shard-00012-00345.array_record"
    for bad in [(-1, 0), (0, 100_000)]:
        with pytest.raises(UsageError):
            tokens.shard_name(*bad)


def test_write_shard_writes_shard_then_sidecar(tmp_path):
    name = tokens.shard_name(0, 3)
    path = tokens.write_shard(tmp_path / "new", name, (tokens.encode_record(dac_fields(i)) for i in range(5)),
                              {"files": 2, "failures": []})
    assert path == tmp_path / "new" / name and path.is_file()
    assert json.loads((tmp_path / "new" / (name + ".json")).read_text()) == {"files": 2, "failures": [], "records": 5}
    # rewritten in place (a resumed run redoing the shard)
    tokens.write_shard(tmp_path / "new", name, [tokens.encode_record(dac_fields(9))], {"files": 1})
    assert tokens.finished_shards(tmp_path / "new") == {name: {"files": 1, "records": 1}}
    assert sorted(os.listdir(tmp_path / "new")) == [name, name + ".json"]


@pytest.mark.parametrize("name, summary, message", [
    ("shard.tfrecord", {}, "ending in"),
    ("sub/shard-00000-00000.array_record", {}, "plain file name"),
    (".hidden.array_record", {}, "plain file name"),
    ("shard-00000-00000.array_record", {"records": 3}, "'records'"),
    ("shard-00000-00000.array_record", {"when": object()}, "JSON"),
])
def test_write_shard_refuses_bad_names_and_summaries(tmp_path, name, summary, message):
    with pytest.raises(UsageError) as e:
        tokens.write_shard(tmp_path, name, [tokens.encode_record(dac_fields(0))], summary)
    assert message in one_line(e)
    assert os.listdir(tmp_path) == []


def test_write_shard_is_atomic(tmp_path):
    name = tokens.shard_name(0, 0)

    def failing():
        for i in range(4):
            yield tokens.encode_record(dac_fields(i))
        raise RuntimeError("the codec failed")

    with pytest.raises(RuntimeError, match="the codec failed"):
        tokens.write_shard(tmp_path, name, failing(), {})
    assert os.listdir(tmp_path) == []  # no shard, no sidecar, no temporary file

    # over a finished shard: the old file may stay, but it is no longer finished
    tokens.write_shard(tmp_path, name, [tokens.encode_record(dac_fields(0))], {})
    with pytest.raises(RuntimeError):
        tokens.write_shard(tmp_path, name, failing(), {})
    assert os.listdir(tmp_path) == [name]
    assert tokens.finished_shards(tmp_path) == {}

    # a record that is not bytes fails the same way
    with pytest.raises(UsageError, match="not the bytes"):
        tokens.write_shard(tmp_path, tokens.shard_name(0, 1), [tokens.encode_record(dac_fields(0)), "text"], {})
    assert not any(is_temp(n) for n in os.listdir(tmp_path))
    assert tokens.shard_name(0, 1) not in os.listdir(tmp_path)


def test_finished_shards_needs_a_matching_sidecar(tmp_path):
    names = [tokens.shard_name(0, k) for k in range(6)]
    for k, name in enumerate(names):
        tokens.write_shard(tmp_path, name, [tokens.encode_record(dac_fields(i)) for i in range(k + 1)], {"k": k})
    (tmp_path / (names[1] + ".json")).unlink()  # killed before its sidecar
    sidecar = tmp_path / (names[2] + ".json")
    sidecar.write_text(json.dumps({"k": 2, "records": 7}))  # a count that does not match
    (tmp_path / (names[3] + ".json")).write_text("{not json")
    (tmp_path / names[4]).write_bytes(b"truncated")  # a shard that is not ArrayRecord
    (tmp_path / (tokens.shard_name(1, 0) + ".json")).write_text(json.dumps({"records": 0}))  # no shard
    (tmp_path / ".shard-00000-00009.array_record.dacjax-abcdef-1-00000000.tmp").write_bytes(b"")
    assert tokens.finished_shards(tmp_path) == {names[0]: {"k": 0, "records": 1}, names[5]: {"k": 5, "records": 6}}
    assert tokens.finished_shards(tmp_path / "missing") == {}


def test_an_empty_shard_is_finished(tmp_path):
    name = tokens.shard_name(0, 0)
    tokens.write_shard(tmp_path, name, [], {"files": 0})
    assert tokens.finished_shards(tmp_path) == {name: {"files": 0, "records": 0}}


# -- manifest -----------------------------------------------------------------------------------------


def test_manifest_round_trip(tmp_path):
    make_corpus(tmp_path, sizes=(2, 3, 1), failures=[{"source": "bad.wav", "error": "not audio"}], files=6)
    manifest = tokens.read_manifest(tmp_path)
    assert manifest["format"] == "dac-jax-tokens" and manifest["version"] == 1
    assert manifest["records"] == 6 and manifest["files"] == 6
    assert manifest["failures"] == [{"source": "bad.wav", "error": "not audio"}]
    assert manifest["config"] == {"n_codebooks": 4} and manifest["frame_rate"] == FRAME_RATE
    assert manifest["shards"] == [
        {"path": "shard-00000-00000.array_record", "records": 2, "files": 2, "seconds": 3.0},
        {"path": "shard-00000-00001.array_record", "records": 3, "files": 3, "seconds": 4.5},
        {"path": "shard-00001-00000.array_record", "records": 1, "files": 1, "seconds": 1.5},
    ]
    assert list(manifest["shards"][0])[:2] == ["path", "records"]
    # what read_manifest gives writes back unchanged
    assert tokens.write_manifest(tmp_path, manifest) == manifest
    assert not any(is_temp(n) for n in os.listdir(tmp_path))


@pytest.mark.parametrize("change, message", [
    ({"kind": "mp3"}, "'kind'"),
    ({"dtype": "float32"}, "'dtype'"),
    ({"model": None}, "'model'"),
    ({"config": None}, "'config'"),
    ({"frame_rate": -1.0}, "'frame_rate'"),
    ({"records": 99}, "'records'"),
    ({"version": 2}, "'version'"),
    ({"shards": [{"path": "../x.array_record", "records": 1}]}, "shards[0].path"),
    ({"shards": [{"path": "a.array_record", "records": -1}]}, "shards[0].records"),
    ({"shards": [{"path": "a.array_record", "records": "1"}]}, "shards[0].records"),
    ({"shards": [{"path": "a.array_record"}]}, "shards[0].records"),
    ({"shards": None}, "'shards'"),
    ({"seconds": float("nan")}, "JSON"),
])
def test_write_manifest_refuses_bad_manifests(tmp_path, change, message):
    manifest = {**HEADERS["dac"], "shards": [], **change}
    manifest = {k: v for k, v in manifest.items() if v is not None}
    with pytest.raises(UsageError) as e:
        tokens.write_manifest(tmp_path, manifest)
    assert message in one_line(e)
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.parametrize("text, message", [
    (None, "no manifest.json"),
    ("{broken", "not JSON"),
    ("[]", "JSON object"),
    (json.dumps({"format": "other"}), "'format'"),
    (json.dumps({"format": "dac-jax-tokens", "version": 2}), "newer dac-jax"),
    (json.dumps({**HEADERS["dac"], "format": "dac-jax-tokens", "version": 1, "shards": [], "records": 3}),
     "'records'"),
])
def test_read_manifest_errors_are_one_line_and_name_the_folder(tmp_path, text, message):
    if text is not None:
        (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(FileFormatError) as e:
        tokens.read_manifest(tmp_path)
    assert message in one_line(e) and str(tmp_path) in str(e.value)


def test_build_manifest_refuses_shards_in_header(tmp_path):
    with pytest.raises(UsageError):
        tokens.build_manifest(tmp_path, {**HEADERS["dac"], "shards": []})


# -- TokenSource -------------------------------------------------------------------------------------


def test_token_source_reads_by_global_index(tmp_path):
    fields = make_corpus(tmp_path, sizes=(3, 0, 4, 2))
    source = tokens.TokenSource(tmp_path)
    assert len(source) == 9 and source.manifest["records"] == 9
    for i, want in enumerate(fields):
        assert_same_record(source[i], want)
        assert_same_record(source[i - 9], want)
    assert source.locate(3) == ("shard-00001-00000.array_record", 0)  # the empty shard is skipped
    assert source.locate(-1) == ("shard-00001-00001.array_record", 1)
    assert_same_record(source[np.int64(8)], fields[8])
    for bad in (9, -10, 100):
        with pytest.raises(IndexError):
            source[bad]
    assert repr(source) == f"TokenSource({str(tmp_path)!r}, records=9)"
    assert [r["source"] for r in source] == [f["source"] for f in fields]  # iteration ends at IndexError

    copy = pickle.loads(pickle.dumps(source))  # after reading: open readers are dropped
    assert copy.manifest == source.manifest and len(copy) == 9
    assert_same_record(copy[5], fields[5])
    assert_same_record(source[5], fields[5])  # the original still reads
    source.close()
    assert_same_record(source[0], fields[0])  # and reopens after close


def test_token_source_checks_shard_counts(tmp_path):
    make_corpus(tmp_path, sizes=(3, 2))
    manifest = tokens.read_manifest(tmp_path)
    manifest["shards"][1]["records"] = 5
    del manifest["records"]
    tokens.write_manifest(tmp_path, manifest)
    source = tokens.TokenSource(tmp_path)
    assert len(source) == 8
    assert source[0]["source"]  # the first shard is fine
    with pytest.raises(FileFormatError) as e:
        source[3]
    assert "shard-00000-00001.array_record" in one_line(e) and "holds 2 records" in str(e.value)
    with pytest.raises(FileFormatError):
        source.verify()


def test_token_source_needs_manifest_and_shards(tmp_path):
    with pytest.raises(FileFormatError, match="no manifest.json"):
        tokens.TokenSource(tmp_path)
    make_corpus(tmp_path, sizes=(1, 1))
    (tmp_path / "shard-00000-00001.array_record").unlink()
    with pytest.raises(FileFormatError) as e:
        tokens.TokenSource(tmp_path)
    assert "shard-00000-00001.array_record: missing" in one_line(e)


def test_grain_pipeline_yields_every_record_once_per_epoch(tmp_path):
    import grain
    import grain.python as gp

    fields = make_corpus(tmp_path, sizes=(3, 0, 4, 2))
    everything = sorted(f["source"] for f in fields)
    source = tokens.TokenSource(tmp_path)
    assert isinstance(source, gp.RandomAccessDataSource)  # the protocol's structural check

    dataset = grain.MapDataset.source(source).shuffle(seed=3)
    order = [dataset[i]["source"] for i in range(len(dataset))]
    assert sorted(order) == everything and order != [f["source"] for f in fields]
    assert [dataset[i + len(dataset)]["source"] for i in range(len(dataset))] != order  # next epoch reshuffled
    assert sorted(r["source"] for r in dataset.to_iter_dataset()) == everything

    loader = gp.DataLoader(data_source=source, worker_count=0,
                           sampler=gp.IndexSampler(len(source), shuffle=True, num_epochs=2, seed=1))
    seen = [r["source"] for r in loader]
    assert sorted(seen[:9]) == everything and sorted(seen[9:]) == everything


@pytest.fixture
def absl_flags_parsed():
    """Grain's worker processes read absl flags, which only absl.app.run parses: mark them parsed
    (defaults) for the test, as a training script's main would."""
    from absl import flags

    was = flags.FLAGS.is_parsed()
    if not was:
        flags.FLAGS.mark_as_parsed()
    yield
    if not was:
        flags.FLAGS.unparse_flags()


def test_grain_worker_process_reads_a_pickled_source(tmp_path, absl_flags_parsed):
    import grain.python as gp

    fields = make_corpus(tmp_path, sizes=(3, 2))
    source = tokens.TokenSource(tmp_path)
    source[0]  # an open reader, dropped when the source is sent to the worker
    loader = gp.DataLoader(data_source=source, worker_count=1,
                           sampler=gp.IndexSampler(len(source), shuffle=True, num_epochs=1, seed=0))
    got = {r["source"]: r for r in loader}
    assert len(got) == len(fields)
    for want in fields:
        assert_same_record(got[want["source"]], want)


def test_missing_packages_are_named(tmp_path, monkeypatch):
    make_corpus(tmp_path, sizes=(1,))
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # None in sys.modules: the import fails
    with pytest.raises(MissingDependencyError, match="pip install tensorflow"):
        tokens.tf_dataset(tmp_path)
    monkeypatch.setitem(sys.modules, "array_record.python", None)
    with pytest.raises(MissingDependencyError, match="pip install array-record") as e:
        tokens.TokenSource(tmp_path)
    one_line(e)
    with pytest.raises(MissingDependencyError, match="pip install array-record"):
        tokens.write_shard(tmp_path, tokens.shard_name(0, 9), [], {})


# -- tf.data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dac", "vae"])
def test_tf_dataset_yields_what_token_source_does(tmp_path, kind):
    tf = pytest.importorskip("tensorflow")
    make_corpus(tmp_path, sizes=(2, 3), kind=kind)
    source = tokens.TokenSource(tmp_path)
    dataset = tokens.tf_dataset(tmp_path)
    spec = dataset.element_spec
    arrays = ["codes"] if kind == "dac" else ["mu", "logs"]
    assert set(spec) == set(arrays) | {"source", "channel", "sample_rate", "length", "input_db", "frame_rate", "model"}
    assert spec[arrays[0]].dtype == (tf.int32 if kind == "dac" else tf.float32)
    assert spec["source"].dtype == tf.string and spec["length"].dtype == tf.int64
    elements = list(dataset.as_numpy_iterator())
    assert len(elements) == len(source)
    for element, want in zip(elements, source):
        for name in arrays:
            np.testing.assert_array_equal(element[name], want[name])
        assert element["source"].decode() == want["source"] and element["model"].decode() == want["model"]
        for name in ["channel", "sample_rate", "length", "input_db", "frame_rate"]:
            assert element[name] == want[name]
