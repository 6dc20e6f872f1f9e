"""The latent file: DAC-VAE latents of a signal plus what decoding needs, as a plain ``.npz``.

A latent file is a NumPy ``.npz`` archive (read with ``allow_pickle=False``: nothing in it is ever
executed) holding four entries::

    z         float32 [items, latent_dim, frames]   # what `decode` decodes: mu, or a sample
    mu        float32 [items, latent_dim, frames]   # the encoder's mean
    logs      float32 [items, latent_dim, frames]   # its log-scale, clipped to [-14, 14]
    metadata  a 0-d unicode array holding one JSON object:
      format               "dac-jax-latents"
      version              1
      model                "DAC-VAE"
      model_config         the DACVAE constructor arguments (encoder/decoder dims and rates, ...)
      sample_rate          the model's rate (Hz): latents describe audio at this rate
      hop_length           samples per latent frame at sample_rate
      latent_dim           rows of z / mu / logs
      frame_rate           sample_rate / hop_length (latent frames per second)
      length               samples per channel at sample_rate (frames = ceil(length / hop_length))
      original_sample_rate the input's rate
      original_length      samples per channel of the input, at its rate
      channels             channels per signal; items = batch * channels, channel-major per signal
      input_db             [batch] loudness of each input, LUFS (BS.1770), measured before any gain
      normalize_db         the loudness the input was normalised to before encoding, or null (none,
                           as the original's inference); decoding restores input_db when it is set
      latent               "mean" (z = mu) or "sample" (z = mu + noise * exp(logs))
      seed                 the sampling seed, or null
      dac_jax_version      the writer's version
      sha256               the SHA-256 of z, mu, logs and the other metadata fields
                           (:func:`~dac_jax.codec.dacfile.content_digest`); absent in older files

Frame ``k`` of an item covers samples ``[k * hop_length, (k + 1) * hop_length)`` of the signal at
``sample_rate``, whatever window the encoder ran in.

Reading is bounded by the file's size: the zip members' declared sizes are checked against the
archive's (:data:`MAX_EXPANSION`: no zip bomb is inflated) and each member's ``.npy`` header against
the member's bytes before any array is made; rates and lengths must be plausible
(:data:`~dac_jax.codec.dacfile.MAX_SAMPLE_RATE`, ...). A file with a ``sha256`` is verified. Every
problem on reading is a one-line :class:`~dac_jax.errors.FileFormatError` that starts with the
file's path.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from dac_jax.codec.dacfile import (
    MAX_SAMPLE_RATE, MIN_FRAME_RATE, checked_int, content_digest, max_original_length, read_npy_header, reading,
    short_repr,
)
from dac_jax.errors import FileFormatError
from dac_jax.fileio import atomic_path
from dac_jax.version import __version__

FORMAT = "dac-jax-latents"
VERSION = 1
SUFFIX = ".npz"
ARRAYS = ("z", "mu", "logs")
LATENT_KINDS = ("mean", "sample")
#: The most a member may inflate to, relative to the archive: ``np.savez`` stores members
#: uncompressed, and ``np.savez_compressed`` shrinks float32 latents far less than this.
MAX_EXPANSION = 8

PathLike = Union[str, Path]


@dataclasses.dataclass(frozen=True)
class LatentFile:
    """DAC-VAE latents of ``batch`` signals of ``channels`` channels (see the module docstring)."""

    z: np.ndarray
    mu: np.ndarray
    logs: np.ndarray
    model_config: dict
    sample_rate: int
    hop_length: int
    length: int
    original_sample_rate: int
    original_length: int
    channels: int
    input_db: np.ndarray
    normalize_db: Optional[float] = None
    latent: str = "mean"
    seed: Optional[int] = None

    def __post_init__(self):
        _check(self, "LatentFile")

    @property
    def latent_dim(self) -> int:
        return self.z.shape[1]

    @property
    def frames(self) -> int:
        return self.z.shape[-1]

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def batch(self) -> int:
        return self.z.shape[0] // self.channels

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "model": "DAC-VAE", "model_config": self.model_config,
            "sample_rate": self.sample_rate, "hop_length": self.hop_length, "latent_dim": self.latent_dim,
            "frame_rate": self.frame_rate, "length": self.length,
            "original_sample_rate": self.original_sample_rate, "original_length": self.original_length,
            "channels": self.channels, "input_db": [float(v) for v in self.input_db],
            "normalize_db": self.normalize_db, "latent": self.latent, "seed": self.seed,
            "dac_jax_version": __version__,
        }

    def save(self, path: PathLike, overwrite: bool = True) -> Path:
        """Write the file (``.npz`` appended if missing); it appears whole or not at all."""
        path = Path(path)
        if path.suffix != SUFFIX:
            path = path.with_name(path.name + SUFFIX)
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temp name
                metadata = np.array(json.dumps(self._signed_metadata()))
                np.savez(f, z=self.z, mu=self.mu, logs=self.logs, metadata=metadata)
        return path

    def checksum(self, metadata: Mapping[str, Any]) -> str:
        """SHA-256 of the arrays and ``metadata`` (all fields but ``sha256``, as a reader parses them)."""
        return content_digest([self.z, self.mu, self.logs], {k: v for k, v in metadata.items() if k != "sha256"})

    def _signed_metadata(self) -> dict[str, Any]:
        meta = json.loads(json.dumps(self.metadata()))  # hashed exactly as a reader will parse it
        return {**meta, "sha256": self.checksum(meta)}

    @classmethod
    def load(cls, path: PathLike) -> "LatentFile":
        return load(path)


def load(path: PathLike) -> LatentFile:
    """Read a latent file written by :meth:`LatentFile.save`, strictly checked (see the module docstring)."""
    path = Path(path)
    where = str(path)
    with reading(where):
        return _load(path, where)


def _load(path: Path, where: str) -> LatentFile:
    if not path.is_file():
        raise FileFormatError(f"{where}: no such file")
    if not zipfile.is_zipfile(path):  # np.load would take anything else for a pickle, and refuse it
        raise FileFormatError(f"{where}: not a latent file (not an .npz archive)")
    entries = _read_entries(path, where)
    text = entries["metadata"]
    if text.shape != () or text.dtype.kind != "U":
        raise FileFormatError(f"{where}: metadata must be a JSON string, got a {text.dtype} array of shape {text.shape}")
    try:
        meta = json.loads(str(text))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, an int of too many digits, deep nesting
        raise FileFormatError(f"{where}: metadata is not valid JSON ({short_repr(str(e), 120)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FileFormatError(f"{where}: not a dac-jax latent file (format tag missing)")
    if meta.get("version") != VERSION:
        version = short_repr(meta.get("version"))
        raise FileFormatError(f"{where}: latent file version {version} is not supported (expected {VERSION})")
    if meta.get("model") != "DAC-VAE":
        model = short_repr(meta.get("model"))
        raise FileFormatError(f"{where}: latents of model {model}; only DAC-VAE latents are supported")
    fields = [f.name for f in dataclasses.fields(LatentFile) if f.name not in ARRAYS]
    missing = [k for k in fields if k not in meta]
    if missing:
        raise FileFormatError(f"{where}: metadata lacks {', '.join(missing)}")
    try:
        latents = _build({k: entries[k] for k in ARRAYS}, meta, fields, where)
    except FileFormatError as e:
        message = str(e).removeprefix("LatentFile: ")
        raise FileFormatError(message if message.startswith(where) else f"{where}: {message}") from None
    # verified last, so that a file edited by hand reports what is wrong with it, not only that it changed
    if "sha256" in meta and meta["sha256"] != latents.checksum(meta):
        raise FileFormatError(f"{where}: checksum mismatch: the file is corrupt (its content is not what was written)")
    return latents


def _read_entries(path: Path, where: str) -> dict[str, np.ndarray]:
    """The four arrays; each member's sizes are checked before it is inflated or made an array."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            names = (*ARRAYS, "metadata")
            missing = [k for k in names if f"{k}.npy" not in members]
            if missing:
                raise FileFormatError(f"{where}: not a dac-jax latent file (missing {', '.join(missing)})")
            declared, size = sum(members[f"{k}.npy"].file_size for k in names), path.stat().st_size
            if declared > MAX_EXPANSION * size:
                raise FileFormatError(
                    f"{where}: corrupt latent file: its members declare {declared} bytes, more than "
                    f"{MAX_EXPANSION} times the archive's {size} (a zip bomb?)"
                )
            return {k: _array(_inflate(archive, members[f"{k}.npy"], where), where, k) for k in names}
    except FileFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile and its decompressors raise a dozen types (BadZipFile,
        # EOFError, zlib.error, NotImplementedError for unknown methods, RuntimeError for encryption, ...)
        reason = short_repr(f"{type(e).__name__}: {e}", 120)
        raise FileFormatError(f"{where}: unreadable latent file ({reason})") from None


def _inflate(archive: zipfile.ZipFile, member: zipfile.ZipInfo, where: str) -> bytes:
    """A member's bytes, inflating no more than its declared size (then its CRC is checked)."""
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):  # bz2 and lzma inflate unbounded
        raise FileFormatError(
            f"{where}: corrupt latent file: {short_repr(member.filename)} uses compression method "
            f"{member.compress_type} (np.savez stores members, np.savez_compressed deflates them)"
        )
    with archive.open(member) as f:
        return f.read(member.file_size)  # a read without a size would inflate all the member holds


