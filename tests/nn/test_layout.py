"""The conv layout of weight-normed convolutions (training's): a bijection, the same outputs and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dac_jax.model.config import PRESETS, VAE_PRESETS
from dac_jax.model.dac import DAC, init_variables
from dac_jax.model.discriminator import Discriminator, DiscriminatorConfig, init_discriminator
from dac_jax.model.vae import DACVAE, init_vae_variables
from dac_jax.nn import layout
from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.init import numpy_init
from dac_jax.nn.layers import WNConv1d

D_CONFIG = DiscriminatorConfig(periods=(2, 3), fft_sizes=(256,), sample_rate=16000, width=0.25)


def _leaves(tree) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _names(tree) -> set[str]:
    return {p[-1].key for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _networks():
    """(module, torch-layout params, probe, apply kwargs, a loss of the params) for each network."""
    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.uniform(-0.3, 0.3, (2, 1, 3200)).astype(np.float32))
    dac = DAC(PRESETS["tiny-odd"])
    vae_config = VAE_PRESETS["vae-tiny"]
    vae = DACVAE(vae_config)
    d = Discriminator(D_CONFIG, channels_last=True)
    counts = jnp.array([3, 1])
    return [
        (dac, init_variables(dac.config, 1)["params"], jnp.zeros((1, 1, dac.config.hop_length)), {},
         lambda p: jnp.sum(dac.apply({"params": p}, audio, train=True, codebook_counts=counts).audio ** 2)),
        (vae, init_vae_variables(vae_config, 2)["params"], jnp.zeros((1, 1, vae_config.hop_length)),
         {"deterministic": True},
         lambda p: jnp.sum(vae.apply({"params": p}, audio, deterministic=True).audio ** 2)),
        (d, init_discriminator(D_CONFIG, 3)["params"], jnp.zeros((1, 1, 16000)), {},
         lambda p: sum(jnp.sum(f ** 2) for sub in d.apply({"params": p}, audio) for f in sub)),
    ]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["dac", "dac-vae", "discriminator"])
def test_the_conv_layout_is_a_bijection_with_the_same_outputs_and_gradients(which):
    module, params, probe, kwargs, loss = _networks()[which]
    converted = layout.to_conv_layout(module, params, probe, **kwargs)
    # every weight-normed convolution converted: no PyTorch-layout weight is left
    assert not {"weight_v", "weight_g"} & _names(converted) and layout.in_conv_layout(converted)
    assert not layout.in_conv_layout(params)
    again = _leaves(layout.to_conv_layout(module, converted, probe, **kwargs))  # already converted: unchanged
    assert again.keys() == _leaves(converted).keys()
    assert all(np.array_equal(again[k], v) for k, v in _leaves(converted).items())
    back = layout.to_torch_layout(module, converted, probe, **kwargs)
    ours, theirs = _leaves(back), _leaves(params)
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    # the same function of the same numbers, summed in another order: measured within 3e-6 of each
    # leaf's largest gradient entry, but 3.9e-5 for one Snake alpha of DAC-VAE (loss values within 4e-7)
    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    conv_value, conv_grads = jax.jit(jax.value_and_grad(loss))(converted)
    np.testing.assert_allclose(float(conv_value), float(value), rtol=4e-6)
    got = _leaves(layout.to_torch_layout(module, conv_grads, probe, **kwargs))
    for key, want in _leaves(grads).items():
        np.testing.assert_allclose(got[key], want, rtol=0, atol=4e-4 * float(np.abs(want).max()) + 1e-30, err_msg=key)


@pytest.mark.parametrize("geometry", [
    ConvGeometry(7, 1, dilation=3),
    ConvGeometry(8, 4, transposed=True),
    ConvGeometry(3, 1, dilation=2, transposed=True),
], ids=["dilated conv", "transposed", "dilated transposed"])
def test_one_convolution_in_either_layout(geometry):
    conv = WNConv1d(5, 6, geometry)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 40, 5)).astype(np.float32))
    params = numpy_init(conv, x, seed=2)["params"]
    converted = layout.to_conv_layout(conv, params, x)
    assert set(converted) == {"kernel_v", "kernel_g", "bias"}
    expected_g = (1, 5, 1) if geometry.transposed else (1, 1, 6)
    assert converted["kernel_g"].shape == expected_g  # the norm stays per input channel of a transposed conv
    ref = conv.apply({"params": params}, x)
    np.testing.assert_allclose(np.asarray(conv.apply({"params": converted}, x)), np.asarray(ref), rtol=0,
                               atol=1e-6 * float(jnp.abs(ref).max()))
    back = layout.to_torch_layout(conv, converted, x)
    for name in ("weight_v", "weight_g", "bias"):
        np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(params[name]))


def test_a_transposed_conv_without_a_bijective_polyphase_form_keeps_the_torch_layout():
    conv = WNConv1d(4, 3, ConvGeometry(7, 3, transposed=True))  # 7 taps, stride 3: zero-padded phases
    x = jnp.zeros((1, 5, 4))
    params = numpy_init(conv, x)["params"]
    assert not layout.convertible(conv)
    kept = layout.to_conv_layout(conv, params, x)
    assert set(kept) == {"weight_v", "weight_g", "bias"}
    assert all(np.array_equal(kept[k], params[k]) for k in kept)
