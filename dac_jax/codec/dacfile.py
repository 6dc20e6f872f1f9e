"""The ``.dac`` file: compressed codes plus what decompression needs, in the original's format.

On disk (the original ``dac.model.base.DACFile.save``) a ``.dac`` file is ``np.save`` of a dict, i.e.
a ``.npy`` file holding a 0-d object array whose payload is a pickle (protocol 4 under NumPy 2,
3 under NumPy 1)::

    {"codes": uint16 [n_items, n_codebooks, frames],        # n_items = batch * channels
     "metadata": {"input_db": float32 [batch],              # loudness of each input, dB LUFS
                  "original_length": int,                   # samples per channel, original rate
                  "sample_rate": int,                       # the ORIGINAL file's rate
                  "chunk_length": int,                      # frames per chunk
                  "channels": int,
                  "padding": bool,                          # True: one padded-mode pass
                  "dac_version": "1.0.0"},
     "dac_jax": {"format": 1, "sha256": str}}               # only in files dac-jax writes

The metadata values are plain Python ``int``/``bool``/``str`` (the original takes them from shapes
and ``AudioSignal.sample_rate``); only the two arrays are NumPy objects. Codes are chunks of
``chunk_length`` frames laid end to end, every chunk the same size (the original pads the last
window), so ``frames`` is a whole number of chunks; in padded mode there is one chunk.

Files dac-jax writes carry one key more than the original's, ``"dac_jax"``: the SHA-256 of
everything decoding uses (:meth:`DACFile.checksum`). The original's ``DACFile.load`` reads only
``"codes"`` and ``"metadata"``, so it still reads our files; without that key our pickle is byte
for byte the original's. Files without it (the original's) load as before; files with it are
verified, so a flipped byte is an error rather than other audio.

Reading never runs pickled code and never allocates more than the file's bytes can hold: the
``.npy`` header is parsed by :mod:`numpy.lib.format` (a literal, no pickle); the payload's opcodes
are walked by :func:`pickletools.genops` first (every declared length must fit in the file, and a
``.dac`` payload is short: :data:`MAX_PICKLE_OPCODES`), then unpickled by
:class:`_RestrictedUnpickler`, which resolves only the globals in :data:`ALLOWED_GLOBALS` (NumPy
array and dtype reconstruction, under both the NumPy 2 and NumPy 1 module names), refuses anything
else before it is called, and refuses any array whose declared size exceeds the file's bytes
before NumPy allocates it. Sizes the metadata declares are bounded too (:data:`MAX_SAMPLE_RATE`,
:func:`max_original_length`, :data:`MAX_ABS_INPUT_DB`). Every problem is a one-line
:class:`~dac_jax.errors.FileFormatError` that starts with the file's path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import operator
import pickle
import pickletools
import reprlib
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from dac_jax import options
from dac_jax.codec.plan import covering_frames, resampled_length  # noqa: F401  (resampled_length: public here too)
from dac_jax.errors import FileFormatError
from dac_jax.fileio import atomic_path

DAC_VERSION = "1.0.0"
SUPPORTED_VERSIONS = (DAC_VERSION,)
# key order as the original writes it (it decides the bytes of the pickle)
METADATA_KEYS = ("input_db", "original_length", "sample_rate", "chunk_length", "channels", "padding", "dac_version")
MAX_CODE = 2**16 - 1  # codes are stored as uint16

#: The top-level key of our integrity record, and the record formats this reader verifies.
INTEGRITY_KEY = "dac_jax"
INTEGRITY_FORMAT = 1

#: Bounds on what a file may declare, so that a few bytes cannot ask for gigabytes. Real rates are
#: 8 kHz .. 192 kHz; 384 kHz is the highest common audio interface rate.
MAX_SAMPLE_RATE = options.SAMPLE_RATES[1]
#: The slowest DAC model a file may come from, in frames per second (the released models run at
#: 50, 75 and 86 Hz): it bounds ``original_length`` by the frames the codes hold.
MIN_FRAME_RATE = 10
#: |input_db| in dB LUFS: float audio with peaks of 1e15 measures about 300 dB, silence -70.
MAX_ABS_INPUT_DB = 300.0
#: Opcodes in a payload: a genuine .dac payload has about 180 (190 with our integrity record).
MAX_PICKLE_OPCODES = 1000

# The original decompress switches to ffmpeg's resampler for inputs of 10 hours or more; its output
# length is not the one :func:`resampled_length` predicts.
_FFMPEG_SECONDS = 10 * 60 * 60

PathLike = Union[str, Path]


# ---------------------------------------------------------------------------------------------
# Helpers shared with the latent file: safe messages, size checks, checksums, .npy headers
# ---------------------------------------------------------------------------------------------


class _ShortRepr(reprlib.Repr):
    """``reprlib`` bounds the depth and width of what it prints; huge ints it describes instead
    (``repr`` of an int over 4300 digits raises ValueError)."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<{'negative ' if x < 0 else ''}int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_REPR = _ShortRepr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` on one line, cut to ``limit`` characters; never recurses deeply and never raises."""
    if isinstance(value, np.ndarray):  # numpy's repr of an object array recurses into its items
        text = f"array(shape={value.shape}, dtype={value.dtype})"
    else:
        try:
            text = _REPR.repr(value)
        except Exception:  # noqa: BLE001 - a hostile object's repr may raise anything
            text = f"<{type(value).__name__}>"
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def reading(where: str) -> Iterator[None]:
    """Turn running out of memory or stack while reading ``where`` into that file's one-line error."""
    try:
        yield
    except MemoryError:
        raise FileFormatError(f"{where}: corrupt file: reading it ran out of memory") from None
    except RecursionError:
        raise FileFormatError(f"{where}: corrupt file: it is nested too deeply to read") from None


