"""The training loop: ``train_and_evaluate(config, workdir)``.

Restore-first: if ``workdir/checkpoints`` holds a checkpoint, the run continues from it (state and
data position), else it starts fresh (random networks, or the weights given for fine-tuning).
Every ``log_every`` steps the metrics accumulated on the devices (CLU ``Average``s) are moved to
the host, checked for non-finite values and written (TensorBoard through CLU's writer; only
process 0 writes); every ``valid_every`` steps the validation set is scored (mel distance, STFT
distance, waveform L1, SI-SDR); every ``sample_every`` steps reconstructions of a few validation
items are written as audio; checkpoints are kept every ``checkpoint_every`` steps (the last N, the
best by validation mel distance, and the milestone steps).

Nothing is written before the run is known to work: the folder is made only after the state is
built, the training and validation steps are traced for the run's shapes (``jax.eval_shape``;
jit reuses that trace, so it costs nothing) and every data source is scanned.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np
from clu import metric_writers, metrics as clu_metrics, periodic_actions
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dac_jax.errors import DacJaxError, LostProcessError, UsageError
from dac_jax.nn import layout
from dac_jax.train import step as S
from dac_jax.train.checkpoint import BEST_METRIC, CHECKPOINTS, Checkpoints, foreign_entries
from dac_jax.train.config import TrainConfig
from dac_jax.train.excerpts import DataConfig
from dac_jax.train.pipeline import AudioPipeline
from dac_jax.train.state import TrainState, create_train_state, param_count, to_conv_layout, to_torch_layout

log = logging.getLogger("dac_jax.train")


class TrainingDiverged(DacJaxError, FloatingPointError):
    """A loss or gradient norm became NaN or infinite."""


def itstime(step: int, every: int, last: bool = False) -> bool:
    """Whether a periodic action is due after ``step`` steps (``every <= 0``: never, except last)."""
    return last or (every > 0 and step % every == 0)


# ---------------------------------------------------------------------------------------------
# metrics: CLU averages accumulated on the devices, moved to the host only when logged


def _field(name: str) -> str:
    return name.replace("/", "__")


def _name(field: str) -> str:
    return field.replace("__", "/")


def metrics_collection(names) -> type[clu_metrics.Collection]:
    """A CLU ``Collection`` of ``Average``s, one per metric name (``mel/loss`` is field ``mel__loss``)."""
    return clu_metrics.Collection.create(**{_field(n): clu_metrics.Average.from_output(_field(n)) for n in names})


@jax.jit
def _merge(acc: clu_metrics.Collection, new: clu_metrics.Collection) -> clu_metrics.Collection:
    return acc.merge(new)


def gather_metrics(collection: type[clu_metrics.Collection], metrics: dict[str, jax.Array]) -> clu_metrics.Collection:
    """One step's ``metrics`` (device arrays) as a ``collection``, still on the devices."""
    return collection.single_from_model_output(**{_field(k): v for k, v in metrics.items()})


def _computed(acc: clu_metrics.Collection) -> dict[str, float]:
    return {_name(k): float(v) for k, v in acc.compute().items()}


# ---------------------------------------------------------------------------------------------
# data


def _data_config(config: TrainConfig, groups, duration: float, batch_size: int, seed: int) -> DataConfig:
    return DataConfig(
        groups=groups, sample_rate=config.step.sample_rate, duration=duration, batch_size=batch_size, seed=seed,
        loudness_cutoff=config.loudness_cutoff, num_tries=config.num_tries,
        without_replacement=config.without_replacement,
    )


def train_pipeline(config: TrainConfig) -> AudioPipeline:
    """The training input pipeline; building it checks every data source (DataError)."""
    pipeline = AudioPipeline(_data_config(config, config.train_groups, config.duration, config.batch_size,
                                          config.seed))
    log.info("training data: %s", pipeline.stats)
    return pipeline


