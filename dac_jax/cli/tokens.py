"""``tokenize`` and ``detokenize``: a corpus to ArrayRecord shards of codes or latents, and back.

``tokenize`` runs the same command on every host of a JAX job (``--coordinator_address``,
``--num_processes``, ``--process_id``, or ``--distributed`` for the cluster's auto-detection);
each process codes its share (:func:`dac_jax.codec.tokenize.tokenize`).
"""

from __future__ import annotations

import argparse

from dac_jax import options
from dac_jax.cli.common import (
    DAC_TYPES, VAE_TYPES, add_compilation_cache_flag, add_precision_flag, check_precision, integer, load_from_flags,
    model_kind, normalize_db, option, start_compilation_cache,
)
from dac_jax.codec import batch
from dac_jax.codec.tokenize import check_options, detokenize, discover, tokenize
from dac_jax.errors import UsageError
from dac_jax.runtime import initialize_distributed


def _model(args):
    return load_from_flags(args.weights_path, args.model_type, args.model_bitrate, args.model_tag,
                           precision=args.precision)


def _tokenize(args) -> int:
    distributed = [args.coordinator_address, args.num_processes, args.process_id]
    if args.distributed or any(v is not None for v in distributed):
        initialize_distributed(*distributed)
    kind = model_kind(args.weights_path, args.model_type)
    dtype = "float16" if args.float16 else "float32"
    batch.FILES[kind].check(None, args.win_duration, args.batch_size, n_quantizers=args.n_quantizers, flag="--")
    check_options(kind, args.with_logs, dtype, args.files_per_shard, args.workers, args.min_duration, flag="--")
    check_precision(args.precision)  # after initialize_distributed: it asks JAX for the backend
    jobs, failed = discover(args.input, args.output)  # before the model loads: bad inputs fail fast
    if not jobs:
        raise UsageError("no audio files found under the inputs" + (f": {failed[0][1]}" if failed else ""))
    start_compilation_cache(args)
    model = _model(args)
    target = {None: batch.CODEC_DEFAULT, "none": None}.get(args.normalize_db, args.normalize_db)
    summary = tokenize(
        model, args.input, args.output, n_quantizers=args.n_quantizers, win_duration=args.win_duration,
        batch_size=args.batch_size, normalize_db=target, with_logs=args.with_logs,
        dtype=dtype, files_per_shard=args.files_per_shard,
        min_duration=args.min_duration, workers=args.workers, model_id=args.weights_path or args.model_type,
        progress=not args.quiet,
    )
    print(summary.line())
    if summary.manifest is not None and summary.manifest["failures"]:
        print(f"{summary.manifest['failures']} file(s) could not be tokenized: see {args.output}/failures.tsv")
    return 0


def _detokenize(args) -> int:
    check_precision(args.precision)
    model = _model(args)
    detokenize(model, args.folder, args.output, limit=args.limit, win_duration=args.win_duration,
               batch_size=args.batch_size, overwrite=args.overwrite)
    return 0


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights_path", default="", help="as for encode: a .pth, a checkpoint.pt or a dac-jax folder")
    p.add_argument("--model_type", default="44khz", choices=[*DAC_TYPES, *VAE_TYPES],
                   help="released DAC to use when --weights_path is not given (vae*: DAC-VAE, needs --weights_path)")
    p.add_argument("--model_bitrate", default="8kbps", choices=["8kbps", "16kbps"])
    p.add_argument("--model_tag", default="latest")
    p.add_argument("--win_duration", type=option(options.win_duration), default=5.0,
                   help="seconds of audio per window (plus the encoder's context); bounds device memory")
    add_precision_flag(p)


def add_commands(sub) -> None:
    p = sub.add_parser("tokenize", help="encode a corpus to ArrayRecord shards of codes (DAC) or latents (DAC-VAE)")
    p.add_argument("input", nargs="+", help="audio files or folders (walked recursively; relative paths kept)")
    p.add_argument("--output", required=True, help="folder for the shards, manifest.json and failures.tsv")
    _model_flags(p)
    p.add_argument("--batch_size", type=option(options.batch_size, integer), default=8,
                   help="full windows per compiled call (2x as many half, 4x quarter windows), split over the local devices")
    p.add_argument("--n_quantizers", type=option(lambda n: options.integer("n_quantizers", n, 1), integer),
                   default=None, help="DAC: codebooks to keep (default: all)")
    p.add_argument("--normalize_db", type=normalize_db, default=None,
                   help="loudness (LUFS) to normalise to, or none; default as encode (-16 DAC, none DAC-VAE)")
    p.add_argument("--with_logs", action="store_true", help="DAC-VAE: store the log-scale beside the mean")
    p.add_argument("--float16", action="store_true", help="DAC-VAE: store latents as float16 (default float32)")
    p.add_argument("--files_per_shard", type=option(lambda n: options.integer("files_per_shard", n, 1), integer),
                   default=256, help="input files per shard (the unit of resumption)")
    p.add_argument("--min_duration", type=option(lambda d: options.real("min_duration", d, 0, 1e6, " s")),
                   default=0.0, help="files shorter than this many seconds are failures")
    p.add_argument("--workers", type=option(lambda n: options.integer("workers", n, 1, 64), integer), default=2,
                   help="reader threads (read, resample, loudness) ahead of the device")
    add_compilation_cache_flag(p)
    p.add_argument("--coordinator_address", default=None, help="many hosts: host:port of process 0")
    p.add_argument("--num_processes", type=option(lambda n: options.integer("num_processes", n, 1), integer),
                   default=None, help="many hosts: how many processes in all")
    p.add_argument("--process_id", type=option(lambda n: options.integer("process_id", n, 0), integer),
                   default=None, help="many hosts: this process's index, 0..num_processes-1")
    p.add_argument("--distributed", action="store_true",
                   help="many hosts, detected by jax.distributed.initialize() (SLURM, Open MPI, TPU pods)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_tokenize)

    p = sub.add_parser("detokenize", help="decode a tokenized corpus's records back to .wav files (spot checks)")
    p.add_argument("folder", help="a folder written by tokenize")
    p.add_argument("--output", required=True, help="folder for the .wav files (source paths kept)")
    _model_flags(p)
    p.add_argument("--batch_size", type=option(options.batch_size, integer), default=4, help="windows per compiled call")
    p.add_argument("--limit", type=option(lambda n: options.integer("limit", n, 1), integer), default=None,
                   help="decode only the first N sources")
    p.add_argument("--overwrite", action="store_true", help="replace existing .wav files")
    p.set_defaults(func=_detokenize)


__all__ = ["add_commands"]
