"""Train DAC or DAC-VAE: ``python train.py --args.load configs/44khz.yml --save_path runs/44khz``.

The same command line as ``python -m dac_jax.cli.train`` (the argbind keys and what they bind are
documented there, :mod:`dac_jax.cli.train`); run with ``--help`` for the flags.
"""

import sys

from dac_jax.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
