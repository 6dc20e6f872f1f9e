"""The Winograd convolutions against the direct ones, interleaved in one process.

    .venv/bin/python -m benchmarks.winograd_ab [--model_type 44khz | --weights demo16khz] [--windows 0.38 1 5 10] [--reps 5] [--m 4]

Per window, one chunk of the original's compress loop (unpadded encode of ``n_samples``) and of
its decompress loop, timed alternately (so that machine drift, which moves the 2-core CPU's
throughput by 10-20 % between runs, hits all alike) with: the direct convolutions; the Winograd
encoder unchecked (its codes may differ); the checked Winograd encoder (``fast_encoder``: codes
checked against the error bound, doubtful frames recomputed directly, :mod:`dac_jax.guard`),
with the share of doubtful frames and the fallback's cost; and for decoding, the direct and the
Winograd decoder on the same codes (the largest audio difference). Random weights unless
``--weights`` names trained ones.
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
    parser.add_argument("--model_type", default="44khz", help="random weights of this config")
    parser.add_argument("--weights", default=None, help="trained weights instead (a path or a model name)")
    parser.add_argument("--windows", type=float, nargs="+", default=[0.38, 1.0, 5.0, 10.0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--m", type=int, default=4, choices=[2, 4])
    args = parser.parse_args()

    codec = dac_jax.load_model(args.weights) if args.weights else dac_jax.init_model(args.model_type, seed=0)
    codec.winograd = None  # the direct convolutions first (the default decoder on a CPU is Winograd's)
    direct = codec.inference_variables
    codec.winograd = args.m
    codec.fast_encoder = True
    fast_decoder, fast_encoder = codec.inference_variables, codec.fast_encoder_variables
    module = codec.unpadded_module
    began = time.perf_counter()
    rho = codec.guard_error
    print(f"{args.weights or args.model_type + ' (random weights)'}, Winograd F({args.m}, 7) on kernel-7 convolutions "
          f"of >= 64 channels; guard: error bound {rho:.2e} of the largest frame norm (calibrated in "
          f"{time.perf_counter() - began:.1f} s)\n")
    print("| window (s) | compress direct (ms) | Winograd unchecked (ms) | gain | codes equal | Winograd checked (ms) "
          "| gain | codes equal | doubtful frames | fallback frames | decompress direct (ms) | Winograd (ms) | gain "
          "| audio max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for w in args.windows:
        n = math.ceil(int(w * codec.sample_rate) / codec.hop_length) * codec.hop_length
        audio = 0.5 * synth.speech_like(n / codec.sample_rate + 0.01, codec.sample_rate, seed=1)[None, None, :n]
        audio = audio.astype(np.float32)
        encode = {
            "direct": lambda: np.asarray(runtime.encode(module, direct, audio, None).codes),
            "unchecked": lambda: np.asarray(runtime.encode(module, fast_encoder, audio, None).codes),
            "checked": lambda: np.asarray(codec.encode_frames(audio, padded=False)),
        }
        codes = {k: f() for k, f in encode.items()}
        decode = {k: (lambda v=v: runtime.decode(module, v, codes["direct"]).block_until_ready())
                  for k, v in (("direct", direct), ("winograd", fast_decoder))}
        decoded = {k: np.asarray(f()) for k, f in decode.items()}
        times = {f"{op}_{k}": [] for op, fns in (("encode", encode), ("decode", decode)) for k in fns}
        codec.guard_stats.reset()
        for _ in range(args.reps):
            for op, fns in (("encode", encode), ("decode", decode)):
                for k, f in fns.items():
                    t = time.perf_counter()
                    f()
                    times[f"{op}_{k}"].append(time.perf_counter() - t)
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        stats = codec.guard_stats
        equal = {k: 100 * np.mean(codes["direct"] == codes[k]) for k in ("unchecked", "checked")}
        print(f"| {w:g} | {ms['encode_direct']:.0f} | {ms['encode_unchecked']:.0f} | "
              f"{ms['encode_direct'] / ms['encode_unchecked']:.2f}x | {equal['unchecked']:.2f}% | "
              f"{ms['encode_checked']:.0f} | **{ms['encode_direct'] / ms['encode_checked']:.2f}x** | "
              f"{equal['checked']:.2f}% | {100 * stats.flagged_fraction:.1f}% | {100 * stats.cost_fraction:.0f}% | "
              f"{ms['decode_direct']:.0f} | {ms['decode_winograd']:.0f} | "
              f"**{ms['decode_direct'] / ms['decode_winograd']:.2f}x** | "
              f"{np.abs(decoded['direct'] - decoded['winograd']).max():.1e} |", flush=True)


if __name__ == "__main__":
    main()
