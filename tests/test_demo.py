"""The README's main job: ``python -m dac_jax demo``, with and without a cached checkpoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from dac_jax.weights import registry
from tests import reference

ROOT = Path(__file__).resolve().parents[1]


def run_demo(home: Path, out: Path, *args):
    return subprocess.run(
        [sys.executable, "-m", "dac_jax", "demo", "--output", str(out), "--duration", "1", *args],
        capture_output=True, text=True, env={**os.environ, "HOME": str(home)}, cwd=ROOT, timeout=600,
    )


@pytest.mark.slow
def test_demo_imports_a_cached_checkpoint(tmp_path, reference_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cached = registry.cache_path("16khz")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(reference.reference_checkpoint("16khz", reference_dir).read_bytes())
    res = run_demo(tmp_path, tmp_path / "demo", "--model_type", "16khz")
    assert res.returncode == 0, res.stderr
    assert f"Importing released weights from {cached}" in res.stdout
    assert "Codes:   shape (1, 12, 50) (int32), 50.00 frames/s, bitrate 6.00 kbps" in res.stdout
    audio, sr = sf.read(tmp_path / "demo" / "output.wav")
    assert sr == 16000 and audio.shape == (16000,)
    assert "input.dac" in res.stdout
    assert sf.info(str(tmp_path / "demo" / "decompressed.wav")).frames == 16000


def test_demo_says_when_weights_are_random(tmp_path):
    res = run_demo(tmp_path, tmp_path / "demo", "--model_type", "16khz")
    assert res.returncode == 0, res.stderr
    assert "USING RANDOM WEIGHTS" in res.stdout
    assert re.search(r"Time:    encode [\d.]+ s, decode [\d.]+ s", res.stdout)
    assert sf.info(str(tmp_path / "demo" / "input.wav")).frames == 16000
