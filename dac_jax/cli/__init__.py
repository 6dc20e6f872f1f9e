"""dac-jax on the command line: encode, decode, tokenize, detokenize, evaluate, demo, convert, export, download.

``python -m dac_jax COMMAND`` (and ``compress.py``); the trainer's is :mod:`dac_jax.cli.train`
(behind ``train.py``).

The top of the house: each command is a thin function over one library call (:mod:`dac_jax.api`,
:mod:`dac_jax.codec.batch`, :mod:`dac_jax.weights`); errors of dac-jax become one line on stderr
and exit 1 (:func:`dac_jax.cli.common.run`). ``encode`` / ``decode`` run DAC (``.dac`` files) or,
with a ``vae*`` ``--model_type`` or a DAC-VAE weights folder, DAC-VAE (latent ``.npz`` files).
"""

from __future__ import annotations

from typing import Optional

from dac_jax import options
from dac_jax.cli import codec, evaluate, tokens, weights
from dac_jax.cli.common import Parser, integer, option, run
from dac_jax.demo import run_demo


def _demo(args) -> None:
    run_demo(args.model_type, args.output, args.duration, args.seed, args.random)


def build_parser(prog: str = "python -m dac_jax") -> Parser:
    parser = Parser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    codec.add_commands(sub)
    tokens.add_commands(sub)
    evaluate.add_commands(sub)

    p = sub.add_parser("demo", help="round-trip a spoken sentence and a chord through a model; report the "
                       "evaluator's metrics, shapes, bitrate, time")
    p.add_argument("--model_type", default="44khz",
                   help="44khz, 44khz-16kbps, 24khz, 16khz (released: cached or downloaded, else the shipped demo "
                   "model), or demo16khz (the shipped demo model)")
    p.add_argument("--output", default="runs/demo", help="folder for input.wav, output.wav, spectrograms.png, ...")
    p.add_argument("--duration", type=option(lambda d: options.real("duration", d, 0, 600, " seconds", True)),
                   default=None, help="seconds of example audio (default: the whole 5.5 s clip; cut or repeated)")
    p.add_argument("--random", action="store_true",
                   help="random weights of --model_type's architecture instead of released ones (shapes and speed only)")
    p.add_argument("--seed", type=option(options.seed, integer), default=0, help="seed of the --random weights")
    p.set_defaults(func=_demo)

    weights.add_commands(sub)
    return parser


def main(argv: Optional[list[str]] = None, prog: str = "python -m dac_jax") -> int:
    return run(build_parser(prog), argv)


__all__ = ["build_parser", "main"]
