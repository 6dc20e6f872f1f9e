"""Evaluate a codec over a folder, or compare two folders: the original DAC's ``scripts/evaluate.py``.

Two forms, one engine:

- :func:`evaluate_model`: every audio file under ``test_dir`` is compressed and decompressed with
  the model, through the codec's own file functions (``dac_jax.codec.batch.FILES``: DAC's
  ``compress`` / ``decompress``, DAC-VAE's ``encode`` / ``decode``; the options mean what they mean
  for ``encode``), and the result is compared with the input. The bitrate of what was coded is
  recorded twice: ``kbps`` from the coded frames (DAC: codes x log2(codebook size); DAC-VAE: the
  latent floats x their bits) and ``file_kbps`` from the size of the ``.dac`` / latent ``.npz``
  file the codec writes, both per second of input audio.
- :func:`evaluate_folders`: files under ``reference`` and ``estimate`` paired by relative path
  (suffixes may differ: ``x.flac`` pairs with ``x.wav``); a file without its partner is listed as
  unpaired and the others are still evaluated.

The metrics are :mod:`dac_jax.evaluate.metrics`. The distances run in this process (numpy, the
resampling in JAX); the quality scores (ViSQOL, PESQ, STOI: seconds per file) run in ``workers``
spawned processes (0: here) while the next files are coded. A file that cannot be read or coded is a row with its error;
the run goes on. The outputs (:mod:`dac_jax.evaluate.report`) are written atomically at the end and
never replace existing files without ``overwrite`` (refused before any work).
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
from tqdm import tqdm

from dac_jax.audio.io import read_audio
from dac_jax.codec.batch import AUDIO_SUFFIXES, CODEC_DEFAULT, FILES, find_inputs
from dac_jax.errors import DacJaxError, UsageError
from dac_jax.evaluate import metrics, report
from dac_jax.runtime import Model

# what a failing file may raise (dac-jax's own errors, the file system's, a file too big to hold)
_FILE_ERRORS = (DacJaxError, OSError, MemoryError)


@dataclasses.dataclass
class EvaluationSummary:
    """What a run wrote and how it went; ``rows`` are the CSV's, ``summary`` the JSON's."""

    rows: list[dict]
    summary: dict
    outputs: tuple[Path, ...]

    @property
    def failed(self) -> list[dict]:
        return self.summary["failed"]

    def line(self) -> str:
        s = self.summary
        extra = "".join(f", {n} {what}" for n, what in ((len(s["failed"]), "failed"), (len(s["unpaired"]), "unpaired")) if n)
        return f"evaluated {s['evaluated']} file{'s' * (s['evaluated'] != 1)}{extra}: see {self.outputs[1]}"


@dataclasses.dataclass
class _Job:
    """One row to produce: ``load()`` gives ``(reference, its rate, estimate, its rate, extra
    columns)``; ``error`` is set for a row that fails before loading (an unpaired file)."""

    relative: Path
    load: Optional[Callable[[], tuple[np.ndarray, int, np.ndarray, int, dict]]]
    error: Optional[str] = None
    unpaired: bool = False


def _quality_task(job: metrics.QualityJob) -> tuple[dict, list[str], float]:
    """In a worker: one rate's quality scores, notes, and the seconds they took."""
    start = time.perf_counter()
    values, notes = metrics.quality(job)
    return values, notes, time.perf_counter() - start


def _collect(row: dict, result: Future | tuple) -> None:
    """Add one quality task's scores, notes and seconds to its row."""
    try:
        values, notes, seconds = result.result() if isinstance(result, Future) else result
    except BrokenProcessPool as e:  # a worker died (e.g. killed for memory): the row keeps its distances
        values, notes, seconds = {}, [f"quality scores lost: a worker process died ({e})"], 0.0
    row.update(values)
    row["notes"] += notes
    row["time_s"] += seconds


def _message(where: Path, e: BaseException) -> str:
    if isinstance(e, MemoryError):
        return f"{where}: out of memory while evaluating the file"
    text = str(e) if not isinstance(e, OSError) or not e.strerror else f"{e.strerror}: {e.filename}"
    return text if str(where) in text else f"{where}: {text}"


