"""Hostile and corrupt ``.dac`` and latent files, fuzzed with a fixed seed.

Every case must end in one of two ways: a one-line :class:`FileFormatError` whose message starts with
the file's path, or (a change no check can see) a file that decodes exactly like the unmodified one.
Never another exception, and reading allocates little (``tracemalloc`` peak) and returns quickly.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import pickletools
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import dac_jax
from dac_jax.audio import synth
from dac_jax.codec import dacfile, latentfile
from dac_jax.errors import FileFormatError

SEED = 0
CUTS = 60  # truncation offsets per kind of file, plus the edges
FLIPS = 150  # random single-byte changes per kind of file
MAX_LOAD_SECONDS = 1.0  # a load takes ~1 ms; a hang or a gigabyte allocation takes far longer
# Reading a case allocated at most ~0.4 MiB (measured): bounded at 16 MiB plus 4x the file.
ALLOCATION_BASE = 16 << 20
HUGE = 10**10  # a declared size no file of these tests can hold


def alloc_limit(size: int) -> int:
    return ALLOCATION_BASE + 4 * size


# ---------------------------------------------------------------------------------------------
# the files and how a case is judged
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dac_case(tmp_path_factory):
    """(codec, path of a real .dac file of the tiny model, its decoded samples)."""
    codec = dac_jax.init_model("tiny", seed=0)
    audio = synth.speech_like(0.2, 16000, seed=1).astype(np.float32)
    path = codec.compress(audio, 16000).save(tmp_path_factory.mktemp("dac") / "good.dac")
    return codec, path, codec.decompress(path).samples


@pytest.fixture(scope="module")
def latent_case(tmp_path_factory):
    """(vae, path of a real latent file of the tiny DAC-VAE, its decoded samples)."""
    vae = dac_jax.init_vae("vae-tiny", seed=3)
    audio = synth.speech_like(0.1, 24000, seed=2).astype(np.float32)
    path = vae.compress(audio, 24000).save(tmp_path_factory.mktemp("latent") / "good.npz")
    return vae, path, vae.decompress(path).samples


class Judge:
    """Loads each case under ``tracemalloc`` and checks its outcome; keeps the measurements."""

    def __init__(self, model, load, baseline):
        self.model, self.load, self.baseline = model, load, baseline
        self.outcomes = {"error": 0, "same": 0}
        self.max_peak = 0  # bytes
        self.max_seconds = 0.0

    def __call__(self, path: Path, data: bytes, may_load: bool) -> str:
        path.write_bytes(data)
        tracemalloc.start()
        start = time.perf_counter()
        try:
            loaded = self.load(path)
            outcome = "same"
        except FileFormatError as e:  # anything else propagates and fails the test
            loaded, outcome = None, "error"
            message = str(e)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
        finally:
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < alloc_limit(len(data)), (path.name, peak)
        assert seconds < MAX_LOAD_SECONDS, (path.name, seconds)
        self.max_peak, self.max_seconds = max(self.max_peak, peak), max(self.max_seconds, seconds)
        if loaded is not None:
            assert may_load, f"{path.name}: a crafted file loaded"
            np.testing.assert_array_equal(self.model.decompress(loaded).samples, self.baseline)
        self.outcomes[outcome] += 1
        return outcome


def cuts_and_flips(data: bytes, rng: np.random.Generator):
    """(name, bytes) of truncations at many offsets and of random single-byte changes."""
    cuts = {0, 1, 7, 8, 9, 10, 11, len(data) // 2, len(data) - 2, len(data) - 1}
    cuts |= set(rng.integers(1, len(data), CUTS).tolist())
    for cut in sorted(cuts):
        yield f"cut{cut}", data[:cut]
    for i in range(FLIPS):
        at = int(rng.integers(len(data)))
        flipped = bytearray(data)
        flipped[at] ^= int(rng.integers(1, 256))
        yield f"flip{i}@{at}", bytes(flipped)


# ---------------------------------------------------------------------------------------------
# crafted .dac payloads
# ---------------------------------------------------------------------------------------------


def npy_object(payload: bytes) -> bytes:
    """A .npy file of a 0-d object array whose pickle is ``payload``."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
    return f.getvalue() + payload


def pickled(obj) -> bytes:
    wrapper = np.empty((), dtype=object)
    wrapper[()] = obj
    return npy_object(pickle.dumps(wrapper, protocol=4))


