"""train.py as users run it: configs, bad configs, a diverging run that stops cleanly, fine-tuning.
A real run's TensorBoard logs and checkpoints, and a SIGKILL and a resume that end where an
uninterrupted run ends: tests/train/test_multihost.py (one process, and two)."""

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
from dac_jax.train import state as St
from dac_jax.train.checkpoint import Checkpoints
from tests.requires import require_reference
from tests.train import tiny

ROOT = Path(__file__).resolve().parents[2]


def train_cmd(config: Path, save_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "train.py", "--args.load", str(config), "--save_path", str(save_path), *extra]


def run(cmd, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


def dry_run(config: str) -> dict:
    res = run([sys.executable, "train.py", "--args.load", config, "--dry_run"], timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def test_the_44khz_config_is_the_originals_recipe():
    c = dry_run("configs/44khz.yml")
    step = c["step"]
    assert step["model"] == {"encoder_dim": 64, "encoder_rates": [2, 4, 8, 8], "latent_dim": 1024, "decoder_dim": 1536,
                             "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9, "codebook_size": 1024, "codebook_dim": 8,
                             "quantizer_dropout": 0.5, "sample_rate": 44100}
    assert step["discriminator"]["periods"] == [2, 3, 5, 7, 11] and step["discriminator"]["fft_sizes"] == [2048, 1024, 512]
    for name, clip in (("generator_optim", 1000.0), ("discriminator_optim", 10.0)):
        assert step[name] == {"lr": 1e-4, "betas": [0.8, 0.99], "eps": 1e-8, "weight_decay": 0.01,
                              "gamma": 0.999996, "grad_clip": clip, "warmup_steps": 0}
    assert step["weights"] == {"mel": 15.0, "feature": 2.0, "adversarial": 1.0, "commitment": 0.25,
                               "codebook": 1.0, "stft": 0.0, "waveform": 0.0, "periodicity": 0.0}
    assert step["mel"]["n_mels"] == [5, 10, 20, 40, 80, 160, 320] and step["mel"]["pow"] == 1.0
    assert step["mel"]["window_lengths"] == [32, 64, 128, 256, 512, 1024, 2048] and step["mel"]["mag_weight"] == 0.0
    assert step["stft"]["window_lengths"] == [2048, 512]
    assert step["augment"]["target_db"] == -16.0 and step["augment"]["volume_norm"] and step["augment"]["shift_phase"]
    assert c["batch_size"] == 72 and c["duration"] == 0.38 and c["num_steps"] == 400000 and c["val_duration"] == 5.0
    assert len(c["train_groups"]) == 6 and len(c["val_groups"]) == 3
    assert c["loudness_cutoff"] == -40.0 and c["num_tries"] == 8 and c["seed"] == 0


@pytest.mark.parametrize("name,rate,rates,n", [("24khz", 24000, [2, 4, 5, 8], 32), ("16khz", 16000, [2, 4, 5, 8], 12)])
def test_other_released_configs(name, rate, rates, n):
    model = dry_run(f"configs/{name}.yml")["step"]["model"]
    assert (model["sample_rate"], model["encoder_rates"], model["n_codebooks"]) == (rate, rates, n)


def test_bad_configs_are_one_line_errors(tmp_path):
    groups = tiny.write_corpus(tmp_path / "data", files_per_group=1)
    cfg = tiny.write_config(tmp_path / "bad.yml", groups, **{"lambdas": {"mel/loss": 1.0, "nope": 2.0}})
    res = run(train_cmd(cfg, tmp_path / "run"), timeout=300)
    assert res.returncode == 1 and "error: unknown loss names ['nope']" in res.stderr and "Traceback" not in res.stderr
    cfg = tiny.write_config(tmp_path / "bad2.yml", groups, **{"train/build_dataset.folders": {"a": [str(tmp_path / "missing")]}})
    res = run(train_cmd(cfg, tmp_path / "run2"), timeout=300)
    assert res.returncode == 1 and str(tmp_path / "missing") in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run2").exists()  # the data is checked before the run's folders are made
    (tmp_path / "empty").mkdir()
    cfg = tiny.write_config(tmp_path / "bad3.yml", groups, **{"train/build_dataset.folders": {"a": [str(tmp_path / "empty")]}})
    res = run(train_cmd(cfg, tmp_path / "run3"), timeout=300)
    assert res.returncode == 1 and "no audio files" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "run3").exists()


def test_a_save_path_holding_the_users_checkpoints_folder_is_refused_untouched(tmp_path):
    """Orbax's retention policy deletes integer-named folders in ``checkpoints/`` that it takes for
    old steps (a user's ``checkpoints/7/notes.txt`` was gone after the third save): a save_path
    whose ``checkpoints/`` holds anything the trainer did not write is one line, before any write."""
    groups = tiny.write_corpus(tmp_path / "data", files_per_group=1)
    cfg = tiny.write_config(tmp_path / "tiny.yml", groups)
    save = tmp_path / "mine"
    (save / "checkpoints" / "7").mkdir(parents=True)
    (save / "checkpoints" / "7" / "notes.txt").write_text("mine")
    other = save / "checkpoints" / "100"  # another project's Orbax step: metadata, but not our items
    (other / "default").mkdir(parents=True)
    (other / "_CHECKPOINT_METADATA").write_text("{}")
    before = sorted(str(p.relative_to(save)) for p in save.rglob("*"))
    res = run(train_cmd(cfg, save), timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"{save}: checkpoints/100, checkpoints/7 is not a checkpoint of a dac-jax run" in res.stderr
    assert sorted(str(p.relative_to(save)) for p in save.rglob("*")) == before  # no logs/, nothing deleted
    assert (save / "checkpoints" / "7" / "notes.txt").read_text() == "mine"


def _restore(save_path: Path, step: int) -> St.TrainState:
    target = St.create_train_state(tiny.fast(), seed=0)
    ckpts = Checkpoints(save_path / "checkpoints")
    state, record = ckpts.restore(step, target)
    ckpts.close()
    assert record["step"] == step
    return jax.device_get(state)


@pytest.mark.slow
def test_a_diverging_run_stops_and_keeps_its_last_good_checkpoint(tmp_path):
    groups = tiny.write_corpus(tmp_path / "data", files_per_group=2)
    cfg = tiny.write_config(tmp_path / "diverge.yml", groups, **{
        "generator/AdamW.lr": 1e30, "valid_freq": 1, "sample_freq": 0, "log_freq": 1, "num_iters": 5,
    })
    res = run(train_cmd(cfg, tmp_path / "run"))
    assert res.returncode == 1, res.stderr[-3000:]
    assert "error: training stopped: non-finite values at step 1" in res.stderr
    assert "Traceback" not in res.stderr
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [1]
    state = _restore(tmp_path / "run", 1)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state.opt_g))


