"""The command line as a careless user meets it: colliding outputs, outputs over inputs, existing
files, bad numbers, unwritable folders, truncated and unusual files. Real files, real processes;
every refusal is one line and leaves every file as it was."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import dac_jax
from dac_jax import cli
from dac_jax.audio import synth
from tests.test_cli import run

@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return dac_jax.init_model("tiny", seed=0).save(tmp_path_factory.mktemp("w") / "tiny")


def write(path: Path, seconds=0.3, rate=16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth.speech_like(seconds, rate, seed=1), rate, **kw)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(res, code=1) -> str:
    assert res.returncode == code, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    return res.stderr


# -- outputs that would destroy something ------------------------------------------------------------


def test_two_inputs_with_one_output_are_refused_before_any_work(tmp_path, weights):
    a, b = write(tmp_path / "colA" / "x.wav"), write(tmp_path / "colB" / "x.wav", 0.5)
    err = one_line_error(run("encode", a, b, "--output", tmp_path / "o", "--weights_path", weights))
    assert str(a) in err and str(b) in err and "would both be written to" in err
    assert not (tmp_path / "o").exists()
    # names that differ only in the suffix, inside one folder
    write(tmp_path / "tree" / "take.wav")
    write(tmp_path / "tree" / "take.flac", format="FLAC")
    err = one_line_error(run("encode", tmp_path / "tree", "--output", tmp_path / "o", "--weights_path", weights))
    assert "take.flac" in err and "take.wav" in err and str(tmp_path / "o" / "take.dac") in err


def test_decoding_next_to_the_originals_never_replaces_them(tmp_path, weights):
    music = tmp_path / "music"
    write(music / "a.wav")
    assert run("encode", music, "--output", music, "--weights_path", weights, "--quiet").returncode == 0
    before = snapshot(music)
    err = one_line_error(run("decode", music, "--output", music, "--weights_path", weights))
    assert str(music / "a.wav") in err and "already exists; pass --overwrite" in err
    assert snapshot(music) == before
    # encoding again over existing .dac files: the same refusal
    err = one_line_error(run("encode", music, "--output", music, "--weights_path", weights))
    assert str(music / "a.dac") in err and snapshot(music) == before
    # a round trip whose output is its own input: refused even with --overwrite
    err = one_line_error(run("encode", music / "a.wav", "--output", music, "--mode", "encode_decode",
                             "--weights_path", weights, "--overwrite"))
    assert "is an input of this run" in err and snapshot(music) == before
    # with --overwrite the user asks for the decode to replace a.wav (not an input here: a.dac is)
    res = run("decode", music, "--output", music, "--weights_path", weights, "--overwrite", "--quiet")
    assert res.returncode == 0, res.stderr
    assert snapshot(music)["a.dac"] == before["a.dac"] and snapshot(music)["a.wav"] != before["a.wav"]


def test_existing_outputs_need_overwrite(tmp_path, weights):
    src = write(tmp_path / "a.wav")
    out = tmp_path / "o"
    out.mkdir()
    (out / "a.dac").write_bytes(b"the user's file")
    err = one_line_error(run("encode", src, "--output", out, "--weights_path", weights))
    assert "a.dac: already exists" in err and (out / "a.dac").read_bytes() == b"the user's file"
    res = run("encode", src, "--output", out, "--weights_path", weights, "--overwrite", "--quiet")
    assert res.returncode == 0 and dac_jax.DACFile.load(out / "a.dac").original_length == 4800


# -- bad numbers: one line naming the option, before anything loads ------------------------------------


@pytest.mark.parametrize("flag, value, message", [
    ("--win_duration", "nan", "must be a finite number > 0 and <= 86400 seconds; got nan"),
    ("--win_duration", "inf", "got inf"),
    ("--win_duration", "0", "got 0.0"),
    ("--win_duration", "abc", "not a number: 'abc'"),
    ("--normalize_db", "nan", "must be a finite number >= -70 and <= 0 LUFS; got nan"),
    ("--normalize_db", "12", "got 12.0"),
    ("--n_quantizers", "2.5", "not a number: '2.5'"),
    ("--n_quantizers", "True", "not a number: 'True'"),
    ("--n_quantizers", "0", "must be a whole number >= 1"),
    ("--batch_size", "0", "must be a whole number 1..65536; got 0"),
    ("--seed", "-3", "must be a whole number"),
])
def test_bad_numbers_are_one_line(tmp_path, capsys, flag, value, message):
    # no such weights: the option is refused before any model would load. In this process (the same
    # main() as the script's; one subprocess below shows the script itself)
    argv = ["encode", str(tmp_path / "a.wav"), "--output", str(tmp_path / "o"), "--weights_path",
            str(tmp_path / "none.pth"), f"{flag}={value}"]
    with pytest.raises(SystemExit) as exited:
        cli.main(argv, prog="compress.py")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"compress.py encode: error: argument {flag}: "), err
    assert message in err and not (tmp_path / "o").exists()


def test_a_bad_number_through_the_script(tmp_path):
    res = run("encode", tmp_path / "a.wav", "--output", tmp_path / "o", "--weights_path", tmp_path / "none.pth",
              "--win_duration", "nan")
    err = one_line_error(res, code=2)
    assert err == ("compress.py encode: error: argument --win_duration: must be a finite number > 0 and <= 86400 "
                   "seconds; got nan (see --help)\n")


def test_the_api_checks_the_same_numbers(tmp_path):
    codec = dac_jax.init_model("tiny", seed=0)
    x = synth.speech_like(0.2, 16000, seed=1)
    for kwargs, message in [
        (dict(win_duration=float("nan")), "win_duration must be a finite number > 0"),
        (dict(win_duration=float("inf")), "win_duration must be a finite number > 0"),
        (dict(win_duration="5"), "got '5'"),
        (dict(n_quantizers=2.5), "n_quantizers must be a whole number 1..4"),
        (dict(n_quantizers=True), "got True"),
        (dict(normalize_db=float("nan")), "normalize_db must be a finite number"),
        (dict(batch_size=0), "batch_size must be a whole number"),
        (dict(sample_rate=0), "sample_rate must be a whole number 1..384000 Hz; got 0"),
    ]:
        with pytest.raises(dac_jax.UsageError, match=message):
            codec.compress(x, **kwargs)
    with pytest.raises(dac_jax.UsageError, match="n_quantizers must be a whole number"):
        codec.encode(x[None, None], n_quantizers=True)
    bad = x.copy()
    bad[7] = np.inf
    with pytest.raises(dac_jax.AudioError, match="NaN or Inf"):
        codec.encode(bad[None, None])
    with pytest.raises(dac_jax.AudioError, match="NaN or Inf"):
        codec.compress(bad)
    with pytest.raises(dac_jax.UsageError, match="a path or a model type"):
        dac_jax.load_model(None)
    vae = dac_jax.init_vae("vae-tiny", seed=0)
    with pytest.raises(dac_jax.UsageError, match="seed must be a whole number"):
        vae.compress(synth.speech_like(0.2, vae.sample_rate, seed=1), seed=1.5)
    with pytest.raises(dac_jax.UsageError, match="win_duration"):
        vae.decompress(vae.compress(synth.speech_like(0.2, vae.sample_rate, seed=1)), win_duration=float("nan"))


# -- output folders, found before the model loads -------------------------------------------------------


def test_output_folder_problems_come_before_the_model(tmp_path):
    src = write(tmp_path / "a.wav")
    (tmp_path / "file").write_text("x")
    missing = tmp_path / "missing.pth"  # loading it would fail: the output's error must come first
    for output, message in [
        (tmp_path / "file", "cannot create the folder"),
        (tmp_path / "file" / "sub", "cannot create the folder"),
        ("/proc/dac_jax_out", "cannot write there"),
    ]:
        err = one_line_error(run("encode", src, "--output", output, "--weights_path", missing))
        assert message in err and "missing.pth" not in err, err


def test_long_output_names_are_written(tmp_path, weights):
    src = write(tmp_path / ("n" * 251 + ".wav"))  # a 255-byte name: the filesystem's limit
    res = run("encode", src, "--output", tmp_path / "o", "--weights_path", weights, "--quiet")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / ("n" * 251 + ".dac")).is_file()


# -- inputs ----------------------------------------------------------------------------------------------


def test_a_truncated_wav_is_named_with_both_lengths(tmp_path, weights):
    whole = write(tmp_path / "whole.wav", 1.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: 44 + 2 * 6000])  # header of 16000 frames, 6000 frames of data
    res = run("encode", cut, "--output", tmp_path / "o", "--weights_path", weights, "--quiet")
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {cut}: truncated: its header promises 16000 frames, the file holds 6000; "
                        "using the 6000 frames it holds"], res.stderr
    assert dac_jax.DACFile.load(tmp_path / "o" / "cut.dac").original_length == 6000


def test_empty_folders_and_unusual_suffixes(tmp_path, weights):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio here")
    res = run("encode", tmp_path / "empty", "--output", tmp_path / "o", "--weights_path", weights, "--quiet")
    assert res.returncode == 1 and "encoded 0 files, 1 failed" in res.stdout and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: {tmp_path / 'empty'}: no input files found under the folder (suffixes: .wav .wave .flac"), errors
    # an empty folder among others is that input's error; the rest still runs
    src = tmp_path / "src"
    write(src / "voice.opus", format="OGG", subtype="OPUS", rate=48000)  # libsndfile reads Opus: not skipped
    write(src / "take.aiff", format="AIFF")
    (src / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    res = run("encode", src, tmp_path / "empty", "--output", tmp_path / "o", "--weights_path", weights, "--quiet")
    assert res.returncode == 1 and "encoded 2 files, 1 failed" in res.stdout, res.stdout + res.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["take.dac", "voice.dac"]
    assert "note: skipped 2 files with other suffixes (1 .jpg, 1 .txt)" in res.stderr


# -- the other commands ----------------------------------------------------------------------------------


def test_convert_export_demo_refusals_are_one_line(tmp_path, weights):
    pth = dac_jax.load_model(weights).export_torch(tmp_path / "w.pth")
    (tmp_path / "some_file.txt").write_text("mine")
    err = one_line_error(run("convert", pth, tmp_path / "some_file.txt", module=True))
    assert "some_file.txt: is a file" in err and (tmp_path / "some_file.txt").read_text() == "mine"
    user = tmp_path / "d"
    user.mkdir()
    (user / "song.wav").write_bytes(b"mine")
    err = one_line_error(run("convert", pth, ".", module=True, cwd=user))
    assert "refusing to replace it" in err and os.listdir(user) == ["song.wav"]
    (tmp_path / "existing_dir").mkdir()
    err = one_line_error(run("export", weights, tmp_path / "existing_dir", module=True))
    assert "existing_dir: is a folder" in err
    err = one_line_error(run("export", weights, pth, module=True))
    assert "w.pth: already exists; pass --overwrite" in err
    assert run("export", weights, pth, "--overwrite", module=True).returncode == 0
    err = one_line_error(run("export", pth, pth, "--overwrite", module=True))  # never the input
    assert "w.pth: is the input" in err
    err = one_line_error(run("demo", "--duration", "0", "--output", tmp_path / "demo", module=True), code=2)
    assert "argument --duration: must be a finite number > 0" in err and not (tmp_path / "demo").exists()
    # a converted checkpoint is replaced only with --overwrite
    assert run("convert", pth, tmp_path / "ckpt", module=True).returncode == 0
    err = one_line_error(run("convert", pth, tmp_path / "ckpt", module=True))
    assert "ckpt: already exists; pass --overwrite" in err
    assert run("convert", pth, tmp_path / "ckpt", "--overwrite", module=True).returncode == 0


def test_help_names_the_program_the_user_ran():
    assert run("--help").stdout.startswith("usage: compress.py")
    assert run("--help", module=True).stdout.startswith("usage: python -m dac_jax")


def test_the_offline_download_message_points_to_weights_path(tmp_path, monkeypatch):
    from dac_jax.weights import registry

    monkeypatch.setattr(registry, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(registry, "URLS", {k: "http://127.0.0.1:9/weights.pth" for k in registry.URLS})
    with pytest.raises(dac_jax.WeightsError) as e:
        registry.download("16khz")
    message = str(e.value)
    assert "\n" not in message and "--weights_path" in message and "127.0.0.1:9" in message
    # nothing but the lock that serialises downloads of one file (no .pth, no empty .part)
    assert {p.name for p in (tmp_path / "cache").iterdir()} <= {registry.cache_path("16khz").name + ".lock"}


# -- hostile files in a directory run, non-finite decodes --------------------------------------------------


def test_hostile_dac_files_are_each_one_line_and_the_rest_decodes(tmp_path, weights):
    from dac_jax.codec import dacfile
    from tests.codec.test_file_fuzz import crafted_dacs

    src = tmp_path / "in"
    good = dac_jax.load_model(weights).compress(synth.speech_like(0.3, 16000, seed=1)).save(src / "good.dac")
    with open(good, "rb") as f:
        artifacts = dacfile._read_payload(f, str(good))
    hostile = {k: v for k, v in crafted_dacs(artifacts).items()
               if k in ("sample_rate 1e9", "original_length 1e12", "nested 100000", "reconstruct huge",
                        "binbytes8 1 TiB", "os.system", "checksum wrong")}
    for i, data in enumerate(hostile.values()):
        (src / f"bad{i}.dac").write_bytes(data)
    res = run("decode", src, "--output", tmp_path / "out", "--weights_path", weights, "--quiet")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"decoded 1 file, {len(hostile)} failed" in res.stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert sorted(e.split(":")[1].strip() for e in errors) == sorted(str(src / f"bad{i}.dac") for i in range(len(hostile)))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.wav"]


def test_decoding_to_non_finite_audio_is_an_error_in_the_api(tmp_path):
    import jax

    codec = dac_jax.init_model("tiny", seed=0)
    dacfile = codec.compress(synth.speech_like(0.3, 16000, seed=1))
    broken = dac_jax.Codec(codec.config, jax.tree_util.tree_map(lambda p: p * np.nan, codec.variables))
    with pytest.raises(dac_jax.FileFormatError, match="DACFile: decodes to non-finite audio"):
        broken.decompress(dacfile)
    vae = dac_jax.init_vae("vae-tiny", seed=0)
    latents = vae.compress(synth.speech_like(0.3, vae.sample_rate, seed=1)).save(tmp_path / "z.npz")
    broken = dac_jax.VAECodec(vae.config, jax.tree_util.tree_map(lambda p: p * np.nan, vae.variables))
    with pytest.raises(dac_jax.FileFormatError, match="z.npz: decodes to non-finite audio"):
        broken.decompress(latents)
