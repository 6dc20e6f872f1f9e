"""Importing, converting and exporting weights: strictness, both key styles, formats, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest

import dac_jax
from dac_jax.errors import EquivalenceError, WeightsError
from dac_jax.model.config import PRESETS
from dac_jax.weights import registry
from dac_jax.weights.torch_format import expected_parameters, torch_key
from tests import reference

ROOT = Path(__file__).resolve().parents[2]
SIGNAL = reference.test_signals(16000, lengths=(0.25, 0.2))["speech"]


def run_cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dac_jax", *map(str, args)],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=600,
    )


@pytest.fixture(scope="module")
def tiny_pth(reference_dir):
    return reference.reference_checkpoint("tiny", reference_dir, seed=3)


def torch_state(path):
    import torch

    return torch.load(path, weights_only=True)


def save_state(path, state_dict, metadata):
    import torch

    torch.save({"state_dict": state_dict, "metadata": metadata}, path)
    return path


def test_key_map_is_derived_from_the_tree_and_covers_the_original(tiny_pth):
    ckpt = torch_state(tiny_pth)
    expected = expected_parameters(PRESETS["tiny"])
    assert set(expected) == set(ckpt["state_dict"])
    assert {k: v for k, (_, v) in expected.items()} == {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
    assert torch_key(("encoder", "block_1", "block_0", "block_1", "weight_v")) == "encoder.block.1.block.0.block.1.weight_v"


def test_released_44khz_key_count(reference_dir):
    # DAC_SPEC 2: 301 keys for 44 kHz, 462 for 24 kHz, 322 for 16 kHz, 364 for 44k-16kbps
    counts = {p: len(expected_parameters(PRESETS[p])) for p in ("44khz", "24khz", "16khz", "44khz-16kbps")}
    assert counts == {"44khz": 301, "24khz": 462, "16khz": 322, "44khz-16kbps": 364}


def test_config_comes_from_the_file_kwargs(tiny_pth):
    codec = dac_jax.load_model(tiny_pth)
    tiny = PRESETS["tiny"]
    # the original saves quantizer_dropout as its default (False): only training cares
    assert codec.config == type(tiny)(**{**tiny.to_kwargs(), "quantizer_dropout": 0.0})


def test_parametrizations_key_style_loads_equal(tiny_pth, tmp_path):
    """PyTorch >= 2.1 saves weight norm as parametrizations.weight.original0/1: both styles load."""
    state = reference.to_parametrizations(reference.load_torch(tiny_pth)).state_dict()
    assert any(k.endswith("parametrizations.weight.original0") for k in state)
    new_style = save_state(tmp_path / "new.pth", state, torch_state(tiny_pth)["metadata"])
    out_old = dac_jax.load_model(tiny_pth)(SIGNAL)
    out_new = dac_jax.load_model(new_style)(SIGNAL)
    np.testing.assert_array_equal(out_old.codes, out_new.codes)
    np.testing.assert_allclose(out_old.audio, out_new.audio, atol=1e-5)


def test_missing_extra_and_misshaped_keys_are_all_listed(tiny_pth, tmp_path):
    ckpt = torch_state(tiny_pth)
    state = dict(ckpt["state_dict"])
    del state["decoder.model.0.bias"]
    del state["quantizer.quantizers.1.codebook.weight"]
    state["encoder.block.9.weight_v"] = state["encoder.block.0.weight_v"]
    state["encoder.block.0.weight_g"] = state["encoder.block.0.weight_g"][:2]
    bad = save_state(tmp_path / "bad.pth", state, ckpt["metadata"])
    with pytest.raises(WeightsError) as err:
        dac_jax.load_model(bad)
    msg = str(err.value)
    assert str(bad) in msg
    assert "missing keys (2)" in msg and "decoder.model.0.bias" in msg and "quantizer.quantizers.1.codebook.weight" in msg
    assert "unexpected keys (1)" in msg and "encoder.block.9.weight_v" in msg
    assert "mis-shaped keys (1)" in msg and "encoder.block.0.weight_g: file (2, 1, 1), model (4, 1, 1)" in msg


def test_kwargs_that_disagree_with_the_weights_are_rejected(tiny_pth, tmp_path):
    ckpt = torch_state(tiny_pth)
    kwargs = {**ckpt["metadata"]["kwargs"], "n_codebooks": 5}
    bad = save_state(tmp_path / "kw.pth", ckpt["state_dict"], {"kwargs": kwargs})
    with pytest.raises(WeightsError, match=r"(?s)missing keys \(7\).*quantizer\.quantizers\.4"):
        dac_jax.load_model(bad)


def test_bare_state_dict_needs_a_config(tiny_pth, tmp_path):
    import torch

    bare = tmp_path / "bare.pth"
    torch.save(torch_state(tiny_pth)["state_dict"], bare)
    with pytest.raises(WeightsError, match="no metadata.kwargs"):
        dac_jax.load_model(bare)
    codec = dac_jax.load_model(bare, config=PRESETS["tiny"])
    np.testing.assert_array_equal(codec.encode(SIGNAL), dac_jax.load_model(tiny_pth).encode(SIGNAL))


def test_unreadable_and_unsafe_files_are_rejected(tmp_path, tiny_pth):
    import torch

    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(WeightsError, match="junk.pth: not a readable PyTorch checkpoint"):
        dac_jax.load_model(junk)
    # a pickle that would construct an arbitrary object is refused, not executed
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": torch_state(tiny_pth)["state_dict"], "metadata": {"kwargs": {}, "x": Path("/")}}, unsafe)
    with pytest.raises(WeightsError, match="unsafe.pth: not a readable PyTorch checkpoint"):
        dac_jax.load_model(unsafe)
    with pytest.raises(WeightsError, match="no such file or folder"):
        dac_jax.load_model(tmp_path / "absent.pth")


def test_native_round_trip_is_exact_and_needs_no_torch(tiny_pth, tmp_path):
    codec = dac_jax.load_model(tiny_pth)
    out_dir = codec.save(tmp_path / "native")
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "params.msgpack"]
    again = dac_jax.load_model(out_dir)
    assert again.config == codec.config
    import jax

    jax.tree_util.tree_map(np.testing.assert_array_equal, codec.variables, again.variables)
    np.save(tmp_path / "x.npy", SIGNAL)
    np.save(tmp_path / "codes.npy", np.asarray(codec.encode(SIGNAL)))
    # in a fresh interpreter where importing torch fails
    script = f"""
