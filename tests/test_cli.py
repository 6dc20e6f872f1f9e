"""compress.py / python -m dac_jax encode|decode: real files, real trees, real errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import dac_jax
from dac_jax.audio import synth

ROOT = Path(__file__).resolve().parents[1]


def run(*args, module=False, cwd=ROOT):
    cmd = [sys.executable, "-m", "dac_jax"] if module else [sys.executable, str(ROOT / "compress.py")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return dac_jax.init_model("tiny", seed=0).save(tmp_path_factory.mktemp("w") / "tiny")


def clip(seconds, rate, channels=1):
    x = synth.speech_like(seconds, rate, seed=1)
    return np.stack([x, 0.5 * synth.sine_sweep(seconds, rate)][:channels] + [0.3 * x] * max(0, channels - 2), axis=1)


def make_tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Audio files in nested folders (and a non-audio file); {relative stem: (rate, channels, frames)}."""
    files = {"a/b/x.wav": (16000, 1, 1.3, "PCM_16"), "a/y.flac": (44100, 2, 0.9, "PCM_24"), "z.wav": (22050, 1, 0.4, "FLOAT")}
    expected = {}
    for rel, (rate, ch, sec, subtype) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, clip(sec, rate, ch), rate, subtype=subtype)
        expected[str(Path(rel).with_suffix(""))] = (rate, ch, sf.info(str(path)).frames)
    (root / "a" / "notes.txt").write_text("not audio, not an audio suffix: ignored")
    return expected


