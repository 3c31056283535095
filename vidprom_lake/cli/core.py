"""Lake commands: init, ingest, query, log, diff, restore, shell, sql-init, demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import click

from .render import dict_rows, emit, format_option, progress_bar


def _lake(ctx: click.Context, as_of: str | None = None) -> Any:
    from ..lake import open_lake

    return open_lake(ctx.obj["lake_uri"], as_of=as_of)


@click.command()
@click.option("--exist-ok", is_flag=True, help="Do nothing if the lake already exists.")
@click.pass_context
def init(ctx: click.Context, exist_ok: bool) -> None:
    """Create an empty lake (default ./lake, or --lake URI / VIDLAKE_LAKE)."""
    from ..lake import create_lake

    lake = create_lake(ctx.obj["lake_uri"], exist_ok=exist_ok)
    click.echo(f"lake ready at {lake.uri}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", default=None, help="Force the format (see --list-formats).")
@click.option("--source", default=None, help="Source label stored with each new prompt.")
@click.option("--prompt-column", default=None, help="Column holding the prompt text.")
@click.option("--time-column", default=None, help="Column holding the time.")
@click.option("--time-format", default=None, help="strptime format of --time-column.")
@click.option("--uuid-column", default=None, help="Column holding a given uuid.")
@click.option("--id-column", default=None, help="Column kept as source_id.")
@click.option("--skip-bad", is_flag=True, help="Skip bad rows and list them instead of failing.")
@click.option("--strict-columns", is_flag=True, help="Refuse unknown columns instead of keeping them in `extra`.")
@click.option("--max-prompt-chars", type=int, default=100_000, show_default=True)
@click.option("--column", default="embedding", show_default=True, help="HDF5: vector column to fill.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="HDF5: stored vector precision.")
@click.option("--model", default=None, help="HDF5: embedding model id (default from the file).")
@click.option("--dry-run", is_flag=True, help="Count what would be added; write nothing.")
@click.option("--bot", default=None, help="Discord: name of the generation bot (default Pika).")
@click.option("--prompt-pattern", default=None,
              help="Discord: regex with a (?P<prompt>...) group, matched on the bot's messages.")
@click.option("--since", default=None, help="Discord: keep messages from this date/time on (UTC).")
@click.option("--until", default=None, help="Discord: keep messages up to this date/time (a date: the whole day).")
@click.option("--keep-image-prompts", is_flag=True, help="Discord: keep image-to-video requests.")
@click.option("--author-salt", default=None,
              help="Discord: key for the author hash (default $VIDLAKE_AUTHOR_SALT; never stored).")
@click.option("--report", "out_fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="How to print the ingest report.")
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[str, ...], fmt: str | None, out_fmt: str,
           **opts: Any) -> None:
    """Ingest prompt files: VidProM CSV, HDF5 embeddings, DiffusionDB, Discord exports
    (HTML/JSON files or folders of them), CSV/JSONL/Parquet.

    Each file is one batch: it commits whole or not at all, and re-ingesting adds nothing.
    """
    from ..ingest import ingest as do_ingest

    lake = _lake(ctx)
    reports = []
    with _progress() as progress:
        for path in paths:
            task = progress.add_task(os.path.basename(path), total=None)

            def tick(done: int, total: int | None, task: Any = task) -> None:
                progress.update(task, completed=done, total=total)

            report = do_ingest(lake, path, format=fmt, progress=tick, **opts)
            progress.update(task, completed=report.rows_read, total=report.rows_read)
            reports.append(report)
    for r in reports:
        d = r.as_dict()
        rows = {k: d[k] for k in ("path", "format", "batch_id", "rows_read", "rows_added",
                                  "rows_updated", "already_in_lake", "duplicates_in_file",
                                  "uuid_mismatches", "skipped", "seconds")}
        # format-specific counts (Discord: messages read, prompts found, skipped by reason)
        rows.update({k: d[k] for k in ("messages", "prompts", "unique_prompts", "skipped_by_reason")
                     if k in d})
        if out_fmt == "table":
            emit(dict_rows(rows), "table", title="dry run" if r.dry_run else f"ingest {r.batch_id}")
            for note in r.notes[:10]:
                click.echo(f"note: {note}", err=True)
            for s in r.skipped[:50]:
                click.echo(f"skipped: row {s['row']}: {s['reason']}" if s["row"] else
                           f"skipped: {s['reason']}", err=True)
            if r.skipped_total > 50:
                click.echo(f"... {r.skipped_total - 50:,} more skipped (see `vidlake log --format json`)", err=True)
        else:
            emit([d], out_fmt)


def _progress() -> Any:
    return progress_bar()


@click.command()
@click.argument("sql")
@click.option("--as-of", default=None, help="Read the lake as it was right after this batch.")
@click.option("-o", "--output", default=None, help="Write to a file instead of stdout.")
@click.option("--write", is_flag=True, help="Allow statements other than reads (COPY, CREATE ...).")
@click.option("--no-cache", is_flag=True,
              help="Read Lance directly: neither use nor build the analysis cache of prompts.")
@format_option(extra=("parquet",))
@click.pass_context
def query(ctx: click.Context, sql: str, as_of: str | None, output: str | None, write: bool,
          no_cache: bool, fmt: str) -> None:
    """Run SQL over the lake's views (prompts, videos, gallery, nsfw, batches, ...)."""
    from ..sql import run_query

    lake = _lake(ctx, as_of)
    if no_cache:
        lake.analysis_cache = False
    with _progress() as progress:
        task: list[Any] = []

        def tick(done: int, total: int) -> None:
            if not task:
                task.append(progress.add_task("analysis cache of prompts", total=total))
            progress.update(task[0], completed=done, total=total)

        table = run_query(lake, sql, write=write, progress=tick)
    emit(table, fmt, output=output)


