"""The generator's forward + backward pass in training, layer kind by layer kind, dac-jax beside the original (issue 15).

    .venv/bin/python -m benchmarks.train_layers [--preset 16khz] [--batch 4] [--seconds 0.38] [--reps 5]

``benchmarks/train_components.py`` finds the generator's backward pass the part of the step where
dac-jax is not ahead. This times each of the generator's layers alone, forward and backward (the
gradients for its parameters and for its input, what the step's backward pass computes), at the
input shape it has in the step, in both implementations, interleaved layer by layer:

- dac-jax: the layer as the training step runs it (the conv layout's ``kernel_v`` / ``kernel_g``
  with weight norm in the step, Winograd F(4, 7) for kernel-7 convolutions of >= 128 channels as
  ``train.py --winograd auto`` on a CPU; Snake with its polynomial ``sin ** 2``);
- the original: a fresh layer of the same shape from the installed ``dac.nn.layers``
  (``WNConv1d``, ``WNConvTranspose1d``, ``Snake1d``), float32, eager, all cores.

Per kind: calls, the sum of their medians in each, and the ratio.

``--slices`` instead times growing slices of dac-jax's generator, each compiled as one forward +
backward (the gradients for the parameters and the slice's input), with the trainer's allocator
settings (:mod:`dac_jax.memory`, as ``train.py`` runs): the encoder, the decoder, the quantiser,
encoder + decoder, the whole generator. Where the whole exceeds the sum of its parts, the program's
size costs time of its own.

``--discriminator`` times each sub-discriminator instead (the multi-period ones, the multi-band
STFT ones), forward and backward (gradients for its parameters and its input), on the step's
doubled batch (reconstructions and real audio: ``2 x batch`` items), dac-jax's as the step runs it
and the original's ``dac.model.discriminator.MPD`` / ``MRD``, interleaved.
"""

from __future__ import annotations

import argparse
import collections
import os

from benchmarks.train_step import median_seconds as _median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="16khz")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=0.38)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--slices", action="store_true", help="time growing slices of dac-jax's generator instead")
    ap.add_argument("--discriminator", action="store_true", help="time each sub-discriminator instead")
    args = ap.parse_args()
    if args.slices:
        slices(args)
        return
    if args.discriminator:
        discriminator(args)
        return
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from dac.nn import layers as torch_layers

    from benchmarks.train_step import Ours, make_batches
    from dac_jax.model.dac import DAC
    from dac_jax.nn import winograd
    from dac_jax.nn.layers import Snake, WNConv1d

    torch.set_num_threads(os.cpu_count())
    (audio,) = make_batches(args.preset, args.batch, args.seconds, 1)
    impl = Ours(args.preset)
    config, params = impl.config, impl.state.generator
    counts = jnp.full((args.batch,), config.model.n_codebooks, jnp.int32)

    calls = []

    def record(next_fun, fn_args, fn_kwargs, context):
        m = context.module
        if context.method_name == "__call__" and isinstance(m, (WNConv1d, Snake)):
            calls.append((m, tuple(m.path), fn_args[0].shape))
        return next_fun(*fn_args, **fn_kwargs)

    with nn.intercept_methods(record), winograd.in_training(config.winograd, config.winograd_min_channels):
        jax.eval_shape(lambda p, x: DAC(config.model).apply({"params": p}, x, train=True, codebook_counts=counts),
                       params, jnp.asarray(audio))

    def leaf(tree, path):
        for name in path:
            tree = tree[name]
        return tree

    def kind(layer, path) -> str:
        if isinstance(layer, Snake):
            return "Snake"
        g = layer.geometry
        if path[0] == "quantizer":
            return "quantiser projections"
        if g.transposed:
            return "upsampling convolutions"
        if g.stride > 1:
            return "strided convolutions"
        if g.kernel == 7 and min(layer.in_features, layer.features) == 1:
            return "kernel-7, one audio channel"
        if g.kernel == 7:
            wide = min(layer.in_features, layer.features) >= config.winograd_min_channels and config.winograd
            return f"kernel-7 convolutions ({'Winograd' if wide else 'direct'} in dac-jax)"
        return f"kernel-{g.kernel} convolutions"

    rng = np.random.default_rng(0)
    ours_ms, theirs_ms, n = collections.Counter(), collections.Counter(), collections.Counter()
    seen: dict = {}
    for layer, path, shape in calls:
        if path[0] == "quantizer":
            continue  # a few small matrix products; not the question here
        k = kind(layer, path)
        p = leaf(params, path)
        unbound = layer.clone(parent=None)
        key = (type(layer).__name__, shape, getattr(layer, "geometry", None), getattr(layer, "features", None))
        if key not in seen:  # equal layers (same shape and geometry) are timed once
            x = jnp.asarray(rng.standard_normal(shape) * 0.1, jnp.float32)
            out_shape = jax.eval_shape(lambda p, x: unbound.apply({"params": p}, x), p, x).shape
            c = jnp.asarray(rng.standard_normal(out_shape) * 1e-3, jnp.float32)

            def loss(p, x, c=c, unbound=unbound):
                with winograd.in_training(config.winograd, config.winograd_min_channels):
                    return jnp.sum(unbound.apply({"params": p}, x) * c)

            grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
            t_ours = _median(lambda: jax.block_until_ready(grad(p, x)), args.reps)

            xt = torch.from_numpy(np.asarray(x)).permute(0, 2, 1).contiguous().requires_grad_(True)  # [B, C, T]
            ct = torch.from_numpy(np.asarray(c)).permute(0, 2, 1).contiguous()
            if isinstance(layer, Snake):
                module = torch_layers.Snake1d(shape[-1])
            else:
                g = layer.geometry
                if g.transposed:
                    module = torch_layers.WNConvTranspose1d(layer.in_features, layer.features, kernel_size=g.kernel,
                                                            stride=g.stride, padding=g.padding,
                                                            output_padding=g.output_padding)
                else:
                    module = torch_layers.WNConv1d(layer.in_features, layer.features, kernel_size=g.kernel,
                                                   stride=g.stride, dilation=g.dilation, padding=g.padding)

            def torch_step(module=module, xt=xt, ct=ct):
                module.zero_grad()
                xt.grad = None
                y = module(xt)
                (y[..., : ct.shape[-1]] * ct[..., : y.shape[-1]]).sum().backward()

            t_theirs = _median(torch_step, args.reps)
            seen[key] = (t_ours, t_theirs)
        t_ours, t_theirs = seen[key]
        ours_ms[k] += 1e3 * t_ours
        theirs_ms[k] += 1e3 * t_theirs
        n[k] += 1

    print(f"{args.preset}, batch {args.batch} x {args.seconds} s: each generator layer's forward + backward alone, "
          f"median of {args.reps}\n")
    print("| layers | calls | original (ms) | dac-jax (ms) | dac-jax vs original |")
    print("|---|---|---|---|---|")
    for k, _ in theirs_ms.most_common():
        print(f"| {k} | {n[k]} | {theirs_ms[k]:.0f} | {ours_ms[k]:.0f} | {theirs_ms[k] / ours_ms[k]:.2f}x |")
    total_o, total_t = sum(ours_ms.values()), sum(theirs_ms.values())
    print(f"| all | {sum(n.values())} | {total_t:.0f} | {total_o:.0f} | {total_t / total_o:.2f}x |")


