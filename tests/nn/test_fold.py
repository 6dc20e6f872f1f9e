"""Inference folding: the folded variables give the outputs of the trainable ones, in both modes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import dac_jax
from dac_jax import runtime
from dac_jax.nn.fold import fold_variables
from dac_jax.nn.layers import FOLDED


def _leaf_names(tree) -> set[str]:
    return {path[-1].key for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_folding_replaces_every_weight_norm_and_keeps_the_rest():
    codec = dac_jax.init_model("tiny", seed=3)
    folded = codec.inference_variables
    assert "weight_v" not in _leaf_names(folded["params"]) and "weight_g" not in _leaf_names(folded["params"])
    assert _leaf_names(folded["params"]) == {"alpha", "weight"}  # Snake alphas and codebooks stay
    n_convs = sum(1 for path, _ in jax.tree_util.tree_flatten_with_path(codec.variables)[0] if path[-1].key == "weight_v")
    kernels = [p for p, _ in jax.tree_util.tree_flatten_with_path(folded[FOLDED])[0] if p[-1].key == "kernel"]
    assert len(kernels) == n_convs
    # folding is idempotent and computed once per assignment of the variables
    assert fold_variables(codec.module, folded, jnp.zeros((1, 1, 64))) is folded
    assert codec.inference_variables is folded
    codec.variables = codec.variables
    assert codec.inference_variables is not folded


def test_folded_outputs_equal_the_trainable_parametrisation():
    codec = dac_jax.init_model("tiny", seed=1)
    audio = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 1, 3000)).astype(np.float32))
    for module in (codec.module, codec.unpadded_module):
        ref = runtime.encode(module, codec.variables, audio, None)
        got = runtime.encode(module, codec.inference_variables, audio, None)
        np.testing.assert_array_equal(np.asarray(got.codes), np.asarray(ref.codes))
        # measured 1.2e-7 relative to the largest |z|; the audio below 4.3e-7
        np.testing.assert_allclose(np.asarray(got.z), np.asarray(ref.z), rtol=0, atol=2e-6 * float(jnp.abs(ref.z).max()))
        ref_audio = runtime.decode(module, codec.variables, ref.codes)
        got_audio = runtime.decode(module, codec.inference_variables, ref.codes)
        assert float(jnp.abs(got_audio - ref_audio).max()) < 1e-5
    # the facade runs the folded variables: same as applying the module to the trainable ones
    out = codec(audio)
    ref = jax.jit(codec.module.apply)(codec.variables, audio)
    assert float(jnp.abs(out.audio - ref.audio).max()) < 1e-5
