"""dac-jax's own checkpoint format: a folder with ``config.json`` and ``params.msgpack``.

No pickle, no torch: ``config.json`` holds a format tag, the model (``"DAC"``, ``"DAC-VAE"``, or
``"discriminator"``: a training run's discriminator, for fine-tuning) and its config;
``params.msgpack`` is Flax's msgpack serialisation of the parameter tree (PyTorch layouts, float32).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from flax import serialization, traverse_util

from dac_jax.errors import WeightsError
from dac_jax.fileio import atomic_path, is_temp, remove_stale_temps
from dac_jax.model.config import DACConfig, VAEConfig
from dac_jax.model.discriminator import DiscriminatorConfig
from dac_jax.weights.torch_format import state_dict_to_variables, variables_to_state_dict
from dac_jax.weights.vae import vae_state_dict_to_variables

MODELS = {"DAC": DACConfig, "DAC-VAE": VAEConfig}
DISCRIMINATOR = "discriminator"  # the model name of a discriminator's folder (not a codec)

FORMAT = "dac-jax"
VERSION = 1
CONFIG_FILE = "config.json"
PARAMS_FILE = "params.msgpack"


def replaceable(path: str | Path) -> bool:
    """Whether :func:`save_native` may replace the folder ``path``: it holds nothing but a dac-jax
    checkpoint's two files (a save killed before its ``config.json`` leaves only ``params.msgpack``).
    Anything else in it is the user's."""
    try:
        names = {entry.name for entry in os.scandir(path) if not is_temp(entry.name)}
    except OSError:
        return False
    return names <= {CONFIG_FILE, PARAMS_FILE} and (CONFIG_FILE not in names or model_of(path) is not None)


def model_of(path: str | Path) -> str | None:
    """``"DAC"`` or ``"DAC-VAE"`` for a dac-jax checkpoint folder, ``None`` for anything else."""
    try:
        header = json.loads((Path(path) / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return header.get("model", "DAC") if isinstance(header, dict) and header.get("format") == FORMAT else None


def save_native(
    path: str | Path, variables: Mapping[str, Any], config: DACConfig | VAEConfig | DiscriminatorConfig,
    metadata: dict | None = None,
) -> Path:
    """Write ``variables`` and ``config`` to the folder ``path``.

    A new or empty folder is filled; an existing dac-jax checkpoint is replaced by an atomic swap
    (a crash leaves the old or the new one whole); any other existing folder is refused
    (:class:`UsageError`), since its files are not ours to delete."""
    path = Path(path)
    params = traverse_util.unflatten_dict(
        {k: np.asarray(v, np.float32) for k, v in traverse_util.flatten_dict(variables["params"]).items()}
    )
    if isinstance(config, DiscriminatorConfig):  # its own fields: the original's kwargs know no width
        model, fields = DISCRIMINATOR, dataclasses.asdict(config)
    else:
        model, fields = ("DAC-VAE" if isinstance(config, VAEConfig) else "DAC"), config.to_kwargs()
    header = {"format": FORMAT, "version": VERSION, "model": model, "config": fields}
    if metadata:
        header["metadata"] = metadata
    config_text, params_bytes = json.dumps(header, indent=2) + "\n", serialization.msgpack_serialize(params)
    path = Path(os.path.abspath(path))
    remove_stale_temps(path.parent)
    if path.is_dir() and replaceable(path) and not (path / CONFIG_FILE).exists():
        # an empty folder (perhaps the shell's current one) is written in place, keeping its inode:
        # params first, config.json last, so that the checkpoint exists only once it is whole
        remove_stale_temps(path)
        for name, data in ((PARAMS_FILE, params_bytes), (CONFIG_FILE, config_text.encode())):
            with atomic_path(path / name) as tmp:
                tmp.write_bytes(data)
        return path
    with atomic_path(path, replaceable=replaceable) as tmp:
        tmp.mkdir()
        (tmp / PARAMS_FILE).write_bytes(params_bytes)
        (tmp / CONFIG_FILE).write_text(config_text)
    return path


def _read_header(path: Path) -> dict:
    try:
        header = json.loads((path / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise WeightsError(f"{path}: no {CONFIG_FILE}; not a dac-jax checkpoint folder") from None
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path / CONFIG_FILE}: invalid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise WeightsError(f"{path / CONFIG_FILE}: not a dac-jax checkpoint (format tag missing)")
    if header.get("version") != VERSION:
        raise WeightsError(f"{path / CONFIG_FILE}: format version {header.get('version')} is not supported (expected {VERSION})")
    return header


def _read_config(path: Path, cls, header: dict):
    if not isinstance(header.get("config"), dict):
        raise WeightsError(f"{path / CONFIG_FILE}: bad model config (no 'config' mapping)")
    try:
        config, ignored = cls.from_kwargs(header["config"])
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{path / CONFIG_FILE}: bad model config ({e})") from None
    if ignored:
        raise WeightsError(f"{path / CONFIG_FILE}: unknown config keys {ignored}")
    return config


def _read_params(path: Path) -> dict[str, np.ndarray]:
    """The parameter tree as a state dict (``name.N`` keys), for the importers' strict checks."""
    try:
        params = serialization.msgpack_restore((path / PARAMS_FILE).read_bytes())
    except FileNotFoundError:
        raise WeightsError(f"{path}: no {PARAMS_FILE}") from None
    except Exception as e:  # msgpack raises a variety of errors on corrupt data
        raise WeightsError(f"{path / PARAMS_FILE}: corrupt parameter file ({type(e).__name__}: {e})") from None
    if not isinstance(params, dict):
        raise WeightsError(f"{path / PARAMS_FILE}: corrupt parameter file (not a tree of arrays)")
    return variables_to_state_dict({"params": params})


def load_native(path: str | Path) -> tuple[DACConfig | VAEConfig, dict, dict]:
    """Read a codec's folder written by :func:`save_native`: ``(config, variables, metadata)``,
    strictly checked. The config's type says which model the folder holds (a folder without a
    ``model`` entry is DAC's)."""
    path = Path(path)
    header = _read_header(path)
    model = header.get("model", "DAC")
    if model == DISCRIMINATOR:
        raise WeightsError(f"{path}: holds a training run's discriminator, not a codec (train.py takes it with "
                           "--discriminator_weights)")
    if model not in MODELS:
        raise WeightsError(f"{path / CONFIG_FILE}: unknown model {model!r} (expected one of {', '.join(MODELS)})")
    config = _read_config(path, MODELS[model], header)
    state_dict = _read_params(path)
    if isinstance(config, VAEConfig):
        variables = vae_state_dict_to_variables(state_dict, config, source=str(path / PARAMS_FILE))
    else:
        variables = state_dict_to_variables(state_dict, config, source=str(path / PARAMS_FILE))
    return config, variables, header.get("metadata", {})


def read_native_discriminator(path: str | Path) -> tuple[DiscriminatorConfig, dict[str, np.ndarray], dict]:
    """Read a discriminator's folder written by :func:`save_native`: ``(config, state dict,
    metadata)``; :func:`dac_jax.weights.discriminator.load_discriminator` checks the keys and
    shapes against the config, as for the original's files."""
    path = Path(path)
    header = _read_header(path)
    if header.get("model", "DAC") != DISCRIMINATOR:
        raise WeightsError(f"{path}: a {header.get('model', 'DAC')} checkpoint folder, not a discriminator's")
    return _read_config(path, DiscriminatorConfig, header), _read_params(path), header.get("metadata", {})