def train_batches(pipeline: AudioPipeline, start_step: int, period: Optional[int] = None) -> Iterator[np.ndarray]:
    """This host's share of each global training batch, from step ``start_step`` on.

    ``period`` (:attr:`TrainConfig.stream_period`): the stream starts again from its first item
    after ``period`` items, as the original's sampler does after ``n_examples`` items per group.
    A period of whole batches restarts the batched stream (any number of hosts); otherwise (one
    host only: :func:`_check_period`) a batch spans the end of one pass and the start of the next,
    where the original yields a shorter batch (our batches have one shape)."""
    B = pipeline.config.batch_size
    if not period:
        datasets = [pipeline.train_dataset(start_step=start_step)]
    elif period % B == 0:
        steps, first = period // B, start_step % (period // B)
        head = pipeline.train_dataset(start_step=first).take(steps - first)
        datasets = [head, pipeline.train_dataset().take(steps).repeat()]
    else:
        offset = start_step * B % period
        head = pipeline.train_dataset(start_step=offset // B).unbatch().skip(offset % B).take(period - offset)
        items = head.concatenate(pipeline.train_dataset().unbatch().take(period).repeat())
        datasets = [items.batch(B, drop_remainder=True)]
    for dataset in datasets:
        for batch in dataset.as_numpy_iterator():
            yield batch["audio"]


def _check_period(config: TrainConfig) -> None:
    period = config.stream_period
    if period and period % config.batch_size and jax.process_count() > 1:
        raise UsageError(f"train_examples {config.train_examples}: the stream repeats after {period} items, which on "
                         f"several hosts must be a whole number of batches of {config.batch_size}")


def _validation_pipeline(config: TrainConfig) -> AudioPipeline:
    groups = config.val_groups or config.train_groups
    return AudioPipeline(_data_config(config, groups, config.val_duration, config.val_batch_size, config.seed))


def validation_batches(config: TrainConfig) -> list[np.ndarray]:
    """The fixed validation set (whole batches only: one compiled shape), this host's share."""
    pipeline = _validation_pipeline(config)
    return [b["audio"] for b in pipeline.validation_dataset(
        config.num_val_examples, batch_size=config.val_batch_size).as_numpy_iterator()]


def sample_audio(config: TrainConfig, val: list[np.ndarray]) -> Optional[np.ndarray]:
    """The validation items ``sample_items`` whose reconstructions the run writes, on process 0
    (None on the others, which write no audio). ``val`` is this host's share of the validation
    set; on several hosts process 0 reads the items it does not hold (a one-host view of the same
    list), so the samples are the items a one-host run writes."""
    if not config.sample_every or config.n_samples <= 0 or jax.process_index() > 0:
        return None
    if jax.process_count() > 1:
        one_host = _validation_pipeline(config).validation_dataset(
            config.num_val_examples, batch_size=config.val_batch_size, process_index=0, process_count=1)
        val = [b["audio"] for b in one_host.as_numpy_iterator()]
    return np.concatenate(val)[list(config.sample_items)] if val else None


# ---------------------------------------------------------------------------------------------
# validation and samples


def validate(eval_step, state: TrainState, batches: list[np.ndarray], mesh: Mesh) -> dict[str, float]:
    """Mean validation metrics over the fixed set (``val/...``)."""
    sums, count = None, 0
    for audio in batches:
        out = eval_step(state.generator, S.shard_batch(audio, mesh))
        sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
        count += audio.shape[0] * jax.process_count()
    if sums is None:
        return {}
    return {f"val/{k}": float(v) / count for k, v in jax.device_get(sums).items()}


def write_samples(writer, state: TrainState, audio: Optional[np.ndarray], config: TrainConfig, step: int) -> None:
    """Reconstructions of the sample items ``audio`` (:func:`sample_audio`; at step 0 the inputs too).
    Process 0 alone computes them, on its own device, from the replicated parameters."""
    if audio is None:
        return
    recons = _reconstruct(config.step.model, jax.device_get(state.generator), audio)
    audios = {f"recons/sample_{i}": np.asarray(recons[i]).T[None] for i in range(len(audio))}
    if step == 0:
        audios.update({f"signal/sample_{i}": audio[i].T[None] for i in range(len(audio))})
    writer.write_audios(step, {k: np.clip(v, -1, 1) for k, v in audios.items()}, sample_rate=config.step.sample_rate)


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(model_config, params, audio):
    return S.reconstruct(model_config, params, audio)


# ---------------------------------------------------------------------------------------------
# the run folder and its state


def _check_divisible(config: TrainConfig, devices: int) -> None:
    for name in ("batch_size", "val_batch_size"):
        value = getattr(config, name)
        if value % devices:
            raise UsageError(f"{name} {value} must be a multiple of the number of devices ({devices})")


def _check_workdir(workdir: Path) -> None:
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"{workdir}: is a file; save_path must be a folder")
    foreign = foreign_entries(workdir / CHECKPOINTS)
    if foreign:
        shown = ", ".join(f"{CHECKPOINTS}/{name}" for name in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UsageError(f"{workdir}: {shown} is not a checkpoint of a dac-jax run, and the run would "
                         f"delete folders there it takes for old steps; choose another save_path")


def check_shapes(config: TrainConfig, mesh: Mesh, state: TrainState, train_step, eval_step) -> None:
    """Trace the training and validation steps for the run's batch shapes (``jax.eval_shape``:
    nothing is computed, and jit keeps the trace for the first real call). A configuration the
    step cannot run (say, windows or strides that do not fit the excerpts) fails here, before any
    folder is made: as one line (UsageError), not as a traceback from inside JAX."""
    rate = config.step.sample_rate
    data = NamedSharding(mesh, PartitionSpec(S.AXIS))

    def batch(size: int, duration: float):
        return jax.ShapeDtypeStruct((size, 1, int(duration * rate)), jnp.float32, sharding=data)

    spec = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    checks = [("the training step", train_step, (spec, batch(config.batch_size, config.duration)))]
    if config.valid_every:
        checks.append(("the validation step", eval_step,
                       (spec.generator, batch(config.val_batch_size, config.val_duration))))
    for what, fn, args in checks:
        try:
            jax.eval_shape(fn, *args)
        except DacJaxError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to trace is the configuration's
            first = (str(e).strip().splitlines() or [""])[0]
            raise UsageError(f"the configuration cannot run {what}: {type(e).__name__}: {first}") from None


def open_run(workdir: Path, config: TrainConfig) -> tuple[metric_writers.MetricWriter, Checkpoints]:
    """The run's folder (made if missing), its metric writer (only process 0 writes) and checkpoints."""
    _check_workdir(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    writer = metric_writers.create_default_writer(workdir / "logs", just_logging=jax.process_index() > 0)
    return writer, Checkpoints(workdir / CHECKPOINTS, config.keep_checkpoints, config.save_steps)


def fresh_state(config: TrainConfig, mesh: Mesh, generator: Optional[Any] = None,
                discriminator: Optional[Any] = None) -> TrainState:
    """A new state (from ``generator`` / ``discriminator`` params if given) on ``mesh``'s devices."""
    return S.replicate(create_train_state(config.step, config.seed, generator, discriminator), mesh)


def restore_or_init(checkpoints: Checkpoints, config: TrainConfig, state: TrainState) -> TrainState:
    """The latest checkpoint's state if there is one (restored into ``state``'s structure and
    shardings), else ``state`` (:func:`fresh_state`)."""
    latest = checkpoints.latest_step()
    if latest is None:
        return state
    if layout.in_conv_layout(checkpoints.saved_tree(latest)["generator"]):
        state, record = checkpoints.restore(latest, state)
    else:  # written before the training state held the conv layout: restored as saved, then converted
        sharding = jax.tree_util.tree_leaves(state)[0].sharding
        saved = jax.eval_shape(functools.partial(to_torch_layout, config.step), state)
        saved = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), saved)
        state, record = checkpoints.restore(latest, saved)
        state = jax.jit(functools.partial(to_conv_layout, config.step), out_shardings=sharding)(state)
    log.info("resumed from %s at step %d", checkpoints.directory, latest)
    if record.get("batch_size") != config.batch_size or record.get("seed") != config.seed:
        log.warning("the checkpoint was written with batch size %s and seed %s; this run uses %s and %s: "
                    "the data stream will not continue the saved run's", record.get("batch_size"),
                    record.get("seed"), config.batch_size, config.seed)
    return state


