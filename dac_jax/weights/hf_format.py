"""Hugging Face's format of DAC (transformers' ``DacModel``): a folder with ``config.json`` and
``model.safetensors``, read and written with ``safetensors`` alone (no torch, no transformers).

transformers names each module by its class and its rank among the siblings of that class
(``snake1``, ``conv1``, ``conv_t1``, ``res_unit2``; encoder and decoder blocks are the list
``block.N``), where the original counts positions in an ``nn.Sequential``. Both are read off our
module tree: :func:`hf_prefixes` walks the ``layers()`` that the forward pass runs, so no key table
is typed by hand. The hub checkpoints hold plain conv weights (weight norm removed before saving);
a weight ``w`` is imported as ``v = w``, ``g = ||w||``, which is ``w`` again when the model
recombines them. Files that kept weight norm (``weight_g``/``weight_v``, or the parametrizations'
``original0``/``original1``) are read as they are.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from flax import traverse_util

from dac_jax.errors import MissingDependencyError, WeightsError
from dac_jax.fileio import atomic_path, is_temp
from dac_jax.model.config import DACConfig
from dac_jax.model.dac import DAC
from dac_jax.nn.blocks import DecoderBlock, EncoderBlock, ResidualUnit
from dac_jax.nn.layers import Sequential, Snake, Tanh, WNConv1d
from dac_jax.weights.torch_format import (
    ParameterMap, expected_parameters, listing, to_variables, torch_key, variables_to_state_dict,
)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
HOLDS = "a Hugging Face DAC checkpoint (config.json, model.safetensors)"

# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def _word(layer: Any) -> Optional[str]:
    """How transformers names a module of this class inside its parent (``None``: no parameters)."""
    if isinstance(layer, WNConv1d):
        return "conv_t" if layer.geometry.transposed else "conv"
    for cls, word in ((Snake, "snake"), (ResidualUnit, "res_unit"), (EncoderBlock, "block"),
                      (DecoderBlock, "block"), (Tanh, None)):
        if isinstance(layer, cls):
            return word
    raise WeightsError(f"no Hugging Face name for a {type(layer).__name__} (only DAC has a transformers model)")


def _walk(module: Any, ours: str, theirs: str, out: dict[str, str]) -> None:
    if not isinstance(module, Sequential):  # the quantizer: named as in the original
        out[ours] = theirs
        return
    seen: collections.Counter = collections.Counter()
    for layer in module.layers():
        word = _word(layer)
        if word is None:
            continue
        seen[word] += 1
        # blocks are a ModuleList (block.0, block.1, ...); everything else is numbered from 1
        name = f"block.{seen[word] - 1}" if word == "block" else f"{word}{seen[word]}"
        _walk(layer, f"{ours}.{torch_key((layer.name,))}", f"{theirs}.{name}", out)


def hf_prefixes(config: DACConfig) -> dict[str, str]:
    """``{original module prefix: transformers module prefix}`` for every module with parameters."""
    out: dict[str, str] = {}
    encoder, quantizer, decoder = DAC(config).parts()
    for name, part in (("encoder", encoder), ("quantizer", quantizer), ("decoder", decoder)):
        _walk(part, name, name, out)
    return out


HFMap = dict[str, tuple[str, tuple[int, ...]]]
"""``{transformers key: (original key, shape)}``; a conv's ``weight`` stands for ``weight_v`` and ``weight_g``."""


def expected_hf(config: DACConfig, original: Optional[ParameterMap] = None) -> HFMap:
    """Every key of a transformers ``DacModel`` of ``config`` (plain conv weights), with the original
    key it corresponds to and its shape. ``original``: :func:`expected_parameters` of ``config``,
    if the caller has it already (it traces the model)."""
    prefixes = hf_prefixes(config)
    out: HFMap = {}
    for key, (_, shape) in (original or expected_parameters(config)).items():
        module, param = key.rsplit(".", 1)
        if param == "weight_g":
            continue
        owner = max((p for p in prefixes if module == p or module.startswith(p + ".")), key=len)
        hf_module = prefixes[owner] + module[len(owner):]
        out[f"{hf_module}.{'weight' if param == 'weight_v' else param}"] = (key, shape)
    return out


# the weight-norm spellings a file may use, each as (suffix, part): part "g" or "v"
_NORMED = ((".weight_g", "g"), (".weight_v", "v"),
           (".parametrizations.weight.original0", "g"), (".parametrizations.weight.original1", "v"))


def _split_normed(key: str) -> tuple[str, Optional[str]]:
    """``("X.weight", "g"|"v")`` for a weight-norm key, ``(key, None)`` for any other."""
    for suffix, part in _NORMED:
        if key.endswith(suffix):
            return key[: -len(suffix)] + ".weight", part
    return key, None


