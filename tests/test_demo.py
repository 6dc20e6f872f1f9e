"""The README's main job: ``python -m dac_jax demo``: released weights when cached, the shipped
demo model when they cannot be downloaded, random weights only when asked; the evaluator's metrics,
a spectrogram PNG and the audio files under the output folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import dac_jax
from dac_jax.demo import DEMO_INPUT, demo_clip, round_trip_metrics
from dac_jax.weights import registry
from tests import reference

ROOT = Path(__file__).resolve().parents[1]


def run_demo(home: Path, out: Path, *args):
    # DAC_JAX_OFFLINE: the suite never downloads, with or without a network
    env = {**os.environ, "HOME": str(home), "DAC_JAX_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "dac_jax", "demo", "--output", str(out), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def _metric(stdout: str, name: str) -> float:
    return float(re.search(rf"^  {name} +(-?[\d.]+)", stdout, re.M).group(1))


@pytest.mark.slow
def test_demo_imports_a_cached_checkpoint(tmp_path, reference_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cached = registry.cache_path("16khz")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(reference.reference_checkpoint("16khz", reference_dir).read_bytes())
    res = run_demo(tmp_path, tmp_path / "demo", "--model_type", "16khz", "--duration", "1")
    assert res.returncode == 0, res.stderr
    assert f"Importing released weights from {cached}" in res.stdout
    assert "released weights (16khz)" in res.stdout
    assert "Codes:   shape (1, 12, 50) (int32), 50.00 frames/s, bitrate 6.00 kbps" in res.stdout
    audio, sr = sf.read(tmp_path / "demo" / "output.wav")
    assert sr == 16000 and audio.shape == (16000,)
    assert "input.dac" in res.stdout
    assert sf.info(str(tmp_path / "demo" / "decompressed.wav")).frames == 16000


def test_offline_the_demo_uses_the_shipped_model_and_reports_its_quality(tmp_path):
    out = tmp_path / "demo"
    res = run_demo(tmp_path, out)  # the default: 44khz, not cached, no download allowed
    assert res.returncode == 0, res.stderr
    assert "DAC_JAX_OFFLINE is set" in res.stdout and "Falling back to the small demo model" in res.stdout
    assert "Model:   DAC 16000 Hz, the shipped demo model" in res.stdout
    for name in ("mel", "stft", "waveform", "sisdr", "visqol-audio", "visqol-speech", "pesq", "stoi"):
        _metric(res.stdout, name)  # every metric of the evaluator is printed (the dev extra has them all)
    # the printed scores are the evaluator's on the files the demo wrote
    clip, sr = sf.read(out / "input.wav", dtype="float32")  # read as dac-jax reads them
    recon, _ = sf.read(out / "output.wav", dtype="float32")
    assert sr == 16000 and len(clip) == len(recon) == sf.info(str(DEMO_INPUT)).frames
    scores, _ = round_trip_metrics(clip, recon, sr)
    for name in ("mel", "stft", "sisdr"):
        assert _metric(res.stdout, name) == pytest.approx(scores[name], abs=6e-4), name  # as printed
    png = (out / "spectrograms.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    assert sf.info(str(out / "decompressed.wav")).frames == len(clip)


def test_the_shipped_model_is_trained():
    """The shipped weights reconstruct the demo's held-out sentence far better than random weights
    of the same architecture (measured: see benchmarks/RESULTS.md, the demo model)."""
    trained = dac_jax.load_model("demo16khz")
    assert trained.config.n_codebooks == 8 and trained.sample_rate == 16000
    size = sum(p.stat().st_size for p in registry.DEMO_MODEL.iterdir())
    assert size < 20e6
    random = dac_jax.init_model(trained.config, 0)
    clip = demo_clip(None, 16000)
    scores = {}
    for name, codec in (("trained", trained), ("random", random)):
        recon = np.asarray(codec.decode(codec.encode(clip[None, None])))[0, 0, : len(clip)]
        recon = np.pad(recon, (0, len(clip) - len(recon)))
        scores[name] = round_trip_metrics(clip, recon, 16000)[0]
    # measured: mel 1.69 vs 4.99, STOI 0.62 vs 0.31, ViSQOL speech 3.46 vs 1.00
    assert scores["trained"]["mel"] < 0.5 * scores["random"]["mel"], scores
    assert scores["trained"]["stoi"] > scores["random"]["stoi"] + 0.2, scores
    assert scores["trained"]["visqol-speech"] > scores["random"]["visqol-speech"] + 1.5, scores


def test_random_weights_only_when_asked(tmp_path):
    res = run_demo(tmp_path, tmp_path / "demo", "--model_type", "16khz", "--random", "--duration", "1")
    assert res.returncode == 0, res.stderr
    assert "USING RANDOM WEIGHTS (seed 0), as asked" in res.stdout
    assert "RANDOM weights (seed 0)" in res.stdout and "meaningless with random weights" in res.stdout
    assert re.search(r"Time:    encode [\d.]+ s, decode [\d.]+ s", res.stdout)
    assert sf.info(str(tmp_path / "demo" / "input.wav")).frames == 16000


def test_the_command_line_takes_the_demo_model_by_name(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "dac_jax", *map(str, args)], capture_output=True, text=True,
                              cwd=ROOT, timeout=300, env={**os.environ, "DAC_JAX_OFFLINE": "1"})

    res = run("encode", DEMO_INPUT, "--model_type", "demo16khz", "--output", tmp_path / "codes", "--quiet")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "codes" / "demo_input.dac").is_file()
    res = run("encode", DEMO_INPUT, "--model_type", "demo16khz", "--model_bitrate", "16kbps", "--output", tmp_path / "x")
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "error: demo16khz: the demo model has one version (4 kbps); a bitrate or tag does not apply"]
    assert not (tmp_path / "x").exists()
