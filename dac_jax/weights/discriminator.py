"""The original DAC discriminator's weights (``dac.model.discriminator.Discriminator``) in and out.

The original's ``scripts/train.py`` saves its discriminator with audiotools'
``BaseModel.save_to_folder(f"{save_path}/{tag}", extra)``, which writes::

    {save_path}/{tag}/discriminator/weights.pth   torch.save({"state_dict": sd, "metadata": {"kwargs": ...}})
    {save_path}/{tag}/discriminator/package.pth   (a torch.package: code, not read here)
    {save_path}/{tag}/discriminator/optimizer.pth, scheduler.pth

:func:`read_discriminator_checkpoint` takes that ``weights.pth``, the ``discriminator`` folder, or
the ``{tag}`` folder above it; also a bare state dict, or a training checkpoint with a
``"discriminator"`` entry (DAC-VAE's ``checkpoint.pt``), with an explicit config.

The map between PyTorch keys and our parameter tree is derived from the Flax module tree (its
submodules are named after the original's, :mod:`dac_jax.model.discriminator`), with the rule of
:mod:`dac_jax.weights.torch_format` (``name_N`` -> ``name.N``); parameters keep PyTorch's shapes,
so importing is a strict renaming: every missing, extra or mis-shaped key is reported at once.
Both weight-norm key styles are read (``weight_g``/``weight_v`` and PyTorch >= 2.1's
``parametrizations.weight.original0``/``original1``); exports use the first, as the original's own
(legacy ``torch.nn.utils.weight_norm``) files do.

**The original's kwargs are always its defaults.** ``BaseModel.save`` records the constructor's
default arguments, overwritten by attributes of the same names; the ``Discriminator`` keeps none of
its arguments as attributes, so ``metadata["kwargs"]`` holds ``rates=[], periods=[2, 3, 5, 7, 11],
fft_sizes=[2048, 1024, 512], sample_rate=44100, bands=BANDS`` whatever it was built with. DAC's
recipes use exactly those (``sample_rate`` aside, which only the unused multi-scale part reads), so
their files are described right; for any other configuration pass ``config``. A different number
of sub-discriminators shows up as missing or extra keys, but periods, rates, bands and the sample
rate do not change any parameter's shape, so no check can catch those.

torch is imported only by the functions that read or write files.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from dac_jax.errors import WeightsError
from dac_jax.fileio import atomic_path
from dac_jax.model.discriminator import Discriminator, DiscriminatorConfig
from dac_jax.weights import native
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
    "DISCRIMINATOR_WEIGHTS",
    "DiscriminatorCheckpoint",
    "discriminator_parameters",
    "check_discriminator_state_dict",
    "discriminator_state_dict_to_variables",
    "variables_to_discriminator_state_dict",
    "find_discriminator_file",
    "read_discriminator_checkpoint",
    "load_discriminator",
    "write_discriminator_checkpoint",
]

DISCRIMINATOR_WEIGHTS = Path("discriminator") / "weights.pth"
"""Where ``save_to_folder`` puts the discriminator's weights inside a training checkpoint folder."""


@functools.lru_cache(maxsize=16)
def discriminator_parameters(config: DiscriminatorConfig) -> ParameterMap:
    """``{torch_key: (flax_path, shape)}`` of every parameter of a discriminator of ``config``,
    derived from the Flax module tree (traced abstractly), e.g. ``discriminators.5.band_convs.0.1.0.weight_v``
    for ``("discriminators_5", "band_convs_0", "1", "0", "weight_v")``."""
    dummy = jnp.zeros((1, 1, config.min_length()), jnp.float32)
    return parameter_map(Discriminator(config), dummy)


def check_discriminator_state_dict(
    state_dict: Mapping[str, Any], config: DiscriminatorConfig, source: str = "state dict", hint: str = ""
) -> ParameterMap:
    """Raise :class:`WeightsError` naming every missing, extra or mis-shaped key of ``state_dict``
    (either weight-norm style) for a discriminator of ``config``."""
    return check_keys(state_dict, discriminator_parameters(config), f"the discriminator {config}", source, hint)


def discriminator_state_dict_to_variables(
    state_dict: Mapping[str, Any], config: DiscriminatorConfig, source: str = "state dict"
) -> dict:
    """The original's state dict (numpy arrays or tensors, either weight-norm key style) as our
    variables ``{"params": ...}`` (float32 numpy), strictly: see :func:`check_discriminator_state_dict`."""
    expected = check_discriminator_state_dict(state_dict, config, source)
    return to_variables(state_dict, expected)


def variables_to_discriminator_state_dict(
    variables: Mapping[str, Any], config: DiscriminatorConfig | None = None
) -> dict[str, np.ndarray]:
    """Our variables as the original's state dict (``weight_g``/``weight_v`` keys, numpy arrays),
    what ``Discriminator(**config.to_kwargs()).load_state_dict`` takes. With ``config`` the keys
    and shapes are checked against it first."""
    state_dict = variables_to_state_dict(variables)
    if config is not None:
        check_discriminator_state_dict(state_dict, config, "variables")
    return state_dict


