"""The .dac file: round trips with the original's DACFile, safe loading, errors, atomic writes."""

from __future__ import annotations

import builtins
import math
import os
import pickle
import shlex

import numpy as np
import pytest

from dac_jax.codec import dacfile
from dac_jax.codec.dacfile import (
    ALLOWED_GLOBALS, DACFile, load, resampled_length, validate_for_model,
)
from dac_jax.errors import FileFormatError


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orig(request):
    """The original's ``dac.model.base`` (skips, or fails under DAC_JAX_REQUIRE_REFERENCE=1, without it)."""
    request.getfixturevalue("reference_dir")
    import dac.model.base

    return dac.model.base


def content(seed=0, batch=1, channels=2, n_codebooks=9, chunk_length=7, n_chunks=3, padding=False,
            codebook_size=1024, sample_rate=44100):
    rng = np.random.default_rng(seed)
    return dict(
        codes=rng.integers(0, codebook_size, size=(batch * channels, n_codebooks, chunk_length * n_chunks)),
        chunk_length=chunk_length,
        # at most what the frames decode to with a 50 Hz model (the slowest released one)
        original_length=int(rng.integers(1, chunk_length * n_chunks * sample_rate // 50)),
        input_db=rng.uniform(-40, -10, size=batch).astype(np.float32),
        channels=channels,
        sample_rate=sample_rate,
        padding=padding,
        dac_version="1.0.0",
    )


def original_dacfile(orig, c):
    """The original's DACFile built as ``compress`` builds it: torch int64 codes, torch float32 input_db."""
    import torch

    return orig.DACFile(
        codes=torch.from_numpy(np.asarray(c["codes"], np.int64)),
        chunk_length=c["chunk_length"],
        original_length=c["original_length"],
        input_db=torch.from_numpy(np.asarray(c["input_db"], np.float32)),
        channels=c["channels"],
        sample_rate=c["sample_rate"],
        padding=c["padding"],
        dac_version="1.0.0",
    )


def artifacts(c):
    """What the original pickles for content ``c``."""
    return {
        "codes": np.asarray(c["codes"]).astype(np.uint16),
        "metadata": {
            "input_db": np.asarray(c["input_db"]).astype(np.float32),
            "original_length": c["original_length"],
            "sample_rate": c["sample_rate"],
            "chunk_length": c["chunk_length"],
            "channels": c["channels"],
            "padding": c["padding"],
            "dac_version": "1.0.0",
        },
    }


def write_npy_object(path, obj, protocol=4):
    """A .npy file holding a 0-d object array with ``obj``, pickled with ``protocol``."""
    arr = np.empty((), dtype=object)
    arr[()] = obj
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(arr, f, protocol=protocol)
    return path


def save_raw(path, obj):
    with open(path, "wb") as f:
        np.save(f, obj, allow_pickle=True)
    return path


def pickle_globals(path):
    """(module, name) of every global a (trusted) .npy object file's pickle looks up."""
    found = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            found.add((module, name))
            return super().find_class(module, name)

    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        Recording(f).load()
    return found


def assert_error(excinfo, path, *fragments):
    msg = str(excinfo.value)
    assert str(path) in msg, msg
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


def assert_same(ours: DACFile, c):
    np.testing.assert_array_equal(ours.codes, np.asarray(c["codes"]))
    assert ours.codes.dtype == np.int32
    np.testing.assert_array_equal(ours.input_db, np.asarray(c["input_db"], np.float32))
    assert ours.input_db.dtype == np.float32
    for key in ("chunk_length", "original_length", "channels", "sample_rate", "padding", "dac_version"):
        assert getattr(ours, key) == c[key] and type(getattr(ours, key)) is type(c[key]), key


CASES = [
    dict(seed=0, batch=1, channels=2, chunk_length=7, n_chunks=3, padding=False),
    dict(seed=1, batch=3, channels=1, chunk_length=40, n_chunks=1, padding=True, n_codebooks=4),
    dict(seed=2, batch=2, channels=2, chunk_length=1, n_chunks=5, padding=False, n_codebooks=32,
         codebook_size=65536, sample_rate=8000),
]


# ---------------------------------------------------------------------------------------------
# compatibility with the original
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_original_file_loads_with_identical_fields(orig, tmp_path, case):
    c = content(**case)
    path = original_dacfile(orig, c).save(tmp_path / "orig")
    assert_same(load(path), c)
    assert_same(DACFile.load(path), c)


@pytest.mark.parametrize("case", CASES)
def test_our_file_loads_in_original_with_identical_fields_and_dtypes(orig, tmp_path, case):
    import torch

    c = content(**case)
    path = DACFile(**c).save(tmp_path / "ours")
    theirs = orig.DACFile.load(path)
    assert theirs.codes.dtype == torch.int64
    np.testing.assert_array_equal(theirs.codes.numpy(), c["codes"])
    assert isinstance(theirs.input_db, np.ndarray) and theirs.input_db.dtype == np.float32
    np.testing.assert_array_equal(theirs.input_db, c["input_db"])
    for key in ("chunk_length", "original_length", "channels", "sample_rate", "padding", "dac_version"):
        assert getattr(theirs, key) == c[key] and type(getattr(theirs, key)) is type(c[key]), key


@pytest.mark.parametrize("case", CASES)
def test_our_file_is_the_originals_plus_an_integrity_record(orig, tmp_path, case):
    c = content(**case)
    ours = DACFile(**c).save(tmp_path / "ours.dac")
    theirs = original_dacfile(orig, c).save(tmp_path / "theirs.dac")
    a = np.load(ours, allow_pickle=True)[()]  # our own file: trusted
    assert list(a) == ["codes", "metadata", "dac_jax"]
    assert a.pop("dac_jax") == {"format": 1, "sha256": DACFile(**c).checksum()}
    assert save_raw(tmp_path / "stripped.dac", a).read_bytes() == theirs.read_bytes()


def test_constructor_accepts_torch_and_numpy_and_normalises(orig):
    import torch

    c = content()
    f = DACFile(**{**c, "codes": torch.from_numpy(c["codes"]), "input_db": torch.from_numpy(c["input_db"])})
    assert_same(f, c)
    assert not f.codes.flags.writeable and not f.input_db.flags.writeable
    g = DACFile(**{**c, "codes": c["codes"].astype(np.uint16), "chunk_length": np.int64(7), "padding": np.bool_(False)})
    assert_same(g, c)
    assert (f.n_items, f.n_codebooks, f.frames, f.batch, f.n_chunks) == (2, 9, 21, 1, 3)


def test_allowed_globals_are_exactly_what_the_original_writes(orig, tmp_path):
    path = original_dacfile(orig, content()).save(tmp_path / "orig")
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    expected = {(reconstruct.__module__, "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}
    assert pickle_globals(path) == expected
    assert expected <= set(ALLOWED_GLOBALS)
    assert set(ALLOWED_GLOBALS) == expected | {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}


def test_numpy1_style_file_loads(tmp_path):
    """NumPy 1.x writers name the module numpy.core.multiarray (and used pickle protocol 3)."""
    c = content()
    path = write_npy_object(tmp_path / "np1.dac", artifacts(c), protocol=3)
    data = path.read_bytes()
    assert b"cnumpy._core.multiarray\n_reconstruct\n" in data
    path.write_bytes(data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    assert ("numpy.core.multiarray", "_reconstruct") in pickle_globals(path)
    assert_same(load(path), c)


# ---------------------------------------------------------------------------------------------
# files from the original's compress; validate_for_model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(orig):
    from tests.reference import torch_model

    return {name: torch_model(name) for name in ("tiny", "tiny-odd")}


def model_args(model):
    """validate_for_model's keywords for an original model, from the original's own length arithmetic."""
    return dict(
        sample_rate=model.sample_rate,
        hop_length=model.hop_length,
        encoder_frames=lambda n: type(model).get_output_length(model.encoder, n),
        output_length=model.get_output_length,
    )


@pytest.fixture(scope="module")
def compressed(orig, tiny_models, tmp_path_factory):
    """Files written by the original's compress + DACFile.save: padded and chunked, resampled."""
    import torch
    from audiotools import AudioSignal

    folder = tmp_path_factory.mktemp("compressed")
    rng = np.random.default_rng(0)
    out = {}
    for name, seconds, win, shape in [("padded", 0.5, 1.0, (1, 2)), ("chunked", 2.0, 0.5, (2, 1))]:
        audio = (0.1 * rng.standard_normal((*shape, int(seconds * 24000)))).astype(np.float32)
        f = tiny_models["tiny"].compress(AudioSignal(torch.from_numpy(audio), 24000), win_duration=win)
        out[name] = (f.save(folder / name), f)
    return out


@pytest.mark.parametrize("name", ["padded", "chunked"])
def test_compressed_files_load_and_fit_their_model(compressed, tiny_models, name):
    path, theirs = compressed[name]
    f = load(path)
    np.testing.assert_array_equal(f.codes, theirs.codes.numpy())
    assert f.padding is (name == "padded")
    assert f.frames % f.chunk_length == 0
    assert f.n_chunks == 1 if name == "padded" else f.n_chunks > 1
    model = tiny_models["tiny"]
    validate_for_model(f, 4, 32, path=path, **model_args(model))


@pytest.mark.parametrize("name", ["padded", "chunked"])
def test_the_original_decompresses_our_rewrite_of_its_file_identically(orig, compressed, tiny_models, tmp_path, name):
    """Our file (the original's plus the integrity record) through the original's load + decompress."""
    path, _ = compressed[name]
    ours = load(path).save(tmp_path / "ours.dac")
    assert ours.read_bytes() != path.read_bytes()  # it has the record
    model = tiny_models["tiny"]
    theirs = model.decompress(orig.DACFile.load(path)).audio_data.numpy()
    np.testing.assert_array_equal(model.decompress(orig.DACFile.load(ours)).audio_data.numpy(), theirs)


@pytest.mark.parametrize("name", ["padded", "chunked"])
def test_validate_rejects_a_model_with_another_hop_or_rate(compressed, tiny_models, name):
    path, _ = compressed[name]
    f = load(path)
    odd = model_args(tiny_models["tiny-odd"])  # hop 10 instead of 8, same rate
    with pytest.raises(FileFormatError) as e:
        validate_for_model(f, 4, 32, path=path, **odd)
    assert_error(e, path, "another sample rate or hop")
    # same geometry, another rate (as the 16 kHz and 24 kHz models): only the resampled length differs
    other_rate = {**model_args(tiny_models["tiny"]), "sample_rate": 24000}
    with pytest.raises(FileFormatError) as e:
        validate_for_model(f, 4, 32, path=path, **other_rate)
    assert_error(e, path, "another sample rate or hop than 24000 Hz")


def test_validate_codebooks():
    c = content(n_codebooks=6, codebook_size=1024)
    c["codes"][1, 2, 3] = 1000
    f = DACFile(**c)
    validate_for_model(f, 9, 1024)  # fewer codebooks than the model: fine (n_quantizers)
    with pytest.raises(FileFormatError) as e:
        validate_for_model(f, 4, 1024, path="x.dac")
    assert_error(e, "x.dac", "6 codebooks", "only 4")
    c["codes"][...] = np.minimum(c["codes"], 999)
    c["codes"][1, 2, 3] = 1000
    with pytest.raises(FileFormatError) as e:
        validate_for_model(DACFile(**c), 9, 1000, path="x.dac")
    assert_error(e, "x.dac", "code 1000", "item 1, codebook 2, frame 3")


def test_validate_padded_frames_without_torch():
    f = DACFile(**{**content(n_chunks=1, chunk_length=125, padding=True), "original_length": 1000, "sample_rate": 16000})
    validate_for_model(f, 9, 1024, sample_rate=16000, hop_length=8)
    with pytest.raises(FileFormatError, match="125 frames.*100 frames"):
        validate_for_model(f, 9, 1024, sample_rate=16000, hop_length=10)


def test_resampled_length_matches_julius(orig):
    import julius
    import torch

    rng = np.random.default_rng(0)
    for old, new in [(44100, 16000), (22050, 16000), (48000, 44100), (8000, 24000), (16000, 16000)]:
        for length in rng.integers(1, 20_000, size=3):
            got = julius.resample_frac(torch.zeros(1, int(length)), old, new).shape[-1] if old != new else length
            assert resampled_length(int(length), old, new) == got, (old, new, length)
    # beyond 2**24 output samples julius's float32 rounding exceeds the exact floor; we follow it
    differs = 0
    for length in range(10**8, 10**8 + 200):
        expected = int(torch.floor(torch.as_tensor(160 * length / 441)))
        assert resampled_length(length, 44100, 16000) == expected
        differs += expected != 160 * length // 441
    assert differs > 0


# ---------------------------------------------------------------------------------------------
# malicious files are refused without running anything
# ---------------------------------------------------------------------------------------------


class _Marker:
    """An arbitrary object whose construction has a side effect."""

    def __init__(self, path):
        with open(path, "w") as f:
            f.write("pwned")


class _MakeMarker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (_Marker, (self.path,))


class _System:
    def __init__(self, path):
        self.cmd = f"touch {shlex.quote(str(path))}"

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Eval:
    def __init__(self, path):
        self.code = f"open({str(path)!r}, 'w').close()"

    def __reduce__(self):
        return (builtins.eval, (self.code,))


PAYLOADS = {
    "os.system": (_System, "system"),
    "builtins.eval": (_Eval, "eval'"),  # __builtin__.eval under protocols < 3
    "arbitrary object": (_MakeMarker, "_Marker"),
}


def _write_evil(path, kind, marker, where, protocol):
    make, _ = PAYLOADS[kind]
    payload = make(marker)
    if where == "bare":  # the payload itself right after the .npy header
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
            pickle.dump(payload, f, protocol=protocol)
        return path
    if where == "metadata":  # a genuine file with the payload deep inside, after the codes
        a = artifacts(content())
        a["metadata"]["sample_rate"] = payload
        payload = a
    return write_npy_object(path, payload, protocol)


@pytest.mark.parametrize(
    "where, protocol",
    [("bare", 0), ("bare", 2), ("bare", 4), ("bare", 5), ("in array", 3), ("in array", 4), ("metadata", 3), ("metadata", 4)],
)
@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_malicious_pickle_is_refused_without_running(tmp_path, kind, where, protocol):
    path = _write_evil(tmp_path / "evil.dac", kind, tmp_path / "marker", where, protocol)
    with pytest.raises(FileFormatError) as e:
        load(path)
    assert_error(e, path, "refused", PAYLOADS[kind][1])
    assert not (tmp_path / "marker").exists()
    assert list(tmp_path.iterdir()) == [path]
    # the payload is live: numpy's own loader runs it
    np.load(path, allow_pickle=True)
    assert (tmp_path / "marker").exists()


@pytest.mark.parametrize("protocol, refused", [(2, "'_codecs.encode'"), (5, "_frombuffer'")])
def test_array_pickles_np_save_never_writes_are_refused(tmp_path, protocol, refused):
    """np.save always pickles with protocol 3 (NumPy 1) or 4 (NumPy 2); arrays pickled with protocol
    2 need _codecs.encode, with protocol 5 numpy's _frombuffer: neither is allowed."""
    path = write_npy_object(tmp_path / "p.dac", artifacts(content()), protocol)
    with pytest.raises(FileFormatError) as e:
        load(path)
    assert_error(e, path, "refused", refused)


def test_numpy_functions_other_than_array_reconstruction_are_refused(tmp_path):
    path = save_raw(tmp_path / "f.dac", np.load)  # a reference to numpy.load
    with pytest.raises(FileFormatError) as e:
        load(path)
    assert_error(e, path, "'numpy.load'")


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def _drop(d, *keys):
    for k in keys[:-1]:
        d = d[k]
    del d[keys[-1]]


MUTATIONS = {
    # top level
    "not a dict": (lambda a: [a["codes"], 1], "holds a list"),
    "missing codes": (lambda a: _drop(a, "codes"), "missing 'codes'"),
    "extra top key": (lambda a: a.update(extra=1), "unexpected 'extra'"),
    "metadata not a dict": (lambda a: a.update(metadata=[1, 2]), "metadata must be a dict"),
    # version
    "version 2.0.0": (lambda a: a["metadata"].update(dac_version="2.0.0"), "dac_version '2.0.0'", "supports 1.0.0"),
    "no version": (lambda a: _drop(a, "metadata", "dac_version"), "no dac_version", "1.0.0"),
    "version not a str": (lambda a: a["metadata"].update(dac_version=np.array(["1.0.0"] * 2)), "dac_version"),
    # keys
    "missing metadata key": (lambda a: _drop(a, "metadata", "channels"), "missing 'channels'"),
    "extra metadata key": (lambda a: a["metadata"].update(n_quantizers=4), "unexpected 'n_quantizers'"),
    # types
    "codes int64": (lambda a: a.update(codes=a["codes"].astype(np.int64)), "codes must be a uint16 array", "int64"),
    "codes list": (lambda a: a.update(codes=a["codes"].tolist()), "codes must be a uint16 array", "list"),
    "codes rank 2": (lambda a: a.update(codes=a["codes"][0]), "rank 3"),
    "codes empty": (lambda a: a.update(codes=a["codes"][:, :, :0]), "must not be empty"),
    "input_db float64": (lambda a: a["metadata"].update(input_db=a["metadata"]["input_db"].astype(np.float64)), "input_db must be a float32"),
    "input_db float": (lambda a: a["metadata"].update(input_db=-16.0), "input_db must be a float32", "float"),
    "input_db 2-D": (lambda a: a["metadata"].update(input_db=np.zeros((1, 1), np.float32)), "1-D"),
    "input_db nan": (lambda a: a["metadata"].update(input_db=np.array([np.nan], np.float32)), "finite"),
    "sample_rate float": (lambda a: a["metadata"].update(sample_rate=44100.0), "sample_rate must be an int"),
    "channels bool": (lambda a: a["metadata"].update(channels=True), "channels must be an int"),
    "padding int": (lambda a: a["metadata"].update(padding=1), "padding must be a bool"),
    "numpy scalar": (lambda a: a["metadata"].update(sample_rate=np.int64(44100)), "refused", "scalar"),
    # consistency
    "rows vs channels": (lambda a: a["metadata"].update(channels=3), "not a multiple of channels=3"),
    "input_db vs batch": (lambda a: a["metadata"].update(input_db=np.zeros(2, np.float32)), "input_db has 2 values"),
    "ragged chunks": (lambda a: a["metadata"].update(chunk_length=5), "21 frames", "chunk_length=5"),
    "chunk longer than codes": (lambda a: a["metadata"].update(chunk_length=22), "chunk_length=22"),
    "chunk_length 0": (lambda a: a["metadata"].update(chunk_length=0), "chunk_length must be >= 1"),
    "original_length -1": (lambda a: a["metadata"].update(original_length=-1), "original_length must be >= 1"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_bad_content_is_a_clear_error(tmp_path, name):
    mutate, *fragments = MUTATIONS[name]
    a = artifacts(content())
    a = mutate(a) or a
    path = write_npy_object(tmp_path / "bad.dac", a)
    with pytest.raises(FileFormatError) as e:
        load(path)
    assert_error(e, path, *fragments)


def test_bad_files_are_clear_errors(tmp_path):
    good = DACFile(**content()).save(tmp_path / "good").read_bytes()
    rng = np.random.default_rng(0)
    cases = {
        "missing.dac": (None, "no such file"),
        "empty.dac": (b"", "empty"),
        "garbage.dac": (b"hello, world\n" * 20, "no NumPy (.npy) header"),
        "random.dac": (rng.bytes(500), "no NumPy (.npy) header"),
        "header-only.dac": (good[:60], "truncated or corrupt .npy header"),
        "bad-version.dac": (b"\x93NUMPY\x07\x00" + good[8:], "format version"),
        "bad-pickle.dac": (good[:128] + rng.bytes(300), "corrupt pickle payload"),
    }
    (tmp_path / "folder.dac").mkdir()
    for name, (data, fragment) in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(FileFormatError) as e:
            load(path)
        assert_error(e, path, fragment)
    with pytest.raises(FileFormatError) as e:
        load(tmp_path / "folder.dac")
    assert_error(e, tmp_path / "folder.dac", "directory")
    for what, obj, fragment in [
        ("plain.dac", np.zeros((2, 9, 21), np.uint16), "plain uint16 array of shape (2, 9, 21)"),
        ("objects.dac", np.array([{}, {}], dtype=object), "plain object array of shape (2,)"),
    ]:
        path = save_raw(tmp_path / what, obj)
        with pytest.raises(FileFormatError) as e:
            load(path)
        assert_error(e, path, fragment)


def test_truncated_files_are_clear_errors(tmp_path):
    good = DACFile(**content()).save(tmp_path / "good").read_bytes()
    rng = np.random.default_rng(0)
    cuts = {1, 7, 8, 9, 10, 127, 128, 129, len(good) - 2, len(good) - 1} | set(rng.integers(1, len(good), 30).tolist())
    path = tmp_path / "cut.dac"
    for cut in sorted(cuts):
        path.write_bytes(good[:cut])
        with pytest.raises(FileFormatError) as e:
            load(path)
        assert_error(e, path)


def test_constructor_errors():
    c = content()
    for bad, found in [(-1, "from -1 to"), (65536, "to 65536")]:
        codes = c["codes"].copy()
        codes[1, 2, 3] = bad
        with pytest.raises(FileFormatError, match=r"0\.\.65535 .*" + found):
            DACFile(**{**c, "codes": codes})
    with pytest.raises(FileFormatError, match="integer array"):
        DACFile(**{**c, "codes": c["codes"].astype(np.float32)})
    with pytest.raises(FileFormatError, match="dac_version '0.9'"):
        DACFile(**{**c, "dac_version": "0.9"})
    with pytest.raises(FileFormatError, match="1-D"):
        DACFile(**{**c, "input_db": -16.0})


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.wav", "a", "a.dac", "a.tar.gz", "dir/b.mp3"])
def test_suffix_is_forced_like_the_original(orig, tmp_path, name):
    c = content()
    ours = DACFile(**c).save(tmp_path / "ours" / name)
    (tmp_path / "theirs" / name).parent.mkdir(parents=True, exist_ok=True)
    theirs = original_dacfile(orig, c).save(tmp_path / "theirs" / name)
    assert ours.suffix == ".dac" and ours.exists()
    assert ours.relative_to(tmp_path / "ours") == theirs.relative_to(tmp_path / "theirs")


def test_suffix_is_forced_without_the_original(tmp_path):
    assert DACFile(**content()).save(tmp_path / "x.wav") == tmp_path / "x.dac"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dac"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    f = DACFile(**content())

    def broken(fp, artifacts):
        fp.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(dacfile, "_write", broken)
    with pytest.raises(OSError, match="disk full"):
        f.save(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []
    # an existing file is left as it was
    monkeypatch.undo()
    path = DACFile(**content(seed=5)).save(tmp_path / "old")
    before = path.read_bytes()
    monkeypatch.setattr(dacfile, "_write", broken)
    with pytest.raises(OSError):
        f.save(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_out_of_range_codes_write_nothing(tmp_path):
    f = DACFile(**content())
    bad = np.array(f.codes)
    bad[0, 0, 0] = 70000
    object.__setattr__(f, "codes", bad)  # bypass the constructor's check
    with pytest.raises(FileFormatError, match="0..65535"):
        f.save(tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_save_overwrites_and_round_trips(tmp_path):
    for seed in (0, 1):
        c = content(seed=seed)
        path = DACFile(**c).save(tmp_path / "x")
        assert_same(load(path), c)
    assert [p.name for p in tmp_path.iterdir()] == ["x.dac"]
    assert math.isfinite(load(path).input_db[0])


# ---------------------------------------------------------------------------------------------
# integrity record, plausible sizes, guarded unpickling (tests/codec/test_file_fuzz.py fuzzes these)
# ---------------------------------------------------------------------------------------------


def test_checksum_covers_every_field_decoding_uses():
    c = content()
    base = DACFile(**c).checksum()
    assert len(base) == 64 and base == DACFile(**c).checksum()
    codes = c["codes"].copy()
    codes[1, 2, 3] ^= 1
    changes = [dict(codes=codes), dict(chunk_length=3), dict(original_length=c["original_length"] + 1),
               dict(input_db=c["input_db"] + np.float32(0.5)), dict(channels=1, input_db=np.zeros(2, np.float32)),
               dict(sample_rate=48000), dict(padding=True)]
    for change in changes:
        assert DACFile(**{**c, **change}).checksum() != base, change


def test_checksum_mismatch_and_bad_records_are_errors(tmp_path):
    c = content()
    good = np.load(DACFile(**c).save(tmp_path / "good"), allow_pickle=True)[()]
    record = good["dac_jax"]
    other = artifacts({**c, "original_length": c["original_length"] - 1})
    cases = {
        "changed.dac": ({**other, "dac_jax": record}, "checksum mismatch: the file is corrupt"),
        "format2.dac": ({**good, "dac_jax": {**record, "format": 2}}, "integrity format 2 is not supported"),
        "list.dac": ({**good, "dac_jax": [record]}, "corrupt file: its 'dac_jax' record is [{"),
        "extra.dac": ({**good, "dac_jax": {**record, "x": 1}}, "'dac_jax' record"),
        "int sha.dac": ({**good, "dac_jax": {**record, "sha256": 3}}, "checksum mismatch"),
    }
    for name, (obj, fragment) in cases.items():
        path = write_npy_object(tmp_path / name, obj)
        with pytest.raises(FileFormatError) as e:
            load(path)
        assert_error(e, path, fragment)
    # the original's files have no record: they load as before
    assert load(write_npy_object(tmp_path / "plain.dac", artifacts(c))).checksum() == record["sha256"]


@pytest.mark.parametrize("name, value, fragment", [
    ("sample_rate", 10**9, "sample_rate must be <= 384000, got 1000000000"),
    ("sample_rate", 10**5000, "sample_rate must be <= 384000, got <int of 16610 bits>"),
    ("original_length", -(10**5000), "original_length must be >= 1, got <negative int of 16610 bits>"),
    ("original_length", 10**12, "more than 21 frames can decode to (at most 97119"),
    ("input_db", np.array([1e30], np.float32), "input_db must lie within +-300 dB"),
], ids=["rate 1e9", "rate 10**5000", "length -10**5000", "length 1e12", "input_db 1e30"])
def test_implausible_sizes_are_refused(tmp_path, name, value, fragment):
    a = artifacts(content())
    a["metadata"][name] = value
    path = write_npy_object(tmp_path / "bad.dac", a)
    with pytest.raises(FileFormatError) as e:
        load(path)
    assert_error(e, path, fragment)
    assert len(str(e.value)) < 300
    with pytest.raises(FileFormatError, match=f"DACFile: {name}"):
        DACFile(**{**content(), name: value})


def test_a_real_files_original_length_is_far_below_the_bound():
    """44.1 kHz, hop 512: a frame is 512 samples; the bound allows 4411 (for a 10 Hz model)."""
    frames = 8613  # 100 s
    assert dacfile.max_original_length(frames, dacfile.MIN_FRAME_RATE, 44100) == 38_025_729
    assert 100 * 44100 < dacfile.max_original_length(frames, 44100 / 512, 44100) < 1.002 * frames * 512


def test_short_repr_never_recurses_or_raises():
    deep = 1
    for _ in range(100_000):
        deep = [deep]
    assert dacfile.short_repr(deep) == "[[[[...]]]]"
    assert dacfile.short_repr(10**10_000) == "<int of 33220 bits>"
    assert dacfile.short_repr(np.empty((2, 3), object)) == "array(shape=(2, 3), dtype=object)"
    assert dacfile.short_repr("x" * 500, 20) == "'" + "x" * 16 + "..."


def _payload(tmp_path, name, payload: bytes):
    with open(tmp_path / name, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(payload)
    return tmp_path / name


def _rebuilt(state: bytes) -> bytes:
    """A payload that reconstructs an empty array as NumPy does, then BUILDs it with ``state``."""
    return (b"\x80\x04cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
            + state + b"b.")


@pytest.mark.parametrize("payload, fragment", [
    # numpy would allocate 16 GiB of object pointers here, then crash filling them from a 1-item list
    (_rebuilt(b"(K\x01J\xff\xff\xff\x7f\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R\x89]K\x01at"),
     "shape (2147483647,) and dtype object, more than the file's bytes can hold"),
    # "holds objects" flags on a datetime dtype: numpy would read 8 bytes as a pointer
    (_rebuilt(b"(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00M8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff"
              b"\xffJ\xff\xff\xff\xffK?tb\x89]K\x01at"), "gives the dtype datetime64 the state (3, '|'"),
    (b"\x80\x04cnumpy\nndarray\nJ\xff\xff\xff\x7f\x85\x85R.", "calls numpy.ndarray"),
    (b"\x80\x04cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\xff\xff\xff\x7f\x85C\x01b\x87R.",
     "reconstructs an array as _reconstruct("),
    (b"\x80\x04cnumpy\ndtype\nX\x0b\x00\x00\x00(100000,)f8\x89\x88\x87R.", "structured dtype '(100000,)f8'"),
    (b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc.", "corrupt pickle payload (ValueError: expected"),
    (b"\x80\x04" + b"N0" * 2000 + b"N.", "more than 1000 opcodes"),
], ids=["object array 16 GiB", "lying dtype flags", "ndarray call", "reconstruct shape", "subarray dtype",
        "bytes 1 TiB", "many opcodes"])
def test_the_unpickler_refuses_sizes_before_allocating(tmp_path, payload, fragment):
    path = _payload(tmp_path, "bad.dac", payload)
    with pytest.raises(FileFormatError) as e:
        load(path)
    assert_error(e, path, fragment)
