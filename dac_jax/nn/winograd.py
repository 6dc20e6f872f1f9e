"""Winograd (Toom-Cook) minimal filtering for the kernel-7 convolutions.

A correlation of ``m`` consecutive outputs with an ``r``-tap kernel takes ``m * r`` products per
channel pair directly and ``n = m + r - 1`` with Winograd's F(m, r)::

    y = A^T [ (G g) * (B^T d) ]        d: n inputs of a tile, g: the r taps, y: m outputs

so the channel-mixing matrix products of a kernel-7 convolution shrink by ``7 m / n`` (1.75x for
F(2, 7), 2.8x for F(4, 7)). The transforms come from the interpolation points: ``G`` evaluates
the kernel polynomial at the ``n`` points (one of them infinity), ``A^T`` does the same for the
outputs, and ``B^T`` is the transposed inverse of the ``n x n`` evaluation (Vandermonde) matrix,
by the transposition principle applied to Toom-Cook's linear convolution.

The results are the same sums in another order and through rational transforms: float32 errors
grow with ``m`` (the points' spread), so codes may differ from the direct convolution's where two
codebook entries are nearly tied. Measured in ``benchmarks/RESULTS.md``. Used where
``fold_variables(..., winograd=m)`` asks for it: by default the decoder's on a CPU
(:func:`dac_jax.runtime.default_winograd`), whose outputs are audio, not codes; the encoder's only
with the checked fast encoder (:mod:`dac_jax.guard`).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import jax.numpy as jnp
import numpy as np
from jax import lax

#: Interpolation points per output tile size (infinity is the last point of every set).
POINTS = {
    2: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
    4: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), 3, -3),
}


@functools.lru_cache(maxsize=None)
def transforms(m: int, r: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T [m, n], G [n, r], B^T [n, n])`` of F(m, r), computed exactly (fractions), as float64."""
    n = m + r - 1
    points = POINTS[m]
    if len(points) != n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points, have {len(points)}")

    def evaluation(degree: int) -> list[list[Fraction]]:
        # rows: the points, then infinity (the leading coefficient); columns: coefficients 0..degree-1
        rows = [[Fraction(a) ** p for p in range(degree)] for a in points]
        rows.append([Fraction(int(p == degree - 1)) for p in range(degree)])
        return rows

    a = evaluation(m)
    g = evaluation(r)
    v = evaluation(n)
    v_inv = _inverse(v)
    a_t = [[a[nu][i] for nu in range(n)] for i in range(m)]
    b_t = [[v_inv[j][nu] for j in range(n)] for nu in range(n)]  # (V^-1)^T
    as_float = lambda rows: np.array([[float(x) for x in row] for row in rows])  # noqa: E731
    return as_float(a_t), as_float(g), as_float(b_t)


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Gauss-Jordan inverse over the rationals (the matrices are at most 10 x 10)."""
    n = len(matrix)
    work = [row[:] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(i for i in range(col, n) if work[i][col] != 0)
        work[col], work[pivot] = work[pivot], work[col]
        scale = work[col][col]
        work[col] = [x / scale for x in work[col]]
        for i in range(n):
            if i != col and work[i][col] != 0:
                factor = work[i][col]
                work[i] = [x - factor * y for x, y in zip(work[i], work[col])]
    return [row[n:] for row in work]


def transform_kernel(kernel: np.ndarray, m: int) -> np.ndarray:
    """A folded ``WIO`` kernel ``[r, in, out]`` -> ``U [n, in, out]`` (``G g`` per channel pair), float32."""
    _, g, _ = transforms(m, kernel.shape[0])
    return np.einsum("vk,kio->vio", g, np.asarray(kernel, np.float64)).astype(np.float32)


def conv1d(
    x: jnp.ndarray, u: jnp.ndarray, m: int, dilation: int = 1, padding: tuple[int, int] = (0, 0),
    bias: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Channels-last ``x [B, L, in]`` correlated with the kernel whose transform is ``u [n, in, out]``.

    The same result as ``lax.conv_general_dilated`` with that kernel, ``rhs_dilation=dilation`` and
    ``padding`` (up to float rounding), plus ``bias [out]`` if given. With dilation ``d`` a tile is
    ``m`` outputs ``d`` apart, and the tiles of the ``d`` phases sit side by side, so no transposes
    are needed::

        x as [B, blocks, m, d, in]: position (b, i, q) = b m d + i d + q
        tile (b, q), input j = 0 .. n-1:  x[b m d + j d + q] = X[b + j // m, j % m, q]

    The transforms are written as sums of slices with constant coefficients (XLA fuses them into
    loops) rather than as matrix products over an axis of length ``n``, which XLA's CPU backend
    runs several times slower.
    """
    a_t, _, b_t = transforms(m, u.shape[0] - m + 1)
    n = u.shape[0]
    r = n - m + 1
    batch, length, channels = x.shape
    length += padding[0] + padding[1]
    out_length = length - (r - 1) * dilation
    if out_length <= 0:  # an input shorter than the kernel's span: no outputs, as lax.conv gives
        return jnp.zeros((batch, 0, u.shape[-1]), x.dtype)
    blocks = -(-out_length // (m * dilation))
    extra = -(-(r - 1) // m)  # input blocks a tile reaches beyond its own
    total = (blocks + extra) * m * dilation
    x = jnp.pad(x, ((0, 0), (padding[0], padding[1] + total - length), (0, 0)))
    x = x.reshape(batch, blocks + extra, m, dilation, channels)
    d = [x[:, j // m : j // m + blocks, j % m] for j in range(n)]  # n x [B, blocks, d, in]
    # each transform one fused loop writing its result once, in the layout its consumer reads
    v = _combine(b_t, [t[None] for t in d], (n, 1, 1, 1, 1)).reshape(n, -1, channels)
    prod = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))))  # n products [B blocks d, in] @ [in, out]
    prod = prod.reshape(n, batch, blocks, 1, dilation, -1)
    y = _combine(a_t, list(prod), (1, 1, m, 1, 1))  # [B, blocks, m, d, out]
    if bias is not None:
        y = y + bias  # in the output transform's loop
    return y.reshape(batch, blocks * m * dilation, -1)[:, :out_length]


def _combine(matrix: np.ndarray, terms: list[jnp.ndarray], shape: tuple[int, ...]) -> jnp.ndarray:
    """``sum_j matrix[:, j] t_j``, each column of constants reshaped to ``shape`` to broadcast over ``t_j``."""
    total = None
    for column, t in zip(matrix.T, terms):
        if np.any(column):
            term = t * jnp.asarray(column.reshape(shape), t.dtype)
            total = term if total is None else total + term
    return total
