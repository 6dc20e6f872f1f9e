"""The trainer's command line: ``python train.py --args.load configs/44khz.yml --save_path runs/44khz``
(or ``python -m dac_jax.cli.train ...``).

argbind binds here and nowhere else (the library's configs stay plain frozen dataclasses). The
bound names and their keys are the original DAC's
(``scripts/train.py`` + ``conf/final/44khz.yml``): ``DAC.*``, ``Discriminator.*``, ``AdamW.*`` and
``ExponentialLR.*`` (scopes ``generator/`` and ``discriminator/``), ``MelSpectrogramLoss.*``,
``MultiScaleSTFTLoss.*``, ``VolumeNorm.db``, ``build_transform.*``,
``train/build_dataset.folders`` / ``val/build_dataset.folders``, ``train/AudioDataset.*``,
``lambdas``, ``batch_size``, ``num_iters``, ``valid_freq``, ... so the original's config files
load with few changes. Additions: ``devices``, ``log_freq``, ``keep_checkpoints``,
``generator_weights`` / ``discriminator_weights`` (fine-tuning), ``distributed`` and
``coordinator_address`` / ``num_processes`` / ``process_id`` (many hosts), ``dry_run``.

Every key is used or refused, never accepted and ignored. :func:`parse_args` reads the command
line and the YAML file (``--args.load``; ``$include`` and ``$vars`` as argbind reads them) with
argbind's precedence (command line, then file, then defaults; a scoped key such as
``generator/AdamW.lr`` inherits ``AdamW.lr``), and refuses, in one line naming the key:
unknown keys and flags (with the closest known one), keys of the original that this port does
not implement (:data:`REFUSED`, with the reason), and values of the wrong type or range
(:data:`RULES`). List and dict flags take YAML/JSON literals on the command line
(``--train/build_dataset.folders '{"speech": ["data/speech"]}'``, ``--DAC.encoder_rates
'[2, 4, 8, 8]'``). The bound functions then check what spans several keys; nothing is written
before all of it passes (and the run itself traces its step before making its folder:
:func:`dac_jax.train.loop.train_and_evaluate`).

DAC-VAE (primepake/dac_vae, ``configs/vae24khz-x2.yml``): ``model: vae`` trains the generator bound
as ``VAE.*`` (the fields of :class:`dac_jax.model.config.VAEConfig`) instead of ``DAC.*``, with
``lambdas["kl/loss"]`` the KL weight held until ``hold_base_steps`` (the original's key) and then
cosine-annealed to ``kl_final`` at ``num_iters`` (the original hard-codes 0.1).
Every value resolves into :class:`dac_jax.train.config.TrainConfig`, and the library does the rest
(:func:`dac_jax.train.loop.train_and_evaluate`). Fine-tuning reads weights through the facade
(:func:`dac_jax.load_model` / :func:`dac_jax.load_vae`), which is why it lives here, above it,
and not in :mod:`dac_jax.train`.
"""

# no `from __future__ import annotations`: argbind reads the annotations as types
import argparse
import dataclasses
import difflib
import inspect
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

import argbind
import argbind.argbind as argbind_registry  # the bound functions, whose defaults the parser must keep
import jax
import yaml

from dac_jax.quiet_tf import quiet_tensorflow_environment
from dac_jax.api import load_model, load_vae
from dac_jax.audio.spectral import get_window
from dac_jax.cli.common import one_line_errors
from dac_jax.errors import UsageError
from dac_jax.model.config import DACConfig, VAEConfig
from dac_jax.model.discriminator import BANDS, DiscriminatorConfig
from dac_jax.runtime import check_distributed, default_winograd, initialize_distributed
from dac_jax.train.augment import AugmentConfig
from dac_jax.train.checkpoint import to_json
from dac_jax.train.config import LossWeights, StepConfig, TrainConfig
from dac_jax.train.losses import KLSchedule, MelLossConfig, STFTLossConfig
from dac_jax.train.optim import OptimizerConfig
from dac_jax.weights.discriminator import load_discriminator


def _built(name: str, make: Callable, *args, **kwargs):
    """``make(*args, **kwargs)``; a library config's ValueError (a check spanning several of its
    fields) as a UsageError naming the bound function's keys."""
    try:
        return make(*args, **kwargs)
    except (ValueError, TypeError) as e:  # UsageError among them
        raise UsageError(f"{name}.*: {e}") from None


@argbind.bind()
def DAC(
    sample_rate: int = 44100, encoder_dim: int = 64, encoder_rates: list = [2, 4, 8, 8], latent_dim: int = None,
    decoder_dim: int = 1536, decoder_rates: list = [8, 8, 4, 2], n_codebooks: int = 9, codebook_size: int = 1024,
    codebook_dim: int = 8, quantizer_dropout: float = 0.0,
) -> DACConfig:
    return _built("DAC", DACConfig, encoder_dim, encoder_rates, latent_dim, decoder_dim, decoder_rates, n_codebooks,
                  codebook_size, codebook_dim, float(quantizer_dropout), sample_rate)


@argbind.bind()
def VAE(
    sample_rate: int = 44100, encoder_dim: int = 64, encoder_rates: list = [2, 4, 8, 8], latent_dim: int = 64,
    decoder_dim: int = 1536, decoder_rates: list = [8, 8, 4, 2],
) -> VAEConfig:
    """The original DACVAE's architectural arguments (and defaults) that this port builds."""
    return _built("VAE", VAEConfig, encoder_dim, encoder_rates, latent_dim, decoder_dim, decoder_rates, sample_rate)


