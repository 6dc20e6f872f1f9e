"""``evaluate``: the original DAC's ``scripts/evaluate.py``, for a model over a folder or two folders.

::

    python -m dac_jax evaluate --weights_path W --test_dir DIR --output OUT   # code, decode, compare
    python -m dac_jax evaluate --reference DIR --estimate DIR --output OUT    # compare two folders

Everything a run can refuse is refused before the model loads: the form's flags, the codec's
options, the metric list, existing outputs without ``--overwrite``. Files that fail are rows with
their error; the exit status is 1 if any failed (or none could be evaluated), else 0. Unpaired
files of the two-folder form are listed, not failures.
"""

from __future__ import annotations

import argparse
from typing import Optional

from dac_jax import options
from dac_jax.cli.common import (
    DAC_TYPES, VAE_TYPES, add_compilation_cache_flag, add_precision_flag, check_precision, integer, load_from_flags,
    model_kind, normalize_db, option, start_compilation_cache,
)
from dac_jax.codec.batch import CODEC_DEFAULT, FILES
from dac_jax.errors import UsageError
from dac_jax.evaluate import metrics, report
from dac_jax.evaluate.run import evaluate_folders, evaluate_model

_MODEL_FLAGS = ("weights_path", "n_quantizers", "seed", "normalize_db", "precision")


def _groups(text: str) -> tuple[str, ...]:
    try:
        return metrics.parse_groups(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e).split(" ", 1)[1]) from None


def evaluate(args) -> int:
    if args.reference or args.estimate:
        if not (args.reference and args.estimate) or args.test_dir:
            raise UsageError("the two-folder form takes --reference and --estimate (and no --test_dir)")
        given = [f"--{f}" for f in _MODEL_FLAGS if getattr(args, f) not in (None, "")]
        if given:
            raise UsageError(f"{', '.join(given)}: model options apply to the --test_dir form, not to two folders")
        summary = evaluate_folders(args.reference, args.estimate, args.output, groups=args.metrics,
                                   workers=args.workers, progress=not args.quiet, overwrite=args.overwrite)
    else:
        if not args.test_dir:
            raise UsageError("give --test_dir (with --weights_path or --model_type), or --reference and --estimate")
        kind = model_kind(args.weights_path, args.model_type)
        own = {"n_quantizers": args.n_quantizers, "mode": args.mode, "seed": args.seed}
        FILES[kind].check(None, args.win_duration, args.batch_size, flag="--", **own)
        precision = check_precision(args.precision)
        report.check_outputs(args.output, args.overwrite)  # before the model loads
        start_compilation_cache(args)
        model = load_from_flags(args.weights_path, args.model_type, args.model_bitrate, args.model_tag,
                                precision=precision)
        target = {None: CODEC_DEFAULT, "none": None}.get(args.normalize_db, args.normalize_db)
        summary = evaluate_model(model, args.test_dir, args.output, groups=args.metrics, win_duration=args.win_duration,
                                 normalize_db=target, batch_size=args.batch_size, workers=args.workers,
                                 progress=not args.quiet, overwrite=args.overwrite,
                                 model_id=args.weights_path or args.model_type, **own)
    print(summary.line())
    return 1 if summary.failed or not summary.summary["evaluated"] else 0


def add_arguments(p: argparse.ArgumentParser, output: Optional[str] = None) -> None:
    """The flags of ``evaluate`` (also the top-level ``evaluate.py``'s, which adds its aliases);
    ``output``: the default ``--output`` (None: the flag is required)."""
    p.add_argument("--output", required=output is None, default=output,
                   help="folder for metrics.csv, summary.md and summary.json" + (f" (default: {output})" if output else ""))
    p.add_argument("--test_dir", default="", help="model form: audio files to code, decode and compare (walked recursively)")
    p.add_argument("--reference", default="", help="two-folder form: the reference audio files")
    p.add_argument("--estimate", default="",
                   help="two-folder form: the files to score, paired with --reference's by relative path (any audio suffix)")
    p.add_argument("--weights_path", default="",
                   help="as for encode: a released-format .pth, DAC-VAE's checkpoint.pt, or a dac-jax folder")
    p.add_argument("--model_type", default="44khz", choices=[*DAC_TYPES, *VAE_TYPES],
                   help="released DAC to use when --weights_path is not given (vae*: DAC-VAE, needs --weights_path)")
    p.add_argument("--model_bitrate", default="8kbps", choices=["8kbps", "16kbps"])
    p.add_argument("--model_tag", default="latest")
    p.add_argument("--n_quantizers", type=option(lambda n: options.integer("n_quantizers", n, 1), integer), default=None,
                   help="DAC: codebooks to use (default: all)")
    p.add_argument("--win_duration", type=option(options.win_duration), default=5.0,
                   help="seconds of audio per chunk, as for encode")
    p.add_argument("--mode", default="independent", choices=["independent", "faithful"],
                   help="DAC: independent (window-independent codes) or faithful (the original's chunks), as for encode")
    p.add_argument("--normalize_db", type=normalize_db, default=None,
                   help="loudness (LUFS) to normalise to before encoding, or none; default as encode (-16 DAC, none DAC-VAE)")
    p.add_argument("--seed", type=option(options.seed, integer), default=None,
                   help="DAC-VAE: sample the latents with this seed (default: the mean)")
    p.add_argument("--batch_size", type=option(options.batch_size, integer), default=4, help="chunks per compiled call")
    add_precision_flag(p, default=None)
    p.add_argument("--metrics", type=_groups, default=metrics.GROUPS,
                   help=f"comma-separated: {','.join(metrics.GROUPS)} (default: all). Each at 22.05 and 44.1 kHz; "
                   "mel, stft, waveform: distances (lower is better); sisdr: SI-SDR in dB (higher is better; the "
                   "original's CSV holds its negative, SISDRLoss); visqol-*, pesq, stoi: need visqol-python, pesq, "
                   "pystoi (dac-jax[eval]), omitted with a notice where missing")
    p.add_argument("--workers", type=option(lambda n: options.integer("workers", n, 0, 64), integer), default=2,
                   help="processes for ViSQOL, PESQ and STOI (0: in this process)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_compilation_cache_flag(p)
    p.set_defaults(func=evaluate)


def add_commands(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model on a folder of audio, or two folders, with the original's metrics")
    add_arguments(p)


__all__ = ["add_arguments", "add_commands", "evaluate"]
