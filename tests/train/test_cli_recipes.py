"""The original's recipe keys against what train.py does with each: used (and shown to change
the resolved configuration), or refused by name with the reason. In-process
(:func:`dac_jax.cli.train.main`, the function ``train.py`` calls) to stay fast; the real processes
are tests/train/test_cli_keys.py's."""

from __future__ import annotations

import json
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from dac_jax.cli import train as cli
from dac_jax.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]

# descript-audio-codec's conf/final/44khz.yml, verbatim but for the data folders (one per group)
ORIGINAL_44KHZ = """
DAC.sample_rate: 44100
DAC.encoder_dim: 64
DAC.encoder_rates: [2, 4, 8, 8]
DAC.decoder_dim: 1536
DAC.decoder_rates: [8, 8, 4, 2]
DAC.n_codebooks: 9
DAC.codebook_size: 1024
DAC.codebook_dim: 8
DAC.quantizer_dropout: 0.5
Discriminator.sample_rate: 44100
Discriminator.rates: []
Discriminator.periods: [2, 3, 5, 7, 11]
Discriminator.fft_sizes: [2048, 1024, 512]
Discriminator.bands:
  - [0.0, 0.1]
  - [0.1, 0.25]
  - [0.25, 0.5]
  - [0.5, 0.75]
  - [0.75, 1.0]
AdamW.betas: [0.8, 0.99]
AdamW.lr: 0.0001
ExponentialLR.gamma: 0.999996
amp: false
val_batch_size: 100
device: cuda
num_iters: 400000
save_iters: [10000, 50000, 100000, 200000]
valid_freq: 1000
sample_freq: 10000
num_workers: 32
val_idx: [0, 1, 2, 3, 4, 5, 6, 7]
seed: 0
lambdas:
  mel/loss: 15.0
  adv/feat_loss: 2.0
  adv/gen_loss: 1.0
  vq/commitment_loss: 0.25
  vq/codebook_loss: 1.0
VolumeNorm.db: [const, -16]
build_transform.preprocess:
  - Identity
build_transform.augment_prob: 0.0
build_transform.augment:
  - Identity
build_transform.postprocess:
  - VolumeNorm
  - RescaleAudio
  - ShiftPhase
MultiScaleSTFTLoss.window_lengths: [2048, 512]
MelSpectrogramLoss.n_mels: [5, 10, 20, 40, 80, 160, 320]
MelSpectrogramLoss.window_lengths: [32, 64, 128, 256, 512, 1024, 2048]
MelSpectrogramLoss.mel_fmin: [0, 0, 0, 0, 0, 0, 0]
MelSpectrogramLoss.mel_fmax: [null, null, null, null, null, null, null]
MelSpectrogramLoss.pow: 1.0
MelSpectrogramLoss.clamp_eps: 1.0e-5
MelSpectrogramLoss.mag_weight: 0.0
batch_size: 72
train/AudioDataset.duration: 0.38
train/AudioDataset.n_examples: 10000000
val/AudioDataset.duration: 5.0
val/build_transform.augment_prob: 1.0
val/AudioDataset.n_examples: 250
test/AudioDataset.duration: 10.0
test/build_transform.augment_prob: 1.0
test/AudioDataset.n_examples: 1000
AudioLoader.shuffle: true
AudioDataset.without_replacement: true
train/build_dataset.folders:
  speech_fb: [/data/daps/train]
  speech_hq: [/data/vctk]
  speech_uq: [/data/common_voice/]
  music_hq: [/data/musdb/train]
  music_uq: [/data/jamendo]
  general: [/data/audioset/data/balanced_train_segments/]
val/build_dataset.folders:
  speech_hq: [/data/daps/val]
  music_hq: [/data/musdb/test]
  general: [/data/audioset/data/eval_segments/]
test/build_dataset.folders:
  speech_hq: [/data/daps/test]
  music_hq: [/data/musdb/test]
  general: [/data/audioset/data/eval_segments/]
"""
NOT_IMPLEMENTED = ("device", "num_workers", "test/")