@argbind.bind()
def Discriminator(
    rates: list = [], periods: list = [2, 3, 5, 7, 11], fft_sizes: list = [2048, 1024, 512],
    sample_rate: int = 44100, bands: list = [list(b) for b in BANDS], width: float = 1.0,
) -> DiscriminatorConfig:
    """The original's arguments, plus ``width`` (dac-jax: hidden channels scaled, for small CPU runs)."""
    return _built("Discriminator", DiscriminatorConfig, rates=rates, periods=periods, fft_sizes=fft_sizes,
                  sample_rate=sample_rate, bands=[tuple(b) for b in bands], width=width)


@argbind.bind("generator", "discriminator")
def AdamW(lr: float = 1e-3, betas: list = [0.9, 0.999], eps: float = 1e-8, weight_decay: float = 1e-2):
    """torch.optim.AdamW's arguments and defaults."""
    return dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@argbind.bind("generator", "discriminator")
def ExponentialLR(gamma: float = 1.0):
    return dict(gamma=gamma)


@argbind.bind("generator", "discriminator")
def warmup(steps: int = 0):
    """Linear learning-rate warm-up from lr * 1e-9 (DAC-VAE); 0: none."""
    return dict(warmup_steps=steps)


@argbind.bind()
def grad_clip(generator: float = 1e3, discriminator: float = 10.0):
    """clip_grad_norm_ max_norm of each network (the original's fixed 1e3 and 10)."""
    return generator, discriminator


def _spectral_scales(name: str, window_lengths: list, *others: tuple[str, list]) -> None:
    """The original zips its per-scale lists and silently drops the scales of the longer ones:
    refused here, so a list one entry short is not a scale lost without a word."""
    for other, values in others:
        if len(values) != len(window_lengths):
            raise UsageError(f"{name}.{other} has {len(values)} entries and {name}.window_lengths "
                             f"{len(window_lengths)}: give one per scale")


@argbind.bind()
def MelSpectrogramLoss(
    n_mels: list = [150, 80], window_lengths: list = [2048, 512], loss_fn: str = "L1", clamp_eps: float = 1e-5,
    mag_weight: float = 1.0, log_weight: float = 1.0, pow: float = 2.0, weight: float = 1.0,
    match_stride: bool = False, mel_fmin: list = [0.0, 0.0], mel_fmax: list = [None, None], window_type: str = None,
) -> MelLossConfig:
    """``dac.nn.loss.MelSpectrogramLoss``'s arguments; ``loss_fn``, ``weight`` and ``match_stride``
    only with the values whose behaviour the original has (:data:`RULES` says why)."""
    _spectral_scales("MelSpectrogramLoss", window_lengths, ("n_mels", n_mels), ("mel_fmin", mel_fmin),
                     ("mel_fmax", mel_fmax))
    for i, (lo, hi) in enumerate(zip(mel_fmin, mel_fmax)):
        if hi is not None and not hi > lo:
            raise UsageError(f"MelSpectrogramLoss.mel_fmax[{i}] {hi} must exceed mel_fmin[{i}] {lo}")
    return MelLossConfig(n_mels=n_mels, window_lengths=window_lengths, clamp_eps=clamp_eps, mag_weight=mag_weight,
                         log_weight=log_weight, pow=pow, mel_fmin=[float(f) for f in mel_fmin],
                         mel_fmax=[None if f is None else float(f) for f in mel_fmax], window=window_type or "hann")


@argbind.bind()
def MultiScaleSTFTLoss(
    window_lengths: list = [2048, 512], loss_fn: str = "L1", clamp_eps: float = 1e-5, mag_weight: float = 1.0,
    log_weight: float = 1.0, pow: float = 2.0, weight: float = 1.0, match_stride: bool = False,
    window_type: str = None,
) -> STFTLossConfig:
    """``dac.nn.loss.MultiScaleSTFTLoss``'s arguments (``loss_fn``, ``weight``, ``match_stride`` as
    for :func:`MelSpectrogramLoss`)."""
    return STFTLossConfig(window_lengths=window_lengths, clamp_eps=clamp_eps, mag_weight=mag_weight,
                          log_weight=log_weight, pow=pow, window=window_type or "hann")


@argbind.bind()
def VolumeNorm(db: list = ["const", -24]) -> float:
    return float(db) if _is_number(db) else float(db[1])


@argbind.bind()
def RescaleAudio(val: float = 1.0) -> float:
    return float(val)


@argbind.bind()
def ShiftPhase(shift: list = ["uniform", -math.pi, math.pi]) -> tuple[float, float]:
    return float(shift[1]), float(shift[2])


TRANSFORMS = ("Identity", "VolumeNorm", "RescaleAudio", "ShiftPhase")
ON_DEVICE = TRANSFORMS[1:]  # the order augment.augment applies them in
FIELD_OF = dict(zip(ON_DEVICE, ("volume_norm", "rescale", "shift_phase")))  # AugmentConfig's switch of each


