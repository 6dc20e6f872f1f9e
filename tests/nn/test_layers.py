"""Weight norm, weight-normed convolutions, Snake and DAC's blocks against the original PyTorch layers.

Our modules are channels-last ``[B, T, C]``; the original is channels-first ``[B, C, T]``. Parameters
keep PyTorch layouts, so weights are copied as they are, by the key rule of the weight importer.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dac_jax.nn.blocks import DecoderBlock, EncoderBlock, ResidualUnit
from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.layers import Snake, WNConv1d, snake, weight_norm
from dac_jax.weights.torch_format import torch_key
from tests.requires import require_reference

# Every test here compares with the original: each asks for it itself (tests.requires).


def _assert_close(ours, theirs, tol=1e-5):
    """Equal within ``tol`` relative to the reference's largest magnitude."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = max(float(np.max(np.abs(theirs))), 1e-6)
    err = float(np.max(np.abs(ours - theirs)))
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol} * {scale:.3g}"


def _randomize(module, seed: int):
    """Move alpha, g and biases away from their initial values (seeded), so nothing is trivially 1 or 0."""
    torch = require_reference("torch")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("alpha"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("weight_g"):
                p.mul_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return module


def _unpad(module):
    """Padding 0 on every Conv1d / ConvTranspose1d, as the original's ``CodecMixin.padding = False`` does."""
    torch = require_reference("torch")
    for layer in module.modules():
        if isinstance(layer, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            layer.padding = tuple(0 for _ in layer.padding)
    return module


def _variables_from_torch(flax_module, torch_module, x_shape) -> dict:
    """Our variables from the torch module's state dict, each Flax path looked up by ``torch_key``."""
    shapes = jax.eval_shape(flax_module.init, jax.random.key(0), jax.ShapeDtypeStruct(x_shape, jnp.float32))
    flat = traverse_util.flatten_dict(shapes["params"])
    state = {k: v.detach().numpy() for k, v in torch_module.state_dict().items()}
    assert {torch_key(p) for p in flat} == set(state), "parameter trees differ"
    params = {}
    for path, s in flat.items():
        value = state[torch_key(path)]
        assert value.shape == s.shape, (path, value.shape, s.shape)
        params[path] = jnp.asarray(value)
    return {"params": traverse_util.unflatten_dict(params)}


def _run_torch(module, x: np.ndarray) -> np.ndarray:
    """Channels-last numpy in and out around a channels-first torch module."""
    torch = require_reference("torch")
    with torch.no_grad():
        y = module(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))))
    return y.numpy().transpose(0, 2, 1)


@functools.partial(jax.jit, static_argnums=0)
def _apply(module, variables, x):
    return module.apply(variables, x)


# --------------------------------------------------------------------------------------------
# Weight norm
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
def test_weight_norm_matches_torch(transposed):
    torch = require_reference("torch")
    torch.manual_seed(0)
    cls = torch.nn.ConvTranspose1d if transposed else torch.nn.Conv1d
    layer = torch.nn.utils.weight_norm(cls(3, 5, 4))
    with torch.no_grad():
        layer.weight_g.mul_(torch.rand(layer.weight_g.shape) + 0.5)
        layer(torch.zeros(1, 3, 8))  # the pre-forward hook recomputes layer.weight from g and v
    v, g = layer.weight_v.detach().numpy(), layer.weight_g.detach().numpy()
    # the norm is over every axis but 0: per output channel for a conv, per INPUT channel transposed
    assert g.shape == ((3 if transposed else 5), 1, 1)
    ours = weight_norm(jnp.asarray(v), jnp.asarray(g))
    _assert_close(ours, layer.weight.detach().numpy(), 1e-6)
    # and with g = ||v|| (the initial state) the weight is v itself
    norm = np.sqrt((v.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True)).astype(np.float32)
    _assert_close(weight_norm(jnp.asarray(v), jnp.asarray(norm)), v, 1e-6)


# --------------------------------------------------------------------------------------------
# WNConv1d (plain and transposed) against the original's WNConv1d / WNConvTranspose1d
# --------------------------------------------------------------------------------------------


