"""DAC-VAE on long signals: windowed encoding and decoding against whole-signal processing, and speed.

    .venv/bin/python -m benchmarks.vae_windows [--model_type vae24khz-x2] [--seconds 30]
        [--windows 1 5] [--batch_size 4]

For a full-size DAC-VAE with seeded random weights (weights do not change the arithmetic), encodes a
speech-like signal whole (one padded pass) and in windows, and reports the largest differences of
the mean, the log-scale and the decoded audio between the two, and the windowed encode and decode
speed as a real-time factor (seconds of audio per second; compilation excluded: each window size
is run once before it is timed).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import dac_jax
from dac_jax.audio import synth
from dac_jax.codec import chunked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_type", default="vae24khz-x2", choices=["vae24khz-x2", "vae24khz-x3"])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--windows", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--batch_size", type=int, default=4)
    args = parser.parse_args()

    vae = dac_jax.init_vae(args.model_type, seed=0)
    rate, hop = vae.sample_rate, vae.hop_length
    audio = synth.speech_like(args.seconds, rate, seed=1)[None, : int(args.seconds * rate) - 123].astype(np.float32)
    frames = -(-audio.shape[-1] // hop)
    padded = np.zeros((1, 1, frames * hop), np.float32)
    padded[..., : audio.shape[-1]] = audio
    t0 = time.perf_counter()
    whole = vae.encode(padded)
    m, logs = np.asarray(whole.m), np.asarray(whole.logs)
    reference = np.asarray(vae.decode(m))[:, 0]
    print(f"{args.model_type}: {args.seconds:g} s at {rate} Hz, {frames} frames of {vae.config.latent_dim} dims; "
          f"whole-signal encode + decode (with compilation) {time.perf_counter() - t0:.1f} s on {platform.processor() or platform.machine()}")
    print("\n| window (s) | max abs diff mu | max abs diff logs | max abs diff audio | encode (x real time) | decode (x real time) |")
    print("|---|---|---|---|---|---|")
    for win in args.windows:
        chunked.encode_latents(vae, audio, win, args.batch_size)  # compile
        t0 = time.perf_counter()
        wm, wlogs = chunked.encode_latents(vae, audio, win, args.batch_size)
        t_enc = time.perf_counter() - t0
        chunked.decode_latents(vae, m, win, args.batch_size)
        t0 = time.perf_counter()
        out = chunked.decode_latents(vae, m, win, args.batch_size)
        t_dec = time.perf_counter() - t0
        print(f"| {win:g} | {np.abs(wm - m).max():.1e} | {np.abs(wlogs - logs).max():.1e} | "
              f"{np.abs(out - reference).max():.1e} | {args.seconds / t_enc:.2f} | {args.seconds / t_dec:.2f} |")


if __name__ == "__main__":
    main()