@argbind.bind("train", "val")
def build_transform(scope: str, augment_prob: float = 1.0, preprocess: list = ["Identity"],
                    augment: list = ["Identity"], postprocess: list = ["Identity"]) -> AugmentConfig:
    """The original's transform lists (``Compose(preprocess, Compose(augment, prob=augment_prob),
    postprocess)``), run on the device: VolumeNorm, RescaleAudio, ShiftPhase, each at most once and
    in that order. ``augment_prob`` is the probability that an item gets the ``augment`` stage,
    as in the original (drawn per item on the device from the item's key)."""
    key = f"{scope}/build_transform" if scope else "build_transform"
    used = [t for t in [*preprocess, *(augment if augment_prob > 0 else []), *postprocess] if t != "Identity"]
    ranks = [ON_DEVICE.index(t) for t in used]
    if ranks != sorted(set(ranks)):
        raise UsageError(f"{key}: the device applies {', '.join(ON_DEVICE)} in that order, each at most once; "
                         f"preprocess + augment + postprocess give {used}")
    kwargs = {"volume_norm": "VolumeNorm" in used, "rescale": "RescaleAudio" in used, "shift_phase": "ShiftPhase" in used}
    stage = tuple(FIELD_OF[t] for t in augment if t != "Identity")
    if stage and 0 < augment_prob < 1:  # 0 and 1 need no draw: the stage is left out or always run
        kwargs.update(augment_prob=float(augment_prob), augment_stage=stage)
    if kwargs["volume_norm"]:
        kwargs["target_db"] = VolumeNorm()
    if kwargs["rescale"]:
        kwargs["max_value"] = RescaleAudio()
    if kwargs["shift_phase"]:
        kwargs["phase_range"] = ShiftPhase()
    return _built("build_transform", AugmentConfig, **kwargs)


@argbind.bind("train", "val")
def build_dataset(folders: dict = None) -> tuple[tuple[str, ...], ...]:
    """Groups of sources (folders, or ``tfds:NAME[:SPLIT]``), drawn round-robin."""
    if not folders:
        return ()
    return tuple(tuple(str(s) for s in (v if isinstance(v, (list, tuple)) else [v])) for v in folders.values())


@argbind.bind("train", "val")
def AudioDataset(duration: float = 0.5, n_examples: int = None, loudness_cutoff: float = -40.0, num_tries: int = 8,
                 without_replacement: bool = True):
    """audiotools' AudioDataset arguments. ``n_examples``: items per group per pass (train: the
    stream repeats after them, as the original's does; unset, it never repeats; val: the
    validation set, 1000 by default as audiotools')."""
    return dict(duration=duration, n_examples=n_examples, loudness_cutoff=loudness_cutoff, num_tries=num_tries,
                without_replacement=without_replacement)


@argbind.bind("train", "val")
def AudioLoader(shuffle: bool = True):
    """audiotools' AudioLoader: only ``shuffle: true`` (each pass through a group in a random order)."""
    return dict(shuffle=shuffle)


@argbind.bind(without_prefix=True)
def train(
    args,
    save_path: str = "ckpt",
    seed: int = 0,
    num_iters: int = 250000,
    save_iters: list = [10000, 50000, 100000, 200000],
    sample_freq: int = 10000,
    valid_freq: int = 1000,
    log_freq: int = 50,
    batch_size: int = 12,
    val_batch_size: int = 10,
    val_idx: list = [0, 1, 2, 3, 4, 5, 6, 7],
    keep_checkpoints: int = 3,
    devices: int = None,
    lambdas: dict = {"mel/loss": 100.0, "adv/feat_loss": 2.0, "adv/gen_loss": 1.0,
                     "vq/commitment_loss": 0.25, "vq/codebook_loss": 1.0},
    generator_weights: str = None,
    discriminator_weights: str = None,
    discriminator_warmup: int = 0,
    distributed: bool = False,
    coordinator_address: str = None,
    num_processes: int = None,
    process_id: int = None,
    dry_run: bool = False,
    time_limit: float = 0.0,
    model: str = "dac",
    hold_base_steps: int = 200000,
    kl_final: float = 0.1,
    winograd: str = "auto",
    amp: bool = False,
):
    """Run (or resume) training into ``save_path``.

    Args:
        model: ``dac`` (the ``DAC.*`` keys) or ``vae`` (DAC-VAE, the ``VAE.*`` keys).
        hold_base_steps: DAC-VAE: steps the KL weight stays at ``lambdas["kl/loss"]``.
        kl_final: DAC-VAE: the KL weight at ``num_iters``, reached by a half cosine.
        devices: use the first N local devices (default: all).
        generator_weights: fine-tune from these generator weights (DAC: a released-format .pth or a
            dac-jax folder; DAC-VAE: the original's checkpoint.pt, a bare state dict or a dac-jax folder); their
            architecture must be the configured model's.
        discriminator_weights: fine-tune from these discriminator weights: the original's (.pth), or
            a run's in dac-jax's folder (``python -m dac_jax convert RUN OUT --discriminator``).
        discriminator_warmup: the first N steps update the discriminator only (a dac-jax option, for
            a fresh discriminator beside trained generator weights; 0: none, as the original).
        distributed: join a multi-host job found by JAX's cluster detection (SLURM, Open MPI, TPU pods:
            ``jax.distributed.initialize()`` without arguments).
        coordinator_address: many hosts without a cluster manager: host:port of process 0, reachable from
            every host; with num_processes and process_id, the same command on every host.
        num_processes: many hosts: how many processes the job has.
        process_id: many hosts: this process's index, 0..num_processes-1.
        time_limit: stop after this many minutes of training (0: no limit), validating and
            checkpointing at the step where it stops, as at the last step.
        dry_run: check the configuration, print it resolved as JSON, and exit.
        winograd: the generator's kernel-7 convolutions (128 channels or more) as Winograd F(m, 7),
            forward and backward (a dac-jax option): ``auto`` (4 on a CPU, where it measured ~10 %
            faster a step, direct elsewhere), ``2``, ``4``, or ``off`` (direct, the original's sums).
        amp: the original's mixed precision: only false (the step runs in float32).
    """
    step, data = resolve_step_and_data(args, model, lambdas, num_iters, hold_base_steps, kl_final)
    _check_run(data, step, val_batch_size, val_idx, sample_freq)
    config = TrainConfig(
        step=step, **data, batch_size=batch_size, val_batch_size=val_batch_size, num_steps=num_iters, seed=seed,
        log_every=log_freq, valid_every=valid_freq, sample_every=sample_freq, checkpoint_every=valid_freq,
        keep_checkpoints=keep_checkpoints, save_steps=tuple(save_iters), sample_items=tuple(val_idx),
        devices=devices, time_limit=60.0 * time_limit, discriminator_warmup=discriminator_warmup,
    )
    if args.get("args.save"):  # argbind's --args.save, once the configuration is known to be good
        argbind.dump_args({k: v for k, v in args.items() if not k.startswith("args.")}, args["args.save"])
    hosts = (coordinator_address, num_processes, process_id)
    check_distributed(*hosts)
    if not dry_run and (distributed or any(v is not None for v in hosts)):
        initialize_distributed(*hosts)
    # after initialising: `auto` asks JAX for its backend, which jax.distributed must come before
    config = dataclasses.replace(config, step=dataclasses.replace(config.step, winograd=winograd_tile(winograd)))
    if dry_run:
        print(json.dumps(to_json(config), indent=1))
        return 0
    generator, discriminator = fine_tune_weights(config, generator_weights, discriminator_weights)
    # deferred: the loop imports the training stack (tensorflow through tf.data and clu, orbax),
    # seconds that --help and --dry_run do not need
    from dac_jax.train.loop import train_and_evaluate

    train_and_evaluate(config, save_path, generator=generator, discriminator=discriminator)
    return 0


