"""What a training run is: frozen configs, passed whole; argbind binds them only in
:mod:`dac_jax.cli.train`.

:class:`StepConfig` is everything the compiled training step depends on (hashable: it is a static
argument); :class:`TrainConfig` adds the run around it (steps, intervals, batch size, seed, where
data comes from). Defaults are DAC's final 44.1 kHz recipe (``conf/final/44khz.yml``).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Union

from dac_jax.errors import UsageError
from dac_jax.model.config import PRESETS, DACConfig, VAEConfig
from dac_jax.model.discriminator import DiscriminatorConfig
from dac_jax.train.augment import DAC_AUGMENT, AugmentConfig
from dac_jax.train.losses import DAC_MEL_LOSS, DAC_STFT_LOSS, KLSchedule, MelLossConfig, STFTLossConfig
from dac_jax.train.optim import DISCRIMINATOR, GENERATOR, OptimizerConfig


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The original's ``lambdas``. Terms of weight 0 are still computed and logged, as there."""

    mel: float = 15.0  # mel/loss
    feature: float = 2.0  # adv/feat_loss
    adversarial: float = 1.0  # adv/gen_loss
    commitment: float = 0.25  # vq/commitment_loss
    codebook: float = 1.0  # vq/codebook_loss
    stft: float = 0.0  # stft/loss
    waveform: float = 0.0  # waveform/loss

    # the original's lambdas keys, for configs written like its YAML files
    KEYS = {
        "mel/loss": "mel", "adv/feat_loss": "feature", "adv/gen_loss": "adversarial",
        "vq/commitment_loss": "commitment", "vq/codebook_loss": "codebook", "stft/loss": "stft",
        "waveform/loss": "waveform",
    }

    @classmethod
    def from_lambdas(cls, lambdas: Mapping[str, float]) -> "LossWeights":
        """From the original's ``lambdas`` dict; terms it leaves out weigh 0, as in the original."""
        unknown = sorted(set(lambdas) - set(cls.KEYS))
        if unknown:
            raise UsageError(f"unknown loss names {unknown}; known: {sorted(cls.KEYS)}")
        return cls(**{field: float(lambdas.get(key, 0.0)) for key, field in cls.KEYS.items()})


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Everything the compiled training step depends on.

    ``model`` chooses the bottleneck: a :class:`DACConfig` trains DAC (residual VQ, weighed by
    ``weights.commitment`` / ``weights.codebook``), a :class:`VAEConfig` trains DAC-VAE (Gaussian,
    its KL weighed by ``kl``); the rest of the step is shared.
    """

    model: Union[DACConfig, VAEConfig] = PRESETS["44khz"]
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    generator_optim: OptimizerConfig = GENERATOR
    discriminator_optim: OptimizerConfig = DISCRIMINATOR
    weights: LossWeights = LossWeights()
    mel: MelLossConfig = DAC_MEL_LOSS
    stft: STFTLossConfig = DAC_STFT_LOSS
    augment: AugmentConfig = DAC_AUGMENT
    kl: KLSchedule = KLSchedule()  # DAC-VAE only

    @property
    def is_vae(self) -> bool:
        return isinstance(self.model, VAEConfig)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run. ``batch_size`` is global (split across all devices of all hosts)."""

    step: StepConfig = StepConfig()
    train_groups: tuple[tuple[str, ...], ...] = ()  # sources drawn round-robin (folders or tfds:NAME)
    val_groups: tuple[tuple[str, ...], ...] = ()
    batch_size: int = 72
    duration: float = 0.38  # seconds per training excerpt
    val_batch_size: int = 8
    val_duration: float = 5.0
    val_examples: int = 250
    loudness_cutoff: float = -40.0  # salient excerpts: LUFS an excerpt must exceed
    num_tries: int = 8  # excerpts tried per item before taking the last one
    num_steps: int = 400_000
    seed: int = 0
    log_every: int = 50
    valid_every: int = 1000
    sample_every: int = 10_000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    save_steps: tuple[int, ...] = (10_000, 50_000, 100_000, 200_000)
    n_samples: int = 4  # validation items written as audio to TensorBoard
    devices: Optional[int] = None  # use the first N local devices; None: all
    time_limit: float = 0.0  # seconds of training after which the run stops as at its last step; 0: none

    def __post_init__(self):
        object.__setattr__(self, "train_groups", tuple(tuple(g) for g in self.train_groups))
        object.__setattr__(self, "val_groups", tuple(tuple(g) for g in self.val_groups))
        object.__setattr__(self, "save_steps", tuple(int(s) for s in self.save_steps))
