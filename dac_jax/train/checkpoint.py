"""Orbax checkpoints of the whole training state: the last N, the best by validation mel
distance, and the original's milestone steps, in one ``CheckpointManager``.

A checkpoint holds the :class:`~dac_jax.train.state.TrainState` pytree (both networks, both
optimiser states, the step, the RNG) and a small JSON record (the step configuration, the batch size
and seed, the validation metrics; checkpoints written before this version also hold a
``data_position``, which nothing reads). Resuming restores the state onto the run's devices and
starts the input pipeline at the saved step (the data position is ``step * batch_size``), which
reproduces the uninterrupted run exactly. Saves are atomic
(Orbax writes to a temporary folder and renames), so a run killed mid-save keeps its previous
checkpoints intact.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

BEST_METRIC = "val/mel/loss"


def to_json(obj: Any) -> Any:
    """``obj`` as JSON values: dataclasses (the frozen configs) as dicts of their fields, tuples as
    lists, dict keys as strings. What a checkpoint's record holds and what ``--dry_run`` prints."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj


class Checkpoints:
    """The run's checkpoint folder ``workdir/checkpoints``."""

    def __init__(self, directory: str | Path, keep: int = 3, milestones: tuple[int, ...] = ()):
        self.directory = Path(directory).absolute()
        policy = pp.AnyPreservationPolicy([
            pp.LatestN(n=max(1, keep)),
            pp.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=True, n=1,
                     keep_checkpoints_without_metrics=False),
            pp.CustomSteps(list(milestones)),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, create=True, enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def best_step(self) -> Optional[int]:
        return self.manager.best_step()

    def save(self, step: int, state: Any, record: dict, metrics: Optional[dict[str, float]] = None) -> None:
        """Save ``state`` (a pytree of arrays) and ``record`` (JSON) as ``step``; ``metrics`` (with
        ``val/mel/loss``) rank it for the best-checkpoint policy."""
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(to_json(record))),
            metrics=metrics,
            force=True,
        )
        self.manager.wait_until_finished()

    def restore(self, step: int, target: Any) -> tuple[Any, dict]:
        """The state saved at ``step``, laid out like ``target`` (arrays or ``ShapeDtypeStruct`` with
        shardings), and its JSON record."""
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), target
        )
        out = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore())
        )
        return out["state"], dict(out["record"])

    def close(self) -> None:
        self.manager.close()

