"""``sin(y) ** 2`` for Snake as a polynomial XLA's CPU backend vectorises.

XLA's CPU ``sin`` runs at about 1 ns per float32 element on this project's 2-core machine, which
made Snake, a cheap-looking elementwise op, 15-20 % of the codec's time (benchmarks/RESULTS.md).
The same value from a Cody-Waite range reduction and an odd polynomial takes a twentieth of that:

    k = round(y / (pi / 2)),  r = y - k pi / 2 in [-pi / 4, pi / 4]  (pi / 2 split in three parts)
    sin(y) ** 2 = sin(r) ** 2 for even k, 1 - sin(r) ** 2 for odd k

``sin(r) = r P(r^2)`` with a degree-5 polynomial fitted for minimal relative error (1.7e-11 in
exact arithmetic, far below float32's). The result is within 1.2e-7 of the exact ``sin(y) ** 2``
for ``|y| <`` :data:`LIMIT` (about a million), as close as float32 ``sin`` followed by squaring
(what the original computes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: pi / 2 = A + B + C; A (8 significant bits) and B (11) are short enough that ``k * A`` and
#: ``k * B`` are exact in float32 for ``|k| < 2 ** 13``; beyond, the rounding of ``k * B`` and of
#: ``k`` itself slowly grows the error (measured: 1.2e-7 up to 1e6, 2.2e-7 up to 1e7).
_HALF_PI_A = np.float32(1.5703125)
_HALF_PI_B = np.float32(np.ldexp(np.round(np.ldexp(np.pi / 2 - 1.5703125, 22)), -22))
_HALF_PI_C = np.float32(np.pi / 2 - float(_HALF_PI_A) - float(_HALF_PI_B))
#: sin(r) / r = 1 + c1 r^2 + ... + c5 r^10 on |r| <= pi / 2
_SIN_COEFFICIENTS = tuple(np.float32(c) for c in (
    -0.1666666716337204, 0.008333330973982811, -0.0001984086266020313, 2.752531145233661e-06,
    -2.388986608536925e-08,
))
#: Largest |y| the reduction handles to float32 accuracy.
LIMIT = float(2**20)


def sin_squared(y: jax.Array) -> jax.Array:
    """``sin(y) ** 2`` in float32: as accurate as ``jnp.sin`` then squaring for ``|y| <`` :data:`LIMIT`.

    Other dtypes take ``jnp.sin``. Larger arguments (a codec's Snake never sees them: they would
    mean activations of a million) get a value in [0, 1] that drifts from the exact one; a guard
    that routed them to ``jnp.sin`` would cost most of the gain (it splits XLA's fusions).
    """
    if y.dtype != jnp.float32:
        return jnp.square(jnp.sin(y))
    k = jnp.round(y * np.float32(2 / np.pi))
    r = ((y - k * _HALF_PI_A) - k * _HALF_PI_B) - k * _HALF_PI_C
    r2 = r * r
    p = _SIN_COEFFICIENTS[-1]
    for c in _SIN_COEFFICIENTS[-2::-1]:
        p = p * r2 + c
    s = r + r * (r2 * p)
    s2 = jnp.minimum(s * s, 1)
    odd = k - 2 * jnp.floor(0.5 * k) != 0
    return jnp.where(odd, 1 - s2, s2)
