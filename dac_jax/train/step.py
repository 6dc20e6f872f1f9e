"""One training step of DAC or DAC-VAE, written per device in the ``pmap`` style and mapped over a device mesh.

:func:`train_step` is what one device does with its share of the global batch: augment it, run the
generator once, update the discriminator on the detached reconstruction, then update the generator
against the UPDATED discriminator (the original's order, ``scripts/train.py``), with gradients
averaged over the ``"data"`` axis by ``lax.pmean``. With ``update_generator=False`` (the trainer's
``discriminator_warmup`` steps, a dac-jax option) only the discriminator learns: the generator's
backward pass does not run, its params and optimiser state pass through. :func:`make_train_step` maps it with
``jax.shard_map`` over a one-axis mesh and compiles it (JAX documents ``shard_map`` as the
successor of ``pmap``; the body is the same).

The model config chooses the bottleneck (:func:`generator_forward`): DAC's generator adds its VQ
losses to the objective, DAC-VAE's its KL term at the scheduled weight
(:func:`dac_jax.train.losses.kl_weight`); the discriminator, reconstruction losses and updates
are shared.

Randomness never depends on the device layout: each item's phase shift, quantizer-dropout draw and
(DAC-VAE) latent noise come from ``fold_in(fold_in(fold_in(key, step), purpose), global_item_index)``, and device ``d`` of
a batch split in shares of ``b`` holds the items ``d * b ... d * b + b - 1``. So N devices compute
what one device computes on the whole batch, to float rounding (a test checks it).

The generator runs once per step: its forward pass is linearised with ``jax.vjp``; the
discriminator step uses the reconstruction, and the generator's loss gradient with respect to the
reconstruction (and to the bottleneck's losses) is pulled back through the saved linearisation.

A step whose losses or gradient norms are not finite changes nothing and records itself in
``state.bad_step``; every later step is a no-op too, and the loop stops at its next check (the
state stays the last good one).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dac_jax.model.config import VAEConfig
from dac_jax.model.dac import DAC
from dac_jax.model.discriminator import Discriminator
from dac_jax.model.vae import DACVAE
from dac_jax.nn import winograd
from dac_jax.nn.bottleneck import kl_divergence
from dac_jax.nn.quantize import item_dropout_counts
from dac_jax.train import augment as aug
from dac_jax.train import losses
from dac_jax.train.config import StepConfig
from dac_jax.train.optim import learning_rate, make_optimizer
from dac_jax.train.state import TrainState

AXIS = "data"

# purposes of the per-item random streams (ids from one registry: dac_jax.train.augment.purpose_id)
_AUGMENT = aug.AUGMENT_PURPOSE
_DROPOUT = aug.purpose_id("quantizer_dropout")
_VAE_NOISE = aug.purpose_id("vae_noise")


def item_keys(key: jax.Array, step: jax.Array, purpose: int, indices: jax.Array) -> jax.Array:
    """One key per item: ``fold_in(fold_in(fold_in(key, step), purpose), index)``."""
    k = jax.random.fold_in(jax.random.fold_in(key, step), purpose)
    return jax.vmap(lambda i: jax.random.fold_in(k, i))(indices)


def global_indices(local_batch: int) -> jax.Array:
    """Global indices of this device's items (call inside the mapped function)."""
    return lax.axis_index(AXIS) * local_batch + jnp.arange(local_batch)


def prepare(audio: jax.Array, keys: jax.Array, config: StepConfig) -> jax.Array:
    """The training transforms on the device (volume, peak, phase), per item from its key."""
    return aug.augment(audio, config.sample_rate, keys, config.augment)


def _discriminate(config: StepConfig, params: Any, fake: jax.Array, real: jax.Array):
    """``(D(fake), D(real))`` from ONE application of D to both batches stacked, for the
    discriminator's update (its gradient is for the parameters, over both batches): D treats items
    independently, and one copy of its graph (not two) halves what XLA compiles."""
    maps = Discriminator(config.discriminator, channels_last=True).apply(
        {"params": params}, jnp.concatenate([fake, real])
    )
    n = fake.shape[0]
    return (
        [[m[:n] for m in sub] for sub in maps],
        [[m[n:] for m in sub] for sub in maps],
    )


def _discriminate_apart(config: StepConfig, params: Any, fake: jax.Array, real: jax.Array):
    """``(D(fake), D(real))`` as two applications, for the generator's loss, which differentiates
    the fake maps only (the real ones are its feature-matching targets, detached). Stacked in one
    batch, the backward pass would run over the real half too, with zero cotangents; the original's
    two calls do not (measured at 16 kHz, batch 4 x 0.38 s, one process: the adversarial terms'
    forward + backward 1048 ms stacked, 853 ms apart; the same gradient)."""
    apply = Discriminator(config.discriminator, channels_last=True).apply
    return apply({"params": params}, fake), apply({"params": params}, lax.stop_gradient(real))


