"""``encode`` and ``decode``: one command each for both codecs.

The flags name the model (:func:`~dac_jax.cli.common.model_kind`); its codec's files and options
come from :data:`dac_jax.codec.batch.FILES`. Everything a run can refuse is refused before the
model loads: options that do not fit the codec, the output folder, colliding or existing outputs.
"""

from __future__ import annotations

import argparse

from dac_jax import options
from dac_jax.cli.common import (
    DAC_TYPES, VAE_TYPES, add_compilation_cache_flag, add_precision_flag, check_precision, integer, load_from_flags,
    model_kind, normalize_db, option, start_compilation_cache,
)
from dac_jax.codec import batch
from dac_jax.errors import UsageError


def _files_and_plan(args, task: str):
    files = batch.FILES[model_kind(args.weights_path, args.model_type)]
    own = {"n_quantizers": getattr(args, "n_quantizers", None), "seed": getattr(args, "seed", None)}
    if task == "encode":
        own["mode"] = args.mode
    files.check(None, args.win_duration, args.batch_size, flag="--", **own)
    return files, batch.plan(args.input, args.output, task, files, args.overwrite)


def _check_convolution_flags(args, decodes: bool) -> None:
    fast_encoder = getattr(args, "fast_encoder", False)
    check_precision(args.precision)
    if fast_encoder and args.precision != "float32":
        raise UsageError(f"--fast_encoder keeps float32's codes; it cannot go with --precision {args.precision}")
    if args.winograd is not None and args.precision != "float32":
        raise UsageError(f"--winograd runs in float32 only (its transforms amplify rounding); it cannot go with "
                         f"--precision {args.precision}")
    if args.direct and (args.winograd is not None or fast_encoder):
        raise UsageError(f"--direct: direct convolutions only; it cannot go with "
                         f"{'--winograd' if args.winograd is not None else '--fast_encoder'}")
    if not decodes and not fast_encoder and (args.direct or args.winograd is not None):
        flag = "--direct" if args.direct else "--winograd"
        raise UsageError(f"{flag}: encode runs the direct encoder and no decoder; {flag} sets the decoder's "
                         "convolutions (use it with --mode encode_decode), --fast_encoder the encoder's")


def _load(args):
    start_compilation_cache(args)
    return load_from_flags(args.weights_path, args.model_type, args.model_bitrate, args.model_tag, args.winograd,
                           args.direct, getattr(args, "fast_encoder", False), args.precision)


def encode(args) -> int:
    task = "roundtrip" if args.mode == "encode_decode" else "encode"
    if task == "roundtrip":
        args.mode = "independent"
    _check_convolution_flags(args, decodes=task == "roundtrip")
    files, planned = _files_and_plan(args, task)
    model = _load(args)
    target = {None: files.normalize_db, "none": None}.get(args.normalize_db, args.normalize_db)
    run = batch.roundtrip_files if task == "roundtrip" else batch.encode_files
    summary = run(model, args.input, args.output, win_duration=args.win_duration, normalize_db=target,
                  batch_size=args.batch_size, progress=not args.quiet, overwrite=args.overwrite, planned=planned,
                  n_quantizers=args.n_quantizers, mode=args.mode, seed=args.seed)
    print(summary.line("round-tripped" if task == "roundtrip" else "encoded"))
    stats = model.guard_stats
    if model.fast_encoder and stats.frames:
        print(f"checked Winograd encoder: {100 * stats.flagged_fraction:.2f} % of {stats.frames} frames were doubtful "
              f"and recomputed directly ({stats.crops} crops, {stats.whole_items} whole windows, {stats.seconds:.1f} s)")
    return 1 if summary.failed or not summary.done else 0


def decode(args) -> int:
    _check_convolution_flags(args, decodes=True)
    _, planned = _files_and_plan(args, "decode")
    model = _load(args)
    summary = batch.decode_files(model, args.input, args.output, win_duration=args.win_duration,
                                 batch_size=args.batch_size, progress=not args.quiet, overwrite=args.overwrite,
                                 planned=planned)
    print(summary.line("decoded"))
    return 1 if summary.failed or not summary.done else 0


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="+", help="files or folders (walked recursively; the tree is mirrored)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--weights_path", default="",
                   help="DAC: a released-format .pth or a dac-jax folder; DAC-VAE: its checkpoint.pt, a bare "
                   "state dict (with --model_type), or a dac-jax folder")
    p.add_argument("--model_type", default="44khz", choices=[*DAC_TYPES, *VAE_TYPES],
                   help="released DAC to use when --weights_path is not given; vae24khz-x2 / vae24khz-x3: "
                   "the DAC-VAE (latent files instead of .dac files; needs --weights_path)")
    p.add_argument("--model_bitrate", default="8kbps", choices=["8kbps", "16kbps"])
    p.add_argument("--model_tag", default="latest")
    p.add_argument("--win_duration", type=option(options.win_duration), default=5.0,
                   help="seconds of audio per chunk (bounds device memory)")
    p.add_argument("--batch_size", type=option(options.batch_size, integer), default=4, help="chunks per compiled call")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (never the inputs); without it, a run that would "
                   "replace any file stops before it starts")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_compilation_cache_flag(p)
    p.add_argument("--winograd", type=int, choices=[2, 4], default=None,
                   help="the decoder's kernel-7 convolutions of >= 64 channels as Winograd F(m, 7) (default on "
                   "a CPU: 4; 1.4-1.5x faster decoding there, audio within float32 rounding of --direct's); with "
                   "--fast_encoder, the encoder's too")
    p.add_argument("--direct", action="store_true",
                   help="direct convolutions only: the decoder's float32 sums follow the original's (the "
                   "default off a CPU)")
    add_precision_flag(p)


def add_commands(sub) -> None:
    p = sub.add_parser("encode", help="compress audio files to .dac files (DAC) or latent .npz files (DAC-VAE)")
    _add_model_flags(p)
    p.add_argument("--n_quantizers", type=option(lambda n: options.integer("n_quantizers", n, 1), integer), default=None,
                   help="DAC: codebooks to use (default: all)")
    p.add_argument("--fast_encoder", action="store_true",
                   help="encode with the Winograd encoder, each code checked against its error bound and the "
                   "doubtful frames recomputed directly: the direct encoder's codes, usually slower than it "
                   "(benchmarks/RESULTS.md); DAC-VAE latents just take its float32 rounding")
    p.add_argument("--mode", default="independent", choices=["independent", "faithful", "encode_decode"],
                   help="independent: codes (latents) equal whole-file encoding, one frame per hop, any window; "
                   "faithful: the original DAC's window-dependent chunks; encode_decode: write the decoded "
                   ".wav instead (a round trip, as DAC-VAE's inference script)")
    p.add_argument("--normalize_db", type=normalize_db, default=None,
                   help="loudness (LUFS) to normalise to before encoding, or none; default -16 for DAC "
                   "(the original's), none for DAC-VAE (its inference's)")
    p.add_argument("--seed", type=option(options.seed, integer), default=None,
                   help="DAC-VAE: sample z = mu + noise * exp(logs) with this seed (default: z = mu)")
    p.set_defaults(func=encode)

    p = sub.add_parser("decode", help="decompress .dac files (DAC) or latent .npz files (DAC-VAE) to .wav files")
    _add_model_flags(p)
    p.set_defaults(func=decode)
