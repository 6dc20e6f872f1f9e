"""The on-disk format of a tokenized corpus: DAC codes or DAC-VAE latents, one record per file channel.

A corpus tokenizer writes, and language-model training loops read, a folder of this shape::

    corpus/
      manifest.json                          what the corpus holds, and its shards (written last)
      shard-00000-00000.array_record         records of process 0, its shard 0
      shard-00000-00000.array_record.json    that shard's sidecar: its summary and record count
      shard-00001-00000.array_record         ...

**A record** is the bytes of an uncompressed ``.npz`` (``np.savez`` into memory), so that it reads
with numpy and array_record alone, without dac-jax and without pickle::

    record = ArrayRecordReader(path).read([i])[0]
    fields = np.load(io.BytesIO(record), allow_pickle=False)

Its arrays: ``codes`` (uint16 ``[n_codebooks, frames]``, a DAC corpus) or ``mu`` (float32 or
float16 ``[latent_dim, frames]``, a DAC-VAE corpus) with optionally ``logs`` (same shape and dtype);
and 0-d scalars: ``source`` (str, the file's path relative to its input root, POSIX separators),
``channel`` (int32), ``sample_rate`` (int32, the original file's rate), ``length`` (int64, the
original length in samples at that rate), ``input_db`` (float32, the input's loudness in LUFS),
``frame_rate`` (float64, codec frames per second) and ``model`` (str, the model id).

**Shards** are ArrayRecord files written with ``group_size:1`` (what random access wants), named
:func:`shard_name` ``(process, index)``. :func:`write_shard` writes the shard, then its sidecar, each
atomically (:func:`dac_jax.fileio.atomic_path`): the sidecar's presence, with a record count equal
to the shard's, is what marks a shard finished (:func:`finished_shards`), so a tokenizer killed at
any moment resumes by rewriting the shards that are not.

**The manifest** (:func:`write_manifest`, :func:`read_manifest`, :func:`build_manifest`)::

    {"format": "dac-jax-tokens", "version": 1, "kind": "dac" | "vae", "model": str,
     "config": {...}, "dtype": "uint16" | "float32" | "float16", "frame_rate": float,
     "shards": [{"path": name, "records": n, ...}, ...], "records": total, ...}

Any other keys the tokenizer gives (``failures``, ``files``, ``seconds``...) are kept.

**Readers**: :class:`TokenSource`, a Grain random-access data source (picklable, for Grain
workers), and :func:`tf_dataset` for tf.data users.

This module needs only numpy to import; ``array_record``, ``grain`` and ``tensorflow`` are imported
by the functions that use them.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import itertools
import json
import math
import operator
import os
import posixpath
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from dac_jax.quiet_tf import import_tensorflow
from dac_jax.errors import FileFormatError, MissingDependencyError, UsageError
from dac_jax.fileio import atomic_path

__all__ = [
    "FORMAT",
    "MANIFEST",
    "SHARD_SUFFIX",
    "VERSION",
    "TokenSource",
    "build_manifest",
    "decode_record",
    "encode_record",
    "finished_shards",
    "read_manifest",
    "shard_name",
    "tf_dataset",
    "write_manifest",
    "write_shard",
]

FORMAT = "dac-jax-tokens"
"""The manifest's ``"format"``."""
VERSION = 1
"""The manifest's ``"version"``: a reader refuses a newer one."""
MANIFEST = "manifest.json"
"""The manifest's file name in a corpus folder."""
SHARD_SUFFIX = ".array_record"
"""How every shard's file name ends; its sidecar's is this plus ``.json``."""

# the scalar fields of a record: dtype stored, Python type returned by decode_record
_SCALARS = {
    "source": (np.str_, str),
    "channel": (np.int32, int),
    "sample_rate": (np.int32, int),
    "length": (np.int64, int),
    "input_db": (np.float32, float),
    "frame_rate": (np.float64, float),
    "model": (np.str_, str),
}
_ARRAYS = ("codes", "mu", "logs")
_FIELDS = frozenset(_SCALARS) | frozenset(_ARRAYS)
_LATENT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
_KINDS = {"dac": ("uint16",), "vae": ("float32", "float16")}  # kind -> the dtypes it may hold
_SHARD_LIMIT = 100_000  # 5 digits each: more would break the names' sort order


