"""Downloading released weights (``registry.download``) from a real HTTP server on loopback: the
progress bar with the size, an interrupted transfer resumed with a range request, the sanity checks
that keep a wrong file out of the cache, and the offline message."""

from __future__ import annotations

import http.server
import io
import threading
import zipfile

import numpy as np
import pytest

from dac_jax.errors import WeightsError
from dac_jax.weights import registry


def _checkpoint_bytes(size: int = 3 << 20) -> bytes:
    """A zip archive (as torch.save writes) of about ``size`` bytes of incompressible data."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data/0", np.random.default_rng(0).bytes(size))
    return buffer.getvalue()


class Server:
    """Serves ``body`` at ``/weights.pth``, honouring ``Range``; ``cut_after`` bytes ends a response early."""

    def __init__(self, body: bytes):
        self.body, self.cut_after, self.ranges = body, None, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                start = 0
                if "Range" in self.headers:
                    outer.ranges.append(self.headers["Range"])
                    start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                data = outer.body[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if outer.cut_after is not None:
                    data = data[: outer.cut_after]
                self.wfile.write(data)
                self.wfile.flush()
                if outer.cut_after is not None:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weights.pth"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path, monkeypatch):
    body = _checkpoint_bytes()
    server = Server(body)
    monkeypatch.setattr(registry, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(registry, "URLS", {k: server.url for k in registry.URLS})
    yield server, body
    server.close()


def test_download_shows_its_size_and_lands_whole(served, capsys):
    server, body = served
    path = registry.download("16khz")
    assert path == registry.cache_path("16khz") and path.read_bytes() == body
    assert not registry.partial_path(path).exists()
    bar = capsys.readouterr().err
    assert "downloading DAC 16khz 8kbps" in bar and "3.00M" in bar  # the bar knows the total
    assert registry.download("16khz") == path  # cached: no second transfer
    assert server.ranges == []


def test_an_interrupted_download_resumes_where_it_stopped(served):
    server, body = served
    server.cut_after = len(body) // 3
    with pytest.raises(WeightsError) as e:
        registry.download("16khz", progress=False)
    message, part = str(e.value), registry.partial_path(registry.cache_path("16khz"))
    assert "\n" not in message and f"the {len(body) // 3} bytes received are kept" in message
    assert "--weights_path" in message
    assert part.stat().st_size == len(body) // 3 and not registry.cache_path("16khz").exists()

    server.cut_after = None
    path = registry.download("16khz", progress=False)
    assert server.ranges == [f"bytes={len(body) // 3}-"]
    assert path.read_bytes() == body and not part.exists()


@pytest.mark.parametrize("body", [b"<html>proxy login</html>" * 100000, b"PK\x03\x04 too small"],
                         ids=["not a zip", "too small"])
def test_what_is_not_a_checkpoint_never_reaches_the_cache(served, body):
    server, _ = served
    server.body = body
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint") as e:
        registry.download("16khz", progress=False)
    assert "\n" not in str(e.value)
    cache = registry.cache_path("16khz")
    assert not cache.exists() and not registry.partial_path(cache).exists()


def test_offline_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(registry, "URLS", {k: "http://no-such-host.invalid/weights.pth" for k in registry.URLS})
    with pytest.raises(WeightsError) as e:
        registry.download("44khz", progress=False)
    message = str(e.value)
    assert "\n" not in message and "no-such-host.invalid" in message and "--weights_path" in message
    assert str(registry.cache_path("44khz")) in message
