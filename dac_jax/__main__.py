"""``python -m dac_jax``: the command line of :mod:`dac_jax.cli`."""

import sys

from dac_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
