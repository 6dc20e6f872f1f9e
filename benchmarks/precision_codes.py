"""What the opt-in precisions cost in codes and audio, and what they gain in time (issue 17).

    .venv/bin/python -m benchmarks.precision_codes [--models 44khz demo16khz] [--precisions bfloat16]
        [--seconds 5] [--reps 3]

For each model and each precision beside float32 (:mod:`dac_jax.nn.precision`; ``tf32`` needs a
GPU), on 5 s each of the demo sentence (speech, resampled to the model's rate), a C major chord,
noise, speech-like synthetic audio and silence, padded whole-signal encoding:

- codes equal to float32's: all codebooks, and the first (a changed first code moves every later
  residual, so those differ in clusters);
- the decoder alone: float32's codes decoded in the opt-in, its SNR against float32's decoding
  and the largest difference;
- time per call of encode and decode on the 5 s signal, median of ``reps``, against float32's
  (on a CPU bfloat16 has no fast path: the row says what the rounding does, not what a GPU gains).

``44khz`` is random weights (seed 0), ``demo16khz`` the trained demo model, whose codebooks are
used as a trained model's are, so its near-ties are the ones a user meets.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import dac_jax
from dac_jax.audio import synth
from dac_jax.audio.io import read_audio
from dac_jax.audio.resample import resample_frac
from dac_jax.demo import DEMO_INPUT


def signals(rate: int, seconds: float) -> dict[str, np.ndarray]:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    speech, speech_rate = read_audio(DEMO_INPUT)
    speech = np.asarray(resample_frac(speech[0], speech_rate, rate))
    speech = np.resize(speech, n)  # repeated to fill the length
    return {
        "speech (demo sentence)": speech,
        "chord": sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 4,
        "noise": 0.2 * np.random.default_rng(0).standard_normal(n),
        "speech-like": 0.5 * synth.speech_like(seconds + 0.01, rate, seed=1)[:n],
        "silence": np.zeros(n),
    }


def _median_time(fn, reps: int) -> float:
    jax.block_until_ready(fn())  # compiles
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = np.sum((reference - estimate) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference ** 2) / noise))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["44khz", "demo16khz"])
    parser.add_argument("--precisions", nargs="+", default=["bfloat16"], choices=["tf32", "bfloat16"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    print("| model | audio | precision | codes equal (all / first codebook) | decoder SNR vs float32 (dB) "
          "| decoder max abs diff | encode float32 / opt-in (ms) | decode float32 / opt-in (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        codec = dac_jax.load_model(name) if name == "demo16khz" else dac_jax.init_model(name)
        for label, x in signals(codec.sample_rate, args.seconds).items():
            audio = np.asarray(x, np.float32)[None, None]
            codec.precision = "float32"
            codes = np.asarray(codec.encode(audio))
            decoded = np.asarray(codec.decode(codes))
            t_enc = _median_time(lambda: codec.encode(audio), args.reps)
            t_dec = _median_time(lambda: codec.decode(codes), args.reps)
            for precision in args.precisions:
                codec.precision = precision
                opt_codes = np.asarray(codec.encode(audio))
                opt_decoded = np.asarray(codec.decode(codes))
                o_enc = _median_time(lambda: codec.encode(audio), args.reps)
                o_dec = _median_time(lambda: codec.decode(codes), args.reps)
                equal = (opt_codes == codes).mean()
                first = (opt_codes[:, 0] == codes[:, 0]).mean()
                print(f"| {name} | {label} | {precision} | {100 * equal:.2f} % / {100 * first:.2f} % "
                      f"| {snr_db(decoded, opt_decoded):.1f} | {np.abs(decoded - opt_decoded).max():.1e} | {1e3 * t_enc:.0f} / {1e3 * o_enc:.0f} "
                      f"| {1e3 * t_dec:.0f} / {1e3 * o_dec:.0f} |", flush=True)


if __name__ == "__main__":
    main()