def matched(signal: jax.Array, recons: jax.Array) -> jax.Array:
    """``signal`` cut to the reconstruction's length.

    The stride-5 decoders (16/24 kHz) return ``hop * frames - 8`` samples (the original's length,
    kept on purpose), so an excerpt of whole frames comes back 8 samples short; the original's
    losses would fail on the mismatch. The losses compare the overlap.
    """
    return signal[..., : recons.shape[-1]]


def _reconstruction_losses(config: StepConfig, recons: jax.Array, signal: jax.Array) -> dict[str, jax.Array]:
    terms = {
        "mel/loss": losses.mel_loss(recons, signal, config.sample_rate, config.mel),
        "stft/loss": losses.stft_loss(recons, signal, config.stft),
        "waveform/loss": losses.l1_loss(recons, signal),
    }
    if config.weights.periodicity:  # dac-jax's own term: the original's recipe never pays for it
        terms["periodicity/loss"] = losses.periodicity_loss(recons, signal, config.sample_rate, config.periodicity)
    return terms


def generator_forward(config: StepConfig, signal: jax.Array, key: jax.Array, step: jax.Array):
    """The generator's training forward pass on this device's ``signal``, as a function of its
    params: ``params -> (reconstruction, {bottleneck loss: value})``, and the weights of those
    losses at ``step``. DAC draws per-item quantizer dropout; DAC-VAE samples its latent with
    per-item noise keys."""
    local = signal.shape[0]
    indices = global_indices(local)
    if config.is_vae:
        module = DACVAE(config.model)
        noise_keys = item_keys(key, step, _VAE_NOISE, indices)

        def forward(params):
            with winograd.in_training(config.winograd, config.winograd_min_channels):
                out = module.apply({"params": params}, signal, key=noise_keys)
            return out.audio, {"kl/loss": out.kl}

        return forward, {"kl/loss": losses.kl_weight(step, config.kl)}

    counts = item_dropout_counts(
        item_keys(key, step, _DROPOUT, indices), indices, local * lax.axis_size(AXIS),
        config.model.n_codebooks, config.model.quantizer_dropout,
    )

    def forward(params):
        with winograd.in_training(config.winograd, config.winograd_min_channels):
            out = DAC(config.model).apply({"params": params}, signal, train=True, codebook_counts=counts)
        return out.audio, {"vq/commitment_loss": out.commitment_loss, "vq/codebook_loss": out.codebook_loss}

    return forward, {"vq/commitment_loss": config.weights.commitment, "vq/codebook_loss": config.weights.codebook}


def reconstruct(model, params: Any, audio: jax.Array) -> jax.Array:
    """The generator's deterministic reconstruction of ``audio [B, 1, T]`` (DAC-VAE: from the mean)."""
    if isinstance(model, VAEConfig):
        return DACVAE(model).apply({"params": params}, audio, deterministic=True).audio
    return DAC(model).apply({"params": params}, audio).audio


def train_step(state: TrainState, audio: jax.Array, config: StepConfig,
               update_generator: bool = True) -> tuple[TrainState, dict[str, jax.Array]]:
    """One step on this device's share ``audio [b, 1, T]`` of the global batch (inside shard_map).
    ``update_generator=False``: the discriminator's update only (the generator's losses are still
    computed, for the record; its gradient norm is reported as 0)."""
    w = config.weights
    key = state.key
    signal = prepare(audio, item_keys(key, state.step, _AUGMENT, global_indices(audio.shape[0])), config)
    generate, bottleneck_weights = generator_forward(config, signal, key, state.step)
    (recons, bottleneck), pullback = jax.vjp(generate, state.generator)
    signal = matched(signal, recons)

    # discriminator: on the detached reconstruction
    def d_loss_fn(d_params):
        fake, real = _discriminate(config, d_params, lax.stop_gradient(recons), signal)
        return losses.discriminator_loss(fake, real)

    d_loss, d_grads = jax.value_and_grad(d_loss_fn)(state.discriminator)
    d_grads = lax.pmean(d_grads, AXIS)
    d_tx = make_optimizer(config.discriminator_optim)
    d_updates, opt_d = d_tx.update(d_grads, state.opt_d, state.discriminator)
    discriminator = optax.apply_updates(state.discriminator, d_updates)

    # generator: against the updated discriminator
    def g_loss_fn(recons, bottleneck):
        fake, real = _discriminate_apart(config, discriminator, recons, signal)
        adversarial, feature = losses.generator_loss(fake, real)
        terms = _reconstruction_losses(config, recons, signal)
        terms.update({"adv/gen_loss": adversarial, "adv/feat_loss": feature, **bottleneck})
        total = (
            w.mel * terms["mel/loss"] + w.stft * terms["stft/loss"] + w.waveform * terms["waveform/loss"]
            + w.periodicity * terms.get("periodicity/loss", 0.0)
            + w.adversarial * adversarial + w.feature * feature
        )
        for name, weight in bottleneck_weights.items():
            total = total + weight * bottleneck[name]
        return total, terms

    def updated():
        (total, terms), cotangents = jax.value_and_grad(g_loss_fn, argnums=(0, 1), has_aux=True)(recons, bottleneck)
        (g_grads,) = pullback(cotangents)
        g_grads = lax.pmean(g_grads, AXIS)
        g_tx = make_optimizer(config.generator_optim)
        g_updates, opt_g = g_tx.update(g_grads, state.opt_g, state.generator)
        return optax.apply_updates(state.generator, g_updates), opt_g, total, terms, optax.tree.norm(g_grads)

    def held():  # the warm-up: the losses for the record, no gradient
        total, terms = g_loss_fn(recons, bottleneck)
        return state.generator, state.opt_g, total, terms, jnp.zeros((), jnp.float32)

    # two executables rather than one lax.cond: under a cond the updating steps ran ~5x slower on a CPU
    generator, opt_g, total, terms, g_norm = updated() if update_generator else held()

    metrics = {"loss": total, "adv/disc_loss": d_loss, **terms}
    metrics = lax.pmean(metrics, AXIS)
    metrics["other/grad_norm"] = g_norm
    metrics["other/grad_norm_d"] = optax.tree.norm(d_grads)
    metrics["other/learning_rate"] = learning_rate(config.generator_optim)(state.step)
    if config.is_vae:
        metrics["kl/beta"] = bottleneck_weights["kl/loss"]  # the original's name for the KL weight

    finite = jnp.all(jnp.stack([jnp.isfinite(v) for v in jax.tree_util.tree_leaves(metrics)]))
    ok = finite & (state.bad_step < 0)
    updated = state.replace(
        step=state.step + 1, generator=generator, discriminator=discriminator, opt_g=opt_g, opt_d=opt_d
    )
    new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), updated, state)
    new_state = new_state.replace(
        bad_step=jnp.where((state.bad_step < 0) & ~finite, state.step, state.bad_step)
    )
    return new_state, metrics


