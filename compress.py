"""Compress audio to .dac files and back: ``python compress.py encode|decode INPUT... --output DIR``.

The same command line as ``python -m dac_jax``; run with ``--help`` for the flags.
"""

import sys

from dac_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="compress.py"))
