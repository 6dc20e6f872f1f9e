"""The opt-in precisions: float32 asked for everywhere, bfloat16 rounding that really rounds, tf32 refused off a GPU."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dac_jax
from dac_jax import runtime, stream
from dac_jax.errors import UsageError
from dac_jax.model.config import DACConfig
from dac_jax.model.dac import DAC
from dac_jax.nn import precision
from dac_jax.nn.geometry import ConvGeometry
from dac_jax.nn.layers import conv1d_folded

# wide enough that the decoder's kernel-7 convolutions run as Winograd (>= 64 channels), as on a CPU by default
WIDE = DACConfig(encoder_dim=32, encoder_rates=(2, 2), latent_dim=64, decoder_dim=128, decoder_rates=(2, 2),
                 n_codebooks=2, codebook_size=16, codebook_dim=4, sample_rate=16000)


def _round(x):
    return jnp.asarray(x, jnp.bfloat16).astype(jnp.float32)


@pytest.mark.parametrize("geometry", [
    ConvGeometry(7, padding=3), ConvGeometry(7, dilation=9, padding=27), ConvGeometry(8, stride=4, padding=2),
    ConvGeometry(8, stride=4, padding=2, transposed=True), ConvGeometry(1),
], ids=["k7", "dilated", "strided", "transposed", "k1"])
def test_a_bfloat16_kernel_rounds_its_input_and_sums_in_float32(geometry):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 50, 24)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((geometry.kernel, 24, 16)) / 10, jnp.float32)
    if geometry.transposed:  # the polyphase layout of dac_jax.nn.layers.fold_kernel
        kernel = jnp.asarray(rng.standard_normal((2, 24, 4 * 16)) / 10, jnp.float32)
    full = conv1d_folded(x, kernel, geometry, True)
    bf16 = conv1d_folded(x, kernel.astype(jnp.bfloat16), geometry, True)
    rounded = conv1d_folded(_round(x), _round(kernel), geometry, True)  # float32 on rounded operands
    assert bf16.dtype == jnp.float32 and bf16.shape == full.shape
    # the same products as float32 on bfloat16-rounded operands, summed in float32 (measured <= 1.2e-6)
    np.testing.assert_allclose(bf16, rounded, rtol=0, atol=1e-5)
    # and the rounding is real: bfloat16's 8 mantissa bits move the sums by ~1e-2 of their scale
    error = float(jnp.abs(bf16 - full).max() / jnp.abs(full).max())
    assert 1e-4 < error < 3e-2, error


def test_the_precision_is_asked_for_in_the_compiled_program():
    """What a GPU gets: float32 is Precision.HIGHEST in every convolution (JAX's default would let
    a GPU use TF32), tf32 is HIGH (TensorFloat-32); training's module (None) keeps JAX's default."""
    codec = dac_jax.init_model("tiny")
    audio = jnp.zeros((1, 1, 4 * codec.hop_length))
    expected = {None: "DEFAULT", "float32": "HIGHEST", "tf32": "HIGH"}
    for setting, name in expected.items():
        text = runtime.encode.lower(DAC(codec.config, precision=setting), codec.inference_variables, audio).as_text()
        convolutions = re.findall(r"stablehlo.convolution.*", text)
        assert len(convolutions) >= 20
        for line in convolutions:
            assert f"#stablehlo<precision {name}>" in line, (setting, line[:300])


def test_the_model_setting_refolds_recompiles_and_keeps_what_it_must():
    codec = dac_jax.Codec(WIDE, dac_jax.model.dac.init_variables(WIDE, seed=5))
    assert codec.precision == "float32" and codec.module.precision == "float32"
    audio = (0.3 * np.random.default_rng(2).standard_normal((2, 1, 1600))).astype(np.float32)
    codes = np.asarray(codec.encode(audio))
    decoded = np.asarray(codec.decode(codes))

    codec.precision = "bfloat16"
    assert codec.module.precision == codec.unpadded_module.precision == "bfloat16"
    kernels, others = [], []
    for path, leaf in jax.tree_util.tree_leaves_with_path(codec.inference_variables):
        (kernels if path[-1].key in precision.KERNEL_NAMES else others).append(leaf.dtype)
    assert kernels and set(kernels) == {np.dtype(jnp.bfloat16)}
    assert set(others) == {np.dtype(np.float32)}  # biases, Snake's alphas, the codebooks
    # direct convolutions only: Winograd's transforms would amplify bfloat16's rounding (13 % measured)
    assert codec.winograd is None and "winograd_kernel" not in str(jax.tree_util.tree_structure(codec.inference_variables))
    with pytest.raises(UsageError, match="winograd runs in float32 only"):
        codec.winograd = 4
    bf16_codes = np.asarray(codec.encode(audio))
    bf16_decoded = np.asarray(codec.decode(codes))
    # most codes hold (measured here: 97-98 % on 5 s clips of the trained demo model), the audio moves
    assert (bf16_codes == codes).mean() > 0.8
    error = np.abs(bf16_decoded - decoded).max() / np.abs(decoded).max()
    assert 1e-4 < error < 0.1, error

    codec.precision = "float32"  # back: the backend's default convolutions, the same numbers as before
    assert codec.winograd == runtime.default_winograd()
    np.testing.assert_array_equal(np.asarray(codec.encode(audio)), codes)
    np.testing.assert_array_equal(np.asarray(codec.decode(codes)), decoded)


def test_settings_that_cannot_run_are_refused():
    codec = dac_jax.init_model("tiny")
    with pytest.raises(UsageError, match="precision must be one of float32, tf32, bfloat16; got 'float16'"):
        codec.precision = "float16"
    if jax.default_backend() != "gpu":
        with pytest.raises(UsageError, match="precision tf32 needs an NVIDIA GPU's tensor cores; this backend is cpu"):
            codec.precision = "tf32"
    assert codec.precision == "float32"
    codec.precision = "bfloat16"
    with pytest.raises(UsageError, match="the checked fast encoder keeps float32's codes"):
        codec.fast_encoder = True
    codec.precision = "float32"
    codec.fast_encoder = True
    with pytest.raises(UsageError, match="turn fast_encoder off before choosing precision bfloat16"):
        codec.precision = "bfloat16"


def test_the_vae_runs_in_bfloat16_too():
    vae = dac_jax.init_vae("vae-tiny")
    audio = (0.3 * np.random.default_rng(3).standard_normal((1, 1, 4 * vae.hop_length))).astype(np.float32)
    z, _, _ = vae.encode(audio)
    decoded = np.asarray(vae.decode(z))
    vae.precision = "bfloat16"
    z16, _, _ = vae.encode(audio)
    decoded16 = np.asarray(vae.decode(z))
    for full, low in ((np.asarray(z), np.asarray(z16)), (decoded, decoded16)):
        error = np.abs(low - full).max() / np.abs(full).max()
        assert 1e-5 < error < 0.1, error


def test_streaming_runs_in_the_models_precision():
    codec = dac_jax.init_model("tiny")
    audio = (0.3 * np.random.default_rng(4).standard_normal((1, 1, 40 * codec.hop_length))).astype(np.float32)
    codes = np.asarray(codec.encode(audio))
    # float32: every convolution of a streaming step asks for full float32, as the model's apply does
    decoder = codec.stream_decoder()
    block = jnp.asarray(codes[:, :, :4])
    text = stream._compiled_step.lower(decoder.spec, codec.inference_variables, decoder.state, block).as_text()
    convolutions = re.findall(r"stablehlo.convolution.*", text)
    assert convolutions and all("#stablehlo<precision HIGHEST>" in line for line in convolutions)
    # bfloat16: the streams round as the whole-signal calls do (direct convolutions on both sides)
    codec.precision = "bfloat16"
    whole_codes, whole_audio = np.asarray(codec.encode(audio)), np.asarray(codec.decode(codes))
    encoder = codec.stream_encoder()
    pushed = [np.asarray(encoder.push(audio[:, :, i : i + 8 * codec.hop_length]))
              for i in range(0, audio.shape[-1], 8 * codec.hop_length)]
    np.testing.assert_array_equal(np.concatenate([*pushed, np.asarray(encoder.flush())], axis=-1), whole_codes)
    decoder = codec.stream_decoder()
    pushed = [np.asarray(decoder.push(codes[:, :, i : i + 5])) for i in range(0, codes.shape[-1], 5)]
    streamed = np.concatenate([*pushed, np.asarray(decoder.flush())], axis=-1)
    np.testing.assert_allclose(streamed, whole_audio, rtol=0, atol=1e-5)
