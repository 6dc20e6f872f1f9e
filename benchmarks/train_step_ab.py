"""dac-jax's training step with and without this wave's discriminator changes, in one process.

    .venv/bin/python -m benchmarks.train_step_ab [--preset 16khz] [--steps 7]

Separate processes (``benchmarks/train_step.py``) vary from step to step by more than a few percent,
so a change of that size is measured here: one process, one state per variant, each variant's step
compiled with the change undone where it says so, steps taken in turn (the order rotating each
round), the trainer's allocator settings (:mod:`dac_jax.memory`). Batch 4 x 0.38 s of noise, as
``benchmarks/train_step.py``. The variants:

- ``before``: both changes undone: the multi-band discriminators' strided convolutions take XLA's
  own input gradient, and the generator's adversarial terms apply the discriminator to the fake and
  real batches stacked (the backward pass running over both);
- ``strided gradient``: :func:`dac_jax.nn.layers.strided_conv2d`'s space-to-depth input gradient
  only;
- ``now``: both (the trainer's step).

Prints each step's wall time and CPU seconds, then the medians.
"""

from __future__ import annotations

import argparse
import contextlib

from dac_jax.memory import keep_freed_memory


@contextlib.contextmanager
def _undone(strided: bool, apart: bool):
    from dac_jax.nn import layers
    from dac_jax.train import step as S

    saved = layers.strided_conv2d, S._discriminate_apart
    if strided:
        layers.strided_conv2d = layers._conv2d  # XLA's strided convolution and its own gradient
    if apart:
        S._discriminate_apart = S._discriminate  # both batches stacked
    try:
        yield
    finally:
        layers.strided_conv2d, S._discriminate_apart = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="16khz")
    ap.add_argument("--steps", type=int, default=7, help="steps of each, after one to compile")
    args = ap.parse_args()

    import jax

    from benchmarks.train_step import Ours, alternate, make_batches
    from dac_jax.train import step as S

    ours = Ours(args.preset)
    variants = {"before": (True, True), "strided gradient": (False, True), "now": (False, False)}
    states = {name: jax.tree_util.tree_map(lambda a: a.copy(), ours.state) for name in variants}
    fns = {name: S.make_train_step(ours.mesh, ours.config) for name in variants}

    def stepper(name):
        def step(audio):
            with _undone(*variants[name]):  # what counts is the first call, which traces and compiles
                states[name], metrics = fns[name](states[name], S.shard_batch(audio, ours.mesh))
            jax.block_until_ready(metrics["loss"])
        return step

    alternate({name: stepper(name) for name in variants}, make_batches(args.preset, 4, 0.38, args.steps + 1), args.steps)


if __name__ == "__main__":
    keep_freed_memory()
    main()
