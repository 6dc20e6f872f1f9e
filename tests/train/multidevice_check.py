"""Run as a script with 2 emulated CPU devices (tests/train/test_trainer.py does): k training steps
on 1 device and on 2 devices with the same global batch; prints the largest parameter difference.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m tests.train.multidevice_check K
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from dac_jax.train import state as St
from dac_jax.train import step as S
from tests.train import tiny


def run(devices: int, steps: int, config) -> St.TrainState:
    mesh = S.make_mesh(devices)
    state = S.replicate(St.create_train_state(config, seed=0), mesh)
    train_step = S.make_train_step(mesh, config)
    for k in range(steps):
        state, _ = train_step(state, S.shard_batch(tiny.batch(4, seed=k), mesh))
    return jax.device_get(state)


def main() -> None:
    steps = int(sys.argv[1])
    assert len(jax.devices()) >= 2, jax.devices()
    config = tiny.fast()
    one, two = run(1, steps, config), run(2, steps, config)
    def rel(a, b):  # the largest difference relative to the leaf's scale
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))

    diffs = jax.tree_util.tree_map(rel, one, two)
    moved = jax.tree_util.tree_map(
        lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - b))),
        one.generator, jax.device_get(St.create_train_state(config, seed=0).generator),
    )
    print(json.dumps({
        "steps": int(one.step), "steps_two": int(two.step),
        "max_rel_diff": max(jax.tree_util.tree_leaves(diffs)),
        "max_generator_change": max(jax.tree_util.tree_leaves(moved)),
        "bad": [int(one.bad_step), int(two.bad_step)],
    }))


if __name__ == "__main__":
    main()
