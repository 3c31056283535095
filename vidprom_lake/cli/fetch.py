"""`vidlake fetch`: download part of VidProM (or a seed dataset's metadata) from the Hub into a lake."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .render import emit, format_option


@contextmanager
def _bars() -> Iterator[Any]:
    """One rich bar per file (bytes, bytes/s, ETA) on stderr; silent when not a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from ..fetch import Progress as Base

    console = Console(stderr=True)
    bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                    disable=not sys.stderr.isatty())
    lock = threading.Lock()
    tasks: dict[str, Any] = {}

    class Bars(Base):
        def start(self, path: str, total: int, done: int) -> None:
            with lock:
                tasks[path] = bars.add_task(path, total=total, completed=done)

        def advance(self, path: str, n: int) -> None:
            bars.update(tasks[path], advance=n)

        def finish(self, path: str) -> None:
            pass

        def note(self, text: str) -> None:
            if sys.stderr.isatty():
                bars.console.print(text)

    with bars:
        yield Bars()


@click.command()
@click.argument("dataset", type=click.Choice(["vidprom", "openvid", "vidgen", "miradata"]))
@click.option("--embeddings", is_flag=True, help="Also VidProM_embed.hdf5 (20.6 GB), attached by uuid.")
@click.option("--videos", "videos", multiple=True, metavar="MODEL",
              help="Video shards of these models: pika, vc2, t2vz, ms (or full names), all.")
@click.option("--shards", default=None, metavar="SPEC",
              help="Which shards of --videos: 1-3, 1,4,7-9, all (default all).")
@click.option("--example", is_flag=True,
              help="The example/ files instead (CSV + HDF5; with --videos, that model's example tar).")
@click.option("--metadata-only", is_flag=True, help="Only the caption/prompt metadata files.")
@click.option("--files", "files", multiple=True, metavar="GLOB",
              help="Also (or instead, for seed datasets) these repo files, e.g. OpenVidHD.csv.")
@click.option("--plan", "plan_only", is_flag=True,
              help="Show what would be downloaded, sizes and disk needed; download nothing.")
@click.option("--keep-downloads", is_flag=True,
              help="Keep downloaded files (default: delete each after it is imported).")
@click.option("--download-dir", default=None, metavar="DIR",
              help="Where downloads go (env VIDLAKE_DOWNLOADS; default ~/.cache/vidlake/downloads).")
@click.option("--repo", default=None, help="Another Hub repo with the same layout.")
@click.option("--revision", default="main", show_default=True, help="Branch, tag or commit.")
@click.option("--no-disk-check", is_flag=True, help="Start even if free disk looks short.")
@click.option("--verify", type=click.Choice(["index", "first-frame", "full"]),
              default="first-frame", show_default=True,
              help="How video shards are checked on import (see import-videos --verify).")
@click.option("--no-thumbnails", is_flag=True, help="Import videos without JPEG previews.")
@format_option()
@click.pass_context
def fetch(ctx: click.Context, dataset: str, fmt: str, plan_only: bool, no_disk_check: bool,
          videos: tuple[str, ...], files: tuple[str, ...], verify: str, no_thumbnails: bool,
          **opts: Any) -> None:
    """Download DATASET's files from the Hugging Face Hub and import them into the lake.

    Only what is asked for is downloaded: the prompts CSV by default; video shards are imported
    while the next one downloads; interrupted downloads resume; a re-run skips what landed.
    Honours HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE and files already in the Hub cache.
    """
    from .. import fetch as f

    kw = dict(opts, videos=list(videos) or None, files=list(files))
    if plan_only:
        lake = _maybe_lake(ctx.obj["lake_uri"])
        fp = f.plan(dataset, lake, **kw)
        emit(fp.rows(compact=fmt == "table"), fmt, title=f"{fp.repo}@{fp.commit[:12]} -> {fp.download_dir}")
        if fmt == "table":
            click.echo(f"to download: {f.human(fp.to_download)} "
                       f"(licence {fp.license}{', gated' if fp.gated else ''})", err=True)
            for d in fp.disk:
                ok = "ok" if d["free"] >= d["needed"] else "NOT ENOUGH"
                click.echo(f"disk {d['where']} ({d['for']}): needs {f.human(d['needed'])}, "
                           f"free {f.human(d['free'])}: {ok}", err=True)
        return
    from ..lake import open_lake

    lake = open_lake(ctx.obj["lake_uri"], create=True)
    with _bars() as bars:
        rep = f.fetch(lake, dataset, progress=bars, check_disk=not no_disk_check,
                      verify=verify, thumbnails=not no_thumbnails, **kw)
    emit(rep.rows(compact=fmt == "table"), fmt, title=f"{rep.plan.repo}@{rep.plan.commit[:12]}")
    if fmt == "table":
        got = [x for x in rep.landed if x.status == "imported"]
        click.echo(f"landed {len(got)} file(s), {f.human(sum(x.bytes_downloaded for x in got))} "
                   f"downloaded, {sum(x.rows_added for x in got):,} rows/videos added, "
                   f"{len(rep.landed) - len(got)} already in the lake; {rep.seconds:.1f} s",
                   err=True)


def _maybe_lake(uri: str) -> Any:
    from ..errors import LakeNotFound
    from ..lake import open_lake

    try:
        return open_lake(uri)
    except LakeNotFound:
        return None


def register(group: click.Group) -> None:
    group.add_command(fetch)
