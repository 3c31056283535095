"""Seed-dataset commands: compare-sources (prompts vs OpenVid/VidGen/MiraData captions)."""

from __future__ import annotations

from typing import Any

import click

from .render import emit, format_option


@click.command(name="compare-sources")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=None,
              help="Cosine similarity that counts as a near neighbour (default: dedup's 0.8).")
@click.option("--column", default="embedding", show_default=True, help="Vector column.")
@click.option("--sample", type=click.IntRange(min=0), default=10_000, show_default=True,
              help="Prompts per source compared exactly (0: all of them).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--no-overlap", is_flag=True, help="Only the SQL view (no vector search).")
@format_option()
@click.pass_context
def compare_sources(ctx: click.Context, threshold: float | None, column: str, sample: int,
                    seed: int, no_overlap: bool, fmt: str) -> None:
    """Per source: count, lengths, vocabulary, top words, and the share of prompts whose
    nearest neighbour in another source is above the threshold."""
    from ..ingest.seed_datasets import compare_sources as run
    from ..lake import open_lake

    lake = open_lake(ctx.obj["lake_uri"])
    rows: list[dict[str, Any]] = run(lake, with_overlap=not no_overlap, threshold=threshold,
                                     column=column, sample=sample or None, seed=seed)
    if fmt == "table":
        for r in rows:
            r["top_words"] = ", ".join(r.get("top_words") or [])
    emit(rows, fmt, title="source comparison")


def register(group: click.Group) -> None:
    group.add_command(compare_sources)