def _conv_case(stride: int, dilation: int, transposed: bool) -> ConvGeometry:
    kernel = 2 * stride if stride > 1 else 7
    # odd strides get an output_padding of 1 on the transposed side (as DAC-VAE's decoder uses)
    op = 1 if transposed and stride % 2 and 1 < max(stride, dilation) else 0
    return ConvGeometry(
        kernel,
        stride=stride,
        dilation=dilation,
        transposed=transposed,
        padding=math.ceil(stride / 2) if stride > 1 else 3 * dilation,
        output_padding=op,
    )


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
@pytest.mark.parametrize("dilation", [1, 3, 9])
@pytest.mark.parametrize("stride", [1, 2, 4, 5, 8])
def test_wnconv1d_matches_torch(stride, dilation, transposed):
    torch = require_reference("torch")
    dac_layers = require_reference("dac.nn.layers")
    g = _conv_case(stride, dilation, transposed)
    c_in, c_out = 3, 5
    torch.manual_seed(stride * 100 + dilation)
    make = dac_layers.WNConvTranspose1d if transposed else dac_layers.WNConv1d
    kwargs = dict(kernel_size=g.kernel, stride=g.stride, dilation=g.dilation, padding=g.padding)
    if transposed:
        kwargs["output_padding"] = g.output_padding
    reference = _randomize(make(c_in, c_out, **kwargs), seed=stride + dilation)

    x = np.random.default_rng(stride * 10 + dilation).normal(size=(2, 200, c_in)).astype(np.float32)
    for padded in (True, False):
        if not padded:
            _unpad(reference)
            reference.output_padding = (0,)  # unpadded mode has no output padding either
        module = WNConv1d(c_in, c_out, g, padded=padded, zero_bias=not transposed)
        variables = _variables_from_torch(module, reference, x.shape)
        assert variables["params"]["weight_g"].shape == ((c_in if transposed else c_out), 1, 1)
        theirs = _run_torch(reference, x)
        ours = _apply(module, variables, jnp.asarray(x))
        assert ours.shape[1] == g.output_length(200, padded)
        _assert_close(ours, theirs)


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@pytest.mark.parametrize("stride", [2, 5, 8])
@pytest.mark.parametrize("c_in, c_out, length", [(6, 4, 37), (24, 16, 3)], ids=["long input", "short input"])
def test_transposed_wnconv1d_gradients_match_torch(stride, padded, c_in, c_out, length):
    """The upsampling conv's gradients (its backward pass is written out by hand in
    ``full_correlation``; a short input with a larger kernel takes its per-tap input gradient)
    equal torch's autograd: input, weight_v, weight_g and bias."""
    torch = require_reference("torch")
    dac_layers = require_reference("dac.nn.layers")
    g = _conv_case(stride, 1, True)
    torch.manual_seed(stride)
    reference = _randomize(
        dac_layers.WNConvTranspose1d(c_in, c_out, kernel_size=g.kernel, stride=stride, padding=g.padding,
                                     output_padding=g.output_padding), seed=stride)
    if not padded:
        _unpad(reference)
        reference.output_padding = (0,)
    rng = np.random.default_rng(stride)
    x = rng.normal(size=(2, length, c_in)).astype(np.float32)
    module = WNConv1d(c_in, c_out, g, padded=padded, zero_bias=False)
    variables = _variables_from_torch(module, reference, x.shape)
    y_shape = (2, g.output_length(length, padded), c_out)
    weight = rng.normal(size=y_shape).astype(np.float32)  # the loss: sum(weight * y)

    def loss(params, x):
        return jnp.sum(module.apply({"params": params}, x) * weight)

    d_params, d_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], jnp.asarray(x))

    x_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))).requires_grad_()
    y_t = reference(x_t)
    assert tuple(y_t.shape) == (2, c_out, y_shape[1])
    (y_t * torch.from_numpy(np.ascontiguousarray(weight.transpose(0, 2, 1)))).sum().backward()
    _assert_close(d_x, x_t.grad.numpy().transpose(0, 2, 1), 1e-6)
    named = dict(reference.named_parameters())
    for name in ("weight_v", "weight_g", "bias"):
        _assert_close(d_params[name], named[name].grad.numpy(), 1e-6)