def globl(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def pint(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def pbytes(b: bytes) -> bytes:
    return b"C" + bytes([len(b)]) + b


def pstr(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s)) + s.encode()


def reconstruct(shape: tuple[int, ...], dtype: bytes, module: str = "numpy._core.multiarray") -> bytes:
    """``_reconstruct(ndarray, shape, dtype)``; a shape of 1 or 2 ints, each below 2**31."""
    dims = b"".join(pint(n) for n in shape) + {1: b"\x85", 2: b"\x86"}[len(shape)]
    return globl(module, "_reconstruct") + globl("numpy", "ndarray") + dims + dtype + b"\x87R"


def np_dtype(spec: str) -> bytes:
    return globl("numpy", "dtype") + pstr(spec) + b"\x89\x88\x87R"  # dtype(spec, False, True)


def set_state(shape: tuple[int, ...], dtype_spec: str, data: bytes) -> bytes:
    """BUILD with ``(1, shape, dtype(dtype_spec), False, data)`` on the array below it."""
    dims = b"".join(pint(n) for n in shape) + {1: b"\x85", 2: b"\x86"}[len(shape)]
    return b"(" + b"K\x01" + dims + np_dtype(dtype_spec) + b"\x89" + data + b"tb"


def crafted_dacs(good: dict) -> dict[str, bytes]:
    """Hostile or malformed ``.dac`` files, by name."""

    def with_meta(**changes):
        a = copy.deepcopy(good)
        a["metadata"].update(changes)
        return pickled(a)

    def nested(depth: int):
        value = 1
        for _ in range(depth):
            value = [value]
        return value

    proto = b"\x80\x04"
    empty = reconstruct((0,), pbytes(b"b"))
    return {
        # sizes the metadata declares
        "sample_rate 1e9": with_meta(sample_rate=10**9),
        "sample_rate 10**5000": with_meta(sample_rate=10**5000),
        "sample_rate -10**5000": with_meta(sample_rate=-(10**5000)),
        "sample_rate 0": with_meta(sample_rate=0),
        "original_length 1e12": with_meta(original_length=10**12),
        "original_length -5": with_meta(original_length=-5),
        "channels -1": with_meta(channels=-1),
        "chunk_length 10**30": with_meta(chunk_length=10**30),
        "input_db 1e30": with_meta(input_db=np.array([1e30], np.float32)),
        "input_db inf": with_meta(input_db=np.array([np.inf], np.float32)),
        # wrong types
        "sample_rate True": with_meta(sample_rate=True),
        "channels False": with_meta(channels=False),
        "padding 1": with_meta(padding=1),
        "chunk_length 1.5": with_meta(chunk_length=1.5),
        "sample_rate str": with_meta(sample_rate="16000"),
        "metadata list": pickled({**good, "metadata": [1, 2]}),
        "codes bool": pickled({**good, "codes": good["codes"].astype(bool)}),
        "codes float": pickled({**good, "codes": good["codes"].astype(np.float32)}),
        "codes 0-d": pickled({**good, "codes": np.uint16(3)}),
        # nesting
        "nested sample_rate 400": with_meta(sample_rate=nested(400)),
        "nested key 300": pickled({**good, tuple([()] * 3): 1, str(nested(3)): nested(300)}),
        "nested 100000": npy_object(proto + b"]" * 100_000 + b"a" * 99_999 + b"."),
        # declared sizes the unpickler would allocate
        "ndarray call": npy_object(proto + globl("numpy", "ndarray") + pint(2**31 - 1) + b"\x85\x85R."),
        "reconstruct huge": npy_object(proto + reconstruct((2**31 - 1, 2**31 - 1), pbytes(b"b")) + b"."),
        "reconstruct numpy1 name": npy_object(
            proto + reconstruct((2**31 - 1,), pbytes(b"b"), "numpy.core.multiarray") + b"."
        ),
        "reconstruct subarray dtype": npy_object(proto + reconstruct((2,), np_dtype("(100000,100000)f8")) + b"."),
        "reconstruct other type": npy_object(
            proto + globl("numpy._core.multiarray", "_reconstruct") + globl("numpy", "dtype") + pint(1) + b"\x85"
            + pbytes(b"b") + b"\x87R."
        ),
        "setstate object huge": npy_object(proto + empty + set_state((2**31 - 1,), "O8", b"]K\x01a") + b"."),
        "setstate bytes huge": npy_object(proto + empty + set_state((2**31 - 1, 2**31 - 1), "u1", pbytes(b"abc")) + b"."),
        "setstate bytes short": npy_object(proto + empty + set_state((100,), "u2", pbytes(b"abc")) + b"."),
        "setstate structured": npy_object(proto + empty + set_state((1,), "(1000,1000)f8", pbytes(b"abc")) + b"."),
        "setstate not a tuple": npy_object(proto + empty + b"K\x01b."),
        "dtype huge subarray": npy_object(proto + np_dtype("(100000,100000,100000)f8") + b"."),
        # declared lengths of the pickle's own opcodes
        "binbytes8 1 TiB": npy_object(proto + b"\x8e" + struct.pack("<Q", 2**40) + b"abc."),
        "binbytes8 8 GiB": npy_object(proto + b"\x8e" + struct.pack("<Q", 2**33) + b"abc."),
        "binunicode8 1 TiB": npy_object(proto + b"\x8d" + struct.pack("<Q", 2**40) + b"abc."),
        "long4 2 GiB": npy_object(proto + b"\x8b" + struct.pack("<i", 2**31 - 1) + b"\x01."),
        "long text 10000 digits": npy_object(b"L" + b"9" * 10_000 + b"L\n."),
        "frame 8 GiB": npy_object(proto + b"\x95" + struct.pack("<Q", 2**33) + b"N."),
        "many opcodes": npy_object(proto + b"N0" * 5_000 + b"N."),
        # code the unpickler must not run
        "os.system": npy_object(b"cos\nsystem\n" + pstr("true") + b"\x85R."),
        "persistent id": npy_object(proto + b"Pfoo\n."),
        # our integrity record
        "checksum wrong": pickled({**good, dacfile.INTEGRITY_KEY: {"format": 1, "sha256": "0" * 64}}),
        "checksum format 2": pickled({**good, dacfile.INTEGRITY_KEY: {"format": 2, "sha256": "0" * 64}}),
        "checksum record list": pickled({**good, dacfile.INTEGRITY_KEY: [1]}),
        "checksum record nested": pickled({**good, dacfile.INTEGRITY_KEY: nested(300)}),
        "codes changed, record kept": pickled({**good, "codes": (good["codes"] + 1) % 32}),
    }


# ---------------------------------------------------------------------------------------------
# crafted latent files
# ---------------------------------------------------------------------------------------------


def npy_member(array: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, array, allow_pickle=True)
    return f.getvalue()


def npy_lying(shape: tuple[int, ...], dtype: str, data: bytes) -> bytes:
    """A .npy member whose header declares ``shape`` whatever ``data`` holds."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
    return f.getvalue() + data


def npz(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return f.getvalue()


def zip_bomb(members: dict[str, bytes], inflated: int) -> bytes:
    """``members`` with ``z.npy`` replaced by a deflated member of ``inflated`` bytes (mostly zeros)."""
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if name != "z":
                archive.writestr(f"{name}.npy", data)
        with archive.open("z.npy", "w", force_zip64=True) as member:
            member.write(npy_lying((inflated // 4,), "<f4", b""))
            block = bytes(1 << 20)
            for _ in range(inflated >> 20):
                member.write(block)
    return f.getvalue()


def patch_central(data: bytes, name: str, offset: int, fmt: str, value: int) -> bytes:
    """``data`` with a field of ``name``'s central-directory entry changed (offsets of APPNOTE 4.3.12)."""
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_length] == name.encode():
            out = bytearray(data)
            struct.pack_into(fmt, out, at + offset, value)
            return bytes(out)
        at += 4


