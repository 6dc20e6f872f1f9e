"""dac-jax's training step on a state in the conv layout (the trainer's) and in PyTorch's, alternating.

    .venv/bin/python -m benchmarks.train_step_layouts [--preset 16khz] [--steps 7]

One process, one compiled step function traced for each state (:mod:`dac_jax.nn.layout`: the
same numbers, ``kernel_v`` / ``kernel_g`` against ``weight_v`` / ``weight_g``), steps taken in
turn (ABBA order), the trainer's allocator settings (:mod:`dac_jax.memory`). Prints each step's
wall time, user and system CPU seconds, and the medians. Batch 4 x 0.38 s of noise, as
``benchmarks/train_step.py``.
"""

from __future__ import annotations

import argparse

from dac_jax.memory import keep_freed_memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="16khz")
    ap.add_argument("--steps", type=int, default=7, help="steps of each, after one to compile")
    args = ap.parse_args()

    import jax

    from benchmarks.train_step import Ours, alternate, make_batches
    from dac_jax.train import state as St
    from dac_jax.train import step as S

    ours = Ours(args.preset)
    torch_layout = St.to_torch_layout(ours.config, jax.device_get(ours.state))
    states = {"conv layout": ours.state, "PyTorch layout": S.replicate(torch_layout, ours.mesh)}

    def stepper(name):
        def step(audio):
            states[name], metrics = ours.fn(states[name], S.shard_batch(audio, ours.mesh))
            jax.block_until_ready(metrics["loss"])
        return step

    alternate({name: stepper(name) for name in states}, make_batches(args.preset, 4, 0.38, args.steps + 1), args.steps)


if __name__ == "__main__":
    keep_freed_memory()
    main()