def winograd_tile(value) -> int | None:
    """``--winograd``'s tile: ``auto`` -> 4 on a CPU, None elsewhere; ``off`` -> None; ``2``/``4``."""
    value = str(value)
    if value == "auto":
        return default_winograd()
    return None if value == "off" else int(value)


def resolve_step_and_data(args, model: str, lambdas: dict, num_iters: int, hold_base_steps: int,
                          kl_final: float) -> tuple[StepConfig, dict]:
    """The bound :class:`StepConfig`, and the data fields of :class:`TrainConfig` (``train/...`` and
    ``val/...`` keys); the keys are read, and checked, in this order: generator, optimisers, data,
    the rest of the step."""
    generator, kl, lambdas = _generator(model, lambdas, num_iters, hold_base_steps, kl_final)
    generator_optim, discriminator_optim = _optimizers(args)
    augment, data = _data(args)
    step = StepConfig(
        model=generator, discriminator=Discriminator(), generator_optim=generator_optim,
        discriminator_optim=discriminator_optim, weights=LossWeights.from_lambdas(lambdas),
        mel=MelSpectrogramLoss(), stft=MultiScaleSTFTLoss(), augment=augment, kl=kl,
    )
    if step.discriminator.sample_rate != generator.sample_rate:
        name = "VAE" if step.is_vae else "DAC"
        raise UsageError(f"Discriminator.sample_rate {step.discriminator.sample_rate} differs from {name}.sample_rate "
                         f"{generator.sample_rate}")
    return step, data


def _generator(model: str, lambdas: dict, num_iters: int, hold_base_steps: int, kl_final: float):
    """``(DAC.* or VAE.* config, KL schedule, the lambdas left for LossWeights)``."""
    lambdas = dict(lambdas)
    if model == "vae":
        if hold_base_steps >= num_iters:
            raise UsageError(f"hold_base_steps {hold_base_steps} must be below num_iters {num_iters}")
        kl = KLSchedule(start=float(lambdas.pop("kl/loss", 0.0)), final=kl_final, hold_steps=hold_base_steps,
                        end_step=num_iters)
        if any(lambdas.get(k) for k in ("vq/commitment_loss", "vq/codebook_loss")):
            raise UsageError("model: vae has no quantiser: remove the vq/* lambdas")
        return VAE(), kl, lambdas
    if model == "dac":
        return DAC(), KLSchedule(), lambdas
    raise UsageError(f"model must be dac or vae, got {model!r}")


def _optimizers(args) -> tuple[OptimizerConfig, OptimizerConfig]:
    """The ``generator/`` and ``discriminator/`` scopes' AdamW, ExponentialLR, warmup, and grad_clip."""
    clips = grad_clip()
    optims = []
    for scope, clip in zip(("generator", "discriminator"), clips):
        with argbind.scope(args, scope):
            optims.append(OptimizerConfig(**AdamW(), **ExponentialLR(), **warmup(), grad_clip=clip))
    return optims[0], optims[1]


