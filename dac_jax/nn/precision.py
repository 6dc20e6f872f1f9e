"""How precisely inference multiplies: float32 by default, TF32 or bfloat16 when asked.

Three settings of a model (:attr:`dac_jax.runtime.Model.precision`):

- ``"float32"`` (default): every convolution and matrix product in full float32
  (``Precision.HIGHEST``) on every backend. JAX's own default on recent NVIDIA GPUs would round
  the operands to TensorFloat-32; the original's eager float32 does not, so neither do we.
- ``"tf32"``: the convolutions on NVIDIA's TensorFloat-32 tensor cores (operands rounded to 10
  mantissa bits, sums in float32): JAX's matmul precision ``"tensorfloat32"``. Only a GPU has them;
  XLA's CPU backend refuses the setting, so :func:`check` does first.
- ``"bfloat16"``: the convolutions' kernels stored in bfloat16 and their inputs rounded to
  bfloat16 (8 mantissa bits) as they enter, the products summed in float32
  (``preferred_element_type``). Everything between convolutions (Snake, residual adds, the
  quantiser's codebook search) stays float32. Written out as casts rather than as a matmul
  precision, so it rounds the same way on every backend: XLA's CPU backend ignores a bfloat16
  precision request and would report float32's codes as bfloat16's.

Codes can differ from float32's wherever a frame's two nearest codewords are closer than the
rounding moves it; ``benchmarks/precision_codes.py`` measures how often.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

PRECISIONS = ("float32", "tf32", "bfloat16")

#: the matmul precision each setting runs under (``jax.default_matmul_precision``)
MATMUL = {"float32": "float32", "tf32": "tensorfloat32", "bfloat16": "float32"}

#: the dtype each setting stores the folded convolution kernels in
KERNEL_DTYPE = {"float32": jnp.float32, "tf32": jnp.float32, "bfloat16": jnp.bfloat16}

#: the folded variables' leaves that are convolution kernels (``dac_jax.nn.fold``)
KERNEL_NAMES = ("kernel", "winograd_kernel")


def check(precision: Any, backend: str) -> Optional[str]:
    """``None`` if ``precision`` runs on ``backend`` (``jax.default_backend()``), else why not."""
    if precision not in PRECISIONS:
        return f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}"
    if precision == "tf32" and backend != "gpu":
        return f"precision tf32 needs an NVIDIA GPU's tensor cores; this backend is {backend} (bfloat16 runs anywhere)"
    return None


def cast_kernels(folded: dict, precision: str) -> dict:
    """The ``"folded"`` collection of :func:`dac_jax.nn.fold.fold_variables` with its convolution
    kernels in ``precision``'s dtype (biases stay float32)."""
    dtype = KERNEL_DTYPE[precision]

    def cast(path, leaf):
        return leaf.astype(dtype) if getattr(path[-1], "key", None) in KERNEL_NAMES else leaf

    return jax.tree_util.tree_map_with_path(cast, folded)


def operands(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, Optional[Any]]:
    """``x`` in the kernel's dtype, and the ``preferred_element_type`` that keeps the sums in
    ``x``'s: a bfloat16 kernel rounds its input and accumulates in float32; a float32 one changes
    nothing."""
    if kernel.dtype == x.dtype:
        return x, None
    return x.astype(kernel.dtype), x.dtype
