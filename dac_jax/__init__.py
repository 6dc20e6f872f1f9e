"""dac-jax: the Descript Audio Codec in JAX/Flax.

``import dac_jax`` needs neither torch nor tensorflow; reading PyTorch checkpoints imports torch
on demand.
"""

from dac_jax.api import Codec, init_model, load_model
from dac_jax.codec.dacfile import DACFile
from dac_jax.errors import (
    AudioError,
    DacJaxError,
    DataError,
    EquivalenceError,
    FileFormatError,
    MissingDependencyError,
    UsageError,
    WeightsError,
)
from dac_jax.model.config import PRESETS, DACConfig, get_config
from dac_jax.model.dac import DAC, DACOutput, EncodeOutput

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "Codec",
    "DAC",
    "DACConfig",
    "DACFile",
    "DACOutput",
    "DacJaxError",
    "DataError",
    "EncodeOutput",
    "EquivalenceError",
    "FileFormatError",
    "MissingDependencyError",
    "PRESETS",
    "UsageError",
    "WeightsError",
    "get_config",
    "init_model",
    "load_model",
]
