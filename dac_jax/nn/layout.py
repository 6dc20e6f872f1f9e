"""Weight-normed convolutions with their parameters in the layout the convolution runs: for training.

Imported and exported parameters keep PyTorch's layouts (``weight_v [out, in, k]``, see
:mod:`dac_jax.nn.layers`), but XLA's convolutions take channels-last kernels ``[k, in, out]``, so a
training step on PyTorch-layout parameters rearranges every kernel in its forward pass and every
kernel's gradient back, each step, the discriminator's twice. On a CPU those transposes were a
quarter of the 16 kHz training step's operation time (``benchmarks/train_step_profile.py``).

The training state therefore holds each weight-normed convolution's ``weight_v`` / ``weight_g`` as
``kernel_v`` / ``kernel_g``: the same numbers, rearranged once into the kernel layout of
:func:`dac_jax.nn.layers.fold_kernel` (``[k, in, out]``; the polyphase ``[J, in, s * out]`` of an
undilated transposed conv). The rearrangement is a bijection, and ``kernel_g`` keeps the norm on
the axis weight norm keeps it on (per output channel; per input channel for a transposed conv)::

    weight_v [out, in, k], weight_g [out, 1, 1]  <->  kernel_v [k, in, out], kernel_g [1, 1, out]

The layers read either form (:class:`~dac_jax.nn.layers.WNConv1d`, :class:`~dac_jax.nn.layers.WNConv`);
:func:`to_conv_layout` and :func:`to_torch_layout` convert a whole parameter tree at the training
state's edges (creating it, reading a run's generator). A transposed convolution whose kernel is not
a multiple of its stride has no bijective polyphase form (its taps are zero-padded) and keeps
PyTorch's layout; none of the released models has one.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import unfreeze

from dac_jax.nn.layers import KERNEL_G, KERNEL_V, WNConv, WNConv1d, fold_kernel

Path = tuple[str, ...]


def find_convolutions(module: nn.Module, variables: dict, *args: Any, method: Any = None, **kwargs: Any) -> dict[Path, nn.Module]:
    """``{path: layer}`` of every weight-normed convolution (:class:`WNConv1d`, :class:`WNConv`) that
    ``module.apply(variables, *args, method=method, **kwargs)`` calls, traced abstractly
    (``jax.eval_shape``: nothing is computed)."""
    found: dict[Path, nn.Module] = {}

    def record(next_fun, fn_args, fn_kwargs, context):
        if isinstance(context.module, (WNConv1d, WNConv)):
            found.setdefault(tuple(context.module.path), context.module)
        return next_fun(*fn_args, **fn_kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(functools.partial(module.apply, method=method, **kwargs), variables, *args)
    return found


def convertible(layer: nn.Module) -> bool:
    """Whether ``layer``'s kernel has a bijective conv layout (all but a transposed conv whose
    kernel is not a multiple of its stride)."""
    if isinstance(layer, WNConv1d):
        g = layer.geometry
        return not (g.transposed and g.dilation == 1 and g.kernel % g.stride)
    return True


def kernel_from_torch(v, g, layer: nn.Module):
    """``(kernel_v, kernel_g)`` from PyTorch-layout ``(weight_v, weight_g)`` of ``layer``."""
    xp = np if isinstance(v, np.ndarray) else jnp
    if isinstance(layer, WNConv1d):
        geometry = layer.geometry
        kernel = fold_kernel(v, geometry)
        # weight_g holds axis 0 of weight_v: the output channels of a conv, the inputs of a transposed one
        shape = (1, g.shape[0], 1) if geometry.transposed else (1, 1, g.shape[0])
        return kernel, xp.reshape(g, shape)
    nd = v.ndim
    axes = tuple(range(2, nd)) + (1, 0)  # [out, in/groups, *k] -> [*k, in/groups, out]
    return xp.transpose(v, axes), xp.reshape(g, (1,) * (nd - 1) + (g.shape[0],))


def kernel_to_torch(kernel, kernel_g, layer: nn.Module):
    """The inverse of :func:`kernel_from_torch`: ``(weight_v, weight_g)`` in PyTorch's layouts."""
    xp = np if isinstance(kernel, np.ndarray) else jnp
    n = int(np.prod(kernel_g.shape))
    g = xp.reshape(kernel_g, (n,) + (1,) * (kernel.ndim - 1))  # weight_g [dim0, 1, ...]
    if isinstance(layer, WNConv1d):
        geometry = layer.geometry
        if not geometry.transposed:
            return xp.transpose(kernel, (2, 1, 0)), g
        if geometry.dilation != 1:  # fold_kernel: transpose(flip(v, -1), (2, 0, 1))
            return xp.flip(xp.transpose(kernel, (1, 2, 0)), axis=-1), g
        s = geometry.stride
        taps, n_in, n_out = kernel.shape[0], kernel.shape[1], kernel.shape[2] // s
        w = xp.transpose(kernel.reshape(taps, n_in, s, n_out), (1, 3, 0, 2))[:, :, ::-1]  # [in, out, J, s]
        return w.reshape(n_in, n_out, taps * s), g
    nd = kernel.ndim
    axes = (nd - 1, nd - 2) + tuple(range(nd - 2))
    return xp.transpose(kernel, axes), g


def _convert(params: Any, layers: dict[Path, nn.Module], convert: Callable, source: tuple[str, str],
             target: tuple[str, str]) -> dict:
    params = unfreeze(params)
    out = jax.tree_util.tree_map(lambda x: x, params)  # a copy of the nesting: the input stays as it was
    for path, layer in layers.items():
        node = out
        for name in path:
            node = node[name]
        if source[0] not in node or not convertible(layer):
            continue
        a, b = convert(node.pop(source[0]), node.pop(source[1]), layer)
        node[target[0]], node[target[1]] = a, b
    return out


def to_conv_layout(module: nn.Module, params: Any, *args: Any, **kwargs: Any) -> dict:
    """``params`` (a ``"params"`` tree of ``module``) with every weight-normed convolution's
    ``weight_v`` / ``weight_g`` as ``kernel_v`` / ``kernel_g`` (see the module docstring); ``args``
    and ``kwargs`` must reach every convolution (as for :func:`dac_jax.nn.fold.fold_variables`).
    Trees already in the conv layout come back unchanged."""
    layers = find_convolutions(module, {"params": params}, *args, **kwargs)
    return _convert(params, layers, kernel_from_torch, ("weight_v", "weight_g"), (KERNEL_V, KERNEL_G))


def to_torch_layout(module: nn.Module, params: Any, *args: Any, **kwargs: Any) -> dict:
    """The inverse of :func:`to_conv_layout`: PyTorch's ``weight_v`` / ``weight_g`` everywhere."""
    layers = find_convolutions(module, {"params": params}, *args, **kwargs)
    return _convert(params, layers, kernel_to_torch, (KERNEL_V, KERNEL_G), ("weight_v", "weight_g"))


def in_conv_layout(params: Any) -> bool:
    """Whether any convolution of ``params`` holds its parameters in the conv layout."""
    return any(getattr(p[-1], "key", None) == KERNEL_V for p, _ in jax.tree_util.tree_flatten_with_path(params)[0])

