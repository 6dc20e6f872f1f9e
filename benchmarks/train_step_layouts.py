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
import time

from dac_jax.memory import keep_freed_memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="16khz")
    ap.add_argument("--steps", type=int, default=7, help="steps of each, after one to compile")
    args = ap.parse_args()

    import jax
    import numpy as np

    from benchmarks.train_step import Ours, make_batches, measured
    from dac_jax.train import state as St
    from dac_jax.train import step as S

    ours = Ours(args.preset)
    torch_layout = St.to_torch_layout(ours.config, jax.device_get(ours.state))
    states = {"conv layout": ours.state, "PyTorch layout": S.replicate(torch_layout, ours.mesh)}
    batches = make_batches(args.preset, 4, 0.38, args.steps + 1)

    def stepper(name):
        def step(audio):
            states[name], metrics = ours.fn(states[name], S.shard_batch(audio, ours.mesh))
            jax.block_until_ready(metrics["loss"])
        return step

    for name in states:
        start = time.perf_counter()
        stepper(name)(batches[0])
        print(f"{name}: first step (compiles) {time.perf_counter() - start:.1f} s", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in states}
    names = list(states)
    for k in range(1, args.steps + 1):
        for name in (names if k % 2 else names[::-1]):
            r = measured(stepper(name), batches[k])
            results[name].append(r)
            print(f"{name} step {k}: {r['s']:.2f} s, user {r['user_s']:.2f} s, sys {r['sys_s']:.2f} s", flush=True)
    for name, rs in results.items():
        med = {key: float(np.median([r[key] for r in rs])) for key in ("s", "user_s", "sys_s")}
        print(f"{name}: median {med['s']:.2f} s a step, user {med['user_s']:.2f} s, sys {med['sys_s']:.2f} s")


if __name__ == "__main__":
    keep_freed_memory()
    main()
