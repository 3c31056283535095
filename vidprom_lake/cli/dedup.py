"""Dedup commands: dedup, similar, dupes, index."""

from __future__ import annotations

import json
from typing import Any

import click

from .render import emit, format_option, progress_bar


def _lake(ctx: click.Context) -> Any:
    from ..lake import open_lake

    return open_lake(ctx.obj["lake_uri"])


def _progress(label: str) -> Any:
    return progress_bar(label, "prompts")


@click.command()
@click.option("--threshold", type=float, default=0.8, show_default=True,
              help="Cosine similarity at or above which a prompt is a duplicate.")
@click.option("--exact", is_flag=True, help="Brute force in blocks (for checking and small lakes).")
@click.option("--column", default="embedding", show_default=True, help="Vector column to use.")
@click.option("--recompute", is_flag=True, help="Decide every prompt again, ignoring earlier runs.")
@click.option("--check-sample", type=int, default=1000, show_default=True,
              help="Approximate mode: prompts checked exactly to estimate recall (0: none).")
@click.option("--nprobe", type=int, default=None,
              help="Approximate mode: most cells probed per prompt (the measured probe gap "
                   "decides how many; default 64).")
@click.option("--partitions", type=int, default=None, help="Approximate mode: k-means partitions.")
@click.option("--reduced-dims", type=int, default=None,
              help="Approximate mode: PCA dimensions for candidates (default 128 or 256).")
@click.option("--sketch-dims", type=int, default=512, show_default=True,
              help="Approximate mode: bits of the residual sign sketch (0: bound only).")
@click.option("--memory-gb", type=float, default=None,
              help="Memory for the exact mode's kept set before it streams it from disk.")
@click.option("--dry-run", is_flag=True, help="Decide and report, but write nothing.")
@format_option()
@click.pass_context
def dedup(ctx: click.Context, threshold: float, exact: bool, column: str, recompute: bool,
          check_sample: int, nprobe: int | None, partitions: int | None,
          reduced_dims: int | None, sketch_dims: int, memory_gb: float | None, dry_run: bool, fmt: str) -> None:
    """Mark semantically unique prompts (VidProS): earliest prompt wins, in time order.

    Incremental: only prompts not decided yet (and any later than a new one) are decided.
    """
    from ..dedup import DEFAULT_MEMORY_GB
    from ..dedup import dedup as run

    lake = _lake(ctx)
    with _progress("dedup") as progress:
        task = progress.add_task("dedup", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = run(lake, threshold, exact, column=column, recompute=recompute,
                     check_sample=check_sample, nprobe=nprobe, partitions=partitions,
                     reduced_dims=reduced_dims, sketch_dims=sketch_dims,
                     memory_gb=memory_gb or DEFAULT_MEMORY_GB, dry_run=dry_run, progress=tick)
    if fmt == "table":
        if report.recompute:
            click.echo(f"note: {report.recompute}", err=True)
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        emit(report.summary_rows(), "table", title="dedup" + (" (dry run)" if dry_run else ""))
    else:
        emit([{k: json.dumps(v, default=str) if isinstance(v, dict | list) else v
               for k, v in report.as_dict().items()}], fmt)


@click.command()
@click.argument("text", required=False)
@click.option("--uuid", "uuid_", default=None, help="Find prompts like this prompt.")
@click.option("--vector", default=None, help="A query vector as a JSON list of numbers.")
@click.option("-k", "k", type=int, default=10, show_default=True, help="How many results.")
@click.option("--where", default=None, help="SQL filter on prompts, e.g. \"toxicity < 0.1\".")
@click.option("--column", default="embedding", show_default=True, help="Vector column to search.")
@click.option("--nprobes", type=int, default=None, help="Index partitions to search.")
@click.option("--refine-factor", type=int, default=None, help="Re-rank k*this candidates exactly.")
@click.option("--exact", is_flag=True, help="Scan every vector instead of using the index.")
@format_option()
@click.pass_context
def similar(ctx: click.Context, text: str | None, uuid_: str | None, vector: str | None, k: int,
            where: str | None, column: str, nprobes: int | None, refine_factor: int | None,
            exact: bool, fmt: str) -> None:
    """Prompts most similar to TEXT, to --uuid's prompt, or to --vector."""
    from ..errors import VidlakeError
    from ..index import similar as run

    vec = None
    if vector is not None:
        try:
            vec = json.loads(vector)
        except json.JSONDecodeError as exc:
            raise VidlakeError(f"--vector must be a JSON list of numbers: {exc}") from None
    table = run(_lake(ctx), text=text, uuid=uuid_, vector=vec, k=k, where=where, column=column,
                nprobes=nprobes, refine_factor=refine_factor, exact=exact)
    emit(table, fmt, title="similar prompts")


@click.command()
@click.option("--top", type=int, default=20, show_default=True, help="How many groups.")
@click.option("--examples", type=int, default=3, show_default=True,
              help="Duplicates shown per group (the most similar first).")
@format_option()
@click.pass_context
def dupes(ctx: click.Context, top: int, examples: int, fmt: str) -> None:
    """The largest groups of near-duplicates found by `vidlake dedup`, with their prompts."""
    from ..index import dupes as run

    emit(run(_lake(ctx), top=top, examples=examples), fmt, title="near-duplicate groups")


@click.command()
@click.option("--column", default="embedding", show_default=True, help="Vector column to index.")
@click.option("--type", "index_type", default="auto", show_default=True,
              type=click.Choice(["auto", "IVF_PQ", "IVF_HNSW_SQ", "IVF_FLAT", "IVF_SQ", "IVF_RQ"],
                                case_sensitive=False),
              help="Vector index type; auto = IVF_RQ from 1024 dims up, IVF_PQ below.")
@click.option("--partitions", type=int, default=None, help="IVF partitions (default ~sqrt(rows)).")
@click.option("--sub-vectors", type=int, default=None, help="PQ sub-vectors (default dims/8 or /16).")
@click.option("--rebuild", is_flag=True, help="Rebuild indexes that are up to date too.")
@click.option("--no-vector", is_flag=True, help="Only the scalar indexes.")
@click.option("--no-scalar", is_flag=True, help="Only the vector index.")
@click.option("--list", "list_only", is_flag=True, help="List the indexes; build nothing.")
@format_option()
@click.pass_context
def index(ctx: click.Context, column: str, index_type: str, partitions: int | None,
          sub_vectors: int | None, rebuild: bool, no_vector: bool, no_scalar: bool,
          list_only: bool, fmt: str) -> None:
    """Build or refresh the vector index and the scalar indexes (uuid, time, prompt full text)."""
    from ..index import build_indexes, list_indexes

    lake = _lake(ctx)
    if list_only:
        emit(list_indexes(lake), fmt, title="indexes")
        return
    rows = build_indexes(lake, column, index_type=index_type, vector=not no_vector,
                         scalar=not no_scalar, rebuild=rebuild, num_partitions=partitions,
                         num_sub_vectors=sub_vectors)
    emit(rows, fmt, title="indexes")


def register(group: click.Group) -> None:
    for cmd in (dedup, similar, dupes, index):
        group.add_command(cmd)
