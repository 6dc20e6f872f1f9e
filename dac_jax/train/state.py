"""The training state: both networks, both optimiser states, the step and the RNG, one pytree.

Everything that a resume needs is here (the input pipeline's position is the step: element ``i``
of the data stream is a function of ``(seed, i)``), so an Orbax checkpoint of this pytree resumes
a run exactly.

Both networks' weight-normed convolutions are held in the conv layout (``kernel_v`` /
``kernel_g``, :mod:`dac_jax.nn.layout`), as are the optimiser moments that mirror them, so the
step never rearranges a kernel; :func:`to_torch_layout` gives back PyTorch's layouts (imports and
exports speak those).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from dac_jax.model.config import VAEConfig
from dac_jax.model.dac import DAC, init_variables
from dac_jax.model.discriminator import Discriminator, init_discriminator
from dac_jax.model.vae import DACVAE, init_vae_variables
from dac_jax.nn import layout
from dac_jax.train.config import StepConfig
from dac_jax.train.optim import make_optimizer


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []: optimiser steps taken
    generator: Any  # DAC or DAC-VAE params
    discriminator: Any  # Discriminator params
    opt_g: Any
    opt_d: Any
    rng: jax.Array  # uint32 [2]: raw threefry key data (a plain array for checkpoints)
    bad_step: jax.Array  # int32 []: -1, or the first step whose losses or gradients were not finite

    @property
    def key(self) -> jax.Array:
        return jax.random.wrap_key_data(self.rng)


def create_train_state(
    config: StepConfig,
    seed: int = 0,
    generator: Optional[Any] = None,
    discriminator: Optional[Any] = None,
) -> TrainState:
    """A fresh state: random networks (or the given params, e.g. imported PyTorch weights, for
    fine-tuning), fresh optimisers, step 0. Host numpy/JAX arrays, not yet placed on devices."""
    init = init_vae_variables if config.is_vae else init_variables
    g = init(config.model, seed)["params"] if generator is None else generator
    d = init_discriminator(config.discriminator, seed + 1)["params"] if discriminator is None else discriminator
    g = jax.tree_util.tree_map(jnp.asarray, generator_layout(config.model, g, layout.to_conv_layout))
    d = jax.tree_util.tree_map(jnp.asarray, discriminator_layout(config, d, layout.to_conv_layout))
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        generator=g,
        discriminator=d,
        opt_g=make_optimizer(config.generator_optim).init(g),
        opt_d=make_optimizer(config.discriminator_optim).init(d),
        rng=jnp.asarray(jax.random.key_data(jax.random.key(seed)), jnp.uint32),
        bad_step=jnp.full((), -1, jnp.int32),
    )


def param_count(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def generator_layout(model, params: Any, convert=layout.to_conv_layout) -> Any:
    """A generator's (DAC or DAC-VAE, by ``model``'s config) ``params`` through ``convert``
    (:func:`dac_jax.nn.layout.to_conv_layout` or ``to_torch_layout``)."""
    probe = jnp.zeros((1, 1, model.hop_length), jnp.float32)
    if isinstance(model, VAEConfig):
        return convert(DACVAE(model), params, probe, deterministic=True)
    return convert(DAC(model), params, probe)


def discriminator_layout(config: StepConfig, params: Any, convert=layout.to_conv_layout) -> Any:
    """The discriminator's ``params`` through ``convert`` (see :func:`generator_layout`)."""
    probe = jnp.zeros((1, 1, config.sample_rate), jnp.float32)  # one second reaches every band and period
    return convert(Discriminator(config.discriminator, channels_last=True), params, probe)


def to_torch_layout(config: StepConfig, state: TrainState) -> TrainState:
    """``state`` with both networks and their optimiser moments in PyTorch's layouts (what a
    checkpoint written before the conv layout holds); :func:`to_conv_layout` is the inverse."""
    return _each_network(config, state, layout.to_torch_layout)


def to_conv_layout(config: StepConfig, state: TrainState) -> TrainState:
    return _each_network(config, state, layout.to_conv_layout)


def _each_network(config: StepConfig, state: TrainState, convert) -> TrainState:
    g = functools.partial(generator_layout, config.model, convert=convert)
    d = functools.partial(discriminator_layout, config, convert=convert)
    return state.replace(
        generator=g(state.generator), discriminator=d(state.discriminator),
        opt_g=_mirrors(state.opt_g, state.generator, g), opt_d=_mirrors(state.opt_d, state.discriminator, d),
    )


def _mirrors(opt_state: Any, params: Any, convert) -> Any:
    """``opt_state`` with every subtree shaped like ``params`` (Adam's moments) converted."""
    structure = jax.tree_util.tree_structure(params)
    if jax.tree_util.tree_structure(opt_state) == structure:
        return convert(opt_state)
    if isinstance(opt_state, tuple):
        fields = [_mirrors(x, params, convert) for x in opt_state]
        return type(opt_state)(*fields) if hasattr(opt_state, "_fields") else tuple(fields)
    return opt_state
