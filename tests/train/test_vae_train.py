"""DAC-VAE through the DAC trainer: the KL weight schedule, a tiny VAE learning, deterministic
validation, the non-finite stop naming the KL term, checkpoints of its state, the recipe config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from dac_jax.cli.train import fine_tune_weights
from dac_jax.train import loop as L
from dac_jax.train import state as St
from dac_jax.train import step as S
from dac_jax.train.checkpoint import Checkpoints
from dac_jax.train.losses import KLSchedule, kl_weight
from tests.requires import require_reference
from tests.train import tiny

ROOT = Path(__file__).resolve().parents[2]


def test_kl_weight_holds_then_follows_a_half_cosine():
    schedule = KLSchedule(start=1.0, final=0.1, hold_steps=200_000, end_step=500_000)
    weight = lambda t: float(kl_weight(t, schedule))  # noqa: E731
    assert weight(0) == weight(100_000) == weight(200_000) == 1.0
    assert weight(350_000) == pytest.approx(0.55, rel=1e-6)  # half way: the mean of the two
    assert weight(275_000) == pytest.approx(0.1 + 0.9 * (1 + np.cos(np.pi / 4)) / 2, rel=1e-6)
    assert weight(500_000) == weight(600_000) == np.float32(0.1)  # exactly the final weight
    steps = np.arange(200_000, 500_001, 5_000)
    assert np.all(np.diff([weight(t) for t in steps]) < 0)
    # the original's configx2 recipe: kl/loss 0.1 and a final 0.1, so 0.1 throughout
    assert all(float(kl_weight(t, KLSchedule())) == np.float32(0.1) for t in (0, 300_000, 500_000))


@pytest.fixture(scope="module")
def vae():
    mesh = S.make_mesh(1)
    config = tiny.fast(tiny.VAE_STEP, lr=3e-3)
    return mesh, config, S.make_train_step(mesh, config)


def test_a_tiny_vae_learns_on_a_fixed_batch(vae):
    mesh, config, train_step = vae
    state = S.replicate(St.create_train_state(config, seed=0), mesh)
    audio = S.shard_batch(tiny.batch(4), mesh)
    history = []
    for _ in range(15):
        state, metrics = train_step(state, audio)
        history.append(jax.device_get(metrics))
    assert int(state.step) == 15 and int(state.bad_step) == -1
    assert not any(k.startswith("vq/") for k in history[0])
    first = {k: np.mean([m[k] for m in history[:3]]) for k in history[0]}
    last = {k: np.mean([m[k] for m in history[-3:]]) for k in history[0]}
    # the tiny VAE is narrower than the tiny DAC and learns slower (measured: -9 % in 15 steps)
    assert last["mel/loss"] < 0.95 * first["mel/loss"], (first["mel/loss"], last["mel/loss"])
    assert all(0 < m["kl/loss"] < np.inf for m in history)
    assert all(m["kl/beta"] == pytest.approx(0.1) for m in history)
    assert all(np.isfinite(v) for m in history for v in m.values())


def test_the_latent_noise_is_per_item(vae):
    """Item i's reconstruction (and so its losses) do not depend on what else is in the batch."""
    mesh, config, _ = vae
    state = St.create_train_state(config, seed=0)
    step = jax.numpy.zeros((), jax.numpy.int32)

    def recons(audio):
        def body(x):
            signal = S.prepare(x, S.item_keys(state.key, step, 0, S.global_indices(x.shape[0])), config)
            forward, _ = S.generator_forward(config, signal, state.key, step)
            return forward(state.generator)[0]

        mapped = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=S.P(S.AXIS), out_specs=S.P(S.AXIS), check_vma=False))
        return np.asarray(mapped(S.shard_batch(audio, mesh)))

    audio = tiny.batch(4)
    np.testing.assert_allclose(recons(audio[:2]), recons(audio)[:2], atol=1e-5)


def test_validation_is_deterministic_and_reports_the_kl(vae):
    mesh, config, _ = vae
    state = S.replicate(St.create_train_state(config, seed=0), mesh)
    eval_step = S.make_eval_step(mesh, config)
    audio = S.shard_batch(tiny.batch(2), mesh)
    first, second = jax.device_get(eval_step(state.generator, audio)), jax.device_get(eval_step(state.generator, audio))
    assert set(first) == {"mel/loss", "stft/loss", "waveform/loss", "sisdr", "kl/loss"}
    assert first == second and 0 < first["kl/loss"] < np.inf