def main(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err.strip()


def resolved(capsys, config: dict | str, tmp_path: Path, *argv: str) -> dict:
    """The --dry_run configuration of ``config`` (a dict of keys or a YAML text)."""
    path = tmp_path / "config.yml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    rc, out, err = main(capsys, "--args.load", str(path), "--dry_run", *argv)
    assert rc == 0, err
    return json.loads(out)


def refusal(capsys, config: dict | str, tmp_path: Path, *argv: str) -> str:
    path = tmp_path / "config.yml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    rc, out, err = main(capsys, "--args.load", str(path), "--save_path", str(tmp_path / "run"), *argv)
    assert rc == 1 and out == "" and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert not (tmp_path / "run").exists()
    return err


@pytest.fixture(scope="module")
def recipe() -> dict:
    """The original's 44 kHz recipe without the keys this port refuses: what configs/44khz.yml is."""
    keys = yaml.safe_load(ORIGINAL_44KHZ)
    return {k: v for k, v in keys.items() if not k.startswith(NOT_IMPLEMENTED)}


def test_the_originals_recipe_is_refused_only_for_what_is_not_implemented(capsys, tmp_path):
    err = refusal(capsys, ORIGINAL_44KHZ, tmp_path)
    assert "device: not supported: JAX runs on its default backend (choose it with JAX_PLATFORMS" in err
    assert "num_workers: not supported: tf.data sizes its parallel reading itself" in err
    for key in ("test/AudioDataset.duration", "test/build_transform.augment_prob", "test/AudioDataset.n_examples",
                "test/build_dataset.folders"):
        assert f"{key}: not supported: test/ keys configure the original's test set" in err
    assert err.count("not supported") == 6 and "unknown" not in err  # amp, AudioLoader.shuffle, ... are used


def test_without_those_keys_it_resolves_to_configs_44khz(capsys, tmp_path, recipe):
    ours = resolved(capsys, (ROOT / "configs/44khz.yml").read_text(), tmp_path)
    theirs = resolved(capsys, recipe, tmp_path)
    for key in ("train_groups", "val_groups"):
        assert len(theirs.pop(key)) == len(ours.pop(key))
    assert theirs == ours


@pytest.mark.parametrize("key,value,reason", [
    ("amp", True, "mixed precision is not implemented"),
    ("AudioLoader.shuffle", False, "files in listing order are not implemented"),
    ("MelSpectrogramLoss.match_stride", True, "the original's losses never pass it to their STFT"),
    ("MultiScaleSTFTLoss.match_stride", True, "the original's losses never pass it to their STFT"),
    ("MelSpectrogramLoss.loss_fn", "MSE", "other loss functions are not implemented"),
    ("MultiScaleSTFTLoss.weight", 2.0, "the original's trainer never reads it; lambdas weigh the losses"),
    ("MelSpectrogramLoss.weight", 0.5, "the original's trainer never reads it; lambdas weigh the losses"),
    ("VolumeNorm.db", ["uniform", -20, -10], "other audiotools distributions are not supported"),
    ("ShiftPhase.shift", ["const", 1.0], "other distributions are not supported"),
    ("resume", True, "a run resumes by itself from save_path/checkpoints"),
    ("tag", "best", "a run resumes from its latest checkpoint"),
    ("load_weights", True, "--generator_weights / --discriminator_weights"),
])
def test_keys_whose_other_values_are_not_implemented_are_refused_by_name(key, value, reason, capsys, tmp_path, recipe):
    err = refusal(capsys, {**recipe, key: value}, tmp_path)
    assert key in err and reason in err, err


def test_the_values_the_original_behaves_by_are_accepted(capsys, tmp_path, recipe):
    same = {"amp": False, "AudioLoader.shuffle": True, "MelSpectrogramLoss.match_stride": False,
            "MelSpectrogramLoss.loss_fn": "L1", "MelSpectrogramLoss.weight": 1.0, "MultiScaleSTFTLoss.window_type": None}
    assert resolved(capsys, {**recipe, **same}, tmp_path) == resolved(capsys, recipe, tmp_path)


def test_used_keys_change_the_resolved_configuration(capsys, tmp_path, recipe):
    base = resolved(capsys, recipe, tmp_path)
    changes = {
        "MelSpectrogramLoss.window_type": ("hamming", lambda c: c["step"]["mel"]["window"]),
        "MultiScaleSTFTLoss.window_type": ("sqrt_hann", lambda c: c["step"]["stft"]["window"]),
        "AudioDataset.without_replacement": (False, lambda c: c["without_replacement"]),
        "train/AudioDataset.n_examples": (1000, lambda c: c["train_examples"]),
        "AudioDataset.loudness_cutoff": (None, lambda c: c["loudness_cutoff"]),
        "val_idx": ([3, 1], lambda c: c["sample_items"]),
        "val/AudioDataset.n_examples": (100, lambda c: c["val_examples"]),
        "DAC.latent_dim": (128, lambda c: c["step"]["model"]["latent_dim"]),
        "generator/AdamW.weight_decay": (0.5, lambda c: c["step"]["generator_optim"]["weight_decay"]),
    }
    for key, (value, field) in changes.items():
        got = resolved(capsys, {**recipe, key: value}, tmp_path)
        assert field(got) == value != field(base), key
    assert base["train_examples"] == 10_000_000 and base["sample_items"] == list(range(8))


def test_a_fractional_augment_prob_is_a_per_item_probability(capsys, tmp_path, recipe):
    stages = {"build_transform.preprocess": ["VolumeNorm"], "build_transform.augment": ["RescaleAudio"],
              "build_transform.postprocess": ["ShiftPhase"]}
    config = {**recipe, **stages, **{f"val/{k}": v for k, v in stages.items()},
              "build_transform.augment_prob": 0.5, "val/build_transform.augment_prob": 0.5}
    augment = resolved(capsys, config, tmp_path)["step"]["augment"]
    assert augment["augment_prob"] == 0.5 and augment["augment_stage"] == ["rescale"] and augment["rescale"]
    plain = resolved(capsys, recipe, tmp_path)["step"]["augment"]
    assert (plain["augment_prob"], plain["augment_stage"]) == (1.0, [])
    err = refusal(capsys, {**config, "build_transform.augment_prob": 1.5}, tmp_path)
    assert "augment_prob" in err


def test_an_order_the_device_cannot_keep_is_refused(capsys, tmp_path, recipe):
    err = refusal(capsys, {**recipe, "build_transform.postprocess": ["ShiftPhase", "VolumeNorm"]}, tmp_path)
    assert "applies VolumeNorm, RescaleAudio, ShiftPhase in that order" in err
    err = refusal(capsys, {**recipe, "build_transform.postprocess": ["LowPass"]}, tmp_path)
    assert "build_transform.postprocess must be a list of transform names" in err
    err = refusal(capsys, {**recipe, "val/build_transform.postprocess": ["VolumeNorm"]}, tmp_path)
    assert "val/build_transform.* give the validation other transforms" in err


def test_augment_prob_0_and_1_are_exact(capsys, tmp_path, recipe):
    base = {**recipe, "build_transform.preprocess": ["VolumeNorm"], "build_transform.postprocess": ["Identity"],
            "val/build_transform.augment_prob": 0.0}
    off = resolved(capsys, {**base, "build_transform.augment": ["ShiftPhase"]}, tmp_path)["step"]["augment"]
    on = resolved(capsys, {**base, "build_transform.augment": ["ShiftPhase"], "build_transform.augment_prob": 1.0,
                           "val/build_transform.augment_prob": 1.0}, tmp_path)["step"]["augment"]
    assert (off["volume_norm"], off["shift_phase"], on["shift_phase"]) == (True, False, True)


@pytest.mark.parametrize("config,message", [
    ({"VAE.latent_dim": 80}, "VAE.latent_dim configures model: vae, but model is dac"),
    ({"hold_base_steps": 10}, "hold_base_steps configures model: vae, but model is dac"),
    ({"MelSpectrogramLoss.mel_fmin": [0, 0]}, "MelSpectrogramLoss.mel_fmin has 2 entries and"),
    ({"MelSpectrogramLoss.mel_fmax": [None] * 6 + [0]}, "must be a non-empty list of positive numbers or nulls"),
    ({"Discriminator.sample_rate": 24000}, "Discriminator.sample_rate 24000 differs from DAC.sample_rate 44100"),
    ({"train/AudioDataset.duration": 0.02}, "is too short for MelSpectrogramLoss.window_lengths 2048"),
    ({"val_idx": [0, 250]}, "val_idx [250] are beyond the 200 validation items"),
    ({"lambdas": {"mel/los": 1.0}}, "unknown loss names ['mel/los'] (did you mean 'mel/loss'?)"),
    ({"val/AudioDataset.num_tries": 2}, "val/AudioDataset.num_tries 2 differs from train/AudioDataset.num_tries 8"),
    ({"train/build_dataset.folders": {"speech": None}}, "must be a mapping of group names to lists of folders"),
    ({"DAC.decoder_dim": 100}, "DAC.*: decoder_dim 100 must be divisible by 2 ** 4"),
    ({"AdamW.betas": [0.9]}, "AdamW.betas must be two numbers in [0, 1), got [0.9]"),
    ({"DAC.quantizer_dropout": 1.5}, "DAC.quantizer_dropout must be a number in [0, 1], got 1.5"),
])
def test_what_spans_keys_is_checked_in_the_keys_words(config, message, capsys, tmp_path, recipe):
    assert message in refusal(capsys, {**recipe, **config}, tmp_path)


@pytest.mark.parametrize("value,message", [
    ("abc", 'DAC.n_codebooks must be a positive integer, got "abc"'),
    (2.5, "DAC.n_codebooks must be a positive integer, got 2.5"),
    (True, "DAC.n_codebooks must be a positive integer, got true"),
    (None, "DAC.n_codebooks must be a positive integer, got null"),
])
def test_a_bad_value_in_the_file_names_the_file_and_the_key(value, message, capsys, tmp_path, recipe):
    err = refusal(capsys, {**recipe, "DAC.n_codebooks": value}, tmp_path)
    assert err == f"error: {tmp_path / 'config.yml'}: {message}"


@pytest.mark.parametrize("text,message", [
    ("- DAC.n_codebooks\n", "expected a mapping of keys to values, got a list"),
    ("$include: conf/base.yml\n", "$include must be a list of config files, got 'conf/base.yml'"),
    ("a: [1, 2\n", "not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
])
def test_a_malformed_file_is_one_line_naming_it(text, message, capsys, tmp_path):
    assert refusal(capsys, text, tmp_path) == f"error: {tmp_path / 'config.yml'}: {message}"


def test_list_and_dict_flags_take_yaml_literals(capsys, tmp_path, recipe):
    c = resolved(capsys, recipe, tmp_path, "--DAC.encoder_rates", "[2, 4, 5, 8]", "--DAC.decoder_rates", "[8, 5, 4, 2]",
                 "--lambdas", '{"mel/loss": 1, "stft/loss": 2}', "--DAC.latent_dim", "null")
    assert c["step"]["model"]["encoder_rates"] == [2, 4, 5, 8] and c["step"]["model"]["latent_dim"] == 1024
    assert c["step"]["weights"]["mel"] == 1.0 and c["step"]["weights"]["stft"] == 2.0
    rc, _, err = main(capsys, "--args.load", str(tmp_path / "config.yml"), "--DAC.encoder_rates", "2 4 8 8")
    assert rc == 1 and "argument --DAC.encoder_rates: expected a list such as [2, 4, 8, 8]" in err


def test_the_command_line_beats_the_file_and_a_scope_inherits_its_unscoped_key(capsys, tmp_path, recipe):
    c = resolved(capsys, {**recipe, "generator/AdamW.lr": 0.5}, tmp_path, "--discriminator/AdamW.lr", "0.25")
    assert (c["step"]["generator_optim"]["lr"], c["step"]["discriminator_optim"]["lr"]) == (0.5, 0.25)
    c = resolved(capsys, {**recipe, "generator/AdamW.lr": 0.5}, tmp_path, "--AdamW.lr", "0.125")
    assert (c["step"]["generator_optim"]["lr"], c["step"]["discriminator_optim"]["lr"]) == (0.125, 0.125)
    err = refusal(capsys, recipe, tmp_path, "--generator/AdamW.lr", "-1")
    assert err == "error: --generator/AdamW.lr must be a non-negative number, got -1.0"


def test_include_and_vars_are_read_as_argbind_reads_them(capsys, tmp_path, recipe, monkeypatch):
    base = tmp_path / "base.yml"
    base.write_text(yaml.safe_dump({**recipe, "seed": 1}))
    top = tmp_path / "top.yml"
    top.write_text(yaml.safe_dump({"$include": [str(base)], "$vars": {"NAME": "sqrt_hann"}, "seed": 2,
                                   "MelSpectrogramLoss.window_type": "$NAME"}))
    rc, out, err = main(capsys, "--args.load", str(top), "--dry_run")
    c = json.loads(out)
    assert rc == 0 and c["seed"] == 2 and c["step"]["mel"]["window"] == "sqrt_hann"
    top.write_text(yaml.safe_dump({"$include": [str(tmp_path / "gone.yml")]}))
    rc, _, err = main(capsys, "--args.load", str(top), "--dry_run")
    assert rc == 1 and err == f"error: {tmp_path / 'gone.yml'}: no such config file"


def test_every_key_has_a_rule_that_its_default_passes():
    parser = cli.build_parser()
    for action in parser._actions:
        if action.dest == "help" or action.dest.startswith("args."):
            continue
        rule = cli.RULES[cli._unscoped(action.dest)]
        assert rule.ok(action.default), (action.dest, action.default, rule.what)
    assert set(cli.RULES) == {cli._unscoped(k) for k in cli._keys(parser)}  # no rule for a key that does not exist


def test_the_training_stream_repeats_after_n_examples_per_group():
    """loop.train_batches with the original's period (train/AudioDataset.n_examples), on a stream of
    item indices: whole batches restart the batched stream; otherwise a batch spans two passes."""
    import tensorflow as tf

    from dac_jax.train.loop import train_batches

    class Indices:
        config = types.SimpleNamespace(batch_size=4)

        def train_dataset(self, start_step=0):
            items = tf.data.Dataset.counter(start_step * 4).map(lambda i: {"audio": tf.cast(tf.reshape(i, [1, 1]), tf.float32)})
            return items.batch(4)

    def batches(start, period, n=4):
        stream = train_batches(Indices(), start, period)
        return [next(stream)[:, 0, 0].astype(int).tolist() for _ in range(n)]

    assert batches(0, None) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert batches(0, 8) == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3], [4, 5, 6, 7]]
    assert batches(0, 10) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]]
    for start in (1, 2, 3):  # a resume continues the uninterrupted stream
        assert batches(start, 10, 2) == batches(0, 10, start + 2)[start:]
        assert batches(start, 8, 2) == batches(0, 8, start + 2)[start:]


def test_a_step_that_cannot_be_traced_is_one_line_before_any_folder():
    from dac_jax.train import step as S
    from dac_jax.train.config import TrainConfig
    from dac_jax.train.loop import check_shapes
    from tests.train import tiny

    config = TrainConfig(step=tiny.STEP, batch_size=2, duration=0.2, valid_every=0)
    mesh = S.make_mesh(1)
    state = S.replicate({"w": jnp.ones((3, 5))}, mesh)
    mismatched = jax.jit(lambda s, audio: jnp.dot(s["w"], audio))  # [3, 5] . [2, 1, 3200]: no such product
    with pytest.raises(UsageError, match=r"^the configuration cannot run the training step: TypeError: \S"):
        check_shapes(config, mesh, state, mismatched, None)

    def refuses(s, audio):
        raise UsageError("sample rate 8 Hz is too low for 0.4 s gating blocks")

    with pytest.raises(UsageError, match="^sample rate 8 Hz is too low"):  # dac-jax's own errors pass as they are
        check_shapes(config, mesh, state, refuses, None)
    np.testing.assert_array_equal(jax.device_get(state["w"]), np.ones((3, 5)))  # nothing was computed or donated
