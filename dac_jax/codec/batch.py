"""Encode or decode many files and directory trees, mirroring the tree in the output folder.

DAC writes ``.dac`` files, DAC-VAE latent ``.npz`` files; ``roundtrip_files`` writes the decoded
audio of either. One bad file is reported and the others still run; the summary says how many failed.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from tqdm import tqdm

from dac_jax.api import Codec, VAECodec
from dac_jax.audio.io import audio_info, write_audio
from dac_jax.codec import latents
from dac_jax.codec.compress import DecodedAudio, _check_options, check_options, compress, decompress
from dac_jax.errors import DacJaxError, UsageError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".mp4", ".ogg", ".aif", ".aiff")
DAC_SUFFIXES = (".dac",)
LATENT_SUFFIXES = (".npz",)


@dataclasses.dataclass
class BatchSummary:
    done: list[Path] = dataclasses.field(default_factory=list)
    failed: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def line(self, verb: str) -> str:
        rtf = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return (
            f"{verb} {len(self.done)} file{'s' * (len(self.done) != 1)}{failed}: "
            f"{self.audio_seconds:.1f} s of audio in {self.wall_seconds:.1f} s ({rtf:.2f}x real time)"
        )


def find_inputs(inputs: Iterable[str | Path], suffixes: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """``(file, path relative to the output folder)`` for files, and for files found under directories.

    A missing input is returned as is, so that its error is reported like any other file's.
    """
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
                found.append((path, path.relative_to(item)))
        else:
            found.append((item, Path(item.name)))
    return found


def _run(
    jobs: list[tuple[Path, Path]], work: Callable[[Path, Path, Callable[[int], None]], float], verb: str,
    progress: bool,
) -> BatchSummary:
    summary = BatchSummary()
    start = time.perf_counter()
    files = tqdm(jobs, desc=verb, unit="file", disable=not progress or len(jobs) < 2, leave=False)
    for source, target in files:
        chunks = tqdm(desc=source.name, unit="chunk", disable=not progress, leave=False)
        try:
            summary.audio_seconds += work(source, target, chunks.update)
            summary.done.append(source)
        except (DacJaxError, OSError) as e:
            message = str(e) if str(source) in str(e) else f"{source}: {e}"
            summary.failed.append((source, message))
            tqdm.write(f"error: {message}", file=sys.stderr)
        finally:
            chunks.close()
    summary.wall_seconds = time.perf_counter() - start
    return summary


def encode_files(
    codec: Codec, inputs: Iterable[str | Path], output: str | Path, *, win_duration: float = 5.0,
    n_quantizers: Optional[int] = None, normalize_db: Optional[float] = -16.0, mode: str = "independent",
    batch_size: int = 4, progress: bool = True,
) -> BatchSummary:
    """Compress audio files (and trees of them) to ``.dac`` files under ``output``."""
    check_options(codec, win_duration, n_quantizers, mode, batch_size)
    output = Path(output)

    def work(source: Path, relative: Path, tick) -> float:
        info = audio_info(source)
        dacfile = compress(
            codec, source, win_duration=win_duration, n_quantizers=n_quantizers, normalize_db=normalize_db,
            mode=mode, batch_size=batch_size, progress=tick,
        )
        dacfile.save(output / relative.with_suffix(".dac"))
        return info.duration

    return _run(find_inputs(inputs, AUDIO_SUFFIXES), work, "encode", progress)


def _write_wav(path: Path, decoded: DecodedAudio) -> float:
    """Write the first (only) signal of ``decoded`` as a WAV file; its duration in seconds."""
    samples = decoded.samples
    write_audio(path, samples.reshape(-1, samples.shape[-1]), decoded.sample_rate)
    return samples.shape[-1] / decoded.sample_rate


def decode_files(
    codec: Codec, inputs: Iterable[str | Path], output: str | Path, *, win_duration: float = 5.0,
    batch_size: int = 4, progress: bool = True,
) -> BatchSummary:
    """Decompress ``.dac`` files (and trees of them) to ``.wav`` files under ``output``."""
    output = Path(output)

    def work(source: Path, relative: Path, tick) -> float:
        decoded = decompress(codec, source, win_duration=win_duration, batch_size=batch_size, progress=tick)
        return _write_wav(output / relative.with_suffix(".wav"), decoded)

    return _run(find_inputs(inputs, DAC_SUFFIXES), work, "decode", progress)


def encode_latent_files(
    vae: VAECodec, inputs: Iterable[str | Path], output: str | Path, *, win_duration: float = 5.0,
    normalize_db: Optional[float] = None, seed: Optional[int] = None, batch_size: int = 4, progress: bool = True,
) -> BatchSummary:
    """Encode audio files (and trees of them) to DAC-VAE latent files (``.npz``) under ``output``."""
    _check_options(win_duration, batch_size, "independent")
    output = Path(output)

    def work(source: Path, relative: Path, tick) -> float:
        info = audio_info(source)
        encoded = latents.encode(vae, source, None, win_duration, normalize_db, seed, batch_size, tick)
        encoded.save(output / relative.with_suffix(".npz"))
        return info.duration

    return _run(find_inputs(inputs, AUDIO_SUFFIXES), work, "encode", progress)


def decode_latent_files(
    vae: VAECodec, inputs: Iterable[str | Path], output: str | Path, *, win_duration: float = 5.0,
    batch_size: int = 4, progress: bool = True,
) -> BatchSummary:
    """Decode DAC-VAE latent files (and trees of them) to ``.wav`` files under ``output``."""
    _check_options(win_duration, batch_size, "independent")
    output = Path(output)

    def work(source: Path, relative: Path, tick) -> float:
        decoded = latents.decode(vae, source, win_duration, batch_size, tick)
        return _write_wav(output / relative.with_suffix(".wav"), decoded)

    return _run(find_inputs(inputs, LATENT_SUFFIXES), work, "decode", progress)


def roundtrip_files(
    model: Codec | VAECodec, inputs: Iterable[str | Path], output: str | Path, *, win_duration: float = 5.0,
    n_quantizers: Optional[int] = None, normalize_db: Optional[float] = -16.0, seed: Optional[int] = None,
    batch_size: int = 4, progress: bool = True,
) -> BatchSummary:
    """Encode and decode audio files in memory (window-independent), writing the result as ``.wav``
    under ``output``: the original DAC-VAE inference's ``encode_decode`` mode, for either model."""
    output = Path(output)
    if isinstance(model, VAECodec):
        _check_options(win_duration, batch_size, "independent")

        def roundtrip(source, tick):
            return latents.decode(model, latents.encode(model, source, None, win_duration, normalize_db, seed, batch_size, tick),
                                  win_duration, batch_size, tick)
    else:
        check_options(model, win_duration, n_quantizers, "independent", batch_size)

        def roundtrip(source, tick):
            dacfile = compress(model, source, None, win_duration, n_quantizers, normalize_db, "independent", batch_size, tick)
            return decompress(model, dacfile, win_duration, batch_size, tick)

    def work(source: Path, relative: Path, tick) -> float:
        target = output / relative.with_suffix(".wav")
        if target.resolve() == source.resolve():
            raise UsageError(f"{source}: the output would overwrite the input; choose another --output folder")
        audio_info(source)
        return _write_wav(target, roundtrip(source, tick))

    return _run(find_inputs(inputs, AUDIO_SUFFIXES), work, "encode_decode", progress)
