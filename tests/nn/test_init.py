"""Fast numpy initialisation (dac_jax.nn.init) draws what the Flax initialisers and the original draw."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from dac_jax.model.config import PRESETS
from dac_jax.model.dac import DAC, init_variables
from dac_jax.weights.torch_format import variables_to_state_dict


def _kind(x: np.ndarray) -> str:
    if np.all(x == 0):
        return "zeros"
    if np.all(x == 1):
        return "ones"
    return "random"


def _check_same_distribution(name: str, ours: np.ndarray, theirs: np.ndarray, bound: float | None) -> None:
    assert ours.shape == theirs.shape, name
    assert _kind(ours) == _kind(theirs), name
    if _kind(ours) != "random" or ours.size < 64:
        return
    if bound is not None:  # U(-bound, bound): the same support, and a spread that fills it
        assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound, name
        # n uniform draws all stay below q * bound with probability q ** n: 1e-6 at this q
        q = 1e-6 ** (1 / ours.size)
        assert np.abs(ours).max() > q * bound and np.abs(theirs).max() > q * bound, name
    # two standard deviations of n samples each: their ratio has a relative spread of about
    # sqrt(1 / n) (sqrt(1 / 2n) each); 5 of those, so that dozens of small tensors do not fail by chance
    np.testing.assert_allclose(ours.std(), theirs.std(), rtol=max(0.1, 5 / np.sqrt(ours.size)), err_msg=name)
    assert abs(ours.mean()) < 4 * theirs.std() / np.sqrt(ours.size), name


def test_numpy_init_draws_the_flax_initialisers_distributions():
    config = PRESETS["tiny-odd"]
    audio = jnp.zeros((1, 1, config.hop_length), jnp.float32)
    key = jax.random.key(3, impl="unsafe_rbg")  # threefry's initialisers take 3x longer to compile
    flax_vars = traverse_util.flatten_dict(jax.jit(DAC(config).init)(key, audio))
    ours = traverse_util.flatten_dict(init_variables(config, seed=3))
    assert ours.keys() == flax_vars.keys()
    for path, value in ours.items():
        theirs = np.asarray(flax_vars[path])
        assert isinstance(value, np.ndarray) and value.dtype == np.float32
        bound = None
        if path[-1] in ("weight_v", "bias"):
            v = flax_vars[path[:-1] + ("weight_v",)]
            bound = 1 / np.sqrt(v.shape[1] * v.shape[2])
        _check_same_distribution("/".join(path), value, theirs, bound)
        if path[-1] == "weight_g":  # g = ||v|| per output channel (per input channel, transposed)
            v = ours[path[:-1] + ("weight_v",)]
            np.testing.assert_allclose(value[:, 0, 0], np.sqrt((v**2).sum(axis=(1, 2))), rtol=1e-6)


def test_numpy_init_is_the_originals_init(reference_dir):
    """Every tensor of the original's freshly built model (its own init_weights, conv biases
    zeroed, transposed biases at torch's default) has our initial distribution."""
    import dac

    import torch

    config = PRESETS["tiny-odd"]
    torch.manual_seed(0)  # the original draws from torch's global generator: the same draw every run
    theirs = {k: v.numpy() for k, v in dac.DAC(**config.to_kwargs()).state_dict().items()}
    ours = variables_to_state_dict(init_variables(config, seed=0))
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        module, leaf = key.rsplit(".", 1)
        bound = None
        if leaf in ("weight_v", "bias") and f"{module}.weight_v" in theirs:
            v = theirs[f"{module}.weight_v"]
            bound = 1 / np.sqrt(v.shape[1] * v.shape[2])
        _check_same_distribution(key, np.asarray(value), theirs[key], bound)


def test_same_seed_same_weights_and_seeds_differ():
    a = traverse_util.flatten_dict(init_variables(PRESETS["tiny"], seed=0))
    b = traverse_util.flatten_dict(init_variables(PRESETS["tiny"], seed=0))
    c = traverse_util.flatten_dict(init_variables(PRESETS["tiny"], seed=1))
    for path in a:
        np.testing.assert_array_equal(a[path], b[path])
    v = ("params", "encoder", "block_0", "weight_v")
    assert not np.array_equal(a[v], c[v])
