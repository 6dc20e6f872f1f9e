"""The Hugging Face format against the installed transformers: DacModel folders read without torch,
exported folders that transformers loads, the original's .pth and its HF conversion agreeing, hub ids
found in the hub's cache (its real layout), and one-line errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import dac_jax
from dac_jax.errors import WeightsError
from dac_jax.model.config import PRESETS
from dac_jax.nn.layers import weight_norm
from dac_jax.weights import hf_format, hub
from dac_jax.weights.torch_format import expected_parameters, variables_to_state_dict
from tests import reference
from tests.requires import require_reference

ROOT = Path(__file__).resolve().parents[2]

# the three hub checkpoints' configurations, as transformers names them (descript/dac_*/config.json)
RELEASED = {
    "44khz": dict(encoder_hidden_size=64, downsampling_ratios=[2, 4, 8, 8], decoder_hidden_size=1536,
                  n_codebooks=9, codebook_size=1024, codebook_dim=8, sampling_rate=44100),
    "24khz": dict(encoder_hidden_size=64, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=1536,
                  n_codebooks=32, codebook_size=1024, codebook_dim=8, sampling_rate=24000),
    "16khz": dict(encoder_hidden_size=64, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=1536,
                  n_codebooks=12, codebook_size=1024, codebook_dim=8, sampling_rate=16000),
}
TINY = dict(encoder_hidden_size=4, downsampling_ratios=[2, 4], decoder_hidden_size=32, n_codebooks=4,
            codebook_size=32, codebook_dim=4, sampling_rate=16000)


def transformers():
    return require_reference("transformers")


def hf_model(seed: int, weight_norm_applied: bool = False, **config):
    torch = require_reference("torch")
    tf = transformers()
    torch.manual_seed(seed)
    model = tf.DacModel(tf.DacConfig(**config)).eval()
    if weight_norm_applied:
        model.apply_weight_norm()
    return model


def remove_weight_norm(model):
    """Fold every parametrised weight norm back into a plain weight (transformers' own
    ``remove_weight_norm`` handles only the legacy hooks)."""
    torch = require_reference("torch")
    for module in model.modules():
        if torch.nn.utils.parametrize.is_parametrized(module, "weight"):
            torch.nn.utils.parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def signal(sample_rate: int, hop: int, frames: int) -> np.ndarray:
    speech = reference.test_signals(sample_rate, lengths=(frames * hop / sample_rate,))["speech"]
    return speech[:, :, : frames * hop]


def hf_encode_decode(model, audio: np.ndarray):
    torch = require_reference("torch")
    with torch.no_grad():
        codes = model.encode(torch.from_numpy(audio)).audio_codes
        return codes.numpy(), model.decode(audio_codes=codes).audio_values.numpy()


def read_tensors(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def write_tensors(folder: Path, tensors: dict) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def from_pretrained(folder: Path):
    model, info = transformers().DacModel.from_pretrained(str(folder), output_loading_info=True)
    return model.eval(), info


# --------------------------------------------------------------------------------------------
# The released configurations against transformers
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RELEASED))
def test_released_configs_equal_transformers_both_ways(name, tmp_path):
    model = hf_model(seed=1, **RELEASED[name])
    model.save_pretrained(tmp_path / "hf")
    codec = dac_jax.load_model(tmp_path / "hf")
    assert codec.config == dataclasses.replace(PRESETS[name], quantizer_dropout=0.0)
    audio = signal(codec.sample_rate, codec.hop_length, frames=40)
    hf_codes, hf_audio = hf_encode_decode(model, audio)
    codes = np.asarray(codec.encode(audio))
    assert codes.shape == hf_codes.shape
    assert (codes[:, 0] == hf_codes[:, 0]).all()
    assert (codes == hf_codes).mean() >= 0.999
    assert len(np.unique(codes[:, 0])) > 5  # the comparison is not between constant codes
    ours = np.asarray(codec.decode(hf_codes))[:, 0]
    assert np.abs(hf_audio).max() > 1e-2  # transformers' init gives peaks of 0.017-0.031 here
    np.testing.assert_allclose(ours, hf_audio, rtol=0, atol=5e-7)  # measured <= 4.3e-8

    # exported back: transformers loads it with nothing missing or unexpected, bit for bit
    out = codec.export_hf(tmp_path / "exported")
    again, info = from_pretrained(out)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    before, after = read_tensors(tmp_path / "hf"), read_tensors(out)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    codes2, audio2 = hf_encode_decode(again, audio)
    np.testing.assert_array_equal(codes2, hf_codes)
    np.testing.assert_array_equal(audio2, hf_audio)


def test_tiny_config_equals_transformers_and_needs_no_torch(tmp_path):
    model = hf_model(seed=2, **TINY)
    model.save_pretrained(tmp_path / "hf")
    audio = signal(16000, 8, frames=64)
    hf_codes, hf_audio = hf_encode_decode(model, audio)
    np.save(tmp_path / "x.npy", audio)
    np.save(tmp_path / "codes.npy", hf_codes)
    np.save(tmp_path / "audio.npy", hf_audio)
    # in a fresh interpreter where torch and transformers cannot be imported
    script = f"""
