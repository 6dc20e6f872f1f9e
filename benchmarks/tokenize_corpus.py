"""Corpus tokenization throughput: the original's per-file ``compress``, dac-jax's per-file
``compress``, and ``tokenize``, on one generated corpus, in one run.

    .venv/bin/python -m benchmarks.tokenize_corpus [--files 300] [--subset 10] [--model_type 44khz]
        [--output results/tokenize] [--hour] [--parts tokenize ours original]

The corpus (written once under ``<output>/corpus``): ``--files`` files of 0.5-60 s, most of them
short as in speech corpora (92 % log-uniform in 0.5-4 s, 8 % in 4-60 s), at 16, 22.05, 44.1 and
48 kHz, mono and stereo, speech-like, chords, sweeps and noise. Weights are random (seeded): they do
not change the arithmetic.

- (c) ``tokenize`` runs over the whole corpus;
- (b) dac-jax's ``compress`` (window-independent, its default) and (a) the original's ``compress``
  (``DAC.compress(AudioSignal(path))``, eager PyTorch) run file by file over every ``--subset``-th
  file (sorted by duration, so the subset spans the same lengths), a stratified sample: their
  audio-seconds per second extrapolate to the corpus. Each runs in its own process, which reports
  its wall time, its compilations (JAX traces) and its peak resident memory.
- ``--hour`` adds ``tokenize`` of one 1-hour mono 44.1 kHz file, for the peak host memory of one
  long file. It runs the 44 kHz model's geometry (rates, hop, context, codebooks) at width 4
  (``NARROW_44KHZ``), so that it takes minutes, not the hour the full width would take on this CPU:
  what the host holds (the signal, its windows, the codes) is the full model's; the device's
  activations, which the full model adds, are what the corpus run's peak shows for one batch.

Results: ``<output>/tokenize_corpus.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATES = (16000, 22050, 44100, 48000)
NARROW_44KHZ = dict(encoder_dim=4, encoder_rates=(2, 4, 8, 8), latent_dim=8, decoder_dim=16, decoder_rates=(8, 8, 4, 2),
                    n_codebooks=9, codebook_size=1024, codebook_dim=8, sample_rate=44100)


def durations(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    long = rng.random(n) < 0.08
    lo, hi = np.where(long, 4.0, 0.5), np.where(long, 60.0, 4.0)
    return np.exp(rng.uniform(np.log(lo), np.log(hi)))


def make_corpus(folder: Path, n: int, seed: int = 0) -> list[Path]:
    import soundfile as sf

    from dac_jax.audio import synth

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    paths = []
    for i, seconds in enumerate(durations(n, seed)):
        rate = int(RATES[i % len(RATES)])
        channels = 2 if i % 3 == 0 else 1
        kind = ("speech", "music", "noise")[i % 3 if i % 5 else 1]
        path = folder / kind / f"{i:04d}.flac"
        paths.append(path)
        if path.exists():
            continue
        path.parent.mkdir(exist_ok=True)
        chans = []
        for c in range(channels):
            if kind == "speech":
                x = synth.speech_like(seconds, rate, seed=i * 7 + c)
            elif kind == "music":
                x = sum(synth.sine_sweep(seconds, rate, f0=f, f1=f * 1.01, level=0.15)
                        for f in rng.choice([130.8, 164.8, 196.0, 220.0, 261.6, 329.6], 3, replace=False))
            else:
                x = synth.noise(seconds, rate, seed=i * 7 + c, level=0.05 + 0.1 * rng.random())
            chans.append(np.asarray(x, np.float32))
        sf.write(path, np.stack(chans, -1), rate, subtype="PCM_16")
    return paths


# -- the three ways, each in its own process -------------------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tokenize(args) -> dict:
    import dac_jax
    from dac_jax import runtime

    config = dac_jax.DACConfig(**NARROW_44KHZ) if args.model_type == "narrow-44khz" else args.model_type
    codec = dac_jax.init_model(config, seed=0)
    inputs = [Path(p) for p in args.inputs]
    before = runtime.trace_counts["encode"]
    start = time.perf_counter()
    summary = dac_jax.tokenize(codec, inputs, args.out, win_duration=5.0, batch_size=args.batch_size, progress=False)
    wall = time.perf_counter() - start
    return {"audio_seconds": summary.audio_seconds, "wall": wall, "files": summary.files,
            "compilations": runtime.trace_counts["encode"] - before, "peak_mb": _peak_mb()}


def run_ours(args) -> dict:
    import dac_jax
    from dac_jax import runtime

    codec = dac_jax.init_model(args.model_type, seed=0)
    before = runtime.trace_counts["encode"]
    start, seconds = time.perf_counter(), 0.0
    for path in args.inputs:
        f = codec.compress(path, win_duration=5.0)
        seconds += f.original_length / f.sample_rate
    wall = time.perf_counter() - start
    return {"audio_seconds": seconds, "wall": wall, "files": len(args.inputs),
            "compilations": runtime.trace_counts["encode"] - before, "peak_mb": _peak_mb()}


def run_original(args) -> dict:
    import torch
    from audiotools import AudioSignal

    sys.path.insert(0, str(ROOT))
    from tests import reference

    torch.set_num_threads(os.cpu_count())
    model = reference.torch_model(args.model_type, seed=0)
    start, seconds = time.perf_counter(), 0.0
    with torch.no_grad():
        for path in args.inputs:
            signal = AudioSignal(path)
            model.compress(signal, win_duration=5.0, verbose=False)
            seconds += signal.signal_length / signal.sample_rate
    wall = time.perf_counter() - start
    return {"audio_seconds": seconds, "wall": wall, "files": len(args.inputs), "compilations": 0,
            "peak_mb": _peak_mb()}


WAYS = {"tokenize": run_tokenize, "ours": run_ours, "original": run_original}


def child(way: str, inputs: list[Path], out: Path, model_type: str, batch_size: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.tokenize_corpus", "--child", way, "--model_type", model_type,
           "--out", str(out), "--batch_size", str(batch_size), "--inputs", *map(str, inputs)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if res.returncode:
        raise SystemExit(f"{way} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    c, b, a = result["tokenize"], result["ours"], result["original"]
    rate = lambda r: r["audio_seconds"] / r["wall"]  # noqa: E731
    lines = [
        f"Corpus: {result['files']} files, {result['hours']:.2f} h ({result['model_type']}, {result['cpu']}); "
        f"(a) and (b) on every {result['subset']}-th file by duration ({b['files']} files, "
        f"{b['audio_seconds'] / 60:.1f} min).",
        "",
        "| way | audio-s per s | compilations | peak memory | tokenize is |",
        "|---|---|---|---|---|",
        f"| (a) original `compress`, file by file | {rate(a):.2f} | - | {a['peak_mb']:.0f} MB | {rate(c) / rate(a):.1f}x faster |",
        f"| (b) dac-jax `compress`, file by file | {rate(b):.2f} | {b['compilations']} | {b['peak_mb']:.0f} MB | {rate(c) / rate(b):.1f}x faster |",
        f"| (c) dac-jax `tokenize` | {rate(c):.2f} | {c['compilations']} | {c['peak_mb']:.0f} MB | |",
    ]
    if "hour" in result:
        h = result["hour"]
        lines += ["", f"One 1-hour mono 44.1 kHz file (the 44 kHz geometry at width 4, see the script): "
                  f"peak memory {h['peak_mb']:.0f} MB, {h['compilations']} compilation(s), "
                  f"{h['audio_seconds'] / h['wall']:.1f} audio-s per s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--subset", type=int, default=10)
    p.add_argument("--model_type", default="44khz")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--output", default="results/tokenize")
    p.add_argument("--hour", action="store_true")
    p.add_argument("--parts", nargs="+", default=["tokenize", "ours", "original"],
                   help="which measurements to (re)run; the others are kept from an earlier run's json")
    p.add_argument("--child", choices=sorted(WAYS))
    p.add_argument("--inputs", nargs="*")
    p.add_argument("--out")
    args = p.parse_args()
    if args.child:
        print(json.dumps(WAYS[args.child](args)))
        return

    output = Path(args.output)
    paths = make_corpus(output / "corpus", args.files)
    seconds = durations(args.files)
    by_length = [paths[i] for i in np.argsort(seconds)]
    subset = by_length[args.subset // 2 :: args.subset]
    result = {"files": len(paths), "hours": float(seconds.sum() / 3600), "subset": args.subset,
              "model_type": args.model_type, "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    import shutil

    earlier = output / "tokenize_corpus.json"
    if earlier.exists():
        result = {**json.loads(earlier.read_text()), **result}
    if "tokenize" in args.parts:
        shutil.rmtree(output / "tokens", ignore_errors=True)
        result["tokenize"] = child("tokenize", [output / "corpus"], output / "tokens", args.model_type, args.batch_size)
        print("tokenize", result["tokenize"], flush=True)
    if "ours" in args.parts:
        result["ours"] = child("ours", subset, output / "unused", args.model_type, args.batch_size)
        print("ours", result["ours"], flush=True)
    if "original" in args.parts:
        result["original"] = child("original", subset, output / "unused", args.model_type, args.batch_size)
        print("original", result["original"], flush=True)
    if args.hour:
        import soundfile as sf

        from dac_jax.audio import synth

        hour = output / "hour" / "hour.flac"
        if not hour.exists():
            hour.parent.mkdir(parents=True, exist_ok=True)
            with sf.SoundFile(hour, "w", 44100, 1, "PCM_16") as fh:
                for minute in range(60):
                    fh.write(synth.speech_like(60.0, 44100, seed=minute))
        shutil.rmtree(output / "hour_tokens", ignore_errors=True)
        result["hour"] = child("tokenize", [hour.parent], output / "hour_tokens", "narrow-44khz", args.batch_size)
        print("hour", result["hour"], flush=True)
    (output / "tokenize_corpus.json").write_text(json.dumps(result, indent=2))
    (output / "tokenize_corpus.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
