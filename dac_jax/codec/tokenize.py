"""Tokenize a corpus: every channel of every audio file to codes (DAC) or latents (DAC-VAE), in
ArrayRecord shards (:mod:`dac_jax.tokens`), exactly as each file alone would be coded.

The pipeline, per process::

    files --thread pool: read, resample, loudness (prefetched)--> items (one per channel)
          --cut: windows with context (the window-independent plan)--> slots
          --packed into batches of one fixed shape, padding masked (ragged batches, runtime)-->
          device (sharded over the local devices; the next batch is cut while one runs)
          --assembled per item--> records --> one shard per group of files, written atomically

A file's codes equal ``codec.compress(file)``'s in window-independent mode (the same signal path:
:attr:`CodecFiles.prepare`; the same windows): an item no longer than one window is one slot whose
length the model masks, a longer one is cut into the plan's windows, all of one length. Three slot
shapes exist: a full window, and two shorter ones for short items, as many more per batch as they
are shorter (the same samples per batch), their lengths chosen from the corpus's durations so that
the least padding is computed (:func:`slot_sizes`). A corpus compiles at most three programs
whatever its lengths, and a short clip costs about its own length, not a window's.

Nothing lost, nothing twice: files go to processes by a deterministic, duration-balanced
assignment, and to shards in a fixed order, so a shard's records depend on the inputs and options
alone. A shard counts as done once its sidecar is written (after the shard); a run started again
skips done shards and rewrites any other. Files that cannot be coded go to ``failures.tsv``.
Process 0 writes ``manifest.json`` once every process is done.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import heapq
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import jax
import numpy as np
from tqdm import tqdm

from dac_jax import options, tokens
from dac_jax.audio.io import audio_info, write_audio
from dac_jax.codec import chunked
from dac_jax.codec.batch import AUDIO_SUFFIXES, CODEC_DEFAULT, FILES, find_inputs
from dac_jax.codec.plan import independent_plan
from dac_jax.codec.signal import Items, restore_loudness, to_original
from dac_jax.errors import DacJaxError, UsageError
from dac_jax.fileio import atomic_path, check_folder, remove_stale_temps
from dac_jax.runtime import Model, trace_counts

DTYPES = ("float32", "float16")
FAILURES = "failures.tsv"
SLOT_SHAPES = 3  # compiled programs at most: the full window and two shorter slots


@dataclasses.dataclass(frozen=True)
class Job:
    """One input file: where it is, the source path its records carry, its duration (for balancing)."""

    path: Path
    source: str
    seconds: float


@dataclasses.dataclass
class TokenizeSummary:
    files: int = 0  # coded by this process in this run
    skipped_files: int = 0  # in shards an earlier run finished
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    records: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    compilations: int = 0
    manifest: Optional[dict] = None  # process 0, once every process is done

    def line(self) -> str:
        rtf = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        parts = [f"tokenized {self.files} file{'s' * (self.files != 1)} ({self.records} records)"]
        if self.skipped_files:
            parts.append(f"{self.skipped_files} already done")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return (f"{', '.join(parts)}: {self.audio_seconds / 3600:.3f} h of audio in {self.wall_seconds:.1f} s "
                f"({rtf:.1f}x real time, {self.compilations} compilation{'s' * (self.compilations != 1)})")


# -- planning -------------------------------------------------------------------------------------------


def discover(inputs: Sequence[str | Path], output: str | Path) -> tuple[list[Job], list[tuple[str, str]]]:
    """The jobs under ``inputs`` (files, and audio files under folders, whose relative paths become
    the source paths) sorted by source path, and the inputs that give none (as failures).

    :class:`UsageError` when two inputs give one source path, before any work; files under the
    output folder are not inputs."""
    found, failed, _ = find_inputs(inputs, AUDIO_SUFFIXES)
    out = Path(os.path.abspath(output))
    by_source: dict[str, Path] = {}
    jobs = []
    for path, relative in found:
        if out in Path(os.path.abspath(path)).parents:
            continue
        if not path.exists():
            failed.append((path, f"{path}: no such file or folder"))
            continue
        source = relative.as_posix()
        if source in by_source:
            raise UsageError(f"{by_source[source]} and {path} both give the source path {source!r}; "
                             "tokenize them in separate runs or rename one")
        by_source[source] = path
        try:
            info = audio_info(path)
            seconds = info.frames / info.sample_rate
        except (DacJaxError, OSError, ZeroDivisionError):
            seconds = 0.0  # fails again when read, and is reported then
        jobs.append(Job(path, source, seconds))
    jobs.sort(key=lambda j: j.source)
    return jobs, [(str(p), reason) for p, reason in failed]


def assign(jobs: Sequence[Job], process_count: int) -> list[list[Job]]:
    """Each process's jobs (in source order): longest first to the least loaded process, ties to the
    lowest index. Deterministic, so every process computes the same assignment on its own."""
    shares: list[list[Job]] = [[] for _ in range(process_count)]
    loads = [(0.0, p) for p in range(process_count)]
    for job in sorted(jobs, key=lambda j: (-j.seconds, j.source)):
        load, p = heapq.heappop(loads)
        shares[p].append(job)
        heapq.heappush(loads, (load + job.seconds, p))
    return [sorted(share, key=lambda j: j.source) for share in shares]


def slot_sizes(windows: Sequence[int], full: int, n: int = SLOT_SHAPES) -> list[int]:
    """Slot lengths (frames, longest first, ``full`` included) that minimise the frames computed when
    every item goes to the shortest slot that holds its window (``windows``: each item's, <= full)."""
    w = np.sort(np.minimum(np.asarray(windows, np.int64), full))
    candidates = np.unique(np.concatenate([np.quantile(w, np.linspace(0, 1, 65)).astype(np.int64), [full]])) if len(w) else np.array([full])
    candidates = candidates[(candidates >= 1) & (candidates <= full)]
    best, best_cost = [full], None
    below = lambda s: np.searchsorted(w, s, side="right")  # noqa: E731  items whose window fits in s
    sizes_list = [[full]] + [[full, int(a)] for a in candidates if a < full]
    if n >= 3:
        sizes_list += [[full, int(a), int(b)] for a in candidates for b in candidates if b < a < full]
    for sizes in sizes_list:
        cost, done = 0, 0
        for size in sorted(sizes):
            fit = below(size)
            cost += (fit - done) * size
            done = fit
        cost += (len(w) - done) * full
        if best_cost is None or cost < best_cost:
            best, best_cost = sizes, cost
    return sorted(set(best), reverse=True)


# -- the device side ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Item:
    """One channel of one file being coded: its output, filled window by window."""

    file: "_File"
    channel: int
    plan: Any  # IndependentPlan
    out: np.ndarray  # [F, frames]
    pending: int  # windows not yet back from the device


@dataclasses.dataclass
class _File:
    index: int  # in this process's share
    job: Job
    signal: Items
    items: list = dataclasses.field(default_factory=list)
    pending: int = 0


class _Bucket:
    """Fixed-shape batches of one slot length: ``slots`` windows of ``frames`` frames."""

    def __init__(self, frames: int, slots: int, hop: int):
        self.frames, self.slots, self.hop = frames, slots, hop
        self.audio = np.zeros((slots, 1, frames * hop), np.float32)
        self.lengths = np.ones(slots, np.int32)
        self.meta: list[tuple[_Item, int]] = []

    def add(self, window: np.ndarray, item: _Item, chunk: int) -> bool:
        """Put a window in the next slot; True when the batch is full."""
        j = len(self.meta)
        self.audio[j, 0, : len(window)] = window
        self.audio[j, 0, len(window):] = 0.0
        self.lengths[j] = len(window)
        self.meta.append((item, chunk))
        return len(self.meta) == self.slots

    def take(self) -> tuple[np.ndarray, np.ndarray, list]:
        """The batch (unused slots: one zero sample each, their outputs dropped) and its slots' owners."""
        self.audio[len(self.meta):] = 0.0
        self.lengths[len(self.meta):] = 1
        meta, self.meta = self.meta, []
        return self.audio.copy(), self.lengths.copy(), meta


class _Device:
    """Runs batches on the local devices, one in flight while the host cuts the next."""

    def __init__(self, encode: Callable, depth: int = 2):
        self.encode, self.depth = encode, depth
        devices = jax.local_devices()
        mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
        self.sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
        self.n_devices = len(devices)
        self.flight: collections.deque = collections.deque()

    def submit(self, audio: np.ndarray, lengths: np.ndarray, meta: list) -> Iterable[tuple[np.ndarray, list]]:
        """Dispatch a batch (asynchronously); yield the results that are due."""
        out = self.encode(jax.device_put(audio, self.sharding), jax.device_put(lengths, self.sharding))
        self.flight.append((out, meta))
        while len(self.flight) > self.depth:
            yield self._fetch()

    def drain(self) -> Iterable[tuple[np.ndarray, list]]:
        while self.flight:
            yield self._fetch()

    def _fetch(self) -> tuple[np.ndarray, list]:
        out, meta = self.flight.popleft()
        return np.asarray(out), meta


# -- the run ---------------------------------------------------------------------------------------------


def _fingerprint(header: dict, share: Sequence[Job]) -> str:
    text = json.dumps({"run": header, "sources": [j.source for j in share]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_options(kind: str, with_logs: bool = False, dtype: str = "float32", files_per_shard: int = 256,
                  workers: int = 2, min_duration: float = 0.0, flag: str = "") -> None:
    """:class:`UsageError` for tokenizer options that no input could satisfy, before any work
    (the codec's own options are its :attr:`CodecFiles.check`'s)."""
    options.integer("files_per_shard", files_per_shard, 1)
    options.integer("workers", workers, 1, 64)
    options.real("min_duration", min_duration, 0.0, 1e6, " s")
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if kind == "dac" and (with_logs or dtype != "float32"):
        raise UsageError(f"{flag}with_logs and {flag}float16 apply to DAC-VAE latents; DAC codes are uint16")


def tokenize(
    model: Model,
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    n_quantizers: Optional[int] = None,
    win_duration: float = 5.0,
    batch_size: int = 8,
    normalize_db: Any = CODEC_DEFAULT,
    with_logs: bool = False,
    dtype: str = "float32",
    files_per_shard: int = 256,
    min_duration: float = 0.0,
    workers: int = 2,
    model_id: Optional[str] = None,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
    progress: bool = True,
) -> TokenizeSummary:
    """Tokenize every audio file under ``inputs`` into ArrayRecord shards in ``output`` (see the
    module docstring); returns this process's :class:`TokenizeSummary`.

    ``batch_size`` windows of ``win_duration`` seconds run per compiled call, split over the local
    devices (a multiple of their number). ``n_quantizers`` (DAC) keeps that many codebooks;
    ``with_logs`` and ``dtype`` (DAC-VAE) store the log-scale too and choose the latents' float
    type. ``process_index`` / ``process_count`` default to JAX's (``jax.distributed``): run the
    same call on every host, each codes its own share. Files shorter than ``min_duration`` seconds
    are failures. ``model_id`` names the model in the records (default: its source).
    """
    started = time.perf_counter()
    files = FILES[model.kind]
    kind = model.kind
    if normalize_db is CODEC_DEFAULT:
        normalize_db = files.normalize_db
    files.check(model, win_duration, batch_size, normalize_db, n_quantizers=n_quantizers)
    check_options(kind, with_logs, dtype, files_per_shard, workers, min_duration)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    n_local = len(jax.local_devices())
    if batch_size % n_local:
        raise UsageError(f"batch_size {batch_size} must be a multiple of the {n_local} local devices")

    output = Path(output)
    check_folder(output)
    output.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output)
    jobs, input_failures = discover(inputs, output)
    if not jobs:
        raise UsageError("no audio files found under the inputs" + (f": {input_failures[0][1]}" if input_failures else ""))

    hop = model.hop_length
    frame_rate = model.sample_rate / hop
    used = (n_quantizers or model.n_codebooks) if kind == "dac" else None
    header = {
        "kind": kind, "model": model_id or str(model.source), "config": model.config.to_kwargs(),
        "sample_rate": model.sample_rate, "hop_length": hop, "frame_rate": frame_rate,
        "dtype": "uint16" if kind == "dac" else dtype,
        "n_codebooks": used, "latent_dim": None if kind == "dac" else model.latent_dim,
        "with_logs": bool(with_logs), "win_duration": float(win_duration),
        "normalize_db": None if normalize_db is None else float(normalize_db),
        "min_duration": float(min_duration), "files_per_shard": files_per_shard, "processes": process_count,
    }
    if model.precision != "float32":  # an opt-in changes some codes; float32's header stays what it was
        header["precision"] = model.precision
    share = assign(jobs, process_count)[process_index]
    groups = [share[i : i + files_per_shard] for i in range(0, len(share), files_per_shard)]
    fingerprint = _fingerprint(header, share)
    done = tokens.finished_shards(output)
    todo = []
    summary = TokenizeSummary()
    for k, group in enumerate(groups):
        name = tokens.shard_name(process_index, k)
        if name in done:
            if done[name].get("fingerprint") != fingerprint:
                raise UsageError(f"{output}: holds {name} from a run with other inputs or options; "
                                 "use another --output folder, or the first run's inputs and options")
            summary.skipped_files += len(group)
            continue
        todo.append((k, name, group))

    compiled_before = trace_counts["encode"] + trace_counts["vae_encode"]
    if kind == "dac":
        encode = lambda a, l: model.encode_frames(a, n_quantizers, lengths=l)  # noqa: E731
    else:
        encode = model.encode_frames
    device = _Device(encode)
    window = chunked.frames_for_window(model, win_duration)
    context = model.encoder_context
    full = window + 2 * context
    estimated = [min(full, math.ceil(j.seconds * model.sample_rate / hop) + 1) for _, _, g in todo for j in g]
    buckets = [_Bucket(size, max(1, batch_size * full // size // n_local) * n_local, hop)
               for size in slot_sizes(estimated, full)]

    shard_files = {k: len(group) for k, _, group in todo}
    shard_records: dict[int, dict[int, list[bytes]]] = {k: {} for k, _, _ in todo}
    shard_failures: dict[int, list[tuple[str, str]]] = {k: [] for k, _, _ in todo}
    shard_seconds: dict[int, float] = {k: 0.0 for k, _, _ in todo}
    names = {k: name for k, name, _ in todo}
    total_seconds = sum(j.seconds for _, _, g in todo for j in g)
    bar = tqdm(total=round(total_seconds, 1), unit="s", unit_scale=True, desc="tokenize", dynamic_ncols=True,
               disable=not progress or process_index != 0, file=sys.stderr)

    def finish_file(shard: int, position: int, records: Optional[list[bytes]], job: Job, reason: str = "",
                    seconds: float = 0.0) -> None:
        if records is None:
            shard_failures[shard].append((job.source, reason))
            summary.failed.append((job.source, reason))
        else:
            shard_records[shard][position] = records
            shard_seconds[shard] += seconds
            summary.files += 1
            summary.records += len(records)
            summary.audio_seconds += seconds
        bar.update(round(job.seconds, 1))
        shard_files[shard] -= 1
        if shard_files[shard] == 0:
            ordered = [r for p in sorted(shard_records[shard]) for r in shard_records[shard][p]]
            tokens.write_shard(output, names[shard], ordered, {
                "fingerprint": fingerprint, "process": process_index, "files": len(groups[shard]),
                "failures": shard_failures[shard], "seconds": shard_seconds[shard],
            })
            del shard_records[shard], shard_failures[shard]

    def record_of(item: _Item) -> bytes:
        f = item.file
        fields = {
            "source": f.job.source, "channel": item.channel, "sample_rate": f.signal.sample_rate,
            "length": f.signal.original_length, "input_db": float(f.signal.input_db[0]),
            "frame_rate": frame_rate, "model": header["model"],
        }
        if kind == "dac":
            fields["codes"] = item.out.astype(np.uint16)
        else:
            dim = model.latent_dim
            fields["mu"] = item.out[:dim].astype(dtype)
            if with_logs:
                fields["logs"] = item.out[dim:].astype(dtype)
        return tokens.encode_record(fields)

    where: dict[int, tuple[int, int]] = {}  # file index -> (shard, position in it)

    def collect(result: np.ndarray, meta: list) -> None:
        for row, (item, chunk) in zip(result, meta):
            first, last = item.plan.kept(chunk)
            offset = item.plan.offset(chunk)
            item.out[:, first:last] = row[:, offset : offset + last - first]
            item.pending -= 1
            if item.pending == 0:
                f = item.file
                f.pending -= 1
                if f.pending == 0:
                    shard, position = where[f.index]
                    records = [record_of(it) for it in f.items]
                    finish_file(shard, position, records, f.job, seconds=f.signal.original_length / f.signal.sample_rate)
                    f.items.clear()  # the outputs are in the records now
                    f.signal = None

    def run_bucket(bucket: _Bucket) -> None:
        for result, meta in device.submit(*bucket.take()):
            collect(result, meta)

    def load(job: Job) -> Items:
        signal = files.prepare(model, job.path, None, normalize_db)
        if signal.original_length / signal.sample_rate < min_duration or signal.original_length == 0:
            raise DacJaxError(f"{job.path}: {signal.original_length / signal.sample_rate:.3f} s, shorter than "
                              f"the --min_duration of {min_duration} s")
        return signal

    ordered_jobs = [(k, position, job) for k, _, group in todo for position, job in enumerate(group)]
    prefetch = 2 * workers
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="dac-jax-read") as pool:
        futures: collections.deque = collections.deque()
        feed = iter(enumerate(ordered_jobs))

        def refill() -> None:
            while len(futures) < prefetch:
                nxt = next(feed, None)
                if nxt is None:
                    return
                futures.append((nxt, pool.submit(load, nxt[1][2])))

        refill()
        while futures:
            (index, (shard, position, job)), future = futures.popleft()
            refill()
            where[index] = (shard, position)
            try:
                signal = future.result()
            except (DacJaxError, OSError, MemoryError, ValueError) as e:
                finish_file(shard, position, None, job, reason=str(e).splitlines()[0] if str(e) else type(e).__name__)
                continue
            f = _File(index, job, signal)
            for channel, samples in enumerate(signal.items):
                total = -(-len(samples) // hop)
                plan = independent_plan(total, window, context)
                out = np.zeros((used, total), np.int32) if kind == "dac" else np.zeros((2 * model.latent_dim, total), np.float32)
                f.items.append(_Item(f, channel, plan, out, plan.n_chunks))
            f.pending = len(f.items)
            for item in f.items:
                samples = signal.items[item.channel]
                plan = item.plan
                bucket = next(b for b in reversed(buckets) if plan.window <= b.frames)  # the smallest that fits
                for chunk in range(plan.n_chunks):
                    begin = plan.window_start(chunk) * hop
                    piece = samples[begin : begin + plan.window * hop]
                    if bucket.add(piece, item, chunk):
                        run_bucket(bucket)
            del signal, samples
        for bucket in buckets:
            if bucket.meta:
                run_bucket(bucket)
        for result, meta in device.drain():
            collect(result, meta)
    bar.close()

    summary.compilations = trace_counts["encode"] + trace_counts["vae_encode"] - compiled_before
    summary.wall_seconds = time.perf_counter() - started
    if process_count > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("dac_jax.tokenize: every shard written")
    if process_index == 0:
        summary.manifest = _write_manifest(output, header, input_failures, len(jobs))
    return summary


def _write_manifest(output: Path, header: dict, input_failures: list[tuple[str, str]], n_files: int) -> dict:
    """Gather every shard into ``manifest.json`` and every failure into ``failures.tsv``."""
    manifest = tokens.build_manifest(output, header)
    failures = list(input_failures)
    for shard in manifest["shards"]:
        failures.extend(tuple(f) for f in shard.get("failures", []))
    with atomic_path(output / FAILURES) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("source\treason\n")
            for source, reason in failures:
                fh.write(f"{source}\t{reason.replace(chr(9), ' ')}\n")
    manifest["files"] = n_files
    manifest["failures"] = len(failures)
    manifest["seconds"] = sum(s.get("seconds", 0.0) for s in manifest["shards"])
    tokens.write_manifest(output, manifest)
    return tokens.read_manifest(output)


# -- back to audio ---------------------------------------------------------------------------------------


def detokenize(
    model: Model, folder: str | Path, output: str | Path, *, limit: Optional[int] = None, win_duration: float = 5.0,
    batch_size: int = 4, overwrite: bool = False, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[Path]:
    """Decode the records of a tokenized corpus back to audio files, for listening spot checks.

    Each source becomes ``output/<source>.wav`` at its original rate and length, its channels
    together, its loudness restored as ``decompress`` restores it. ``limit``: the first that many
    sources. The model must be the one the corpus was made with (its config is checked).
    """
    source = tokens.TokenSource(folder)
    manifest = source.manifest
    if manifest["kind"] != model.kind or manifest["config"] != model.config.to_kwargs():
        raise UsageError(f"{folder}: tokenized with another model ({manifest['kind']}, {manifest['model']}); "
                         "pass that model's --weights_path / --model_type")
    if limit is not None:
        options.integer("limit", limit, 1)
    files = FILES[model.kind]
    files.check(model, win_duration, batch_size)
    output = Path(output)
    check_folder(output)
    written: list[Path] = []
    groups: dict[str, list[dict]] = {}
    order: list[str] = []
    for i in range(len(source)):
        record = source[i]
        if record["source"] not in groups:
            if limit is not None and len(order) == limit:
                break
            order.append(record["source"])
            groups[record["source"]] = []
        groups[record["source"]].append(record)
    for name in order:
        records = sorted(groups.pop(name), key=lambda r: r["channel"])
        first = records[0]
        if model.kind == "dac":
            frames = np.stack([r["codes"].astype(np.int32) for r in records])
            audio = chunked.decode_independent(model, frames, win_duration, batch_size)
        else:
            frames = np.stack([r["mu"].astype(np.float32) for r in records])
            audio = chunked.decode_latents(model, frames, win_duration, batch_size)
        if model.kind == "dac" or manifest.get("normalize_db") is not None:  # as each codec's decode
            restore_loudness(audio, model.sample_rate, np.full(len(records), first["input_db"], np.float32))
        decoded = to_original(audio, model.sample_rate, first["sample_rate"], first["length"], len(records))
        target = output / Path(name).with_suffix(".wav")
        write_audio(target, decoded.samples[0], decoded.sample_rate, overwrite=overwrite)
        written.append(target)
    log(f"detokenized {len(written)} source{'s' * (len(written) != 1)} into {output}")
    return written