@click.command(name="cache")
@click.option("--build", is_flag=True, help="Build the copy of the current version now.")
@click.option("--clear", is_flag=True, help="Delete every copy (they are rebuilt on demand).")
@format_option()
@click.pass_context
def cache_cmd(ctx: click.Context, build: bool, clear: bool, fmt: str) -> None:
    """The analysis cache: Parquet copies of prompts that SQL reads (see docs/sql.md)."""
    from .. import analysis_cache

    lake = _lake(ctx)
    if clear:
        freed = analysis_cache.clear(lake)
        click.echo(f"deleted the analysis cache of {lake.uri} ({freed:,} bytes)", err=True)
    if build:
        with _progress() as progress:
            task = progress.add_task("analysis cache of prompts", total=None)
            path = analysis_cache.build(
                lake, "prompts", lambda d, t: progress.update(task, completed=d, total=t))
        click.echo(f"built {path}", err=True)
    emit(analysis_cache.status_table(lake), fmt, title=f"analysis cache of {lake.uri} (in {analysis_cache.cache_dir(lake)})")


@click.command(name="log")
@format_option()
@click.option("--all", "show_all", is_flag=True, help="Show params and messages too.")
@click.pass_context
def log_cmd(ctx: click.Context, fmt: str, show_all: bool) -> None:
    """The batch log: id, kind, source, rows added, time, status."""
    lake = _lake(ctx)
    rows = []
    for b in lake.log():
        row = b.as_row()
        if show_all or fmt != "table":
            row.update({"params": b.params, "counts": b.counts, "versions": b.versions,
                        "source_sha256": b.source_sha256, "provenance": b.provenance})
        rows.append(row)
    emit(rows, fmt, title=f"batches of {lake.uri}")


@click.command()
@click.argument("a")
@click.argument("b")
@format_option()
@click.pass_context
def diff(ctx: click.Context, a: str, b: str, fmt: str) -> None:
    """Rows added, removed and changed per table between batches A and B."""
    lake = _lake(ctx)
    emit(lake.diff(a, b), fmt, title=f"{a} -> {b}")


@click.command()
@click.argument("batch")
@click.pass_context
def restore(ctx: click.Context, batch: str) -> None:
    """Make a new head equal to the lake right after BATCH (history is kept)."""
    lake = _lake(ctx)
    info = lake.restore(batch)
    click.echo(f"{info.batch_id}: the lake now equals {batch} (versions {info.versions})")


@click.command(name="sql-init")
@click.pass_context
def sql_init(ctx: click.Context) -> None:
    """Print the SQL that loads the lance extension and creates the views (any DuckDB 1.5.5)."""
    from ..sql import init_script

    click.echo(init_script(_lake(ctx)), nl=False)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("duckdb_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def shell(ctx: click.Context, duckdb_args: tuple[str, ...]) -> None:
    """Open the DuckDB CLI with the lake's views (extra args go to duckdb)."""
    import tempfile

    from ..sql import init_script

    exe = shutil.which("duckdb") or os.path.join(os.path.dirname(sys.executable), "duckdb")
    if not os.path.exists(exe):
        raise click.ClickException("the DuckDB CLI is missing: pip install duckdb-cli==1.5.5")
    script = init_script(_lake(ctx))
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write(script)
    try:
        code = subprocess.call([exe, "-init", fh.name, *duckdb_args])
    finally:
        os.unlink(fh.name)
    ctx.exit(code)


@click.command()
@click.option("--lake-dir", default=None, help="Where to build it (default: --lake).")
@click.option("--fresh/--keep", default=True, show_default=True, help="Delete an existing demo lake first.")
@click.pass_context
def demo(ctx: click.Context, lake_dir: str | None, fresh: bool) -> None:
    """Build a small demo lake from the bundled example data and show a summary."""
    from ..demo import build_demo

    summary = build_demo(lake_dir or ctx.obj["lake_uri"], fresh=fresh, echo=click.echo)
    for title, table in summary:
        emit(table, "table", title=title)


def register(group: click.Group) -> None:
    for cmd in (init, ingest, query, cache_cmd, log_cmd, diff, restore, sql_init, shell, demo):
        group.add_command(cmd)
