"""train.py's keys as users meet them, in real processes: the README's command as written, a
mistyped flag or YAML key, a bad value, a missing or malformed config file. Each mistake is one
line on stderr naming the key (with the closest known one), exit code 1, and no run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.train import tiny

ROOT = Path(__file__).resolve().parents[2]

# copied from README.md's Training section, as a user pastes it
README_COMMAND = """python train.py --args.load configs/44khz.yml --save_path runs/44khz \\
    --train/build_dataset.folders '{"speech": ["data/speech"], "music": ["data/music"]}'"""


def run(cmd: list[str], cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def train(*args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "train.py", *args])


def one_line_error(res: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused run (exit 1, no traceback)."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def tiny_yml(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    return tiny.write_config(root / "tiny.yml", tiny.write_corpus(root / "data", files_per_group=1))


def test_the_readmes_training_command_runs_as_written(tmp_path):
    assert README_COMMAND in (ROOT / "README.md").read_text(), "README.md's training command changed: copy it here"
    # a working directory laid out as the command expects: train.py, configs/, the data folders it names
    (tmp_path / "train.py").symlink_to(ROOT / "train.py")
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    for name in ("speech", "music"):
        tiny.write_corpus(tmp_path / "data" / name, files_per_group=1)
    res = run(["bash", "-c", README_COMMAND + " --dry_run"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    config = json.loads(res.stdout)
    assert config["train_groups"] == [["data/speech"], ["data/music"]]
    assert len(config["val_groups"]) == 3 and config["batch_size"] == 72  # the rest is configs/44khz.yml's
    assert not (tmp_path / "runs").exists()


def test_help_lists_every_key():
    """``--help`` prints argbind's help, built from docstrings that may hold a literal "%"."""
    res = train("--help")
    assert res.returncode == 0 and not res.stderr, res.stderr[-3000:]
    assert res.stdout.startswith("usage: train.py")
    for key in ("--save_path", "--DAC.n_codebooks", "--winograd", "--coordinator_address"):
        assert f"\n  {key} " in res.stdout, key
    assert "~10 % faster" in " ".join(res.stdout.split())


def test_a_mistyped_flag_is_refused_with_the_closest_key(tiny_yml, tmp_path):
    res = train("--args.load", str(tiny_yml), "--save_path", str(tmp_path / "run"), "--time_limt", "20")
    assert one_line_error(res) == "error: unknown option --time_limt (did you mean --time_limit?)"
    assert not (tmp_path / "run").exists()


def test_mistyped_yaml_keys_are_refused_together(tiny_yml, tmp_path):
    config = yaml.safe_load(tiny_yml.read_text())
    config.update({"DAC.bogus": 3, "time_limt": 20, "num_workers": 8})
    path = tmp_path / "typo.yml"
    path.write_text(yaml.safe_dump(config))
    line = one_line_error(train("--args.load", str(path), "--save_path", str(tmp_path / "run")))
    assert line.startswith(f"error: {path}: ")
    assert "unknown key DAC.bogus (did you mean DAC." in line
    assert "unknown key time_limt (did you mean time_limit?)" in line
    assert "num_workers: not supported: tf.data sizes its parallel reading itself" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where,value,message", [
    ("yaml", 0, "DAC.n_codebooks must be a positive integer, got 0"),
    ("cli", "abc", "argument --DAC.n_codebooks: invalid int value: 'abc'"),
])  # more values, in-process: tests/train/test_cli_recipes.py
def test_a_bad_value_is_refused_before_any_folder_exists(where, value, message, tiny_yml, tmp_path):
    config = yaml.safe_load(tiny_yml.read_text())
    extra = []
    if where == "yaml":
        config["DAC.n_codebooks"] = value
    else:
        extra = ["--DAC.n_codebooks", str(value)]
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(config))
    line = one_line_error(train("--args.load", str(path), "--save_path", str(tmp_path / "run"), *extra))
    assert message in line and (where == "cli" or str(path) in line), line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,message", [
    (None, "no such config file"),
    ("DAC.n_codebooks: 4\n  - oops: [\n", "not valid YAML at line"),
])
def test_a_missing_or_malformed_config_file_is_one_line(text, message, tmp_path):
    path = tmp_path / "config.yml"
    if text is not None:
        path.write_text(text)
    line = one_line_error(train("--args.load", str(path), "--save_path", str(tmp_path / "run")))
    assert f"error: {path}: {message}" in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags,message", [
    (["--coordinator_address", "127.0.0.1", "--num_processes", "2", "--process_id", "0"],
     "--coordinator_address must be host:port"),
    (["--coordinator_address", "127.0.0.1:1234", "--num_processes", "2"], "go together"),
    (["--coordinator_address", "127.0.0.1:1234", "--num_processes", "2", "--process_id", "2"],
     "--process_id must be in 0..1; got 2"),
])  # the many-hosts flags themselves: tests/train/test_multihost.py (2 real processes)
def test_many_hosts_flags_are_checked_before_joining_a_job(flags, message, tiny_yml, tmp_path):
    line = one_line_error(train("--args.load", str(tiny_yml), "--save_path", str(tmp_path / "run"), *flags))
    assert message in line, line
    assert not (tmp_path / "run").exists()
