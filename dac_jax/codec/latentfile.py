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

Frame ``k`` of an item covers samples ``[k * hop_length, (k + 1) * hop_length)`` of the signal at
``sample_rate``, whatever window the encoder ran in. Every problem on reading is a one-line
:class:`~dac_jax.errors.FileFormatError` that starts with the file's path.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from dac_jax.errors import FileFormatError
from dac_jax.fileio import atomic_path

FORMAT = "dac-jax-latents"
VERSION = 1
SUFFIX = ".npz"
ARRAYS = ("z", "mu", "logs")
LATENT_KINDS = ("mean", "sample")

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
        from dac_jax import __version__

        return {
            "format": FORMAT, "version": VERSION, "model": "DAC-VAE", "model_config": self.model_config,
            "sample_rate": self.sample_rate, "hop_length": self.hop_length, "latent_dim": self.latent_dim,
            "frame_rate": self.frame_rate, "length": self.length,
            "original_sample_rate": self.original_sample_rate, "original_length": self.original_length,
            "channels": self.channels, "input_db": [float(v) for v in self.input_db],
            "normalize_db": self.normalize_db, "latent": self.latent, "seed": self.seed,
            "dac_jax_version": __version__,
        }

    def save(self, path: PathLike) -> Path:
        """Write the file (``.npz`` appended if missing); it appears whole or not at all."""
        path = Path(path)
        if path.suffix != SUFFIX:
            path = path.with_name(path.name + SUFFIX)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temp name
                np.savez(f, z=self.z, mu=self.mu, logs=self.logs, metadata=np.array(json.dumps(self.metadata())))
        return path

    @classmethod
    def load(cls, path: PathLike) -> "LatentFile":
        return load(path)


def load(path: PathLike) -> LatentFile:
    """Read a latent file written by :meth:`LatentFile.save`, strictly checked."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FileFormatError(f"{where}: no such file")
    if not zipfile.is_zipfile(path):  # np.load would take anything else for a pickle, and refuse it
        raise FileFormatError(f"{where}: not a latent file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            missing = [k for k in (*ARRAYS, "metadata") if k not in names]
            if missing:
                raise FileFormatError(f"{where}: not a dac-jax latent file (missing {', '.join(missing)})")
            arrays = {k: archive[k] for k in ARRAYS}
            text = archive["metadata"]
    except FileFormatError:
        raise
    except (zipfile.BadZipFile, EOFError) as e:
        raise FileFormatError(f"{where}: not a latent file (.npz): {e}") from None
    except (ValueError, OSError, KeyError) as e:  # corrupt members, pickled objects, truncation
        raise FileFormatError(f"{where}: unreadable latent file ({type(e).__name__}: {e})") from None
    if text.shape != () or text.dtype.kind != "U":
        raise FileFormatError(f"{where}: metadata must be a JSON string, got a {text.dtype} array of shape {text.shape}")
    try:
        meta = json.loads(str(text))
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{where}: metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FileFormatError(f"{where}: not a dac-jax latent file (format tag missing)")
    if meta.get("version") != VERSION:
        raise FileFormatError(f"{where}: latent file version {meta.get('version')!r} is not supported (expected {VERSION})")
    if meta.get("model") != "DAC-VAE":
        raise FileFormatError(f"{where}: latents of model {meta.get('model')!r}; only DAC-VAE latents are supported")
    fields = [f.name for f in dataclasses.fields(LatentFile) if f.name not in ARRAYS]
    missing = [k for k in fields if k not in meta]
    if missing:
        raise FileFormatError(f"{where}: metadata lacks {', '.join(missing)}")
    try:
        return _build(arrays, meta, fields, where)
    except FileFormatError as e:
        message = str(e).removeprefix("LatentFile: ")
        raise FileFormatError(message if message.startswith(where) else f"{where}: {message}") from None


def _build(arrays: dict, meta: dict, fields: list[str], where: str) -> LatentFile:
    values = {k: meta[k] for k in fields}
    try:
        if not isinstance(meta["input_db"], list):
            raise TypeError
        values["input_db"] = np.asarray(meta["input_db"], dtype=np.float64)
    except (TypeError, ValueError):
        raise FileFormatError(f"{where}: input_db must be a list of numbers, got {meta['input_db']!r}") from None
    latents = LatentFile(**arrays, **values)
    for key in ("latent_dim", "frame_rate"):
        derived = getattr(latents, key)
        if key in meta and not math.isclose(float(meta[key]), derived, rel_tol=1e-9):
            raise FileFormatError(f"{where}: metadata says {key}={meta[key]}, the arrays and rates give {derived}")
    return latents


def _int(where: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FileFormatError(f"{where}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise FileFormatError(f"{where}: {name} must be >= {minimum}, got {value}")
    return int(value)


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
    for name in ("sample_rate", "hop_length", "length", "original_sample_rate", "original_length", "channels"):
        set_(name, _int(where, name, getattr(f, name)))
    if not isinstance(f.model_config, Mapping):
        raise FileFormatError(f"{where}: model_config must be a mapping, got {type(f.model_config).__name__}")
    set_("model_config", dict(f.model_config))
    items, _, frames = shape
    if items % f.channels:
        raise FileFormatError(f"{where}: {items} latent rows (batch * channels) are not a multiple of channels={f.channels}")
    db = np.asarray(f.input_db)
    if db.dtype.kind not in "fiu" or db.shape != (items // f.channels,) or not np.all(np.isfinite(db)):
        raise FileFormatError(
            f"{where}: input_db must be {items // f.channels} finite number(s) (one per signal), got {db.tolist()!r}"
        )
    db = db.astype(np.float32)
    db.flags.writeable = False
    set_("input_db", db)
    if f.normalize_db is not None:
        if isinstance(f.normalize_db, bool) or not isinstance(f.normalize_db, (int, float)) or not math.isfinite(f.normalize_db):
            raise FileFormatError(f"{where}: normalize_db must be a number or null, got {f.normalize_db!r}")
        set_("normalize_db", float(f.normalize_db))
    if f.latent not in LATENT_KINDS:
        raise FileFormatError(f"{where}: latent must be one of {', '.join(LATENT_KINDS)}, got {f.latent!r}")
    if f.seed is not None:
        set_("seed", _int(where, "seed", f.seed, minimum=0))
    if frames != math.ceil(f.length / f.hop_length):
        raise FileFormatError(
            f"{where}: {frames} latent frames, but {f.length} samples at hop {f.hop_length} make {math.ceil(f.length / f.hop_length)}"
        )
