"""Streaming decode (and encode) of a full-size model: time per push, real-time factor, latency.

    .venv/bin/python -m benchmarks.streaming [--model_type 44khz] [--seconds 2.5] [--blocks 1 2 4 8 16]
        [--budget 30] [--encoder] [--check]

Random (seeded) weights: they do not change the arithmetic. Per block size k, a stream decoder
(:meth:`dac_jax.api.Codec.stream_decoder`) is pushed k frames at a time over ``seconds`` of codes;
the first push (compilation) is reported apart, then every push is timed until the codes or
``budget`` seconds run out (``push`` returns host numpy, so each time includes the device's work).
The real-time factor is the k frames' audio duration over the median push. The latency of a
frame's audio is the algorithmic one (the decoder's right reach, :attr:`stream_latency`), plus
the block's wait (the first of k frames waits for k - 1 more), plus the push's compute time.
A whole-sequence decode (one call, no streaming) is timed first: the CPU's ceiling.
``--check`` also decodes the whole sequence at once and reports the largest difference.
``--original`` also times the common workaround with the original PyTorch DAC (eager, weight norm
kept, 2 threads): the codes cut into 1 s blocks, each decoded with the decoder's reach of context
frames on both sides (so that the seams are exact, not crossfaded), its latency the block's wait,
the right context and the block's decode.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def bench_decoder(codec, codes: np.ndarray, k: int, budget: float) -> dict:
    decoder = codec.stream_decoder()
    t = time.perf_counter()
    decoder.push(codes[..., :k])
    compile_s = time.perf_counter() - t
    times, i, spent = [], k, 0.0
    while i + k <= codes.shape[-1] and spent < budget:
        t = time.perf_counter()
        decoder.push(codes[..., i: i + k])
        times.append(time.perf_counter() - t)
        spent += times[-1]
        i += k
    return {"compile_s": compile_s, "times": times}


def bench_encoder(codec, audio: np.ndarray, k: int, budget: float) -> dict:
    encoder, n = codec.stream_encoder(), k * codec.hop_length
    t = time.perf_counter()
    encoder.push(audio[..., :n])
    compile_s = time.perf_counter() - t
    times, i, spent = [], n, 0.0
    while i + n <= audio.shape[-1] and spent < budget:
        t = time.perf_counter()
        encoder.push(audio[..., i: i + n])
        times.append(time.perf_counter() - t)
        spent += times[-1]
        i += n
    return {"compile_s": compile_s, "times": times}


def bench_original_blocks(model_type: str, codes: np.ndarray, hop: int, sr: int, context: int, budget: float) -> dict:
    """The original DAC decoding 1 s blocks of ``codes`` with ``context`` frames on each side."""
    import torch
    from dac.model.dac import DAC as TorchDAC

    from dac_jax.model.config import PRESETS

    torch.set_num_threads(2)
    torch.manual_seed(0)
    c = PRESETS[model_type]
    model = TorchDAC(encoder_dim=c.encoder_dim, encoder_rates=list(c.encoder_rates), latent_dim=c.latent_dim,
                     decoder_dim=c.decoder_dim, decoder_rates=list(c.decoder_rates), n_codebooks=c.n_codebooks,
                     codebook_size=c.codebook_size, codebook_dim=c.codebook_dim, sample_rate=c.sample_rate).eval()
    block = round(sr / hop)  # 1 s of frames
    times, spent = [], 0.0
    with torch.inference_mode():
        for start in range(0, codes.shape[-1] - block + 1, block):
            lo, hi = max(0, start - context), min(codes.shape[-1], start + block + context)
            t = time.perf_counter()
            z = model.quantizer.from_codes(torch.from_numpy(codes[..., lo:hi]).long())[0]
            model.decode(z)
            times.append(time.perf_counter() - t)
            spent += times[-1]
            if spent > budget:
                break
    return {"block": block, "times": times[1:] or times}  # the first call warms up


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_type", default="44khz")
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of timed pushes per block size")
    parser.add_argument("--encoder", action="store_true", help="also time the stream encoder")
    parser.add_argument("--check", action="store_true", help="compare with the whole-sequence decode")
    parser.add_argument("--original", action="store_true", help="also time the original's 1 s overlapping blocks")
    args = parser.parse_args(argv)

    import jax

    from dac_jax.api import init_model

    codec = init_model(args.model_type, seed=0)
    sr, hop = codec.sample_rate, codec.hop_length
    latency = codec.stream_latency
    frames = int(args.seconds * sr / hop)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, codec.config.codebook_size, (1, codec.n_codebooks, frames)).astype(np.int32)
    print(f"{args.model_type}: {jax.devices()[0].device_kind}, {frames} frames ({frames * hop / sr:.2f} s), "
          f"algorithmic latency: decoder {latency.decoder_samples} samples = {latency.decoder_ms:.1f} ms "
          f"({latency.decoder_frames} frames), encoder {latency.encoder_frames} frames = {latency.encoder_ms:.1f} ms")

    if args.check:
        decoder = codec.stream_decoder()
        streamed = np.concatenate([decoder.push(codes[..., i: i + 4]) for i in range(0, frames, 4)]
                                  + [decoder.flush()], axis=-1)
        full = np.asarray(codec.decode(codes))
        print(f"streamed (4-frame pushes) vs whole decode: shapes {streamed.shape} {full.shape}, "
              f"max |diff| {np.abs(streamed - full).max():.2e}")

    # the baseline: the whole sequence in one call (no streaming), what the CPU gives at best
    full_decode = lambda: np.asarray(codec.decode(codes))  # noqa: E731
    full_decode()
    whole = []
    for _ in range(3):
        t = time.perf_counter()
        full_decode()
        whole.append(time.perf_counter() - t)
    print(f"whole-sequence decode: {1000 * min(whole):.0f} ms for {frames * hop / sr:.2f} s, "
          f"real-time factor {frames * hop / sr / min(whole):.2f}")

    print("\n| part | block (frames) | block (ms) | compile (s) | pushes | median (ms) | p99 (ms) "
          "| real-time factor | latency: algorithmic + block + compute (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    parts = [("decoder", bench_decoder, codes)]
    if args.encoder:
        audio = (0.1 * rng.standard_normal((1, 1, frames * hop))).astype(np.float32)
        parts.append(("encoder", bench_encoder, audio))
    for part, bench, data in parts:
        for k in args.blocks:
            r = bench(codec, data, k, args.budget)
            times = r["times"] or [float("nan")]
            median = statistics.median(times)
            block_ms = 1000.0 * k * hop / sr
            algorithmic = latency.decoder_ms if part == "decoder" else latency.encoder_ms
            wait = 1000.0 * (k - 1) * hop / sr
            print(f"| {part} | {k} | {block_ms:.1f} | {r['compile_s']:.1f} | {len(r['times'])} "
                  f"| {1000 * median:.1f} | {1000 * _percentile(times, 99):.1f} | {block_ms / (1000 * median):.2f} "
                  f"| {algorithmic:.1f} + {wait:.1f} + {1000 * median:.1f} = {algorithmic + wait + 1000 * median:.1f} |",
                  flush=True)

    if args.original:
        r = bench_original_blocks(args.model_type, codes, hop, sr, latency.decoder_frames, args.budget)
        median, block_ms = statistics.median(r["times"]), 1000.0 * r["block"] * hop / sr
        wait = 1000.0 * (r["block"] - 1) * hop / sr
        print(f"| original, 1 s blocks + {latency.decoder_frames} frames of context each side | {r['block']} "
              f"| {block_ms:.1f} | - | {len(r['times'])} | {1000 * median:.1f} | {1000 * max(r['times']):.1f} (max) "
              f"| {block_ms / (1000 * median):.2f} | {latency.decoder_ms:.1f} + {wait:.1f} + {1000 * median:.1f} = "
              f"{latency.decoder_ms + wait + 1000 * median:.1f} |", flush=True)


if __name__ == "__main__":
    main()
