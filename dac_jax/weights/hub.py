"""Hugging Face hub ids (``descript/dac_44khz``): found in the hub's cache, downloaded when allowed.

The cache is huggingface_hub's own, with its rules for where it lives (``HF_HUB_CACHE``, else
``HF_HOME/hub``, else ``~/.cache/huggingface/hub``) and its layout
(``models--ORG--NAME/refs/REVISION`` holds a commit, ``snapshots/COMMIT/`` the files), so a model
that transformers downloaded is found here without huggingface_hub installed. Downloading needs
huggingface_hub, and is not tried when ``HF_HUB_OFFLINE`` is set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from dac_jax.errors import MissingDependencyError, WeightsError
from dac_jax.weights.hf_format import CONFIG_FILE, INDEX_FILE, WEIGHTS_FILE

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: what a DAC snapshot needs (a sharded one: the index and the files it names)
PATTERNS = [CONFIG_FILE, WEIGHTS_FILE, INDEX_FILE, "model-*.safetensors"]
#: the released DAC models on the hub
RELEASED = ("descript/dac_44khz", "descript/dac_24khz", "descript/dac_16khz")


def is_repo_id(source: Any) -> bool:
    """``"org/name"`` that is not a path on disk."""
    return (isinstance(source, str) and bool(_REPO_ID.match(source)) and ".." not in source
            and not os.path.lexists(source))


def _true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline() -> bool:
    """huggingface_hub's switch: ``HF_HUB_OFFLINE`` set to 1/ON/YES/TRUE."""
    return _true("HF_HUB_OFFLINE")


def cache_folder() -> Path:
    """Where huggingface_hub keeps models, by its rules (read at each call, not at import)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expanduser(os.environ[name]))
    if os.environ.get("HF_HOME"):
        home = Path(os.path.expanduser(os.environ["HF_HOME"]))
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = Path(xdg) / "huggingface"
    return home / "hub"


def _complete(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and ((folder / WEIGHTS_FILE).is_file() or (folder / INDEX_FILE).is_file())


def cached_snapshot(repo_id: str, revision: str = "main", cache: Optional[Path] = None) -> Optional[Path]:
    """The cached snapshot folder of ``repo_id`` at ``revision`` (a branch, tag or commit), or None."""
    repo = (cache or cache_folder()) / ("models--" + repo_id.replace("/", "--"))
    commit = revision
    if not _COMMIT.match(revision):
        try:
            commit = (repo / "refs" / revision).read_text().strip()
        except OSError:
            return None
    folder = repo / "snapshots" / commit
    return folder if _complete(folder) else None


def resolve(repo_id: str, revision: str = "main") -> Path:
    """A local folder holding ``repo_id``'s ``config.json`` and safetensors weights: the cached
    snapshot, else a download into the cache (huggingface_hub, its own progress bar; a file arrives
    whole or not at all)."""
    cache = cache_folder()
    found = cached_snapshot(repo_id, revision, cache)
    if found is not None:
        return found
    where = f"{repo_id} (revision {revision})"
    if offline():
        raise WeightsError(f"{where}: not in the Hugging Face cache at {cache}, and HF_HUB_OFFLINE is set; "
                           "download it on a machine with network (or unset HF_HUB_OFFLINE), or pass a local folder")
    try:
        import huggingface_hub
    except ImportError:
        raise MissingDependencyError(
            f"{where}: not in the Hugging Face cache at {cache}; downloading it needs huggingface_hub: "
            "pip install 'dac-jax[hf]'"
        ) from None
    try:
        folder = huggingface_hub.snapshot_download(repo_id, revision=revision, cache_dir=str(cache),
                                                   allow_patterns=PATTERNS)
    except Exception as e:  # network, authentication, a missing repository: huggingface_hub's many types
        first = (str(e).strip().splitlines() or [""])[0]
        raise WeightsError(
            f"{where}: could not download from the Hugging Face hub ({type(e).__name__}: {first}); "
            f"offline, copy the model folder here and pass its path, or set HF_HUB_OFFLINE=1 to use only {cache}"
        ) from None
    folder = Path(folder)
    if not _complete(folder):
        raise WeightsError(f"{where}: the hub repository has no {CONFIG_FILE} with {WEIGHTS_FILE}; "
                           "not a transformers DAC model")
    return folder
