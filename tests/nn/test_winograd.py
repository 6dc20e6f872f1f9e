"""The opt-in Winograd F(m, 7) convolutions: exact transforms, equal to XLA's convolution, in the model."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import dac_jax
from dac_jax import runtime
from dac_jax.errors import UsageError
from dac_jax.model.config import DACConfig
from dac_jax.nn import winograd
from dac_jax.nn.fold import fold_variables

# channels 32 .. 128: kernel-7, stride-1 convolutions on each side of the 64-channel threshold of the
# opt-in (dac_jax.nn.fold), and the one-channel ends
WIDE = DACConfig(encoder_dim=32, encoder_rates=(2, 2), latent_dim=64, decoder_dim=128, decoder_rates=(2, 2),
                 n_codebooks=2, codebook_size=16, codebook_dim=4, sample_rate=16000)


@pytest.mark.parametrize("m", [2, 4])
def test_transforms_compute_the_correlation_exactly_in_float64(m):
    a_t, g, b_t = winograd.transforms(m)
    assert a_t.shape == (m, m + 6) and g.shape == (m + 6, 7) and b_t.shape == (m + 6, m + 6)
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, k = rng.standard_normal(m + 6), rng.standard_normal(7)
        direct = np.array([d[i : i + 7] @ k for i in range(m)])
        np.testing.assert_allclose(a_t @ ((g @ k) * (b_t @ d)), direct, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m, tolerance", [(2, 2e-6), (4, 2e-5)])
@pytest.mark.parametrize("dilation, padding, length", [(1, (3, 3), 101), (3, (9, 9), 64), (9, (27, 27), 300), (3, (0, 0), 77),
                                                      (3, (0, 0), 19), (3, (0, 0), 18), (3, (0, 0), 10)])
def test_conv1d_equals_xlas_dilated_convolution(m, tolerance, dilation, padding, length):
    rng = np.random.default_rng(dilation)
    x = jnp.asarray(rng.standard_normal((2, length, 24)), jnp.float32)
    kernel = (rng.standard_normal((7, 24, 16)) / 10).astype(np.float32)
    direct = lax.conv_general_dilated(x, kernel, (1,), [padding], rhs_dilation=(dilation,),
                                      dimension_numbers=("NWC", "WIO", "NWC"), precision=lax.Precision.HIGHEST)
    ours = winograd.conv1d(x, jnp.asarray(winograd.transform_kernel(kernel, m)), m, dilation, padding)
    assert ours.shape == direct.shape
    scale = float(jnp.max(jnp.abs(direct), initial=0.0))  # inputs shorter than the kernel: no outputs
    assert float(jnp.max(jnp.abs(ours - direct), initial=0.0)) <= tolerance * scale


def test_folded_winograd_variables_run_the_model_within_float_rounding():
    codec = dac_jax.init_model("tiny", seed=2)
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 1, 1600)).astype(np.float32)
    probe = jnp.zeros((1, 1, codec.hop_length), jnp.float32)
    direct = runtime.forward(codec.module, codec.inference_variables, audio, None)
    folded = fold_variables(codec.module, codec.variables, probe, winograd=4, winograd_min_channels=1)
    n_winograd = sum(1 for path in _paths(folded["folded"]) if path[-1] == "winograd_kernel")
    assert n_winograd == 15  # 3 per residual block (2 + 2 blocks), the first encoder conv, the decoder's first and last
    out = runtime.forward(codec.module, folded, audio, None)
    assert float(np.mean(np.asarray(out.codes) == np.asarray(direct.codes))) >= 0.99
    np.testing.assert_allclose(out.z, direct.z, atol=1e-6 * float(np.max(np.abs(direct.z))))  # measured 6.2e-8


def test_the_facade_setting_refolds_and_checks_its_value():
    codec = dac_jax.init_model(WIDE, seed=1)
    assert codec.winograd == 4 == runtime.default_winograd()  # the tests run on a CPU
    assert "winograd_kernel" in str(_paths(codec.inference_variables["folded"]))
    codec.winograd = None
    audio = np.random.default_rng(1).uniform(-0.5, 0.5, (1, 1, 2000)).astype(np.float32)
    direct_variables = codec.inference_variables
    assert codec.winograd is None and "winograd_kernel" not in str(_paths(direct_variables["folded"]))
    direct = codec(audio)
    codec.winograd = 2
    refolded = codec.inference_variables
    assert codec.winograd == 2 and refolded is not direct_variables
    # the decoder's only: the encoder stays direct, so its codes are the direct path's
    assert sum(path[-1] == "winograd_kernel" for path in _paths(refolded["folded"])) == 4
    assert all(path[0] == "decoder" for path in _paths(refolded["folded"]) if path[-1] == "winograd_kernel")
    out = codec(audio)
    # the Winograd convolutions really run: other float32 roundings, the same outputs within them
    assert not np.array_equal(np.asarray(out.audio), np.asarray(direct.audio))
    np.testing.assert_array_equal(out.codes, direct.codes)
    np.testing.assert_array_equal(codec.encode(audio), direct.codes)
    np.testing.assert_allclose(out.audio, direct.audio, rtol=0, atol=2e-5 * float(np.max(np.abs(direct.audio))))
    # back off: direct kernels again, the direct outputs bit for bit
    codec.winograd = None
    assert "winograd_kernel" not in str(_paths(codec.inference_variables["folded"]))
    np.testing.assert_array_equal(codec(audio).audio, direct.audio)
    with pytest.raises(UsageError, match="winograd must be one of"):
        codec.winograd = 3
    assert codec.winograd is None


def test_winograd_takes_every_kernel_7_convolution_with_64_channels_on_both_sides():
    codec = dac_jax.init_model(WIDE, seed=0)
    codec.winograd = None
    direct = dict(_leaves(codec.inference_variables["folded"]))
    expected = {path[:-1] for path, k in direct.items()
                if path[-1] == "kernel" and k.shape[0] == 7 and min(k.shape[1:]) >= 64}
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 1, 4000)).astype(np.float32)
    codes = codec.encode(audio)
    reference = np.asarray(codec.decode(codes))
    codec.winograd = 4
    chosen = {path[:-1] for path, _ in _leaves(codec.inference_variables["folded"]) if path[-1] == "winograd_kernel"}
    assert chosen == {p for p in expected if p[0] == "decoder"} and len(chosen) == 4  # the decoder's first conv and block
    np.testing.assert_allclose(codec.decode(codes), reference, atol=2e-5 * np.abs(reference).max())
    # with the checked fast encoder, the encoder's 64-channel block too (3 convolutions)
    chosen = {path[:-1] for path, _ in _leaves(codec.fast_encoder_variables["folded"]) if path[-1] == "winograd_kernel"}
    assert chosen == expected and len(expected) == 7


def _leaves(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _paths(tree):
    return [path for path, _ in _leaves(tree)]


@pytest.mark.parametrize("m, tolerance", [(2, 3e-5), (4, 1e-4)])
@pytest.mark.parametrize("dilation, padding, length", [(1, (3, 3), 50), (3, (9, 9), 37), (9, (27, 27), 101),
                                                      (9, (27, 27), 20), (1, (0, 0), 40), (3, (0, 0), 64)])
def test_trainable_conv1d_has_the_direct_convolutions_gradients(m, tolerance, dilation, padding, length):
    """The written-out backward pass (input and kernel gradients) equals autodiff of XLA's direct
    convolution to float rounding (measured: within 2.6e-6 of the largest entry for F(2, 7),
    1.1e-5 for F(4, 7))."""
    import jax

    rng = np.random.default_rng(length)
    x = jnp.asarray(rng.standard_normal((2, length, 5)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((7, 5, 6)) * 0.3, jnp.float32)

    def direct(x, k):
        return lax.conv_general_dilated(x, k, (1,), [padding], rhs_dilation=(dilation,),
                                        dimension_numbers=("NWC", "WIO", "NWC"), precision=lax.Precision.HIGHEST)

    y0, pull0 = jax.vjp(direct, x, kernel)
    y1, pull1 = jax.vjp(lambda x, k: winograd.trainable_conv1d(x, k, m, dilation, padding), x, kernel)
    grad = jnp.asarray(rng.standard_normal(y0.shape), jnp.float32)
    for ours, reference in zip((y1, *pull1(grad)), (y0, *pull0(grad))):
        assert ours.shape == reference.shape
        assert float(jnp.max(jnp.abs(ours - reference))) <= tolerance * float(jnp.max(jnp.abs(reference)))


def test_the_training_choice_applies_to_wide_kernel_7_convolutions_only():
    """Inside ``in_training`` a 7-tap stride-1 convolution of at least ``min_channels`` channels
    runs as Winograd; the rest stay direct; outside, nothing does; a bad tile is refused."""
    from dac_jax.nn.geometry import ConvGeometry

    wide, narrow = jnp.zeros((7, 64, 32)), jnp.zeros((7, 16, 32))
    with winograd.in_training(4, 32):
        assert winograd.training_tile(ConvGeometry(7, dilation=3, padding=9), wide) == 4
        assert winograd.training_tile(ConvGeometry(7, dilation=3, padding=9), narrow) is None
        assert winograd.training_tile(ConvGeometry(4, stride=2, padding=1), jnp.zeros((4, 64, 64))) is None
        assert winograd.training_tile(ConvGeometry(1), jnp.zeros((1, 64, 64))) is None
    assert winograd.training_tile(ConvGeometry(7, padding=3), wide) is None
    with pytest.raises(ValueError, match="Winograd tile 3"):
        with winograd.in_training(3, 32):
            pass