def _evaluate(jobs: list[_Job], output: Path, groups: tuple[str, ...], workers: int, progress: bool,
              overwrite: bool, title: str, about: dict, extra_columns: list[str]) -> EvaluationSummary:
    output = Path(output)
    notices = list(metrics.missing_quality(groups).values()) + metrics.quality_notices(groups)
    for notice in notices:
        tqdm.write(f"note: {notice}", file=sys.stderr)
    groups = tuple(g for g in groups if g not in metrics.missing_quality(groups))
    wanted_quality = any(g in metrics.QUALITY for g in groups)
    # spawned, not forked: this process runs JAX's threads, which a fork would copy half-alive
    pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            if wanted_quality and workers > 0 else None)
    rows: list[dict] = []
    # quality jobs in flight: bounded, so that the signals waiting for a worker (some MB per file)
    # never pile up for a whole test set
    inflight: collections.deque[tuple[dict, Future]] = collections.deque()
    limit = 2 * max(workers, 1)
    try:
        for job in tqdm(jobs, desc="evaluate", unit="file", disable=not progress, leave=False):
            row = {"path": job.relative.as_posix(), "subfolder": job.relative.parent.as_posix()}
            rows.append(row)
            if job.error:
                row.update(error=job.error, unpaired=job.unpaired)
                continue
            start = time.perf_counter()
            try:
                reference, ref_rate, estimate, est_rate, extra = job.load()
                values, quality_jobs, notes = metrics.pair_metrics(
                    reference, ref_rate, estimate, est_rate, groups, where=str(job.relative))
            except _FILE_ERRORS as e:
                row["error"] = _message(job.relative, e)
                tqdm.write(f"error: {row['error']}", file=sys.stderr)
                continue
            row.update(extra, duration_s=reference.shape[-1] / ref_rate, notes=notes, **values)
            row["time_s"] = time.perf_counter() - start
            for q in quality_jobs:
                if pool is None:
                    _collect(row, _quality_task(q))
                    continue
                while len(inflight) >= limit:
                    _collect(*inflight.popleft())
                inflight.append((row, pool.submit(_quality_task, q)))
        for row, future in tqdm(list(inflight), desc="quality", unit="score", disable=not progress or not inflight,
                                leave=False):
            _collect(row, future)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    columns = metrics.columns(groups)
    fields = ["path", "subfolder", *columns, *extra_columns, "duration_s", "time_s", "error", "note"]
    good = [r for r in rows if not r.get("error")]
    summary = {
        "title": title,
        "about": about,
        "evaluated": len(good),
        "failed": [{"path": r["path"], "error": r["error"]} for r in rows if r.get("error") and not r.get("unpaired")],
        "unpaired": [{"path": r["path"], "error": r["error"]} for r in rows if r.get("unpaired")],
        "notices": notices,
        "time_per_file_s": float(np.mean([r["time_s"] for r in good])) if good else None,
        "higher_is_better": {g: metrics.HIGHER_IS_BETTER[g] for g in groups},
        "metrics": report.summarize(rows, columns),
    }
    for r in rows:
        r.pop("unpaired", None)
        r["note"] = "; ".join(r.pop("notes", [])) or None
    outputs = (report.write_csv(output / report.CSV_NAME, rows, fields, overwrite),
               *report.write_summary(output, summary, overwrite))
    return EvaluationSummary(rows, summary, outputs)


def _check_workers(workers: int) -> int:
    if not isinstance(workers, int) or not 0 <= workers <= 64:
        raise UsageError(f"workers must be an integer in 0..64; got {workers!r}")
    return workers


def _audio_files(folder: Path, what: str) -> tuple[list[tuple[Path, Path]], dict[str, int]]:
    if not Path(folder).is_dir():
        raise UsageError(f"{folder}: the {what} folder does not exist or is not a folder")
    found, _, skipped = find_inputs([folder], AUDIO_SUFFIXES)
    return found, skipped


# -- two folders -------------------------------------------------------------------------------


def pair_files(reference: Path, estimate: Path) -> tuple[list[tuple[Path, Optional[Path], Optional[Path]]], list[str]]:
    """``(relative path, reference file or None, estimate file or None)`` for every file of either
    folder, paired by relative path without the suffix (the reference's path names the row), and
    the notes about files that could not be paired unambiguously."""
    sides, notes = [], []
    for folder, what in ((reference, "reference"), (estimate, "estimate")):
        found, _ = _audio_files(folder, what)
        by_stem: dict[Path, Path] = {}
        for path, relative in found:
            stem = relative.with_suffix("")
            if stem in by_stem:
                notes.append(f"{path}: another {what} file has the same name but another suffix "
                             f"({by_stem[stem].name}); only that one is paired")
                continue
            by_stem[stem] = path
        sides.append(by_stem)
    refs, ests = sides
    pairs = []
    for stem in sorted(set(refs) | set(ests)):
        ref, est = refs.get(stem), ests.get(stem)
        relative = (ref.relative_to(reference) if ref else est.relative_to(estimate))
        pairs.append((relative, ref, est))
    return pairs, notes