def _array(data: bytes, where: str, name: str) -> np.ndarray:
    """The array of one ``.npy`` member, whose header must describe exactly the bytes that follow it."""
    f = io.BytesIO(data)
    shape, fortran, dtype = read_npy_header(f, where, f"a latent file (member {name}.npy)")
    if dtype.hasobject:
        raise FileFormatError(f"{where}: {name} holds Python objects, which a latent file never has (nor loads)")
    body = memoryview(data)[f.tell():]
    if math.prod(shape) * dtype.itemsize != len(body):
        raise FileFormatError(
            f"{where}: corrupt latent file: {name} declares shape {short_repr(shape)} of {dtype} "
            f"({math.prod(shape) * dtype.itemsize} bytes) but holds {len(body)} bytes"
        )
    return np.frombuffer(body, dtype=dtype, count=math.prod(shape)).reshape(shape, order="F" if fortran else "C")


def _build(arrays: dict, meta: dict, fields: list[str], where: str) -> LatentFile:
    values = {k: meta[k] for k in fields}
    try:
        if not isinstance(meta["input_db"], list):
            raise TypeError
        values["input_db"] = np.asarray(meta["input_db"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise FileFormatError(f"{where}: input_db must be a list of numbers, got {short_repr(meta['input_db'])}") from None
    latents = LatentFile(**arrays, **values)
    for key in ("latent_dim", "frame_rate"):
        derived = getattr(latents, key)
        if key in meta and not _close(meta[key], derived):
            raise FileFormatError(
                f"{where}: metadata says {key}={short_repr(meta[key])}, the arrays and rates give {derived}"
            )
    return latents


def _close(value: Any, derived: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isclose(float(value), derived, rel_tol=1e-9)
    except OverflowError:  # an int too large for a float
        return False


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _check(f: LatentFile, where: str) -> None:
    """Validate and canonicalise ``f``'s fields in place (float32 read-only arrays, Python scalars)."""
    set_ = lambda name, value: object.__setattr__(f, name, value)  # noqa: E731
    shape = None
    for name in ARRAYS:
        a = np.asarray(getattr(f, name))
        if a.dtype.kind != "f":
            raise FileFormatError(f"{where}: {name} must be a float array, got dtype {a.dtype}")
        if a.ndim != 3 or 0 in a.shape:
            raise FileFormatError(f"{where}: {name} must have shape [items, latent_dim, frames], got {a.shape}")
        if shape is not None and a.shape != shape:
            raise FileFormatError(f"{where}: {name} has shape {a.shape}, z has {shape}")
        shape = a.shape
        if not np.all(np.isfinite(a)):
            raise FileFormatError(f"{where}: {name} contains NaN or Inf")
        a = np.ascontiguousarray(a, dtype=np.float32)
        a.flags.writeable = False
        set_(name, a)
    for name in ("sample_rate", "length", "original_sample_rate", "channels"):
        set_(name, checked_int(where, name, getattr(f, name), maximum=MAX_SAMPLE_RATE if "rate" in name else None))
    # bounded by the rate and the frames, so that decoding allocates only what the latents decode to
    set_("hop_length", checked_int(where, "hop_length", f.hop_length, maximum=f.sample_rate // MIN_FRAME_RATE))
    if not isinstance(f.model_config, Mapping):
        raise FileFormatError(f"{where}: model_config must be a mapping, got {type(f.model_config).__name__}")
    set_("model_config", dict(f.model_config))
    items, _, frames = shape
    if items % f.channels:
        raise FileFormatError(f"{where}: {items} latent rows (batch * channels) are not a multiple of channels={f.channels}")
    db = np.asarray(f.input_db)
    if db.dtype.kind not in "fiu" or db.shape != (items // f.channels,) or not np.all(np.isfinite(db)):
        raise FileFormatError(
            f"{where}: input_db must be {items // f.channels} finite number(s) (one per signal), "
            f"got {short_repr(db.tolist())}"
        )
    db = db.astype(np.float32)
    db.flags.writeable = False
    set_("input_db", db)
    if f.normalize_db is not None:
        if isinstance(f.normalize_db, bool) or not isinstance(f.normalize_db, (int, float)) or not _finite(f.normalize_db):
            raise FileFormatError(f"{where}: normalize_db must be a number or null, got {short_repr(f.normalize_db)}")
        set_("normalize_db", float(f.normalize_db))
    if f.latent not in LATENT_KINDS:
        raise FileFormatError(f"{where}: latent must be one of {', '.join(LATENT_KINDS)}, got {short_repr(f.latent)}")
    if f.seed is not None:
        set_("seed", checked_int(where, "seed", f.seed, minimum=0))
    expected = -(-f.length // f.hop_length)
    if frames != expected:
        raise FileFormatError(
            f"{where}: {frames} latent frames, but {short_repr(f.length)} samples at hop {f.hop_length} make {expected}"
        )
    limit = max_original_length(f.length, f.sample_rate, f.original_sample_rate)
    set_("original_length", checked_int(where, "original_length", f.original_length, maximum=limit))
