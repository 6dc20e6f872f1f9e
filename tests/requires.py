"""The one way a test asks for the PyTorch reference (torch, dac, audiotools, julius, ...).

``require_reference("torch")`` imports and returns the module. Without it the test is skipped,
unless the run demands the reference (``DAC_JAX_REQUIRE_REFERENCE=1``, as ``make test`` sets):
then it fails, naming the package. Call it inside the tests (or fixtures) that compare with the
reference, never at module level, so that the pure-JAX tests of a module never depend on it.
"""

from __future__ import annotations

import importlib
import os

import pytest


def reference_required() -> bool:
    return os.environ.get("DAC_JAX_REQUIRE_REFERENCE") == "1"


def require_reference(name: str):
    if reference_required():
        try:
            return importlib.import_module(name)
        except ImportError as e:
            pytest.fail(f"the reference package {name!r} is required (DAC_JAX_REQUIRE_REFERENCE=1) "
                        f"but does not import: {e}", pytrace=False)
    return pytest.importorskip(name)