def crafted_latents(entries: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Hostile or malformed latent files, by name."""
    members = {k: npy_member(v) for k, v in entries.items()}
    meta = json.loads(str(entries["metadata"]))

    def with_meta(**changes):
        return npz({**members, "metadata": npy_member(np.array(json.dumps({**meta, **changes})))})

    def with_text(text: str):
        return npz({**members, "metadata": npy_member(np.array(text))})

    z = entries["z"]
    good = npz(members)
    return {
        "z declares huge shape": npz({**members, "z": npy_lying((HUGE, *z.shape[1:]), "<f4", z.tobytes())}),
        "z declares a few bytes more": npz({**members, "z": npy_lying((z.shape[0] + 1, *z.shape[1:]), "<f4", z.tobytes())}),
        "metadata declares huge": npz({**members, "metadata": npy_lying((), f"<U{HUGE}", b"{}")}),
        "z of objects": npz({**members, "z": npy_member(np.array([{}], dtype=object))}),
        "z of itemsize 0": npz({**members, "z": npy_lying((10,), "|V0", b"")}),
        "zip bomb 256 MiB": zip_bomb(members, 256 << 20),
        "zip bomb, size hidden": patch_central(zip_bomb(members, 64 << 20), "z.npy", 24, "<I", 1000),
        "unknown compression": patch_central(good, "z.npy", 10, "<H", 99),
        "encrypted flag": patch_central(good, "z.npy", 8, "<H", 1),
        "missing member": npz({k: v for k, v in members.items() if k != "mu"}),
        "metadata not text": npz({**members, "metadata": npy_member(np.arange(3))}),
        "metadata nested 100000": with_text("[" * 100_000 + "]" * 100_000),
        "metadata nested dict": with_text('{"a":' * 50_000 + "1" + "}" * 50_000),
        "metadata 10**5000": with_text(json.dumps(meta).replace('"sample_rate": 24000', '"sample_rate": 1' + "0" * 5000)),
        "metadata not json": with_text("{"),
        "sample_rate 1e9": with_meta(sample_rate=10**9),
        "original_sample_rate 1e9": with_meta(original_sample_rate=10**9),
        "original_length 1e12": with_meta(original_length=10**12),
        "hop_length 1e9": with_meta(hop_length=10**9, length=10**9),
        "length -1": with_meta(length=-1),
        "channels True": with_meta(channels=True),
        "seed -1": with_meta(seed=-1),
        "normalize_db 1e400": with_text(
            json.dumps({**meta, "normalize_db": 0}).replace('"normalize_db": 0', '"normalize_db": 1' + "0" * 400)
        ),
        "input_db nested": with_meta(input_db=[[[[1]]]] * 3),
        "input_db huge int": with_meta(input_db=[10**400]),
        "latent_dim 10**400": with_meta(latent_dim=10**400),
        "checksum wrong": with_meta(sha256="0" * 64),
        "checksum not a str": with_meta(sha256=[1, 2]),
        "z changed, checksum kept": npz({**members, "z": npy_member(z + np.float32(1e-3))}),
    }


# ---------------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------------


def test_dac_files(dac_case, tmp_path):
    codec, good_path, baseline = dac_case
    judge = Judge(codec, dacfile.load, baseline)
    data = good_path.read_bytes()
    rng = np.random.default_rng(SEED)
    for name, mutated in cuts_and_flips(data, rng):
        judge(tmp_path / f"{name}.dac", mutated, may_load=True)
    good = np.load(good_path, allow_pickle=True)[()]  # our own file: trusted
    crafted = crafted_dacs(good)
    for name, bad in crafted.items():
        judge(tmp_path / f"{name}.dac", bad, may_load=False)
    # loading files are flips of framing bytes (protocol, frame length, header padding): ~0.5 % measured
    assert judge.outcomes["same"] <= 0.05 * sum(judge.outcomes.values()), judge.outcomes
    print(f"\n.dac: {judge.outcomes}, file {len(data)} bytes, max load peak {judge.max_peak / 2**20:.2f} MiB, "
          f"max load {judge.max_seconds * 1e3:.1f} ms")


def test_latent_files(latent_case, tmp_path):
    vae, good_path, baseline = latent_case
    judge = Judge(vae, latentfile.load, baseline)
    data = good_path.read_bytes()
    rng = np.random.default_rng(SEED + 1)
    for name, mutated in cuts_and_flips(data, rng):
        judge(tmp_path / f"{name}.npz", mutated, may_load=True)
    with np.load(good_path) as archive:  # our own file: trusted
        entries = {k: archive[k] for k in archive.files}
    crafted = crafted_latents(entries)
    for name, bad in crafted.items():
        judge(tmp_path / f"{name}.npz", bad, may_load=False)
    # loading files are flips of zip fields nothing reads (times, attributes): ~1 % measured
    assert judge.outcomes["same"] <= 0.1 * sum(judge.outcomes.values()), judge.outcomes
    print(f"\nlatents: {judge.outcomes}, file {len(data)} bytes, max load peak {judge.max_peak / 2**20:.2f} MiB, "
          f"max load {judge.max_seconds * 1e3:.1f} ms")


def test_every_change_of_the_codes_is_a_checksum_mismatch(dac_case, tmp_path):
    codec, good_path, baseline = dac_case
    data = good_path.read_bytes()
    header = data.index(b"\x80\x04")  # the pickle starts after the .npy header
    ops = list(pickletools.genops(io.BytesIO(data[header:])))
    opcode, codes, at = max(ops, key=lambda op: len(op[1]) if isinstance(op[1], bytes) else 0)
    first = header + at + 1 + len(data[header + at + 1 :].split(codes, 1)[0])  # after the opcode and its length
    assert opcode.name == "BINBYTES" and data[first : first + len(codes)] == codes
    rng = np.random.default_rng(SEED + 2)
    judge = Judge(codec, dacfile.load, baseline)
    for i, offset in enumerate(rng.choice(len(codes), 100, replace=False)):
        flipped = bytearray(data)
        flipped[first + offset] ^= 1 << int(rng.integers(8))
        path = tmp_path / f"bit{i}.dac"
        judge(path, bytes(flipped), may_load=False)
        with pytest.raises(FileFormatError, match="checksum mismatch: the file is corrupt"):
            dacfile.load(path)
