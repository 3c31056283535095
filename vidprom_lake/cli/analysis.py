"""`vidlake stats`, `vidlake report`, `vidlake export`: the analysis command family."""

from __future__ import annotations

from typing import Any

import click

from .render import emit, format_option


def _lake(ctx: click.Context) -> Any:
    from ..lake import open_lake

    return open_lake(ctx.obj["lake_uri"])


@click.command()
@format_option()
@click.pass_context
def stats(ctx: click.Context, fmt: str) -> None:
    """Counts, coverage per model, NSFW shares, semantic-unique share and recent batches."""
    from ..analysis import stats as run
    from ..analysis import stats_long

    sections = run(_lake(ctx))
    if fmt == "table":
        for title, table in sections:
            emit(table, fmt, title=title)
    else:
        emit(stats_long(sections), fmt)


@click.command()
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(),
              help="HTML file to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--column", default=None, help="Vector column for the embedding map "
              "(default: embedding, else the first vector column).")
@click.option("--sample", default=2000, show_default=True, help="Prompts on the embedding map.")
@click.option("--clusters", default=8, show_default=True, help="k-means clusters on the map.")
@click.option("--thumbnails", "thumbs", default=24, show_default=True, help="Video thumbnails shown.")
@click.option("--seed", default=0, show_default=True, help="Sampling seed.")
@click.pass_context
def report(ctx: click.Context, output: str, force: bool, column: str | None, sample: int,
           clusters: int, thumbs: int, seed: int) -> None:
    """Write one self-contained HTML report (charts, embedding map, thumbnails; opens offline)."""
    from ..report import write_report

    r = write_report(_lake(ctx), output, force=force, column=column, sample=sample,
                     clusters=clusters, thumbs=thumbs, seed=seed)
    click.echo(f"wrote {r.output} ({r.bytes:,} bytes, {r.prompts_mapped:,} prompts on the map, "
               f"{r.thumbnails} thumbnails) in {r.seconds:.1f} s")


@click.command()
@click.option("--format", "export_fmt", type=click.Choice(["parquet", "webdataset", "mp4-dir", "hf"]),
              default="parquet", show_default=True, help="What to write.")
@click.option("-o", "--output", required=True, type=click.Path(), help="File (parquet) or folder; or s3://bucket/key (parquet), s3://bucket/prefix/.")
@click.option("--where", default=None, help="DuckDB filter: over `prompts` (parquet, hf) or "
              "`gallery` (webdataset, mp4-dir), e.g. \"unique_semantic and toxicity < 0.05\".")
@click.option("--limit", type=int, default=None, help="At most this many rows.")
@click.option("--shard-size", default=1000, show_default=True, help="Samples per webdataset shard.")
@click.option("--vectors", is_flag=True, help="parquet: include the vector columns.")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--report", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="How to print the export summary.")
@click.pass_context
def export(ctx: click.Context, export_fmt: str, output: str, where: str | None, limit: int | None,
           shard_size: int, vectors: bool, force: bool, fmt: str) -> None:
    """Export a subset to train on: parquet, webdataset shards, mp4 folder + captions, HF datasets."""
    from ..export import export as run
    from .core import _progress

    with _progress() as prog:
        task = prog.add_task(f"export {export_fmt}", total=limit)

        def tick(done: int, total: int | None) -> None:
            prog.update(task, completed=done, total=total)

        r = run(_lake(ctx), output, export_fmt, where=where, limit=limit, shard_size=shard_size,
                vectors=vectors, force=force, progress=tick)
    emit([r.as_dict()], fmt)


def register(group: click.Group) -> None:
    for cmd in (stats, report, export):
        group.add_command(cmd)
