"""Run as a script with 2 emulated CPU devices (tests/train/test_trainer.py does): k training steps
on 1 device and on 2 devices with the same global batch, compared.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m tests.train.multidevice_check K

Prints one JSON line: the largest relative difference of the step metrics (losses, gradient
norms), and of the parameters, the largest difference relative to how far each parameter tensor
moved. Adam divides each gradient by its running RMS, so float rounding in a near-zero gradient
(summed in another order on two devices) moves a parameter by up to a fraction of the step size;
the comparison is therefore made against the size of the updates, not of the parameters.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from dac_jax.train import state as St
from dac_jax.train import step as S
from tests.train import tiny


def run(devices: int, steps: int, config) -> tuple[St.TrainState, list[dict]]:
    mesh = S.make_mesh(devices)
    state = S.replicate(St.create_train_state(config, seed=0), mesh)
    train_step = S.make_train_step(mesh, config)
    history = []
    for k in range(steps):
        state, metrics = train_step(state, S.shard_batch(tiny.batch(4, seed=k), mesh))
        history.append(jax.device_get(metrics))
    return jax.device_get(state), history


def compare(steps: int) -> dict:
    config = tiny.fast()
    init = jax.device_get(St.create_train_state(config, seed=0))
    (one, m1), (two, m2) = run(1, steps, config), run(2, steps, config)
    metric_rel = max(abs(float(a[k]) - float(b[k])) / max(abs(float(a[k])), 1e-12)
                     for a, b in zip(m1, m2) for k in a)
    worst, moved = 0.0, 0.0
    for a, b, c in zip(jax.tree_util.tree_leaves((one.generator, one.discriminator)),
                       jax.tree_util.tree_leaves((two.generator, two.discriminator)),
                       jax.tree_util.tree_leaves((init.generator, init.discriminator))):
        a, b, c = (np.asarray(x, np.float64) for x in (a, b, c))
        update = np.abs(a - c).max()
        moved = max(moved, update)
        worst = max(worst, np.abs(a - b).max() / max(update, 1e-12))
    return {"steps": [int(one.step), int(two.step)], "bad": [int(one.bad_step), int(two.bad_step)],
            "metric_max_rel_diff": metric_rel, "param_diff_over_update": worst, "max_update": moved}


def main() -> None:
    assert len(jax.devices()) >= 2, jax.devices()
    print(json.dumps(compare(int(sys.argv[1]))))


if __name__ == "__main__":
    main()
