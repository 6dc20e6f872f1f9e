"""The original's checkpoint format: ``{"state_dict": ..., "metadata": {"kwargs": ...}}``.

The map between PyTorch keys and our parameter tree is derived from the tree itself: a Flax path
``("encoder", "block_1", "block_0", "block_1", "weight_v")`` is the PyTorch key
``encoder.block.1.block.0.block.1.weight_v`` (each ``name_N`` is ``name.N``). Parameters keep the
PyTorch shapes, so importing is renaming plus a strict check of keys and shapes.

The generic pieces (:func:`parameter_map`, :func:`check_keys`, :func:`to_variables`,
:func:`load_torch_file`) serve any module built this way; the discriminator's importer
(:mod:`dac_jax.weights.discriminator`) uses them too.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from dac_jax.errors import MissingDependencyError, WeightsError
from dac_jax.fileio import atomic_path
from dac_jax.model.config import DACConfig
from dac_jax.model.dac import DAC

_INDEXED = re.compile(r"^(.*)_(\d+)$")
# PyTorch >= 2.1 parametrised weight norm: original0 is g, original1 is v
_PARAMETRIZED = re.compile(r"\.parametrizations\.weight\.original([01])$")


def torch_key(path: tuple[str, ...]) -> str:
    """PyTorch state-dict key of a Flax parameter path."""
    return ".".join(_INDEXED.sub(r"\1.\2", part) for part in path)


def normalize_key(key: str) -> str:
    """Map both weight-norm key styles to the released one (``weight_g`` / ``weight_v``)."""
    return _PARAMETRIZED.sub(lambda m: ".weight_g" if m.group(1) == "0" else ".weight_v", key)


ParameterMap = dict[str, tuple[tuple[str, ...], tuple[int, ...]]]
"""``{torch_key: (flax_path, shape)}``: where each PyTorch key lives in the Flax tree, and its shape."""


def parameter_map(module: Any, *example_args: Any, **static_kwargs: Any) -> ParameterMap:
    """``{torch_key: (flax_path, shape)}`` for every parameter ``module.init(key, *example_args,
    **static_kwargs)`` creates, traced abstractly (``jax.eval_shape``: nothing is computed or compiled)."""
    shapes = jax.eval_shape(functools.partial(module.init, **static_kwargs), jax.random.key(0), *example_args)
    flat = traverse_util.flatten_dict(shapes["params"])
    return {torch_key(path): (path, tuple(s.shape)) for path, s in flat.items()}


def expected_parameters(config: DACConfig) -> ParameterMap:
    """``{torch_key: (flax_path, shape)}`` for every parameter of a model of ``config``."""
    return parameter_map(DAC(config), jnp.zeros((1, 1, config.hop_length)))


def listing(title: str, items: list[str], limit: int = 20) -> str:
    shown = "\n    ".join(items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {title} ({len(items)}):\n    {shown}{more}"


def check_keys(
    state_dict: Mapping[str, Any], expected: ParameterMap, target: str, source: str = "state dict", hint: str = ""
) -> ParameterMap:
    """Raise :class:`WeightsError` listing every missing, extra or mis-shaped key of ``state_dict``
    (either weight-norm key style) against ``expected``; ``target`` names what it should fit, and
    ``hint`` (if any) ends the message. Returns ``expected``."""
    normalized: dict[str, list[str]] = {}
    for k in state_dict:
        normalized.setdefault(normalize_key(k), []).append(k)
    keys = set(normalized)
    missing = sorted(set(expected) - keys)
    extra = sorted(keys - set(expected))
    twice = sorted(" and ".join(sorted(ks)) for ks in normalized.values() if len(ks) > 1)
    shapes = {normalize_key(k): tuple(np.shape(v)) for k, v in state_dict.items()}
    wrong = sorted(
        f"{k}: file {shapes[k]}, model {expected[k][1]}"
        for k in set(expected) & keys
        if shapes[k] != expected[k][1]
    )
    if missing or extra or wrong or twice:
        parts = [f"{source} does not fit {target}:"]
        if missing:
            parts.append(listing("missing keys", missing))
        if extra:
            parts.append(listing("unexpected keys", extra))
        if wrong:
            parts.append(listing("mis-shaped keys", wrong))
        if twice:
            parts.append(listing("keys given in both weight-norm styles", twice))
        if hint:
            parts.append(hint)
        raise WeightsError("\n".join(parts))
    return expected


def to_variables(state_dict: Mapping[str, Any], expected: ParameterMap) -> dict:
    """``{"params": ...}`` from a state dict already checked against ``expected`` (float32 numpy)."""
    flat = {}
    for key, value in state_dict.items():
        path, _ = expected[normalize_key(key)]
        flat[path] = np.asarray(value, dtype=np.float32)
    return {"params": traverse_util.unflatten_dict(flat)}


def check_state_dict(state_dict: Mapping[str, Any], config: DACConfig, source: str = "state dict") -> ParameterMap:
    """Raise :class:`WeightsError` listing every missing, extra or mis-shaped key."""
    return check_keys(state_dict, expected_parameters(config), f"the model {config}", source)


def state_dict_to_variables(
    state_dict: Mapping[str, Any], config: DACConfig, source: str = "state dict"
) -> dict:
    """Strictly convert a PyTorch-layout state dict (arrays or tensors) into Flax variables."""
    return to_variables(state_dict, check_state_dict(state_dict, config, source))


def variables_to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax variables -> a released-style state dict (``weight_g`` / ``weight_v`` keys), numpy arrays."""
    flat = traverse_util.flatten_dict(variables["params"])
    return {torch_key(path): np.asarray(value) for path, value in flat.items()}


