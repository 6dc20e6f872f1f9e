"""Fast random initialisation: the modules' own initial distributions, drawn with numpy.

``module.init`` under ``jax.jit`` is the Flax way, and it works, but XLA's CPU compiler takes
~10 s for the ~300 random initialisers of a full-size DAC (over 20 s for their random number
generation alone), and several seconds even for the tiny test models. :func:`numpy_init` traces
``module.init`` abstractly (``jax.eval_shape``: no compilation) to learn the parameter tree and
which module owns each parameter, then asks each owning module for its parameters with
``numpy_params(rng)``, a method that every parameter-holding module defines next to its Flax
initialisers (same distributions). A full-size model initialises in about a second.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import numpy as np


def numpy_init(module: nn.Module, *args: Any, seed: int = 0, **kwargs: Any) -> dict:
    """``{"params": ...}`` for ``module`` applied to ``args``, drawn from ``numpy.random`` with ``seed``.
    ``kwargs`` are static (Python values: flags such as ``deterministic=True``).

    Raises ``TypeError`` when a module holding parameters does not define ``numpy_params``.
    """
    owners: dict[tuple[str, ...], nn.Module] = {}

    def record(next_fun, fn_args, fn_kwargs, context):
        if hasattr(context.module, "numpy_params"):
            owners.setdefault(tuple(context.module.path), context.module)
        return next_fun(*fn_args, **fn_kwargs)

    with nn.intercept_methods(record):
        shapes = jax.eval_shape(functools.partial(module.init, **kwargs), jax.random.key(0), *args)

    params = shapes["params"]
    rng = np.random.default_rng(seed)
    drawn: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for key_path, leaf in leaves:
        path = tuple(k.key for k in key_path)
        owner = path[:-1]
        if owner not in owners:
            raise TypeError(f"parameter {'/'.join(path)}: its module {owner} has no numpy_params()")
        if owner not in drawn:
            drawn[owner] = owners[owner].numpy_params(rng)
        value = drawn[owner][path[-1]]
        if value.shape != leaf.shape or value.dtype != leaf.dtype:
            raise TypeError(f"parameter {'/'.join(path)}: numpy_params gave {value.shape} {value.dtype}, "
                            f"the module creates {leaf.shape} {leaf.dtype}")
    tree = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(params),
        [drawn[tuple(k.key for k in kp)[:-1]][kp[-1].key] for kp, _ in leaves],
    )
    return {"params": tree}