def _data(args) -> tuple[AugmentConfig, dict]:
    """The transforms, and the data fields of :class:`TrainConfig`. The validation set is cut
    and transformed as the training set is (one loudness cutoff, number of tries, file order and
    set of transforms for both): ``val/`` keys that differ are refused."""
    with argbind.scope(args, "train"):
        augment = build_transform("train")
        train_groups = build_dataset()
        train_data = AudioDataset()
    with argbind.scope(args, "val"):
        val_augment = build_transform("val")
        val_groups = build_dataset()
        val_data = AudioDataset()
    if not train_groups:
        raise UsageError("no training data: set train/build_dataset.folders (groups of folders or tfds:NAME)")
    if val_augment != augment:
        raise UsageError("val/build_transform.* give the validation other transforms than training's "
                         f"({val_augment} vs {augment}); dac-jax validates with the training transforms")
    for name in ("loudness_cutoff", "num_tries", "without_replacement"):
        if val_data[name] != train_data[name]:
            raise UsageError(f"val/AudioDataset.{name} {val_data[name]!r} differs from train/AudioDataset.{name} "
                             f"{train_data[name]!r}; dac-jax cuts both sets alike: set AudioDataset.{name}")
    return augment, dict(
        train_groups=train_groups, val_groups=val_groups, duration=train_data["duration"],
        val_duration=val_data["duration"], val_examples=val_data["n_examples"] or 1000,
        train_examples=train_data["n_examples"], loudness_cutoff=train_data["loudness_cutoff"],
        num_tries=train_data["num_tries"], without_replacement=train_data["without_replacement"],
    )