@pytest.mark.parametrize("mode", ["independent", "faithful"])
def test_encode_decode_a_tree(tmp_path, weights, mode):
    expected = make_tree(tmp_path / "in")
    res = run("encode", tmp_path / "in", "--output", tmp_path / "codes", "--weights_path", weights,
              "--win_duration", "0.25", "--mode", mode, "--batch_size", "3", "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("encoded 3 files: 2.6 s of audio in ")
    assert sorted(str(p.relative_to(tmp_path / "codes")) for p in (tmp_path / "codes").rglob("*")
                  if p.is_file()) == ["a/b/x.dac", "a/y.dac", "z.dac"]
    f = dac_jax.DACFile.load(tmp_path / "codes" / "a" / "y.dac")
    assert (f.channels, f.sample_rate, f.padding) == (2, 44100, mode == "independent")

    res = run("decode", tmp_path / "codes", "--output", tmp_path / "out", "--weights_path", weights, "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("decoded 3 files: 2.6 s of audio in ")
    for stem, (rate, channels, frames) in expected.items():
        info = sf.info(str(tmp_path / "out" / f"{stem}.wav"))
        assert (info.samplerate, info.channels, info.frames) == (rate, channels, frames), stem


def test_module_entry_point_and_single_files(tmp_path, weights):
    sf.write(tmp_path / "one.wav", clip(0.5, 16000), 16000)
    res = run("encode", tmp_path / "one.wav", "--output", tmp_path / "o", "--weights_path", weights, module=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "one.dac").is_file()
    assert "encoded 1 file: 0.5 s of audio" in res.stdout


BAD_INPUTS = ("text.wav", "empty.wav", "nan.wav", "six.wav")


def write_bad_inputs(src: Path, rate: int) -> None:
    """A folder with one good file and the four bad ones of BAD_INPUTS (not audio, empty, NaN, 6 channels)."""
    src.mkdir()
    sf.write(src / "good.wav", clip(0.6, rate), rate)
    (src / "text.wav").write_text("this is not a wav file")
    sf.write(src / "empty.wav", np.zeros((0, 1)), rate)
    bad = clip(0.3, rate)
    bad[100] = np.nan
    sf.write(src / "nan.wav", bad, rate, subtype="FLOAT")
    sf.write(src / "six.wav", clip(0.3, rate, channels=6), rate)


def test_bad_files_are_reported_and_the_rest_still_run(tmp_path, weights):
    src = tmp_path / "in"
    write_bad_inputs(src, 16000)
    res = run("encode", src, "--output", tmp_path / "out", "--weights_path", weights, "--quiet")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() + res.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4, res.stdout + res.stderr
    for name in BAD_INPUTS:
        assert any(name in e for e in errors), name
    assert "Traceback" not in res.stderr
    assert "encoded 1 file, 4 failed" in res.stdout
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["good.dac"]  # no partial or temp files


def test_short_and_silent_inputs_round_trip(tmp_path, weights):
    sf.write(tmp_path / "tiny.wav", clip(0.0003, 16000), 16000)  # 4 samples: less than one hop (8)
    sf.write(tmp_path / "silence.wav", np.zeros((8000, 2)), 16000)
    assert run("encode", tmp_path / "tiny.wav", tmp_path / "silence.wav", "--output", tmp_path / "c",
               "--weights_path", weights, "--quiet").returncode == 0
    assert run("decode", tmp_path / "c", "--output", tmp_path / "d", "--weights_path", weights, "--quiet").returncode == 0
    short, _ = sf.read(tmp_path / "d" / "tiny.wav")
    silent, _ = sf.read(tmp_path / "d" / "silence.wav")
    assert short.shape == (4,) and silent.shape == (8000, 2)
    assert np.all(np.isfinite(silent)) and np.max(np.abs(silent)) < 1e-2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n_quantizers", "9"], "n_quantizers must be a whole number 1..4 for this model; got 9"),
        (["--mode", "faithful", "--win_duration", "0.001"], "too small for this model"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, weights, args, message):
    sf.write(tmp_path / "a.wav", clip(0.5, 16000), 16000)
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "o", "--weights_path", weights, *args)
    assert res.returncode == 1
    assert res.stderr.startswith("error: ") and message in res.stderr and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_inputs_and_weights(tmp_path, weights):
    res = run("encode", tmp_path / "absent.wav", "--output", tmp_path / "o", "--weights_path", weights, "--quiet")
    assert res.returncode == 1 and "absent.wav" in res.stdout + res.stderr
    res = run("encode", tmp_path / "absent.wav", "--output", tmp_path / "o", "--weights_path", tmp_path / "nope.pth")
    assert res.returncode == 1 and res.stderr.startswith("error: ") and "nope.pth" in res.stderr


def test_dac_files_that_do_not_fit_are_reported(tmp_path, weights):
    sf.write(tmp_path / "a.wav", clip(1.0, 16000), 16000)
    other = dac_jax.init_model("tiny-odd", seed=0).save(tmp_path / "odd")
    assert run("encode", tmp_path / "a.wav", "--output", tmp_path / "c", "--weights_path", other, "--quiet").returncode == 0
    good = tmp_path / "c" / "a.dac"
    truncated = tmp_path / "c" / "truncated.dac"
    truncated.write_bytes(good.read_bytes()[:200])
    res = run("decode", tmp_path / "c", "--output", tmp_path / "d", "--weights_path", weights, "--quiet")
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert "a.dac" in out and "another sample rate or hop" in out  # made by the tiny-odd model (hop 10)
    assert "truncated.dac" in out
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").rglob("*.wav"))


def test_the_convolution_flags_are_honoured_and_the_fast_encoder_gives_the_direct_codes(tmp_path):
    # every residual unit (64 to 512 channels) and the decoder's first conv are kernel-7, stride-1
    # convolutions with >= 64 channels on both sides (dac_jax.nn.fold): 19 convolutions run as Winograd
    config = dac_jax.DACConfig(encoder_dim=64, encoder_rates=(2, 4, 8), latent_dim=64, decoder_dim=512,
                               decoder_rates=(8, 4, 2), n_codebooks=4, codebook_size=64, sample_rate=16000)
    weights = dac_jax.Codec(config, dac_jax.model.dac.init_variables(config, seed=3)).save(tmp_path / "w")
    sf.write(tmp_path / "a.wav", clip(1.0, 16000), 16000, subtype="FLOAT")
    for name, extra in (("direct", []), ("winograd", ["--fast_encoder"])):
        res = run("encode", tmp_path / "a.wav", "--output", tmp_path / name, "--weights_path", weights, "--quiet", *extra)
        assert res.returncode == 0, res.stderr
        # the flag runs the checked Winograd encoder, and says how much of it fell back
        assert ("checked Winograd encoder:" in res.stdout) == bool(extra), res.stdout
    direct = dac_jax.DACFile.load(tmp_path / "direct" / "a.dac").codes
    winograd = dac_jax.DACFile.load(tmp_path / "winograd" / "a.dac").codes
    np.testing.assert_array_equal(direct, winograd)  # checked: the direct path's codes
    # the same codes decoded by default (Winograd F(4, 7) on a CPU), with --winograd 2 and with --direct:
    # each other float32 rounding moves some 16-bit samples by one step (measured: 233 of 16000 between
    # F(4, 7) and direct), which it cannot if a flag is ignored
    decoded = {}
    for name, extra in (("winograd", []), ("winograd2", ["--winograd", "2"]), ("direct", ["--direct"])):
        res = run("decode", tmp_path / "direct", "--output", tmp_path / f"out-{name}", "--weights_path", weights,
                  "--quiet", *extra)
        assert res.returncode == 0, res.stderr
        decoded[name], rate = sf.read(tmp_path / f"out-{name}" / "a.wav", dtype="int16")
        assert rate == 16000 and decoded[name].shape == (16000,)
    for name in ("winograd", "winograd2"):
        steps = np.abs(decoded[name].astype(np.int32) - decoded["direct"])
        assert np.count_nonzero(steps) >= 10 and steps.max() == 1, (name, np.count_nonzero(steps), steps.max())
    assert np.any(decoded["winograd"] != decoded["winograd2"])


def test_the_precision_flag_is_honoured(tmp_path, weights):
    sf.write(tmp_path / "a.wav", clip(2.0, 16000), 16000, subtype="FLOAT")
    codes, audio = {}, {}
    for precision in ("float32", "bfloat16"):
        res = run("encode", tmp_path / "a.wav", "--output", tmp_path / f"c-{precision}", "--weights_path", weights,
                  "--quiet", "--precision", precision)
        assert res.returncode == 0, res.stderr
        codes[precision] = dac_jax.DACFile.load(tmp_path / f"c-{precision}" / "a.dac").codes
        res = run("decode", tmp_path / "c-float32", "--output", tmp_path / f"d-{precision}", "--weights_path", weights,
                  "--quiet", "--precision", precision)
        assert res.returncode == 0, res.stderr
        audio[precision], _ = sf.read(tmp_path / f"d-{precision}" / "a.wav", dtype="float32")
    # bfloat16 rounds the convolutions' operands: most codes hold, some move, and so does the audio
    assert 0.8 < np.mean(codes["bfloat16"] == codes["float32"]) < 1.0
    np.testing.assert_allclose(audio["bfloat16"], audio["float32"], rtol=0, atol=0.1 * np.abs(audio["float32"]).max())
    assert np.abs(audio["bfloat16"] - audio["float32"]).max() > 1e-4


@pytest.mark.parametrize("args, message", [
    (["encode", "--direct", "--fast_encoder"], "--direct: direct convolutions only; it cannot go with --fast_encoder"),
    (["decode", "--direct", "--winograd", "4"], "--direct: direct convolutions only; it cannot go with --winograd"),
    (["encode", "--winograd", "4"], "--winograd: encode runs the direct encoder and no decoder"),
    (["encode", "--direct"], "--direct: encode runs the direct encoder and no decoder"),
    (["encode", "--precision", "tf32"], "--precision: precision tf32 needs an NVIDIA GPU's tensor cores; this backend is cpu"),
    (["encode", "--fast_encoder", "--precision", "bfloat16"], "--fast_encoder keeps float32's codes; it cannot go with --precision bfloat16"),
    (["decode", "--winograd", "2", "--precision", "bfloat16"], "--winograd runs in float32 only"),
])
def test_convolution_flags_that_would_be_ignored_or_conflict_are_refused(tmp_path, args, message):
    sf.write(tmp_path / "a.wav", clip(0.2, 16000), 16000)
    res = run(args[0], tmp_path / "a.wav", "--output", tmp_path / "out", "--model_type", "16khz", *args[1:])
    assert res.returncode != 0 and message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "out").exists()
