"""The corpus tokenizer on real files and real processes: records equal per-file compression,
bad files reported, a SIGKILLed run resumed to the same records, two real JAX processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import dac_jax
from dac_jax import runtime, tokens
from dac_jax.audio import synth
from dac_jax.codec import latents as vae_files
from dac_jax.codec.plan import resampled_length
from dac_jax.errors import UsageError
from dac_jax.model.config import DACConfig, VAEConfig

ROOT = Path(__file__).resolve().parents[2]
# stride 5 (a decoder one sample short per block, as the 16/24 kHz models) and a hop of 40
CONFIG = DACConfig(encoder_dim=8, encoder_rates=(2, 4, 5), latent_dim=16, decoder_dim=32, decoder_rates=(5, 4, 2),
                   n_codebooks=4, codebook_size=64, codebook_dim=4, sample_rate=16000)
VAE = VAEConfig(encoder_dim=4, encoder_rates=(2, 3, 4), latent_dim=8, decoder_dim=32, decoder_rates=(4, 3, 2),
                sample_rate=24000)
WIN = 1.0  # seconds: files below are shorter and longer than one window
# (relative path, rate, channels, seconds)
CORPUS = [
    ("a.wav", 16000, 1, 0.3), ("b.flac", 44100, 2, 7.3), ("speech/c.wav", 22050, 1, 2.0),
    ("speech/d.wav", 16000, 2, 0.01), ("speech/deep/e.ogg", 8000, 1, 3.1), ("f.wav", 48000, 1, 1.0),
]


def write_corpus(root: Path, bad: bool = True) -> None:
    for i, (name, rate, channels, seconds) in enumerate(CORPUS):
        n = int(rate * seconds)
        x = np.stack([synth.speech_like(seconds, rate, seed=i + c)[:n] * (0.5 + 0.2 * c) for c in range(channels)], -1)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, x, rate)
    if bad:
        (root / "broken.wav").write_bytes(b"RIFF but not really audio")
        sf.write(root / "empty.wav", np.zeros((0, 1), np.float32), 16000)
        nan = synth.speech_like(0.5, 16000, seed=3)
        nan[100] = np.nan
        sf.write(root / "speech/nan.wav", nan, 16000, subtype="FLOAT")


def records(folder: Path) -> list[dict]:
    source = tokens.TokenSource(folder)
    return [source[i] for i in range(len(source))]


def key(record: dict) -> tuple:
    arrays = [record[k].tobytes() for k in ("codes", "mu", "logs") if k in record]
    return (record["source"], record["channel"], *arrays)


@pytest.fixture(scope="module")
def codec():
    return dac_jax.init_model(CONFIG, seed=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    return root


@pytest.fixture(scope="module")
def tokenized(codec, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens") / "out"
    before = runtime.trace_counts["encode"]
    summary = dac_jax.tokenize(codec, [corpus], out, win_duration=WIN, batch_size=4, files_per_shard=3, progress=False)
    return out, summary, runtime.trace_counts["encode"] - before


def test_records_equal_per_file_compression(codec, corpus, tokenized):
    out, summary, compilations = tokenized
    found = records(out)
    expected = {(name, c) for name, _, channels, _ in CORPUS for c in range(channels)}
    assert {(r["source"], r["channel"]) for r in found} == expected
    assert len(found) == len(expected)
    for r in found:
        f = codec.compress(corpus / r["source"], win_duration=WIN)
        codes = np.asarray(f.codes)[r["channel"]]
        info = sf.info(str(corpus / r["source"]))
        frames = -(-resampled_length(info.frames, info.samplerate, CONFIG.sample_rate) // codec.hop_length)
        assert r["codes"].dtype == np.uint16 and r["codes"].shape == (CONFIG.n_codebooks, frames)
        # compress may append one covering frame for the original's decompress (see codec.plan)
        assert codes.shape[-1] - frames in (0, 1)
        np.testing.assert_array_equal(r["codes"], codes[:, :frames], err_msg=r["source"])
        assert (r["sample_rate"], r["length"]) == (info.samplerate, info.frames)
        assert r["input_db"] == pytest.approx(float(np.asarray(f.input_db).reshape(-1)[0]), abs=1e-4)
        assert r["frame_rate"] == CONFIG.sample_rate / codec.hop_length
    assert compilations <= 3, "a corpus of any lengths compiles at most three programs"
    assert summary.files == len(CORPUS) and summary.records == len(expected)


def test_bad_files_go_to_the_failures_file(tokenized):
    out, summary, _ = tokenized
    lines = (out / "failures.tsv").read_text().splitlines()
    assert lines[0] == "source\treason"
    reasons = dict(line.split("\t", 1) for line in lines[1:])
    assert set(reasons) == {"broken.wav", "empty.wav", "speech/nan.wav"}
    assert "non-finite" in reasons["speech/nan.wav"]
    manifest = tokens.read_manifest(out)
    assert manifest["failures"] == 3 and manifest["files"] == len(CORPUS) + 3
    assert manifest["kind"] == "dac" and manifest["dtype"] == "uint16" and manifest["n_codebooks"] == 4
    assert len(summary.failed) == 3


def test_same_source_path_twice_is_refused_before_any_work(tmp_path, codec):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "x.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(UsageError, match="both give the source path 'x.wav'"):
        dac_jax.tokenize(codec, [tmp_path / "one", tmp_path / "two"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_second_run_skips_done_shards_and_refuses_other_options(codec, corpus, tokenized, tmp_path):
    out, _, _ = tokenized
    before = sorted(p.stat().st_mtime_ns for p in out.glob("shard-*"))
    again = dac_jax.tokenize(codec, [corpus], out, win_duration=WIN, batch_size=4, files_per_shard=3, progress=False)
    assert again.files == 0 and again.skipped_files == len(CORPUS) + 3
    assert sorted(p.stat().st_mtime_ns for p in out.glob("shard-*")) == before
    with pytest.raises(UsageError, match="from a run with other inputs or options"):
        dac_jax.tokenize(codec, [corpus], out, win_duration=WIN, batch_size=4, files_per_shard=3, n_quantizers=2,
                         progress=False)


def test_vae_latents_equal_per_file_encoding(tmp_path):
    vae = dac_jax.init_vae(VAE, seed=2)
    write_corpus(tmp_path / "in", bad=False)
    out = tmp_path / "out"
    dac_jax.tokenize(vae, [tmp_path / "in"], out, win_duration=WIN, batch_size=4, with_logs=True, progress=False)
    found = records(out)
    assert len(found) == sum(c for _, _, c, _ in CORPUS)
    for r in found:
        f = vae_files.encode(vae, tmp_path / "in" / r["source"], win_duration=WIN)
        np.testing.assert_allclose(r["mu"], np.asarray(f.mu)[r["channel"]], atol=1e-6, rtol=0)
        np.testing.assert_allclose(r["logs"], np.asarray(f.logs)[r["channel"]], atol=1e-6, rtol=0)
    half = tmp_path / "half"
    dac_jax.tokenize(vae, [tmp_path / "in"], half, win_duration=WIN, batch_size=4, dtype="float16", progress=False)
    r = records(half)[0]
    assert r["mu"].dtype == np.float16 and "logs" not in r
    assert tokens.read_manifest(half)["dtype"] == "float16"


def test_codec_options_are_refused_for_the_other_codec(codec, tmp_path):
    with pytest.raises(UsageError, match="DAC-VAE"):
        dac_jax.tokenize(codec, [tmp_path], tmp_path / "out", with_logs=True, progress=False)
    with pytest.raises(UsageError, match="batch_size"):
        dac_jax.tokenize(codec, [tmp_path], tmp_path / "out", batch_size=0, progress=False)


# -- real processes ------------------------------------------------------------------------------------


def cli(*args, env=None):
    cmd = [sys.executable, "-m", "dac_jax", *map(str, args)]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def weights(codec, tmp_path_factory):
    return codec.save(tmp_path_factory.mktemp("w") / "tiny")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return {"DAC_JAX_COMPILATION_CACHE": str(tmp_path_factory.mktemp("xla"))}


def many_files(root: Path, n: int = 24) -> None:
    root.mkdir(parents=True)
    for i in range(n):
        seconds = 0.2 + 0.35 * (i % 7)
        sf.write(root / f"clip{i:02d}.wav", synth.speech_like(seconds, 16000, seed=i), 16000)


def test_sigkill_then_the_same_command_ends_with_the_uninterrupted_records(weights, cache, tmp_path):
    many_files(tmp_path / "in")
    args = ["tokenize", tmp_path / "in", "--weights_path", weights, "--win_duration", WIN, "--batch_size", 2,
            "--files_per_shard", 2, "--quiet"]
    whole = cli(*args, "--output", tmp_path / "whole", env=cache)
    assert whole.wait(timeout=600) == 0, whole.stderr.read()

    proc = cli(*args, "--output", tmp_path / "killed", env=cache)
    deadline = time.monotonic() + 300
    while len(list((tmp_path / "killed").glob("shard-*.json"))) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done = len(list((tmp_path / "killed").glob("shard-*.json")))
    assert 3 <= done < 12, "killed mid-run"
    assert not (tmp_path / "killed" / "manifest.json").exists()

    again = cli(*args, "--output", tmp_path / "killed", env=cache)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert f"{2 * done} already done" in out
    assert sorted(map(key, records(tmp_path / "killed"))) == sorted(map(key, records(tmp_path / "whole")))
    assert len(records(tmp_path / "killed")) == 24
    assert not [p for p in (tmp_path / "killed").iterdir() if p.name.endswith(".tmp")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_records_of_one(weights, cache, tmp_path):
    many_files(tmp_path / "in", n=10)
    args = ["tokenize", tmp_path / "in", "--weights_path", weights, "--win_duration", WIN, "--batch_size", 2,
            "--files_per_shard", 2, "--quiet"]
    one = cli(*args, "--output", tmp_path / "one", env=cache)
    assert one.wait(timeout=600) == 0, one.stderr.read()
    port = free_port()
    procs = [cli(*args, "--output", tmp_path / "two", "--coordinator_address", f"127.0.0.1:{port}",
                 "--num_processes", 2, "--process_id", i, env={**cache, "JAX_PLATFORMS": "cpu"}) for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    shards = sorted(p.name for p in (tmp_path / "two").glob("shard-*.array_record"))
    assert {name.split("-")[1] for name in shards} == {"00000", "00001"}, "each process writes its own shards"
    assert sorted(map(key, records(tmp_path / "two"))) == sorted(map(key, records(tmp_path / "one")))
    assert tokens.read_manifest(tmp_path / "two")["processes"] == 2


def test_detokenize_gives_the_decompressed_audio(codec, corpus, tokenized, weights, tmp_path):
    out, _, _ = tokenized
    proc = cli("detokenize", out, "--output", tmp_path / "audio", "--weights_path", weights, "--win_duration", WIN,
               "--limit", 2)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    written = sorted(str(p.relative_to(tmp_path / "audio")) for p in (tmp_path / "audio").rglob("*.wav"))
    assert written == ["a.wav", "b.wav"]
    audio, rate = sf.read(tmp_path / "audio" / "b.wav", always_2d=True)
    # decompress of a .dac file holding the records' codes: the same decoding, loudness and resampling
    b = [r for r in records(out) if r["source"] == "b.flac"]
    f = dac_jax.DACFile(codes=np.stack([r["codes"] for r in b]), chunk_length=b[0]["codes"].shape[-1],
                        original_length=b[0]["length"], input_db=np.float32([b[0]["input_db"]]), channels=2,
                        sample_rate=44100, padding=True, dac_version="1.0.0")
    expected = codec.decompress(f, win_duration=WIN).samples[0].T
    assert rate == 44100 and audio.shape == expected.shape
    np.testing.assert_allclose(audio, expected, atol=1.0 / 2**15)  # the WAV's 16-bit quantisation


def test_batches_split_over_local_devices_give_the_same_records(weights, cache, tmp_path):
    many_files(tmp_path / "in", n=5)
    args = ["tokenize", tmp_path / "in", "--weights_path", weights, "--win_duration", WIN, "--quiet"]
    one = cli(*args, "--output", tmp_path / "one", "--batch_size", 2, env=cache)
    assert one.wait(timeout=600) == 0, one.stderr.read()
    two = {**cache, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    odd = cli(*args, "--output", tmp_path / "odd", "--batch_size", 3, env=two)
    _, err = odd.communicate(timeout=600)
    assert odd.returncode == 1 and err.strip() == "error: batch_size 3 must be a multiple of the 2 local devices"
    split = cli(*args, "--output", tmp_path / "two", "--batch_size", 2, env=two)
    _, err = split.communicate(timeout=600)
    assert split.returncode == 0, err
    assert sorted(map(key, records(tmp_path / "two"))) == sorted(map(key, records(tmp_path / "one")))


@pytest.mark.parametrize("flags, message", [
    (["--process_id", "1"], "error: --coordinator_address, --num_processes and --process_id go together"),
    (["--with_logs"], "error: --with_logs and --float16 apply to DAC-VAE latents"),
    (["--batch_size", "0"], "argument --batch_size: must be"),
    (["--precision", "tf32"], "error: --precision: precision tf32 needs an NVIDIA GPU's tensor cores; this backend is cpu"),
])
def test_cli_refuses_before_the_model_loads(tmp_path, flags, message):
    sf.write(tmp_path / "x.wav", np.zeros(1600, np.float32), 16000)
    proc = cli("tokenize", tmp_path / "x.wav", "--output", tmp_path / "out", *flags)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and message in err.strip().splitlines()[-1], err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_the_precision_flag_is_honoured_and_recorded(weights, cache, tmp_path):
    """``--precision bfloat16`` codes with bfloat16 convolutions (some codes move, most hold), says so
    in the manifest's header (float32's header has no such key, as before the flag), and a folder
    begun at one precision refuses to be finished at another."""
    sf.write(tmp_path / "x.wav", synth.speech_like(2.0, 16000, seed=5), 16000)
    codes = {}
    for precision in ("float32", "bfloat16"):
        proc = cli("tokenize", tmp_path / "x.wav", "--output", tmp_path / precision, "--weights_path", weights,
                   "--win_duration", "1", "--precision", precision, "--quiet", env=cache)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert tokens.read_manifest(tmp_path / precision).get("precision") == (None if precision == "float32" else precision)
        codes[precision] = records(tmp_path / precision)[0]["codes"]
    assert codes["bfloat16"].shape == codes["float32"].shape
    assert 0.8 < np.mean(codes["bfloat16"] == codes["float32"]) < 1.0
    proc = cli("tokenize", tmp_path / "x.wav", "--output", tmp_path / "bfloat16", "--weights_path", weights,
               "--win_duration", "1", "--quiet", env=cache)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "from a run with other inputs or options" in err, err


def test_cli_missing_input_is_one_line(tmp_path):
    proc = cli("tokenize", tmp_path / "nope.wav", "--output", tmp_path / "out")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip() == f"error: no audio files found under the inputs: {tmp_path / 'nope.wav'}: no such file or folder"
