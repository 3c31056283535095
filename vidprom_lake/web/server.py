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
    return create_app(gallery, allowed_hosts=hosts)


def serve(cfg: ServeConfig, echo: Callable[[str], None] = print) -> None:
    """Serve until interrupted (Ctrl-C)."""
    import uvicorn

    warn = exposure_warning(cfg.host)
    if warn:
        echo(warn)
    app = build(cfg, echo)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    echo(f"serving the gallery on http://{host}:{cfg.port}/ (read-only; Ctrl-C stops)")
    logging.getLogger("vidlake.web").setLevel(logging.INFO)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level,
                access_log=cfg.access_log, server_header=False, proxy_headers=False)
