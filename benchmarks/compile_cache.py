"""First and second run of ``compress.py encode`` on one 10 s file: what the persistent compilation
cache saves a user who runs the same command twice.

    .venv/bin/python -m benchmarks.compile_cache [--model_type 44khz] [--seconds 10] [--output results/compile_cache]

Each run is a fresh process (``compress.py encode FILE --weights_path W --output DIR --overwrite``),
timed from start to exit: (1) with an empty cache folder (compiles and fills it), (2) the same
command again (loads the compiled programs), (3) with ``--no_compilation_cache`` (compiles every
time). Weights are random (seeded) in a dac-jax folder: they do not change the arithmetic. The
input is a speech-like signal at the model's rate. Results: ``<output>/compile_cache.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_type", default="44khz")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--output", default="results/compile_cache")
    args = ap.parse_args()

    import soundfile

    import dac_jax
    from dac_jax.audio import synth

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"random-{args.model_type}"
    codec = dac_jax.init_model(args.model_type, seed=0)
    if not weights.exists():
        codec.save(weights)
    wav = out / "input.wav"
    soundfile.write(wav, synth.speech_like(args.seconds, codec.sample_rate, seed=0), codec.sample_rate)
    cache = out / "xla-cache"
    if cache.exists():
        raise SystemExit(f"{cache} exists: remove it (or choose another --output) for a first run from empty")
    env = {**os.environ, "DAC_JAX_COMPILATION_CACHE": str(cache)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    base = [sys.executable, "compress.py", "encode", str(wav), "--weights_path", str(weights),
            "--output", str(out / "codes"), "--overwrite", "--quiet"]
    runs = {
        "first run (empty cache)": timed(base, env),
        "second run (cache filled)": timed(base, env),
        "--no_compilation_cache": timed(base + ["--no_compilation_cache"], env),
    }
    size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    result = {"model_type": args.model_type, "seconds": args.seconds, "wall_s": runs,
              "cache_mb": size / 2**20, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "command": " ".join(["compress.py", "encode", "input.wav", "--weights_path", "W", "--output", "DIR"])}
    (out / "compile_cache.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"`compress.py encode` of one {args.seconds:g} s file, {args.model_type} (random weights), "
             f"{result['machine']}; cache {result['cache_mb']:.1f} MB", "", "| run | wall time (s) |", "|---|---|"]
    lines += [f"| {name} | {t:.1f} |" for name, t in runs.items()]
    (out / "compile_cache.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
