"""Safe writes: a file or folder appears whole under its final name, or not at all, and stays there.

Every file dac-jax writes goes through :func:`atomic_path`:

- the data is written under a temporary name in the target's folder, flushed to disk (``fsync`` of
  the file, or of every file of a folder, and of the folder itself), then renamed over the target,
  and the parent folder is synced so that the rename itself survives a power cut;
- ``overwrite=False`` refuses an existing target, atomically (a hard link or a no-replace rename: a
  file that appears meanwhile is not replaced);
- a folder target is replaced only when it is a whole dac-jax checkpoint (``replaceable``) and then
  by an atomic exchange: at every moment the target is the old folder or the new one, never a mix,
  never missing. Anything else in an existing folder is the user's, so the write is refused.

Temporary names say who made them (``.<name>.dacjax-<host>-<pid>-<random>.tmp``, short enough for a
255-byte name limit whatever the target's length); :func:`remove_stale_temps` deletes those whose
writer on this host is gone (a run killed by SIGKILL), and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Callable, Iterator, Optional

from dac_jax.errors import UsageError

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TEMP = re.compile(r"^\.(?P<name>.*)\.dacjax-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}\.tmp$", re.DOTALL)
_NAME_BYTES = 64  # of the target's name kept in a temporary name (the rest of it is ~40 bytes)


def temp_name(target: Path) -> Path:
    """A fresh temporary name beside ``target``, recognisable by :func:`remove_stale_temps`."""
    stem = target.name.encode()[:_NAME_BYTES].decode(errors="ignore")
    return target.parent / f".{stem}.dacjax-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def is_temp(name: str) -> bool:
    """Whether ``name`` is a temporary name of :func:`temp_name`'s making (any host, any process)."""
    return bool(_TEMP.match(name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files and folders in ``folder`` that a dac-jax process on this host left
    behind when it died; return them. Another host's, a live process's, and anything not named
    like ours are left alone."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and m["host"] == _HOST and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems cannot sync a folder; the data itself is synced
        if not directory or e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for root, _, files in os.walk(path):
            for name in files:
                _fsync(Path(root) / name)
            _fsync(Path(root), directory=True)
    else:
        _fsync(path)


# renameat2(2) flags (Linux >= 3.15; glibc >= 2.28 exports the call)
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2``; False where the system or the filesystem lacks it."""
    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if call(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _exchange(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target`` and the old ``target`` at ``new``; atomically where the
    filesystem can, else by two renames (in between, the old folder is whole under a temporary name)."""
    if _renameat2(new, target, _RENAME_EXCHANGE):
        return
    aside = temp_name(target)
    os.rename(target, aside)
    os.rename(new, target)
    os.rename(aside, new)


def _place_new(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, failing with FileExistsError if ``target`` exists."""
    if _renameat2(tmp, target, _RENAME_NOREPLACE):
        return
    if tmp.is_dir():  # no atomic no-replace rename for folders here: check, then rename
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "File exists", str(target))
        os.rename(tmp, target)
        return
    os.link(tmp, target)  # fails if target exists
    os.unlink(tmp)


#: what a folder that ``replaceable`` accepts holds, for the refusal message
NATIVE_FILES = "a dac-jax checkpoint (config.json, params.msgpack)"


def _refusal(target: Path, overwrite: bool, replaceable: Optional[Callable[[Path], bool]], what: str,
             holds: str = NATIVE_FILES) -> Optional[str]:
    """Why :func:`atomic_path` may not write ``target``, or None."""
    if target.is_dir():
        if replaceable is None:
            return f"{target}: is a folder; the {what} must be a file"
        if not replaceable(target):
            return (f"{target}: the folder exists and holds more than {holds}; "
                    f"refusing to replace it: choose a new or empty folder")
    elif os.path.lexists(target) and replaceable is not None:
        return f"{target}: is a file; the {what} is a folder"
    if os.path.lexists(target) and not overwrite and not (target.is_dir() and not any(os.scandir(target))):
        return f"{target}: already exists; pass --overwrite to replace it"
    return None


def check_writable(target: str | Path, *, overwrite: bool = True,
                   replaceable: Optional[Callable[[Path], bool]] = None, what: str = "output",
                   holds: str = NATIVE_FILES) -> None:
    """Raise :class:`UsageError` (one line) if :func:`atomic_path` would refuse ``target``: an
    existing file without ``overwrite``, an existing folder that ``replaceable`` does not accept
    (``None``: no folder may be replaced), or a parent that is a file or cannot be created."""
    target = Path(target)
    reason = _refusal(target, overwrite, replaceable, what, holds)
    if reason:
        raise UsageError(reason)
    check_folder(target.parent)


def check_folder(folder: str | Path) -> None:
    """Raise :class:`UsageError` unless files can be written in ``folder`` (created if missing):
    found before any work, not as an errno per file after it."""
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{folder}: cannot create the folder: {existing} is a file")
    probe = temp_name(existing / "probe")
    try:
        probe.mkdir()
    except OSError as e:
        raise UsageError(f"{folder}: cannot write there ({e.strerror or e})") from None
    probe.rmdir()


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True,
                replaceable: Optional[Callable[[Path], bool]] = None, holds: str = NATIVE_FILES) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; the block writes a file or a folder there. If the block
    succeeds, the data is synced and renamed to ``path``; if not, it is removed.

    Refused with a one-line :class:`UsageError` before anything is written: an existing ``path``
    with ``overwrite=False``, a folder at ``path`` that ``replaceable`` does not accept (``None``: the
    target is a file; ``holds`` says what it accepts), a file where a folder is wanted. A folder is
    replaced by an atomic exchange.
    A file that appears at ``path`` while the block runs is not replaced with ``overwrite=False``
    (``FileExistsError``).
    """
    path = Path(os.path.abspath(path))
    reason = _refusal(path, overwrite, replaceable, "output", holds)
    if reason:
        raise UsageError(reason)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"{path}: cannot create its folder: a file stands in its path") from None
    tmp = temp_name(path)
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.is_dir() and tmp.is_dir():
            if not replaceable(path):  # it changed while we wrote
                raise UsageError(f"{path}: the folder changed during the write and now holds more than {holds}")
            _exchange(tmp, path)  # tmp now holds the old checkpoint, removed below
        elif overwrite:
            os.replace(tmp, path)
        else:
            _place_new(tmp, path)
        _fsync(path.parent, directory=True)
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)
