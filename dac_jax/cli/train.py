"""The trainer's command line: ``python train.py --args.load configs/44khz.yml --save_path runs/44khz``
(or ``python -m dac_jax.cli.train ...``).

argbind binds here and nowhere else (the library's configs stay plain frozen dataclasses). The
bound names and their keys are the original DAC's
(``scripts/train.py`` + ``conf/final/44khz.yml``): ``DAC.*``, ``Discriminator.*``, ``AdamW.*`` and
``ExponentialLR.*`` (scopes ``generator/`` and ``discriminator/``), ``MelSpectrogramLoss.*``,
``MultiScaleSTFTLoss.*``, ``VolumeNorm.db``, ``build_transform.postprocess``,
``train/build_dataset.folders`` / ``val/build_dataset.folders``, ``train/AudioDataset.duration``,
``lambdas``, ``batch_size``, ``num_iters``, ``valid_freq``, ... so the original's config files
load with few changes. Additions: ``devices``, ``log_freq``, ``keep_checkpoints``,
``generator_weights`` / ``discriminator_weights`` (fine-tuning), ``distributed``, ``dry_run``.

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
import json
import logging
import math
import os
import sys

import argbind
import jax

from dac_jax.api import load_model, load_vae
from dac_jax.cli.common import one_line_errors
from dac_jax.errors import UsageError
from dac_jax.model.config import DACConfig, VAEConfig
from dac_jax.model.discriminator import BANDS, DiscriminatorConfig
from dac_jax.train.augment import AugmentConfig
from dac_jax.train.checkpoint import to_json
from dac_jax.train.config import LossWeights, StepConfig, TrainConfig
from dac_jax.train.losses import KLSchedule, MelLossConfig, STFTLossConfig
from dac_jax.train.optim import OptimizerConfig
from dac_jax.weights.discriminator import load_discriminator


@argbind.bind()
def DAC(
    sample_rate: int = 44100, encoder_dim: int = 64, encoder_rates: list = [2, 4, 8, 8], latent_dim: int = None,
    decoder_dim: int = 1536, decoder_rates: list = [8, 8, 4, 2], n_codebooks: int = 9, codebook_size: int = 1024,
    codebook_dim: int = 8, quantizer_dropout: float = 0.0,
) -> DACConfig:
    return DACConfig(encoder_dim, encoder_rates, latent_dim, decoder_dim, decoder_rates, n_codebooks,
                     codebook_size, codebook_dim, float(quantizer_dropout), sample_rate)


@argbind.bind()
def VAE(
    sample_rate: int = 44100, encoder_dim: int = 64, encoder_rates: list = [2, 4, 8, 8], latent_dim: int = 64,
    decoder_dim: int = 1536, decoder_rates: list = [8, 8, 4, 2],
) -> VAEConfig:
    """The original DACVAE's architectural arguments (and defaults) that this port builds."""
    return VAEConfig(encoder_dim, encoder_rates, latent_dim, decoder_dim, decoder_rates, sample_rate)


@argbind.bind()
def Discriminator(
    rates: list = [], periods: list = [2, 3, 5, 7, 11], fft_sizes: list = [2048, 1024, 512],
    sample_rate: int = 44100, bands: list = [list(b) for b in BANDS], width: float = 1.0,
) -> DiscriminatorConfig:
    """The original's arguments, plus ``width`` (dac-jax: hidden channels scaled, for small CPU runs)."""
    return DiscriminatorConfig(rates=rates, periods=periods, fft_sizes=fft_sizes, sample_rate=sample_rate,
                               bands=[tuple(b) for b in bands], width=width)


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


@argbind.bind()
def MelSpectrogramLoss(
    n_mels: list = [150, 80], window_lengths: list = [2048, 512], loss_fn: str = "L1", clamp_eps: float = 1e-5,
    mag_weight: float = 1.0, log_weight: float = 1.0, pow: float = 2.0, weight: float = 1.0,
    match_stride: bool = False, mel_fmin: list = [0.0, 0.0], mel_fmax: list = [None, None], window_type: str = None,
) -> MelLossConfig:
    return MelLossConfig(n_mels=n_mels, window_lengths=window_lengths, clamp_eps=clamp_eps, mag_weight=mag_weight,
                         log_weight=log_weight, pow=pow, mel_fmin=mel_fmin, mel_fmax=mel_fmax)


@argbind.bind()
def MultiScaleSTFTLoss(
    window_lengths: list = [2048, 512], loss_fn: str = "L1", clamp_eps: float = 1e-5, mag_weight: float = 1.0,
    log_weight: float = 1.0, pow: float = 2.0, weight: float = 1.0, match_stride: bool = False,
    window_type: str = None,
) -> STFTLossConfig:
    return STFTLossConfig(window_lengths=window_lengths, clamp_eps=clamp_eps, mag_weight=mag_weight,
                          log_weight=log_weight, pow=pow)


@argbind.bind()
def VolumeNorm(db: list = ["const", -24]) -> float:
    return _const(db, "VolumeNorm.db")


@argbind.bind()
def RescaleAudio(val: float = 1.0) -> float:
    return float(val)


@argbind.bind()
def ShiftPhase(shift: list = ["uniform", -math.pi, math.pi]) -> tuple[float, float]:
    if not (isinstance(shift, (list, tuple)) and len(shift) == 3 and shift[0] == "uniform"):
        raise UsageError(f"ShiftPhase.shift must be [uniform, low, high], got {shift!r}")
    return float(shift[1]), float(shift[2])


