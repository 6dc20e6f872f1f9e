"""The ``.dac`` file: compressed codes plus what decompression needs, in the original's exact format.

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
                  "dac_version": "1.0.0"}}

The metadata values are plain Python ``int``/``bool``/``str`` (the original takes them from shapes
and ``AudioSignal.sample_rate``); only the two arrays are NumPy objects. Codes are chunks of
``chunk_length`` frames laid end to end, every chunk the same size (the original pads the last
window), so ``frames`` is a whole number of chunks; in padded mode there is one chunk.

Reading never runs pickled code: the ``.npy`` header is parsed by :mod:`numpy.lib.format` (a
literal, no pickle) and the payload by :class:`_RestrictedUnpickler`, which resolves only the
globals in :data:`ALLOWED_GLOBALS` (NumPy array and dtype reconstruction, under both the NumPy 2
and NumPy 1 module names) and refuses anything else before it is called. Every problem is a
one-line :class:`~dac_jax.errors.FileFormatError` that starts with the file's path.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

import numpy as np

from dac_jax.errors import FileFormatError
from dac_jax.fileio import atomic_path

DAC_VERSION = "1.0.0"
SUPPORTED_VERSIONS = (DAC_VERSION,)
# key order as the original writes it (it decides the bytes of the pickle)
METADATA_KEYS = ("input_db", "original_length", "sample_rate", "chunk_length", "channels", "padding", "dac_version")
MAX_CODE = 2**16 - 1  # codes are stored as uint16

# The original decompress switches to ffmpeg's resampler for inputs of 10 hours or more; its output
# length is not the one :func:`resampled_length` predicts.
_FFMPEG_SECONDS = 10 * 60 * 60

PathLike = Union[str, Path]


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
#: to the installed function without importing the deprecated ``numpy.core`` alias.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and NumPy arrays only; any other global is refused before it is called."""

    def __init__(self, file: BinaryIO, where: str):
        super().__init__(file)
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise FileFormatError(
                f"{self._where}: refused to load: its pickle references the global "
                f"{_short(f'{module}.{name}')}, which a .dac file never needs (only NumPy array "
                "reconstruction is allowed); nothing in it was run"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise FileFormatError(f"{self._where}: refused to load: its pickle uses persistent ids, which a .dac file never has")


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` on one line, cut to ``limit`` characters."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int(where: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise FileFormatError(f"{where}: {name} must be an int, got the bool {value}")
    try:
        result = operator.index(value)
    except TypeError:
        raise FileFormatError(f"{where}: {name} must be an int, got {type(value).__name__} {_short(value)}") from None
    if result < minimum:
        raise FileFormatError(f"{where}: {name} must be >= {minimum}, got {result}")
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
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise FileFormatError(f"{where}: codes must be an integer array, got dtype {codes.dtype}")
    if codes.ndim != 3:
        raise FileFormatError(f"{where}: codes must have shape [n_items, n_codebooks, frames], got shape {codes.shape}")
    if 0 in codes.shape:
        raise FileFormatError(f"{where}: codes must not be empty, got shape {codes.shape}")
    _check_code_range(where, codes)
    codes = _readonly(np.ascontiguousarray(codes, dtype=np.int32).copy())

    input_db = np.asarray(input_db)
    if input_db.dtype.kind not in "fiu":
        raise FileFormatError(f"{where}: input_db must be a float array, got dtype {input_db.dtype}")
    if input_db.ndim != 1 or input_db.size == 0:
        raise FileFormatError(f"{where}: input_db must be a 1-D array [batch], got shape {input_db.shape}")
    input_db = _readonly(np.ascontiguousarray(input_db, dtype=np.float32).copy())
    if not np.all(np.isfinite(input_db)):
        raise FileFormatError(f"{where}: input_db must be finite, got {_short(input_db.tolist())}")

    chunk_length = _int(where, "chunk_length", chunk_length)
    original_length = _int(where, "original_length", original_length)
    channels = _int(where, "channels", channels)
    sample_rate = _int(where, "sample_rate", sample_rate)
    if not isinstance(padding, (bool, np.bool_)):
        raise FileFormatError(f"{where}: padding must be a bool, got {type(padding).__name__} {_short(padding)}")
    padding = bool(padding)
    if not isinstance(dac_version, str) or dac_version not in SUPPORTED_VERSIONS:
        raise FileFormatError(
            f"{where}: dac_version {_short(dac_version)} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})"
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
    or NumPy inputs are accepted. Inconsistent fields raise :class:`FileFormatError`.
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

    def save(self, path: PathLike) -> Path:
        """Write the file at ``path`` with its suffix replaced by ``.dac`` (as the original does);
        return that path. The write is atomic: the file appears whole or not at all."""
        path = Path(path).with_suffix(".dac")
        artifacts = self.artifacts()
        with atomic_path(path) as tmp:
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


def _read_payload(f: BinaryIO, where: str) -> Any:
    """The unpickled object of a ``.npy`` file holding a 0-d object array."""
    fmt = np.lib.format
    start = f.read(len(fmt.MAGIC_PREFIX))
    if not start:
        raise FileFormatError(f"{where}: not a .dac file: the file is empty")
    if start != fmt.MAGIC_PREFIX:
        raise FileFormatError(f"{where}: not a .dac file: no NumPy (.npy) header (starts with {_short(start[:8])})")
    f.seek(0)
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise FileFormatError(f"{where}: not a .dac file: unsupported .npy format version {version}")
    except FileFormatError:
        raise
    except Exception as e:  # truncated or malformed header
        raise FileFormatError(f"{where}: not a .dac file: truncated or corrupt .npy header ({_error(e)})") from None
    if dtype != np.dtype(object) or shape != ():
        raise FileFormatError(
            f"{where}: not a .dac file: it holds a plain {dtype} array of shape {shape}, "
            "not the pickled dict {'codes', 'metadata'} of a .dac file"
        )
    try:
        obj = _RestrictedUnpickler(f, where).load()
    except FileFormatError:
        raise
    except Exception as e:  # EOFError, UnpicklingError, ValueError, MemoryError, ...
        raise FileFormatError(f"{where}: not a .dac file: truncated or corrupt pickle payload ({_error(e)})") from None
    if not (isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ()):
        raise FileFormatError(f"{where}: not a .dac file: the payload is {type(obj).__name__}, not a 0-d object array")
    return obj[()]


def _error(e: BaseException) -> str:
    return _short(f"{type(e).__name__}: {e}", 120).strip("'\"")


def _keys(where: str, what: str, d: dict, expected: tuple[str, ...]) -> None:
    missing = [k for k in expected if k not in d]
    extra = [k for k in d if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unexpected {', '.join(_short(k, 30) for k in extra[:5])}")
        raise FileFormatError(f"{where}: {what} has the wrong keys: {'; '.join(parts)} (expected {', '.join(expected)})")


def load(path: PathLike) -> DACFile:
    """Read a ``.dac`` file written by the original or by :meth:`DACFile.save`.

    Never runs pickled code (see the module docstring). Raises :class:`FileFormatError`, one line
    starting with the path, for a missing or unreadable file, garbage, truncation, a ``.npy`` that
    is not the dict, missing or extra keys, wrong types, a ``dac_version`` other than 1.0.0, and
    inconsistent metadata.
    """
    where = str(path)
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
    _keys(where, "the file", artifacts, ("codes", "metadata"))
    meta = artifacts["metadata"]
    if not isinstance(meta, dict):
        raise FileFormatError(f"{where}: metadata must be a dict, got {type(meta).__name__}")
    if "dac_version" not in meta:
        raise FileFormatError(f"{where}: metadata has no dac_version (supported: {', '.join(SUPPORTED_VERSIONS)})")
    version = meta["dac_version"]
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise FileFormatError(
            f"{where}: the file has dac_version {_short(version)}; this reader supports {', '.join(SUPPORTED_VERSIONS)}"
        )
    _keys(where, "metadata", meta, METADATA_KEYS)

    codes = artifacts["codes"]
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
            raise FileFormatError(f"{where}: {key} must be an int, got {type(meta[key]).__name__} {_short(meta[key])}")
    if type(meta["padding"]) is not bool:
        raise FileFormatError(f"{where}: padding must be a bool, got {type(meta['padding']).__name__} {_short(meta['padding'])}")

    fields = _normalised(where, codes=codes, **meta)
    return DACFile(**fields)


# ---------------------------------------------------------------------------------------------
# Does a file fit a model?
# ---------------------------------------------------------------------------------------------


def resampled_length(length: int, old_sr: int, new_sr: int) -> int:
    """Samples the original's ``AudioSignal.resample`` returns for ``length`` samples.

    ``julius.resample_frac`` reduces the rates by their gcd and keeps
    ``floor(float32(new * length / old))`` samples: the quotient is computed in float64 and then
    rounded to float32 by ``torch.as_tensor``, so above 2**24 output samples the result can exceed
    the exact floor by a few samples. Equal rates return ``length`` unchanged.
    """
    if old_sr == new_sr:
        return int(length)
    g = math.gcd(old_sr, new_sr)
    old, new = old_sr // g, new_sr // g
    return int(math.floor(np.float32(new * length / old)))


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
    path: Optional[PathLike] = None,
) -> None:
    """Raise :class:`FileFormatError` if ``dacfile`` cannot have been made by (or decoded by) a model.

    Checked always:
      * the file has at most ``n_codebooks`` codebooks (fewer is fine: ``n_quantizers``);
      * every code is ``< codebook_size``.

    With the model's ``sample_rate`` and ``hop_length`` (both needed): the file's frame count must be
    what the original's ``compress`` produces for ``original_length`` samples at the file's rate,
    resampled to the model's rate (:func:`resampled_length`):
      * padded mode: ``frames == ceil(length / hop_length)``;
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
        if f.frames != expected:
            raise FileFormatError(
                f"{where}: the file has {f.frames} frames, but this model encodes {source} in padded mode "
                f"to {expected} frames; {hint}"
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