import sys, importlib.abc


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {{"torch", "transformers", "tensorflow"}}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")


sys.meta_path.insert(0, Absent())
import numpy as np, dac_jax
codec = dac_jax.load_model({str(tmp_path / 'hf')!r})
codes = np.asarray(codec.encode(np.load({str(tmp_path / 'x.npy')!r})))
want = np.load({str(tmp_path / 'codes.npy')!r})
assert (codes[:, 0] == want[:, 0]).all() and (codes == want).mean() >= 0.999, (codes == want).mean()
audio = np.asarray(codec.decode(want))[:, 0]
err = np.abs(audio - np.load({str(tmp_path / 'audio.npy')!r})).max()
assert err < 1e-7, err  # measured 5.6e-9 (peak 0.0097)
codec.export_hf({str(tmp_path / 'out')!r})
print("ok", err)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok"), res.stdout
    before, after = read_tensors(tmp_path / "hf"), read_tensors(tmp_path / "out")
    assert all(np.array_equal(before[k], after[k]) for k in before) and before.keys() == after.keys()


# --------------------------------------------------------------------------------------------
# Weight-norm spellings
# --------------------------------------------------------------------------------------------


def _effective(variables) -> dict:
    """Every conv's ``w = v * g / ||v||`` and every other parameter, by original key."""
    state = variables_to_state_dict(variables)
    out = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            value = np.asarray(weight_norm(value, state[key[:-1] + "g"]))
        out[key] = value
    return out


def test_both_weight_norm_spellings_load_to_the_same_variables(tmp_path):
    model = hf_model(seed=3, weight_norm_applied=True, **TINY)
    model.save_pretrained(tmp_path / "param")
    keys = set(read_tensors(tmp_path / "param"))
    assert any(k.endswith(".parametrizations.weight.original0") for k in keys)
    parametrized = dac_jax.load_model(tmp_path / "param")

    # the legacy spelling, as older transformers wrote it
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "config.json").write_text((tmp_path / "param" / "config.json").read_text())
    legacy_tensors = {k.replace(".parametrizations.weight.original0", ".weight_g")
                      .replace(".parametrizations.weight.original1", ".weight_v"): v
                      for k, v in read_tensors(tmp_path / "param").items()}
    write_tensors(tmp_path / "legacy", legacy_tensors)
    legacy = dac_jax.load_model(tmp_path / "legacy")
    jax.tree_util.tree_map(np.testing.assert_array_equal, parametrized.variables, legacy.variables)

    # plain weights (weight norm removed, as the hub checkpoints are): the same network
    remove_weight_norm(model)
    model.save_pretrained(tmp_path / "plain")
    plain = dac_jax.load_model(tmp_path / "plain")
    a, b = _effective(parametrized.variables), _effective(plain.variables)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=2e-6, atol=1e-7, err_msg=key)
    audio = signal(16000, 8, frames=64)
    np.testing.assert_array_equal(np.asarray(parametrized.encode(audio)), np.asarray(plain.encode(audio)))

    # one conv in two spellings is refused, naming both keys
    both = dict(legacy_tensors)
    both["encoder.conv1.weight"] = np.asarray(b["encoder.block.0.weight_v"])
    (tmp_path / "both").mkdir()
    (tmp_path / "both" / "config.json").write_text((tmp_path / "param" / "config.json").read_text())
    write_tensors(tmp_path / "both", both)
    with pytest.raises(WeightsError, match="two weight-norm spellings") as e:
        dac_jax.load_model(tmp_path / "both")
    assert "encoder.conv1.weight and encoder.conv1.weight_g and encoder.conv1.weight_v" in str(e.value)


