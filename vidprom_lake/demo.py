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
    out += [
        ("local embeddings (all-MiniLM-L6-v2, offline)", _embed),
        ("semantic dedup (VidProS rule, threshold 0.8)", _dedup),
        ("example clips (PyAV-encoded, imported like a VidProM shard)", _clips),
    ]
    return out


def _embed(lake: Lake) -> str:
    from .enrich import embed

    r = embed(lake, "minilm")
    return f"{r.batch_id}: {r.rows_done:,} prompts embedded ({r.dims}-d) in {r.seconds:.1f} s"


def _dedup(lake: Lake) -> str:
    from .dedup import dedup

    r = dedup(lake, threshold=0.8, exact=True)
    return f"{r.batch_id}: {r.kept_total:,} semantically unique, {r.duplicates:,} near-duplicates"


def _clips(lake: Lake) -> str:
    """Six short clips for six prompts, written as a `pika-<uuid>.mp4` tar shard and imported."""
    import io
    import tarfile
    import tempfile

    import numpy as np

    from .video import import_videos
    from .video.encode import EncodeParams, encode_mp4

    uuids = [r["uuid"] for r in lake.query(
        "SELECT uuid FROM prompts WHERE source = 'vidprom' ORDER BY time LIMIT 6").to_pylist()]
    with tempfile.TemporaryDirectory() as tmp:
        shard = Path(tmp) / "pika_videos_demo.tar"
        with tarfile.open(shard, "w") as tar:
            for i, u in enumerate(uuids):
                t = np.arange(16)[:, None, None]
                y, x = np.mgrid[0:64, 0:96]
                frames = np.stack([(x + 6 * t) % 256, (y + 3 * t * (i + 1)) % 256,
                                   np.full_like(x + t, 40 * i)], axis=-1).astype(np.uint8)
                data = encode_mp4(frames, EncodeParams(fps=8.0))
                info = tarfile.TarInfo(f"pika-{u}.mp4")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        r = import_videos(lake, [shard], model="pika")
    return f"{r.batch_id}: {r.imported} clips imported ({r.bytes / 1024:.0f} KB)"


def build_demo(uri: str, *, fresh: bool = True,
               echo: Callable[[str], None] = print) -> list[tuple[str, pa.Table]]:
    root = storage.normalize(uri)
    if fresh and not storage.is_remote(root):
        _remove_old(root)
    lake = create_lake(root, exist_ok=not fresh)
    echo(f"building the demo lake at {root}")
    for title, step in steps(example_dir()):
        echo(f"  {title}: {step(lake)}")
    echo(f"next: vidlake --lake {root} report -o report.html   (or: serve, stats, query, shell)")
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
        ("nearest neighbours of the first prompt (cosine, local MiniLM embeddings)", _neighbours(lake)),
        ("semantic uniqueness per source", q(
            "SELECT source, count(*) AS prompts, count_if(unique_semantic) AS unique_semantic, "
            "round(100.0 * count_if(unique_semantic) / count(*), 1) AS pct FROM prompts "
            "GROUP BY source ORDER BY prompts DESC")),
        ("videos", q("SELECT model, count(*) AS videos, round(avg(duration_s), 2) AS avg_s, "
                     "sum(bytes) AS bytes, min(codec) AS codec FROM videos GROUP BY model")),
        ("batches", q("SELECT batch_id, kind, status, rows_added, rows_updated, "
                      "regexp_replace(coalesce(source, ''), '.*/', '') AS source FROM batches")),
    ]


def _neighbours(lake: Lake) -> pa.Table:
    from .index import similar

    first = lake.query("SELECT uuid FROM prompts WHERE source = 'vidprom' ORDER BY time LIMIT 1")
    hits = similar(lake, uuid=first.column("uuid")[0].as_py(), k=4)
    keep = [c for c in ("similarity", "prompt") if c in hits.column_names]
    t = hits.select(keep)
    return t.set_column(keep.index("prompt"), "prompt",
                        pa.array([p[:70] for p in t.column("prompt").to_pylist()]))
