"""Encode or decode many files and directory trees, mirroring the tree in the output folder.

Written once for both codecs: what differs (DAC's ``.dac`` files and options, DAC-VAE's latent
``.npz`` files and options) comes from the codec's :class:`~dac_jax.codec.signal.CodecFiles`
(:data:`FILES`, keyed by the runtime model's ``kind``). ``encode_files`` writes the codec's files,
``decode_files`` reads them back to ``.wav``, ``roundtrip_files`` writes the decoded audio of an
in-memory round trip. One bad file is reported and the others still run; the summary says how
many failed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from tqdm import tqdm

from dac_jax.audio.io import audio_info, write_audio
from dac_jax.codec import compress, latents
from dac_jax.codec.signal import CodecFiles, DecodedAudio
from dac_jax.errors import DacJaxError, UsageError
from dac_jax.fileio import check_folder, is_temp, remove_stale_temps
from dac_jax.runtime import Model

# What the reader opens (libsndfile's formats; see dac_jax.audio.io), by suffix. Files with other
# suffixes under an input folder are counted and reported as skipped, never silently dropped.
AUDIO_SUFFIXES = (
    ".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".caf", ".w64",
    ".rf64", ".au", ".snd", ".voc", ".ircam", ".sf", ".nist", ".sph", ".paf", ".svx", ".htk", ".xi", ".sds",
    ".avr", ".wve", ".mat", ".pvf", ".sd2",
)
#: each codec's files, by the runtime model's ``kind``
FILES: dict[str, CodecFiles] = {"dac": compress.FILES, "vae": latents.FILES}
#: the tasks of a run: ``task -> (suffixes read, suffix written)`` for a codec's files
TASKS: dict[str, Callable[[CodecFiles], tuple[tuple[str, ...], str]]] = {
    "encode": lambda files: (AUDIO_SUFFIXES, files.suffix),
    "decode": lambda files: ((files.suffix,), ".wav"),
    "roundtrip": lambda files: (AUDIO_SUFFIXES, ".wav"),
}
#: the default of ``normalize_db``: the codec's own (DAC -16 LUFS, DAC-VAE none)
CODEC_DEFAULT: Any = "codec default"


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


@dataclasses.dataclass
class Plan:
    """What a run will read and write, all checked before any work: ``jobs`` as ``(input, output)``
    with no two outputs alike and none that would replace an input or (without ``overwrite``) any
    existing file; ``failed``, the inputs that cannot run at all (a folder with no matching file)."""

    jobs: list[tuple[Path, Path]]
    failed: list[tuple[Path, str]]
    skipped: dict[str, int]  # suffix -> files under input folders left out as not matching


def _describe(suffixes: tuple[str, ...]) -> str:
    return " ".join(suffixes) if len(suffixes) <= 8 else " ".join(suffixes[:8]) + " ..."


def find_inputs(inputs: Iterable[str | Path], suffixes: tuple[str, ...]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]], dict[str, int]]:
    """``(file, path relative to the output folder)`` for files, and for files found under folders;
    the folders with no such file (as failures); the counts of other files skipped, by suffix.

    A missing input file is returned as is, so that its error is reported like any other file's.
    """
    found, failed, skipped = [], [], {}
    for item in map(Path, inputs):
        if not item.is_dir():
            found.append((item, Path(item.name)))
            continue
        matches = []
        for path in sorted(item.rglob("*")):
            if not path.is_file() or is_temp(path.name):
                continue
            suffix = path.suffix.lower()
            if suffix in suffixes:
                matches.append((path, path.relative_to(item)))
            else:
                skipped[suffix or "(none)"] = skipped.get(suffix or "(none)", 0) + 1
        if not matches:
            failed.append((item, f"{item}: no input files found under the folder (suffixes: {_describe(suffixes)})"))
        found.extend(matches)
    return found, failed, skipped


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def plan(inputs: Iterable[str | Path], output: str | Path, task: str, files: CodecFiles, overwrite: bool = False) -> Plan:
    """The jobs of a run of ``task`` (:data:`TASKS`) with a codec's ``files`` (see :class:`Plan`);
    :class:`UsageError` (one line) for an output folder that cannot be written, two inputs with one
    output, an output that is an input, or an existing output without ``overwrite``. The functions
    below plan their run unless given one (``planned``: the CLI plans before the model loads)."""
    suffixes, out_suffix = TASKS[task](files)
    output = Path(output)
    found, failed, skipped = find_inputs(inputs, suffixes)
    check_folder(output)
    jobs, by_target = [], {}
    sources = {_key(source) for source, _ in found}
    existing = []
    for source, relative in found:
        target = output / relative.with_suffix(out_suffix)
        key = _key(target)
        if key in by_target:
            raise UsageError(
                f"{by_target[key]} and {source} would both be written to {target}; "
                "encode them in separate runs or into separate --output folders")
        by_target[key] = source
        if key in sources or (target.exists() and source.exists() and os.path.samefile(target, source)):
            raise UsageError(f"{source}: its output {target} is an input of this run; choose another --output folder")
        if target.is_dir():
            raise UsageError(f"{target}: a folder stands where {source}'s output goes")
        if os.path.lexists(target):
            existing.append(target)
        jobs.append((source, target))
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UsageError(f"{existing[0]}{more}: already exist{'s' * (len(existing) == 1)}; "
                         "pass --overwrite to replace them (inputs are never replaced)")
    return Plan(jobs, failed, skipped)


def _run(
    run: Plan, work: Callable[[Path, Path, Callable[[int], None]], float], verb: str, progress: bool,
) -> BatchSummary:
    summary = BatchSummary(failed=list(run.failed))
    for _, message in run.failed:
        tqdm.write(f"error: {message}", file=sys.stderr)
    if run.skipped:
        counts = ", ".join(f"{n} {suffix}" for suffix, n in sorted(run.skipped.items()))
        tqdm.write(f"note: skipped {sum(run.skipped.values())} files with other suffixes ({counts})", file=sys.stderr)
    for folder in {target.parent for _, target in run.jobs}:
        remove_stale_temps(folder)  # what runs killed earlier left behind
    start = time.perf_counter()
    files = tqdm(run.jobs, desc=verb, unit="file", disable=not progress or len(run.jobs) < 2, leave=False)
    for source, target in files:
        chunks = tqdm(desc=source.name, unit="chunk", disable=not progress, leave=False)
        try:
            summary.audio_seconds += work(source, target, chunks.update)
            summary.done.append(source)
        except (DacJaxError, OSError, MemoryError, RecursionError) as e:
            summary.failed.append((source, _message(source, e)))
            tqdm.write(f"error: {summary.failed[-1][1]}", file=sys.stderr)
        finally:
            chunks.close()
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _message(source: Path, e: BaseException) -> str:
    if isinstance(e, MemoryError):
        return f"{source}: out of memory while processing the file"
    if isinstance(e, RecursionError):
        return f"{source}: too deeply nested to process"
    if isinstance(e, FileExistsError):
        return f"{source}: its output {e.filename} appeared during the run; not replaced"
    text = str(e) if not isinstance(e, OSError) or not e.strerror else f"{e.strerror}: {e.filename}"
    return text if str(source) in text else f"{source}: {text}"


def encode_files(
    model: Model, inputs: Iterable[str | Path], output: str | Path, *, win_duration: float = 5.0,
    normalize_db: Optional[float] = CODEC_DEFAULT, batch_size: int = 4, progress: bool = True,
    overwrite: bool = False, planned: Optional[Plan] = None, **options,
) -> BatchSummary:
    """Encode audio files (and trees of them) to the codec's files under ``output``: ``.dac`` for
    DAC (options ``n_quantizers``, ``mode``), latent ``.npz`` for DAC-VAE (option ``seed``).

    Nothing is replaced unless ``overwrite`` (inputs never); see :func:`plan` for what is refused."""
    files, normalize_db, options = _files(model, normalize_db, options, win_duration, batch_size)
    run = planned or plan(inputs, output, "encode", files, overwrite)

    def work(source: Path, target: Path, tick) -> float:
        info = audio_info(source)
        files.encode(model, source, win_duration=win_duration, normalize_db=normalize_db, batch_size=batch_size,
                     progress=tick, **options).save(target, overwrite=overwrite)
        return info.duration

    return _run(run, work, "encode", progress)


def decode_files(
    model: Model, inputs: Iterable[str | Path], output: str | Path, *, win_duration: float = 5.0,
    batch_size: int = 4, progress: bool = True, overwrite: bool = False, planned: Optional[Plan] = None,
) -> BatchSummary:
    """Decode the codec's files (``.dac`` or latent ``.npz``, and trees of them) to ``.wav`` under ``output``."""
    files, _, _ = _files(model, None, {}, win_duration, batch_size)
    run = planned or plan(inputs, output, "decode", files, overwrite)

    def work(source: Path, target: Path, tick) -> float:
        decoded = files.decode(model, source, win_duration=win_duration, batch_size=batch_size, progress=tick)
        return _write_wav(target, decoded, overwrite)

    return _run(run, work, "decode", progress)


