"""Inference variables with every weight-normed convolution folded once.

Training needs ``weight_v`` / ``weight_g`` (their gradients are the parametrisation), but
inference only ever uses ``g * v / ||v||`` rearranged into the kernel layout of the convolution.
:func:`fold_variables` computes those kernels once, stores them in the ``"folded"`` collection,
and drops the ``weight_v`` / ``weight_g`` / ``bias`` they replace, so a jitted encode or decode
reads ready-made kernels instead of renormalising and transposing ~75 M weights per call.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax.core import unfreeze

from dac_jax.nn import winograd as winograd_rules
from dac_jax.nn.layers import FOLDED, WNConv1d, fold_kernel, weight_norm
from dac_jax.nn.layout import find_convolutions


def fold_variables(
    module: nn.Module, variables: dict, *args: Any, method: Any = None, winograd: int | None = None,
    winograd_min_channels: int = 64, winograd_parts: tuple[str, ...] | None = None, **kwargs: Any,
) -> dict:
    """``variables`` for ``module`` with its weight-normed convolutions folded.

    ``args`` must reach every convolution (for DAC: the forward pass on a short clip, which runs
    the encoder, every quantizer and the decoder). It is traced abstractly (``jax.eval_shape``)
    only to find each convolution's path and geometry; the kernels are then folded directly from
    the parameters. The result applies to the padded and the unpadded module alike and gives the
    same outputs up to float rounding.

    ``winograd=m`` (2 or 4; off unless asked: :class:`dac_jax.runtime.Model` asks for the decoder's
    on a CPU) stores the kernel-7, stride-1
    convolutions with at least ``winograd_min_channels`` input and output channels as Winograd
    F(m, 7) transforms (:mod:`dac_jax.nn.winograd`): fewer multiplications, larger float32
    rounding. 64 covers every such convolution of the released models but the first and last
    (one audio channel), which measured fastest (benchmarks/RESULTS.md). ``winograd_parts``
    (e.g. ``("decoder",)``) limits it to the convolutions under those top-level modules.
    """
    if FOLDED in variables:
        return variables
    convs = {path: layer.geometry for path, layer in find_convolutions(module, variables, *args, method=method, **kwargs).items()
             if isinstance(layer, WNConv1d)}

    params = unfreeze(variables["params"])
    folded: dict = {}
    for path, geometry in convs.items():
        owner, target = params, folded
        for name in path[:-1]:
            owner, target = owner[name], target.setdefault(name, {})
        conv = owner.pop(path[-1])
        v, g = np.asarray(conv["weight_v"]), np.asarray(conv["weight_g"])
        kernel = np.ascontiguousarray(fold_kernel(weight_norm(v, g), geometry))
        if (winograd and (winograd_parts is None or path[0] in winograd_parts)
                and winograd_rules.applies(geometry, min(v.shape[:2]), winograd_min_channels)):
            target[path[-1]] = {"winograd_kernel": jnp.asarray(winograd_rules.transform_kernel(kernel, winograd)), "bias": conv["bias"]}
            continue
        target[path[-1]] = {"kernel": jnp.asarray(kernel), "bias": conv["bias"]}
    result = {k: v for k, v in variables.items() if k != "params"}
    result["params"] = params
    result[FOLDED] = folded
    return result

