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
with the checked fast encoder (:mod:`dac_jax.guard`). Training runs :func:`trainable_conv1d`
(gradients written out) where the step asks for it (:func:`in_training`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from fractions import Fraction
from typing import Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dac_jax.nn import precision

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
    batch, length = x.shape[:2]
    out_length = length + padding[0] + padding[1] - (r - 1) * dilation
    if out_length <= 0:  # an input shorter than the kernel's span: no outputs, as lax.conv gives
        return jnp.zeros((batch, 0, u.shape[-1]), x.dtype)
    blocks = -(-out_length // (m * dilation))
    v, accumulate = precision.operands(_input_transform(x, b_t, m, blocks, dilation, padding), u)
    prod = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))), preferred_element_type=accumulate)  # n products [B blocks d, in] @ [in, out]
    prod = prod.reshape(n, batch, blocks, 1, dilation, -1)
    y = _combine(a_t, list(prod), (1, 1, m, 1, 1))  # [B, blocks, m, d, out]
    if bias is not None:
        y = y + bias  # in the output transform's loop
    return y.reshape(batch, blocks * m * dilation, -1)[:, :out_length]


def _input_transform(x: jnp.ndarray, b_t: np.ndarray, m: int, blocks: int, dilation: int,
                     padding: tuple[int, int]) -> jnp.ndarray:
    """``B^T d`` of every tile of ``x [B, L, in]`` (padded by ``padding``): ``[n, B blocks d, in]``."""
    n = b_t.shape[0]
    batch, length, channels = x.shape
    length += padding[0] + padding[1]
    extra = -(-(n - m) // m)  # input blocks a tile reaches beyond its own (n - m = r - 1)
    total = (blocks + extra) * m * dilation
    x = jnp.pad(x, ((0, 0), (padding[0], padding[1] + total - length), (0, 0)))
    x = x.reshape(batch, blocks + extra, m, dilation, channels)
    d = [x[:, j // m : j // m + blocks, j % m] for j in range(n)]  # n x [B, blocks, d, in]
    # each transform one fused loop writing its result once, in the layout its consumer reads
    return _combine(b_t, [t[None] for t in d], (n, 1, 1, 1, 1)).reshape(n, -1, channels)


def _combine(matrix: np.ndarray, terms: list[jnp.ndarray], shape: tuple[int, ...]) -> jnp.ndarray:
    """``sum_j matrix[:, j] t_j``, each column of constants reshaped to ``shape`` to broadcast over ``t_j``."""
    total = None
    for column, t in zip(matrix.T, terms):
        if np.any(column):
            term = t * jnp.asarray(column.reshape(shape), t.dtype)
            total = term if total is None else total + term
    return total


def applies(geometry, channels: int, min_channels: int) -> bool:
    """Whether a convolution of this geometry and ``channels`` (the fewer of its input and output
    channels) runs as Winograd: kernel 7, stride 1, not transposed, at least ``min_channels``. A
    one-channel side (the encoder's first, the decoder's last convolution) gains nothing."""
    plain = not geometry.transposed and geometry.stride == 1
    return plain and geometry.kernel == 7 and channels >= min_channels


# --------------------------------------------------------------------------------------------
# Training: the same convolution with its gradients written out
# --------------------------------------------------------------------------------------------

#: (m, min_channels) while :func:`in_training` is active, else None: read when a training step is traced
_TRAINING: contextvars.ContextVar[Optional[tuple[int, int]]] = contextvars.ContextVar("winograd_training", default=None)


@contextlib.contextmanager
def in_training(m: Optional[int], min_channels: int) -> Iterator[None]:
    """Within this block, the training parametrisation's kernel-7 convolutions (:func:`applies`)
    run as :func:`trainable_conv1d` with F(m, 7); ``m=None``: direct. The training step enters it
    around the generator's ``apply``, inside the traced function, so the choice is fixed in what
    it compiles."""
    if m is not None and m not in POINTS:
        raise ValueError(f"Winograd tile {m!r}: one of {sorted(POINTS)} or None")
    token = _TRAINING.set(None if m is None else (m, min_channels))
    try:
        yield
    finally:
        _TRAINING.reset(token)


def training_tile(geometry, kernel: jnp.ndarray) -> Optional[int]:
    """The tile ``m`` for this convolution (``kernel [r, in, out]``) under :func:`in_training`, or None."""
    setting = _TRAINING.get()
    if setting is None:
        return None
    m, min_channels = setting
    return m if applies(geometry, min(kernel.shape[1:]), min_channels) else None


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def trainable_conv1d(
    x: jnp.ndarray, kernel: jnp.ndarray, m: int, dilation: int, padding: tuple[int, int]
) -> jnp.ndarray:
    """:func:`conv1d` with a direct ``WIO`` kernel ``[r, in, out]`` (transformed here), differentiable.

    JAX's autodiff of :func:`conv1d` compiles the transposed slicing and padding of the tile
    transforms into scatter-like loops (forward + backward measured 5.7x slower than the direct
    convolution's), so both gradients are written out with the same transforms. ``y`` is bilinear
    in the kernel ``w`` and the input tiles: ``y_i = sum_v A^T[i, v] (G w)_v (B^T x)_v``, hence

    * ``dw_k = sum_v G[v, k] sum_tiles (B^T x)_v^T (A dy)_v``: ``n`` matrix products
      ``[in, tiles] @ [tiles, out]`` (Winograd F(r, m) of the weight gradient, the transposition of
      F(m, r): ``7 m / n`` fewer products than the direct gradient's, as in the forward pass);
    * ``dx``: the correlation of ``dy`` with the flipped kernel (in and out swapped), itself a
      kernel-``r`` convolution, run by :func:`conv1d`.
    """
    return conv1d(x, _transform(kernel, m), m, dilation, padding)


def _transform(kernel: jnp.ndarray, m: int) -> jnp.ndarray:
    _, g, _ = transforms(m, kernel.shape[0])
    return jnp.einsum("vk,kio->vio", jnp.asarray(g, kernel.dtype), kernel)


def _trainable_forward(x, kernel, m, dilation, padding):
    return trainable_conv1d(x, kernel, m, dilation, padding), (x, kernel)


def _trainable_backward(m, dilation, padding, residuals, grad):
    x, kernel = residuals
    r = kernel.shape[0]
    span = (r - 1) * dilation
    flipped = jnp.transpose(jnp.flip(kernel, 0), (0, 2, 1))  # [r, out, in]
    # dx_padded[s] = sum_k dy[s - k d] w_k^T; only the unpadded part [p0, p0 + L) is x's gradient
    d_x = conv1d(grad, _transform(flipped, m), m, dilation, (span - padding[0], span - padding[1]))
    return d_x, _kernel_gradient(x, grad, m, r, dilation, padding)


def _kernel_gradient(x, grad, m, r, dilation, padding):
    a_t, g, b_t = transforms(m, r)
    n = m + r - 1
    batch, out_length = grad.shape[:2]
    blocks = -(-out_length // (m * dilation))
    v = _input_transform(x, b_t, m, blocks, dilation, padding)  # B^T x, as the forward pass
    # the outputs' gradient in the same tiles: [B, blocks, m, d, out], zero past the outputs
    gy = jnp.pad(grad, ((0, 0), (0, blocks * m * dilation - out_length), (0, 0)))
    gy = gy.reshape(batch, blocks, m, dilation, -1)
    y_hat = _combine(a_t.T, [gy[:, :, i][None] for i in range(m)], (n, 1, 1, 1, 1))  # A dy: [n, B, blocks, d, out]
    y_hat = y_hat.reshape(n, -1, grad.shape[-1])
    products = lax.dot_general(v, y_hat, (((1,), (1,)), ((0,), (0,))))  # n x [in, out]
    return jnp.einsum("vk,vio->kio", jnp.asarray(g, products.dtype), products)


trainable_conv1d.defvjp(_trainable_forward, _trainable_backward)
