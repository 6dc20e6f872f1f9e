"""dac_jax.memory: a command that keeps its freed memory re-executes itself once (same process)
with glibc's settings, and glibc then serves a large block from its heap, also for another thread,
instead of mapping fresh pages (real processes, glibc's own accounting)."""

import os
import subprocess
import sys
import textwrap

import pytest

from dac_jax import memory

pytestmark = pytest.mark.skipif(not memory.applies(), reason="glibc's allocator settings apply on Linux with glibc only")

# a 256 MB block allocated by a second thread (as XLA's worker threads allocate a step's working
# memory), and how much of it glibc mapped apart from its heap (mallinfo2's hblkhd): a mapped block
# is handed back to the kernel on free, and the next one page-faults afresh
SCRIPT = textwrap.dedent(
    """
    import ctypes, os, threading
    print("started", os.getpid(), flush=True)
    from dac_jax.memory import keep_freed_memory
    keep_freed_memory()

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    mapped = {}

    def allocate():
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(256 << 20)
        mapped["bytes"] = libc.mallinfo2().hblkhd - before
        libc.free(block)

    thread = threading.Thread(target=allocate)
    thread.start()
    thread.join()
    print("mapped", mapped["bytes"], "tunables", os.environ.get("GLIBC_TUNABLES", ""), flush=True)
    """
)
BLOCK = 256 << 20


def run_script(**env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", memory.KEEP_MEMORY_ENV)}
    environ.update(env)
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=environ, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split("\n")


def mapped_of(lines: list[str]) -> int:
    (line,) = [line for line in lines if line.startswith("mapped")]
    return int(line.split()[1])


def test_kept_memory_serves_large_blocks_from_the_heap():
    lines = run_script()
    starts = [line for line in lines if line.startswith("started")]
    assert len(starts) == 2 and len({line.split()[1] for line in starts}) == 1  # re-executed once, same process
    (report,) = [line for line in lines if line.startswith("mapped")]
    assert all(t in report for t in memory.TUNABLES)
    assert mapped_of(lines) == 0


def test_turned_off_it_runs_once_with_the_systems_allocator():
    lines = run_script(**{memory.KEEP_MEMORY_ENV: "0"})
    assert len([line for line in lines if line.startswith("started")]) == 1
    assert mapped_of(lines) >= BLOCK  # the system's glibc maps the block apart, and unmaps it on free


def test_existing_tunables_are_kept():
    env = memory.tunables_environment({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0", "PATH": "/bin"})
    assert env["GLIBC_TUNABLES"].split(":") == ["glibc.malloc.tcache_count=0", *memory.TUNABLES]
    assert env["PATH"] == "/bin"
    assert memory.tunables_environment(env)["GLIBC_TUNABLES"] == env["GLIBC_TUNABLES"]  # idempotent
