"""The training state: both networks, both optimiser states, the step and the RNG, one pytree.

Everything that a resume needs is here (the input pipeline's position is the step: element ``i``
of the data stream is a function of ``(seed, i)``), so an Orbax checkpoint of this pytree resumes
a run exactly.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from dac_jax.model.dac import init_variables
from dac_jax.model.discriminator import init_discriminator
from dac_jax.model.vae import init_vae_variables
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
    g = jax.tree_util.tree_map(jnp.asarray, g)
    d = jax.tree_util.tree_map(jnp.asarray, d)
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
