"""What changed between two batches, per table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .lake import DATA_TABLES, batch_number

if TYPE_CHECKING:
    from .lake import Lake

KEYS = {"prompts": "uuid", "videos": "video_id"}


def diff(lake: Lake, a: str, b: str) -> list[dict[str, Any]]:
    """Rows added, removed and changed per table between batches `a` and `b`.

    "Changed" counts rows present at both points whose non-key columns differ (enrichments,
    dedup results); it is computed by DuckDB over the two pinned versions, by key.
    """
    import duckdb

    va, vb = lake.versions_at(a), lake.versions_at(b)
    between = [
        info for info in lake.log()
        if batch_number(a) < batch_number(info.batch_id) <= batch_number(b)
    ] if batch_number(a) <= batch_number(b) else []
    out = []
    for table in DATA_TABLES:
        key = KEYS[table]
        da, db = lake._open(table, va[table]), lake._open(table, vb[table])
        con = duckdb.connect(":memory:")
        common = [
            f.name for f in da.schema
            if f.name in db.schema.names and f.name != key and "blob" not in str(f.type)
            and f.name != "video" and not str(f.type).startswith("fixed_size_list")
        ]
        # Vectors are compared by presence only: reading 20 GB of them for a diff is not worth
        # it, and every batch that rewrites vectors says so in the log (listed in `batches`).
        vec = [f.name for f in db.schema if str(f.type).startswith("fixed_size_list")]
        vec_a = [v for v in vec if v in da.schema.names]
        con.register("ta", da.scanner(columns=[key, *common, *vec_a]).to_reader())
        con.register("tb", db.scanner(columns=[key, *common, *vec]).to_reader())
        pres_a = "".join(f', "{v}" IS NOT NULL AS "{v}"' for v in vec_a)
        pres_b = "".join(f', "{v}" IS NOT NULL AS "{v}"' for v in vec)
        plain = ", ".join(f'"{c}"' for c in [key, *common])
        con.execute(f"CREATE TEMP TABLE a AS SELECT {plain}{pres_a} FROM ta")
        con.execute(f"CREATE TEMP TABLE b AS SELECT {plain}{pres_b} FROM tb")
        cols_a = [key, *common, *vec_a]
        cols_b = [key, *common, *vec]
        rows_a = _one(con, "SELECT count(*) FROM a")
        rows_b = _one(con, "SELECT count(*) FROM b")
        added = _one(con, f'SELECT count(*) FROM b ANTI JOIN a USING ("{key}")')
        removed = _one(con, f'SELECT count(*) FROM a ANTI JOIN b USING ("{key}")')
        cmp_cols = [c for c in cols_b if c != key]
        cond = " OR ".join(
            f'a."{c}" IS DISTINCT FROM b."{c}"' if c in cols_a
            else (f'b."{c}"' if c in vec else f'b."{c}" IS NOT NULL')
            for c in cmp_cols
        ) or "false"
        changed = _one(con, f'SELECT count(*) FROM a JOIN b USING ("{key}") WHERE {cond}')
        con.close()
        out.append({
            "table": table, "from": a, "to": b,
            "version_from": va[table], "version_to": vb[table],
            "rows_from": rows_a, "rows_to": rows_b,
            "added": added, "removed": removed, "changed": changed,
            "batches": ", ".join(f"{i.batch_id}:{i.kind}" for i in between),
        })
    return out


def _one(con: Any, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0
