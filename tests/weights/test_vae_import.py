"""Importing DAC-VAE generator weights: the key map, both file layouts, strictness, the facade."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import numpy as np
import pytest

import dac_jax
from dac_jax.errors import UsageError, WeightsError
from dac_jax.model.config import VAE_PRESETS
from dac_jax.weights.vae import read_vae_checkpoint, vae_parameters, vae_state_dict_to_variables
from tests import reference

TINY = VAE_PRESETS["vae-tiny"]
SIGNAL = reference.test_signals(TINY.sample_rate, lengths=(0.01, 0.008))["speech"]
MAX_DIFF = 2e-5  # about 10x the largest measured (1.7e-6, max abs; float32 on an x86_64 CPU)


@pytest.fixture(scope="module")
def torch_tiny(reference_dir):
    from tests import vae_reference

    return vae_reference.torch_vae(TINY, seed=7)


@pytest.fixture(scope="module")
def checkpoint_pt(torch_tiny, reference_dir):
    from tests import vae_reference

    return vae_reference.save_checkpoint(torch_tiny, reference_dir / "vae_checkpoint.pt", TINY)


@pytest.fixture(scope="module")
def bare_pt(torch_tiny, reference_dir):
    from tests import vae_reference

    return vae_reference.save_checkpoint(torch_tiny, reference_dir / "vae_generator.pt", bare=True)


def torch_state(path):
    import torch

    return torch.load(path, weights_only=True)


def save(path: Path, data) -> Path:
    import torch

    torch.save(data, path)
    return path


def test_key_map_is_derived_from_the_tree_and_covers_the_original(torch_tiny):
    expected = vae_parameters(TINY)
    assert {k: shape for k, (_, shape) in expected.items()} == {
        k: tuple(v.shape) for k, v in torch_tiny.state_dict().items()
    }
    assert expected["encoder.block.0.0.weight_v"][0] == ("encoder", "block_0", "0", "weight_v")
    assert expected["en_conv_post.0.weight_v"][0] == ("en_conv_post", "0", "weight_v")
    assert "decoder.model.1.block.1.weight_v" in expected  # transposed convs are not wrapped


def test_key_counts_of_the_released_configurations():
    # DAC_SPEC 5: configx2 has 300 keys, config 244
    assert {name: len(vae_parameters(VAE_PRESETS[name])) for name in ("vae24khz-x2", "vae24khz-x3")} == {
        "vae24khz-x2": 300,
        "vae24khz-x3": 244,
    }
    keys = vae_parameters(VAE_PRESETS["vae24khz-x2"])
    for key in ("encoder.block.0.0.weight_v", "encoder.block.1.block.0.block.1.0.weight_v",
                "en_conv_post.0.weight_v", "de_conv_pre.0.weight_v", "decoder.model.7.0.weight_v",
                "decoder.model.5.block.1.weight_g"):
        assert key in keys, key


def test_checkpoint_pt_loads_with_its_config_and_equals_the_original(torch_tiny, checkpoint_pt):
    from tests import vae_reference

    ckpt = read_vae_checkpoint(checkpoint_pt)
    assert ckpt.config == TINY
    assert ckpt.ignored_kwargs == ["gain", "weight_init"]

    vae = dac_jax.load_vae(checkpoint_pt)  # folded inference variables
    key = jax.random.key(4)
    frames = math.ceil(SIGNAL.shape[-1] / TINY.hop_length)
    noise = np.asarray(jax.random.normal(key, (2, TINY.latent_dim, frames)))
    theirs = vae_reference.run_torch(torch_tiny, SIGNAL, noise)
    ours = vae(SIGNAL, key)
    for name in ("m", "logs", "z", "audio"):
        assert float(np.max(np.abs(np.asarray(getattr(ours, name)) - theirs[name]))) <= MAX_DIFF, name
    np.testing.assert_allclose(float(ours.kl), theirs["kl"], rtol=1e-5)
    z, m, logs = vae.encode(SIGNAL, key)
    np.testing.assert_allclose(z, ours.z, atol=1e-6)
    decoded = vae.decode(z)
    assert decoded.shape == (2, 1, frames * TINY.hop_length)
    np.testing.assert_allclose(decoded[..., : SIGNAL.shape[-1]], ours.audio, atol=1e-6)


def test_facade_encodes_the_mean_without_a_key_and_compiles_once_per_shape(checkpoint_pt):
    from dac_jax import runtime

    vae = dac_jax.load_vae(checkpoint_pt)
    audio = SIGNAL[..., :199]  # a shape no other test encodes
    before = runtime.trace_counts["vae_encode"]
    z, m, logs = vae.encode(audio)
    np.testing.assert_array_equal(z, m)
    vae.encode(audio * 0.5)
    assert runtime.trace_counts["vae_encode"] == before + 1
    assert not np.allclose(vae.encode(audio, jax.random.key(0)).z, m)
    with pytest.raises(UsageError, match=r"z must be \[batch, 8, frames\]"):
        vae.decode(np.zeros((1, 3, 4), np.float32))
    with pytest.raises(dac_jax.AudioError):
        vae.encode(np.zeros((1, 2, 100), np.float32))


def test_bare_state_dict_needs_a_config(checkpoint_pt, bare_pt):
    with pytest.raises(WeightsError, match=r"no config\['vae'\].*vae24khz-x2"):
        dac_jax.load_vae(bare_pt)
    bare = dac_jax.load_vae(bare_pt, config="vae-tiny")
    full = dac_jax.load_vae(checkpoint_pt)
    jax.tree_util.tree_map(np.testing.assert_array_equal, bare.variables, full.variables)
    # an explicit config wins over the file's
    with pytest.raises(WeightsError, match="mis-shaped keys"):
        dac_jax.load_vae(checkpoint_pt, config=dataclasses.replace(TINY, latent_dim=6))
    with pytest.raises(UsageError, match="unknown DAC-VAE model type"):
        dac_jax.load_vae(bare_pt, config="24khz")


def test_parametrizations_key_style_loads_equal(torch_tiny, checkpoint_pt, tmp_path):
    """PyTorch >= 2.1 saves weight norm as parametrizations.weight.original0/1: both styles load."""
    import copy

    state = reference.to_parametrizations(copy.deepcopy(torch_tiny)).state_dict()
    assert any(k.endswith("parametrizations.weight.original0") for k in state)
    new_style = save(tmp_path / "new.pt", {**torch_state(checkpoint_pt), "generator": state})
    old, new = dac_jax.load_vae(checkpoint_pt), dac_jax.load_vae(new_style)
    np.testing.assert_allclose(old(SIGNAL).audio, new(SIGNAL).audio, atol=1e-6)


def test_missing_extra_and_misshaped_keys_are_all_listed(checkpoint_pt, tmp_path):
    ckpt = torch_state(checkpoint_pt)
    state = dict(ckpt["generator"])
    del state["de_conv_pre.0.bias"]
    state["encoder.block.0.weight_v"] = state.pop("encoder.block.0.0.weight_v")  # DAC's key, unwrapped
    state["en_conv_post.0.weight_g"] = state["en_conv_post.0.weight_g"][:3]
    bad = save(tmp_path / "bad.pt", {**ckpt, "generator": state})
    with pytest.raises(WeightsError) as err:
        dac_jax.load_vae(bad)
    msg = str(err.value)
    assert str(bad) in msg
    assert "missing keys (2)" in msg and "de_conv_pre.0.bias" in msg and "encoder.block.0.0.weight_v" in msg
    assert "unexpected keys (1)" in msg and "encoder.block.0.weight_v" in msg
    assert "mis-shaped keys (1)" in msg and "en_conv_post.0.weight_g: file (3, 1, 1), model (16, 1, 1)" in msg


def test_a_dac_checkpoint_is_not_a_vae(reference_dir):
    dac_pth = reference.reference_checkpoint("tiny", reference_dir, seed=3)
    with pytest.raises(WeightsError, match="a DAC model file .* use dac_jax.load_model"):
        dac_jax.load_vae(dac_pth, config="vae-tiny")
    unwrapped = r"does not fit the DAC-VAE(?s:.)*unexpected keys \(\d+\):\n    decoder\.model\.0\.bias"
    with pytest.raises(WeightsError, match=unwrapped):
        vae_state_dict_to_variables(torch_state(dac_pth)["state_dict"], TINY)


@pytest.mark.parametrize(
    "change, message",
    [({"d_in": 2}, "d_in=2"), ({"activation": "snake_beta"}, "activation='snake_beta'"), ({"norm": True}, "norm=True")],
)
def test_architectures_this_port_does_not_build_are_rejected(checkpoint_pt, tmp_path, change, message):
    ckpt = torch_state(checkpoint_pt)
    ckpt["config"] = {**ckpt["config"], "vae": {**ckpt["config"]["vae"], **change}}
    path = save(tmp_path / "other.pt", ckpt)
    with pytest.raises(WeightsError, match=rf"unsupported DAC-VAE architecture: {message}"):
        dac_jax.load_vae(path)


def test_missing_d_in_means_the_originals_stereo_default(checkpoint_pt, tmp_path):
    ckpt = torch_state(checkpoint_pt)
    vae = {k: v for k, v in ckpt["config"]["vae"].items() if k != "d_in"}
    path = save(tmp_path / "stereo.pt", {**ckpt, "config": {**ckpt["config"], "vae": vae}})
    with pytest.raises(WeightsError, match="d_in=2"):
        dac_jax.load_vae(path)


def test_objects_beyond_plain_data_are_refused_with_a_way_out(checkpoint_pt, tmp_path):
    unsafe = save(tmp_path / "unsafe.pt", {**torch_state(checkpoint_pt), "tracker": Path("/")})
    with pytest.raises(WeightsError, match=r"(?s)unsafe.pt: not a readable PyTorch checkpoint.*weights_only=False"):
        dac_jax.load_vae(unsafe)


def test_native_folders_and_exported_checkpoints_round_trip(torch_tiny, checkpoint_pt, tmp_path):
    """VAECodec.save / load_vae of the folder (no torch), export_torch read back strictly by the
    PyTorch rendition of the original, and each loader naming the other model's files."""
    vae = dac_jax.load_vae(checkpoint_pt)
    folder = vae.save(tmp_path / "folder")
    back = dac_jax.load_vae(folder)
    assert back.config == TINY
    jax.tree_util.tree_map(np.testing.assert_array_equal, back.variables, vae.variables)
    with pytest.raises(WeightsError, match="holds the DAC-VAE"):
        dac_jax.load_vae(folder, config="vae24khz-x2")
    with pytest.raises(WeightsError, match="a DAC-VAE checkpoint folder, not a DAC model"):
        dac_jax.load_model(folder)
    with pytest.raises(WeightsError, match="a DAC checkpoint folder, not a DAC-VAE"):
        dac_jax.load_vae(dac_jax.init_model("tiny").save(tmp_path / "dac"))

    exported = vae.export_torch(tmp_path / "exported.pt")
    data = torch_state(exported)
    assert data["config"]["vae"]["encoder_rates"] == [2, 3] and data["config"]["vae"]["d_in"] == 1
    from tests import vae_reference

    other = vae_reference.torch_vae(TINY, seed=99)
    other.load_state_dict(data["generator"], strict=True)  # the original's layout, every key
    for name, tensor in torch_tiny.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[name].numpy(), tensor.numpy(), err_msg=name)
    with pytest.raises(WeightsError, match="a DAC-VAE checkpoint, not a DAC model; load it with dac_jax.load_vae"):
        dac_jax.load_model(exported)