def test_key_map_is_derived_from_the_tree(tmp_path):
    model = hf_model(seed=4, **RELEASED["16khz"])
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: shape for k, (_, shape) in hf_format.expected_hf(PRESETS["16khz"]).items()}
    assert got == want
    # every original key is covered once (a conv's weight_v and weight_g by one weight)
    originals = {o for o, _ in hf_format.expected_hf(PRESETS["16khz"]).values()}
    expected = set(expected_parameters(PRESETS["16khz"]))
    assert originals == {k for k in expected if not k.endswith(".weight_g")}


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path):
    model = hf_model(seed=5, **TINY)
    model.save_pretrained(tmp_path / "hf")
    tensors = read_tensors(tmp_path / "hf")
    del tensors["decoder.block.1.res_unit3.conv2.bias"]
    tensors["encoder.block.0.res_unit4.snake1.alpha"] = np.ones((1, 4, 1), np.float32)
    tensors["quantizer.quantizers.0.codebook.weight"] = np.zeros((33, 4), np.float32)
    write_tensors(tmp_path / "hf", tensors)
    with pytest.raises(WeightsError) as e:
        dac_jax.load_model(tmp_path / "hf")
    text = str(e.value)
    for expected in ("missing keys (1)", "decoder.block.1.res_unit3.conv2.bias", "unexpected keys (1)",
                     "encoder.block.0.res_unit4.snake1.alpha", "mis-shaped keys (1)",
                     "quantizer.quantizers.0.codebook.weight: file (33, 4), model (32, 4)"):
        assert expected in text


def test_config_errors_are_one_line(tmp_path):
    model = hf_model(seed=6, **TINY)
    model.save_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    for change, message in (({"hidden_size": 17}, "hidden_size is 17"),
                            ({"n_codebooks": 0}, "does not describe a DAC model"),
                            ({"model_type": "encodec"}, "not a Hugging Face DAC config")):
        (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(Exception, match=message) as e:
            dac_jax.load_model(tmp_path / "hf")
        assert "\n" not in str(e.value)
    (tmp_path / "hf" / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "codebook_dim"}))
    with pytest.raises(WeightsError, match="missing codebook_dim"):
        dac_jax.load_model(tmp_path / "hf")
    # what transformers' DAC cannot express is refused on export
    odd = dac_jax.init_model(dataclasses.replace(PRESETS["tiny"], decoder_rates=(2, 4)))
    with pytest.raises(WeightsError, match="encoder's rates reversed"):
        odd.export_hf(tmp_path / "odd")
    assert not (tmp_path / "odd").exists()


# --------------------------------------------------------------------------------------------
# The original's .pth and its Hugging Face conversion
# --------------------------------------------------------------------------------------------


