"""`vidlake demo`: build a small lake from the bundled example files and summarise it.

Everything runs offline on the embedded defaults (a local folder, local models). Each step is
an ordinary library call, so the demo doubles as an end-to-end check of a fresh install.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import storage
from .errors import VidlakeError
from .lake import Lake, create_lake

Step = Callable[[Lake], str]


def example_dir() -> Path:
    """The example data shipped in the repository (examples/data)."""
    here = Path(__file__).resolve().parent.parent / "examples" / "data"
    if not here.exists():
        raise VidlakeError(f"example data not found at {here}; run from a source checkout")
    return here


def _remove_old(uri: str) -> None:
    path = Path(uri)
    if not path.exists():
        return
    entries = {p.name for p in path.iterdir()}
    if entries and not ({"prompts.lance", "batches.lance"} <= entries):
        raise VidlakeError(f"{uri} exists and is not a VidLake lake; not deleting it")
    shutil.rmtree(path)


def steps(data: Path) -> list[tuple[str, Step]]:
    def ingest(name: str, **kw: Any) -> Step:
        def run(lake: Lake) -> str:
            r = lake.ingest(data / name, **kw)
            return f"{r.batch_id}: {r.rows_added:,} new prompts, {r.rows_updated:,} updated"
        return run

    out: list[tuple[str, Step]] = [
        ("VidProM CSV", ingest("VidProM_sample.csv")),
        ("VidProM-layout HDF5 embeddings", ingest("VidProM_sample_embed.h5", column="embedding_demo")),
        ("DiffusionDB metadata parquet", ingest("diffusiondb_sample.parquet")),
        ("generic JSONL", ingest("prompts.jsonl", prompt_column="text", time_column="created_at",
                                 source="jsonl-example")),
    ]
    out += _optional_steps()
    return out


def _optional_steps() -> list[tuple[str, Step]]:
    """Later capabilities (embeddings, dedup, videos) join the demo when installed."""
    extra: list[tuple[str, Step]] = []
    try:
        from .demo_steps import optional_steps  # type: ignore[import-not-found]
    except ImportError:
        return extra
    return [*extra, *optional_steps()]


def build_demo(uri: str, *, fresh: bool = True,
               echo: Callable[[str], None] = print) -> list[tuple[str, pa.Table]]:
    root = storage.normalize(uri)
    if fresh and not storage.is_remote(root):
        _remove_old(root)
    lake = create_lake(root, exist_ok=not fresh)
    echo(f"building the demo lake at {root}")
    for title, step in steps(example_dir()):
        echo(f"  {title}: {step(lake)}")
    return summary(lake)


def summary(lake: Lake) -> list[tuple[str, pa.Table]]:
    q = lake.query
    return [
        ("prompts per source", q(
            "SELECT source, count(*) AS prompts, min(time)::DATE AS first, max(time)::DATE AS last, "
            "round(avg(length(prompt)), 1) AS avg_chars, count(flags) AS with_pika_flags "
            "FROM prompts GROUP BY source ORDER BY prompts DESC")),
        ("NSFW: share of prompts above 0.5", q(
            "SELECT category, count(*) AS scored, round(100.0 * avg((score > 0.5)::INT), 2) AS pct_above_half "
            "FROM nsfw GROUP BY category ORDER BY category")),
        ("a few prompts, cleaned, with their Pika flags", q(
            "SELECT left(prompt_clean, 60) AS prompt_clean, flags.aspect_ratio AS ar, "
            "flags.motion AS motion, flags.negative AS neg FROM prompts "
            "WHERE flags IS NOT NULL ORDER BY time LIMIT 5")),
        ("batches", q("SELECT batch_id, kind, status, rows_added, rows_updated, source FROM batches")),
    ]
