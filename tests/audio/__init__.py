"""Tests of dac_jax.audio: file I/O, resampling (vs julius), loudness (vs audiotools)."""

from __future__ import annotations

import importlib
import os

import pytest


def require_reference(name: str):
    """Import a reference package (julius, audiotools, torch); skip without it, unless the run
    demands the reference (``DAC_JAX_REQUIRE_REFERENCE=1``, as ``make test`` sets): then the
    ImportError fails the run, as tests/conftest.py does for ``dac``."""
    if os.environ.get("DAC_JAX_REQUIRE_REFERENCE") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)
