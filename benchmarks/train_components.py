"""The training step's parts, dac-jax beside the original, each timed alone (issue 15).

    .venv/bin/python -m benchmarks.train_components [--preset 16khz] [--batch 4] [--seconds 0.38] [--reps 5]

``benchmarks/train_step.py`` times the whole step; this says which part of it is short of the 1.5x
target. Both implementations are built as there (the original's objects as its ``scripts/train.py``
builds them, dac-jax's training state and step config, ``--winograd auto``), on the same noise
batch, in this one process, interleaved part by part (median of ``reps`` after a warm-up call):

1. the generator's forward pass (training mode, every codebook);
2. its forward and backward pass (the gradient of ``sum(recons * c)`` for a fixed ``c``);
3. the discriminator update's forward and backward pass (its loss on the detached reconstruction
   and the real batch, gradients for its parameters);
4. the generator's adversarial terms (adversarial + 2 x feature matching): the discriminator on both
   batches and the backward pass to the reconstruction (the original's also fills the
   discriminator's parameter gradients, as its ``train_loop`` does; dac-jax's does not need them);
5. the reconstruction losses (mel, multi-scale STFT, L1) and their gradient for the reconstruction;
6. both optimiser updates (gradient clipping, AdamW, the learning-rate schedule);
7. the whole step (``benchmarks.train_step``'s step of each).

The parts add up to more than a step (the step runs the generator's forward pass once; 1 and 2
overlap), so compare each part across the two implementations, not the sums with the step.
"""

from __future__ import annotations

import argparse
import os

from benchmarks.train_step import median_seconds as _median


def ours(preset: str, audio):
    import jax
    import jax.numpy as jnp
    import optax

    from benchmarks.train_step import Ours
    from dac_jax.model.dac import DAC
    from dac_jax.nn import winograd
    from dac_jax.train import losses
    from dac_jax.train.optim import make_optimizer
    from dac_jax.train.step import _discriminate, _discriminate_apart

    impl = Ours(preset)
    config, state = impl.config, impl.state
    g_params, d_params = state.generator, state.discriminator
    signal = jnp.asarray(audio)
    counts = jnp.full((signal.shape[0],), config.model.n_codebooks, jnp.int32)

    def forward(params, x):
        with winograd.in_training(config.winograd, config.winograd_min_channels):
            return DAC(config.model).apply({"params": params}, x, train=True, codebook_counts=counts).audio

    recons = jax.jit(forward)(g_params, signal)
    real = signal[..., : recons.shape[-1]]
    cotangent = jnp.asarray(jax.random.normal(jax.random.key(1), recons.shape) * 1e-3)

    # every input is an argument: what a jitted function closes over is a constant to XLA, which
    # would fold whatever depends on it alone (the real batch's maps and spectrograms) at compile time
    def d_loss(params, fake, real):  # as the step: both batches stacked, one application
        return losses.discriminator_loss(*_discriminate(config, params, fake, real))

    def adversarial(fake, params, real):  # as the step: two applications, the real maps detached
        gen, feat = losses.generator_loss(*_discriminate_apart(config, params, fake, real))
        return gen + 2.0 * feat

    def reconstruction(fake, real):
        return (15.0 * losses.mel_loss(fake, real, config.sample_rate, config.mel) + 0 * losses.stft_loss(fake, real, config.stft)
                + 0 * losses.l1_loss(fake, real))

    g_tx, d_tx = make_optimizer(config.generator_optim), make_optimizer(config.discriminator_optim)

    def updates(g_grads, d_grads, g_params, d_params, opt_g, opt_d):
        gu, opt_g = g_tx.update(g_grads, opt_g, g_params)
        du, opt_d = d_tx.update(d_grads, opt_d, d_params)
        return optax.apply_updates(g_params, gu), optax.apply_updates(d_params, du), opt_g, opt_d

    g_grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), g_params)
    d_grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), d_params)
    fns = {
        "generator forward": (jax.jit(forward), (g_params, signal)),
        "generator forward + backward": (jax.jit(lambda p, x, c: jax.vjp(lambda q: forward(q, x), p)[1](c)),
                                         (g_params, signal, cotangent)),
        "discriminator update: forward + backward": (jax.jit(jax.value_and_grad(d_loss)), (d_params, recons, real)),
        "adversarial terms: forward + backward to the audio": (jax.jit(jax.value_and_grad(adversarial)), (recons, d_params, real)),
        "mel / STFT / L1 losses + gradient": (jax.jit(jax.value_and_grad(reconstruction)), (recons, real)),
        "optimiser updates (both)": (jax.jit(updates), (g_grads, d_grads, g_params, d_params, state.opt_g, state.opt_d)),
    }
    parts = {name: (lambda f=f, a=a: jax.block_until_ready(f(*a))) for name, (f, a) in fns.items()}
    parts["whole step"] = lambda: impl.step(audio)
    return parts


