"""compress.py with DAC-VAE: latent files from real audio trees and back, the round trip, real errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import dac_jax
from dac_jax.codec import latentfile
from tests.requires import require_reference
from tests.test_cli import BAD_INPUTS, clip, make_tree, run, write_bad_inputs


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return dac_jax.init_vae("vae-tiny", seed=0).save(tmp_path_factory.mktemp("w") / "vae")


def test_encode_decode_a_tree_through_latent_files(tmp_path, weights):
    expected = make_tree(tmp_path / "in")
    res = run("encode", tmp_path / "in", "--output", tmp_path / "lat", "--weights_path", weights,
              "--win_duration", "0.1", "--batch_size", "3", "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("encoded 3 files: 2.6 s of audio in ")
    assert sorted(str(p.relative_to(tmp_path / "lat")) for p in (tmp_path / "lat").rglob("*") if p.is_file()) == [
        "a/b/x.npz", "a/y.npz", "z.npz"]
    f = latentfile.load(tmp_path / "lat" / "a" / "y.npz")
    assert (f.channels, f.original_sample_rate, f.sample_rate, f.latent_dim, f.latent) == (2, 44100, 24000, 8, "mean")

    res = run("decode", tmp_path / "lat", "--output", tmp_path / "out", "--weights_path", weights, "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("decoded 3 files: 2.6 s of audio in ")
    for stem, (rate, channels, frames) in expected.items():
        info = sf.info(str(tmp_path / "out" / f"{stem}.wav"))
        assert (info.samplerate, info.channels, info.frames) == (rate, channels, frames), stem

    # --mode encode_decode: the same audio in one step, no latent files
    res = run("encode", tmp_path / "in", "--output", tmp_path / "rt", "--weights_path", weights,
              "--mode", "encode_decode", "--win_duration", "0.1", "--quiet", module=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("round-tripped 3 files: 2.6 s of audio in ")
    assert not list((tmp_path / "rt").rglob("*.npz"))
    for stem in expected:
        a, _ = sf.read(tmp_path / "out" / f"{stem}.wav")
        b, _ = sf.read(tmp_path / "rt" / f"{stem}.wav")
        np.testing.assert_array_equal(a, b)


def test_seed_samples_and_normalize_db_is_recorded(tmp_path, weights):
    sf.write(tmp_path / "a.wav", clip(0.5, 24000), 24000)
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "o", "--weights_path", weights,
              "--seed", "4", "--normalize_db", "-20", "--quiet")
    assert res.returncode == 0, res.stderr
    f = latentfile.load(tmp_path / "o" / "a.npz")
    assert (f.latent, f.seed, f.normalize_db) == ("sample", 4, -20.0) and not np.allclose(f.z, f.mu)


def test_a_bare_state_dict_needs_the_model_type_and_checkpoints_convert(tmp_path, weights):
    torch = require_reference("torch")

    vae = dac_jax.load_vae(weights)
    ckpt = vae.export_torch(tmp_path / "checkpoint.pt")
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(ckpt, weights_only=True)["generator"], bare)
    sf.write(tmp_path / "a.wav", clip(0.4, 24000), 24000)
    # the checkpoint carries its config; --model_type only says "a DAC-VAE"
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "o", "--weights_path", ckpt,
              "--model_type", "vae24khz-x2", "--quiet")
    assert res.returncode == 0, res.stderr
    # a bare state dict takes the preset's architecture, which this tiny model is not: a strict key error
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "o2", "--weights_path", bare,
              "--model_type", "vae24khz-x2", "--quiet")
    assert res.returncode == 1 and res.stderr.startswith("error: ") and "bare.pt" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "o2").exists()
    # a DAC-VAE checkpoint given as a DAC says what it is
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "o3", "--weights_path", ckpt, "--quiet")
    assert res.returncode == 1 and "a DAC-VAE checkpoint" in res.stderr and "--model_type vae24khz" in res.stderr

    res = run("convert", ckpt, tmp_path / "folder", "--model_type", "vae24khz-x2")
    assert res.returncode == 0, res.stderr
    assert "DAC-VAE 24000 Hz, 8 latent dims" in res.stdout
    back = dac_jax.load_vae(tmp_path / "folder")
    assert back.config == vae.config
    res = run("export", tmp_path / "folder", tmp_path / "again.pt")
    assert res.returncode == 0, res.stderr
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    original = torch.load(ckpt, weights_only=True)
    assert again["config"] == original["config"] and again["generator"].keys() == original["generator"].keys()


def test_bad_files_are_reported_and_the_rest_still_run(tmp_path, weights):
    src = tmp_path / "in"
    write_bad_inputs(src, 24000)
    sf.write(src / "silence.wav", np.zeros((2000, 1)), 24000)
    sf.write(src / "short.wav", clip(0.0001, 24000), 24000)  # 2 samples, less than one hop
    res = run("encode", src, "--output", tmp_path / "out", "--weights_path", weights, "--quiet")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() + res.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4, res.stdout + res.stderr
    for name in BAD_INPUTS:
        assert any(name in e for e in errors), name
    assert "Traceback" not in res.stderr and "encoded 3 files, 4 failed" in res.stdout
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["good.npz", "short.npz", "silence.npz"]

    # decoding: a corrupt file and another model's latents are reported; the rest decode
    (tmp_path / "out" / "corrupt.npz").write_bytes((tmp_path / "out" / "good.npz").read_bytes()[:500])
    other = dac_jax.init_vae(dac_jax.VAEConfig(encoder_dim=4, encoder_rates=(2, 3), latent_dim=8, decoder_dim=16,
                                               decoder_rates=(3, 2), sample_rate=24000)).save(tmp_path / "other")
    sf.write(tmp_path / "b.wav", clip(0.3, 24000), 24000)
    assert run("encode", tmp_path / "b.wav", "--output", tmp_path / "out", "--weights_path", other,
               "--quiet").returncode == 0
    res = run("decode", tmp_path / "out", "--output", tmp_path / "dec", "--weights_path", weights, "--quiet")
    assert res.returncode == 1 and "decoded 3 files, 2 failed" in res.stdout
    out = res.stdout + res.stderr
    assert "corrupt.npz: not a latent file" in out and "b.npz: latents of another DAC-VAE (decoder_dim=16 (model: 32))" in out
    assert sorted(p.name for p in (tmp_path / "dec").rglob("*")) == ["good.wav", "short.wav", "silence.wav"]
    silent, _ = sf.read(tmp_path / "dec" / "silence.wav")
    short, _ = sf.read(tmp_path / "dec" / "short.wav")
    assert silent.shape == (2000,) and np.all(np.isfinite(silent)) and short.shape == (2,)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n_quantizers", "3"], "--n_quantizers applies to DAC codes"),
        (["--mode", "faithful"], "--mode faithful is the original DAC's chunking"),
        (["--batch_size", "0"], "argument --batch_size: must be a whole number 1..65536; got 0"),
        (["--win_duration", "-1"], "argument --win_duration: must be a finite number > 0"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, weights, args, message):
    sf.write(tmp_path / "a.wav", clip(0.3, 24000), 24000)
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "o", "--weights_path", weights, *args)
    assert res.returncode == (2 if "argument" in message else 1)  # argparse's own code for a bad flag value
    assert "error: " in res.stderr and message in res.stderr and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_dac_flags_and_missing_weights(tmp_path):
    sf.write(tmp_path / "a.wav", clip(0.3, 16000), 16000)
    dac = dac_jax.init_model("tiny").save(tmp_path / "dac")
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "o", "--weights_path", dac, "--seed", "1")
    assert res.returncode == 1 and "--seed samples DAC-VAE latents" in res.stderr
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "o", "--model_type", "vae24khz-x3")
    assert res.returncode == 1 and "pass --weights_path" in res.stderr and not (tmp_path / "o").exists()
    # the DAC round trip too, in place of the input is refused
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path, "--weights_path", dac, "--mode", "encode_decode",
              "--quiet")
    assert res.returncode == 1 and "is an input of this run" in res.stderr
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "rt", "--weights_path", dac, "--mode",
              "encode_decode", "--quiet")
    assert res.returncode == 0 and sf.info(str(tmp_path / "rt" / "a.wav")).frames == sf.info(str(tmp_path / "a.wav")).frames
