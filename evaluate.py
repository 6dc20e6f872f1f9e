"""Evaluate a DAC-VAE (or DAC) on a folder of audio, with the flags of DAC-VAE's README.

::

    python3 evaluate.py --checkpoint checkpoint.pt --test_dir /path/to/test/audio

``--checkpoint`` is ``python -m dac_jax evaluate``'s ``--weights_path``: DAC-VAE's training
checkpoint (the default ``--model_type vae24khz-x2`` reads a file as DAC-VAE's; its own config
wins), a dac-jax folder, or with ``--model_type 44khz`` (24khz, 16khz) a DAC ``.pth``. The results
go to ``--output`` (default ``evaluation``); every other flag is the command's (``--help``).
"""

import sys

from dac_jax.cli.common import Parser, run
from dac_jax.cli.evaluate import add_arguments


def build_parser() -> Parser:
    parser = Parser(prog="evaluate.py", description=__doc__.splitlines()[0])
    add_arguments(parser, output="evaluation")
    parser.add_argument("--checkpoint", dest="weights_path", default="", help="the model's weights (as --weights_path)")
    parser.set_defaults(model_type="vae24khz-x2")
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser()))
