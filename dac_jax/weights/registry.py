"""Released checkpoints of the original DAC: where they are published and where they are cached.

The cache is the original's own (``~/.cache/descript/dac/weights_{type}_{bitrate}_{tag}.pth``), so a
file the original downloaded is found here and the other way round.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path

from dac_jax.errors import WeightsError
from dac_jax.fileio import atomic_path

_BASE = "https://github.com/descriptinc/descript-audio-codec/releases/download"

LATEST_TAGS = {
    ("44khz", "8kbps"): "0.0.1",
    ("24khz", "8kbps"): "0.0.4",
    ("16khz", "8kbps"): "0.0.5",
    ("44khz", "16kbps"): "1.0.0",
}

URLS = {
    ("44khz", "8kbps", "0.0.1"): f"{_BASE}/0.0.1/weights.pth",
    ("24khz", "8kbps", "0.0.4"): f"{_BASE}/0.0.4/weights_24khz.pth",
    ("16khz", "8kbps", "0.0.5"): f"{_BASE}/0.0.5/weights_16khz.pth",
    ("44khz", "16kbps", "1.0.0"): f"{_BASE}/1.0.0/weights_44khz_16kbps.pth",
}

#: the released model types, and every name a user may load (``load_model("44khz-16kbps")``)
MODEL_TYPES = frozenset(t for t, _ in LATEST_TAGS)
TYPE_NAMES = ("44khz", "44khz-16kbps", "24khz", "16khz")

# preset names of dac_jax.model.config for each released (type, bitrate)
PRESET_OF = {
    ("44khz", "8kbps"): "44khz",
    ("44khz", "16kbps"): "44khz-16kbps",
    ("24khz", "8kbps"): "24khz",
    ("16khz", "8kbps"): "16khz",
}


def parse_model_type(model_type: str, model_bitrate: str = "8kbps") -> tuple[str, str]:
    """``"44khz-16kbps"`` or ``("44khz", "16kbps")`` -> ``("44khz", "16kbps")``, validated."""
    model_type = model_type.lower()
    if "-" in model_type:
        model_type, model_bitrate = model_type.split("-", 1)
    key = (model_type, model_bitrate.lower())
    if key not in LATEST_TAGS:
        choices = ", ".join(f"{t} {b}" for t, b in LATEST_TAGS)
        raise WeightsError(f"no released DAC model {model_type} {model_bitrate}; released: {choices}")
    return key


def resolve_tag(model_type: str, model_bitrate: str, tag: str = "latest") -> str:
    key = parse_model_type(model_type, model_bitrate)
    tag = LATEST_TAGS[key] if tag == "latest" else tag
    if (*key, tag) not in URLS:
        raise WeightsError(f"no released DAC model {key[0]} {key[1]} with tag {tag}")
    return tag


def cache_dir() -> Path:
    return Path.home() / ".cache" / "descript" / "dac"


def cache_path(model_type: str = "44khz", model_bitrate: str = "8kbps", tag: str = "latest") -> Path:
    """The original's cache path for a released checkpoint."""
    model_type, model_bitrate = parse_model_type(model_type, model_bitrate)
    tag = resolve_tag(model_type, model_bitrate, tag)
    return cache_dir() / f"weights_{model_type}_{model_bitrate}_{tag}.pth"


def download(model_type: str = "44khz", model_bitrate: str = "8kbps", tag: str = "latest", timeout: float = 60.0) -> Path:
    """Path of a released checkpoint, downloading it into the cache if it is not there yet."""
    model_type, model_bitrate = parse_model_type(model_type, model_bitrate)
    tag = resolve_tag(model_type, model_bitrate, tag)
    path = cache_path(model_type, model_bitrate, tag)
    if path.is_file():
        return path
    url = URLS[(model_type, model_bitrate, tag)]
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as e:  # IncompleteRead too
        reason = getattr(e, "reason", None) or e
        raise WeightsError(
            f"could not download the {model_type} {model_bitrate} weights (tag {tag}) from {url} ({reason}); "
            f"offline, fetch that file elsewhere and pass it with --weights_path (or load_model(path)), "
            f"or put it at {path}"
        ) from None
    return path
