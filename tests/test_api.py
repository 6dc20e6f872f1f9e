"""The scripting facade: encode / decode on channels-first arrays, compiled once per shape."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dac_jax
from dac_jax import runtime
from dac_jax.model.dac import DAC
from tests import reference


@pytest.fixture(scope="module")
def pair(reference_dir):
    path = reference.reference_checkpoint("tiny-odd", reference_dir, seed=1)
    return reference.load_torch(path), dac_jax.load_model(path)


def test_encode_decode_match_the_original_and_the_forward_pass(pair):
    import torch

    torch_model, codec = pair
    audio = reference.test_signals(16000, lengths=(0.3, 0.2))["speech"]  # 4800 samples: not a hop multiple
    codes = codec.encode(audio)
    assert codes.dtype == jnp.int32 and codes.shape == (2, 3, int(np.ceil(4800 / codec.hop_length)))
    x = torch_model.preprocess(torch.from_numpy(audio), 16000)
    with torch.no_grad():
        _, ref_codes, _, _, _ = torch_model.encode(x)
        ref_audio = torch_model.decode(torch_model.quantizer.from_codes(ref_codes)[0]).numpy()
    np.testing.assert_array_equal(codes, ref_codes.numpy())
    decoded = codec.decode(codes)
    # the original's stride-5 quirk: 5 * L - 1 samples, then x2 -> hop * frames - 2
    assert decoded.shape == ref_audio.shape == (2, 1, codec.hop_length * codes.shape[-1] - 2)
    np.testing.assert_allclose(decoded, ref_audio, atol=1e-5)
    np.testing.assert_allclose(codec(audio).audio, decoded[..., :4800], atol=1e-6)


def test_n_quantizers(pair):
    _, codec = pair
    audio = reference.test_signals(16000, lengths=(0.2,))["noise"]
    full = codec.encode(audio)
    for n in (1, 2):
        np.testing.assert_array_equal(codec.encode(audio, n_quantizers=n), full[:, :n])
    assert codec.decode(full[:, :1]).shape == codec.decode(full).shape
    with pytest.raises(dac_jax.UsageError, match=r"n_quantizers must be a whole number 1..3 for this model; got 4"):
        codec.encode(audio, n_quantizers=4)


def test_compiles_once_per_shape(pair):
    _, codec = pair
    a = np.zeros((1, 1, 1000), np.float32)
    b = np.ones((1, 1, 2000), np.float32) * 0.1
    before = runtime.trace_counts["encode"]
    codec.encode(a)
    codec.encode(a + 0.5)
    codec.encode(np.asarray(a))
    assert runtime.trace_counts["encode"] == before + 1
    codec.encode(b)
    codec.encode(b * 2)
    assert runtime.trace_counts["encode"] == before + 2
    codes = codec.encode(a)
    before = runtime.trace_counts["decode"]
    codec.decode(codes)
    codec.decode(np.asarray(codes)[:, :, ::-1].copy())
    assert runtime.trace_counts["decode"] == before + 1


def test_bad_inputs_are_named(pair):
    _, codec = pair
    with pytest.raises(dac_jax.AudioError, match=r"\[batch, 1, samples\] at 16000 Hz.*got shape \(100,\)"):
        codec.encode(np.zeros(100, np.float32))
    with pytest.raises(dac_jax.AudioError, match=r"got shape \(1, 2, 100\)"):
        codec.encode(np.zeros((1, 2, 100), np.float32))
    with pytest.raises(dac_jax.AudioError, match="floating point"):
        codec.encode(np.zeros((1, 1, 100), np.int16))
    with pytest.raises(dac_jax.UsageError, match=r"codes must be in 0..31; found 0..32"):
        codec.decode(np.array([[[0, 32]]]))
    with pytest.raises(dac_jax.UsageError, match=r"codes must be \[batch, n \(1..3\), frames\]"):
        codec.decode(np.zeros((1, 4, 5), np.int32))


def test_pure_pieces_are_exposed(pair):
    _, codec = pair
    audio = jnp.asarray(reference.test_signals(16000, lengths=(0.2,))["sweep"])
    out = jax.jit(codec.module.apply)(codec.variables, audio)
    np.testing.assert_array_equal(out.codes, codec.encode(audio))
    # the unpadded module shares the parameter tree
    long = jnp.pad(audio, ((0, 0), (0, 0), (codec.delay, codec.delay)))
    unpadded = jax.jit(lambda v, a: codec.unpadded_module.apply(v, a, method=DAC.encode))(codec.variables, long)
    assert unpadded.codes.shape[1] == codec.n_codebooks
    # gradients flow through the facade's pieces
    grad = jax.jit(jax.grad(lambda v: jnp.mean(codec.module.apply(v, audio).audio ** 2)))(codec.variables)
    assert np.isfinite(np.asarray(grad["params"]["encoder"]["block_0"]["weight_v"])).all()
    assert codec.sample_rate == 16000 and codec.hop_length == 10 and codec.config.n_codebooks == 3


def test_init_model_presets():
    codec = dac_jax.init_model("tiny", seed=0)
    again = dac_jax.init_model("tiny", seed=0)
    jax.tree_util.tree_map(np.testing.assert_array_equal, codec.variables, again.variables)
    with pytest.raises(dac_jax.UsageError, match="unknown model type 'nope'"):
        dac_jax.init_model("nope")