# --------------------------------------------------------------------------------------------
# Files (need torch)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DiscriminatorCheckpoint:
    """What :func:`read_discriminator_checkpoint` found: the state dict (float32 numpy), the config
    (the one given, else from ``metadata.kwargs``), the metadata, the kwargs it ignored, the file."""

    state_dict: dict[str, np.ndarray]
    config: DiscriminatorConfig
    metadata: dict
    ignored_kwargs: list[str]
    path: Path


def find_discriminator_file(path: str | Path) -> Path:
    """The weights file for ``path``: the file itself, ``path/weights.pth`` (the ``discriminator``
    folder) or ``path/discriminator/weights.pth`` (the training tag folder, e.g. ``runs/x/latest``)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / DISCRIMINATOR_WEIGHTS, path / "weights.pth"):
            if candidate.is_file():
                return candidate
        raise WeightsError(
            f"{path}: no discriminator weights in this folder (looked for {DISCRIMINATOR_WEIGHTS} and weights.pth)"
        )
    if not path.exists():
        raise WeightsError(f"{path}: no such file or folder")
    return path


_DEFAULT_KWARGS_HINT = (
    "  The original saves its Discriminator's constructor DEFAULTS as metadata.kwargs, whatever it was "
    "built with (it keeps none of its arguments as attributes): if it was trained with another "
    "configuration, pass that DiscriminatorConfig (config=...)."
)


def read_discriminator_checkpoint(path: str | Path, config: DiscriminatorConfig | None = None) -> DiscriminatorCheckpoint:
    """Read the original's discriminator weights (see the module docstring for what ``path`` may
    be) and check them strictly against ``config`` (default: the file's ``metadata.kwargs``, which
    the original always writes as its defaults; a bare state dict needs ``config``).

    Only tensors and plain containers are unpickled (``torch.load(weights_only=True)``). Raises
    :class:`WeightsError` naming the file: unreadable, not a discriminator state dict, or keys
    that do not fit (every missing, extra and mis-shaped one listed)."""
    file = find_discriminator_file(path)
    data = load_torch_file(file)
    if not isinstance(data, dict):
        raise WeightsError(f"{file}: expected a dict with 'state_dict' and 'metadata', got {type(data).__name__}")
    if "state_dict" in data:
        state_dict, metadata = data["state_dict"], data.get("metadata") or {}
    elif isinstance(data.get("discriminator"), Mapping):  # a training checkpoint (DAC-VAE's checkpoint.pt)
        state_dict, metadata = data["discriminator"], {}
    else:
        state_dict, metadata = data, {}
    metadata = metadata if isinstance(metadata, dict) else {}
    ignored: list[str] = []
    hint = ""
    if config is None:
        kwargs = metadata.get("kwargs")
        if not isinstance(kwargs, Mapping):
            raise WeightsError(
                f"{file}: no metadata.kwargs to build the discriminator from; pass a config "
                "(DAC's recipe: DiscriminatorConfig())"
            )
        try:
            config, ignored = DiscriminatorConfig.from_kwargs(kwargs)
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{file}: metadata.kwargs do not describe a DAC discriminator: {e}") from None
        hint = _DEFAULT_KWARGS_HINT
    arrays = tensors_to_numpy(state_dict, file)
    check_discriminator_state_dict(arrays, config, str(file), hint)
    return DiscriminatorCheckpoint(arrays, config, metadata, ignored, file)


def load_discriminator(path: str | Path, config: DiscriminatorConfig | None = None) -> tuple[dict, DiscriminatorConfig]:
    """``(variables, config)`` from the original's discriminator weights (see
    :func:`read_discriminator_checkpoint`) or from dac-jax's discriminator folder (``convert RUN OUT
    --discriminator``; its config is its own, any width): ready for
    ``Discriminator(config).apply(variables, audio)``."""
    if native.model_of(path) == native.DISCRIMINATOR:
        found, state_dict, _ = native.read_native_discriminator(path)
        if config is not None and config != found:
            raise WeightsError(f"{path}: holds the discriminator {found}, not the requested {config}")
        return discriminator_state_dict_to_variables(state_dict, found, str(Path(path) / native.PARAMS_FILE)), found
    ckpt = read_discriminator_checkpoint(path, config)
    return discriminator_state_dict_to_variables(ckpt.state_dict, ckpt.config, str(ckpt.path)), ckpt.config


def write_discriminator_checkpoint(path: str | Path, variables: Mapping[str, Any], config: DiscriminatorConfig) -> Path:
    """Write our discriminator as the original's ``weights.pth`` (``{"state_dict", "metadata":
    {"kwargs"}}``, atomically), which ``dac.model.discriminator.Discriminator.load`` reads; a folder
    ``path`` gets ``path/discriminator/weights.pth``, the layout of the original's checkpoints."""
    torch = import_torch()

    state_dict = variables_to_discriminator_state_dict(variables, config)
    path = Path(path)
    if path.is_dir():
        path = path / DISCRIMINATOR_WEIGHTS
        path.parent.mkdir(exist_ok=True)
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state_dict.items()}
    metadata = {"kwargs": config.to_kwargs(), "exported_by": "dac-jax"}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": tensors, "metadata": metadata}, tmp)
    return path
