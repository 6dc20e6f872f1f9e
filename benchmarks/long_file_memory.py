"""Peak host memory (and time) of encoding and decoding a long file with the real CLI.

    .venv/bin/python -m benchmarks.long_file_memory [--minutes 60] [--channels 2] [--rate 44100]
        [--model dac|vae] [--weights PATH] [--mode independent|faithful] [--win_duration 5]

Writes a long WAV (PCM 16, tones and noise), runs ``compress.py encode`` and ``compress.py decode``
as child processes, and reports each one's wall time and peak resident memory (``ru_maxrss`` from
``wait4``). Without ``--weights`` it uses a small random model at the file's rate with the
44 kHz model's hop (512) (``--model vae``: a small random DAC-VAE with the released x2 geometry,
24 kHz, hop 480, writing latent files): host memory is set by the audio buffers, not by the model,
and the small model keeps an hour of audio within minutes on a CPU. Device memory is bounded by the window and
batch whatever the file length (one batch of windows is on the device at a time).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import dac_jax
from dac_jax.model.config import DACConfig, VAEConfig

ROOT = Path(__file__).resolve().parents[1]


def write_long_wav(path: Path, minutes: float, rate: int, channels: int) -> int:
    frames = int(minutes * 60 * rate)
    block = rate * 10
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", rate, channels, "PCM_16") as f:
        for start in range(0, frames, block):
            n = min(block, frames - start)
            t = (start + np.arange(n)) / rate
            tone = 0.2 * np.sin(2 * np.pi * (220 + 110 * np.arange(channels))[None, :] * t[:, None])
            f.write((tone + 0.05 * rng.standard_normal((n, channels))).astype(np.float32))
    return frames


def run_measured(args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in GiB, exit status) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "compress.py"), *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 2**20, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--model", default="dac", choices=["dac", "vae"])
    parser.add_argument("--weights", help="a checkpoint to use instead of the small random model")
    parser.add_argument("--mode", default="independent", choices=["independent", "faithful"])
    parser.add_argument("--win_duration", type=float, default=5.0)
    parser.add_argument("--batch_size", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None and args.model == "vae":
            config = VAEConfig(encoder_dim=4, encoder_rates=(2, 3, 4, 4, 5), latent_dim=80, decoder_dim=32,
                               decoder_rates=(5, 4, 4, 3, 2), sample_rate=24000)
            weights = str(dac_jax.init_vae(config).save(tmp / "small"))
        elif weights is None:
            config = DACConfig(encoder_dim=4, encoder_rates=(2, 4, 8, 8), latent_dim=16, decoder_dim=32,
                               decoder_rates=(8, 8, 4, 2), n_codebooks=9, codebook_size=1024, sample_rate=args.rate)
            weights = str(dac_jax.Codec(config, dac_jax.model.dac.init_variables(config)).save(tmp / "small"))
        wav = tmp / "long.wav"
        t0 = time.perf_counter()
        frames = write_long_wav(wav, args.minutes, args.rate, args.channels)
        print(f"wrote {args.minutes:g} min, {args.channels} ch, {args.rate} Hz ({wav.stat().st_size / 2**30:.2f} GiB) "
              f"in {time.perf_counter() - t0:.0f} s")
        common = ["--weights_path", weights, "--win_duration", str(args.win_duration),
                  "--batch_size", str(args.batch_size), "--quiet"]
        enc = run_measured(["encode", str(wav), "--output", str(tmp / "codes"), "--mode", args.mode, *common])
        encoded = next((tmp / "codes").iterdir())
        print(f"{encoded.name}: {encoded.stat().st_size / 2**20:.1f} MiB")
        dec = run_measured(["decode", str(encoded), "--output", str(tmp / "out"), *common])
        assert sf.info(str(tmp / "out" / "long.wav")).frames == frames
        audio_gib = frames * args.channels * 4 / 2**30
        print(f"\n| step | wall (s) | peak host memory (GiB) | exit |\n|---|---|---|---|")
        print(f"| encode ({args.mode}) | {enc[0]:.0f} | {enc[1]:.2f} | {enc[2]} |")
        print(f"| decode | {dec[0]:.0f} | {dec[1]:.2f} | {dec[2]} |")
        print(f"\n(the audio itself is {audio_gib:.2f} GiB as float32)")


if __name__ == "__main__":
    main()