def max_original_length(samples: int, samples_rate: float, sample_rate: int) -> int:
    """The most samples at ``sample_rate`` that ``samples`` at ``samples_rate`` can have come from.

    Resampling ``L`` samples gives ``floor(L * samples_rate / sample_rate)``, up to float32 rounding
    and ffmpeg's lengths above 10 hours: a margin of one input sample and 0.1 % covers both.
    """
    return math.ceil((samples + 1) * sample_rate / samples_rate * 1.001) + 1


def content_digest(arrays: Sequence[np.ndarray], values: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``arrays`` and JSON-able ``values`` in one canonical serialisation.

    The bytes hashed: a compact JSON object with sorted keys, ``{"arrays": [[dtype, shape], ...],
    "values": values}``, a NUL, then each array's data, little-endian, in C order.
    """
    arrays = [np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")) for a in arrays]
    header = {"arrays": [[a.dtype.str, list(a.shape)] for a in arrays], "values": dict(values)}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    digest.update(b"\0")
    for a in arrays:
        digest.update(a.data)
    return digest.hexdigest()


def read_npy_header(f: BinaryIO, where: str, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from a ``.npy`` header (format 1.0 or 2.0); a literal, no pickle."""
    fmt = np.lib.format
    start = f.read(len(fmt.MAGIC_PREFIX))
    if not start:
        raise FileFormatError(f"{where}: not {what}: it is empty")
    if start != fmt.MAGIC_PREFIX:
        raise FileFormatError(f"{where}: not {what}: no NumPy (.npy) header (starts with {short_repr(start[:8])})")
    f.seek(f.tell() - len(start))
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            return fmt.read_array_header_1_0(f)
        if version == (2, 0):
            return fmt.read_array_header_2_0(f)
    except Exception as e:  # noqa: BLE001 - truncated or malformed header
        raise FileFormatError(f"{where}: not {what}: truncated or corrupt .npy header ({_error(e)})") from None
    raise FileFormatError(f"{where}: not {what}: unsupported .npy format version {version}")


def _error(e: BaseException) -> str:
    return short_repr(f"{type(e).__name__}: {e}", 120).strip("'\"")


# ---------------------------------------------------------------------------------------------
# Restricted unpickling
# ---------------------------------------------------------------------------------------------


def _numpy_reconstruct():
    try:  # NumPy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


#: Every global a genuine ``.dac`` payload references (``pickletools.dis`` of files written by the
#: original): an ndarray is pickled as ``_reconstruct(ndarray, (0,), b"b")`` + ``__setstate__`` with a
#: ``dtype(...)``. NumPy 1.x writers name the module ``numpy.core.multiarray``; both names resolve
#: to the installed function without importing the deprecated ``numpy.core`` alias. The unpickler
#: hands out guarded stand-ins for all three (see :class:`_RestrictedUnpickler`).
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _PickledDtype:
    """What a payload's ``numpy.dtype(spec, align, copy)`` builds: a plain dtype, whose pickled state
    (the pickle's BUILD) may only repeat what that dtype's own state says, or change its byte order.
    NumPy's ``dtype.__setstate__`` trusts the flags it is given: "holds objects" on an integer dtype
    makes NumPy read the file's bytes as pointers (a crash)."""

    def __init__(self, unpickler: "_RestrictedUnpickler", *args: Any):
        if not (len(args) == 3 and isinstance(args[0], str) and args[1:] == (False, True)):
            raise unpickler.refuse(f"its pickle calls numpy.dtype{short_repr(args)}, not dtype(spec, False, True)")
        try:
            self.dtype = np.dtype(args[0])
        except Exception:  # noqa: BLE001 - np.dtype raises TypeError, ValueError, ... for junk
            raise unpickler.refuse(f"its pickle builds a dtype from {short_repr(args[0])}") from None
        if self.dtype.fields is not None or self.dtype.subdtype is not None or self.dtype.metadata is not None:
            raise unpickler.refuse(f"its pickle declares the structured dtype {short_repr(args[0])}")
        self._unpickler = unpickler

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        plain = self.dtype.__reduce__()[2]
        orders = ("|",) if plain[1] == "|" else ("<", ">", "=")
        if not (isinstance(state, tuple) and len(state) == len(plain) and state[1] in orders
                and state[:1] + state[2:] == plain[:1] + plain[2:]):
            raise self._unpickler.refuse(f"its pickle gives the dtype {self.dtype} the state {short_repr(state)}")
        self.dtype = self.dtype.newbyteorder(state[1])


class _CheckedArray(np.ndarray):
    """The arrays the unpickler builds: ``__setstate__`` (the pickle's BUILD) checks the declared
    shape against the file's bytes before NumPy allocates it; a genuine array's data is in the
    file, and NumPy would allocate an object array of any declared shape, then crash filling it."""

    _unpickler: "_RestrictedUnpickler"

    def __setstate__(self, state: Any) -> None:
        u = self._unpickler
        if not (isinstance(state, tuple) and len(state) == 5 and type(state[0]) is int and state[0] == 1):
            raise u.refuse(f"its array state is {short_repr(state)}, not the (1, shape, dtype, order, data) NumPy pickles")
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, _PickledDtype) or type(fortran) is not bool:
            raise u.refuse(f"its array state has the dtype {short_repr(dtype)} and the order flag {short_repr(fortran)}")
        dtype = dtype.dtype
        count = u.charge(shape, dtype)
        expected = (list, count) if dtype.hasobject else (bytes, count * dtype.itemsize)
        if type(data) is not expected[0] or len(data) != expected[1]:
            raise u.refuse(
                f"an array of shape {short_repr(shape)} and dtype {dtype} comes with {type(data).__name__} data "
                f"of length {len(data) if isinstance(data, (list, bytes)) else '?'}, not {expected[1]}"
            )
        super().__setstate__((*state[:-3], dtype, *state[-2:]))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and NumPy arrays only; any other global is refused before it is called,
    and every array is refused before allocation if the file's bytes cannot hold it."""

    def __init__(self, file: BinaryIO, where: str, byte_budget: int):
        super().__init__(file)
        self._where = where
        self._budget = byte_budget  # bytes all arrays together may still take
        self._ndarray_token = self._call_ndarray  # one bound method, so that `is` recognises it
        self._globals = {  # the names of ALLOWED_GLOBALS, guarded
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy", "ndarray"): self._ndarray_token,
            ("numpy", "dtype"): self._dtype,
        }

    def refuse(self, why: str) -> FileFormatError:
        return FileFormatError(f"{self._where}: refused to load: {why}; nothing in it was run")

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except (KeyError, TypeError):
            raise self.refuse(
                f"its pickle references the global {short_repr(f'{module}.{name}')}, which a .dac file never "
                "needs (only NumPy array reconstruction is allowed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise self.refuse("its pickle uses persistent ids, which a .dac file never has")

    def _call_ndarray(self, *args: Any, **kwargs: Any) -> None:
        raise self.refuse("its pickle calls numpy.ndarray, which a .dac file only passes to _reconstruct")

    def _dtype(self, *args: Any) -> _PickledDtype:
        return _PickledDtype(self, *args)

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        """NumPy pickles every array as an empty one, ``_reconstruct(ndarray, (0,), b"b")``, that the
        pickle's BUILD then fills (:meth:`_CheckedArray.__setstate__`); nothing else is made here."""
        if not (subtype is self._ndarray_token and type(shape) is tuple and shape == (0,) and type(dtype) is bytes
                and dtype == b"b"):
            raise self.refuse(
                f"its pickle reconstructs an array as _reconstruct{short_repr((subtype, shape, dtype))}, "
                "not as NumPy pickles arrays (an empty one, filled by its state)"
            )
        array = _numpy_reconstruct()(_CheckedArray, (0,), "b")
        array._unpickler = self
        return array

    def charge(self, shape: Any, dtype: np.dtype) -> int:
        """Count an array of ``shape`` and ``dtype`` against the file's bytes; its element count."""
        if not (isinstance(shape, tuple) and len(shape) <= 32 and all(type(n) is int and n >= 0 for n in shape)):
            raise self.refuse(f"its pickle declares an array of shape {short_repr(shape)}")
        count = 1
        for n in shape:  # stops early: the product of a few huge ints is itself huge
            count *= n
            if count * dtype.itemsize > self._budget:
                raise self.refuse(
                    f"its pickle declares an array of shape {short_repr(shape)} and dtype {dtype}, more than the "
                    "file's bytes can hold"
                )
        self._budget -= count * dtype.itemsize
        return count


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def checked_int(where: str, name: str, value: Any, minimum: int = 1, maximum: Optional[int] = None) -> int:
    """``value`` as a Python int within ``[minimum, maximum]``; bools and non-integers are errors."""
    if isinstance(value, (bool, np.bool_)):
        raise FileFormatError(f"{where}: {name} must be an int, got the bool {value}")
    try:
        result = operator.index(value)
    except TypeError:
        raise FileFormatError(f"{where}: {name} must be an int, got {type(value).__name__} {short_repr(value)}") from None
    if result < minimum:
        raise FileFormatError(f"{where}: {name} must be >= {minimum}, got {short_repr(result)}")
    if maximum is not None and result > maximum:
        raise FileFormatError(f"{where}: {name} must be <= {maximum}, got {short_repr(result)}")
    return int(result)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _check_code_range(where: str, codes: np.ndarray) -> None:
    lo, hi = int(codes.min()), int(codes.max())
    if lo < 0 or hi > MAX_CODE:
        raise FileFormatError(
            f"{where}: codes must lie in 0..{MAX_CODE} (a .dac file stores them as uint16), found values from {lo} to {hi}"
        )


def _checked_codes(where: str, codes: Any) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise FileFormatError(f"{where}: codes must be an integer array, got dtype {codes.dtype}")
    if codes.ndim != 3:
        raise FileFormatError(f"{where}: codes must have shape [n_items, n_codebooks, frames], got shape {codes.shape}")
    if 0 in codes.shape:
        raise FileFormatError(f"{where}: codes must not be empty, got shape {codes.shape}")
    _check_code_range(where, codes)
    return _readonly(np.ascontiguousarray(codes, dtype=np.int32).copy())


def _checked_input_db(where: str, input_db: Any) -> np.ndarray:
    input_db = np.asarray(input_db)
    if input_db.dtype.kind not in "fiu":
        raise FileFormatError(f"{where}: input_db must be a float array, got dtype {input_db.dtype}")
    if input_db.ndim != 1 or input_db.size == 0:
        raise FileFormatError(f"{where}: input_db must be a 1-D array [batch], got shape {input_db.shape}")
    input_db = _readonly(np.ascontiguousarray(input_db, dtype=np.float32).copy())
    if not np.all(np.isfinite(input_db)):
        raise FileFormatError(f"{where}: input_db must be finite, got {short_repr(input_db.tolist())}")
    if np.any(np.abs(input_db) > MAX_ABS_INPUT_DB):  # the decoder's gain would overflow to Inf
        raise FileFormatError(
            f"{where}: input_db must lie within +-{MAX_ABS_INPUT_DB:g} dB, got {short_repr(input_db.tolist())}"
        )
    return input_db


def _normalised(
    where: str,
    codes: Any,
    chunk_length: Any,
    original_length: Any,
    input_db: Any,
    channels: Any,
    sample_rate: Any,
    padding: Any,
    dac_version: Any,
) -> dict[str, Any]:
    """Checked, canonical field values (int32 / float32 read-only arrays, Python scalars)."""
    codes = _checked_codes(where, codes)
    input_db = _checked_input_db(where, input_db)
    chunk_length = checked_int(where, "chunk_length", chunk_length)
    original_length = checked_int(where, "original_length", original_length)
    channels = checked_int(where, "channels", channels)
    sample_rate = checked_int(where, "sample_rate", sample_rate, maximum=MAX_SAMPLE_RATE)
    if not isinstance(padding, (bool, np.bool_)):
        raise FileFormatError(f"{where}: padding must be a bool, got {type(padding).__name__} {short_repr(padding)}")
    padding = bool(padding)
    if not isinstance(dac_version, str) or dac_version not in SUPPORTED_VERSIONS:
        raise FileFormatError(
            f"{where}: dac_version {short_repr(dac_version)} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})"
        )

    n_items, _, frames = codes.shape
    if n_items % channels:
        raise FileFormatError(
            f"{where}: codes has {n_items} rows (batch * channels), not a multiple of channels={channels}"
        )
    if input_db.shape[0] != n_items // channels:
        raise FileFormatError(
            f"{where}: input_db has {input_db.shape[0]} values but codes hold {n_items // channels} "
            f"signal(s) ({n_items} rows / {channels} channels)"
        )
    if frames % chunk_length:
        raise FileFormatError(
            f"{where}: codes have {frames} frames, not a whole number of chunks of chunk_length={chunk_length} "
            "(the original writes equal chunks)"
        )
    limit = max_original_length(frames, MIN_FRAME_RATE, sample_rate)
    if original_length > limit:
        raise FileFormatError(
            f"{where}: original_length={original_length} samples at {sample_rate} Hz is more than {frames} frames "
            f"can decode to (at most {limit}, for a model of {MIN_FRAME_RATE} frames per second)"
        )
    return dict(
        codes=codes, chunk_length=chunk_length, original_length=original_length, input_db=input_db,
        channels=channels, sample_rate=sample_rate, padding=padding, dac_version=str(dac_version),
    )


# ---------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class DACFile:
    """Codes and metadata of one ``.dac`` file (fields in the original's order).

    ``codes [n_items, n_codebooks, frames]`` with ``n_items = batch * channels`` (each channel is
    coded separately, item ``b * channels + c``); ``input_db [batch]``; ``sample_rate`` and
    ``original_length`` describe the ORIGINAL input, before resampling to the model's rate.

    The constructor checks and normalises: ``codes`` becomes a read-only int32 array (values in
    0..65535), ``input_db`` a read-only float32 array, the scalars plain Python values; torch, JAX
    or NumPy inputs are accepted. Inconsistent or implausible fields raise :class:`FileFormatError`.
    """

    codes: np.ndarray
    chunk_length: int
    original_length: int
    input_db: np.ndarray
    channels: int
    sample_rate: int
    padding: bool
    dac_version: str = DAC_VERSION

    def __post_init__(self):
        fields = _normalised("DACFile", **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    # -- shape ------------------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return self.codes.shape[0]

    @property
    def n_codebooks(self) -> int:
        return self.codes.shape[1]

    @property
    def frames(self) -> int:
        return self.codes.shape[2]

    @property
    def batch(self) -> int:
        return self.n_items // self.channels

    @property
    def n_chunks(self) -> int:
        return self.frames // self.chunk_length

    # -- I/O --------------------------------------------------------------------------------------

    def artifacts(self) -> dict[str, Any]:
        """The exact object the original pickles: uint16 codes, float32 input_db, Python scalars."""
        _check_code_range("DACFile", self.codes)  # the arrays are read-only, but be sure before casting
        return {
            "codes": self.codes.astype(np.uint16),
            "metadata": {
                "input_db": self.input_db.astype(np.float32),
                "original_length": int(self.original_length),
                "sample_rate": int(self.sample_rate),
                "chunk_length": int(self.chunk_length),
                "channels": int(self.channels),
                "padding": bool(self.padding),
                "dac_version": DAC_VERSION,
            },
        }

    def checksum(self) -> str:
        """SHA-256 (hex) of everything decoding uses: the codes as stored (uint16), input_db
        (float32) and the scalar fields (:func:`content_digest`)."""
        scalars = {name: getattr(self, name) for name in METADATA_KEYS if name != "input_db"}
        return content_digest([self.codes.astype("<u2"), self.input_db.astype("<f4")], scalars)

    def save(self, path: PathLike, overwrite: bool = True) -> Path:
        """Write the file at ``path`` with its suffix replaced by ``.dac`` (as the original does);
        return that path. The write is atomic: the file appears whole or not at all. The file is
        the original's plus our integrity record (see the module docstring)."""
        path = Path(path).with_suffix(".dac")
        artifacts = {**self.artifacts(), INTEGRITY_KEY: {"format": INTEGRITY_FORMAT, "sha256": self.checksum()}}
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, "wb") as f:
                _write(f, artifacts)
        return path

    @classmethod
    def load(cls, path: PathLike) -> "DACFile":
        """Read a ``.dac`` file without running any pickled code (see :func:`load`)."""
        return load(path)


def _write(f: BinaryIO, artifacts: dict[str, Any]) -> None:
    # a file object, never a name: np.save appends ".npy" to names without that suffix
    np.save(f, artifacts, allow_pickle=True)


def _check_opcodes(payload: bytes, where: str) -> None:
    """Walk the pickle without building anything: :func:`pickletools.genops` raises ValueError
    where an opcode declares more bytes than follow it (the unpickler would allocate them first)."""
    for count, _ in enumerate(pickletools.genops(io.BytesIO(payload)), 1):
        if count > MAX_PICKLE_OPCODES:
            raise FileFormatError(
                f"{where}: not a .dac file: its pickle has more than {MAX_PICKLE_OPCODES} opcodes "
                "(a .dac file has about 200)"
            )


def _read_payload(f: BinaryIO, where: str) -> Any:
    """The unpickled object of a ``.npy`` file holding a 0-d object array."""
    shape, _, dtype = read_npy_header(f, where, "a .dac file")
    if dtype != np.dtype(object) or shape != ():
        raise FileFormatError(
            f"{where}: not a .dac file: it holds a plain {dtype} array of shape {shape}, "
            "not the pickled dict {'codes', 'metadata'} of a .dac file"
        )
    payload = f.read()
    try:
        _check_opcodes(payload, where)
        unpickler = _RestrictedUnpickler(io.BytesIO(payload), where, byte_budget=len(payload))
        obj = unpickler.load()
        unpickler.memo.clear()  # the arrays refer to the unpickler: let them go without the garbage collector
    except FileFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - EOFError, UnpicklingError, ValueError, ...
        raise FileFormatError(f"{where}: not a .dac file: truncated or corrupt pickle payload ({_error(e)})") from None
    if not (isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ()):
        raise FileFormatError(f"{where}: not a .dac file: the payload is {type(obj).__name__}, not a 0-d object array")
    return obj[()]


def _keys(where: str, what: str, d: dict, expected: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    missing = [k for k in expected if k not in d]
    extra = [k for k in d if k not in expected and k not in optional]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unexpected {', '.join(short_repr(k, 30) for k in extra[:5])}")
        raise FileFormatError(f"{where}: {what} has the wrong keys: {'; '.join(parts)} (expected {', '.join(expected)})")


def _check_types(where: str, codes: Any, meta: dict) -> None:
    """The exact types the original writes (the constructor accepts more)."""
    if not isinstance(codes, np.ndarray) or codes.dtype.kind != "u" or codes.dtype.itemsize != 2:
        got = f"a {codes.dtype} array" if isinstance(codes, np.ndarray) else f"a {type(codes).__name__}"
        raise FileFormatError(f"{where}: codes must be a uint16 array, got {got}")
    if codes.ndim != 3:
        raise FileFormatError(f"{where}: codes must have rank 3 [n_items, n_codebooks, frames], got shape {codes.shape}")
    db = meta["input_db"]
    if not isinstance(db, np.ndarray) or db.dtype.kind != "f" or db.dtype.itemsize != 4:
        got = f"a {db.dtype} array" if isinstance(db, np.ndarray) else f"a {type(db).__name__}"
        raise FileFormatError(f"{where}: input_db must be a float32 array, got {got}")
    for key in ("original_length", "sample_rate", "chunk_length", "channels"):
        if type(meta[key]) is not int:
            raise FileFormatError(f"{where}: {key} must be an int, got {type(meta[key]).__name__} {short_repr(meta[key])}")
    if type(meta["padding"]) is not bool:
        raise FileFormatError(
            f"{where}: padding must be a bool, got {type(meta['padding']).__name__} {short_repr(meta['padding'])}"
        )


def _verify(where: str, record: Any, dacfile: DACFile) -> None:
    """Check our integrity record, if the file has one (the original's files have none)."""
    if record is None:
        return
    if not isinstance(record, dict) or set(record) != {"format", "sha256"}:
        raise FileFormatError(f"{where}: corrupt file: its {INTEGRITY_KEY!r} record is {short_repr(record)}")
    if type(record["format"]) is not int or record["format"] != INTEGRITY_FORMAT:
        raise FileFormatError(
            f"{where}: integrity format {short_repr(record['format'])} is not supported (this reader knows "
            f"{INTEGRITY_FORMAT}); was the file written by a newer dac-jax?"
        )
    if record["sha256"] != dacfile.checksum():
        raise FileFormatError(f"{where}: checksum mismatch: the file is corrupt (its content is not what was written)")


def load(path: PathLike) -> DACFile:
    """Read a ``.dac`` file written by the original or by :meth:`DACFile.save`.

    Never runs pickled code, and allocates no more than the file's size allows (see the module
    docstring). Raises :class:`FileFormatError`, one line starting with the path, for a missing or
    unreadable file, garbage, truncation, a ``.npy`` that is not the dict, missing or extra keys,
    wrong types, a ``dac_version`` other than 1.0.0, inconsistent or implausible metadata, and a
    checksum that does not match.
    """
    where = str(path)
    with reading(where):
        return _load(path, where)


def _load(path: PathLike, where: str) -> DACFile:
    try:
        with open(path, "rb") as f:
            artifacts = _read_payload(f, where)
    except FileFormatError:
        raise
    except FileNotFoundError:
        raise FileFormatError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise FileFormatError(f"{where}: is a directory, not a .dac file") from None
    except OSError as e:
        raise FileFormatError(f"{where}: cannot read the file ({e.strerror or e})") from None

    if not isinstance(artifacts, dict):
        raise FileFormatError(f"{where}: not a .dac file: it holds a {type(artifacts).__name__}, not a dict")
    _keys(where, "the file", artifacts, ("codes", "metadata"), optional=(INTEGRITY_KEY,))
    meta = artifacts["metadata"]
    if not isinstance(meta, dict):
        raise FileFormatError(f"{where}: metadata must be a dict, got {type(meta).__name__}")
    if "dac_version" not in meta:
        raise FileFormatError(f"{where}: metadata has no dac_version (supported: {', '.join(SUPPORTED_VERSIONS)})")
    version = meta["dac_version"]
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise FileFormatError(
            f"{where}: the file has dac_version {short_repr(version)}; this reader supports {', '.join(SUPPORTED_VERSIONS)}"
        )
    _keys(where, "metadata", meta, METADATA_KEYS)
    _check_types(where, artifacts["codes"], meta)
    dacfile = DACFile(**_normalised(where, codes=artifacts["codes"], **meta))
    _verify(where, artifacts.get(INTEGRITY_KEY), dacfile)
    return dacfile


# ---------------------------------------------------------------------------------------------
# Does a file fit a model?
# ---------------------------------------------------------------------------------------------


def _chunk_samples(chunk_length: int, hop_length: int, encoder_frames: Callable[[int], int]) -> Optional[int]:
    """The whole-hop window ``n`` whose unpadded encoding has ``chunk_length`` frames, if any.

    Unpadded frames never exceed ``n / hop_length`` and grow monotonically with ``n``, so the search
    starts at ``n = chunk_length * hop_length`` and stops as soon as it overshoots.
    """
    k = chunk_length
    for _ in range(100_000):
        frames = encoder_frames(k * hop_length)
        if frames == chunk_length:
            return k * hop_length
        if frames > chunk_length:
            return None
        k += 1
    return None


def validate_for_model(
    dacfile: DACFile,
    n_codebooks: int,
    codebook_size: int,
    *,
    sample_rate: Optional[int] = None,
    hop_length: Optional[int] = None,
    encoder_frames: Optional[Callable[[int], int]] = None,
    output_length: Optional[Callable[[int], int]] = None,
    decoder_samples: Optional[Callable[[int], int]] = None,
    path: Optional[PathLike] = None,
) -> None:
    """Raise :class:`FileFormatError` if ``dacfile`` cannot have been made by (or decoded by) a model.

    Checked always:
      * the file has at most ``n_codebooks`` codebooks (fewer is fine: ``n_quantizers``);
      * every code is ``< codebook_size``.

    With the model's ``sample_rate`` and ``hop_length`` (both needed): the file's frame count must be
    what the original's ``compress`` produces for ``original_length`` samples at the file's rate,
    resampled to the model's rate (:func:`resampled_length`):
      * padded mode: ``frames == ceil(length / hop_length)``, or, with ``decoder_samples(n)`` (the
        padded decoder's samples for ``n`` frames), the :func:`~dac_jax.codec.plan.covering_frames`
        that dac-jax writes where the original's decoding of those frames would fall short of
        ``original_length`` (one padding frame, 16 / 24 kHz);
      * unpadded (chunked) mode, also needing ``encoder_frames(n)`` (the unpadded encoder's frames for
        ``n`` samples) and ``output_length(n)`` (the whole model's unpadded length arithmetic, the
        original's ``get_output_length``): ``chunk_length`` must be the frame count of some whole-hop
        window ``n_samples``, its hop ``output_length(n_samples)`` positive, and the number of
        chunks ``ceil(length / hop)``.
      The length checks are skipped for inputs of 10 hours or more that were resampled (the
      original then uses ffmpeg, whose output length differs).

    Not detectable from the file: which weights made it (a file from another model with the same
    codebook count, size, rate and hop decodes without error, to garbage); the window used (only
    its rounding to whole hops, via ``chunk_length``); and, for very short inputs, a model with
    another rate or hop can give the same frame count by coincidence (e.g. the 16 kHz and 24 kHz
    models share one geometry and differ only in how many samples the input resamples to).
    ``path`` (optional) starts the error messages.
    """
    where = str(path) if path is not None else "DACFile"
    f = dacfile
    if f.n_codebooks > n_codebooks:
        raise FileFormatError(
            f"{where}: the file has {f.n_codebooks} codebooks but the model has only {n_codebooks}; "
            "it was made by another model"
        )
    hi = int(f.codes.max())
    if hi >= codebook_size:
        item, book, frame = (int(i) for i in np.argwhere(f.codes >= codebook_size)[0])
        raise FileFormatError(
            f"{where}: code {hi} does not fit the model's {codebook_size}-entry codebooks (first bad code at item "
            f"{item}, codebook {book}, frame {frame}); it was made by another model"
        )
    if sample_rate is None or hop_length is None:
        return
    if f.sample_rate != sample_rate and f.original_length / f.sample_rate >= _FFMPEG_SECONDS:
        return
    length = resampled_length(f.original_length, f.sample_rate, sample_rate)
    source = (
        f"{f.original_length} samples at {f.sample_rate} Hz"
        + (f" (= {length} samples at {sample_rate} Hz)" if f.sample_rate != sample_rate else "")
    )
    hint = f"was it made by a model with another sample rate or hop than {sample_rate} Hz / {hop_length}?"
    if f.padding:
        expected = math.ceil(length / hop_length)
        allowed = {expected}
        if decoder_samples is not None:
            allowed.add(covering_frames(expected, f.original_length, decoder_samples, sample_rate, f.sample_rate))
        if f.frames not in allowed:
            also = f" (or {max(allowed)}, with a padding frame)" if len(allowed) > 1 else ""
            raise FileFormatError(
                f"{where}: the file has {f.frames} frames, but this model encodes {source} in padded mode "
                f"to {expected} frames{also}; {hint}"
            )
        return
    if encoder_frames is None or output_length is None:
        return
    n_samples = _chunk_samples(f.chunk_length, hop_length, encoder_frames)
    if n_samples is None:
        raise FileFormatError(
            f"{where}: chunk_length={f.chunk_length} frames is not the size of any chunk this model's unpadded "
            f"encoder produces; {hint}"
        )
    hop = output_length(n_samples)
    if hop <= 0:
        raise FileFormatError(
            f"{where}: chunk_length={f.chunk_length} means chunks of {n_samples} samples, which this model "
            f"cannot chunk (hop {hop}); {hint}"
        )
    expected_chunks = -(-length // hop)
    if f.n_chunks != expected_chunks:
        raise FileFormatError(
            f"{where}: the file has {f.n_chunks} chunks of {f.chunk_length} frames, but this model cuts {source} "
            f"into {expected_chunks} chunks of {n_samples} samples (hop {hop}); {hint}"
        )
