"""The training state holds its convolutions in the conv layout; checkpoints of either layout resume,
and a run's generator reads back in PyTorch's layouts."""

from __future__ import annotations

import jax
import numpy as np

from dac_jax.model.dac import init_variables
from dac_jax.model.discriminator import init_discriminator
from dac_jax.nn import layout
from dac_jax.train import loop
from dac_jax.train import step as S
from dac_jax.train import state as St
from dac_jax.train.checkpoint import Checkpoints, read_run_generator
from dac_jax.train.config import TrainConfig

from . import tiny


def _flat(tree) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _assert_equal(a, b) -> None:
    a, b = _flat(a), _flat(b)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _trained_state(config: TrainConfig, mesh):
    """A state two steps in, so that the optimiser moments are not zero."""
    state = loop.fresh_state(config, mesh)
    train_step = S.make_train_step(mesh, config.step)
    for seed in (0, 1):
        state, _ = train_step(state, S.shard_batch(tiny.batch(2, seed=seed), mesh))
    return state


def test_the_state_is_the_initial_networks_in_the_conv_layout():
    config = tiny.STEP
    state = St.create_train_state(config, seed=4)
    for tree in (state.generator, state.discriminator, state.opt_g, state.opt_d):
        assert layout.in_conv_layout(tree)
    back = St.to_torch_layout(config, state)
    assert not layout.in_conv_layout((back.generator, back.discriminator, back.opt_g, back.opt_d))
    _assert_equal(back.generator, init_variables(config.model, 4)["params"])
    _assert_equal(back.discriminator, init_discriminator(config.discriminator, 5)["params"])


def test_a_checkpoint_of_either_layout_resumes_the_same_state(tmp_path):
    config = TrainConfig(step=tiny.fast(), batch_size=2, seed=0)
    mesh = S.make_mesh(1)
    state = _trained_state(config, mesh)
    expected = jax.device_get(state)
    fresh = loop.fresh_state(config, mesh)
    # a checkpoint written by this version, and one written before the conv layout (PyTorch's)
    for name, saved in (("conv", state), ("torch", St.to_torch_layout(config.step, state))):
        checkpoints = Checkpoints(tmp_path / name)
        checkpoints.save(2, saved, loop.checkpoint_record(config, 2))
        assert layout.in_conv_layout(checkpoints.saved_tree(2)["generator"]) == (name == "conv")
        resumed = loop.restore_or_init(checkpoints, config, fresh)
        checkpoints.close()
        _assert_equal(jax.device_get(resumed), expected)
        # the resumed state is placed like a fresh one, and the step runs on it
        assert jax.tree_util.tree_leaves(resumed)[0].sharding == jax.tree_util.tree_leaves(fresh)[0].sharding


def test_a_runs_generator_reads_back_in_the_torch_layout(tmp_path):
    config = TrainConfig(step=tiny.fast(), batch_size=2, seed=0)
    mesh = S.make_mesh(1)
    state = _trained_state(config, mesh)
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    checkpoints.save(2, state, loop.checkpoint_record(config, 2))
    checkpoints.close()
    run = read_run_generator(tmp_path, "latest")
    assert not layout.in_conv_layout(run.params)
    _assert_equal(run.params, St.to_torch_layout(config.step, jax.device_get(state)).generator)
