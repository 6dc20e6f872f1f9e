"""dac-jax: the Descript Audio Codec in JAX/Flax.

``import dac_jax`` needs neither torch nor tensorflow; reading PyTorch checkpoints imports torch
on demand.
"""

from dac_jax import tokens
from dac_jax.api import Codec, VAECodec, init_model, init_vae, load, load_model, load_vae
from dac_jax.codec.tokenize import TokenizeSummary, detokenize, tokenize
from dac_jax.codec.dacfile import DACFile
from dac_jax.codec.latentfile import LatentFile
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
from dac_jax.model.config import PRESETS, VAE_PRESETS, DACConfig, VAEConfig, get_config, get_vae_config
from dac_jax.model.dac import DAC, DACOutput, EncodeOutput
from dac_jax.model.vae import DACVAE, VAELatents, VAEOutput
from dac_jax.version import __version__


__all__ = [
    "__version__",
    "AudioError",
    "Codec",
    "DAC",
    "DACConfig",
    "DACFile",
    "DACOutput",
    "DACVAE",
    "DacJaxError",
    "DataError",
    "EncodeOutput",
    "EquivalenceError",
    "FileFormatError",
    "LatentFile",
    "MissingDependencyError",
    "PRESETS",
    "UsageError",
    "VAECodec",
    "VAEConfig",
    "VAELatents",
    "VAEOutput",
    "VAE_PRESETS",
    "TokenizeSummary",
    "WeightsError",
    "detokenize",
    "get_config",
    "get_vae_config",
    "init_model",
    "init_vae",
    "load",
    "load_model",
    "load_vae",
    "tokenize",
    "tokens",
]
