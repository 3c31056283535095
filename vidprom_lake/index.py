"""Indexes on the prompts table, similarity search, and near-duplicate groups.

* `build_indexes`: a Lance vector index on the embedding column (cosine) plus scalar indexes
  where they pay: BTREE on ``uuid`` (lookups) and ``time`` (ranges), INVERTED on ``prompt``
  (full-text search, also ``lance_fts`` from SQL). Built uncommitted and committed as one lake
  batch, so the batch log records them like any other write.
* `similar`: the k prompts nearest to a text (embedded with the column's own model), a uuid
  or a vector, with an optional SQL filter; uses the vector index when there is one, else an
  exact scan.
* `dupes`: the largest groups of near-duplicates that the last `dedup` found.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .errors import QueryError, SchemaError, VidlakeError
from .schema import field_meta, is_vector_field

if TYPE_CHECKING:
    from .lake import Lake

DEFAULT_COLUMN = "embedding"
SCALAR_INDEXES: tuple[tuple[str, str], ...] = (
    ("uuid", "BTREE"), ("time", "BTREE"), ("prompt", "INVERTED"),
)
VECTOR_INDEX_TYPES = ("IVF_PQ", "IVF_HNSW_SQ", "IVF_FLAT", "IVF_SQ", "IVF_RQ")
#: `auto` picks IVF_RQ (1-bit RaBitQ codes) from this many dimensions up, IVF_PQ below.
#: Measured (benchmarks/results/dedup.md): on 300k x 3072 IVF_PQ with 16-d sub-vectors
#: reached recall@10 0.82-0.95 after 434 s of building, IVF_RQ 0.97-0.98 after 65 s, both at
#: ~8% of partitions probed and refine 20; at 384 dims IVF_PQ (8-d sub-vectors) reaches 0.99.
RQ_MIN_DIMS = 1024
#: Search-time defaults per index type (measured in benchmarks/bench_dedup.py).
SEARCH_DEFAULTS: dict[str, dict[str, int]] = {
    "IVF_PQ": {"nprobes": 32, "refine_factor": 20},  # recall@10 0.978 at 100k x 384
    "IVF_SQ": {"nprobes": 32, "refine_factor": 5},
    # Recall comes from the probes: at 1.67M x 3072 refine 5, 10 and 20 found the same
    # neighbours, each re-ranked row costs ~50 us, and what a probe count buys varies between
    # index builds; 6% (78 probes there) kept recall@10 >= 0.95 at p50 < 20 ms on every build
    # measured (benchmarks/results/dedup.md, "similar defaults").
    "IVF_RQ": {"nprobes": 32, "refine_factor": 5, "probe_permille": 60},
    "IVF_FLAT": {"nprobes": 32},
    "IVF_HNSW_SQ": {"nprobes": 16, "refine_factor": 5},
}
RESULT_COLUMNS = ["uuid", "time", "prompt", "unique_semantic"]


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def index_name(column: str) -> str:
    return f"{column}_idx"


def _vector_field(lake: Lake, column: str) -> pa.Field:
    ds = lake.dataset("prompts")
    if column not in ds.schema.names or not is_vector_field(ds.schema.field(column)):
        vecs = [f.name for f in ds.schema if is_vector_field(f)]
        raise SchemaError(
            f"the prompts table has no vector column {column!r} "
            f"({'vector columns: ' + ', '.join(vecs) if vecs else 'it has none'}); attach "
            "embeddings first (`vidlake ingest VidProM_embed.hdf5` or `vidlake embed`)")
    return ds.schema.field(column)


def list_indexes(lake: Lake) -> list[dict[str, Any]]:
    """Every index on the prompts table: name, columns, type, rows covered, rows in the table."""
    ds = lake.dataset("prompts")
    total = ds.count_rows()
    out = []
    for d in ds.describe_indices():
        out.append({"name": d.name, "columns": ",".join(d.field_names),
                    "type": d.type_url.rsplit(".", 1)[-1].replace("IndexDetails", "")
                    .replace("Details", ""), "rows_indexed": d.num_rows_indexed, "rows": total})
    return out


def default_nprobes(kind: str, partitions: int) -> int:
    """Partitions `similar` probes by default: a share of them (`probe_permille`, default 8%,
    which kept recall@10 >= 0.95 for IVF_PQ at 384 dims; 6% for IVF_RQ, whose 1-bit codes
    rank well enough that a small re-ranking keeps what the probes find), at least the
    type's `nprobes`."""
    d = SEARCH_DEFAULTS.get(kind.upper(), {})
    return max(d.get("nprobes", 32), math.ceil(d.get("probe_permille", 80) * partitions / 1000))