import sys, importlib.abc


class Absent(importlib.abc.MetaPathFinder):  # as if not installed (None in sys.modules trips scipy)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {{"torch", "tensorflow"}}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")


sys.meta_path.insert(0, Absent())
import numpy as np, dac_jax
codec = dac_jax.load_model({str(out_dir)!r})
codes = np.asarray(codec.encode(np.load({str(tmp_path / 'x.npy')!r})))
assert (codes == np.load({str(tmp_path / 'codes.npy')!r})).all()
print("ok", codes.shape)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")


def test_native_folder_errors(tmp_path, tiny_pth):
    codec = dac_jax.load_model(tiny_pth)
    folder = codec.save(tmp_path / "n")
    (folder / "params.msgpack").write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="params.msgpack"):
        dac_jax.load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="config.json: invalid JSON"):
        dac_jax.load_model(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError, match="not a dac-jax checkpoint"):
        dac_jax.load_model(empty)


def test_export_round_trip_equals_the_original_state_dict(tiny_pth, tmp_path):
    import torch

    exported = dac_jax.load_model(tiny_pth).export_torch(tmp_path / "exported.pth")
    original, ours = torch_state(tiny_pth)["state_dict"], torch_state(exported)["state_dict"]
    assert set(original) == set(ours)
    for key in original:
        assert torch.equal(original[key], ours[key]), key
    # and the original loads it and computes the same as from its own file
    x = torch.from_numpy(SIGNAL)
    with torch.no_grad():
        a = reference.load_torch(tiny_pth)(x)["audio"]
        b = reference.load_torch(exported)(x)["audio"]
    assert torch.equal(a, b)


