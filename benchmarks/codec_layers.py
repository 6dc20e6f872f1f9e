"""Where one chunk of compress and decompress spends its time, layer kind by layer kind (issue 17).

    .venv/bin/python -m benchmarks.codec_layers [--model_type 44khz] [--window 1] [--reps 5]

A profile of XLA's CPU backend does not say this: its trace records when each convolution is
handed to the thread pool, not how long the pool works on it (benchmarks/codec_profile.py shows
convolutions taking a few ms of a 370 ms chunk). So this times each layer alone instead. It runs
the chunk the window sweep times (the unpadded module on ``ceil(w * sr / hop) * hop`` samples;
decompress: that chunk's codes), records every layer's input shape on the way (Flax's method
interception, traced abstractly), then compiles and times each layer by itself at that shape, on
the library's inference variables (folded kernels; the decoder's Winograd F(4, 7) on a CPU):

- the convolutions by kind: the residual units' kernel-7 ones (direct in the encoder; Winograd in
  the decoder by default), their kernel-1 ones, the encoder's strided ones, the decoder's upsampling
  ones (polyphase), the one-channel first and last, the encoder's last (kernel 3), the quantiser's
  projections;
- Snake (one loop per activation);
- the residual adds (``x + y``, cropped as in unpadded mode).

Per kind: calls, the sum of their medians, FLOPs (XLA's cost analysis of each layer's program) and
GFLOP/s; against the whole chunk's median. The sum of the parts exceeds the whole where XLA fuses
across layers in the whole program (Snake with the residual add and the bias before it).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_type", default="44khz")
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    import dac_jax
    from dac_jax import runtime
    from dac_jax.audio import synth
    from dac_jax.model.dac import DAC
    from dac_jax.nn import winograd
    from dac_jax.nn.blocks import ResidualUnit
    from dac_jax.nn.layers import FOLDED, Snake, WNConv1d, conv1d_folded, snake

    codec = dac_jax.init_model(args.model_type)
    module: DAC = codec.unpadded_module
    variables = codec.inference_variables
    hop, rate = codec.hop_length, codec.sample_rate
    n = -(-int(args.window * rate) // hop) * hop
    audio = jnp.asarray(0.5 * synth.speech_like(n / rate + 0.01, rate, seed=1)[:n], jnp.float32)[None, None]
    codes = runtime.encode(module, variables, audio).codes

    def timed(fn, *xs) -> tuple[float, float]:
        compiled = jax.jit(fn).lower(*xs).compile()
        flops = (compiled.cost_analysis() or {}).get("flops", 0.0)
        jax.block_until_ready(compiled(*xs))
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            jax.block_until_ready(compiled(*xs))
            times.append(time.perf_counter() - start)
        return statistics.median(times), flops

    def leaf(tree, path):
        for name in path:
            tree = tree[name]
        return tree

    def kind(layer, path) -> str:
        g = layer.geometry
        if path[0] == "quantizer":
            return "quantiser projections (kernel 1)"
        if g.transposed:
            return "upsampling convolutions (polyphase)"
        if g.stride > 1:
            return "strided convolutions (downsampling)"
        if path[:2] == ("decoder", "model_0"):
            return f"kernel-{g.kernel}, the decoder's first (latent in)"
        if g.kernel == 7 and min(layer.in_features, layer.features) == 1:
            return "kernel-7, one audio channel (first / last)"
        if g.kernel == 7:
            return "kernel-7 convolutions (residual units)"
        if g.kernel == 1:
            return "kernel-1 convolutions (residual units)"
        return f"kernel-{g.kernel} convolution"

    def layer_calls(method, *inputs) -> list:
        calls = []

        def record(next_fun, fn_args, fn_kwargs, context):
            out = next_fun(*fn_args, **fn_kwargs)
            m = context.module
            if context.method_name == "__call__" and isinstance(m, (WNConv1d, Snake, ResidualUnit)):
                calls.append((m, tuple(m.path), fn_args[0].shape, out.shape))
            return out

        with nn.intercept_methods(record):
            jax.eval_shape(lambda v, x: module.apply(v, x, method=method), variables, *inputs)
        return calls

    rng = np.random.default_rng(0)
    report = []
    for name, method, inputs, whole_fn in (
        ("compress", lambda m, a: m.encode(m.preprocess(a)).codes, (audio,),
         lambda v, a: runtime.encode(module, v, a).codes),
        ("decompress", DAC.decode_codes, (codes,), lambda v, c: runtime.decode(module, v, c)),
    ):
        whole, whole_flops = timed(whole_fn, variables, *inputs)
        totals, counts, flops = collections.Counter(), collections.Counter(), collections.Counter()
        for layer, path, shape, out_shape in layer_calls(method, *inputs):
            x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
            if isinstance(layer, Snake):
                alpha = leaf(variables["params"], path)["alpha"].reshape(1, 1, -1)
                k, (t, f) = "Snake", timed(snake, x, alpha)
            elif isinstance(layer, ResidualUnit):
                y = jnp.asarray(rng.standard_normal(out_shape), jnp.float32)
                crop = (shape[1] - out_shape[1]) // 2
                k, (t, f) = "residual adds", timed(lambda x, y: x[:, crop : x.shape[1] - crop] + y, x, y)
            else:
                folded = leaf(variables[FOLDED], path)
                g, pads = layer.geometry, layer.geometry.pads(layer.padded)
                k = kind(layer, path)
                if "winograd_kernel" in folded:
                    u = folded["winograd_kernel"]
                    m = u.shape[0] - g.kernel + 1
                    k += f", Winograd F({m}, 7)"
                    t, f = timed(lambda x, u, b: winograd.conv1d(x, u, m, g.dilation, pads, b), x, u, folded["bias"])
                else:
                    t, f = timed(lambda x, w, b: conv1d_folded(x, w, g, layer.padded) + b, x, folded["kernel"],
                                 folded["bias"])
            totals[k] += t
            counts[k] += 1
            flops[k] += f
        report.append((name, whole, whole_flops, totals, counts, flops))

    print(f"{args.model_type}, one {args.window} s chunk ({n} samples, {codes.shape[-1]} frames), unpadded; "
          f"decoder {'Winograd F(%d, 7)' % codec.winograd if codec.winograd else 'direct'}; jax {jax.__version__}\n")
    for name, whole, whole_flops, totals, counts, flops in report:
        parts = sum(totals.values())
        print(f"**{name}**: the whole chunk {1e3 * whole:.0f} ms ({whole_flops / whole / 1e9:.0f} GFLOP/s); "
              f"its layers one by one {1e3 * parts:.0f} ms\n")
        print("| layers | calls | ms (sum of each alone) | share of the parts | GFLOP | GFLOP/s |")
        print("|---|---|---|---|---|---|")
        for k, t in totals.most_common():
            rate_ = f"{flops[k] / t / 1e9:.0f}" if flops[k] else "-"
            print(f"| {k} | {counts[k]} | {1e3 * t:.1f} | {t / parts:.1%} | {flops[k] / 1e9:.2f} | {rate_} |")
        print()


if __name__ == "__main__":
    main()