def discriminator(args) -> None:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from dac.model import discriminator as torch_disc

    from benchmarks.train_step import Ours, make_batches
    from dac_jax.model.discriminator import MPD, MRD, preprocess

    torch.set_num_threads(os.cpu_count())
    (audio,) = make_batches(args.preset, 2 * args.batch, args.seconds, 1)  # fake and real, as the step stacks them
    impl = Ours(args.preset)
    c, params = impl.config.discriminator, impl.state.discriminator
    y = preprocess(jnp.asarray(audio))[:, 0, :]
    x_torch = torch.from_numpy(audio).requires_grad_(True)
    subs = [(f"MPD period {p}", MPD(p, c.width), torch_disc.MPD(p)) for p in c.periods]
    subs += [(f"MRD window {w}", MRD(w, c.bands, c.width), torch_disc.MRD(w, sample_rate=c.sample_rate))
             for w in c.fft_sizes]
    print(f"{args.preset}, {2 * args.batch} x {args.seconds} s: each sub-discriminator's forward + backward alone, "
          f"median of {args.reps}\n")
    print("| sub-discriminator | original (ms) | dac-jax (ms) | dac-jax vs original |")
    print("|---|---|---|---|")
    totals = np.zeros(2)
    for i, (name, ours, theirs) in enumerate(subs):
        sub_params = params[f"discriminators_{i}"]

        def loss(p, y, ours=ours):
            return sum(jnp.sum(m) for m in ours.apply({"params": p}, y)) * 1e-3

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        t_ours = _median(lambda: jax.block_until_ready(grad(sub_params, y)), args.reps)

        def torch_step(theirs=theirs):
            theirs.zero_grad()
            x_torch.grad = None
            (sum(m.sum() for m in theirs(x_torch)) * 1e-3).backward()

        t_theirs = _median(torch_step, args.reps)
        totals += (t_theirs, t_ours)
        print(f"| {name} | {1e3 * t_theirs:.0f} | {1e3 * t_ours:.0f} | {t_theirs / t_ours:.2f}x |", flush=True)
    print(f"| all | {1e3 * totals[0]:.0f} | {1e3 * totals[1]:.0f} | {totals[0] / totals[1]:.2f}x |")


def slices(args) -> None:
    from dac_jax.memory import keep_freed_memory

    keep_freed_memory()  # re-executes this command once with the trainer's allocator settings
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp

    from benchmarks.train_step import Ours, make_batches
    from dac_jax.model.dac import DAC, to_channels_last
    from dac_jax.nn import winograd

    (audio,) = make_batches(args.preset, args.batch, args.seconds, 1)
    impl = Ours(args.preset)
    config, params = impl.config, impl.state.generator
    counts = jnp.full((args.batch,), config.model.n_codebooks, jnp.int32)
    module = DAC(config.model)
    x = jnp.asarray(audio)
    z = module.apply({"params": params}, x, method=lambda m, a: m.encoder(to_channels_last(a)))
    parts = {
        "encoder": (lambda m, a: m.encoder(to_channels_last(a)), x),
        "decoder": (lambda m, z: m.decoder(z), z),
        "quantiser": (lambda m, z: m.quantizer(z, None, True, counts).z, z),
        "encoder + decoder": (lambda m, a: m.decoder(m.encoder(to_channels_last(a))), x),
        "whole generator": (lambda m, a: m(a, train=True, codebook_counts=counts).audio, x),
    }
    print(f"{args.preset}, batch {args.batch} x {args.seconds} s: dac-jax's generator in slices, each one "
          f"compiled forward + backward, median of {args.reps}\n")
    print("| slice | ms |")
    print("|---|---|")
    for name, (method, inp) in parts.items():
        def loss(p, a, method=method):
            with winograd.in_training(config.winograd, config.winograd_min_channels):
                return jnp.sum(module.apply({"params": p}, a, method=method) * 1e-3)

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        t = _median(lambda: jax.block_until_ready(grad(params, inp)), args.reps)
        print(f"| {name} | {1e3 * t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