def norm_except_0(w: np.ndarray) -> np.ndarray:
    """``||w||`` over every axis but 0 (shape ``[out, 1, 1]``), summed in float64, as float32.

    Import and export compute it the same way, so that a plain weight imported as ``(v = w, g)``
    exports back to exactly ``w``."""
    w64 = np.asarray(w, np.float64)
    return np.sqrt(np.sum(w64 * w64, axis=tuple(range(1, w64.ndim)), keepdims=True)).astype(np.float32)


def hf_to_state_dict(tensors: Mapping[str, np.ndarray], config: DACConfig, source: str,
                     original: Optional[ParameterMap] = None) -> dict[str, np.ndarray]:
    """A transformers state dict -> the original's (``weight_g``/``weight_v``), strictly checked:
    every missing, unexpected or mis-shaped key, and keys given in two spellings, are listed."""
    expected = expected_hf(config, original)
    grouped: dict[str, dict[Optional[str], list[str]]] = {}
    for key in tensors:
        base, part = _split_normed(key)
        grouped.setdefault(base, {}).setdefault(part, []).append(key)
    missing = sorted(set(expected) - set(grouped))
    extra, wrong, twice = [], [], []
    out: dict[str, np.ndarray] = {}

    def take(key: str, name: str, shape: tuple[int, ...]) -> None:
        value = np.asarray(tensors[key], np.float32)
        if value.shape != shape:
            wrong.append(f"{key}: file {value.shape}, model {shape}")
        out[name] = value

    for base, parts in sorted(grouped.items()):
        keys = sorted(k for ks in parts.values() for k in ks)
        original, shape = expected.get(base, ("", ()))
        normed = original.endswith(".weight_v")
        if not original or (not normed and set(parts) != {None}):
            extra.extend(keys)
        elif any(len(ks) > 1 for ks in parts.values()) or (None in parts and len(parts) > 1):
            twice.append(" and ".join(keys))
        elif None in parts:  # a plain tensor; a plain conv weight w becomes v = w, g = ||w||
            take(parts[None][0], original, shape)
            if normed and original in out and out[original].shape == shape:
                out[original[:-1] + "g"] = norm_except_0(out[original])
        else:
            g_shape = (shape[0],) + (1,) * (len(shape) - 1)
            for part, name, want in (("v", original, shape), ("g", original[:-1] + "g", g_shape)):
                if part in parts:
                    take(parts[part][0], name, want)
                else:
                    missing.append(f"{base[: -len('.weight')]}.weight_{part}")
    if missing or extra or wrong or twice:
        lines = [f"{source} does not fit the Hugging Face DAC of {config}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", extra), ("mis-shaped keys", wrong),
                             ("keys given in two weight-norm spellings", twice)):
            if items:
                lines.append(listing(title, items))
        raise WeightsError("\n".join(lines))
    return out


def state_dict_to_hf(state_dict: Mapping[str, np.ndarray], config: DACConfig) -> dict[str, np.ndarray]:
    """The original's state dict -> transformers' plain weights, ``w = v * (g / ||v||)`` in float64."""
    tensors = {}
    for hf_key, (original, _) in expected_hf(config).items():
        value = np.asarray(state_dict[original], np.float32)
        if original.endswith(".weight_v"):
            g = np.asarray(state_dict[original[:-1] + "g"], np.float64)
            value = (value.astype(np.float64) * (g / norm_except_0(value).astype(np.float64))).astype(np.float32)
        tensors[hf_key] = np.ascontiguousarray(value)
    return tensors


# --------------------------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------------------------

# transformers' name -> ours; the others it writes are derived (checked) or not about the network
_FIELDS = {
    "encoder_hidden_size": "encoder_dim", "downsampling_ratios": "encoder_rates",
    "decoder_hidden_size": "decoder_dim", "n_codebooks": "n_codebooks", "codebook_size": "codebook_size",
    "codebook_dim": "codebook_dim", "sampling_rate": "sample_rate",
}


