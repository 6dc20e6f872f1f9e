"""A tiny training configuration and data for the trainer's tests (fast to compile and run on CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from dac_jax.audio import synth
import dataclasses

from dac_jax.model.config import PRESETS, VAE_PRESETS
from dac_jax.model.discriminator import DiscriminatorConfig
from dac_jax.train.config import StepConfig
from dac_jax.train.losses import MelLossConfig, STFTLossConfig
from dac_jax.train.optim import OptimizerConfig

RATE = 16000
SAMPLES = 3200  # 0.2 s excerpts

STEP = StepConfig(
    model=PRESETS["tiny"],
    discriminator=DiscriminatorConfig(periods=(2, 3), fft_sizes=(256,), sample_rate=RATE, width=0.25),
    mel=MelLossConfig(n_mels=(20, 40), window_lengths=(128, 512), mag_weight=0.0, pow=1.0,
                      mel_fmin=(0.0, 0.0), mel_fmax=(None, None)),
    stft=STFTLossConfig(window_lengths=(512,)),
)


#: :data:`STEP` with the tiny DAC-VAE (at this module's 16 kHz) in place of the tiny DAC
VAE_STEP = dataclasses.replace(STEP, model=dataclasses.replace(VAE_PRESETS["vae-tiny"], sample_rate=RATE))


def fast(config: StepConfig = STEP, lr: float = 1e-3) -> StepConfig:
    """The same with a learning rate that moves a tiny model visibly in a few steps."""
    return StepConfig(
        model=config.model, discriminator=config.discriminator, mel=config.mel, stft=config.stft, kl=config.kl,
        generator_optim=OptimizerConfig(lr=lr, grad_clip=1e3), discriminator_optim=OptimizerConfig(lr=lr, grad_clip=10.0),
    )


def batch(n: int = 4, seed: int = 0) -> np.ndarray:
    """``[n, 1, SAMPLES]``: speech-like voices, a tone and noise."""
    rows = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            x = synth.speech_like(SAMPLES / RATE + 0.01, RATE, seed=seed + i)
        elif kind == 1:
            x = synth.sine_sweep(SAMPLES / RATE + 0.01, RATE, f0=100.0 * (i + 1))
        else:
            x = synth.noise(SAMPLES / RATE + 0.01, RATE, seed=seed + i, level=0.05)
        rows.append(x[:SAMPLES])
    return np.stack(rows)[:, None].astype(np.float32)


def write_corpus(root: Path, files_per_group: int = 3, seconds: float = 1.0) -> tuple[tuple[str, ...], ...]:
    """Two groups (voices; tones) of WAV files under ``root``; returns the groups."""
    groups = []
    for g, kind in enumerate(("voices", "tones")):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files_per_group):
            if kind == "voices":
                x = synth.speech_like(seconds, RATE, seed=10 * g + i)
            else:
                x = synth.sine_sweep(seconds, RATE, f0=80.0 * (i + 1), level=0.3)
            sf.write(folder / f"{kind}_{i}.wav", x, RATE, subtype="PCM_16")
        groups.append((str(folder),))
    return tuple(groups)


def write_config(path: Path, groups, **overrides) -> Path:
    """A train.py YAML for :data:`STEP` (at :func:`fast`'s learning rate) on ``groups``, with
    ``overrides`` (argbind keys) on top."""
    import yaml

    m = STEP.model
    config = {
        "DAC.sample_rate": RATE, "DAC.encoder_dim": m.encoder_dim, "DAC.encoder_rates": list(m.encoder_rates),
        "DAC.latent_dim": m.latent_dim, "DAC.decoder_dim": m.decoder_dim, "DAC.decoder_rates": list(m.decoder_rates),
        "DAC.n_codebooks": m.n_codebooks, "DAC.codebook_size": m.codebook_size, "DAC.codebook_dim": m.codebook_dim,
        "DAC.quantizer_dropout": m.quantizer_dropout,
        "Discriminator.sample_rate": RATE, "Discriminator.periods": list(STEP.discriminator.periods),
        "Discriminator.fft_sizes": list(STEP.discriminator.fft_sizes), "Discriminator.rates": [],
        "Discriminator.width": STEP.discriminator.width,
        "AdamW.lr": 1e-3, "AdamW.betas": [0.8, 0.99], "ExponentialLR.gamma": 0.999996,
        "MelSpectrogramLoss.n_mels": list(STEP.mel.n_mels), "MelSpectrogramLoss.window_lengths": list(STEP.mel.window_lengths),
        "MelSpectrogramLoss.mel_fmin": [0, 0], "MelSpectrogramLoss.mel_fmax": [None, None],
        "MelSpectrogramLoss.pow": 1.0, "MelSpectrogramLoss.mag_weight": 0.0,
        "MultiScaleSTFTLoss.window_lengths": list(STEP.stft.window_lengths),
        "VolumeNorm.db": ["const", -16], "build_transform.postprocess": ["VolumeNorm", "RescaleAudio", "ShiftPhase"],
        "lambdas": {"mel/loss": 15.0, "adv/feat_loss": 2.0, "adv/gen_loss": 1.0, "vq/commitment_loss": 0.25,
                    "vq/codebook_loss": 1.0},
        "batch_size": 4, "val_batch_size": 2, "num_iters": 6, "valid_freq": 2, "sample_freq": 3, "log_freq": 1,
        "save_iters": [], "val_idx": [0, 1], "keep_checkpoints": 5,
        "train/AudioDataset.duration": SAMPLES / RATE, "val/AudioDataset.duration": SAMPLES / RATE,
        "val/AudioDataset.n_examples": 2,
        "train/build_dataset.folders": {f"group{i}": list(g) for i, g in enumerate(groups)},
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path
