"""The opt-in Winograd convolutions against the default direct ones, interleaved in one process.

    .venv/bin/python -m benchmarks.winograd_ab [--model_type 44khz] [--windows 0.38 1 5 10] [--reps 5] [--m 4]

Per window, one chunk of the original's compress loop (unpadded encode of ``n_samples``) and of
its decompress loop, timed alternately with the direct and the Winograd inference variables of
the same random weights, so that machine drift (which moves the 2-core CPU's throughput by 10-20 %
between runs) hits both alike. Also reports the fraction of equal codes and the largest audio
difference of decoding the same codes.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

import dac_jax
from dac_jax import runtime
from dac_jax.audio import synth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_type", default="44khz")
    parser.add_argument("--windows", type=float, nargs="+", default=[0.38, 1.0, 5.0, 10.0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--m", type=int, default=4, choices=[2, 4])
    args = parser.parse_args()

    codec = dac_jax.init_model(args.model_type, seed=0)
    direct = codec.inference_variables
    codec.winograd = args.m
    winograd = codec.inference_variables
    module = codec.unpadded_module
    print(f"{args.model_type}, Winograd F({args.m}, 7) on kernel-7 convolutions of >= 64 channels\n")
    print("| window (s) | compress direct (ms) | compress Winograd (ms) | gain | decompress direct (ms) | "
          "decompress Winograd (ms) | gain | codes equal | audio max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w in args.windows:
        n = math.ceil(int(w * codec.sample_rate) / codec.hop_length) * codec.hop_length
        audio = 0.5 * synth.speech_like(n / codec.sample_rate + 0.01, codec.sample_rate, seed=1)[None, None, :n]
        audio = audio.astype(np.float32)
        encode = {k: (lambda v=v: runtime.encode(module, v, audio, None).codes.block_until_ready())
                  for k, v in (("direct", direct), ("winograd", winograd))}
        codes = {k: np.asarray(f()) for k, f in encode.items()}
        decode = {k: (lambda v=v: runtime.decode(module, v, codes["direct"]).block_until_ready())
                  for k, v in (("direct", direct), ("winograd", winograd))}
        decoded = {k: np.asarray(f()) for k, f in decode.items()}
        times = {f"{op}_{k}": [] for op in ("encode", "decode") for k in ("direct", "winograd")}
        for _ in range(args.reps):
            for op, fns in (("encode", encode), ("decode", decode)):
                for k, f in fns.items():
                    t = time.perf_counter()
                    f()
                    times[f"{op}_{k}"].append(time.perf_counter() - t)
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        print(f"| {w:g} | {ms['encode_direct']:.0f} | {ms['encode_winograd']:.0f} | "
              f"**{ms['encode_direct'] / ms['encode_winograd']:.2f}x** | {ms['decode_direct']:.0f} | "
              f"{ms['decode_winograd']:.0f} | **{ms['decode_direct'] / ms['decode_winograd']:.2f}x** | "
              f"{100 * np.mean(codes['direct'] == codes['winograd']):.2f}% | "
              f"{np.abs(decoded['direct'] - decoded['winograd']).max():.1e} |", flush=True)


if __name__ == "__main__":
    main()
