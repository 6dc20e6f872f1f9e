"""``python -m dac_jax evaluate`` and ``evaluate.py`` end to end: real files, real subprocesses."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dac_jax
from dac_jax.audio.io import read_audio
from dac_jax.evaluate import metrics
from tests.evaluate.signals import chord, degrade, voice, write
from tests.requires import require_reference

ROOT = Path(__file__).resolve().parents[2]
FAST = "mel,stft,waveform,sisdr"


def run(*args, script=None):
    cmd = [sys.executable, str(ROOT / script)] if script else [sys.executable, "-m", "dac_jax", "evaluate"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def rows(folder: Path) -> dict[str, dict]:
    with open(folder / "metrics.csv", newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return dac_jax.init_model("tiny", seed=0).save(tmp_path_factory.mktemp("w") / "tiny")


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("test")
    write(root / "voice.wav", voice(0.8, 16000), 16000, "PCM_16")
    write(root / "music" / "chord.flac", chord(0.6, 44100, channels=2), 44100, "PCM_24")
    (root / "music" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # corrupt header
    return root


def test_model_form(tmp_path, weights, test_dir):
    out = tmp_path / "out"
    res = run("--weights_path", weights, "--test_dir", test_dir, "--output", out, "--metrics", FAST,
              "--win_duration", "0.5", "--n_quantizers", "3", "--quiet")
    assert res.returncode == 1, res.stderr  # one file failed; the others were evaluated
    assert res.stdout.strip() == f"evaluated 2 files, 1 failed: see {out / 'summary.md'}"
    assert sum("music/broken.wav" in line for line in res.stderr.splitlines()) == 1
    table = rows(out)
    assert sorted(table) == ["music/broken.wav", "music/chord.flac", "voice.wav"]
    assert "music/broken.wav: not a readable audio file" in table["music/broken.wav"]["error"]
    assert table["music/broken.wav"]["mel-44k"] == ""

    # the numbers are those of the library's own round trip, compared with the input
    codec = dac_jax.load_model(weights)
    for rel in ("voice.wav", "music/chord.flac"):
        source = test_dir / rel
        encoded = codec.compress(source, win_duration=0.5, n_quantizers=3)
        decoded = codec.decompress(encoded, win_duration=0.5)
        x, rate = read_audio(source)
        values, _, _ = metrics.pair_metrics(x, rate, decoded.samples[0], decoded.sample_rate, metrics.DISTANCES)
        for key, value in values.items():
            assert float(table[rel][key]) == pytest.approx(value, rel=1e-5, abs=1e-6), (rel, key)
        seconds = x.shape[-1] / rate
        bits = encoded.codes.size * math.log2(codec.config.codebook_size)  # channels x 3 codebooks x frames
        assert encoded.codes.shape[:2] == (x.shape[0], 3)
        assert float(table[rel]["kbps"]) == pytest.approx(bits / seconds / 1000, rel=1e-5)
        assert float(table[rel]["file_kbps"]) > float(table[rel]["kbps"])  # the file holds metadata too
        assert float(table[rel]["time_s"]) > 0 and float(table[rel]["duration_s"]) == pytest.approx(seconds, rel=1e-5)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluated"] == 2 and [f["path"] for f in summary["failed"]] == ["music/broken.wav"]
    assert summary["about"]["n_quantizers"] == 3 and summary["about"]["codec"] == "DAC"
    assert summary["about"]["precision"] == "float32"
    assert sorted(summary["metrics"]["subfolders"]) == [".", "music"]
    mel = summary["metrics"]["all"]["mel-44k"]
    both = [float(table[r]["mel-44k"]) for r in ("voice.wav", "music/chord.flac")]
    assert mel["n"] == 2 and mel["mean"] == pytest.approx(np.mean(both), rel=1e-5)
    assert mel["ci95"][0] < mel["mean"] < mel["ci95"][1]
    assert summary["metrics"]["subfolders"]["music"]["mel-44k"]["n"] == 1
    md = (out / "summary.md").read_text()
    assert "## music" in md and "sisdr-44k (higher is better)" in md and "music/broken.wav" in md
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left

    # existing outputs are never replaced without --overwrite, and the refusal is one line
    before = (out / "metrics.csv").read_bytes()
    res = run("--weights_path", weights, "--test_dir", test_dir, "--output", out, "--metrics", "sisdr", "--quiet")
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "--overwrite" in res.stderr, res.stderr
    assert (out / "metrics.csv").read_bytes() == before
    res = run("--weights_path", weights, "--test_dir", test_dir, "--output", out, "--metrics", "sisdr", "--quiet",
              "--overwrite")
    assert res.returncode == 1 and list(rows(out)["voice.wav"])[2:4] == ["sisdr-22k", "sisdr-44k"]


def test_two_folders(tmp_path):
    ref, est, out = tmp_path / "ref", tmp_path / "est", tmp_path / "out"
    x, y = voice(1.2, 22050), chord(1.0, 44100, channels=2)
    write(ref / "a.wav", x, 22050)
    write(ref / "sub" / "b.wav", y, 44100)
    write(ref / "only_reference.wav", x, 22050)
    write(est / "a.flac", degrade(x, 0.1), 22050, "PCM_24")  # another suffix pairs by name
    write(est / "sub" / "b.wav", degrade(y, 0.3), 44100)
    write(est / "only_estimate.wav", x, 22050)
    res = run("--reference", ref, "--estimate", est, "--output", out, "--metrics", "sisdr,waveform,pesq,stoi",
              "--workers", "1", "--quiet")
    assert res.returncode == 0, res.stderr  # unpaired files are listed, not failures
    assert res.stdout.strip() == f"evaluated 2 files, 2 unpaired: see {out / 'summary.md'}"
    table = rows(out)
    assert table["only_reference.wav"]["error"].startswith("no estimate file")
    assert table["only_estimate.wav"]["error"].startswith("no reference file")
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(u["path"] for u in summary["unpaired"]) == ["only_estimate.wav", "only_reference.wav"]
    assert summary["failed"] == []
    for rel, est_file in (("a.wav", est / "a.flac"), ("sub/b.wav", est / "sub" / "b.wav")):
        (a, ra), (b, rb) = read_audio(ref / rel), read_audio(est_file)
        values, _, _ = metrics.pair_metrics(a, ra, b, rb, ("waveform", "sisdr"))
        for key, value in values.items():
            assert float(table[rel][key]) == pytest.approx(value, rel=1e-5)
        if "pesq" not in metrics.missing_quality(["pesq"]):
            assert 1.0 <= float(table[rel]["pesq-44k"]) <= 4.7
        if "stoi" not in metrics.missing_quality(["stoi"]):
            assert 0.0 < float(table[rel]["stoi-22k"]) <= 1.0
    assert float(table["a.wav"]["sisdr-44k"]) > float(table["sub/b.wav"]["sisdr-44k"])  # less noise, higher


def test_the_precision_flag_is_honoured_and_recorded(tmp_path, weights, test_dir):
    """``--precision bfloat16`` evaluates the model with bfloat16 convolutions: the report says so
    and its numbers are those of the library's bfloat16 round trip (not float32's)."""
    out = tmp_path / "out"
    res = run("--weights_path", weights, "--test_dir", test_dir, "--output", out, "--metrics", FAST,
              "--win_duration", "0.5", "--precision", "bfloat16", "--quiet")
    assert res.returncode == 1, res.stderr  # the broken file, as above
    assert json.loads((out / "summary.json").read_text())["about"]["precision"] == "bfloat16"
    source = test_dir / "voice.wav"
    x, rate = read_audio(source)
    results = {}
    for precision in ("float32", "bfloat16"):
        codec = dac_jax.load_model(weights)
        codec.precision = precision
        decoded = codec.decompress(codec.compress(source, win_duration=0.5), win_duration=0.5)
        results[precision], _, _ = metrics.pair_metrics(x, rate, decoded.samples[0], decoded.sample_rate,
                                                        ("mel", "sisdr"))
    measured = float(rows(out)["voice.wav"]["sisdr-44k"])
    assert measured == pytest.approx(results["bfloat16"]["sisdr-44k"], rel=1e-5, abs=1e-6)
    assert measured != pytest.approx(results["float32"]["sisdr-44k"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--output", "o", "--test_dir", "t", "--precision", "tf32"], "--precision: precision tf32 needs an NVIDIA GPU"),
    (["--output", "o", "--reference", "r", "--estimate", "e", "--precision", "bfloat16"], "--precision: model options"),
    (["--test_dir", "x"], "the following arguments are required: --output"),
    (["--output", "o"], "give --test_dir"),
    (["--output", "o", "--reference", "r"], "takes --reference and --estimate"),
    (["--output", "o", "--reference", "r", "--estimate", "e", "--n_quantizers", "2"], "--n_quantizers: model options"),
    (["--output", "o", "--test_dir", "t", "--metrics", "mel,loudness"], "argument --metrics: must be"),
    (["--output", "o", "--test_dir", "t", "--workers", "-1"], "workers"),
    (["--output", "o", "--test_dir", "t", "--model_type", "vae24khz-x2", "--weights_path", "w.pt", "--n_quantizers", "2"],
     "n_quantizers applies to DAC codes"),
    (["--output", "o", "--reference", "missing_r", "--estimate", "missing_e"], "missing_r: the reference folder does not exist"),
])
def test_bad_options_one_line(tmp_path, args, message):
    res = run(*[str(tmp_path / a) if a in ("o", "r", "e", "t", "x", "missing_r", "missing_e") else a for a in args])
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr


def test_evaluate_py_with_dac_vae_checkpoint(tmp_path):
    """``python3 evaluate.py --checkpoint checkpoint.pt --test_dir DIR``, as DAC-VAE's README."""
    require_reference("torch")
    vae = dac_jax.init_vae("vae-tiny", seed=0)
    checkpoint = vae.export_torch(tmp_path / "checkpoint.pt")
    write(tmp_path / "audio" / "v.wav", voice(0.7, 24000), 24000)
    res = run("--checkpoint", checkpoint, "--test_dir", tmp_path / "audio", "--output", tmp_path / "out",
              "--metrics", "waveform,sisdr", "--quiet", script="evaluate.py")
    assert res.returncode == 0, res.stderr
    table = rows(tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["about"]["codec"] == "DAC-VAE" and list(table) == ["v.wav"]
    frames = math.ceil(0.7 * 24000 / vae.hop_length)
    assert float(table["v.wav"]["kbps"]) == pytest.approx(frames * vae.config.latent_dim * 32 / 0.7 / 1000, rel=1e-3)


def test_missing_quality_package_is_a_notice(tmp_path, monkeypatch, capsys):
    """A metric whose package is not installed is left out with one notice; the rest runs."""
    from importlib import util

    from dac_jax.evaluate import evaluate_folders

    real = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name == "pesq" else real(name, *a))
    x = voice(0.6, 16000)
    write(tmp_path / "r" / "a.wav", x, 16000)
    write(tmp_path / "e" / "a.wav", degrade(x, 0.2), 16000)
    result = evaluate_folders(tmp_path / "r", tmp_path / "e", tmp_path / "out", groups=("waveform", "pesq"),
                              workers=0, progress=False)
    err = capsys.readouterr().err
    assert err.count("pesq omitted: its package is not installed (pip install pesq") == 1
    assert result.summary["notices"][0].startswith("pesq omitted")
    assert list(rows(tmp_path / "out")["a.wav"])[2:4] == ["waveform-22k", "waveform-44k"]
    assert "pesq-44k" not in rows(tmp_path / "out")["a.wav"]
