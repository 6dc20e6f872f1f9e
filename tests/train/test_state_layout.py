"""The training state holds its convolutions in the conv layout; checkpoints of either layout resume,
and a run's generator reads back in PyTorch's layouts."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import jax
import numpy as np
import pytest

from dac_jax import load_model
from dac_jax.cli.train import fine_tune_weights
from dac_jax.errors import UsageError, WeightsError

from dac_jax.model.dac import init_variables
from dac_jax.model.discriminator import init_discriminator
from dac_jax.nn import layout
from dac_jax.train import loop
from dac_jax.train import step as S
from dac_jax.train import state as St
from dac_jax.train.checkpoint import Checkpoints, read_run_discriminator, read_run_generator
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


def test_a_runs_discriminator_converts_to_a_folder_that_fine_tuning_reads(tmp_path):
    """``convert RUN OUT --discriminator`` (a real invocation) writes the run's discriminator, in
    PyTorch's layouts and at its width (0.25: no original-format file can hold it); ``train.py
    --discriminator_weights OUT`` starts from exactly it; a codec loader refuses the folder."""
    config = TrainConfig(step=tiny.fast(), batch_size=2, seed=0)
    mesh = S.make_mesh(1)
    state = _trained_state(config, mesh)
    checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
    checkpoints.save(2, state, loop.checkpoint_record(config, 2))
    checkpoints.close()
    expected = St.to_torch_layout(config.step, jax.device_get(state)).discriminator

    found = read_run_discriminator(tmp_path / "run", "latest")
    assert found.config == config.step.discriminator and found.step == 2
    _assert_equal(found.params, expected)

    out = tmp_path / "disc"
    res = subprocess.run([sys.executable, "-m", "dac_jax", "convert", str(tmp_path / "run"), str(out), "--discriminator"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "step 2" in res.stdout and "width 0.25" in res.stdout
    generator, discriminator = fine_tune_weights(config, None, str(out))
    assert generator is None
    _assert_equal(discriminator, expected)
    with pytest.raises(UsageError, match="not the configured one"):
        other = dataclasses.replace(config.step, discriminator=dataclasses.replace(config.step.discriminator, width=0.5))
        fine_tune_weights(dataclasses.replace(config, step=other), None, str(out))
    with pytest.raises(WeightsError, match="discriminator, not a codec"):
        load_model(out)
    # not a run: one line, nothing written
    res = subprocess.run([sys.executable, "-m", "dac_jax", "convert", str(out), str(tmp_path / "again"), "--discriminator"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "reads a train.py run" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "again").exists()
