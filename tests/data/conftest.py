"""Fixtures of the data tests: a local HTTP server on 127.0.0.1."""

import functools
import http.server
import threading
from pathlib import Path

import pytest


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory, honouring ``Range: bytes=N-`` (206 with Content-Range).

    /truncated/NAME announces the full length and sends half of it; /chunked/NAME sends a
    chunked body whose connection closes inside the first chunk; /flaky/NAME is truncated at
    the first request and whole (ranges honoured) afterwards; /norange/NAME ignores ranges."""

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        kind, _, name = self.path.lstrip("/").partition("/")
        if kind not in ("truncated", "chunked", "flaky", "norange"):
            kind, name = "plain", self.path.lstrip("/")
        path = Path(self.directory) / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        first = sum(p.endswith("/" + name) for p, _ in self.server.requests) == 1
        if kind == "truncated" or (kind == "flaky" and first):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
        elif kind == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data[:1000])
        else:
            asked = self.headers.get("Range")
            start = int(asked[len("bytes="):-1]) if asked and kind != "norange" else None
            if start is not None and start >= len(data):
                self.send_error(416)
                return
            self.send_response(200 if start is None else 206)
            body = data if start is None else data[start:]
            if start is not None:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def serve(monkeypatch):
    """serve(directory) -> (base URL ending in '/', list of request paths)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    servers = []

    def start(directory: Path):
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
        server.requests = []
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", server.requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
