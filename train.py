"""Train DAC or DAC-VAE: ``python train.py --args.load configs/44khz.yml --save_path runs/44khz``.

The same command line as ``python -m dac_jax.cli.train`` (the argbind keys and what they bind are
documented there, :mod:`dac_jax.cli.train`); run with ``--help`` for the flags.
"""

import sys

if __name__ == "__main__":
    from dac_jax.memory import keep_freed_memory

    keep_freed_memory()  # re-executes once, so that every step reuses the last one's memory

from dac_jax.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
