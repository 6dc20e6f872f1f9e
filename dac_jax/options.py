"""The checks of every user-facing number, in one place: the API and the CLI call the same ones.

Each returns the value in its canonical type or raises :class:`UsageError` with one line that names
the option and the accepted range. Booleans are refused where a number is meant (``True`` is an
``int`` to Python, not to a user), and so are strings, NaN and infinities.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

from dac_jax.errors import UsageError

MAX_WINDOW_SECONDS = 24 * 60 * 60
MAX_BATCH_SIZE = 1 << 16
SAMPLE_RATES = (1, 384_000)  # the .dac reader's bound too (dacfile.MAX_SAMPLE_RATE)
LOUDNESS_RANGE = (-70.0, 0.0)  # LUFS: the meter's floor to full scale


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(name: str, value: Any, lo: int, hi: Optional[int] = None, what: str = "") -> int:
    """``value`` as an int in ``[lo, hi]``; a float with a fraction (2.5) or a bool is refused."""
    ok = _is_int(value) or (_is_real(value) and math.isfinite(value) and float(value).is_integer())
    if not ok or value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise UsageError(f"{name} must be a whole number {bound}{what}; got {value!r}")
    return int(value)


def real(name: str, value: Any, lo: float, hi: float, unit: str = "", open_low: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``open_low``)."""
    ok = _is_real(value) and math.isfinite(value)
    if not ok or value > hi or value < lo or (open_low and value == lo):
        low = f"> {lo:g}" if open_low else f">= {lo:g}"
        raise UsageError(f"{name} must be a finite number {low} and <= {hi:g}{unit}; got {value!r}")
    return float(value)


def win_duration(value: Any) -> float:
    return real("win_duration", value, 0.0, MAX_WINDOW_SECONDS, " seconds", open_low=True)


def batch_size(value: Any) -> int:
    return integer("batch_size", value, 1, MAX_BATCH_SIZE)


def n_quantizers(value: Any, n_codebooks: int) -> Optional[int]:
    return None if value is None else integer("n_quantizers", value, 1, n_codebooks, " for this model")


def normalize_db(value: Any) -> Optional[float]:
    """A loudness target in LUFS, or ``None`` (no normalisation)."""
    return None if value is None else real("normalize_db", value, *LOUDNESS_RANGE, " LUFS")


def sample_rate(value: Any, name: str = "sample_rate") -> int:
    return integer(name, value, *SAMPLE_RATES, " Hz")


def seed(value: Any) -> Optional[int]:
    return None if value is None else integer("seed", value, 0, 2**63 - 1)
