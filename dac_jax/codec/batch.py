"""Encode or decode many files and directory trees, mirroring the tree in the output folder.

One bad file is reported and the others still run; the summary says how many failed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from tqdm import tqdm

from dac_jax.api import Codec
from dac_jax.audio.io import audio_info, write_audio
from dac_jax.codec.compress import check_options, compress, decompress
from dac_jax.errors import DacJaxError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".mp4", ".ogg", ".aif", ".aiff")
DAC_SUFFIXES = (".dac",)


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
            tqdm.write(f"error: {message}")
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


def decode_files(
    codec: Codec, inputs: Iterable[str | Path], output: str | Path, *, win_duration: float = 5.0,
    batch_size: int = 4, progress: bool = True,
) -> BatchSummary:
    """Decompress ``.dac`` files (and trees of them) to ``.wav`` files under ``output``."""
    output = Path(output)

    def work(source: Path, relative: Path, tick) -> float:
        decoded = decompress(codec, source, win_duration=win_duration, batch_size=batch_size, progress=tick)
        samples = decoded.samples
        write_audio(output / relative.with_suffix(".wav"), samples.reshape(-1, samples.shape[-1]), decoded.sample_rate)
        return samples.shape[-1] / decoded.sample_rate

    return _run(find_inputs(inputs, DAC_SUFFIXES), work, "decode", progress)
