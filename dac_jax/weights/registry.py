"""Released checkpoints of the original DAC: where they are published and where they are cached.

The cache is the original's own (``~/.cache/descript/dac/weights_{type}_{bitrate}_{tag}.pth``), so a
file the original downloaded is found here and the other way round.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: downloads there are not locked
    fcntl = None

from dac_jax.errors import WeightsError

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

#: the small 16 kHz DAC that ships with dac-jax (configs/demo.yml, trained on a CPU): what ``make demo``
#: uses where the released weights cannot be downloaded; ``load_model("demo16khz")``
DEMO_MODEL = Path(__file__).resolve().parent.parent / "data" / "demo16khz"
DEMO_NAMES = ("demo16khz",)

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


#: a released checkpoint is a PyTorch zip archive of tens to hundreds of MB; anything smaller, or
#: not a zip (a proxy's HTML page, a truncated transfer), is not one
MIN_BYTES = 1 << 20
ZIP_MAGIC = b"PK\x03\x04"


def partial_path(path: Path) -> Path:
    """Where an unfinished download of ``path`` is kept, so that the next attempt resumes it."""
    return path.with_name(path.name + ".part")


def download(model_type: str = "44khz", model_bitrate: str = "8kbps", tag: str = "latest", timeout: float = 60.0,
             progress: bool = True) -> Path:
    """Path of a released checkpoint, downloading it into the cache if it is not there yet.

    The transfer goes to ``NAME.pth.part`` beside the cache path, with a progress bar that shows its
    size (``progress``); an interrupted one is resumed from where it stopped on the next call (an HTTP
    range request; a server that ignores it sends the whole file again). The file is renamed into
    place only once it is whole: as many bytes as the server announced, at least :data:`MIN_BYTES`,
    and a zip archive, as PyTorch writes them. A failure is one :class:`WeightsError` line that says
    what to do offline. ``DAC_JAX_OFFLINE=1`` refuses to try."""
    model_type, model_bitrate = parse_model_type(model_type, model_bitrate)
    tag = resolve_tag(model_type, model_bitrate, tag)
    path = cache_path(model_type, model_bitrate, tag)
    if path.is_file():
        return path
    url = URLS[(model_type, model_bitrate, tag)]
    if os.environ.get("DAC_JAX_OFFLINE", "").lower() in ("1", "on", "yes", "true"):
        raise WeightsError(f"DAC_JAX_OFFLINE is set, so the {model_type} {model_bitrate} weights were not "
                           f"downloaded from {url}; pass a file with --weights_path (or load_model(path)), "
                           f"or put it at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path):  # one download at a time per file: two processes must not append to one part
        if path.is_file():  # another process finished it while this one waited
            return path
        return _download(url, path, timeout, progress,
                         f"{model_type} {model_bitrate}", f"the {model_type} {model_bitrate} weights (tag {tag})")


@contextlib.contextmanager
def _lock(path: Path):
    with open(path.with_name(path.name + ".lock"), "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _download(url: str, path: Path, timeout: float, progress: bool, name: str, what: str) -> Path:
    part = partial_path(path)
    try:
        _fetch(url, part, timeout, progress, name)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as e:  # IncompleteRead too
        reason = getattr(e, "reason", None) or e
        kept = part.stat().st_size if part.is_file() else 0
        if part.is_file() and not kept:
            part.unlink()
        resume = f"; the {kept} bytes received are kept in {part} and the next attempt resumes" if kept else ""
        raise WeightsError(
            f"could not download {what} from {url} ({reason}){resume}; "
            f"offline, fetch that file elsewhere and pass it with --weights_path (or load_model(path)), "
            f"or put it at {path}"
        ) from None
    size = part.stat().st_size
    with open(part, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if size < MIN_BYTES or head != ZIP_MAGIC:
        part.unlink()
        raise WeightsError(f"{url} sent {size} bytes that are not a PyTorch checkpoint ("
                           f"{'too small' if size < MIN_BYTES else 'not a zip archive'}); nothing was kept; "
                           f"fetch {what} elsewhere and pass it with --weights_path")
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, path)
    return path


def _fetch(url: str, part: Path, timeout: float, progress: bool, name: str) -> None:
    """Download ``url`` into ``part``, appending to what an earlier attempt left there."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:  # 416: the range starts at the end; the part may be whole
            raise
        return
    with response:
        resumed = have and response.status == 206
        if not resumed:
            have = 0  # a fresh transfer (or a server that ignores ranges): start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        from tqdm import tqdm  # a core dependency; imported here to keep the registry's import light

        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                   desc=f"downloading DAC {name}" + (" (resumed)" if resumed else ""))
        with bar, open(part, "ab" if resumed else "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
        got = part.stat().st_size
    if total is not None and got != total:
        raise http.client.IncompleteRead(b"", total - got)  # the connection ended early
