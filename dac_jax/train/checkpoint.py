"""Orbax checkpoints of the whole training state: the last N, the best by validation mel
distance, and the original's milestone steps, in one ``CheckpointManager``.

A checkpoint holds the :class:`~dac_jax.train.state.TrainState` pytree (both networks, both
optimiser states, the step, the RNG) and a small JSON record (the step configuration, the batch size
and seed, the validation metrics; checkpoints written before this version also hold a
``data_position``, which nothing reads). Resuming restores the state onto the run's devices and
starts the input pipeline at the saved step (the data position is ``step * batch_size``), which
reproduces the uninterrupted run exactly.

A run killed at any moment of a save (SIGKILL, preemption) keeps its previous checkpoints
restorable, every one the folder lists (tested by killing a saving process at random moments):

* the new step is written to a temporary folder and renamed when complete (Orbax); a leftover
  temporary folder is removed when the folder is next opened;
* a step the policy no longer keeps is first renamed into ``checkpoints/.deleted/`` (one atomic
  rename, Orbax's ``todelete_subdir``) and only then deleted, by us, after the save and whenever the
  folder is opened: Orbax's own deletion removes a step's files one by one in place, so a kill
  midway left a step that was still listed but could not be restored.

The validation metrics of a ranked save are written with the checkpoint (``best_fn``), so the best
checkpoint is still known, and kept, after a resume (without it Orbax keeps the metrics in memory
only: a resumed run dropped the best checkpoint at its first save, and ``best_step`` was the latest).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from dac_jax.errors import WeightsError
from dac_jax.model.discriminator import DiscriminatorConfig
from dac_jax.nn import layout
from dac_jax.train.config import StepConfig
from dac_jax.train.state import discriminator_layout, generator_layout

BEST_METRIC = "val/mel/loss"
DELETED = ".deleted"  # where steps are moved, atomically, before they are deleted
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # a step Orbax is writing (renamed into place when complete)


class _UnrankedSaves(logging.Filter):
    """Drops Orbax's warning on every save without metrics (``best_fn`` set): the trainer ranks
    only the validated saves, by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "did not provide metrics" not in message and "Given directory is read only" not in message


logging.getLogger("absl").addFilter(_UnrankedSaves())


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


def foreign_entries(directory: str | Path) -> list[str]:
    """What in a run's ``checkpoints/`` folder the trainer did not write: anything but its steps
    (``N/`` holding Orbax's metadata and the ``state``/``record`` items), the steps Orbax was writing
    when a process died (``N.orbax-checkpoint-tmp-*``) and the steps being deleted. The retention
    policy deletes integer-named folders it takes for old steps, so a run must not start over a
    folder of the user's (measured: a ``checkpoints/7/notes.txt`` was deleted by the third save)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    foreign = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name == DELETED or (TMP_SUFFIX in name and name.split(".", 1)[0].isdigit()):
            continue
        if name.isdigit() and entry.is_dir() and (entry / "_CHECKPOINT_METADATA").is_file() \
                and (entry / "state").is_dir() and (entry / "record").is_dir():
            continue
        foreign.append(name)
    return foreign


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
            cleanup_tmp_directories=True, todelete_subdir=DELETED,
            best_fn=lambda m: m[BEST_METRIC], best_mode="min",  # written with the step, so kept on resume
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._empty_deleted()

    def _empty_deleted(self) -> None:
        """Delete the steps moved out of the listing (a kill midway leaves the rest for next time)."""
        if jax.process_index() == 0:
            shutil.rmtree(self.directory / DELETED, ignore_errors=True)

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
        self._empty_deleted()

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

    def saved_tree(self, step: int) -> Any:
        """The structure of the state saved at ``step``: its nesting, with array metadata as leaves."""
        return ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state").item_metadata.tree

    def close(self) -> None:
        self.manager.close()



# ---------------------------------------------------------------------------------------------
# a run's generator, for loading a trained model: load_model(RUN), python -m dac_jax convert RUN OUT

CHECKPOINTS = "checkpoints"


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a training run's ``save_path`` (it holds ``checkpoints/``)."""
    return (Path(path) / CHECKPOINTS).is_dir()


@dataclasses.dataclass
class RunGenerator:
    config: Any  # DACConfig or VAEConfig, from the checkpoint's record
    params: Any  # the generator's params tree (numpy)
    step: int
    metrics: dict  # the validation metrics saved with the step (empty if it was not validated)


