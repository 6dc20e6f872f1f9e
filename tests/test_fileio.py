"""Safe writes (dac_jax.fileio): nothing of the user's is deleted or replaced, a checkpoint swap
leaves the old or the new checkpoint whole whenever the writer dies, data reaches the disk before
it is renamed, and temporary files of killed runs are cleaned up (real processes, real SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import dac_jax
from dac_jax import fileio
from dac_jax.errors import UsageError
from dac_jax.weights import native

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny():
    return dac_jax.init_model("tiny", seed=0)


def params_equal(a, b) -> bool:
    import jax

    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


# -- checkpoint folders ------------------------------------------------------------------------------


def test_a_save_never_deletes_the_users_files(tmp_path, tiny):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    (folder / "sub").mkdir()
    (folder / "sub" / "take1.wav").write_bytes(b"RIFF....")
    before = files_of(folder)
    with pytest.raises(UsageError, match="holds more than a dac-jax checkpoint"):
        tiny.save(folder)
    assert files_of(folder) == before
    # a checkpoint folder with one file of the user's added is the user's too
    ckpt = tiny.save(tmp_path / "ckpt")
    (ckpt / "README").write_text("my notes about this model")
    with pytest.raises(UsageError, match="refusing to replace it"):
        tiny.save(ckpt)
    assert (ckpt / "README").read_text() == "my notes about this model"
    # a file where the folder should go
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        tiny.save(tmp_path / "f.txt")
    assert (tmp_path / "f.txt").read_text() == "x"


def test_a_checkpoint_is_replaced_whole_and_an_empty_folder_filled_in_place(tmp_path, tiny):
    other = dac_jax.init_model("tiny", seed=1)
    ckpt = tiny.save(tmp_path / "ckpt")
    other.save(ckpt)
    assert params_equal(dac_jax.load_model(ckpt).variables, other.variables)
    assert sorted(os.listdir(ckpt)) == ["config.json", "params.msgpack"] and os.listdir(tmp_path) == ["ckpt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    inode = empty.stat().st_ino
    tiny.save(empty)  # e.g. `cd empty && python -m dac_jax convert w.pth .`: the folder keeps its inode
    assert empty.stat().st_ino == inode
    assert params_equal(dac_jax.load_model(empty).variables, tiny.variables)


SAVER = textwrap.dedent("""
    import sys, dac_jax
    a, b = dac_jax.init_model("tiny", seed=0), dac_jax.init_model("tiny", seed=1)
    a.save(sys.argv[1])
    print("ready", flush=True)
    while True:
        b.save(sys.argv[1])
        a.save(sys.argv[1])
""")


def test_sigkill_at_any_moment_leaves_the_old_or_the_new_checkpoint_whole(tmp_path, tiny):
    """A process swaps two checkpoints into one folder as fast as it can; killed at 6 moments."""
    other = dac_jax.init_model("tiny", seed=1)
    target = tmp_path / "ckpt"
    rng = np.random.default_rng(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, env=ENV, cwd=tmp_path)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        loaded = dac_jax.load_model(target).variables
        assert params_equal(loaded, tiny.variables) or params_equal(loaded, other.variables)
        assert set(os.listdir(target)) == {"config.json", "params.msgpack"}
    leftovers = [n for n in os.listdir(tmp_path) if fileio.is_temp(n)]
    tiny.save(target)  # the next save removes what the killed writers left beside the folder
    assert [n for n in os.listdir(tmp_path) if n != "ckpt"] == [], leftovers


# -- files -------------------------------------------------------------------------------------------------


def test_no_overwrite_refuses_an_existing_file_and_one_that_appears_meanwhile(tmp_path):
    target = tmp_path / "x.dac"
    target.write_bytes(b"the user's")
    with pytest.raises(UsageError, match="already exists; pass --overwrite"):
        with fileio.atomic_path(target, overwrite=False) as tmp:
            tmp.write_bytes(b"ours")
    other = tmp_path / "y.dac"
    with pytest.raises(FileExistsError):
        with fileio.atomic_path(other, overwrite=False) as tmp:
            tmp.write_bytes(b"ours")
            other.write_bytes(b"someone else's, written while we worked")
    assert target.read_bytes() == b"the user's" and other.read_bytes().startswith(b"someone else's")
    assert sorted(os.listdir(tmp_path)) == ["x.dac", "y.dac"]  # no temporary file left
    with fileio.atomic_path(target) as tmp:  # overwrite=True (the API's default) replaces
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_writes_are_synced_before_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", spy)
    dac_jax.DACFile(codes=np.zeros((1, 2, 3), np.uint16), chunk_length=3, original_length=100,
                    input_db=np.zeros(1, np.float32), channels=1, sample_rate=16000, padding=True,
                    dac_version="1.0.0").save(tmp_path / "a.dac")
    assert len(synced) == 2 and fileio.is_temp(Path(synced[0]).name) and synced[1] == str(tmp_path)
    synced.clear()
    dac_jax.init_model("tiny", seed=0).save(tmp_path / "ckpt")
    names = [Path(p).name for p in synced]
    assert {"params.msgpack", "config.json"} <= set(names) and synced[-1] == str(tmp_path)


def test_long_names_fit_and_temporary_names_are_short(tmp_path):
    target = tmp_path / ("x" * 251 + ".dac")  # 255 bytes: the longest name the filesystem takes
    with fileio.atomic_path(target) as tmp:
        assert len(tmp.name.encode()) < 120
        tmp.write_bytes(b"1")
    assert target.read_bytes() == b"1"


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from dac_jax.fileio import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_temporary_files_of_killed_writers_are_removed_and_nothing_else(tmp_path):
    res = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "a.dac")], env=ENV, timeout=120)
    assert res.returncode == -signal.SIGKILL
    (stale,) = os.listdir(tmp_path)
    assert fileio.is_temp(stale)
    host = stale.split(".dacjax-")[1].split("-")[0]
    alive = f".b.dac.dacjax-{host}-1-0123abcd.tmp"  # pid 1 is running
    elsewhere = ".c.dac.dacjax-ffffff-12345-0123abcd.tmp"  # another host's: its writer may be alive
    users = ".d.dac.tmp"
    for name in (alive, elsewhere, users):
        (tmp_path / name).write_text("x")
    assert fileio.remove_stale_temps(tmp_path) == [tmp_path / stale]
    assert sorted(os.listdir(tmp_path)) == sorted([alive, elsewhere, users])


def test_check_writable_names_the_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        fileio.check_writable(tmp_path / "file" / "out" / "a.dac")
    with pytest.raises(UsageError, match="cannot write there"):
        fileio.check_writable("/proc/dac_jax_out/a.dac")  # not writable, even for root
    with pytest.raises(UsageError, match="is a folder"):
        fileio.check_writable(tmp_path)
    with pytest.raises(UsageError, match="already exists"):
        fileio.check_writable(tmp_path / "file", overwrite=False)
    fileio.check_writable(tmp_path / "new" / "deeper" / "a.dac")
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert native.replaceable(tmp_path / "nope") is False