def roundtrip_files(
    model: Model, inputs: Iterable[str | Path], output: str | Path, *, win_duration: float = 5.0,
    normalize_db: Optional[float] = CODEC_DEFAULT, batch_size: int = 4, progress: bool = True,
    overwrite: bool = False, planned: Optional[Plan] = None, **options,
) -> BatchSummary:
    """Encode and decode audio files in memory (window-independent), writing the result as ``.wav``
    under ``output``: the original DAC-VAE inference's ``encode_decode`` mode, for either model."""
    if options.get("mode", "independent") != "independent":
        raise UsageError("a round trip runs window-independent only; mode must be independent")
    files, normalize_db, options = _files(model, normalize_db, options, win_duration, batch_size)
    run = planned or plan(inputs, output, "roundtrip", files, overwrite)

    def work(source: Path, target: Path, tick) -> float:
        audio_info(source)
        encoded = files.encode(model, source, win_duration=win_duration, normalize_db=normalize_db,
                               batch_size=batch_size, progress=tick, **options)
        decoded = files.decode(model, encoded, win_duration=win_duration, batch_size=batch_size, progress=tick)
        return _write_wav(target, decoded, overwrite)

    return _run(run, work, "encode_decode", progress)


def _files(model: Model, normalize_db, options: dict, win_duration: float = 5.0, batch_size: int = 4):
    """The model's :class:`CodecFiles`, the loudness target and the codec's own options, with
    every option checked (the other codec's options are refused unless left at their defaults)."""
    files = FILES[model.kind]
    unknown = sorted(set(options) - {"n_quantizers", "mode", "seed"})
    if unknown:
        raise UsageError(f"unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)} (the {files.name} "
                         f"options are {', '.join(files.options)})")
    normalize_db = files.normalize_db if normalize_db is CODEC_DEFAULT else normalize_db
    files.check(model, win_duration, batch_size, normalize_db, **options)
    return files, normalize_db, {k: v for k, v in options.items() if k in files.options}


def _write_wav(path: Path, decoded: DecodedAudio, overwrite: bool) -> float:
    """Write the first (only) signal of ``decoded`` as a WAV file; its duration in seconds."""
    samples = decoded.samples
    write_audio(path, samples.reshape(-1, samples.shape[-1]), decoded.sample_rate, overwrite=overwrite)
    return samples.shape[-1] / decoded.sample_rate


def encode_latent_files(vae: Model, inputs, output, **kwargs) -> BatchSummary:
    """Deprecated: :func:`encode_files` serves both codecs."""
    warnings.warn("encode_latent_files is deprecated; use encode_files", DeprecationWarning, stacklevel=2)
    return encode_files(vae, inputs, output, **kwargs)


def decode_latent_files(vae: Model, inputs, output, **kwargs) -> BatchSummary:
    """Deprecated: :func:`decode_files` serves both codecs."""
    warnings.warn("decode_latent_files is deprecated; use decode_files", DeprecationWarning, stacklevel=2)
    return decode_files(vae, inputs, output, **kwargs)
