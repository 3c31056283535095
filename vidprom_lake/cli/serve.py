"""`vidlake serve`: the read-only web gallery (see docs/web.md)."""

from __future__ import annotations

from typing import Any

import click


def register(group: click.Group) -> None:
    @group.command("serve")
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="Address to listen on; anything but loopback is reachable by others "
                       "(a warning says so).")
    @click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
    @click.option("--as-of", "as_of", default=None, metavar="BATCH",
                  help="Serve the lake as it was right after this batch (e.g. batch-0007).")
    @click.option("--column", default=None,
                  help="Vector column for semantic search (default: embedding, else the first).")
    @click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
                  help="Server processes (each loads its own listing index, ~200 bytes a "
                       "prompt).")
    @click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True,
                  help="Worker threads per process for work that reads the lake or renders "
                       "a page not yet cached.")
    @click.option("--page-cache-mb", type=click.IntRange(0, 1 << 20), default=64,
                  show_default=True, help="Memory for rendered pages per process (0: none).")
    @click.option("--access-log", is_flag=True, help="Log every request.")
    @click.pass_context
    def serve_cmd(ctx: click.Context, host: str, port: int, as_of: str | None,
                  column: str | None, workers: int, threads: int, page_cache_mb: int,
                  access_log: bool) -> None:
        """Browse the lake in a web browser: search prompts, watch their videos."""
        from ..web.server import ServeConfig, serve

        cfg = ServeConfig(lake=ctx.obj["lake_uri"], host=host, port=port, as_of=as_of,
                          column=column, access_log=access_log, workers=workers,
                          threads=threads, page_cache_mb=page_cache_mb)
        echo: Any = lambda m: click.echo(m, err=True)  # noqa: E731
        serve(cfg, echo)
