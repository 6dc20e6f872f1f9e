"""What a training run is: frozen configs, passed whole; argbind binds them only in
:mod:`dac_jax.cli.train`.

:class:`StepConfig` is everything the compiled training step depends on (hashable: it is a static
argument); :class:`TrainConfig` adds the run around it (steps, intervals, batch size, seed, where
data comes from). Defaults are DAC's final 44.1 kHz recipe (``conf/final/44khz.yml``).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Mapping, Optional, Union

from dac_jax.errors import UsageError
from dac_jax.model.config import PRESETS, DACConfig, VAEConfig
from dac_jax.model.discriminator import DiscriminatorConfig
from dac_jax.nn.winograd import POINTS as WINOGRAD_POINTS
from dac_jax.train.augment import DAC_AUGMENT, AugmentConfig
from dac_jax.train.losses import (
    DAC_JAX_PERIODICITY_LOSS, DAC_MEL_LOSS, DAC_STFT_LOSS, KLSchedule, MelLossConfig, PeriodicityLossConfig,
    STFTLossConfig,
)
from dac_jax.train.optim import DISCRIMINATOR, GENERATOR, OptimizerConfig


def _require(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")


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
    # dac-jax's own, not the original's: computed only when weighed (losses.periodicity_loss)
    periodicity: float = 0.0  # periodicity/loss

    # the original's lambdas keys, for configs written like its YAML files
    KEYS = {
        "mel/loss": "mel", "adv/feat_loss": "feature", "adv/gen_loss": "adversarial",
        "vq/commitment_loss": "commitment", "vq/codebook_loss": "codebook", "stft/loss": "stft",
        "waveform/loss": "waveform", "periodicity/loss": "periodicity",
    }

    @classmethod
    def from_lambdas(cls, lambdas: Mapping[str, float]) -> "LossWeights":
        """From the original's ``lambdas`` dict; terms it leaves out weigh 0, as in the original."""
        unknown = sorted(set(lambdas) - set(cls.KEYS))
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), cls.KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"unknown loss names {unknown}{hint}; known: {sorted(cls.KEYS)}")
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
    periodicity: PeriodicityLossConfig = DAC_JAX_PERIODICITY_LOSS
    augment: AugmentConfig = DAC_AUGMENT
    kl: KLSchedule = KLSchedule()  # DAC-VAE only
    # dac-jax's: the generator's kernel-7 convolutions with at least winograd_min_channels channels
    # run as Winograd F(winograd, 7), forward and backward (dac_jax.nn.winograd): the same sums in
    # another order, ~10 % off a 16 kHz step on a CPU (benchmarks/RESULTS.md); None: direct
    winograd: Optional[int] = None
    winograd_min_channels: int = 128

    def __post_init__(self):
        if self.winograd is not None and self.winograd not in WINOGRAD_POINTS:
            raise UsageError(f"winograd must be one of {sorted(WINOGRAD_POINTS)} or None, got {self.winograd!r}")
        _require("winograd_min_channels", self.winograd_min_channels, 1)

    @property
    def is_vae(self) -> bool:
        return isinstance(self.model, VAEConfig)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run. ``batch_size`` is global (split across all devices of all hosts).

    ``train_examples`` is the original's ``train/AudioDataset.n_examples``: each group's items per
    pass, so the stream repeats after ``len(train_groups) * train_examples`` items, as the
    original's does (its sampler starts again at item 0). None: an endless stream that never repeats.
    ``sample_items`` are the validation items written as audio (the original's ``val_idx``).
    """

    step: StepConfig = StepConfig()
    train_groups: tuple[tuple[str, ...], ...] = ()  # sources drawn round-robin (folders or tfds:NAME)
    val_groups: tuple[tuple[str, ...], ...] = ()
    batch_size: int = 72
    duration: float = 0.38  # seconds per training excerpt
    val_batch_size: int = 8
    val_duration: float = 5.0
    val_examples: int = 250
    train_examples: Optional[int] = None  # items per group per pass; None: endless
    loudness_cutoff: Optional[float] = -40.0  # salient excerpts: LUFS an excerpt must exceed; None: first draw
    num_tries: int = 8  # excerpts tried per item before taking the last one
    without_replacement: bool = True  # each file once per pass through its group; False: uniform draws
    num_steps: int = 400_000
    seed: int = 0
    log_every: int = 50
    valid_every: int = 1000
    sample_every: int = 10_000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    save_steps: tuple[int, ...] = (10_000, 50_000, 100_000, 200_000)
    sample_items: tuple[int, ...] = (0, 1, 2, 3)  # validation items written as audio to TensorBoard
    devices: Optional[int] = None  # use the first N local devices; None: all
    time_limit: float = 0.0  # seconds of training after which the run stops as at its last step; 0: none
    # steps at the start during which only the discriminator learns (a dac-jax option): a fresh
    # discriminator beside trained generator weights first learns to tell them apart, so that its
    # first, uninformed gradients do not pull the generator off what it has learned
    discriminator_warmup: int = 0

    def __post_init__(self):
        object.__setattr__(self, "train_groups", tuple(tuple(g) for g in self.train_groups))
        object.__setattr__(self, "val_groups", tuple(tuple(g) for g in self.val_groups))
        object.__setattr__(self, "save_steps", tuple(int(s) for s in self.save_steps))
        object.__setattr__(self, "sample_items", tuple(int(i) for i in self.sample_items))
        for name in ("batch_size", "val_batch_size", "val_examples", "num_tries", "num_steps", "keep_checkpoints"):
            _require(name, getattr(self, name), 1)
        for name in ("seed", "log_every", "valid_every", "sample_every", "checkpoint_every", "discriminator_warmup"):
            _require(name, getattr(self, name), 0)
        for name in ("train_examples", "devices"):
            if getattr(self, name) is not None:
                _require(name, getattr(self, name), 1)
        if not (self.duration > 0 and self.val_duration > 0 and self.time_limit >= 0):
            raise UsageError(f"duration and val_duration must be positive and time_limit >= 0, got {self.duration}, "
                             f"{self.val_duration}, {self.time_limit}")
        if self.sample_every and any(not 0 <= i < self.num_val_examples for i in self.sample_items):
            raise UsageError(f"sample_items {list(self.sample_items)} must index the {self.num_val_examples} "
                             "validation items")

    @property
    def n_samples(self) -> int:
        """Validation items written as audio."""
        return len(self.sample_items)

    @property
    def num_val_examples(self) -> int:
        """The validation set's size: ``val_examples`` in whole batches (one compiled shape), at least one."""
        size = self.val_batch_size
        return max(size, self.val_examples // size * size)

    @property
    def stream_period(self) -> Optional[int]:
        """Items after which the training stream repeats, ``len(train_groups) * train_examples``;
        None when it does not repeat within the run's ``num_steps``."""
        if self.train_examples is None or not self.train_groups:
            return None
        items = len(self.train_groups) * self.train_examples
        return items if items < self.num_steps * self.batch_size else None
