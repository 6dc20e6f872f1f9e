"""The original's optimisers in optax: AdamW with a per-step learning-rate schedule, after a
gradient-norm clip that is PyTorch's ``clip_grad_norm_``.

DAC (``scripts/train.py``, ``conf/final/44khz.yml``) builds, for the generator and the
discriminator alike, ``torch.optim.AdamW(lr=1e-4, betas=(0.8, 0.99))`` (weight decay: torch's
default 0.01, eps 1e-8) stepped every iteration with ``ExponentialLR(gamma=0.999996)``, after
``clip_grad_norm_(params, 1e3)`` (generator) or ``(params, 10.0)`` (discriminator). What maps to what:

- ``clip_grad_norm_(max_norm)``: ``total = ||all grads||_2``; every gradient is multiplied by
  ``min(1, max_norm / (total + 1e-6))``. optax's ``clip_by_global_norm`` has no ``1e-6``; ours does.
- ``AdamW``: ``p <- p * (1 - lr * wd) - lr * m_hat / (sqrt(v_hat) + eps)``, which is optax's
  ``adamw`` (``-lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)``) to rounding.
- ``ExponentialLR(gamma)`` stepped after every optimiser step: step ``t`` (from 0) uses
  ``lr * gamma ** t``: ``optax.exponential_decay(lr, 1, gamma)``.
- DAC-VAE's linear warm-up (``warmup_steps``): from ``lr * 1e-9`` to ``lr`` over the first steps.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """One optimiser (the generator's or the discriminator's); defaults are DAC's generator."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.01
    gamma: float = 0.999996  # ExponentialLR, per step
    grad_clip: float = 1e3  # clip_grad_norm_ max_norm
    warmup_steps: int = 0  # linear warm-up from lr * 1e-9 (DAC-VAE); 0: none

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))


class ClipState(NamedTuple):
    pass


def clip_grad_norm(max_norm: float) -> optax.GradientTransformation:
    """PyTorch's ``clip_grad_norm_``: scale by ``min(1, max_norm / (||g|| + 1e-6))``."""

    def init(params):
        del params
        return ClipState()

    def update(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        return jax.tree_util.tree_map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(init, update)


def learning_rate(config: OptimizerConfig) -> optax.Schedule:
    """The learning rate at each optimiser step (from 0)."""
    decay = optax.exponential_decay(config.lr, transition_steps=1, decay_rate=config.gamma)
    if not config.warmup_steps:
        return decay
    warmup = optax.linear_schedule(config.lr * 1e-9, config.lr, config.warmup_steps)
    return optax.join_schedules([warmup, lambda t: decay(t)], [config.warmup_steps])


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
    """Clip, then AdamW at :func:`learning_rate`."""
    return optax.chain(
        clip_grad_norm(config.grad_clip),
        optax.adamw(
            learning_rate(config), b1=config.betas[0], b2=config.betas[1], eps=config.eps,
            weight_decay=config.weight_decay,
        ),
    )


GENERATOR = OptimizerConfig()
DISCRIMINATOR = OptimizerConfig(grad_clip=10.0)