# --------------------------------------------------------------------------------------------
# Snake
# --------------------------------------------------------------------------------------------


def test_snake_matches_torch():
    torch = require_reference("torch")
    dac_layers = require_reference("dac.nn.layers")
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(2, 6, 50)).astype(np.float32)
    alpha = rng.uniform(0.01, 3.0, size=(1, 6, 1)).astype(np.float32)
    alpha[0, 0, 0] = 1e-4  # small alpha: sin(a x)^2 / a ~ a x^2
    theirs = dac_layers.snake(torch.from_numpy(x), torch.from_numpy(alpha)).numpy()
    _assert_close(snake(jnp.asarray(x), jnp.asarray(alpha)), theirs, 1e-6)


def test_snake_module_matches_torch():
    dac_layers = require_reference("dac.nn.layers")
    channels = 6
    reference = _randomize(dac_layers.Snake1d(channels), seed=1)
    module = Snake(channels)
    x = np.random.default_rng(1).normal(size=(2, 40, channels)).astype(np.float32)
    variables = _variables_from_torch(module, reference, x.shape)  # checks the key "alpha" and shape
    assert variables["params"]["alpha"].shape == (1, channels, 1)
    default = jax.eval_shape(module.init, jax.random.key(0), x)["params"]["alpha"]
    assert default.shape == (1, channels, 1)
    _assert_close(_apply(module, variables, jnp.asarray(x)), _run_torch(reference, x), 1e-6)


# --------------------------------------------------------------------------------------------
# ResidualUnit, EncoderBlock, DecoderBlock against the original's
# --------------------------------------------------------------------------------------------


def _check_block(ours_for, reference, x: np.ndarray):
    """Compare a block in padded and unpadded mode; ``ours_for(padded)`` builds our module."""
    padded_out = None
    for padded in (True, False):
        if not padded:
            _unpad(reference)
        module = ours_for(padded)
        variables = _variables_from_torch(module, reference, x.shape)
        theirs = _run_torch(reference, x)
        ours = _apply(module, variables, jnp.asarray(x))
        # the geometry of the block predicts the length its forward pass produces
        expected = x.shape[1]
        for g in module.geometries():
            expected = g.output_length(expected, padded)
        assert ours.shape[1] == expected
        _assert_close(ours, theirs)
        if padded:
            padded_out = theirs
        else:
            assert theirs.shape[1] < padded_out.shape[1]  # the unpadded mode really is different


@pytest.mark.parametrize("dilation", [1, 3, 9])
def test_residual_unit_matches_torch(dilation):
    torch = require_reference("torch")
    dac_model = require_reference("dac.model.dac")
    dim = 6
    torch.manual_seed(dilation)
    reference = _randomize(dac_model.ResidualUnit(dim, dilation), seed=dilation)
    x = np.random.default_rng(dilation).normal(size=(2, 120, dim)).astype(np.float32)
    _check_block(lambda padded: ResidualUnit(dim, dilation, padded), reference, x)


@pytest.mark.parametrize("stride", [2, 5, 8])
def test_encoder_block_matches_torch(stride):
    torch = require_reference("torch")
    dac_model = require_reference("dac.model.dac")
    dim = 8
    torch.manual_seed(stride)
    reference = _randomize(dac_model.EncoderBlock(dim, stride), seed=stride)
    x = np.random.default_rng(stride).normal(size=(2, 240, dim // 2)).astype(np.float32)
    _check_block(lambda padded: EncoderBlock(dim, stride, padded), reference, x)


@pytest.mark.parametrize("stride", [2, 5, 8])
def test_decoder_block_matches_torch(stride):
    torch = require_reference("torch")
    dac_model = require_reference("dac.model.dac")
    d_in, d_out = 8, 4
    torch.manual_seed(stride)
    reference = _randomize(dac_model.DecoderBlock(d_in, d_out, stride), seed=stride)
    x = np.random.default_rng(stride).normal(size=(2, 40, d_in)).astype(np.float32)
    _check_block(lambda padded: DecoderBlock(d_in, d_out, stride, padded), reference, x)
