"""Reading a model's weights from any format dac-jax knows, for DAC and DAC-VAE: one entry point.

=====================  ==========================================  =================================
format                 DAC                                         DAC-VAE
=====================  ==========================================  =================================
dac-jax folder         ``config.json`` + ``params.msgpack``        the same (``"model": "DAC-VAE"``)
the original's file    released ``.pth`` (``state_dict`` +         ``checkpoint.pt`` (``generator`` +
                       ``metadata.kwargs``); a model type          ``config["vae"]``) or a bare
                       (``"44khz"``) downloads one                 state dict with a preset
Hugging Face           transformers' ``config.json`` +             (none in transformers)
                       ``model.safetensors``: a folder, or a hub
                       id (``"descript/dac_44khz"``) from the
                       hub's cache or downloaded
a training run         ``save_path`` (its best checkpoint's        the same
                       generator) or ``save_path/checkpoints/N``
the shipped demo       ``"demo16khz"`` (dac_jax/data/demo16khz)    (none)
=====================  ==========================================  =================================

A folder says which model it holds; a file is read as the model ``kind`` asks for (DAC unless
``"vae"``). Keys and shapes are checked strictly by the importer of each format.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Union

from dac_jax.errors import UsageError, WeightsError
from dac_jax.model.config import DACConfig, VAEConfig, VAEConfigLike, get_vae_config
from dac_jax.weights import hf_format, hub, native, registry
from dac_jax.weights.torch_format import read_torch_checkpoint, state_dict_to_variables
from dac_jax.weights.vae import read_vae_checkpoint, vae_state_dict_to_variables

#: The model kinds, as :class:`dac_jax.runtime.Model` names them, and how messages name them.
NAMES = {"dac": "DAC", "vae": "DAC-VAE"}
_LOADERS = {"dac": "dac_jax.load_model", "vae": "dac_jax.load_vae"}


@dataclasses.dataclass
class Weights:
    kind: str  # "dac" or "vae"
    config: Union[DACConfig, VAEConfig]
    variables: dict
    source: str


def check_source(source: Any) -> None:
    if not isinstance(source, (str, Path)) or not str(source):
        raise UsageError(f"the model to load must be a path or a model type (a non-empty string); got {source!r}")


def is_model_type(source: Any) -> bool:
    """``"44khz"``, ``"24khz-8kbps"``, ...: a released DAC, named rather than given by path."""
    return isinstance(source, str) and source.split("-")[0].lower() in registry.MODEL_TYPES


def training_run(path: Path) -> Optional[tuple[Path, Union[str, int]]]:
    """``(run, step)`` for a training run's ``save_path`` (its best checkpoint) or one of its
    checkpoints (``RUN/checkpoints/STEP``); ``None`` for anything else."""
    if (path / "checkpoints").is_dir():
        return path, "best"
    if path.name.isdigit() and path.parent.name == "checkpoints" and path.is_dir():
        return path.parent.parent, int(path.name)
    return None


def _read_run(run: Path, step: Union[str, int], kind: Optional[str]) -> Weights:
    from dac_jax.train.checkpoint import read_run_generator  # the train extra (Orbax), only for a run

    found_run = read_run_generator(run, step)
    found = "vae" if isinstance(found_run.config, VAEConfig) else "dac"
    if kind is not None and found != kind:
        raise WeightsError(f"{run}: a {NAMES[found]} training run, not a {NAMES[kind]} model; load it with {_LOADERS[found]}")
    return Weights(found, found_run.config, {"params": found_run.params},
                   f"{run} (step {found_run.step}{', its best' if step == 'best' else ''})")


def read_weights(
    source: Union[str, Path], kind: Optional[str] = None, *, config: Any = None,
    default_config: Optional[VAEConfigLike] = None, model_bitrate: str = "8kbps", tag: str = "latest",
) -> Weights:
    """The weights at ``source``: a dac-jax folder (either model), the original's file (a DAC
    ``.pth``, or DAC-VAE's ``checkpoint.pt`` / bare state dict when ``kind == "vae"``), a released
    DAC's model type (downloaded into the original's cache on first use), or a Hugging Face DAC: a
    folder written by ``save_pretrained`` or a hub id (``tag``, unless ``"latest"``, is its revision).

    ``kind`` (``"dac"``, ``"vae"`` or ``None``: whatever the folder holds) is checked against a
    folder's model. ``config`` is needed only for a bare state dict without metadata (DAC-VAE:
    or ``default_config``, used only for a file that has none).
    """
    check_source(source)
    if kind not in (None, *NAMES):
        raise UsageError(f"kind must be one of {', '.join(NAMES)} or None; got {kind!r}")
    path = Path(source)
    if not path.exists() and str(source).lower() in registry.DEMO_NAMES and kind != "vae":
        if model_bitrate != "8kbps" or tag != "latest":
            raise UsageError(f"{source}: the demo model has one version (4 kbps); a bitrate or tag does not apply")
        path = registry.DEMO_MODEL
    elif not path.exists() and is_model_type(source) and kind != "vae":
        path = registry.download(str(source), model_bitrate, tag)
    elif hub.is_repo_id(source) and kind != "vae":
        path = hub.resolve(str(source), "main" if tag == "latest" else tag)
    if path.is_dir() and (run := training_run(path)):
        return _read_run(*run, kind)
    if path.is_dir() and hf_format.is_hf_folder(path):
        if kind == "vae":
            raise WeightsError(f"{path}: a Hugging Face DAC, not a DAC-VAE model; load it with dac_jax.load_model")
        cfg, variables = hf_format.read_hf_folder(path)
        return Weights("dac", cfg, variables, str(path))
    if path.is_dir():
        cfg, variables, _ = native.load_native(path)
        found = "vae" if isinstance(cfg, VAEConfig) else "dac"
        if kind is not None and found != kind:
            raise WeightsError(f"{path}: a {NAMES[found]} checkpoint folder, not a {NAMES[kind]} model; "
                               f"load it with {_LOADERS[found]}")
        if found == "vae" and config is not None and get_vae_config(config) != cfg:
            raise WeightsError(f"{path}: holds the DAC-VAE {cfg}, not the requested {get_vae_config(config)}")
        return Weights(found, cfg, variables, str(path))
    if kind == "vae":
        ckpt = read_vae_checkpoint(path, config, default_config)
        variables = vae_state_dict_to_variables(ckpt.state_dict, ckpt.config, source=str(ckpt.path))
        return Weights("vae", ckpt.config, variables, str(ckpt.path))
    if path.is_file():
        ckpt = read_torch_checkpoint(path, config)
        return Weights("dac", ckpt.config, state_dict_to_variables(ckpt.state_dict, ckpt.config, source=str(path)),
                       str(path))
    raise WeightsError(
        f"{source}: no such file or folder, and not a model type ({', '.join(registry.TYPE_NAMES + registry.DEMO_NAMES)})"
    )