def _const(dist, name: str) -> float:
    if isinstance(dist, (int, float)):
        return float(dist)
    if isinstance(dist, (list, tuple)) and len(dist) == 2 and dist[0] == "const":
        return float(dist[1])
    raise UsageError(f"{name} must be [const, value] (other audiotools distributions are not supported), got {dist!r}")


TRANSFORMS = ("Identity", "VolumeNorm", "RescaleAudio", "ShiftPhase")


@argbind.bind("train", "val")
def build_transform(augment_prob: float = 1.0, preprocess: list = ["Identity"], augment: list = ["Identity"],
                    postprocess: list = ["Identity"]) -> AugmentConfig:
    """The original's transform lists; the on-device set is VolumeNorm, RescaleAudio, ShiftPhase."""
    used = list(preprocess) + (list(augment) if augment_prob > 0 else []) + list(postprocess)
    unknown = sorted(set(used) - set(TRANSFORMS))
    if unknown:
        raise UsageError(f"transforms {unknown} are not supported on the device; supported: {', '.join(TRANSFORMS)}")
    kwargs = {"volume_norm": "VolumeNorm" in used, "rescale": "RescaleAudio" in used, "shift_phase": "ShiftPhase" in used}
    if kwargs["volume_norm"]:
        kwargs["target_db"] = VolumeNorm()
    if kwargs["rescale"]:
        kwargs["max_value"] = RescaleAudio()
    if kwargs["shift_phase"]:
        kwargs["phase_range"] = ShiftPhase()
    return AugmentConfig(**kwargs)


@argbind.bind("train", "val")
def build_dataset(folders: dict = None) -> tuple[tuple[str, ...], ...]:
    """Groups of sources (folders, or ``tfds:NAME[:SPLIT]``), drawn round-robin."""
    if not folders:
        return ()
    return tuple(tuple(str(s) for s in (v if isinstance(v, (list, tuple)) else [v])) for v in folders.values())


@argbind.bind("train", "val")
def AudioDataset(duration: float = 0.5, n_examples: int = 1000, loudness_cutoff: float = -40.0, num_tries: int = 8):
    return dict(duration=duration, n_examples=n_examples, loudness_cutoff=loudness_cutoff, num_tries=num_tries)


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
    distributed: bool = False,
    dry_run: bool = False,
    time_limit: float = 0.0,
    model: str = "dac",
    hold_base_steps: int = 200000,
    kl_final: float = 0.1,
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
        discriminator_weights: fine-tune from the original's discriminator weights (.pth).
        distributed: call jax.distributed.initialize() first (multi-host).
        time_limit: stop after this many minutes of training (0: no limit), validating and
            checkpointing at the step where it stops, as at the last step.
        dry_run: print the resolved configuration as JSON and exit.
    """
    if distributed:
        jax.distributed.initialize()
    step, data = resolve_step_and_data(args, model, lambdas, num_iters, hold_base_steps, kl_final)
    config = TrainConfig(
        step=step, **data, batch_size=batch_size, val_batch_size=val_batch_size, num_steps=num_iters, seed=seed,
        log_every=log_freq, valid_every=valid_freq, sample_every=sample_freq, checkpoint_every=valid_freq,
        keep_checkpoints=keep_checkpoints, save_steps=tuple(save_iters), n_samples=len(val_idx), devices=devices,
        time_limit=60.0 * time_limit,
    )
    if dry_run:
        print(json.dumps(to_json(config), indent=1))
        return 0
    generator, discriminator = fine_tune_weights(config, generator_weights, discriminator_weights)
    # deferred: the loop imports the training stack (tensorflow through tf.data and clu, orbax),
    # seconds that --help and --dry_run do not need
    from dac_jax.train.loop import train_and_evaluate

    train_and_evaluate(config, save_path, generator=generator, discriminator=discriminator)
    return 0


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
    """The transforms, and the data fields of :class:`TrainConfig`."""
    with argbind.scope(args, "train"):
        augment = build_transform()
        train_groups = build_dataset()
        train_data = AudioDataset()
    with argbind.scope(args, "val"):
        val_groups = build_dataset()
        val_data = AudioDataset()
    if not train_groups:
        raise UsageError("no training data: set train/build_dataset.folders (groups of folders or tfds:NAME)")
    return augment, dict(
        train_groups=train_groups, val_groups=val_groups, duration=train_data["duration"],
        val_duration=val_data["duration"], val_examples=val_data["n_examples"],
        loudness_cutoff=train_data["loudness_cutoff"], num_tries=train_data["num_tries"],
    )


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
        if codec.config != config.step.model:
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


def main() -> int:
    """Parse ``sys.argv`` (argbind), train; dac-jax's errors become one line and exit code 1."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the loop imports tensorflow
    # force: importing orbax (dac_jax.train.checkpoint, above) already gave the root logger a default
    # WARNING handler (absl's log() calls logging.basicConfig() before absl's flags are parsed),
    # which would make this call a no-op and silence the trainer's INFO lines
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    args = argbind.parse_args()

    def run() -> int:
        with argbind.scope(args):
            return train(args)

    return one_line_errors(run)


if __name__ == "__main__":
    sys.exit(main())