def test_fine_tuning_reads_generator_and_discriminator_weights(tmp_path):
    """train.py's (dac_jax.cli.train's) --generator_weights / --discriminator_weights: the original's files, strictly matched."""
    require_reference("torch")  # the weights are written in the original's (torch) format
    import dataclasses

    from dac_jax import init_model
    from dac_jax.errors import UsageError
    from dac_jax.model.discriminator import init_discriminator
    from dac_jax.train.config import TrainConfig
    from dac_jax.weights.discriminator import write_discriminator_checkpoint

    d_config = dataclasses.replace(tiny.STEP.discriminator, width=1.0)
    config = TrainConfig(step=dataclasses.replace(tiny.STEP, discriminator=d_config))
    codec = init_model(config.step.model, seed=5)
    generator_pth = codec.export_torch(tmp_path / "generator.pth")
    d_variables = init_discriminator(d_config, 6)
    discriminator_pth = write_discriminator_checkpoint(tmp_path / "discriminator.pth", d_variables, d_config)

    generator, discriminator = fine_tune_weights(config, str(generator_pth), str(discriminator_pth))
    jax.tree_util.tree_map(np.testing.assert_array_equal, generator, codec.variables["params"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, discriminator, d_variables["params"])

    other = TrainConfig(step=dataclasses.replace(config.step, discriminator=dataclasses.replace(d_config, periods=(2,))))
    with pytest.raises(UsageError, match="Discriminator"):
        fine_tune_weights(other, None, str(discriminator_pth))


def test_fine_tuning_may_change_the_quantizer_dropout_but_not_the_architecture(tmp_path):
    """Quantizer dropout is a training setting, not in the weights (nor in the original's state
    dict): a dac-jax folder saved with 0.5 fine-tunes under 0.0; another codebook count is refused."""
    import dataclasses

    from dac_jax import init_model
    from dac_jax.errors import UsageError
    from dac_jax.train.config import TrainConfig

    saved = dataclasses.replace(tiny.STEP.model, quantizer_dropout=0.5)
    folder = init_model(saved, seed=3).save(tmp_path / "generator")
    for dropout in (0.0, 0.5, 1.0):
        config = TrainConfig(step=dataclasses.replace(tiny.STEP, model=dataclasses.replace(saved, quantizer_dropout=dropout)))
        generator, _ = fine_tune_weights(config, str(folder), None)
        jax.tree_util.tree_map(np.testing.assert_array_equal, generator, init_model(saved, seed=3).variables["params"])
    fewer = dataclasses.replace(saved, n_codebooks=saved.n_codebooks - 1)
    with pytest.raises(UsageError, match="is not the configured DAC"):
        fine_tune_weights(TrainConfig(step=dataclasses.replace(tiny.STEP, model=fewer)), str(folder), None)
