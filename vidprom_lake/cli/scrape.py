"""The scrape command: scrape-videos (the videos that Discord exports' bot replies link to)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .render import emit_report, format_option, progress_bar


@contextmanager
def _progress() -> Iterator[Any]:
    """A rich progress bar on stderr (only on a terminal): clips done and bytes/s."""
    import time

    progress = progress_bar("scrape", "clips {task.fields[rate]}")
    t0 = time.monotonic()
    with progress:
        task = progress.add_task("scrape", total=None, rate="")

        def tick(done: int, total: int, nbytes: int) -> None:
            dt = max(time.monotonic() - t0, 1e-6)
            progress.update(task, completed=done, total=total,
                            rate=f"{nbytes / 1e6:,.1f} MB, {nbytes / dt / 1e6:,.2f} MB/s")

        yield tick


@click.command(name="scrape-videos")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--model", "-m", default="pika", show_default=True,
              help="Model label of the scraped videos (video_id = {model}-{uuid}).")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Only the first N prompts with a video (by time, then uuid); rerunning "
                   "resumes that set.")
@click.option("--concurrency", type=click.IntRange(min=1, max=256), default=8, show_default=True,
              help="Downloads at once.")
@click.option("--rate", default=None, help="At most this many requests, e.g. 5/s, 300/min "
              "(default: unlimited).")
@click.option("--max-bytes", default="100MB", show_default=True,
              help="Largest file accepted, e.g. 50MB, 800K.")
@click.option("--retries", type=click.IntRange(min=0), default=4, show_default=True,
              help="Retries of a transient failure (429, 5xx, timeouts, dropped connections).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds to wait for a connection or for data.")
@click.option("--chunk", type=click.IntRange(min=1), default=256, show_default=True,
              help="Videos per committed chunk (a crash loses at most one).")
@click.option("--verify", type=click.Choice(["first-frame", "full"]), default="first-frame",
              show_default=True, help="Decode the first frame (all packets demuxed) or every frame.")
@click.option("--no-thumbnails", is_flag=True, help="Skip the JPEG previews.")
@click.option("--plan", is_flag=True,
              help="Say how many, how many bytes and how many are already present; fetch nothing.")
@click.option("--bot", default=None, help="Ingest option for PATHS: the generation bot's name.")
@click.option("--prompt-pattern", default=None,
              help="Ingest option for PATHS: the bot reply's prompt regex.")
@click.option("--show-failed", type=int, default=50, show_default=True,
              help="How many failed prompts to list.")
@format_option()
@click.pass_context
def scrape_videos(ctx: click.Context, paths: tuple[str, ...], model: str, limit: int | None,
                  concurrency: int, rate: str | None, max_bytes: str, retries: int,
                  timeout: float, chunk: int, verify: str, no_thumbnails: bool, plan: bool,
                  bot: str | None, prompt_pattern: str | None, show_failed: int,
                  fmt: str) -> None:
    """Download the videos that Discord bot replies link to and import them.

    PATHS are DiscordChatExporter exports (files or folders): they are ingested first. Without
    PATHS, every prompt in the lake whose bot reply kept a video attachment is scraped.
    """
    from ..lake import open_lake
    from ..video.scrape import scrape_videos as run

    lake = open_lake(ctx.obj["lake_uri"])
    iopts = {k: v for k, v in (("bot", bot), ("prompt_pattern", prompt_pattern)) if v is not None}
    with _progress() as tick:
        report = run(lake, list(paths) or None, model=model, limit=limit,
                     concurrency=concurrency, rate=rate, max_bytes=max_bytes, retries=retries,
                     timeout=timeout, chunk=chunk, verify=verify,
                     thumbnails=not no_thumbnails, plan=plan, ingest_options=iopts,
                     progress=None if plan else tick)
    d = report.as_dict()
    title = ("scrape-videos plan" if plan else
             f"scrape-videos {report.batch_id or '(nothing to do)'}")
    emit_report(d, fmt, title=title, problems=report.failures, word="failed", key="failures",
                limit=show_failed, line=lambda f: f"{f.uuid}: {f.filename}: {f.reason}")


def register(group: click.Group) -> None:
    group.add_command(scrape_videos)
