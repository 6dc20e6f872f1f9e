"""Checkpoints across a resume: a run SIGKILLed in the middle of a save keeps its previous
checkpoints restorable, and the best checkpoint stays known and kept.

A real subprocess saves checkpoints with :class:`dac_jax.train.checkpoint.Checkpoints` (the last 2
and the best, as the trainer keeps them) and is SIGKILLed at a random moment of its third save
(writing the new step, renaming it, or deleting the step the policy drops: every other round makes
deletion slow, 20 ms a file, and kills in the second half of the save, so that kills land in it); then every checkpoint the folder lists
must restore to exactly the state saved at that step, the last one completed among them. Rounds on
the same folder, each run continuing after the latest checkpoint. Before the checkpoints moved a
dropped step aside before deleting it, a kill during deletion left a listed step whose files were
half gone (``FileNotFoundError`` on restore).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from dac_jax.train.checkpoint import BEST_METRIC, DELETED, Checkpoints

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 4  # a fresh interpreter each: ~5 s (~9 s on 2 busy cores)
BUDGET_S = 35.0  # no round starts after this

# the state saved at `step` is a function of `step`: the parent rebuilds it to compare
CHILD = """
import os, sys, time
import numpy as np
import jax.numpy as jnp
from dac_jax.train.checkpoint import BEST_METRIC, DELETED, Checkpoints

def state(step):
    rng = np.random.default_rng(step)
    return {"generator": {"w": jnp.asarray(rng.standard_normal(1 << 19, np.float32)),
                          "b": jnp.asarray(rng.standard_normal((3, 5), np.float32))},
            "opt": [jnp.asarray(rng.standard_normal(1 << 18, np.float32)), jnp.asarray(step, jnp.int32)]}

directory, first, slow_deletes = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
if slow_deletes:  # widen the moment a save deletes the step it no longer keeps (one unlink at a time)
    unlink = os.unlink
    def slow_unlink(*args, **kwargs):
        unlink(*args, **kwargs)
        time.sleep(0.02)
    os.unlink = slow_unlink
checkpoints = Checkpoints(directory, keep=2)
for step in range(first, first + 1000):
    s = state(step)
    sys.stdin.readline()  # the parent's go-ahead: it knows which save is under way
    print("begin", step, flush=True)
    t = time.perf_counter()
    loss = 0.0 if step == 1 else 1.0 + step  # step 1 stays the best: every later save drops a step
    checkpoints.save(step, s, {"step": step, "seed": 7}, metrics={"val/mel/loss": loss})
    print("saved", step, time.perf_counter() - t, flush=True)
"""


def _state(step: int) -> dict:
    rng = np.random.default_rng(step)
    return {"generator": {"w": rng.standard_normal(1 << 19, np.float32), "b": rng.standard_normal((3, 5), np.float32)},
            "opt": [rng.standard_normal(1 << 18, np.float32), np.asarray(step, np.int32)]}


def _kill_during_a_save(directory: Path, first: int, slow_deletes: bool,
                        rng: np.random.Generator) -> tuple[int, bool]:
    """Run the saver from step ``first``: two saves complete, then a third is SIGKILLed at a random
    moment; returns (the last step saved, whether the kill came before that save's end)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), str(first), str(int(slow_deletes))],
                            cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**os.environ, "JAX_PLATFORMS": "cpu"})

    def expect(word: str, step: int) -> float:
        line = proc.stdout.readline().split()
        assert line[:2] == [word, str(step)], (word, step, line, proc.poll())
        return float(line[2]) if word == "saved" else 0.0

    try:
        durations = []
        for step in (first, first + 1):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            expect("begin", step)
            durations.append(expect("saved", step))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        expect("begin", first + 2)
        # a random moment of the save; with slow deletion, of its second half (the deletion)
        time.sleep(rng.uniform(0.5 if slow_deletes else 0.0, 0.9) * min(durations))
        proc.send_signal(signal.SIGKILL)
        mid_save = not proc.stdout.readline().startswith("saved")
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    return first + 1, mid_save


@pytest.mark.slow  # ~20-40 s: a fresh interpreter importing jax and orbax per round
def test_sigkill_during_a_save_keeps_the_previous_checkpoints_restorable(tmp_path):
    directory = tmp_path / "checkpoints"
    rng = np.random.default_rng(0)
    target = jax.tree_util.tree_map(jax.numpy.asarray, _state(0))
    first, rounds, mid_saves, start = 1, 0, 0, time.monotonic()
    while rounds < ROUNDS and time.monotonic() - start < BUDGET_S:
        saved, mid_save = _kill_during_a_save(directory, first, rounds % 2 == 1, rng)
        rounds, mid_saves = rounds + 1, mid_saves + mid_save
        checkpoints = Checkpoints(directory, keep=2)
        try:
            steps = checkpoints.all_steps()
            assert saved in steps and max(steps) <= saved + 1, (rounds, saved, steps)
            assert checkpoints.latest_step() == max(steps) and checkpoints.best_step() == 1
            for step in steps:
                state, record = checkpoints.restore(step, target)
                assert record == {"step": step, "seed": 7}, (step, record)
                want = jax.tree_util.tree_leaves(_state(step))
                got = jax.tree_util.tree_leaves(state)
                assert len(got) == len(want)
                for a, b in zip(got, want):
                    np.testing.assert_array_equal(np.asarray(a), b, err_msg=f"step {step}")
            first = max(steps) + 1
        finally:
            checkpoints.close()
    assert rounds >= 3, f"only {rounds} rounds in {BUDGET_S} s"
    assert mid_saves >= rounds // 2, f"only {mid_saves} of {rounds} kills came during a save"


def test_the_best_checkpoint_is_kept_and_known_after_a_resume(tmp_path):
    state = {"w": jax.numpy.arange(4.0)}
    checkpoints = Checkpoints(tmp_path, keep=2)
    for step, loss in ((1, 3.0), (2, 1.0), (3, 2.0)):
        checkpoints.save(step, state, {"step": step}, metrics={BEST_METRIC: loss})
    assert checkpoints.all_steps() == [2, 3] and checkpoints.best_step() == 2
    checkpoints.close()
    resumed = Checkpoints(tmp_path, keep=2)  # a new process knows the metrics from the folder
    assert resumed.best_step() == 2
    for step in (4, 5):  # saves without validation metrics
        resumed.save(step, state, {"step": step})
    resumed.save(6, state, {"step": 6}, metrics={BEST_METRIC: 1.5})
    assert resumed.all_steps() == [2, 5, 6] and resumed.best_step() == 2 and resumed.latest_step() == 6
    assert not (tmp_path / DELETED).exists()  # the dropped steps are gone, not just moved
    restored, record = resumed.restore(2, state)
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.arange(4.0))
    assert record == {"step": 2}
    resumed.close()
