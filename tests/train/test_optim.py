"""The optimisers equal the original's torch.optim.AdamW + ExponentialLR + clip_grad_norm_."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dac_jax.train import optim
from tests.audio import require_reference

torch = require_reference("torch")


def _torch_run(params, grads_per_step, config: optim.OptimizerConfig):
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    opt = torch.optim.AdamW(tparams, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, config.gamma)
    norms, lrs = [], []
    for grads in grads_per_step:
        for p, g in zip(tparams, grads):
            p.grad = torch.from_numpy(g.copy())
        lrs.append(opt.param_groups[0]["lr"])
        norms.append(float(torch.nn.utils.clip_grad_norm_(tparams, config.grad_clip)))
        opt.step()
        sched.step()
    return [p.detach().numpy() for p in tparams], norms, lrs


@pytest.mark.parametrize("scale", [1e-3, 100.0], ids=["unclipped", "clipped"])
def test_adamw_exponential_lr_and_clip_equal_torch(scale):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((16, 8, 3)).astype(np.float32), rng.standard_normal(16).astype(np.float32)]
    steps = [[(scale * rng.standard_normal(p.shape)).astype(np.float32) for p in params] for _ in range(6)]
    config = optim.OptimizerConfig(lr=1e-2, gamma=0.9, grad_clip=10.0)  # large lr and decay: visible effects
    theirs, norms, lrs = _torch_run(params, steps, config)

    tx = optim.make_optimizer(config)
    ours = [jnp.asarray(p) for p in params]
    state = tx.init(ours)
    update = jax.jit(tx.update)
    schedule = optim.learning_rate(config)
    for t, grads in enumerate(steps):
        assert float(schedule(t)) == pytest.approx(lrs[t], rel=1e-6)
        assert float(optax.tree.norm(grads)) == pytest.approx(norms[t], rel=1e-5)
        updates, state = update([jnp.asarray(g) for g in grads], state, ours)
        ours = optax.apply_updates(ours, updates)
    if scale > 1:
        assert min(norms) > config.grad_clip  # the clip was active at every step
    for a, b in zip(ours, theirs):
        assert np.abs(np.asarray(a) - params[0 if a.ndim == 3 else 1]).max() > 1e-3  # it moved
        np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=2e-6)


def test_warmup_is_linear_from_a_billionth():
    config = optim.OptimizerConfig(lr=1e-4, gamma=1.0, warmup_steps=500)
    schedule = optim.learning_rate(config)
    assert float(schedule(0)) == pytest.approx(1e-13, rel=1e-3)
    assert float(schedule(250)) == pytest.approx(0.5e-4, rel=1e-3)
    assert float(schedule(500)) == pytest.approx(1e-4, rel=1e-6)
    assert float(schedule(10_000)) == pytest.approx(1e-4, rel=1e-6)