def auto_index_type(dim: int) -> str:
    """The vector index `vidlake index` builds by default for `dim`-dimensional vectors."""
    return "IVF_RQ" if dim >= RQ_MIN_DIMS else "IVF_PQ"


def _vector_params(n: int, dim: int, index_type: str, num_partitions: int | None,
                   num_sub_vectors: int | None) -> dict[str, Any]:
    p: dict[str, Any] = {"num_partitions": num_partitions or int(max(1, min(4096, round(math.sqrt(n)))))}
    if index_type == "IVF_RQ":
        p["num_bits"] = 1  # 1 bit per dimension (RaBitQ); the refine step re-ranks exactly
    if index_type in ("IVF_PQ", "IVF_HNSW_PQ"):
        if num_sub_vectors is None:
            # 8-d sub-vectors up to 512-d vectors, 16-d above: the usual recall/size trade-off
            sub = 8 if dim <= 512 else 16
            num_sub_vectors = dim // sub if dim % sub == 0 else dim // 4 if dim % 4 == 0 else 1
        p["num_sub_vectors"] = num_sub_vectors
    return p


def build_indexes(
    lake: Lake,
    column: str = DEFAULT_COLUMN,
    *,
    index_type: str = "auto",
    vector: bool = True,
    scalar: bool = True,
    rebuild: bool = False,
    num_partitions: int | None = None,
    num_sub_vectors: int | None = None,
) -> list[dict[str, Any]]:
    """Build or refresh the vector index on `column` and the scalar indexes, as one batch.

    An index that already covers every row is left alone unless `rebuild`; one that misses
    rows (new prompts arrived) is rebuilt over all of them. Returns one row per index with
    what happened to it.
    """
    import lance

    index_type = index_type.upper()
    if index_type != "AUTO" and index_type not in VECTOR_INDEX_TYPES:
        raise VidlakeError(f"unknown vector index type {index_type!r}; choose auto or one of "
                           f"{', '.join(VECTOR_INDEX_TYPES)}")
    ds = lake.dataset("prompts")
    n = ds.count_rows()
    if n == 0:
        raise VidlakeError("the prompts table is empty: nothing to index (ingest prompts first)")
    existing = {d.name: d for d in ds.describe_indices()}
    frags = [f.fragment_id for f in ds.get_fragments()]
    plans: list[tuple[str, str, str, dict[str, Any]]] = []
    report: list[dict[str, Any]] = []
    if vector:
        f = _vector_field(lake, column)
        if index_type == "AUTO":
            index_type = auto_index_type(f.type.list_size)
        nvec = ds.count_rows(filter=f"{_q(column)} IS NOT NULL")
        if nvec < 256:
            raise VidlakeError(f"only {nvec} prompts have a {column} vector; a vector index needs "
                               "at least 256 (searches without one are exact scans anyway)")
        params = _vector_params(nvec, f.type.list_size, index_type, num_partitions, num_sub_vectors)
        plans.append((index_name(column), column, index_type, {"metric": "cosine", **params}))
    if scalar:
        for col, kind in SCALAR_INDEXES:
            plans.append((f"{col}_idx", col, kind, {}))
    new = []
    for name, col, kind, params in plans:
        old = existing.get(name)
        if old is not None and not rebuild and old.num_rows_indexed >= n:
            report.append({"index": name, "column": col, "type": kind, "action": "up to date",
                           "rows": old.num_rows_indexed, "seconds": 0.0, "params": ""})
            continue
        t0 = time.perf_counter()
        try:
            idx = ds.create_index_uncommitted(col, kind, name=name, fragment_ids=frags,
                                              replace=old is not None, **params)
            if kind == "INVERTED":
                # an uncommitted full-text index is written in parts; merge them or Lance
                # cannot read it ("tokens.lance not found")
                ds.merge_index_metadata(str(idx.uuid), "INVERTED")
        except (ValueError, OSError, RuntimeError) as exc:
            raise VidlakeError(f"building the {kind} index on {col} failed: {exc}") from exc
        new.append(idx)
        report.append({"index": name, "column": col, "type": kind,
                       "action": "rebuilt" if old is not None else "built", "rows": n,
                       "seconds": round(time.perf_counter() - t0, 2),
                       "params": ", ".join(f"{k}={v}" for k, v in params.items())})
    if new:
        rebuilt = {r["index"] for r in report if r["action"] == "rebuilt"}
        removed = [i for name in sorted(rebuilt) for i in _as_index(existing[name])]
        with lake.batch("index", params={"column": column, "index_type": index_type,
                                         "indexes": [r["index"] for r in report
                                                     if r["action"] != "up to date"]}) as b:
            b.stage("prompts", lance.LanceOperation.CreateIndex(new, removed), ds.version)
            b.counts.update({"indexes": len(new)})
    return report