def _model_config(record: dict, where: Path):
    from dac_jax.model.config import DACConfig, VAEConfig

    model = (record.get("step_config") or {}).get("model")
    if not isinstance(model, dict):
        raise WeightsError(f"{where}: the checkpoint's record has no model configuration")
    # a DAC's config has the codebook fields, a DAC-VAE's has none
    cls = DACConfig if "n_codebooks" in model else VAEConfig
    try:
        config, ignored = cls.from_kwargs(model)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{where}: bad model configuration in the checkpoint's record ({e})") from None
    if ignored:
        raise WeightsError(f"{where}: unknown model configuration keys {ignored} in the checkpoint's record")
    return config


@dataclasses.dataclass
class RunDiscriminator:
    config: Any  # DiscriminatorConfig, from the checkpoint's record
    params: Any  # the discriminator's params tree (numpy, PyTorch's layouts)
    step: int
    metrics: dict


def _read_run_state(run: str | Path, step: str | int) -> tuple[Any, dict, int, Path]:
    """``(state tree as numpy, record, chosen step, checkpoints folder)`` of a run's checkpoint:
    ``step`` is ``"best"`` (the lowest validation mel distance; the latest if none was validated),
    ``"latest"``, or a step number the folder lists. Read only."""
    directory = Path(run).absolute() / CHECKPOINTS
    if not directory.is_dir():
        raise WeightsError(f"{run}: not a training run (no {CHECKPOINTS}/ folder)")
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0, best_fn=lambda m: m[BEST_METRIC], best_mode="min")
    # the handlers named: without them Orbax gives no metadata, and restores each array onto the
    # devices that saved it, which fails wherever those devices are not this process's
    manager = ocp.CheckpointManager(directory, options=options, item_handlers={
        "state": ocp.StandardCheckpointHandler(), "record": ocp.JsonCheckpointHandler()})
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise WeightsError(f"{run}: the run has no checkpoint yet")
        if step == "latest":
            chosen = steps[-1]
        elif step == "best":
            chosen = manager.best_step()
            chosen = steps[-1] if chosen is None else chosen
        elif isinstance(step, int) and not isinstance(step, bool) and step in steps:
            chosen = step
        else:
            raise WeightsError(f"{run}: no checkpoint {step!r}; it has steps {', '.join(map(str, steps))} "
                               f"(or ask for 'best' or 'latest')")
        # onto this process's first device, whatever devices saved it (a run on 8 GPUs reads on a laptop)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        saved = manager.item_metadata(chosen)["state"]
        target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                        saved.tree)
        try:
            out = manager.restore(chosen, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                                record=ocp.args.JsonRestore()))
        except (ValueError, OSError) as e:
            raise WeightsError(f"{run}: step {chosen} cannot be read ({str(e).splitlines()[0][:160]})") from None
    finally:
        manager.close()
    return jax.tree_util.tree_map(np.asarray, out["state"]), dict(out["record"]), chosen, directory


def read_run_generator(run: str | Path, step: str | int = "best") -> RunGenerator:
    """The generator of a training run's checkpoint (``step`` as :func:`_read_run_state`), in
    PyTorch's layouts. Read only: nothing in the run's folder is created, moved or deleted."""
    state, record, chosen, directory = _read_run_state(run, step)
    config = _model_config(record, directory / str(chosen))
    params = generator_layout(config, state["generator"], layout.to_torch_layout)  # as imports and exports speak
    return RunGenerator(config, params, chosen, dict(record.get("metrics") or {}))


def read_run_discriminator(run: str | Path, step: str | int = "best") -> RunDiscriminator:
    """The discriminator of a training run's checkpoint (``step`` as :func:`_read_run_state`), in
    PyTorch's layouts: what a later run fine-tunes from (``--discriminator_weights``)."""
    state, record, chosen, directory = _read_run_state(run, step)
    fields = (record.get("step_config") or {}).get("discriminator")
    try:
        config, ignored = DiscriminatorConfig.from_kwargs(fields)
    except (TypeError, ValueError, AttributeError) as e:
        raise WeightsError(f"{directory / str(chosen)}: bad discriminator configuration in the checkpoint's "
                           f"record ({e})") from None
    if ignored:
        raise WeightsError(f"{directory / str(chosen)}: unknown discriminator keys {ignored} in the checkpoint's record")
    step_config = StepConfig(model=_model_config(record, directory / str(chosen)), discriminator=config)
    params = discriminator_layout(step_config, state["discriminator"], layout.to_torch_layout)
    return RunDiscriminator(config, params, chosen, dict(record.get("metrics") or {}))