def config_from_hf(header: Any, source: str) -> DACConfig:
    """Our config from a transformers ``config.json`` (``model_type`` ``"dac"``)."""
    if not isinstance(header, dict) or header.get("model_type") != "dac":
        raise WeightsError(f"{source}: not a Hugging Face DAC config (model_type {header.get('model_type')!r} "
                           "is not 'dac')" if isinstance(header, dict) else f"{source}: not a JSON object")
    missing = sorted(set(_FIELDS) - set(header))
    if missing:
        raise WeightsError(f"{source}: missing {', '.join(missing)}")
    kwargs = {ours: header[theirs] for theirs, ours in _FIELDS.items()}
    kwargs["decoder_rates"] = tuple(reversed(tuple(header["downsampling_ratios"])))
    kwargs["quantizer_dropout"] = header.get("quantizer_dropout", 0.0)
    try:
        config = DACConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{source}: does not describe a DAC model ({e})") from None
    derived = {"hidden_size": config.latent_dim, "hop_length": config.hop_length,
               "upsampling_ratios": list(config.decoder_rates)}
    for key, value in derived.items():
        if key in header and _plain(header[key]) != _plain(value):
            raise WeightsError(f"{source}: {key} is {header[key]!r}, but the other keys make it {value!r}")
    return config


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def config_to_hf(config: DACConfig) -> dict:
    """transformers' ``config.json`` for ``config``; what it cannot express is refused."""
    if tuple(config.decoder_rates) != tuple(reversed(config.encoder_rates)):
        raise WeightsError(f"transformers' DAC decodes with the encoder's rates reversed; this model's decoder "
                           f"rates {config.decoder_rates} are not {tuple(reversed(config.encoder_rates))}")
    if config.latent_dim != config.encoder_dim * 2 ** len(config.encoder_rates):
        raise WeightsError(f"transformers' DAC has a latent of encoder_hidden_size * 2^blocks = "
                           f"{config.encoder_dim * 2 ** len(config.encoder_rates)} channels; this model has "
                           f"{config.latent_dim}")
    header = {"architectures": ["DacModel"], "model_type": "dac"}
    header.update({theirs: _plain(getattr(config, ours)) for theirs, ours in _FIELDS.items()})
    header.update({"quantizer_dropout": config.quantizer_dropout, "hidden_size": config.latent_dim,
                   "hop_length": config.hop_length, "upsampling_ratios": list(config.decoder_rates),
                   "dtype": "float32"})
    return header


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise MissingDependencyError(
            "Hugging Face checkpoints are read and written with safetensors: pip install 'dac-jax[hf]'"
        ) from None
    return safetensors


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a transformers ``config.json`` (it names a ``model_type``;
    :func:`config_from_hf` refuses any but DAC's)."""
    try:
        header = json.loads((Path(path) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and "model_type" in header


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    safetensors = _safetensors()
    if (path / WEIGHTS_FILE).is_file():
        files = [path / WEIGHTS_FILE]
    elif (path / INDEX_FILE).is_file():  # sharded: the index's weight_map names the files
        try:
            weight_map = json.loads((path / INDEX_FILE).read_text())["weight_map"]
            files = [path / name for name in sorted(set(weight_map.values()))]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise WeightsError(f"{path / INDEX_FILE}: not a safetensors index ({e})") from None
    else:
        raise WeightsError(f"{path}: no {WEIGHTS_FILE} (only safetensors weights are read, not pytorch_model.bin)")
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        try:
            tensors.update(safetensors.numpy.load_file(str(file)))
        except FileNotFoundError:
            raise WeightsError(f"{file}: missing (named by {INDEX_FILE})") from None
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise WeightsError(f"{file}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    return tensors


def read_hf_folder(path: str | Path) -> tuple[DACConfig, dict]:
    """``(config, variables)`` of a folder written by ``DacModel.save_pretrained`` (or :func:`write_hf_folder`)."""
    path = Path(path)
    try:
        header = json.loads((path / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise WeightsError(f"{path}: no {CONFIG_FILE}") from None
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path / CONFIG_FILE}: not readable JSON ({e})") from None
    config = config_from_hf(header, str(path / CONFIG_FILE))
    tensors = _read_tensors(path)
    source = str(path / (WEIGHTS_FILE if (path / WEIGHTS_FILE).is_file() else INDEX_FILE))
    original = expected_parameters(config)  # traced once, for both the check and the tree
    return config, to_variables(hf_to_state_dict(tensors, config, source, original), original)


def replaceable(path: str | Path) -> bool:
    """A folder that holds nothing but a Hugging Face DAC checkpoint's two files (ours to replace)."""
    try:
        names = {entry.name for entry in os.scandir(path) if not is_temp(entry.name)}
    except OSError:
        return False
    if not names <= {CONFIG_FILE, WEIGHTS_FILE}:
        return False
    try:
        return CONFIG_FILE not in names or json.loads((Path(path) / CONFIG_FILE).read_text()).get("model_type") == "dac"
    except (OSError, ValueError, AttributeError):
        return False


def write_hf_folder(path: str | Path, variables: Mapping[str, Any], config: DACConfig) -> Path:
    """Write a folder that ``transformers.DacModel.from_pretrained`` loads: a new or empty folder is
    filled, an earlier Hugging Face DAC export replaced atomically, any other folder refused."""
    safetensors = _safetensors()
    header = config_to_hf(config)
    tensors = state_dict_to_hf(variables_to_state_dict(_as_float32(variables)), config)
    path = Path(os.path.abspath(path))
    with atomic_path(path, replaceable=replaceable, holds=HOLDS) as tmp:
        tmp.mkdir()
        safetensors.numpy.save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(header, indent=2) + "\n")
    return path


def _as_float32(variables: Mapping[str, Any]) -> dict:
    flat = traverse_util.flatten_dict(variables["params"])
    return {"params": traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in flat.items()})}
