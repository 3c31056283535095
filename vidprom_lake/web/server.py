"""Running the gallery: uvicorn on 127.0.0.1 unless told otherwise (and then a warning)."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Idle keep-alive connections stay open this long. uvicorn's 5 s default closes connections
#: a busy client is about to reuse; the request then fails with a reset (seen under load).
KEEP_ALIVE_S = 75


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """The warning printed when the gallery listens beyond this machine."""
    if is_loopback(host):
        return None
    return (f"warning: serving on {host}, reachable from other machines; the gallery has no "
            "login, so anyone who can reach this port can read every prompt and video of "
            "the lake")


@dataclass
class ServeConfig:
    lake: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    as_of: str | None = None
    column: str | None = None
    log_level: str = "warning"
    access_log: bool = False
    workers: int = 1
    threads: int = 8  # per process, for blocking work (see web.app._Work)
    page_cache_mb: int = 64  # rendered pages kept per process


def build(cfg: ServeConfig, echo: Callable[[str], None] = print) -> Any:
    """Open the lake, load the listing index, and make the ASGI app."""
    from . import _require, create_app, open_gallery

    _require()
    t0 = time.perf_counter()
    gallery = open_gallery(cfg.lake, as_of=cfg.as_of, column=cfg.column,
                           progress=lambda m: echo(f"  {m}"))
    n = gallery.listing
    echo(f"loaded {n.n:,} prompts and {len(n.videos.prompt_pos):,} videos in "
         f"{time.perf_counter() - t0:.1f} s (listing index {n.nbytes / 1e6:.0f} MB)")
    hosts = None if is_loopback(cfg.host) else ["*"]
    return create_app(gallery, allowed_hosts=hosts, threads=cfg.threads,
                      page_cache_bytes=cfg.page_cache_mb << 20)


def serve(cfg: ServeConfig, echo: Callable[[str], None] = print) -> None:
    """Serve until interrupted (Ctrl-C)."""
    import uvicorn

    warn = exposure_warning(cfg.host)
    if warn:
        echo(warn)
    if cfg.workers > 1:
        from .gallery import pin

        pin(cfg.lake or _default(), cfg.as_of)  # a bad lake or batch fails here, once
    app = build(cfg, echo) if cfg.workers == 1 else None
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    echo(f"serving the gallery on http://{host}:{cfg.port}/ (read-only; Ctrl-C stops)")
    logging.getLogger("vidlake.web").setLevel(logging.INFO)
    if cfg.workers > 1:
        # Several processes, each with its own listing index: Python work (templates, HTTP)
        # runs on every core instead of under one GIL.
        import dataclasses
        import json
        import os

        os.environ[_ENV] = json.dumps(dataclasses.asdict(cfg))
        sock = _listen(cfg.host, cfg.port)
        uvicorn.run("vidprom_lake.web.server:_worker_app", factory=True, fd=sock.fileno(),
                    workers=cfg.workers, log_level=cfg.log_level, access_log=cfg.access_log,
                    server_header=False, proxy_headers=False, timeout_keep_alive=KEEP_ALIVE_S)
        return
    assert app is not None  # built above when there is a single worker
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level,
                access_log=cfg.access_log, server_header=False, proxy_headers=False,
                timeout_keep_alive=KEEP_ALIVE_S)


_ENV = "VIDLAKE_SERVE_CONFIG"


def _listen(host: str, port: int) -> Any:
    """The listening socket for worker processes, with TCP_NODELAY set on it.

    Worker processes get the socket through its file descriptor, and asyncio then no longer
    recognises it as TCP and skips TCP_NODELAY; a page written in two pieces (headers, body)
    then waits ~40 ms for the client's delayed ACK. Accepted sockets inherit the option from
    the listener on Linux."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _default() -> str:
    from ..lake import default_uri

    return default_uri()


def _worker_app() -> Any:
    """The app of one uvicorn worker process (config from the parent's environment)."""
    import json
    import os

    return build(ServeConfig(**json.loads(os.environ[_ENV])), echo=lambda _m: None)
