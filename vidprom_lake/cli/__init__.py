"""The `vidlake` command: a click group whose commands each make one library call.

Command families live in their own modules (`core`, and one per capability); each exposes
``register(group)``. `VidlakeError` becomes a one-line message and exit code 1 here, in one
place; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from ..errors import VidlakeError

# One module per command family; a family appears once its module exists.
COMMAND_MODULES = ["core", "enrich", "dedup", "video", "discord", "scrape", "analysis", "serve",
                   "fetch", "seed"]


class LakeGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VidlakeError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; committed batches are safe, the current one was not committed",
                       err=True)
            sys.exit(130)


@click.group(cls=LakeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--lake", "lake_uri", envvar="VIDLAKE_LAKE", default="lake", show_default=True,
              help="Lake folder or s3:// URI (env VIDLAKE_LAKE).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="vidprom-lake")
@click.pass_context
def main(ctx: click.Context, lake_uri: str, debug: bool) -> None:
    """VidLake: an embedded, versioned lake for text-to-video prompt galleries."""
    ctx.ensure_object(dict)
    ctx.obj["lake_uri"] = lake_uri
    ctx.obj["debug"] = debug


for _name in COMMAND_MODULES:
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        importlib.import_module(f"{__name__}.{_name}").register(main)