def test_import_is_import_free_of_torch_and_tensorflow():
    script = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "tensorflow", "dac", "audiotools"}:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
import dac_jax
from dac_jax.weights import native, registry, torch_format
print(sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "tensorflow"}))
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_reading_a_pth_without_torch_says_what_to_install(tiny_pth):
    script = f"""
import sys, importlib.abc


class Absent(importlib.abc.MetaPathFinder):  # as if not installed (None in sys.modules trips scipy)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {{"torch"}}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")


sys.meta_path.insert(0, Absent())
import dac_jax
try:
    dac_jax.load_model({str(tiny_pth)!r})
except dac_jax.MissingDependencyError as e:
    print(e)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "pip install 'dac-jax[torch]'" in res.stdout, res.stderr


# -- CLI -------------------------------------------------------------------------------------------


def test_convert_cli_with_verify(tiny_pth, tmp_path):
    out = tmp_path / "converted"
    res = run_cli("convert", tiny_pth, out, "--verify", "--duration", "0.5")
    assert res.returncode == 0, res.stderr
    assert "PASS: codes equal 100.000% (codebook 0: 100.000%)" in res.stdout
    assert (out / "config.json").is_file() and (out / "params.msgpack").is_file()
    np.testing.assert_array_equal(dac_jax.load_model(out).encode(SIGNAL), dac_jax.load_model(tiny_pth).encode(SIGNAL))


def test_export_cli(tiny_pth, tmp_path):
    folder = dac_jax.load_model(tiny_pth).save(tmp_path / "native")
    res = run_cli("export", folder, tmp_path / "back.pth")
    assert res.returncode == 0, res.stderr
    assert set(torch_state(tmp_path / "back.pth")["state_dict"]) == set(torch_state(tiny_pth)["state_dict"])


def test_cli_errors_are_one_line_and_write_nothing(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    res = run_cli("convert", junk, tmp_path / "out")
    assert res.returncode == 1
    assert res.stderr.startswith("error: ") and "junk.pth" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["junk.pth"]


def test_verify_detects_a_model_that_is_not_the_original(tiny_pth, reference_dir):
    other = dac_jax.load_model(reference.reference_checkpoint("tiny", reference_dir, seed=4))
    with pytest.raises(EquivalenceError, match="FAIL"):
        from dac_jax.weights.verify import verify_against_reference

        verify_against_reference(other, tiny_pth, duration=0.25)


# -- the released-checkpoint registry --------------------------------------------------------------


def test_cache_paths_are_the_originals(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert registry.cache_path("44khz") == tmp_path / ".cache/descript/dac/weights_44khz_8kbps_0.0.1.pth"
    assert registry.cache_path("44khz-16kbps") == tmp_path / ".cache/descript/dac/weights_44khz_16kbps_1.0.0.pth"
    assert registry.cache_path("24khz").name == "weights_24khz_8kbps_0.0.4.pth"
    assert registry.cache_path("16khz").name == "weights_16khz_8kbps_0.0.5.pth"
    with pytest.raises(WeightsError, match="no released DAC model 32khz"):
        registry.cache_path("32khz")


def test_model_type_loads_from_the_cache_or_says_how_to_get_it(monkeypatch, tmp_path, tiny_pth):
    monkeypatch.setenv("HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(registry.urllib.request, "urlopen", offline)
    with pytest.raises(WeightsError) as err:
        dac_jax.load_model("16khz")
    assert "weights_16khz.pth" in str(err.value) and str(registry.cache_path("16khz")) in str(err.value)
    assert not registry.cache_path("16khz").exists()  # nothing half-written
    # a file in the original's cache is used without any download
    cached = registry.cache_path("16khz")
    cached.parent.mkdir(parents=True, exist_ok=True)  # the failed attempt may have left its lock file there
    cached.write_bytes(Path(tiny_pth).read_bytes())
    assert dac_jax.load_model("16khz").source == str(cached)
