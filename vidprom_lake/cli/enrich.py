"""Enrichment commands: embed, score, enrichers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .render import dict_rows, emit, format_option


def _lake(ctx: click.Context) -> Any:
    from ..lake import open_lake

    return open_lake(ctx.obj["lake_uri"])


@contextmanager
def _progress(label: str) -> Iterator[Any]:
    """A rich progress bar with rows/s and ETA (only on a terminal); yields a callback."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RowsPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s", style="progress.data.speed")

    progress = Progress(SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(),
                        RowsPerSecond(), TimeElapsedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn(), disable=not sys.stderr.isatty(),
                        console=_stderr_console())
    with progress:
        task = progress.add_task(label, total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield tick


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _show(report: Any, fmt: str, title: str) -> None:
    d = report.as_dict()
    if fmt == "table":
        emit(dict_rows(d), "table", title=title)
        for f in report.failures[:10]:
            click.echo(f"failed: {f['uuid']}: {f['error']}", err=True)
        if report.rows_failed > 10:
            click.echo(f"... {report.rows_failed - 10:,} more failed rows (see `vidlake log`)",
                       err=True)
    else:
        emit([d], fmt)


#: --engine/--address/--workers/--gpus-per-worker, shared by embed, score, generate and
#: import-videos.
ENGINE_OPTIONS = [
    click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                 show_default=True, help="Where the work runs: this process, or Ray actors."),
    click.option("--address", default=None,
                 help="--engine ray: cluster address (auto, ray://host:10001); default starts a local Ray."),
    click.option("--workers", "ray_workers", type=click.IntRange(min=1), default=None,
                 help="--engine ray: actors, one model load each (default: the cluster's CPUs)."),
    click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0.0,
                 help="--engine ray: GPUs per actor (num_gpus)."),
]


def engine_options(fn: Any) -> Any:
    for opt in reversed(ENGINE_OPTIONS):
        fn = opt(fn)
    return fn


def pop_engine(opts: dict[str, Any]) -> dict[str, Any]:
    """Pop the engine options for the library call (`engine=`, `engine_options=`)."""
    eo = {"address": opts.pop("address"), "workers": opts.pop("ray_workers"),
          "gpus_per_worker": opts.pop("gpus_per_worker")}
    return {"engine": opts.pop("engine"), "engine_options": eo}


_common = [
    click.option("--limit", type=click.IntRange(min=0), default=None,
                 help="Enrich at most this many rows."),
    click.option("--where", default=None,
                 help="SQL predicate over prompts columns selecting the rows to enrich."),
    click.option("--recompute", is_flag=True,
                 help="Recompute rows that already have the enrichment (replaces another model's column)."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None,
                 help="Inputs per model call / API request."),
    click.option("--chunk-rows", type=click.IntRange(min=1), default=32_768, show_default=True,
                 help="Rows per committed chunk (a crash loses at most one)."),
    click.option("--text-column", default="prompt", show_default=True,
                 help="Column holding the text (prompt or prompt_clean)."),
    click.option("--device", default=None, help="torch device (default: cuda, mps, else cpu)."),
    *ENGINE_OPTIONS,
]


def _with_common(fn: Any) -> Any:
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


@click.command()
@click.option("--model", "-m", default="minilm", show_default=True,
              help="minilm | openai:<model id> | st:/path/to/model | any registered embedder.")
@click.option("--column", default="embedding", show_default=True,
              help="Vector column to fill (one embedding space per column).")
@click.option("--dimensions", type=click.IntRange(min=1), default=None,
              help="OpenAI text-embedding-3 models: shorten vectors to this size.")
@click.option("--base-url", default=None,
              help="OpenAI-compatible server, e.g. http://localhost:11434/v1 (env OPENAI_BASE_URL).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="OpenAI: requests in flight at once (default 16).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True, help="Stored vector precision.")
@_with_common
@format_option()
@click.pass_context
def embed(ctx: click.Context, fmt: str, **opts: Any) -> None:
    """Embed prompts that have no vector in --column yet (one resumable batch).

    The key for openai: models comes from OPENAI_API_KEY and is never stored.
    """
    from ..enrich import embed as run

    lake = _lake(ctx)
    with _progress(f"embed {opts['model']}") as tick:
        report = run(lake, opts.pop("model"), progress=tick, **pop_engine(opts), **opts)
    _show(report, fmt, f"embed {report.batch_id or '(nothing to do)'}")


@click.command()
@click.option("--model", "-m", default="detoxify:unbiased", show_default=True,
              help="detoxify:unbiased | detoxify:multilingual | detoxify:original | any registered scorer.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Local Detoxify checkpoint file (.ckpt).")
@click.option("--config-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with the base model's config.json and tokenizer files (offline).")
@click.option("--download", is_flag=True,
              help="Allow Detoxify to download its checkpoint into the torch hub cache.")
@_with_common
@format_option()
@click.pass_context
def score(ctx: click.Context, fmt: str, **opts: Any) -> None:
    """Score prompts without NSFW scores yet (VidProM's six Detoxify probabilities)."""
    from ..enrich import score as run

    lake = _lake(ctx)
    with _progress(f"score {opts['model']}") as tick:
        report = run(lake, opts.pop("model"), progress=tick, **pop_engine(opts), **opts)
    _show(report, fmt, f"score {report.batch_id or '(nothing to do)'}")


@click.command()
@format_option()
def enrichers(fmt: str) -> None:
    """List the registered enrichers: installed? what each still needs."""
    from ..enrich import status

    rows = status()
    cols = ["name", "kind", "installed", "ready", "needs", "weights", "env", "description"]
    if fmt == "table":  # the full set is in --format csv/json
        cols = ["name", "kind", "installed", "ready", "needs"]
    emit([{c: r.get(c) for c in cols} for r in rows], fmt, title="enrichers")


def register(group: click.Group) -> None:
    group.add_command(embed)
    group.add_command(score)
    group.add_command(enrichers)