def checkpoint_record(config: TrainConfig, step: int, metrics: Optional[dict] = None) -> dict:
    """The JSON saved beside the state: what a resume checks (batch size, seed) and what a reader
    wants to know (the step configuration, the validation metrics). The data position is not
    stored: it is ``step * batch_size``, which the state's step gives."""
    return {"step": step, "step_config": config.step, "metrics": metrics or {}, "batch_size": config.batch_size,
            "seed": config.seed}


# ---------------------------------------------------------------------------------------------
# the run


class TrainMetrics:
    """The training metrics accumulated on the devices since they were last written."""

    def __init__(self):
        self._collection: Optional[type[clu_metrics.Collection]] = None
        self.accumulated: Optional[clu_metrics.Collection] = None

    def add(self, metrics: dict[str, jax.Array]) -> None:
        if self._collection is None:
            self._collection = metrics_collection(metrics)
        single = gather_metrics(self._collection, metrics)
        self.accumulated = single if self.accumulated is None else _merge(self.accumulated, single)

    def pop(self) -> dict[str, float]:
        """The means since the last pop, moved to the host; starts a new accumulation."""
        values, self.accumulated = _computed(self.accumulated), None
        return values


@dataclasses.dataclass
class PeriodicActions:
    """What a run does between steps, and when (:func:`itstime`): report progress, write the
    training metrics (and stop if they diverged), validate, write samples, checkpoint."""

    config: TrainConfig
    mesh: Mesh
    writer: metric_writers.MetricWriter
    checkpoints: Checkpoints
    eval_step: Callable
    val: list[np.ndarray]
    samples: Optional[np.ndarray]  # sample_audio: process 0 only
    report: periodic_actions.ReportProgress

    def baseline(self, state: TrainState) -> None:
        """Step 0's validation and samples: what a run's progress is judged against."""
        if self.val and self.config.valid_every:
            self._validate(0, state)
        if self.config.sample_every:
            write_samples(self.writer, state, self.samples, self.config, 0)

    def __call__(self, step: int, state: TrainState, metrics: TrainMetrics, last: bool) -> None:
        """The actions due after ``step`` steps (``last``: all of them); progress is reported always."""
        self.report(step)
        config = self.config
        checkpoint_due = itstime(step, config.checkpoint_every, last) or step in config.save_steps
        if itstime(step, config.log_every, last) or checkpoint_due:
            raise_if_diverged(state, metrics.accumulated)
            self.writer.write_scalars(step, {f"train/{k}": v for k, v in metrics.pop().items()})
        val_metrics = None
        if self.val and itstime(step, config.valid_every, last):
            with self.report.timed("validate"):
                val_metrics = self._validate(step, state)
        if itstime(step, config.sample_every, last):
            write_samples(self.writer, state, self.samples, config, step)
        if checkpoint_due:
            self._save(step, state, val_metrics)

    def _validate(self, step: int, state: TrainState) -> dict[str, float]:
        val_metrics = validate(self.eval_step, state, self.val, self.mesh)
        self.writer.write_scalars(step, val_metrics)
        log.info("step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in val_metrics.items()))
        return val_metrics

    def _save(self, step: int, state: TrainState, val_metrics: Optional[dict[str, float]]) -> None:
        """Checkpoint ``step``, ranked for the best-checkpoint policy when it was validated."""
        ranked = val_metrics if val_metrics and np.isfinite(val_metrics.get(BEST_METRIC, np.nan)) else None
        self.checkpoints.save(step, state, checkpoint_record(self.config, step, val_metrics), ranked)


def _log_start(writer, state: TrainState, mesh: Mesh, config: TrainConfig) -> None:
    log.info("generator %d parameters, discriminator %d; %d device(s) (%s); global batch %d",
             param_count(state.generator), param_count(state.discriminator), mesh.size,
             jax.devices()[0].platform, config.batch_size)
    if jax.process_count() > 1:
        # said up front: when a peer dies, JAX's coordination service may end this process from C++
        # before Python can say anything (LostProcessError is the line when a collective fails first)
        log.info("process %d of %d: if any process is lost, start every process again with the same command; "
                 "the run resumes from its latest checkpoint", jax.process_index(), jax.process_count())
    if int(state.step) == 0:
        writer.write_hparams({"batch_size": config.batch_size, "seed": config.seed, "devices": mesh.size,
                              "sample_rate": config.step.sample_rate})


def run_steps(state: TrainState, batches: Iterator[np.ndarray], train_step, mesh: Mesh, config: TrainConfig,
              actions: PeriodicActions, warmup_step=None) -> TrainState:
    """Train from ``state.step`` to ``config.num_steps`` (or until the time limit), with ``actions``
    after every step; the last step done is validated and checkpointed. Steps below
    ``config.discriminator_warmup`` run ``warmup_step`` (the discriminator's update only)."""
    metrics = TrainMetrics()
    step = int(state.step)
    deadline = time.monotonic() + config.time_limit if config.time_limit > 0 else None
    while step < config.num_steps:
        audio = next(batches)
        run = warmup_step if step < config.discriminator_warmup else train_step
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
            state, step_metrics = run(state, S.shard_batch(audio, mesh))
        metrics.add(step_metrics)
        step += 1
        last = step == config.num_steps or (deadline is not None and time.monotonic() > deadline)
        actions(step, state, metrics, last)
        if last:
            if step < config.num_steps:
                log.info("time limit of %.1f min reached at step %d", config.time_limit / 60, step)
            break
    return state


def train_and_evaluate(
    config: TrainConfig,
    workdir: str | Path,
    generator: Optional[Any] = None,
    discriminator: Optional[Any] = None,
) -> TrainState:
    """Train (or resume) the run in ``workdir``; returns the final state.

    ``generator`` / ``discriminator``: initial params (e.g. imported PyTorch weights) for a fresh
    run; ignored when the run resumes from its own checkpoint.
    """
    workdir = Path(workdir)
    _check_workdir(workdir)
    mesh = S.make_mesh(config.devices)
    _check_divisible(config, mesh.size)  # the mesh spans every process's devices
    _check_period(config)
    # everything that can fail before the run's folders are made: the data (a missing or empty
    # source must not leave folders behind), the state, the steps traced for the run's shapes
    pipeline = train_pipeline(config)
    val = validation_batches(config) if config.valid_every or config.sample_every else []
    state = fresh_state(config, mesh, generator, discriminator)
    train_step = S.make_train_step(mesh, config.step)
    eval_step = S.make_eval_step(mesh, config.step, seed=config.seed)
    check_shapes(config, mesh, state, train_step, eval_step)
    writer, checkpoints = open_run(workdir, config)
    state = restore_or_init(checkpoints, config, state)
    _log_start(writer, state, mesh, config)
    warmup_step = None
    if int(state.step) < config.discriminator_warmup:
        warmup_step = S.make_train_step(mesh, config.step, update_generator=False)
        log.info("discriminator warm-up: steps %d-%d update the discriminator only", int(state.step),
                 config.discriminator_warmup - 1)
    report = periodic_actions.ReportProgress(num_train_steps=config.num_steps, writer=writer,
                                             every_steps=config.log_every, every_secs=None)
    actions = PeriodicActions(config, mesh, writer, checkpoints, eval_step, val, sample_audio(config, val), report)
    if int(state.step) == 0:
        actions.baseline(state)
    batches = train_batches(pipeline, int(state.step), config.stream_period)
    try:
        state = run_steps(state, batches, train_step, mesh, config, actions, warmup_step)
    except Exception as e:  # noqa: BLE001 - only a lost peer is translated; the rest is raised as it is
        if not lost_peer(e):
            raise
        raise lost_process(e, checkpoints) from None
    writer.flush()
    checkpoints.close()
    return state


#: what a collective's failure says when another process is gone (gloo, NCCL, the coordination service)
_LOST_PEER = ("Gloo", "Connection reset by peer", "Connection closed by peer", "NCCL", "coordination service")


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a collective failing because another process of a
    multi-process job is gone: in a step's all-reduce (``JaxRuntimeError``) or in Orbax's barrier
    during a save (a ``ValueError`` around the same gloo error)."""
    if jax.process_count() == 1 or isinstance(error, DacJaxError):
        return False
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (jax.errors.JaxRuntimeError, ValueError, RuntimeError)) and any(
                word in str(error) for word in _LOST_PEER):
            return True
        error = error.__cause__ or error.__context__
    return False


def lost_process(error: Exception, checkpoints: Checkpoints) -> LostProcessError:
    """What a process of a multi-process job says when a collective fails because another
    process is gone (gloo: "Connection reset by peer"; NCCL and the coordination service in their
    words): one line, with where the job will resume."""
    first = (str(error).strip().splitlines() or [""])[0]
    latest = checkpoints.latest_step()
    where = f"step {latest}" if latest is not None else "the start (no checkpoint yet)"
    return LostProcessError(
        f"process {jax.process_index()} of {jax.process_count()}: the job lost a process ({first}); start every "
        f"process again with the same command to resume from {where} in {checkpoints.directory.parent}")


def raise_if_diverged(state: TrainState, accumulated: Optional[clu_metrics.Collection]) -> None:
    """:class:`TrainingDiverged` if the step recorded a non-finite value (``state.bad_step``),
    naming the metrics that were not finite."""
    bad = int(state.bad_step)
    if bad < 0:
        return
    values = _computed(accumulated) if accumulated is not None else {}
    names = sorted(k for k, v in values.items() if not np.isfinite(v))
    hint = ""
    if "kl/loss" in names:  # DAC_SPEC section 5: a known failure of VAE training
        hint = "; the KL term (kl/loss) is not finite: a known early failure of VAE training, try a smaller learning rate"
    raise TrainingDiverged(
        f"training stopped: non-finite values at step {bad} ({', '.join(names) or 'losses'}); the state "
        f"was not updated from that step on and the last good checkpoint is kept{hint}"
    )
