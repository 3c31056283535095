"""An HTTP server on 127.0.0.1 for the scrape tests and benchmark: serves small mp4s (made with
PyAV) and misbehaves on purpose per file name: slow answers, dropped connections, 429 with
Retry-After, 5xx, expired links (403/404/410), wrong content types, truncated bodies,
oversized files (with and without Content-Length), redirects (to HTTP and to other schemes).

Routes are chosen by the last path segment of the URL (the attachment's file name), so Discord
exports built with `discord_fixtures` only need their CDN prefix replaced by the server's URL.

    python tests/scrape_fixtures.py --dir /tmp/clips --latency 0.02 --port-file /tmp/port
serves every file of a folder (the benchmark runs the server in its own process).
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CDN = "https://cdn.discordapp.com/attachments/"


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    ctype: str | None = "video/mp4"
    headers: dict[str, str] = field(default_factory=dict)
    fail_first: int = 0  # the first N requests misbehave as `fail`
    fail: str = ""  # drop | 429 | 503 | slow | truncate
    retry_after: str = "1"
    slow_s: float = 2.0
    truncate: bool = False  # always: Content-Length of the whole body, half of it sent
    chunked: bool = False  # no Content-Length (Transfer-Encoding: chunked)
    location: str | None = None  # redirect target (status 302 unless `status` says otherwise)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        app = self.server.app
        with app.lock:
            app.active += 1
            app.max_active = max(app.max_active, app.active)
        try:
            self._get(app)
        finally:
            with app.lock:
                app.active -= 1

    def _get(self, app: App) -> None:
        name = unquote(urlsplit(self.path).path.rsplit("/", 1)[-1])
        n = app.hit(name)
        if app.latency:
            time.sleep(app.latency)
        route = app.route(name)
        if route is None:
            self._send(404, b"no such attachment", "text/plain")
            return
        if n <= route.fail_first:
            if route.fail == "drop":
                self.close_connection = True
                return  # closes the socket without an answer
            if route.fail == "429":
                self._send(429, b"slow down", "text/plain", {"Retry-After": route.retry_after})
                return
            if route.fail == "503":
                self._send(503, b"busy", "text/plain")
                return
            if route.fail == "slow":
                time.sleep(route.slow_s)
            if route.fail == "truncate":
                self._send(200, route.body, route.ctype, cut=True)
                return
        if route.location is not None:
            self._send(route.status if route.status in (301, 302, 303, 307, 308) else 302, b"",
                       "text/plain", {"Location": route.location})
            return
        self._send(route.status, route.body, route.ctype, route.headers, cut=route.truncate,
                   chunked=route.chunked)

    def _send(self, status: int, body: bytes, ctype: str | None,
              headers: dict[str, str] | None = None, *, cut: bool = False,
              chunked: bool = False) -> None:
        try:
            self.send_response(status)
            if ctype:
                self.send_header("Content-Type", ctype)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 65536):
                    part = body[i:i + 65536]
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(body)))
            if cut:
                self.send_header("Connection", "close")
            self.end_headers()
            if cut:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: App


class App:
    """The server: routes by file name, request counts and times per name."""

    def __init__(self, routes: dict[str, Route] | None = None, *, latency: float = 0.0,
                 directory: str | None = None, ctype: str = "video/mp4", cycle: bool = False):
        self.routes = dict(routes or {})
        self.latency = latency
        self.directory = directory
        self.ctype = ctype
        # cycle: a name ending in -N.mp4 is the (N mod K)-th file of `directory`, from memory
        self.cycle = ([Route(Path(directory, f).read_bytes(), ctype=ctype)
                       for f in sorted(os.listdir(directory))] if cycle and directory else [])
        self.hits: Counter[str] = Counter()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()
        self.active = 0  # requests being answered now, and the most at once
        self.max_active = 0
        self.httpd: _Server | None = None
        self.thread: threading.Thread | None = None

    def hit(self, name: str) -> int:
        with self.lock:
            self.hits[name] += 1
            self.times[name].append(time.monotonic())
            return self.hits[name]

    def route(self, name: str) -> Route | None:
        r = self.routes.get(name)
        if r is None and self.cycle:
            m = re.search(r"-(\d+)\.mp4$", name)
            if m:
                return self.cycle[int(m.group(1)) % len(self.cycle)]
        if r is None and self.directory and "/" not in name and name not in ("", ".", ".."):
            p = os.path.join(self.directory, name)
            if os.path.isfile(p):
                return Route(Path(p).read_bytes(), ctype=self.ctype)
        return r

    @property
    def base(self) -> str:
        assert self.httpd is not None
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base}/attachments/1/2/{name}"

    def start(self, port: int = 0) -> App:
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.app = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def __enter__(self) -> App:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def point_at(export_text: str, app: App) -> str:
    """An export built by `discord_fixtures` with its attachment URLs on the test server."""
    return export_text.replace(CDN, f"{app.base}/attachments/")


def clip(seed: int = 0, frames: int = 6, w: int = 64, h: int = 48) -> bytes:
    from video_fixtures import make_mp4

    return make_mp4(n=frames, w=w, h=h, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--cycle", action="store_true",
                    help="serve NAME-N.mp4 as the (N mod K)-th of the folder's K files")
    a = ap.parse_args()
    app = App(directory=a.dir, latency=a.latency, cycle=a.cycle).start()
    assert app.httpd is not None
    tmp = a.port_file + ".tmp"
    Path(tmp).write_text(str(app.httpd.server_address[1]))
    os.replace(tmp, a.port_file)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        app.stop()


if __name__ == "__main__":
    main()
