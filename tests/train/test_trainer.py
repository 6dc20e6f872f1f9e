"""The training step and loop: losses fall, N devices equal one, resuming is exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from dac_jax.train import state as St
from dac_jax.train import step as S
from tests.train import tiny

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def one_device():
    mesh = S.make_mesh(1)
    config = tiny.fast(lr=3e-3)
    return mesh, config, S.make_train_step(mesh, config)


def test_losses_fall_on_a_fixed_batch(one_device):
    mesh, config, train_step = one_device
    state = S.replicate(St.create_train_state(config, seed=0), mesh)
    audio = S.shard_batch(tiny.batch(4), mesh)
    history = []
    for _ in range(18):
        state, metrics = train_step(state, audio)
        history.append(jax.device_get(metrics))
    assert int(state.step) == 18 and int(state.bad_step) == -1
    # each step draws new phase shifts and quantizer dropout: compare the first and last 3 steps
    first = {k: np.mean([m[k] for m in history[:3]]) for k in history[0]}
    last = {k: np.mean([m[k] for m in history[-3:]]) for k in history[0]}
    assert last["mel/loss"] < 0.85 * first["mel/loss"], (first["mel/loss"], last["mel/loss"])
    assert last["loss"] < 0.9 * first["loss"], (first["loss"], last["loss"])
    assert last["adv/disc_loss"] < first["adv/disc_loss"]  # the discriminator learns too
    assert history[0]["other/learning_rate"] == pytest.approx(3e-3)
    assert all(np.isfinite(v) for m in history for v in m.values())


def test_a_non_finite_step_changes_nothing_and_is_recorded(one_device):
    mesh, config, train_step = one_device
    state = S.replicate(St.create_train_state(config, seed=0), mesh)
    good = tiny.batch(4)
    state, _ = train_step(state, S.shard_batch(good, mesh))
    before = jax.device_get(state)
    bad = good.copy()
    bad[2, 0, 100] = np.nan
    state, metrics = train_step(state, S.shard_batch(bad, mesh))
    after = jax.device_get(state)
    assert int(after.bad_step) == 1 and int(after.step) == 1
    assert not np.isfinite(float(metrics["loss"]))
    jax.tree_util.tree_map(np.testing.assert_array_equal, after.generator, before.generator)
    jax.tree_util.tree_map(np.testing.assert_array_equal, after.opt_d, before.opt_d)
    state, _ = train_step(state, S.shard_batch(good, mesh))  # later steps are no-ops too
    assert int(state.step) == 1 and int(state.bad_step) == 1


def test_stride_5_decoders_train_on_whole_frames():
    """The 16/24 kHz decoders return 8 samples (here 2) short of whole frames; the step compares
    the overlap instead of failing on the mismatch."""
    import dataclasses

    from dac_jax.model.config import PRESETS

    config = dataclasses.replace(tiny.fast(), model=PRESETS["tiny-odd"])
    mesh = S.make_mesh(1)
    audio = tiny.batch(2)  # 3200 samples: whole frames of the 10-sample hop
    assert audio.shape[-1] % config.model.hop_length == 0
    state = S.replicate(St.create_train_state(config, seed=0), mesh)
    state, metrics = S.make_train_step(mesh, config)(state, S.shard_batch(audio, mesh))
    assert int(state.step) == 1 and int(state.bad_step) == -1
    assert all(np.isfinite(float(v)) for v in jax.device_get(metrics).values())
    scores = jax.device_get(S.make_eval_step(mesh, config)(state.generator, S.shard_batch(audio, mesh)))
    assert all(np.isfinite(float(v)) for v in scores.values())
    from dac_jax.model.dac import DAC

    recons = jax.eval_shape(lambda g, a: DAC(config.model).apply({"params": g}, a).audio, state.generator, audio)
    assert recons.shape[-1] == audio.shape[-1] - 2  # the quirk really is there


@pytest.mark.slow
def test_two_devices_give_the_parameters_of_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-m", "tests.train.multidevice_check", "3"], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["steps"] == [3, 3] and out["bad"] == [-1, -1]
    assert out["max_update"] > 1e-3  # the steps did move the parameters
    assert out["metric_max_rel_diff"] < 1e-5, out  # every loss and gradient norm of every step
    assert out["param_diff_over_update"] < 1e-2, out  # see multidevice_check's docstring
