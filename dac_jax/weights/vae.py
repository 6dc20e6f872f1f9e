"""DAC-VAE generator weights (github primepake/dac_vae) into our :class:`~dac_jax.model.vae.DACVAE`.

The original's training writes ``checkpoint.pt``::

    torch.save({"generator": state_dict, "discriminator": ..., "optimizer_g": ..., "optimizer_d": ...,
                "scheduler_g": ..., "scheduler_d": ..., "tracker": ..., "step": ...,
                "config": the training YAML, "metadata": {...}}, "checkpoint.pt")

and its inference loads ``ckpt["generator"]``, or the file itself as a bare state dict. The model's
constructor kwargs are ``config["vae"]``. Here: the ``"generator"`` entry or a bare state dict; the
config given (a preset name or a :class:`VAEConfig`), else ``config["vae"]`` from the file.

As for DAC (:mod:`dac_jax.weights.torch_format`), the key map is derived from the Flax module tree
(``("encoder", "block_0", "0", "weight_v")`` is ``encoder.block.0.0.weight_v``), parameters keep
PyTorch's shapes, both weight-norm key styles are read, and every missing, extra or mis-shaped key
is reported at once. torch is imported only by the functions that read files.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dac_jax.errors import WeightsError
from dac_jax.fileio import atomic_path
from dac_jax.model.config import VAE_PRESETS, VAEConfig, VAEConfigLike, get_vae_config
from dac_jax.model.vae import DACVAE
from dac_jax.weights.torch_format import (
    ParameterMap,
    check_keys,
    import_torch,
    load_torch_file,
    parameter_map,
    tensors_to_numpy,
    to_variables,
    variables_to_state_dict,
)

__all__ = [
    "VAECheckpoint",
    "vae_parameters",
    "check_vae_state_dict",
    "vae_state_dict_to_variables",
    "read_vae_checkpoint",
    "write_vae_checkpoint",
]


@functools.lru_cache(maxsize=16)
def vae_parameters(config: VAEConfig) -> ParameterMap:
    """``{torch_key: (flax_path, shape)}`` of every parameter of a DAC-VAE of ``config``, derived
    from the module tree (traced abstractly: nothing is allocated)."""
    audio = jax.ShapeDtypeStruct((1, 1, config.hop_length), jnp.float32)
    return parameter_map(DACVAE(config), audio, deterministic=True)


def check_vae_state_dict(state_dict: Mapping[str, Any], config: VAEConfig, source: str = "state dict") -> ParameterMap:
    """Raise :class:`WeightsError` naming every missing, extra or mis-shaped key of ``state_dict``
    (either weight-norm key style) for a DAC-VAE of ``config``."""
    return check_keys(state_dict, vae_parameters(config), f"the DAC-VAE {config}", source)


def vae_state_dict_to_variables(state_dict: Mapping[str, Any], config: VAEConfig, source: str = "state dict") -> dict:
    """The original generator's state dict (numpy arrays or tensors) as our ``{"params": ...}``
    (float32 numpy), strictly: see :func:`check_vae_state_dict`."""
    return to_variables(state_dict, check_vae_state_dict(state_dict, config, source))


# --------------------------------------------------------------------------------------------
# Files (need torch)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class VAECheckpoint:
    """What :func:`read_vae_checkpoint` found: the generator's state dict (float32 numpy), the
    config, the ``config["vae"]`` keys it ignored (initialisation only), and the file."""

    state_dict: dict[str, np.ndarray]
    config: VAEConfig
    ignored_kwargs: list[str]
    path: Path


_UNSAFE_HINT = (
    "  Only tensors and plain data are unpickled (torch.load(weights_only=True)). A training "
    "checkpoint.pt can hold other objects (optimizer, scheduler or tracker state); where the file "
    "is trusted, keep what inference needs: ckpt = torch.load(path, weights_only=False); "
    'torch.save({"generator": ckpt["generator"], "config": ckpt["config"]}, "generator.pt")'
)


def read_vae_checkpoint(
    path: str | Path, config: Optional[VAEConfigLike] = None, default_config: Optional[VAEConfigLike] = None
) -> VAECheckpoint:
    """Read the original's ``checkpoint.pt`` (its ``"generator"`` entry) or a bare state dict.

    ``config`` (a preset name such as ``"vae24khz-x2"``, or a :class:`VAEConfig`) is needed for a
    bare state dict; without it the config comes from the file's ``config["vae"]``. The state dict
    is not checked against the config here (:func:`vae_state_dict_to_variables` does that).
    ``default_config`` is used only when the file has no ``config["vae"]`` (a bare state dict).
    """
    path = Path(path)
    data = load_torch_file(path, _UNSAFE_HINT)
    if not isinstance(data, Mapping):
        raise WeightsError(f"{path}: expected a checkpoint dict or a state dict, got {type(data).__name__}")
    is_checkpoint = isinstance(data.get("generator"), Mapping)
    if not is_checkpoint and isinstance(data.get("state_dict"), Mapping):
        raise WeightsError(
            f"{path}: a DAC model file ('state_dict' and 'metadata'), not DAC-VAE's; use dac_jax.load_model"
        )
    state_dict = data["generator"] if is_checkpoint else data
    ignored: list[str] = []
    if config is not None:
        config = get_vae_config(config)
    else:
        training_config = data.get("config") if is_checkpoint else None
        kwargs = training_config.get("vae") if isinstance(training_config, Mapping) else None
        if not isinstance(kwargs, Mapping) and default_config is not None:
            return VAECheckpoint(tensors_to_numpy(state_dict, path), get_vae_config(default_config), [], path)
        if not isinstance(kwargs, Mapping):
            raise WeightsError(
                f"{path}: no config['vae'] to build the model from; pass a preset "
                f"({', '.join(VAE_PRESETS)}) or a VAEConfig"
            )
        try:
            config, ignored = VAEConfig.from_kwargs(kwargs)
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{path}: config['vae'] does not describe a DAC-VAE this port builds: {e}") from None
    return VAECheckpoint(tensors_to_numpy(state_dict, path), config, ignored, path)


def write_vae_checkpoint(path: str | Path, variables: Mapping[str, Any], config: VAEConfig) -> Path:
    """Write ``checkpoint.pt`` as the original's inference reads it: ``{"generator": state_dict,
    "config": {"vae": kwargs}}`` (weight norm as ``weight_g`` / ``weight_v``), atomically."""

    torch = import_torch()
    state_dict = {k: torch.from_numpy(np.array(v)) for k, v in variables_to_state_dict(variables).items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"generator": state_dict, "config": {"vae": config.to_kwargs()}, "metadata": {"exported_by": "dac-jax"}}, tmp)
    return path