def _as_index(desc: Any) -> list[Any]:
    """The segments of an existing index as `lance.dataset.Index` (to name them as removed)."""
    from lance.dataset import Index

    return [Index(uuid=seg.uuid, name=desc.name, fields=list(desc.fields),
                  dataset_version=seg.dataset_version_at_last_update,
                  fragment_ids=seg.fragment_ids, index_version=seg.index_version,
                  created_at=seg.created_at, base_id=seg.base_id,
                  covering_fields=list(seg.covering_fields or []))
            for seg in desc.segments]


# ---------------------------------------------------------------------------- similar
def embed_text(text: str, meta: dict[str, str]) -> np.ndarray:
    """Embed a query with the model that filled the column (the enrich registry, issue 4)."""
    spec = meta.get("vidlake:spec") or meta.get("vidlake:model")
    if not spec or spec == "unknown":
        raise VidlakeError("the embedding column does not say which model made it, so a text "
                           "query cannot be embedded the same way; use --uuid or --vector")
    try:
        from .enrich import resolve
    except ImportError as exc:  # pragma: no cover - enrich ships with the package
        raise VidlakeError("text queries need the embedder registry (vidprom_lake.enrich)") from exc
    enr, variant = resolve(spec, "embedder")
    options: dict[str, Any] = {}
    dims_param = meta.get("vidlake:dimensions_param")
    if dims_param and dims_param not in ("null", "None"):
        options["dimensions"] = int(dims_param)
    sess: Any = enr.open(variant, **options)
    try:
        res = sess.embed([text])
    finally:
        sess.close()
    if not bool(res.ok[0]):
        why = res.failures[0].error if res.failures else "no vector returned"
        raise VidlakeError(f"embedding the query with {spec} failed: {why}")
    return np.asarray(res.vectors[0], np.float32)


def _as_query_vector(vector: Any, dim: int) -> np.ndarray:
    try:
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise VidlakeError(f"--vector must be a list of numbers: {exc}") from exc
    if q.shape[0] != dim:
        raise VidlakeError(f"the query vector has {q.shape[0]} values; the column holds {dim}-d vectors")
    if not np.all(np.isfinite(q)) or not np.any(q):
        raise VidlakeError("the query vector must be finite and not all zeros")
    return q


def similar(
    lake: Lake,
    text: str | None = None,
    uuid: str | None = None,
    vector: Any = None,
    k: int = 10,
    where: str | None = None,
    *,
    column: str = DEFAULT_COLUMN,
    nprobes: int | None = None,
    refine_factor: int | None = None,
    exact: bool = False,
    columns: list[str] | None = None,
) -> pa.Table:
    """The `k` prompts most similar (cosine) to one query: `text`, `uuid` or `vector`.

    `where` is a SQL filter on the prompts table (``"toxicity < 0.1"``) applied before the
    search. With a uuid the prompt itself is left out. `exact=True` skips the index.
    Returns rank, similarity and the prompt's columns.
    """
    given = [x is not None for x in (text, uuid, vector)]
    if sum(given) != 1:
        raise VidlakeError("give exactly one query: a text, --uuid or --vector")
    if k < 1:
        raise VidlakeError(f"k must be at least 1, not {k}")
    f = _vector_field(lake, column)
    dim = f.type.list_size
    ds = lake.dataset("prompts")
    if uuid is not None:
        row = ds.to_table(columns=[column], filter=f"uuid = '{uuid.replace(chr(39), chr(39) * 2)}'",
                          limit=1)
        if row.num_rows == 0:
            raise VidlakeError(f"no prompt with uuid {uuid} in the lake")
        if row.column(0)[0].as_py() is None:
            raise VidlakeError(f"prompt {uuid} has no {column} vector (run `vidlake embed`)")
        q = np.asarray(row.column(0)[0].as_py(), np.float32)
    elif vector is not None:
        q = _as_query_vector(vector, dim)
    else:
        assert text is not None
        q = _as_query_vector(embed_text(text, field_meta(f)), dim)
    names = [c for c in (columns or RESULT_COLUMNS) if c in ds.schema.names]
    idx = _vector_index(ds, column)
    kind = str(idx.index_type).upper() if idx is not None else None
    nearest: dict[str, Any] = {"column": column, "q": q, "k": k + (1 if uuid else 0),
                               "metric": "cosine"}
    if idx is not None and not exact:
        d = SEARCH_DEFAULTS.get(kind or "", {})
        nearest["nprobes"] = nprobes or default_nprobes(kind or "", _num_partitions(ds, idx.name))
        rf = refine_factor if refine_factor is not None else d.get("refine_factor")
        if rf:
            nearest["refine_factor"] = rf
    else:
        nearest["use_index"] = False
    try:
        res = ds.scanner(columns=[*names, "_distance"], nearest=nearest, filter=where,
                         prefilter=bool(where)).to_table()
    except (ValueError, OSError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0]
        if where:
            raise QueryError(f"the search failed; check --where {where!r}: {msg}") from exc
        raise VidlakeError(f"the search failed: {msg}") from exc
    if res.column("_distance").null_count:  # rows without a vector
        res = res.filter(res.column("_distance").is_valid())
    if uuid is not None:
        keep = np.array(res.column("uuid").to_pylist(), dtype=object) != uuid
        res = res.filter(pa.array(keep)).slice(0, k)
    sim = 1.0 - res.column("_distance").to_numpy(zero_copy_only=False).astype(np.float64)
    res = res.drop_columns(["_distance"])
    res = res.add_column(0, "similarity", pa.array(np.round(sim, 6), pa.float64()))
    res = res.add_column(0, "rank", pa.array(np.arange(1, res.num_rows + 1), pa.int32()))
    return res


