"""Tests of dac_jax.audio: file I/O, resampling (vs julius), loudness (vs audiotools)."""

from __future__ import annotations

from tests.requires import require_reference  # noqa: F401  (re-exported for tests.audio)