def original(preset: str, audio):
    from benchmarks.train_step import Original

    impl = Original(preset)
    torch, AudioSignal = impl.torch, impl.AudioSignal
    g, d = impl.generator, impl.discriminator
    g.train()
    d.train()
    x = torch.from_numpy(audio)
    with torch.no_grad():
        recons_t = g(x, impl.sample_rate)["audio"]
    real = AudioSignal(x[..., : recons_t.shape[-1]], impl.sample_rate)
    cotangent = torch.randn(recons_t.shape) * 1e-3

    def forward():
        return g(x, impl.sample_rate)["audio"]

    def forward_backward():
        g.zero_grad()
        (g(x, impl.sample_rate)["audio"] * cotangent).sum().backward()

    def d_update():
        d.zero_grad()
        impl.gan_loss.discriminator_loss(AudioSignal(recons_t, impl.sample_rate), real).backward()

    def adversarial():
        d.zero_grad()
        fake = recons_t.clone().requires_grad_(True)
        gen, feat = impl.gan_loss.generator_loss(AudioSignal(fake, impl.sample_rate), real)
        (gen + 2.0 * feat).backward()

    def reconstruction():
        fake = AudioSignal(recons_t.clone().requires_grad_(True), impl.sample_rate)
        (15.0 * impl.mel_loss(fake, real) + 0 * impl.stft_loss(fake, real) + 0 * impl.waveform_loss(fake, real)).backward()

    for p in (*g.parameters(), *d.parameters()):
        p.grad = torch.full_like(p, 1e-3)

    def updates():
        torch.nn.utils.clip_grad_norm_(d.parameters(), 10.0)
        impl.opt_d.step()
        impl.sched_d.step()
        torch.nn.utils.clip_grad_norm_(g.parameters(), 1e3)
        impl.opt_g.step()
        impl.sched_g.step()

    return {
        "generator forward": forward,
        "generator forward + backward": forward_backward,
        "discriminator update: forward + backward": d_update,
        "adversarial terms: forward + backward to the audio": adversarial,
        "mel / STFT / L1 losses + gradient": reconstruction,
        "optimiser updates (both)": updates,
        "whole step": lambda: impl.step(audio),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="16khz")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=0.38)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from benchmarks.train_step import make_batches

    (audio,) = make_batches(args.preset, args.batch, args.seconds, 1)
    theirs, mine = original(args.preset, audio), ours(args.preset, audio)
    print(f"{args.preset}, batch {args.batch} x {args.seconds} s; median of {args.reps}, interleaved part by part\n")
    print("| part | original (ms) | dac-jax (ms) | dac-jax vs original |")
    print("|---|---|---|---|")
    for name in theirs:
        t_orig = _median(theirs[name], args.reps)
        t_ours = _median(mine[name], args.reps)
        print(f"| {name} | {1e3 * t_orig:.0f} | {1e3 * t_ours:.0f} | {t_orig / t_ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