def convert_like_transformers(original, hf, keep_weight_norm: bool):
    """The conversion transformers' script does, by module order: within the encoder, quantizer and
    decoder both models list their convs, Snakes and codebooks in the same order (independent of
    dac-jax's key map)."""
    torch = require_reference("torch")

    kinds = (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Embedding)

    def kind(m):
        return next((k.__name__ for k in kinds if isinstance(m, k)), "Snake1d" if hasattr(m, "alpha") else None)

    def leaves(module):
        return [m for m in module.modules() if kind(m)]

    hf.apply_weight_norm()
    pairs = [pair for part in ("encoder", "quantizer", "decoder")
             for pair in zip(leaves(getattr(original, part)), leaves(getattr(hf, part)), strict=True)]
    with torch.no_grad():
        for a, b in pairs:
            assert kind(a) == kind(b), (a, b)
            if hasattr(a, "alpha"):
                b.alpha.copy_(a.alpha)
            elif isinstance(a, torch.nn.Embedding):
                b.weight.copy_(a.weight)
            else:
                b.parametrizations.weight.original0.copy_(a.weight_g)
                b.parametrizations.weight.original1.copy_(a.weight_v)
                b.bias.copy_(a.bias)
    if not keep_weight_norm:
        remove_weight_norm(hf)
    return hf


def test_original_pth_and_its_hf_conversion_give_the_same_model(reference_dir, tmp_path):
    pth = reference.reference_checkpoint("16khz", reference_dir)
    original = reference.load_torch(pth)
    from_pth = dac_jax.load_model(pth)
    audio = signal(16000, 320, frames=20)
    codes = np.asarray(from_pth.encode(audio))
    for keep in (True, False):
        hf = convert_like_transformers(original, hf_model(seed=0, **RELEASED["16khz"]), keep)
        hf.save_pretrained(tmp_path / f"hf-{keep}")
        from_hf = dac_jax.load_model(tmp_path / f"hf-{keep}")
        if keep:  # weight norm kept: the very same variables
            jax.tree_util.tree_map(np.testing.assert_array_equal, from_pth.variables, from_hf.variables)
        else:  # plain weights, as on the hub: the same network up to float32 rounding
            a, b = _effective(from_pth.variables), _effective(from_hf.variables)
            for key in a:
                np.testing.assert_allclose(a[key], b[key], rtol=3e-6, atol=1e-8, err_msg=key)
            np.testing.assert_array_equal(np.asarray(from_hf.encode(audio)), codes)
        hf_codes, _ = hf_encode_decode(hf, audio)
        np.testing.assert_array_equal(hf_codes, codes)


# --------------------------------------------------------------------------------------------
# Hub ids and the hub's cache
# --------------------------------------------------------------------------------------------