# --------------------------------------------------------------------------------------------
# Files (need torch)
# --------------------------------------------------------------------------------------------


def import_torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(
            "reading or writing PyTorch checkpoints needs torch: pip install 'dac-jax[torch]' "
            "(or convert the file once on a machine with torch: python -m dac_jax convert IN.pth OUT_DIR)"
        ) from None
    return torch


@dataclasses.dataclass
class TorchCheckpoint:
    state_dict: dict[str, np.ndarray]
    config: DACConfig
    metadata: dict
    ignored_kwargs: list[str]


def _load_failure(error: Exception) -> str:
    """The gist of a ``torch.load`` failure, on one line."""
    text = str(error)
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n\n|$)", text, re.S)
    if match:
        gist = " ".join(match.group(1).split())
        if "Unsupported global" in gist:
            return f"it holds objects other than tensors and plain data, which are not unpickled: {gist}"
        return f"unpickling failed: {gist}"
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def read_torch_checkpoint(path: str | Path, config: DACConfig | None = None) -> TorchCheckpoint:
    """Read a released-format ``.pth`` file: its state dict and the config from ``metadata.kwargs``.

    Only tensors and plain containers are unpickled (``torch.load(weights_only=True)``). A bare
    state dict (no metadata) needs ``config``.
    """
    path = Path(path)
    data = load_torch_file(path)
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a dict with 'state_dict' and 'metadata', got {type(data).__name__}")
    if "state_dict" in data:
        state_dict, metadata = data["state_dict"], data.get("metadata") or {}
    elif "generator" in data:  # a training checkpoint of the original
        state_dict, metadata = data["generator"], data.get("metadata") or {}
    else:
        state_dict, metadata = data, {}
    ignored: list[str] = []
    if config is None:
        kwargs = metadata.get("kwargs") if isinstance(metadata, dict) else None
        if not kwargs and isinstance(data.get("config"), dict) and "vae" in data["config"]:
            raise WeightsError(
                f"{path}: a DAC-VAE checkpoint, not a DAC model; load it with dac_jax.load_vae "
                "(command line: --model_type vae24khz-x2 or vae24khz-x3)"
            )
        if not kwargs:
            raise WeightsError(f"{path}: no metadata.kwargs to build the model from; pass a config")
        try:
            config, ignored = DACConfig.from_kwargs(kwargs)
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{path}: metadata.kwargs do not describe a DAC model: {e}") from None
    arrays = tensors_to_numpy(state_dict, path)
    return TorchCheckpoint(arrays, config, metadata if isinstance(metadata, dict) else {}, ignored)


def load_torch_file(path: str | Path, hint: str = "") -> Any:
    """``torch.load`` of ``path`` on the CPU, unpickling only tensors and plain containers
    (``weights_only=True``); :class:`WeightsError` naming the file when it is missing or unreadable,
    ended by ``hint`` (if any)."""
    torch = import_torch()
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        message = f"{path}: not a readable PyTorch checkpoint ({_load_failure(e)})"
        raise WeightsError(f"{message}\n{hint}" if hint else message) from None


def tensors_to_numpy(state_dict: Any, path: str | Path) -> dict[str, np.ndarray]:
    """A state dict of tensors as float32 numpy arrays; :class:`WeightsError` for anything else."""
    torch = import_torch()
    if not isinstance(state_dict, Mapping):
        raise WeightsError(f"{path}: the state dict is a {type(state_dict).__name__}, not a dict of tensors")
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        arrays[key] = value.detach().to(torch.float32).numpy()
    return arrays


def write_torch_checkpoint(path: str | Path, variables: Mapping[str, Any], config: DACConfig) -> Path:
    """Write a released-format ``.pth`` that the original ``dac.DAC.load`` reads (atomically)."""
    torch = import_torch()

    state_dict = {k: torch.from_numpy(np.array(v)) for k, v in variables_to_state_dict(variables).items()}
    metadata = {"kwargs": config.to_kwargs(), "exported_by": "dac-jax"}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state_dict, "metadata": metadata}, tmp)
    return path
