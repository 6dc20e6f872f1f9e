"""Keep a long-running process's freed memory for its next step (glibc's allocator settings).

XLA's CPU runtime allocates each execution's working memory afresh (for the 16 kHz training step,
batch 4 x 0.38 s: one 3.4 GB block) and frees it at the end. glibc serves a block that large from
a fresh ``mmap`` and returns it to the kernel on free, so every step touches ~1 M new pages, which
the kernel zeroes one by one: 3 s of system time a step on 2 CPU cores when the trainer runs alone,
9-14 s when another big process shares the machine (measured: benchmarks/RESULTS.md). With one
arena, no ``mmap`` for large blocks and no trimming, a freed block stays in the process and the
next step reuses it: no page faults after the first step.

These settings must be in place when the process starts (glibc reads ``GLIBC_TUNABLES`` then, and
threads created before a later ``mallopt`` keep their arenas), so :func:`keep_freed_memory`
re-executes the command once with them. The trainer's entry points call it; set
``DAC_JAX_KEEP_MEMORY=0`` to run with the system's defaults. Elsewhere (not Linux with glibc) it
does nothing. The cost: the process's resident memory does not shrink after its peak.
"""

from __future__ import annotations

import os
import platform
import sys

#: the environment variable that turns :func:`keep_freed_memory` off (``0``, ``off``, ``false``, ``no``)
KEEP_MEMORY_ENV = "DAC_JAX_KEEP_MEMORY"

#: one arena for every thread (a large block in another arena would still be mmapped), large
#: blocks from the heap, and freed memory never handed back
TUNABLES = ("glibc.malloc.arena_max=1", "glibc.malloc.mmap_max=0", "glibc.malloc.trim_threshold=68719476736")


def applies() -> bool:
    """Whether this process's allocator is glibc's (Linux) and the setting is not turned off."""
    if os.environ.get(KEEP_MEMORY_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return False
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def tunables_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with :data:`TUNABLES` added to ``GLIBC_TUNABLES``
    (settings already there are kept; ours are appended and so take effect last)."""
    env = dict(os.environ if environ is None else environ)
    present = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    missing = [t for t in TUNABLES if t not in present]
    env["GLIBC_TUNABLES"] = ":".join(present + missing)
    return env


def active() -> bool:
    """Whether this process started with :data:`TUNABLES`."""
    present = os.environ.get("GLIBC_TUNABLES", "").split(":")
    return all(t in present for t in TUNABLES)


def keep_freed_memory() -> None:
    """Re-execute this command (same interpreter, flags and arguments; same process id) with
    :data:`TUNABLES`, unless they are active already or do not apply (:func:`applies`). Call it
    first thing in a command's ``__main__``, before any work: the command starts again from the top."""
    if not applies() or active():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], tunables_environment())
