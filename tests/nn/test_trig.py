"""Snake's polynomial ``sin ** 2``: as accurate as float32 ``sin`` then squaring, bounded beyond its range."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dac_jax.nn.layers import snake
from dac_jax.nn.trig import LIMIT, sin_squared


def _magnitudes(lo: float, hi: float, n: int = 200_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.exp(rng.uniform(np.log(lo), np.log(hi), n)) * rng.choice([-1.0, 1.0], n)
    return y.astype(np.float32)


@pytest.mark.parametrize("lo, hi", [(1e-6, 1.0), (1.0, 100.0), (100.0, 8192.0), (8192.0, LIMIT)])
def test_within_float32_sin_squared_of_the_exact_value(lo, hi):
    y = _magnitudes(lo, hi)
    exact = np.sin(y.astype(np.float64)) ** 2
    ours = np.asarray(jax.jit(sin_squared)(jnp.asarray(y)))
    float32_sin = np.asarray(jnp.square(jnp.sin(jnp.asarray(y))))  # what jnp.sin gives, for scale
    assert np.abs(ours - exact).max() <= 1.3e-7
    assert np.abs(ours - exact).max() <= 1.5 * np.abs(float32_sin - exact).max() + 3e-8
    # small arguments keep their relative precision (sin^2 y ~ y^2)
    small = np.abs(y) < 1e-2
    if small.any():
        rel = np.abs(ours[small] - exact[small]) / exact[small]
        assert rel.max() <= 4e-7


def test_special_and_huge_arguments():
    y = jnp.asarray([0.0, -0.0, np.pi / 2, np.nan, np.inf, -np.inf], jnp.float32)
    out = np.asarray(sin_squared(y))
    assert out[0] == 0 and out[1] == 0 and abs(out[2] - 1) <= 1e-7
    assert np.isnan(out[3:]).all()  # like sin: NaN for NaN and infinities
    huge = np.asarray(sin_squared(jnp.asarray(_magnitudes(1e7, 3e38))))
    assert np.isfinite(huge).all() and huge.min() >= 0 and huge.max() <= 1


def test_gradient_is_sin_2y():
    y = jnp.asarray(_magnitudes(1e-3, 100.0, n=10_000), jnp.float32)
    grad = jax.grad(lambda t: jnp.sum(sin_squared(t)))(y)
    np.testing.assert_allclose(grad, np.sin(2 * np.asarray(y, np.float64)), atol=5e-6)


def test_other_dtypes_use_jnp_sin():
    y = jnp.asarray([0.3, 2.0], jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(sin_squared(y)), np.asarray(jnp.square(jnp.sin(y))))


def test_snake_is_as_close_to_exact_as_the_original_formula():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 300, 8)) * 4, jnp.float32)
    alpha = jnp.asarray(rng.uniform(0.05, 20, (1, 1, 8)), jnp.float32)
    x64, a64 = np.asarray(x, np.float64), np.asarray(alpha, np.float64)
    exact = x64 + 1 / (a64 + 1e-9) * np.sin(np.asarray(alpha * x, np.float64)) ** 2
    original = x + jnp.reciprocal(alpha + 1e-9) * jnp.square(jnp.sin(alpha * x))  # the original's formula
    ours = snake(x, alpha)
    err_original = np.abs(np.asarray(original) - exact).max()
    assert np.abs(np.asarray(ours) - exact).max() <= 1.5 * err_original