def populate_cache(cache: Path, repo_id: str, folder: Path, commit: str = "a" * 40) -> Path:
    """Lay ``folder``'s files out as huggingface_hub does: blobs by hash, snapshot symlinks, a ref."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args, env):
    return subprocess.run([sys.executable, "-m", "dac_jax", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=ROOT, timeout=300)


def test_hub_id_is_found_in_the_hub_cache(tmp_path, monkeypatch):
    codec = dac_jax.init_model("tiny", seed=7)
    codec.export_hf(tmp_path / "export")
    home = tmp_path / "hf-home"
    snapshot = populate_cache(home / "hub", "descript/dac_16khz", tmp_path / "export")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.cache_folder() == home / "hub"
    # the layout is huggingface_hub's own: it finds the same snapshot
    huggingface_hub = require_reference("huggingface_hub")
    found = huggingface_hub.snapshot_download("descript/dac_16khz", cache_dir=str(home / "hub"), local_files_only=True)
    assert Path(found) == snapshot == hub.cached_snapshot("descript/dac_16khz")
    loaded = dac_jax.load_model("descript/dac_16khz")
    assert loaded.source == str(snapshot)
    direct = dac_jax.load_model(tmp_path / "export")
    jax.tree_util.tree_map(np.testing.assert_array_equal, direct.variables, loaded.variables)
    # a revision: a commit directly, or a ref that is not there
    assert dac_jax.load_model("descript/dac_16khz", tag="a" * 40).source == str(snapshot)
    with pytest.raises(WeightsError, match="revision v2.*HF_HUB_OFFLINE is set"):
        dac_jax.load_model("descript/dac_16khz", tag="v2")
    # HF_HUB_CACHE wins over HF_HOME, as in huggingface_hub
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(WeightsError, match="not in the Hugging Face cache at .*elsewhere"):
        dac_jax.load_model("descript/dac_16khz")


def test_hub_cli_uses_the_cache_and_fails_in_one_line_offline_or_unreachable(tmp_path):
    codec = dac_jax.init_model("tiny", seed=8)
    codec.export_hf(tmp_path / "export")
    home = tmp_path / "hf-home"
    populate_cache(home / "hub", "descript/dac_16khz", tmp_path / "export")
    env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "", "DAC_JAX_COMPILATION_CACHE": "0"}
    res = run_cli("convert", "descript/dac_16khz", tmp_path / "native", env=env)
    assert res.returncode == 0, res.stderr
    jax.tree_util.tree_map(np.testing.assert_array_equal, dac_jax.load_model(tmp_path / "export").variables,
                           dac_jax.load_model(tmp_path / "native").variables)

    # the codec commands take a hub id as --weights_path, and --model_tag as its revision
    import soundfile

    soundfile.write(tmp_path / "x.wav", signal(16000, 8, frames=200)[0, 0], 16000)
    res = run_cli("encode", tmp_path / "x.wav", "--weights_path", "descript/dac_16khz", "--model_tag", "a" * 40,
                  "--output", tmp_path / "codes", "--quiet", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "codes" / "x.dac").is_file()
    res = run_cli("encode", tmp_path / "x.wav", "--weights_path", tmp_path / "export", "--model_tag", "v2",
                  "--output", tmp_path / "codes2", env=env)
    assert res.returncode == 1 and "--model_tag v2: a tag or revision applies to" in res.stderr
    assert not (tmp_path / "codes2").exists()

    res = run_cli("convert", "descript/dac_44khz", tmp_path / "n2", env=env)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "descript/dac_44khz" in res.stderr and "HF_HUB_OFFLINE is set" in res.stderr
    # online but the hub unreachable: huggingface_hub's failure in one line
    env = {**env, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    res = run_cli("convert", "descript/dac_44khz", tmp_path / "n3", env=env)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "could not download from the Hugging Face hub" in res.stderr
    assert not (tmp_path / "n2").exists() and not (tmp_path / "n3").exists()


def test_export_cli_writes_a_folder_transformers_loads_and_refuses_others(tmp_path):
    codec = dac_jax.init_model("tiny", seed=9)
    codec.save(tmp_path / "native")
    env = {"DAC_JAX_COMPILATION_CACHE": "0"}
    res = run_cli("export", tmp_path / "native", tmp_path / "hf", "--format", "hf", env=env)
    assert res.returncode == 0, res.stderr
    model, info = from_pretrained(tmp_path / "hf")
    assert not info["missing_keys"] and not info["unexpected_keys"]
    audio = signal(16000, 8, frames=64)
    hf_codes, hf_audio = hf_encode_decode(model, audio)
    np.testing.assert_array_equal(np.asarray(codec.encode(audio)), hf_codes)
    np.testing.assert_allclose(np.asarray(codec.decode(hf_codes))[:, 0], hf_audio, rtol=0, atol=2e-6)  # measured 2.4e-7

    # an earlier export is replaced only with --overwrite; a user's folder never
    res = run_cli("export", tmp_path / "native", tmp_path / "hf", "--format", "hf", env=env)
    assert res.returncode == 1 and "pass --overwrite" in res.stderr
    assert run_cli("export", tmp_path / "native", tmp_path / "hf", "--format", "hf", "--overwrite",
                   env=env).returncode == 0
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    res = run_cli("export", tmp_path / "native", user, "--format", "hf", "--overwrite", env=env)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "holds more than a Hugging Face DAC checkpoint" in res.stderr
    assert os.listdir(user) == ["notes.txt"]
    # transformers has no DAC-VAE
    res = run_cli("export", tmp_path / "native", tmp_path / "v", "--format", "hf", "--model_type", "vae24khz-x2", env=env)
    assert res.returncode == 1 and "no DAC-VAE model" in res.stderr and not (tmp_path / "v").exists()
