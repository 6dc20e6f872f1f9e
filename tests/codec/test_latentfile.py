"""The latent file's integrity field and its bounds on declared sizes (no model needed)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from dac_jax.codec import latentfile
from dac_jax.codec.latentfile import LatentFile
from dac_jax.errors import FileFormatError

HOP = 6
HUGE = "<10**5000>"  # json.dumps cannot write such an int: rewrite() puts it in the text


def latents(frames: int = 40, seed: int = 0) -> LatentFile:
    rng = np.random.default_rng(seed)
    z, mu, logs = (rng.standard_normal((2, 8, frames)).astype(np.float32) for _ in range(3))
    return LatentFile(
        z=z, mu=mu, logs=logs, model_config={"encoder_rates": [2, 3], "latent_dim": 8}, sample_rate=24000,
        hop_length=HOP, length=frames * HOP - 5, original_sample_rate=16000, original_length=(frames * HOP - 5) * 2 // 3,
        channels=2, input_db=np.array([-21.5], np.float32),
    )


def entries(path) -> dict:
    with np.load(path) as archive:  # our own file: trusted
        return {k: archive[k] for k in archive.files}


def rewrite(entries: dict, out, meta: dict | None = None, drop: tuple[str, ...] = (), **arrays):
    """A valid .npz (correct CRCs) of ``entries`` with changed arrays or metadata fields."""
    m = json.loads(str(entries["metadata"]))
    m.update(meta or {})
    for key in drop:
        del m[key]
    with open(out, "wb") as f:
        text = json.dumps(m).replace(json.dumps(HUGE), "1" + "0" * 5000)
        np.savez(f, **{**entries, **arrays, "metadata": np.array(text)})
    return out


def load_error(path) -> str:
    with pytest.raises(FileFormatError) as e:
        latentfile.load(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


def test_files_carry_a_checksum_of_arrays_and_metadata(tmp_path):
    f = latents()
    path = f.save(tmp_path / "a")
    meta = json.loads(str(entries(path)["metadata"]))
    assert meta["sha256"] == f.checksum(meta) and len(meta["sha256"]) == 64
    back = latentfile.load(path)
    for name in ("z", "mu", "logs", "input_db"):
        np.testing.assert_array_equal(getattr(back, name), getattr(f, name))
    assert back.metadata() == f.metadata()


@pytest.mark.parametrize("change", [
    dict(z=lambda a: a + np.float32(1e-6)),
    dict(mu=lambda a: -a),
    dict(logs=lambda a: a[:, ::-1].copy()),
    dict(meta={"input_db": [-21.0]}),
    dict(meta={"normalize_db": -16.0}),
    dict(meta={"original_length": 100}),
    dict(meta={"model_config": {"encoder_rates": [2, 3], "latent_dim": 9}}),
], ids=["z", "mu", "logs", "input_db", "normalize_db", "original_length", "model_config"])
def test_any_change_is_a_checksum_mismatch(tmp_path, change):
    path = latents().save(tmp_path / "a")
    e = entries(path)
    arrays = {k: fn(e[k]) for k, fn in change.items() if k != "meta"}
    bad = rewrite(e, tmp_path / "bad.npz", change.get("meta"), **arrays)
    assert "checksum mismatch: the file is corrupt" in load_error(bad)


def test_files_without_a_checksum_still_load(tmp_path):
    f = latents()
    old = rewrite(entries(f.save(tmp_path / "a")), tmp_path / "old.npz", drop=("sha256",))
    np.testing.assert_array_equal(latentfile.load(old).z, f.z)


@pytest.mark.parametrize("meta, fragment", [
    ({"sample_rate": 10**9}, "sample_rate must be <= 384000"),
    ({"original_sample_rate": 10**9}, "original_sample_rate must be <= 384000"),
    ({"hop_length": 10**6, "length": 10**6}, "hop_length must be <= 2400"),
    ({"original_length": 10**12}, "original_length must be <= 159"),
    ({"sample_rate": HUGE}, "not valid JSON"),
    ({"channels": True}, "channels must be an int, got the bool True"),
    ({"normalize_db": 10**400}, "normalize_db must be a number or null, got <int of 1329 bits>"),
], ids=["rate", "original rate", "hop", "original_length", "huge int", "bool", "normalize_db"])
def test_implausible_metadata_is_refused(tmp_path, meta, fragment):
    path = latents().save(tmp_path / "a")
    assert fragment in load_error(rewrite(entries(path), tmp_path / "bad.npz", meta))


def _npz(members: dict[str, bytes], out, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return out


def _npy(array) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, array)
    return f.getvalue()


def test_declared_sizes_are_checked_before_reading(tmp_path):
    members = {k: _npy(v) for k, v in entries(latents().save(tmp_path / "a")).items()}
    lying = io.BytesIO()
    np.lib.format.write_array_header_1_0(lying, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 8, 40)})
    bad = _npz({**members, "z": lying.getvalue() + bytes(100)}, tmp_path / "lying.npz")
    assert "z declares shape (1000000000, 8, 40) of float32 (1280000000000 bytes) but holds 100 bytes" in load_error(bad)
    bomb = _npz({**members, "z": members["z"] + bytes(4 << 20)}, tmp_path / "bomb.npz", zipfile.ZIP_DEFLATED)
    assert "more than 8 times the archive's" in load_error(bomb)
    bz2 = _npz(members, tmp_path / "bz2.npz", zipfile.ZIP_BZIP2)
    assert "uses compression method 12" in load_error(bz2)
    # np.savez_compressed files are read (deflated members)
    f = latents()
    with open(tmp_path / "deflated.npz", "wb") as out:
        np.savez_compressed(out, **entries(f.save(tmp_path / "b")))
    np.testing.assert_array_equal(latentfile.load(tmp_path / "deflated.npz").z, f.z)