def _check_run(data: dict, step: StepConfig, val_batch_size: int, val_idx: list, sample_freq: int) -> None:
    """What spans the data, the step and the run, in the keys' words (TrainConfig checks the last
    in its fields' words): excerpts long enough for every STFT, ``val_idx`` inside the validation set."""
    rate = step.sample_rate
    windows = [("MelSpectrogramLoss.window_lengths", w) for w in step.mel.window_lengths]
    windows += [("MultiScaleSTFTLoss.window_lengths", w) for w in step.stft.window_lengths]
    windows += [("Discriminator.fft_sizes", w) for w in step.discriminator.fft_sizes]
    for scope, duration in (("train", data["duration"]), ("val", data["val_duration"])):
        samples = int(duration * rate)
        for key, w in windows:
            if samples <= w // 2:
                raise UsageError(f"{scope}/AudioDataset.duration {duration} s ({samples} samples at {rate} Hz) is too "
                                 f"short for {key} {w}: a reflect-padded STFT needs more than {w // 2} samples")
    if sample_freq:
        examples = max(val_batch_size, data["val_examples"] // val_batch_size * val_batch_size)
        outside = [i for i in val_idx if i >= examples]
        if outside:
            raise UsageError(f"val_idx {outside} are beyond the {examples} validation items "
                             f"(val/AudioDataset.n_examples in whole batches of val_batch_size {val_batch_size})")


def _architecture(model: DACConfig | VAEConfig) -> DACConfig | VAEConfig:
    """``model`` less its training-only settings: the weights of a run with quantizer dropout 0.5
    fine-tune as well with another (the original's state dict does not hold it either)."""
    return dataclasses.replace(model, quantizer_dropout=0.0) if isinstance(model, DACConfig) else model


def fine_tune_weights(config: TrainConfig, generator_weights: str | None,
                      discriminator_weights: str | None) -> tuple:
    """The params to start a fresh run from (``None`` for a network given no weights), read from
    ``--generator_weights`` (DAC: a released .pth or a dac-jax folder; DAC-VAE: the original's
    checkpoint.pt, a bare state dict or a dac-jax folder) and ``--discriminator_weights`` (the
    original's .pth). Their architectures must be the configured ones (UsageError otherwise)."""
    generator = discriminator = None
    if generator_weights:
        name = "VAE" if config.step.is_vae else "DAC"
        if config.step.is_vae:
            codec = load_vae(generator_weights, default_config=config.step.model)
        else:
            codec = load_model(generator_weights)
        if _architecture(codec.config) != _architecture(config.step.model):
            raise UsageError(f"{generator_weights}: its model ({codec.config}) is not the configured {name} "
                             f"({config.step.model}); set the {name}.* keys to match")
        generator = codec.variables["params"]
    if discriminator_weights:
        variables, d_config = load_discriminator(discriminator_weights)
        if d_config != config.step.discriminator:
            raise UsageError(f"{discriminator_weights}: its discriminator ({d_config}) is not the configured one "
                             f"({config.step.discriminator}); set the Discriminator.* keys to match")
        discriminator = variables["params"]
    return generator, discriminator


# ---------------------------------------------------------------------------------------------
# the keys: what each accepts, and the original's keys this port refuses


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_address(v: str) -> bool:
    host, _, port = v.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Rule(NamedTuple):
    """What a key accepts: ``ok(value)``, and ``what`` it must be, for the message."""

    what: str
    ok: Callable[[Any], bool]


def _list(what: str, item: Callable[[Any], bool], nonempty: bool = False) -> Rule:
    return Rule(("a non-empty list of " if nonempty else "a list of ") + what,
                lambda v: isinstance(v, list) and (bool(v) or not nonempty) and all(item(x) for x in v))


def _optional(rule: Rule) -> Rule:
    return Rule(f"{rule.what}, or null", lambda v: v is None or rule.ok(v))


def _only(value, why: str) -> Rule:
    return Rule(f"{json.dumps(value)} ({why})", lambda v: v == value and isinstance(v, bool) == isinstance(value, bool))


def _is_window(v) -> bool:
    try:
        get_window(v, 8)
    except UsageError:
        return False
    return True


def _is_groups(v) -> bool:
    def sources(s):
        return (isinstance(s, str) and s != "") or (
            isinstance(s, list) and bool(s) and all(isinstance(x, str) and x != "" for x in s))

    return isinstance(v, dict) and all(isinstance(k, str) and sources(s) for k, s in v.items())


POSITIVE_INT = Rule("a positive integer", lambda v: _is_int(v) and v >= 1)
COUNT = Rule("a non-negative integer", lambda v: _is_int(v) and v >= 0)
NUMBER = Rule("a finite number", _is_number)
POSITIVE = Rule("a positive number", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE = Rule("a non-negative number", lambda v: _is_number(v) and v >= 0)
FRACTION = Rule("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)
BOOL = Rule("true or false", lambda v: isinstance(v, bool))
TEXT = Rule("a non-empty string", lambda v: isinstance(v, str) and v != "")
RATES = _list("positive integers", POSITIVE_INT.ok, nonempty=True)
WINDOWS = _list("integers >= 4 (hop = window // 4)", lambda x: _is_int(x) and x >= 4, nonempty=True)
WINDOW_TYPE = _optional(Rule("a window name (hann, sqrt_hann, hamming, average, boxcar)", _is_window))
L1_ONLY = Rule('"L1" (the original\'s nn.L1Loss(); other loss functions are not implemented)',
               lambda v: v in ("L1", "L1Loss"))
UNREAD_WEIGHT = _only(1.0, "the original's trainer never reads it; lambdas weigh the losses")
NO_MATCH_STRIDE = _only(False, "the original's losses never pass it to their STFT, so true has no effect there")
TRANSFORM_LIST = _list(f"transform names ({', '.join(TRANSFORMS)})", lambda x: x in TRANSFORMS)

_BACKBONE = {"sample_rate": POSITIVE_INT, "encoder_dim": POSITIVE_INT, "encoder_rates": RATES,
             "decoder_dim": POSITIVE_INT, "decoder_rates": RATES}
_SPECTRAL = {"window_lengths": WINDOWS, "loss_fn": L1_ONLY, "clamp_eps": POSITIVE, "mag_weight": NON_NEGATIVE,
             "log_weight": NON_NEGATIVE, "pow": NUMBER, "weight": UNREAD_WEIGHT, "match_stride": NO_MATCH_STRIDE,
             "window_type": WINDOW_TYPE}

#: What each key accepts, by its unscoped name (``generator/AdamW.lr`` follows ``AdamW.lr``).
RULES: dict[str, Rule] = {
    **{f"DAC.{k}": r for k, r in _BACKBONE.items()},
    "DAC.latent_dim": _optional(POSITIVE_INT), "DAC.n_codebooks": POSITIVE_INT, "DAC.codebook_size": POSITIVE_INT,
    "DAC.codebook_dim": POSITIVE_INT, "DAC.quantizer_dropout": FRACTION,
    **{f"VAE.{k}": r for k, r in _BACKBONE.items()}, "VAE.latent_dim": POSITIVE_INT,
    "Discriminator.rates": _list("positive integers", POSITIVE_INT.ok),
    "Discriminator.periods": _list("positive integers", POSITIVE_INT.ok),
    "Discriminator.fft_sizes": _list("integers >= 4", lambda x: _is_int(x) and x >= 4),
    "Discriminator.sample_rate": POSITIVE_INT,
    "Discriminator.bands": _list("[low, high] pairs with 0 <= low < high <= 1", lambda b: (
        isinstance(b, list) and len(b) == 2 and all(_is_number(x) for x in b) and 0 <= b[0] < b[1] <= 1), nonempty=True),
    "Discriminator.width": Rule("a number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1),
    "AdamW.lr": NON_NEGATIVE, "AdamW.eps": POSITIVE, "AdamW.weight_decay": NON_NEGATIVE,
    "AdamW.betas": Rule("two numbers in [0, 1)", lambda v: (
        isinstance(v, list) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v))),
    "ExponentialLR.gamma": POSITIVE, "warmup.steps": COUNT,
    "grad_clip.generator": POSITIVE, "grad_clip.discriminator": POSITIVE,
    **{f"MelSpectrogramLoss.{k}": r for k, r in _SPECTRAL.items()},
    "MelSpectrogramLoss.n_mels": RATES,
    "MelSpectrogramLoss.mel_fmin": _list("non-negative numbers", NON_NEGATIVE.ok, nonempty=True),
    "MelSpectrogramLoss.mel_fmax": _list("positive numbers or nulls (null: sample_rate / 2)",
                                         lambda x: x is None or POSITIVE.ok(x), nonempty=True),
    **{f"MultiScaleSTFTLoss.{k}": r for k, r in _SPECTRAL.items()},
    "VolumeNorm.db": Rule("[const, LUFS] (other audiotools distributions are not supported) or a number", lambda v: (
        _is_number(v) or (isinstance(v, list) and len(v) == 2 and v[0] == "const" and _is_number(v[1])))),
    "RescaleAudio.val": POSITIVE,
    "ShiftPhase.shift": Rule("[uniform, low, high] with low <= high (other distributions are not supported)",
                             lambda v: isinstance(v, list) and len(v) == 3 and v[0] == "uniform"
                             and _is_number(v[1]) and _is_number(v[2]) and v[1] <= v[2]),
    "build_transform.augment_prob": FRACTION, "build_transform.preprocess": TRANSFORM_LIST,
    "build_transform.augment": TRANSFORM_LIST, "build_transform.postprocess": TRANSFORM_LIST,
    "build_dataset.folders": _optional(Rule("a mapping of group names to lists of folders (or tfds:NAME)",
                                            _is_groups)),
    "AudioDataset.duration": POSITIVE, "AudioDataset.n_examples": _optional(POSITIVE_INT),
    "AudioDataset.loudness_cutoff": _optional(NUMBER), "AudioDataset.num_tries": POSITIVE_INT,
    "AudioDataset.without_replacement": BOOL,
    "AudioLoader.shuffle": _only(True, "files in listing order are not implemented; each pass is shuffled"),
    "save_path": TEXT, "seed": COUNT, "num_iters": POSITIVE_INT, "save_iters": _list("positive integers", POSITIVE_INT.ok),
    "sample_freq": COUNT, "valid_freq": COUNT, "log_freq": COUNT, "batch_size": POSITIVE_INT,
    "val_batch_size": POSITIVE_INT, "val_idx": _list("non-negative integers", COUNT.ok), "keep_checkpoints": POSITIVE_INT,
    "devices": _optional(POSITIVE_INT),
    "lambdas": Rule("a mapping of loss names to numbers", lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and _is_number(x) for k, x in v.items())),
    "generator_weights": _optional(TEXT), "discriminator_weights": _optional(TEXT),
    "discriminator_warmup": COUNT, "distributed": BOOL,
    "coordinator_address": _optional(Rule("host:port", lambda v: isinstance(v, str) and _is_address(v))),
    "num_processes": _optional(POSITIVE_INT), "process_id": _optional(COUNT),
    "dry_run": BOOL, "time_limit": NON_NEGATIVE, "model": Rule("dac or vae", lambda v: v in ("dac", "vae")),
    "hold_base_steps": COUNT, "kl_final": NON_NEGATIVE,
    "winograd": Rule("auto, off, 2 or 4", lambda v: str(v) in ("auto", "off", "2", "4") and not isinstance(v, bool)),
    "amp": _only(False, "mixed precision is not implemented: the step runs in float32"),
}

#: Keys of the original's recipes and scripts/train.py that this port does not implement, and why.
REFUSED: dict[str, str] = {
    "device": "JAX runs on its default backend (choose it with JAX_PLATFORMS=cuda, tpu or cpu); "
              "--devices N limits how many devices",
    "num_workers": "tf.data sizes its parallel reading itself (AUTOTUNE)",
    "resume": "a run resumes by itself from save_path/checkpoints when it holds a checkpoint",
    "tag": "a run resumes from its latest checkpoint; there are no tags",
    "load_weights": "start from weights with --generator_weights / --discriminator_weights",
    "test/": "test/ keys configure the original's test set (scripts/save_test_set.py); the trainer has no test "
             "split",
}

# keys that configure one model only: refused when set for the other
_MODEL_KEYS = {"dac": ("DAC.",), "vae": ("VAE.", "hold_base_steps", "kl_final")}


def _unscoped(key: str) -> str:
    return key.split("/", 1)[1] if "/" in key else key


def _refusal(key: str) -> str | None:
    if key.startswith("test/"):
        return REFUSED["test/"]
    return REFUSED.get(_unscoped(key))


def _closest(key: str, known: list[str]) -> str | None:
    """The known key closest to ``key``: among those of the same function (``DAC.``) if there are
    any, else among all (if one is close enough)."""
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else None
    same = [k for k in known if prefix and k.startswith(prefix)]
    match = difflib.get_close_matches(key, same or known, n=1, cutoff=0.0 if same else 0.5)
    return match[0] if match else None


def _unknown(key: str, known: list[str], flag: bool) -> str:
    dash = "--" if flag else ""
    reason = _refusal(key)
    if reason:
        return f"{dash}{key}: not supported: {reason}"
    close = _closest(key, known)
    hint = f" (did you mean {dash}{close}?)" if close else " (see --help for the keys)"
    return f"unknown {'option' if flag else 'key'} {dash}{key}{hint}"


# ---------------------------------------------------------------------------------------------
# the command line and the config file


def _literal(kind: type) -> Callable[[str], Any]:
    """An argparse type for a list or dict flag: the text as YAML (so JSON too)."""
    name = {list: "a list such as [2, 4, 8, 8]", dict: 'a mapping such as {"speech": ["data/speech"]}'}[kind]

    def parse(text: str):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"expected {name} (YAML or JSON), got {text!r}")
        return value

    return parse


def _nullable(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str):
        return None if text.lower() in ("null", "none") else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _raise(message: str):
    raise UsageError(f"{message} (see --help)")


def _bound_defaults() -> dict[str, Any]:
    """Every bound key's default, by its unscoped name, from the bound functions' signatures."""
    defaults = {}
    for prefix, (func, _, without_prefix, *_) in argbind_registry.PARSE_FUNCS.items():
        for name, param in inspect.signature(func).parameters.items():
            if param.default is not inspect.Parameter.empty:
                defaults[name if without_prefix else f"{prefix}.{name}"] = param.default
    return defaults


def build_parser() -> argparse.ArgumentParser:
    """argbind's parser of every bound key, made strict: no abbreviations, errors as UsageError,
    list and dict flags parsed as YAML literals, ``null`` for keys whose default is None, and a
    ``bool = True`` key's default kept (argbind makes every bool a ``store_true`` flag, whose
    default would be False: such a key is set false in the YAML file)."""
    parser = argbind.build_parser()
    parser.prog = "train.py"
    parser.allow_abbrev = False
    parser.error = _raise
    defaults = _bound_defaults()
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            # argbind copies docstrings into help text, which argparse %-formats ("10 %" crashed --help)
            action.help = action.help.replace("%", "%%")
        if isinstance(action, argparse._StoreTrueAction):
            action.default = defaults.get(_unscoped(action.dest), False)
        elif action.type in (list, dict):
            action.type = _literal(action.type)
        elif action.type in (int, float, str) and action.default is None:
            action.type = _nullable(action.type)
    return parser


def _keys(parser: argparse.ArgumentParser) -> list[str]:
    return [a.dest for a in parser._actions if a.dest != "help" and not a.dest.startswith("args.")]


def load_config(path: str, _including: tuple = ()) -> dict:
    """A YAML config as argbind's ``load_args`` reads it (``$include`` files merged under it,
    ``$vars`` and the environment substituted for ``$NAME`` values), safely (``yaml.safe_load``);
    a missing or malformed file is one UsageError naming it."""
    if path in _including:
        raise UsageError(f"{path}: includes itself ($include {' -> '.join(_including + (path,))})")
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the config file: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{path}: not valid YAML{where}: {problem}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of keys to values, got a {type(data).__name__}")
    includes = data.pop("$include", [])
    if not (isinstance(includes, list) and all(isinstance(i, str) for i in includes)):
        raise UsageError(f"{path}: $include must be a list of config files, got {includes!r}")
    merged = {}
    for include in includes:
        merged.update(load_config(include, _including + (path,)))
    merged.update(data)
    variables = dict(os.environ)
    variables.update(merged.pop("$vars", None) or {})

    def substitute(v):
        return variables.get(v[1:], v) if isinstance(v, str) and v.startswith("$") else v

    return {str(k): [substitute(x) for x in v] if isinstance(v, list) else substitute(v) for k, v in merged.items()}


def parse_args(argv: list[str] | None = None) -> dict:
    """The arguments of ``argv`` (default ``sys.argv[1:]``) and of its ``--args.load`` file, by
    argbind's precedence, every given key checked (:data:`RULES`, :data:`REFUSED`): a dict for
    ``argbind.scope``. Raises UsageError (one line naming the flag or the file and key)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    known = _keys(parser)
    parsed, extra = parser.parse_known_args(argv)
    flags = [a for a in extra if a.startswith("-")]
    if flags:
        raise UsageError("; ".join(_unknown(f.lstrip("-").split("=", 1)[0], known, True) for f in flags))
    if extra:
        raise UsageError(f"unexpected argument {extra[0]!r} (every value follows its --key)")
    defaults = vars(parsed)
    load_path, save_path, debug = defaults.pop("args.load"), defaults.pop("args.save"), defaults.pop("args.debug")
    given = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    cli = {k: defaults[k] for k in known if k in given}
    loaded = load_config(load_path) if load_path else {}
    problems = [_unknown(k, known, False) for k in loaded if k not in defaults]
    if problems:
        raise UsageError(f"{load_path}: " + "; ".join(problems))

    # argbind's precedence: the command line, then the file, a scoped key before its unscoped one
    args, origin = {}, {}
    for key in known:
        for source, where, name in ((cli, "--", key), (cli, "--", _unscoped(key)), (loaded, f"{load_path}: ", key),
                                    (loaded, f"{load_path}: ", _unscoped(key))):
            if name in source:
                args[key], origin[key] = source[name], where + name
                break
        else:
            args[key] = defaults[key]
    for key in known:  # in the parser's order: an unscoped key is named before the scoped copies it sets
        if key in origin and not RULES[_unscoped(key)].ok(args[key]):
            rule = RULES[_unscoped(key)]
            raise UsageError(f"{origin[key]} must be {rule.what}, got {json.dumps(args[key], default=str)}")
    model = args["model"]
    for other, prefixes in _MODEL_KEYS.items():
        stray = [origin[k] for k in known if k in origin and _unscoped(k).startswith(prefixes)]
        if other != model and stray:
            raise UsageError(f"{stray[0]} configures model: {other}, but model is {model}")
    args.update({"args.load": load_path, "args.save": save_path, "args.debug": debug})
    return args


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and its config file, train; dac-jax's errors
    (a bad flag, key, value or file among them) become one line and exit code 1."""
    quiet_tensorflow_environment()  # before the loop imports tensorflow
    # force: importing orbax (dac_jax.train.checkpoint, above) already gave the root logger a default
    # WARNING handler (absl's log() calls logging.basicConfig() before absl's flags are parsed),
    # which would make this call a no-op and silence the trainer's INFO lines
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)

    def run() -> int:
        args = parse_args(argv)
        with argbind.scope(args):
            return train(args)

    return one_line_errors(run)


if __name__ == "__main__":
    from dac_jax.memory import keep_freed_memory

    keep_freed_memory()  # re-executes once with glibc keeping freed memory (dac_jax.memory)
    sys.exit(main())