def test_a_non_finite_kl_stops_training_and_says_so(vae):
    mesh, config, train_step = vae
    state = S.replicate(St.create_train_state(config, seed=0), mesh)
    bad = tiny.batch(4)
    bad[1, 0, 50] = np.nan
    state, metrics = train_step(state, S.shard_batch(bad, mesh))
    assert int(state.bad_step) == 0 and int(state.step) == 0
    assert not np.isfinite(float(metrics["kl/loss"]))
    collection = L.metrics_collection(metrics)
    with pytest.raises(L.TrainingDiverged, match=r"kl/loss.*the KL term \(kl/loss\) is not finite"):
        L.raise_if_diverged(state, L.gather_metrics(collection, metrics))


def test_a_vae_state_saves_and_restores(vae, tmp_path):
    mesh, config, train_step = vae
    state = S.replicate(St.create_train_state(config, seed=0), mesh)
    state, _ = train_step(state, S.shard_batch(tiny.batch(4), mesh))
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    checkpoints.save(1, state, {"step": 1})
    fresh = S.replicate(St.create_train_state(config, seed=5), mesh)
    restored, record = checkpoints.restore(1, fresh)
    checkpoints.close()
    assert record == {"step": 1}
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(state))


def test_the_vae_config_is_the_originals_recipe():
    res = subprocess.run([sys.executable, "train.py", "--args.load", "configs/vae24khz-x2.yml", "--dry_run"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 0, res.stderr[-2000:]
    c = json.loads(res.stdout)
    step = c["step"]
    assert step["model"] == {"encoder_dim": 64, "encoder_rates": [2, 3, 4, 4, 5], "latent_dim": 80,
                             "decoder_dim": 1536, "decoder_rates": [5, 4, 4, 3, 2], "sample_rate": 24000}
    for name, clip in (("generator_optim", 1000.0), ("discriminator_optim", 10.0)):
        assert step[name] == {"lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-3,
                              "gamma": 1.0, "grad_clip": clip, "warmup_steps": 500}
    assert step["weights"]["mel"] == 15.0 and step["weights"]["feature"] == 2.0
    assert step["weights"]["adversarial"] == 1.0
    assert step["kl"] == {"start": 0.1, "final": 0.1, "hold_steps": 200_000, "end_step": 500_000}
    assert step["discriminator"]["sample_rate"] == 24000 and step["discriminator"]["periods"] == [2, 3, 5, 7, 11]
    assert c["batch_size"] == 128 and c["duration"] == 0.38 and c["num_steps"] == 500_000


@pytest.mark.parametrize("overrides,message", [
    ({"lambdas": {"mel/loss": 15.0, "kl/loss": 0.1, "vq/commitment_loss": 0.25}}, "no quantiser"),
    ({"hold_base_steps": 600_000}, "hold_base_steps 600000 must be below num_iters 500000"),
    ({"model": "rvq"}, "model must be dac or vae"),
])
def test_bad_vae_configs_are_one_line_errors(overrides, message, tmp_path):
    import yaml

    config = yaml.safe_load((ROOT / "configs/vae24khz-x2.yml").read_text())
    config.update(overrides)
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(config))
    res = subprocess.run([sys.executable, "train.py", "--args.load", str(path), "--dry_run"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 1 and message in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


def test_fine_tuning_starts_from_a_vae_checkpoint(tmp_path):
    """train.py --generator_weights with ``model: vae``: the original's checkpoint.pt, strictly matched."""
    require_reference("torch")  # the weights are written in the original's (torch) format
    import dataclasses

    from dac_jax import init_vae
    from dac_jax.errors import UsageError
    from dac_jax.train.config import TrainConfig

    config = TrainConfig(step=tiny.VAE_STEP)
    vae = init_vae(config.step.model, seed=5)
    checkpoint = vae.export_torch(tmp_path / "checkpoint.pt")
    generator, discriminator = fine_tune_weights(config, str(checkpoint), None)
    assert discriminator is None
    jax.tree_util.tree_map(np.testing.assert_array_equal, generator, vae.variables["params"])
    # a dac-jax folder works too
    generator, _ = fine_tune_weights(config, str(vae.save(tmp_path / "folder")), None)
    jax.tree_util.tree_map(np.testing.assert_array_equal, generator, vae.variables["params"])

    other = TrainConfig(step=dataclasses.replace(config.step, model=dataclasses.replace(config.step.model, decoder_dim=16)))
    with pytest.raises(UsageError, match="is not the configured VAE"):
        fine_tune_weights(other, str(checkpoint), None)