def eval_step(generator: Any, audio: jax.Array, config: StepConfig, seed: int = 0) -> dict[str, jax.Array]:
    """Validation metrics of this device's share ``audio [b, 1, T]``, as batch SUMS (pmean'd
    means times the local batch, so the host divides by the item count): mel distance, STFT
    distance, waveform L1 and SI-SDR (dB, higher is better); DAC with all codebooks, no dropout;
    DAC-VAE from the latent's mean (deterministic), plus its KL term. The items get the training
    transforms with fixed per-item keys, as the original's validation does."""
    local = audio.shape[0]
    indices = global_indices(local)
    keys = item_keys(jax.random.key(seed), jnp.zeros((), jnp.int32), _AUGMENT, indices)
    signal = prepare(audio, keys, config)
    if config.is_vae:
        out = DACVAE(config.model).apply({"params": generator}, signal, deterministic=True)
        recons, extra = out.audio, {"kl/loss": jax.vmap(lambda m, logs: kl_divergence(m, logs, 0))(out.m, out.logs)}
    else:
        recons, extra = reconstruct(config.model, generator, signal), {}
    signal = matched(signal, recons)

    def per_item(r, s):
        r, s = r[None], s[None]
        out = _reconstruction_losses(config, r, s)
        out["sisdr"] = -losses.sisdr_loss(s, r)
        return out

    items = {**jax.vmap(per_item)(recons, signal), **extra}
    return lax.psum(jax.tree_util.tree_map(jnp.sum, items), AXIS)


def make_mesh(devices: int | None = None) -> Mesh:
    """A one-axis ``"data"`` mesh over the first ``devices`` local devices of every process (all
    when None): on several hosts each contributes the same number, in process order."""
    local = jax.local_devices()
    n = len(local) if devices is None else int(devices)
    if not 1 <= n <= len(local):
        from dac_jax.errors import UsageError

        raise UsageError(f"asked for {devices} devices; {len(local)} are available on this host ({local[0].platform})")
    chosen = [d for p in range(jax.process_count()) for d in
              sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:n]]
    return jax.make_mesh((len(chosen),), (AXIS,), devices=chosen)


def make_train_step(mesh: Mesh, config: StepConfig, update_generator: bool = True):
    """``(state, audio [B, 1, T]) -> (state, metrics)`` compiled over ``mesh``: state replicated,
    the batch split along its first axis, the state's buffers donated. ``update_generator=False``:
    the discriminator's warm-up step (see :func:`train_step`)."""
    body = functools.partial(train_step, config=config, update_generator=update_generator)
    mapped = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()), check_vma=False)
    return jax.jit(mapped, donate_argnums=(0,))


def make_eval_step(mesh: Mesh, config: StepConfig, seed: int = 0):
    body = functools.partial(eval_step, config=config, seed=seed)
    mapped = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(), check_vma=False)
    return jax.jit(mapped)


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(audio, mesh: Mesh) -> jax.Array:
    """This host's rows of the global batch as one global array split over ``mesh``."""
    return jax.make_array_from_process_local_data(NamedSharding(mesh, P(AXIS)), audio)
