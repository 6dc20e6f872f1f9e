"""The training step and loop: losses fall, N devices equal one, resuming is exact."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from dac_jax.errors import UsageError
from dac_jax.train import state as St
from dac_jax.train.config import TrainConfig
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


def test_the_warmup_step_updates_the_discriminator_only(one_device):
    """``update_generator=False`` (the trainer's ``discriminator_warmup`` steps) leaves the generator
    and its optimiser state bit for bit and updates the discriminator as the full step does (same
    state, batch and keys: the discriminator's update comes before the generator's), to float
    rounding: the two executables are compiled apart (measured: params within 1.2e-6 of each other,
    against updates of 3e-3; Adam's moments within 4e-7 of each leaf's largest entry)."""
    mesh, config, full_step = one_device
    warmup_step = S.make_train_step(mesh, config, update_generator=False)
    start = jax.device_get(St.create_train_state(config, seed=0))
    audio = S.shard_batch(tiny.batch(4), mesh)
    warm, warm_metrics = warmup_step(S.replicate(start, mesh), audio)
    full, full_metrics = full_step(S.replicate(start, mesh), audio)
    warm, full = jax.device_get(warm), jax.device_get(full)
    jax.tree_util.tree_map(np.testing.assert_array_equal, warm.generator, start.generator)
    jax.tree_util.tree_map(np.testing.assert_array_equal, warm.opt_g, start.opt_g)
    jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=0, atol=1e-5),
                           warm.discriminator, full.discriminator)
    for a, b in zip(jax.tree_util.tree_leaves(warm.opt_d), jax.tree_util.tree_leaves(full.opt_d)):
        np.testing.assert_allclose(a, b, rtol=0, atol=4e-6 * float(np.abs(b).max()))
    assert not np.array_equal(jax.tree_util.tree_leaves(warm.discriminator)[0],
                              jax.tree_util.tree_leaves(start.discriminator)[0])
    assert not any(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(full.generator),
                                                         jax.tree_util.tree_leaves(start.generator)))
    assert int(warm.step) == 1 and float(warm_metrics["other/grad_norm"]) == 0.0
    assert float(full_metrics["other/grad_norm"]) > 0
    for name in ("mel/loss", "adv/disc_loss", "stft/loss"):
        assert float(warm_metrics[name]) == pytest.approx(float(full_metrics[name]), rel=1e-5), name


def test_the_trainer_runs_the_warmup_steps_first_and_then_the_full_ones(tmp_path):
    """A run with ``discriminator_warmup=2``: its checkpoint at step 2 holds the starting generator
    bit for bit and a trained discriminator; at step 3 the generator has moved. Resumed at step 2,
    the run compiles no warm-up step and ends where the uninterrupted run ends."""
    from dac_jax.train.checkpoint import Checkpoints
    from dac_jax.train.loop import fresh_state, train_and_evaluate

    groups = tiny.write_corpus(tmp_path / "data")
    config = TrainConfig(step=tiny.fast(), train_groups=groups, batch_size=2, duration=0.2, num_steps=3,
                         valid_every=0, sample_every=0, checkpoint_every=1, keep_checkpoints=3, save_steps=(),
                         discriminator_warmup=2)
    mesh = S.make_mesh(1)
    start = jax.device_get(fresh_state(config, mesh))
    end = jax.device_get(train_and_evaluate(config, tmp_path / "run"))
    checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
    at = {step: jax.device_get(checkpoints.restore(step, start)[0]) for step in (1, 2)}
    checkpoints.close()
    for step in (1, 2):
        jax.tree_util.tree_map(np.testing.assert_array_equal, at[step].generator, start.generator)
        assert not np.array_equal(jax.tree_util.tree_leaves(at[step].discriminator)[0],
                                  jax.tree_util.tree_leaves(start.discriminator)[0])
    assert not np.array_equal(jax.tree_util.tree_leaves(end.generator)[0], jax.tree_util.tree_leaves(start.generator)[0])
    # a run resumed past the warm-up continues with full steps only
    import shutil

    shutil.rmtree(tmp_path / "run" / "checkpoints" / "3")
    resumed = jax.device_get(train_and_evaluate(config, tmp_path / "run"))
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.generator, end.generator)


def test_discriminator_warmup_is_refused_when_negative():
    with pytest.raises(UsageError, match="discriminator_warmup"):
        TrainConfig(step=tiny.STEP, discriminator_warmup=-1)


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


@pytest.mark.parametrize("model", ["dac", "vae"])
def test_the_winograd_step_trains_as_the_direct_one_to_float_rounding(model):
    """``StepConfig.winograd = 4`` (the trainer's default on a CPU) runs the generator's kernel-7
    convolutions as Winograd F(4, 7) forward and backward; one step from the same state gives the
    direct step's losses and parameters to float rounding. Measured, against updates of ~1e-3 (the
    learning rate): every parameter within 1.1e-6 of the direct step's but one entry, 4.2e-5 off,
    where Adam's first step (``lr * g / |g|``) amplifies rounding in a gradient entry near zero."""
    import dataclasses

    config = tiny.fast(tiny.STEP if model == "dac" else tiny.VAE_STEP)
    mesh = S.make_mesh(1)
    fast = dataclasses.replace(config, winograd=4, winograd_min_channels=8)
    start = jax.device_get(St.create_train_state(config, seed=0))
    audio = S.shard_batch(tiny.batch(4), mesh)
    direct, direct_metrics = S.make_train_step(mesh, config)(S.replicate(start, mesh), audio)
    ours, ours_metrics = S.make_train_step(mesh, fast)(S.replicate(start, mesh), audio)
    direct, ours = jax.device_get(direct), jax.device_get(ours)
    moved = 0
    for a, b, s in zip(jax.tree_util.tree_leaves(ours.generator), jax.tree_util.tree_leaves(direct.generator),
                       jax.tree_util.tree_leaves(start.generator)):
        difference = np.abs(a - b)
        assert difference.max() <= 1e-4 and np.mean(difference > 1e-5) <= 5e-3
        moved += not np.array_equal(b, s)
    assert moved == len(jax.tree_util.tree_leaves(start.generator))
    for name in ("mel/loss", "adv/gen_loss", "adv/feat_loss", "other/grad_norm"):
        assert float(ours_metrics[name]) == pytest.approx(float(direct_metrics[name]), rel=1e-4), name


def test_a_bad_winograd_tile_is_refused():
    import dataclasses

    with pytest.raises(UsageError, match="winograd must be one of"):
        dataclasses.replace(tiny.STEP, winograd=3)