# -- optional dependencies ---------------------------------------------------------------------------


def _array_record_module():
    try:
        from array_record.python import array_record_module
    except ImportError:
        raise MissingDependencyError(
            "tokenized corpora are ArrayRecord files: pip install array-record") from None
    return array_record_module


def _tensorflow():
    try:
        tf = import_tensorflow()
    except ImportError:
        raise MissingDependencyError("tf_dataset needs tensorflow: pip install tensorflow") from None
    return tf


def _open_reader(path: Path):
    """An ArrayRecordReader for random access (no readahead), or FileFormatError naming ``path``.

    ArrayRecordReader does not raise on a missing, truncated or foreign file: it opens in a
    failed state (``ok()`` False) and reports 0 records. Hence the check."""
    module = _array_record_module()
    reader = module.ArrayRecordReader(os.fspath(path), "readahead_buffer_size:0")
    if not reader.ok():
        with contextlib.suppress(RuntimeError):  # closing a failed reader reports its failure again
            reader.close()
        what = "missing" if not os.path.exists(path) else "not a readable ArrayRecord file"
        raise FileFormatError(f"{path}: {what}")
    return reader


# -- records -----------------------------------------------------------------------------------------


def _scalar(name: str, value: Any) -> np.ndarray:
    """``value`` as the 0-d array stored for field ``name``; UsageError if it does not fit."""
    dtype, kind = _SCALARS[name]
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise UsageError(f"record field {name!r} must be a scalar, got shape {value.shape}")
        value = value[()]
    if kind is str:
        if not isinstance(value, str):
            raise UsageError(f"record field {name!r} must be a str, got {type(value).__name__}")
        if not value:
            raise UsageError(f"record field {name!r} is empty")
        if name == "source" and value.startswith("/"):
            raise UsageError(f"record field 'source' must be a path relative to its input root, got {value!r}")
        return np.array(value)
    if isinstance(value, (bool, np.bool_)):
        raise UsageError(f"record field {name!r} must be a number, got a bool")
    if kind is int:
        try:
            value = operator.index(value)
        except TypeError:
            raise UsageError(f"record field {name!r} must be an integer, got {value!r}") from None
        low = 1 if name == "sample_rate" else 0
        high = np.iinfo(dtype).max
        if not low <= value <= high:
            raise UsageError(f"record field {name!r} must be in [{low}, {high}], got {value}")
        return np.array(value, dtype)
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise UsageError(f"record field {name!r} must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise UsageError(f"record field {name!r} is NaN")
    if name == "frame_rate" and not (math.isfinite(value) and value > 0):
        raise UsageError(f"record field 'frame_rate' must be positive and finite, got {value}")
    return np.array(value, dtype)


def _array(name: str, value: Any, dtypes: tuple[np.dtype, ...]) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise UsageError(f"record field {name!r} must be a numpy array, got {type(value).__name__}")
    if value.dtype not in dtypes:
        # no silent cast: a float codes array or int latents is a bug upstream
        raise UsageError(f"record field {name!r} must be {' or '.join(d.name for d in dtypes)}, "
                         f"got {value.dtype}")
    if value.ndim != 2 or value.shape[0] < 1:
        raise UsageError(f"record field {name!r} must be 2-D [channels, frames], got shape {value.shape}")
    return value


def _fields(fields: Any, exact: bool) -> dict[str, np.ndarray]:
    """The record's arrays, checked; UsageError naming the first problem. ``exact``: scalars must
    already be 0-d arrays of the stored dtype (a record read back), not merely convertible."""
    if not isinstance(fields, dict):
        raise UsageError(f"a record is a dict of fields, got {type(fields).__name__}")
    unknown = sorted(set(fields) - _FIELDS, key=str)
    if unknown:
        raise UsageError(f"unknown record field(s) {', '.join(map(repr, unknown))}; a record holds "
                         f"codes, or mu (and logs), and {', '.join(_SCALARS)}")
    if ("codes" in fields) == ("mu" in fields):
        raise UsageError("a record holds exactly one of 'codes' (DAC) or 'mu' (DAC-VAE)")
    if "logs" in fields and "mu" not in fields:
        raise UsageError("record field 'logs' comes with 'mu' only")
    missing = [name for name in _SCALARS if name not in fields]
    if missing:
        raise UsageError(f"record lacks field(s) {', '.join(map(repr, missing))}")
    out = {}
    if "codes" in fields:
        out["codes"] = _array("codes", fields["codes"], (np.dtype(np.uint16),))
    else:
        out["mu"] = _array("mu", fields["mu"], _LATENT_DTYPES)
        if "logs" in fields:
            logs = _array("logs", fields["logs"], _LATENT_DTYPES)
            if logs.shape != out["mu"].shape or logs.dtype != out["mu"].dtype:
                raise UsageError(f"record field 'logs' ({logs.dtype} {logs.shape}) must match "
                                 f"'mu' ({out['mu'].dtype} {out['mu'].shape})")
            out["logs"] = logs
    for name in _SCALARS:
        value = fields[name]
        if exact:
            dtype = np.dtype(_SCALARS[name][0])
            if not (isinstance(value, np.ndarray) and value.ndim == 0 and
                    (value.dtype.kind == "U" if dtype.kind == "U" else value.dtype == dtype)):
                want = "str" if dtype.kind == "U" else dtype.name
                raise UsageError(f"record field {name!r} is not a 0-d {want} array")
        out[name] = _scalar(name, value)
    return out


def encode_record(fields: dict) -> bytes:
    """One record's bytes: ``fields`` checked, written as an uncompressed ``.npz``.

    ``fields``: ``codes`` (uint16 ``[n_codebooks, frames]``) or ``mu`` (float32 or float16
    ``[latent_dim, frames]``) and optionally ``logs`` (as ``mu``); and ``source``, ``channel``,
    ``sample_rate``, ``length``, ``input_db``, ``frame_rate``, ``model`` as Python or numpy scalars
    (stored as the module docstring says). Arrays are not cast: a wrong dtype, a missing or unknown
    field, both ``codes`` and ``mu``, or a value out of range raise :class:`UsageError` (a
    ``ValueError``).
    """
    arrays = _fields(fields, exact=False)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode_record(data: bytes) -> dict:
    """The fields of a record :func:`encode_record` wrote: numpy arrays for ``codes`` / ``mu`` /
    ``logs``, Python ``str`` / ``int`` / ``float`` for the scalars. A record that is not one
    (not an ``.npz``, a field missing or of the wrong dtype) raises :class:`FileFormatError`."""
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        if not hasattr(npz, "files"):  # np.load also reads a bare .npy
            raise FileFormatError("not a token record: a single .npy array, not an .npz")
        with npz:
            stored = {name: npz[name] for name in npz.files}
    except FileFormatError:
        raise
    except (ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        # allow_pickle=False makes an object array a ValueError here, never code run
        raise FileFormatError(f"not a token record (an uncompressed .npz): {e}") from None
    try:
        arrays = _fields(stored, exact=True)
    except UsageError as e:
        raise FileFormatError(f"not a valid token record: {e}") from None
    return {name: value if name in _ARRAYS else _SCALARS[name][1](value[()]) for name, value in arrays.items()}


# -- shards ------------------------------------------------------------------------------------------


def shard_name(process: int, index: int) -> str:
    """``shard-PPPPP-KKKKK.array_record``: shard ``index`` of process ``process``, each zero-padded
    to 5 digits so that names sort in (process, index) order."""
    process, index = operator.index(process), operator.index(index)
    for what, value in (("process", process), ("index", index)):
        if not 0 <= value < _SHARD_LIMIT:
            raise UsageError(f"shard {what} must be in [0, {_SHARD_LIMIT}), got {value}")
    return f"shard-{process:05d}-{index:05d}{SHARD_SUFFIX}"


def _check_shard_name(name: str) -> None:
    if not isinstance(name, str) or not name.endswith(SHARD_SUFFIX) or name == SHARD_SUFFIX \
            or name.startswith(".") or posixpath.basename(name) != name or os.sep in name:
        raise UsageError(f"a shard's name is a plain file name ending in {SHARD_SUFFIX!r} "
                         f"(see shard_name), got {name!r}")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def write_shard(folder: str | Path, name: str, records: Iterable[bytes], summary: dict) -> Path:
    """Write the shard ``folder / name`` from ``records`` (each from :func:`encode_record`), then
    its sidecar ``name + ".json"`` holding ``summary`` plus ``{"records": n}``; return the shard's
    path.

    Each file is written atomically and synced; the sidecar comes last, so a writer that fails or
    is killed anywhere (``records`` raising included) leaves no finished shard. An existing shard of
    that name is replaced (its sidecar is removed first). ``summary``: JSON-serialisable, without
    the keys ``"records"`` and ``"path"`` (those this module sets).
    """
    _check_shard_name(name)
    if not isinstance(summary, dict):
        raise UsageError(f"a shard's summary is a dict, got {type(summary).__name__}")
    taken = sorted({"records", "path"} & set(summary))
    if taken:
        raise UsageError(f"a shard's summary may not set {', '.join(map(repr, taken))}: they are counted")
    try:  # checked before the shard is written, not after
        json.dumps(summary, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{name}: the shard's summary is not JSON-serialisable ({e})") from None
    module = _array_record_module()
    path = Path(folder) / name
    sidecar = _sidecar(path)
    # The old sidecar goes first: between the new shard's rename and its own sidecar it would
    # otherwise vouch for the new shard. atomic_path syncs the folder after the rename, which makes
    # this removal durable too.
    sidecar.unlink(missing_ok=True)
    count = 0
    with atomic_path(path, overwrite=True) as tmp:
        writer = module.ArrayRecordWriter(os.fspath(tmp), "group_size:1")  # group_size 1: random access
        try:
            for record in records:
                if isinstance(record, (bytearray, memoryview)):
                    record = bytes(record)
                if not isinstance(record, bytes):
                    raise UsageError(f"{name}: record {count} is {type(record).__name__}, not the bytes "
                                     f"of encode_record")
                writer.write(record)  # RuntimeError on a failed write (a full disk...)
                count += 1
        except BaseException:
            with contextlib.suppress(RuntimeError):  # the first error is the one to report
                writer.close()
            raise
        # The file is whole only once closed (footer and index written): before atomic_path syncs
        # and renames it. close() raises RuntimeError if the final writes fail.
        writer.close()
    with atomic_path(sidecar, overwrite=True) as tmp:
        tmp.write_text(json.dumps({**summary, "records": count}, indent=1, allow_nan=False) + "\n")
    return path


def _read_sidecar(path: Path) -> dict | None:
    try:
        summary = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    count = summary.get("records")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return None
    return summary


def finished_shards(folder: str | Path) -> dict[str, dict]:
    """The finished shards in ``folder``, sorted by name: ``{name: summary}``, ``summary`` being the
    sidecar's content (the summary given to :func:`write_shard` and ``"records"``).

    A shard is finished when its file and its sidecar both exist and the sidecar's record count is
    the file's; anything else (no sidecar, a count that differs, an unreadable file) is a shard to
    write again. A folder that does not exist has none."""
    folder = Path(folder)
    try:
        names = sorted(entry.name for entry in os.scandir(folder)
                       if entry.name.endswith(SHARD_SUFFIX) and not entry.name.startswith(".")
                       and entry.is_file())
    except FileNotFoundError:
        return {}
    finished = {}
    for name in names:
        path = folder / name
        summary = _read_sidecar(path)
        if summary is None:
            continue
        try:
            reader = _open_reader(path)
        except FileFormatError:
            continue
        try:
            if reader.num_records() == summary["records"]:
                finished[name] = summary
        finally:
            reader.close()
    return finished


# -- manifest ----------------------------------------------------------------------------------------


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with ``manifest`` (format, version and records already filled), or None."""
    if not isinstance(manifest, dict):
        return f"the manifest is a JSON object, got {type(manifest).__name__}"
    if manifest.get("format") != FORMAT:
        return f"'format' is {manifest.get('format')!r}, not {FORMAT!r}"
    version = manifest.get("version")
    if version != VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > VERSION
        return (f"'version' {version!r}" + (": written by a newer dac-jax, upgrade to read it"
                                             if newer else f" is not {VERSION}"))
    kind, dtype = manifest.get("kind"), manifest.get("dtype")
    if kind not in _KINDS:
        return f"'kind' must be one of {', '.join(map(repr, _KINDS))}, got {kind!r}"
    if dtype not in _KINDS[kind]:
        return f"'dtype' of a {kind!r} corpus must be {' or '.join(map(repr, _KINDS[kind]))}, got {dtype!r}"
    if not isinstance(manifest.get("model"), str) or not manifest["model"]:
        return f"'model' must be a non-empty str, got {manifest.get('model')!r}"
    if not isinstance(manifest.get("config"), dict):
        return f"'config' must be an object, got {manifest.get('config')!r}"
    rate = manifest.get("frame_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and rate > 0):
        return f"'frame_rate' must be a positive number, got {rate!r}"
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        return f"'shards' must be a list, got {shards!r}"
    seen = set()
    for i, entry in enumerate(shards):
        if not isinstance(entry, dict):
            return f"shards[{i}] must be an object, got {entry!r}"
        path, count = entry.get("path"), entry.get("records")
        try:
            _check_shard_name(path)
        except UsageError:
            return f"shards[{i}].path must be a shard's file name in the folder, got {path!r}"
        if path in seen:
            return f"shard {path!r} is listed twice"
        seen.add(path)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return f"shards[{i}].records must be a count, got {count!r}"
    total = sum(entry["records"] for entry in shards)
    if manifest.get("records") != total:
        return f"'records' is {manifest.get('records')!r}, the shards hold {total}"
    return None


def _completed(manifest: dict) -> dict:
    """``manifest`` with format, version and records filled; UsageError if it gives other values."""
    if not isinstance(manifest, dict):
        raise UsageError(f"a manifest is a dict, got {type(manifest).__name__}")
    try:
        total = sum(entry["records"] for entry in manifest.get("shards"))
    except (TypeError, KeyError):  # no shards list, or a bad entry: _manifest_problem names it
        total = None
    filled = {"format": FORMAT, "version": VERSION}
    for key, value in (*filled.items(), ("records", total)):
        if key in manifest and manifest[key] != value:
            raise UsageError(f"the manifest's {key!r} is {value!r}, not {manifest[key]!r} (leave it out)")
    return {**filled, **manifest, "records": total}


def write_manifest(folder: str | Path, manifest: dict) -> dict:
    """Write ``folder / manifest.json`` atomically; return what was written.

    ``manifest`` gives ``kind``, ``model``, ``config``, ``dtype``, ``frame_rate`` and ``shards``
    (``[{"path": name, "records": n, ...}]``, e.g. from :func:`build_manifest`); ``format`` and
    ``version`` are filled in and ``records`` is computed as the shards' sum. Other keys are kept.
    Anything missing or inconsistent raises :class:`UsageError` before anything is written."""
    full = _completed(manifest)
    problem = _manifest_problem(full)
    if problem:
        raise UsageError(f"{folder}: cannot write the manifest: {problem}")
    try:
        text = json.dumps(full, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise UsageError(f"{folder}: the manifest is not JSON-serialisable ({e})") from None
    with atomic_path(Path(folder) / MANIFEST, overwrite=True) as tmp:
        tmp.write_text(text)
    return full


def read_manifest(folder: str | Path) -> dict:
    """The manifest of the corpus in ``folder``, checked. A missing, malformed or newer manifest
    raises a one-line :class:`FileFormatError` naming the folder."""
    path = Path(folder) / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileFormatError(f"{folder}: no {MANIFEST}: not a tokenized corpus, or its tokenizer "
                              f"has not finished") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{folder}: cannot read {MANIFEST} ({e})") from None
    try:
        manifest = json.loads(text)
    except ValueError as e:
        raise FileFormatError(f"{folder}: {MANIFEST} is not JSON ({e})") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise FileFormatError(f"{folder}: {MANIFEST} is not a dac-jax token manifest: {problem}")
    return manifest


def build_manifest(folder: str | Path, header: dict) -> dict:
    """``header`` (kind, model, config, dtype, frame_rate and any other keys) with ``"shards"``: every
    finished shard in ``folder`` (:func:`finished_shards`), sorted by name, as ``{"path": name,
    "records": n, **its other summary fields}``, and the format, version and record total filled.
    Nothing is written: pass the result to :func:`write_manifest`."""
    if not isinstance(header, dict):
        raise UsageError(f"a manifest header is a dict, got {type(header).__name__}")
    if "shards" in header:
        raise UsageError("the manifest header may not give 'shards': build_manifest lists them")
    shards = [{"path": name, "records": summary["records"],
               **{k: v for k, v in summary.items() if k not in ("path", "records")}}
              for name, summary in finished_shards(folder).items()]
    return _completed({**header, "shards": shards})


# -- readers -----------------------------------------------------------------------------------------


class TokenSource:
    """The records of a tokenized corpus by global index: a Grain random-access data source.

    ``source[i]`` is :func:`decode_record` of record ``i``, records numbered through the shards in
    the manifest's order; negative indices count from the end. Shards are opened on first use and
    each is checked to hold the manifest's count of records (:class:`FileFormatError`, naming the
    shard, otherwise). Reads are thread-safe (as Grain's ArrayRecordDataSource: concurrent
    ``read`` on one reader without readahead). The source pickles without its open readers, as
    Grain's worker processes need; the copy reopens them.

    Works as ``grain.MapDataset.source(TokenSource(folder))`` or as ``data_source`` of a
    ``grain.python.DataLoader``. (Grain's worker processes, ``worker_count >= 1``, read absl flags:
    run under ``absl.app.run`` or call ``absl.flags.FLAGS.mark_as_parsed()`` first; they start by
    spawn, so the script needs an ``if __name__ == "__main__":`` guard.)

    Attributes:
        folder: the corpus folder.
        manifest: its manifest (:func:`read_manifest`).
    """

    def __init__(self, folder: str | Path):
        _array_record_module()  # a missing package is said here, not in a worker mid-epoch
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self._paths = [self.folder / entry["path"] for entry in self.manifest["shards"]]
        self._counts = [entry["records"] for entry in self.manifest["shards"]]
        self._ends = list(itertools.accumulate(self._counts))  # record k is in shard bisect_right(ends, k)
        for path in self._paths:  # cheap and early; counts are checked when a shard is opened
            if not path.is_file():
                raise FileFormatError(f"{path}: missing (listed in {self.folder / MANIFEST})")
        self._lock = threading.Lock()
        self._readers: list = [None] * len(self._paths)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __repr__(self) -> str:
        # Grain's DataLoader keys its checkpoints on this: stable across processes and runs
        return f"TokenSource({os.fspath(self.folder)!r}, records={len(self)})"

    def _reader(self, shard: int):
        reader = self._readers[shard]
        if reader is not None:
            return reader
        with self._lock:
            if self._readers[shard] is None:
                path = self._paths[shard]
                reader = _open_reader(path)
                if reader.num_records() != self._counts[shard]:
                    found = reader.num_records()
                    reader.close()
                    raise FileFormatError(f"{path}: holds {found} records, the manifest says "
                                          f"{self._counts[shard]}")
                self._readers[shard] = reader
            return self._readers[shard]

    def _position(self, index: int) -> tuple[int, int]:
        """``(shard number, index in that shard)`` of global record ``index``, or IndexError."""
        index = operator.index(index)
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"record index {index} out of range for {n} records")
        if index < 0:
            index += n
        shard = bisect.bisect_right(self._ends, index)
        return shard, index - (self._ends[shard - 1] if shard else 0)

    def locate(self, index: int) -> tuple[str, int]:
        """``(shard file name, index in that shard)`` of global record ``index``."""
        shard, local = self._position(index)
        return self._paths[shard].name, local

    def __getitem__(self, index: int) -> dict:
        shard, local = self._position(index)
        data = self._reader(shard).read([local])[0]
        try:
            return decode_record(data)
        except FileFormatError as e:
            raise FileFormatError(f"{self._paths[shard]}: record {local}: {e}") from None

    def verify(self) -> None:
        """Open every shard now and check its record count (the checks otherwise made on first use)."""
        for shard in range(len(self._paths)):
            self._reader(shard)

    def close(self) -> None:
        """Close the open shards (reopened on the next read)."""
        with self._lock:
            readers, self._readers = self._readers, [None] * len(self._paths)
        for reader in readers:
            if reader is not None:
                reader.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_readers"], state["_lock"]  # open files and locks do not pickle
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._readers = [None] * len(self._paths)


def tf_dataset(folder: str | Path):
    """The records of the corpus in ``folder`` as a ``tf.data.Dataset``, in index order (shuffle
    it yourself), one element per record.

    Each element is a dict: ``codes`` (DAC; ``tf.int32`` ``[n_codebooks, frames]``: the stored
    uint16 widened, as most TensorFlow ops do not take uint16) or ``mu`` and, when the corpus stores
    it, ``logs`` (DAC-VAE; ``[latent_dim, frames]`` in the manifest's dtype); ``source`` and
    ``model`` (``tf.string``), ``channel`` and ``sample_rate`` (``tf.int32``), ``length``
    (``tf.int64``), ``input_db`` (``tf.float32``), ``frame_rate`` (``tf.float64``). ``frames`` varies
    from record to record (static shape ``None``): pad or crop before batching.

    Built on ``Dataset.from_generator`` over a :class:`TokenSource`: records are read and decoded in
    Python, under the GIL.
    """
    tf = _tensorflow()
    source = TokenSource(folder)
    kind, dtype = source.manifest["kind"], source.manifest["dtype"]
    arrays: dict[str, Any]
    if kind == "dac":
        arrays = {"codes": tf.int32}
    else:
        # whether the corpus stores logs: the manifest does not say, its first record does
        arrays = {"mu": tf.as_dtype(dtype)}
        if len(source) and "logs" in source[0]:
            arrays["logs"] = tf.as_dtype(dtype)
    scalars = {"source": tf.string, "channel": tf.int32, "sample_rate": tf.int32, "length": tf.int64,
               "input_db": tf.float32, "frame_rate": tf.float64, "model": tf.string}
    signature = {name: tf.TensorSpec([None, None], t) for name, t in arrays.items()}
    signature.update({name: tf.TensorSpec([], t) for name, t in scalars.items()})
    numpy_types = {name: t.as_numpy_dtype for name, t in {**arrays, **scalars}.items() if t != tf.string}

    def records():
        reader = TokenSource(folder)  # its own readers, closed when the iteration ends
        try:
            for i in range(len(reader)):
                record = reader[i]
                if set(record) - set(scalars) != set(arrays):
                    raise FileFormatError(f"{folder}: record {i} holds {sorted(set(record) - set(scalars))}, "
                                          f"the corpus's first record {sorted(arrays)}")
                yield {name: (value if name not in numpy_types else np.asarray(value, numpy_types[name]))
                       for name, value in record.items()}
        finally:
            reader.close()

    return tf.data.Dataset.from_generator(records, output_signature=signature)
