"""examples/stream_decode.py as a user runs it: a real .dac file (encoded from a WAV written with
soundfile) decoded as a stream into a WAV file and onto stdout, equal to decoding the whole
sequence with the loudness gain back; bad inputs are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from dac_jax.api import Codec
from dac_jax.audio import synth
from dac_jax.model.config import PRESETS
from dac_jax.model.dac import init_variables

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "examples/stream_decode.py", *args], cwd=ROOT, capture_output=True,
                          timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_stream_decode_example_writes_the_whole_decode(tmp_path):
    config = PRESETS["tiny"]
    codec = Codec(config, init_variables(config, seed=3))
    codec.save(tmp_path / "model")
    x = np.stack([synth.speech_like(0.7, config.sample_rate, seed=1), synth.noise(0.7, config.sample_rate, seed=2)], 1)
    sf.write(tmp_path / "in.wav", 0.3 * x, config.sample_rate, subtype="FLOAT")
    dacfile = codec.compress(str(tmp_path / "in.wav"))
    dacfile.save(tmp_path / "in.dac")

    res = run(str(tmp_path / "in.dac"), str(tmp_path / "out.wav"), "--weights_path", str(tmp_path / "model"),
              "--block", "3")
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    out, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == config.sample_rate and out.shape == x.shape
    whole = np.asarray(codec.decode(np.asarray(dacfile.codes)))[:, 0, : x.shape[0]]  # [channels, T]
    gain = 10.0 ** ((np.repeat(np.asarray(dacfile.input_db).reshape(-1), 2) + 16.0) / 20.0)
    np.testing.assert_allclose(out, (whole * gain[:, None]).T, atol=1e-5)
    assert not list(tmp_path.glob(".*partial"))

    raw = run(str(tmp_path / "in.dac"), "-", "--weights_path", str(tmp_path / "model"), "--block", "1")
    assert raw.returncode == 0, raw.stderr.decode()[-3000:]
    # other push sizes, other float rounding: measured 2e-7 apart
    np.testing.assert_allclose(np.frombuffer(raw.stdout, np.float32).reshape(-1, 2), out, atol=2e-6)

    again = run(str(tmp_path / "in.dac"), str(tmp_path / "out.wav"), "--weights_path", str(tmp_path / "model"))
    err = again.stderr.decode().strip().splitlines()
    assert again.returncode == 1 and len(err) == 1 and "exists" in err[0], err  # never replaces a file
    faithful = codec.compress(str(tmp_path / "in.wav"), win_duration=0.3, mode="faithful")
    faithful.save(tmp_path / "faithful.dac")
    bad = run(str(tmp_path / "faithful.dac"), str(tmp_path / "f.wav"), "--weights_path", str(tmp_path / "model"))
    err = bad.stderr.decode().strip().splitlines()
    assert bad.returncode == 1 and len(err) == 1 and "--mode independent" in err[0], err
    assert not (tmp_path / "f.wav").exists()