_INDEX_CACHE: dict[tuple[str, int, str], Any] = {}


def _num_partitions(ds: Any, name: str) -> int:
    """IVF partitions of a vector index (its statistics are slow to read, so cached)."""
    key = (ds.uri, ds.version, "partitions:" + name)
    if key not in _INDEX_CACHE:
        try:
            stats = ds.stats.index_stats(name)
            n = int(stats.get("num_partitions") or stats["indices"][0].get("num_partitions") or 0)
        except (ValueError, OSError, RuntimeError, KeyError, IndexError, TypeError):
            n = 0
        _INDEX_CACHE[key] = n
    return int(_INDEX_CACHE[key])


def _vector_index(ds: Any, column: str) -> Any:
    """The vector index on `column` at this dataset version (cached: listing costs ~ms)."""
    key = (ds.uri, ds.version, column)
    if key not in _INDEX_CACHE:
        _INDEX_CACHE[key] = next((d for d in ds.describe_indices() if column in d.field_names
                                  and "Vector" in d.type_url), None)
    return _INDEX_CACHE[key]


# ---------------------------------------------------------------------------- dupes
def dupes(lake: Lake, top: int = 20, examples: int = 3) -> pa.Table:
    """The `top` largest near-duplicate groups: the kept prompt, how many duplicates point at
    it, their similarity range, and the `examples` most similar duplicates."""
    if top < 1:
        raise VidlakeError(f"--top must be at least 1, not {top}")
    ds = lake.dataset("prompts")
    if ds.count_rows(filter="unique_semantic IS NOT NULL") == 0:
        raise VidlakeError("no dedup results yet: run `vidlake dedup` first")
    sql = f"""
        WITH g AS (
            SELECT dup_of, count(*) AS duplicates, min(dup_similarity) AS min_similarity,
                   max(dup_similarity) AS max_similarity
            FROM prompts_raw WHERE unique_semantic = false AND dup_of IS NOT NULL
            GROUP BY dup_of ORDER BY duplicates DESC, dup_of LIMIT {int(top)}
        ), ex AS (
            SELECT dup_of, prompt, dup_similarity,
                   row_number() OVER (PARTITION BY dup_of ORDER BY dup_similarity DESC, uuid) AS rn
            FROM prompts_raw WHERE dup_of IN (SELECT dup_of FROM g)
        )
        SELECT CAST(row_number() OVER (ORDER BY g.duplicates DESC, g.dup_of) AS INTEGER) AS rank,
               g.dup_of AS uuid, k.prompt, g.duplicates + 1 AS group_size, g.duplicates,
               round(g.min_similarity, 4) AS min_similarity,
               round(g.max_similarity, 4) AS max_similarity,
               (SELECT list(ex.prompt ORDER BY ex.rn) FROM ex
                WHERE ex.dup_of = g.dup_of AND ex.rn <= {int(examples)}) AS examples
        FROM g JOIN prompts_raw k ON k.uuid = g.dup_of
        ORDER BY rank
    """
    return lake.query(sql)
