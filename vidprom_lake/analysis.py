"""The lake at a glance: the numbers `vidlake stats` prints and the report starts with.

Every figure comes from the SQL views in ``sql/`` (70-79 are the analysis views), run over one
DuckDB connection, so the same numbers are one ``vidlake query`` away. Only cheap views are used
here (no tokenising, no medians), which keeps `stats` fast on a full VidProM-sized lake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .schema import field_meta, is_vector_field

if TYPE_CHECKING:
    from .lake import Lake

# (section, SQL) in display order; every query is a plain read of the views.
STATS_QUERIES: list[tuple[str, str]] = [
    ("sources", """
        SELECT source, count(*) AS prompts,
               count(time) AS with_time,
               min(time)::DATE AS first_day, max(time)::DATE AS last_day,
               count(toxicity) AS nsfw_scored,
               count(unique_semantic) AS dedup_checked,
               count(*) FILTER (WHERE unique_semantic) AS semantic_unique
        FROM prompts GROUP BY source ORDER BY prompts DESC, source"""),
    ("videos per model", "SELECT model, videos, prompts, prompt_coverage, bytes, avg_duration_s, "
                         "with_thumbnail FROM videos_per_model"),
    ("prompts by number of videos", "SELECT * FROM prompt_video_counts"),
    ("nsfw shares", "SELECT * FROM nsfw_shares"),
    ("semantic unique share", "SELECT * FROM semantic_unique_share"),
    ("batches", "SELECT batch_id, kind, status, rows_added, rows_updated, time "
                "FROM batches ORDER BY batch_id DESC LIMIT 10"),
]


def _totals(lake: Lake, con: Any) -> pa.Table:
    prompts, sources, first, last = con.execute(
        "SELECT count(*), count(DISTINCT source), min(time)::DATE, max(time)::DATE FROM prompts"
    ).fetchone()
    videos, models, size = con.execute(
        "SELECT count(*), count(DISTINCT model), coalesce(sum(bytes), 0) FROM videos").fetchone()
    batches = con.execute("SELECT count(*) FROM batches WHERE status = 'committed'").fetchone()[0]
    rows: list[dict[str, Any]] = [
        {"metric": "prompts", "value": f"{prompts:,}"},
        {"metric": "sources", "value": str(sources)},
        {"metric": "time span", "value": f"{first} .. {last}" if first else "-"},
        {"metric": "videos", "value": f"{videos:,}"},
        {"metric": "video models", "value": str(models)},
        {"metric": "video bytes", "value": f"{size:,}"},
        {"metric": "committed batches", "value": str(batches)},
    ]
    for f in lake.dataset("prompts").schema:
        if is_vector_field(f):
            meta = field_meta(f)
            rows.append({"metric": f"vector column {f.name}",
                         "value": f"{f.type.list_size}-d, model {meta.get('vidlake:model', '?')}"})
    return pa.Table.from_pylist(rows)


def connect(lake: Lake) -> Any:
    """A private DuckDB connection with the lake's views, reading the Lance datasets (pinned at
    the lake's head) as Arrow datasets.

    This is how `sql.connect` reads a pinned lake; it skips loading the 250 MB lance extension,
    which alone costs about 3 s of wall time per process (more than the whole of `stats`). The
    views are the same files (sql/*.sql), so the numbers are the same as `vidlake query`'s.
    """
    import duckdb

    from . import analysis_cache
    from .schema import VIDEO_BLOB_COLUMN
    from .sql import _batches_until, view_statements

    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    con.register("__prompts_ds", lake.dataset("prompts"))
    con.register("__videos_ds", lake.dataset("videos"))
    con.register("__batches_ds", _batches_until(lake))
    vcols = ", ".join('"' + f.name.replace('"', '""') + '"' for f in lake.dataset("videos").schema
                      if f.name != VIDEO_BLOB_COLUMN)
    con.execute("CREATE VIEW prompts_raw AS SELECT * FROM __prompts_ds")
    con.execute(f"CREATE VIEW videos_raw AS SELECT {vcols} FROM __videos_ds")
    con.execute("CREATE VIEW batches_raw AS SELECT * FROM __batches_ds")
    for stmt in view_statements(lake, analysis_cache.current(lake, "prompts")):
        con.execute(stmt)
    return con


def stats(lake: Lake) -> list[tuple[str, pa.Table]]:
    """(title, table) sections: totals, sources, coverage per model, NSFW shares, batches."""
    con = connect(lake)
    try:
        out = [("totals", _totals(lake, con))]
        for title, sql in STATS_QUERIES:
            out.append((title, con.execute(sql).to_arrow_table()))
        return out
    finally:
        con.close()


def stats_long(sections: list[tuple[str, pa.Table]]) -> pa.Table:
    """All sections in one long table (section, row, column, value) for csv/json output."""
    rows = []
    for title, table in sections:
        for i, r in enumerate(table.to_pylist()):
            for k, v in r.items():
                rows.append({"section": title, "row": i, "column": k,
                             "value": None if v is None else str(v)})
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("section", pa.string()), ("row", pa.int64()), ("column", pa.string()),
        ("value", pa.string())]))