def evaluate_folders(reference: str | Path, estimate: str | Path, output: str | Path, *,
                     groups: Iterable[str] = metrics.GROUPS, workers: int = 2, progress: bool = True,
                     overwrite: bool = False) -> EvaluationSummary:
    """Compare every file under ``estimate`` with its partner under ``reference``; write
    ``metrics.csv``, ``summary.md`` and ``summary.json`` in ``output``."""
    reference, estimate, workers = Path(reference), Path(estimate), _check_workers(workers)
    report.check_outputs(output, overwrite)
    pairs, notes = pair_files(reference, estimate)
    if not pairs:
        raise UsageError(f"no audio files found under {reference} or {estimate}")
    for note in notes:
        tqdm.write(f"note: {note}", file=sys.stderr)

    def loader(ref: Path, est: Path):
        def load():
            x, rx = read_audio(ref)
            y, ry = read_audio(est)
            return x, rx, y, ry, {}
        return load

    jobs = []
    for relative, ref, est in pairs:
        if ref is None or est is None:
            missing = "no reference file" if ref is None else "no estimate file"
            jobs.append(_Job(relative, None, f"{missing} with this path (any audio suffix)", unpaired=True))
        else:
            jobs.append(_Job(relative, loader(ref, est)))
    return _evaluate(jobs, Path(output), tuple(groups), workers, progress, overwrite,
                     title=f"{estimate} against {reference}",
                     about={"reference": str(reference), "estimate": str(estimate)}, extra_columns=[])


# -- a model over a folder ---------------------------------------------------------------------


def _coded_bits(encoded, model: Model) -> float:
    """Bits of what was coded: DAC codes at log2(codebook size) each; DAC-VAE latent floats."""
    if model.kind == "dac":
        return float(np.asarray(encoded.codes).size * np.log2(model.config.codebook_size))
    z = np.asarray(encoded.z)
    return float(z.size * z.dtype.itemsize * 8)


def evaluate_model(model: Model, test_dir: str | Path, output: str | Path, *, groups: Iterable[str] = metrics.GROUPS,
                   win_duration: float = 5.0, normalize_db=CODEC_DEFAULT, batch_size: int = 4, workers: int = 2,
                   progress: bool = True, overwrite: bool = False, model_id: str = "", **options) -> EvaluationSummary:
    """Compress and decompress every audio file under ``test_dir`` with ``model`` (a DAC or a
    DAC-VAE; ``options``: DAC's ``n_quantizers`` / ``mode``, DAC-VAE's ``seed``, as for ``encode``)
    and compare the result with the input; write the outputs in ``output``."""
    test_dir, workers = Path(test_dir), _check_workers(workers)
    files = FILES[model.kind]
    normalize_db = files.normalize_db if normalize_db is CODEC_DEFAULT else normalize_db
    files.check(model, win_duration, batch_size, normalize_db, **options)  # refuses the other codec's options
    options = {k: v for k, v in options.items() if k in files.options}
    report.check_outputs(output, overwrite)
    found, _ = _audio_files(test_dir, "test")
    if not found:
        raise UsageError(f"{test_dir}: no audio files found under the folder")
    scratch = tempfile.TemporaryDirectory(prefix="dac_jax_eval_")

    def loader(source: Path):
        def load():
            reference, rate = read_audio(source)
            encoded = files.encode(model, source, win_duration=win_duration, normalize_db=normalize_db,
                                   batch_size=batch_size, **options)
            coded = encoded.save(Path(scratch.name) / f"coded{files.suffix}", overwrite=True)
            size = os.path.getsize(coded)
            decoded = files.decode(model, encoded, win_duration=win_duration, batch_size=batch_size)
            seconds = reference.shape[-1] / rate
            extra = {"kbps": _coded_bits(encoded, model) / seconds / 1000, "file_kbps": 8 * size / seconds / 1000}
            return reference, rate, decoded.samples[0], decoded.sample_rate, extra
        return load

    about = {"model": model_id or getattr(model, "source", model.kind), "codec": files.name,
             "sample_rate": model.sample_rate, "win_duration": win_duration, "normalize_db": normalize_db,
             "precision": model.precision, **options}
    try:
        return _evaluate([_Job(relative, loader(path)) for path, relative in found], Path(output), tuple(groups),
                         workers, progress, overwrite, title=f"{about['model']} on {test_dir}", about=about,
                         extra_columns=["kbps", "file_kbps"])
    finally:
        scratch.cleanup()


__all__ = ["EvaluationSummary", "evaluate_folders", "evaluate_model", "pair_files"]
