"""The analysis cache: a Parquet copy of the scalar columns of `prompts`, for SQL over the views.

Why: DuckDB reads Lance through an Arrow stream (or the lance extension) at a fixed cost per
column that a Parquet scan does not have. On 1.67M VidProM rows, reading the one `toxicity`
column through Lance takes 15-18 ms, more than DuckDB's whole `count(*) ... where toxicity >
0.5` over Parquet (10-12 ms), and decoding the `flags` struct takes ~180-230 ms against ~120 ms
for the whole `flags.aspect_ratio` histogram over Parquet (benchmarks/results/core.md). So
`vidlake query` keeps a Parquet copy of exactly what the `prompts` view shows (every column
but vectors), and the view reads that copy instead of Lance.

It can never be stale: a copy belongs to one Lance version of the table, named by that
version, the version's commit timestamp (microseconds) and its row count, and a connection
uses only the copy of the version it is pinned at. Every write or restore of `prompts`
commits a new version, so the next query that reads `prompts` builds a new copy (seconds at
full size, with a progress bar in the CLI) and later queries reuse it. Copies of older
versions are deleted when a new one is built, except the previous one (a reader still pinned
at it may be using it).

Where: ``<lake>/_cache/`` for a local lake (so it goes with the lake), or
``$XDG_CACHE_HOME/vidlake/<hash of the URI>/`` (default ``~/.cache``) for an object-store
lake; ``VIDLAKE_CACHE_DIR`` moves it (``<dir>/<hash of the URI>/``). Cost: about 0.45x the
size of ``prompts.lance`` without vectors (224 MB for 1.67M VidProM prompts).

Off: ``VIDLAKE_ANALYSIS_CACHE=off`` (or ``0``/``false``/``no``), ``open_lake(...,
analysis_cache=False)``, ``lake.analysis_cache = False``, or ``vidlake query --no-cache``;
queries then read Lance directly. Lakes pinned with ``--as-of`` use a copy only if one of that
exact version exists; they never build one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import storage
from .errors import VidlakeError
from .schema import is_vector_field

if TYPE_CHECKING:
    import lance

    from .lake import Lake

ENV_CACHE = "VIDLAKE_ANALYSIS_CACHE"
ENV_CACHE_DIR = "VIDLAKE_CACHE_DIR"
#: The tables that get a copy, and the view of `sql/` that reads it.
CACHED_VIEWS = {"prompts": "prompts"}
LOCAL_DIR = "_cache"
#: Copies kept per table: the newest and the one before it.
KEEP = 2

Progress = Callable[[int, int], None]

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class CacheError(VidlakeError):
    """The analysis cache could not be built (the query then reads Lance directly)."""


def enabled_by_default() -> bool:
    return os.environ.get(ENV_CACHE, "on").strip().lower() not in ("0", "off", "false", "no")


def cache_dir(lake: Lake) -> Path:
    """The folder holding this lake's copies (not created here)."""
    custom = os.environ.get(ENV_CACHE_DIR)
    tag = hashlib.sha256(lake.uri.encode()).hexdigest()[:16]
    if custom:
        return Path(custom).expanduser() / tag
    if not storage.is_remote(lake.uri):
        return Path(lake.uri) / LOCAL_DIR
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vidlake" / tag


def version_key(ds: lance.LanceDataset) -> str:
    """Names one version of one dataset: version, commit time (us) and rows of the manifest."""
    info: dict[str, Any] = dict(ds.get_version())
    when = info["timestamp"]
    stamp = int(when.timestamp() * 1_000_000) if hasattr(when, "timestamp") else int(when)
    rows = (info.get("metadata") or {}).get("total_rows", "x")
    return f"v{int(info['version'])}-{stamp}-{rows}"


def cache_path(lake: Lake, table: str = "prompts") -> Path:
    """Where the copy of `table` at the lake's pinned version lives (it may not exist)."""
    return cache_dir(lake) / f"{table}-{version_key(lake.dataset(table))}.parquet"


def columns(lake: Lake, table: str = "prompts") -> list[str]:
    """What the copy holds: every column of the table that the view shows (no vectors)."""
    return [f.name for f in lake.dataset(table).schema if not is_vector_field(f)]


def current(lake: Lake, table: str = "prompts") -> Path | None:
    """The copy of `table` at the lake's pinned version, if there is one and the cache is on."""
    if not lake.analysis_cache:
        return None
    path = cache_path(lake, table)
    return path if path.exists() else None


def ensure(lake: Lake, table: str = "prompts", progress: Progress | None = None) -> Path | None:
    """The current copy, built first if missing (only at the lake's head, never as of a batch).

    A copy that cannot be built (read-only folder, full disk) is reported as a warning and the
    query reads Lance instead: the cache only ever changes speed, never results.
    """
    if not lake.analysis_cache:
        return None
    found = current(lake, table)
    if found is not None or lake.as_of_batch:
        return found
    try:
        return build(lake, table, progress)
    except (OSError, CacheError) as exc:
        warnings.warn(f"analysis cache not built, reading Lance directly: {exc}", stacklevel=2)
        return None


def build(lake: Lake, table: str = "prompts", progress: Progress | None = None) -> Path:
    """Write the copy of `table` at the lake's pinned version (atomically) and prune old ones."""
    import duckdb
    import pyarrow as pa

    from .sql import _quote_ident, _sql_literal

    if table not in CACHED_VIEWS:
        raise CacheError(f"no analysis cache for table {table!r}; only {', '.join(CACHED_VIEWS)}")
    path = cache_path(lake, table)
    with _lock(str(path)):
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        ds = lake.dataset(table)
        cols = columns(lake, table)
        total = ds.count_rows()
        reader = ds.scanner(columns=cols).to_reader()

        def batches() -> Any:
            done = 0
            for batch in reader:
                done += batch.num_rows
                if progress:
                    progress(done, total)
                yield batch

        source = pa.RecordBatchReader.from_batches(reader.schema, batches())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        meta = {"vidlake_lake": lake.uri, "vidlake_table": table,
                "vidlake_version": version_key(ds)}
        kv = ", ".join(f"{k}: {_sql_literal(v)}" for k, v in meta.items())
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET enable_progress_bar = false")
            con.register("__cache_source", source)
            select = ", ".join(_quote_ident(c) for c in cols)
            con.execute(f"COPY (SELECT {select} FROM __cache_source) TO {_sql_literal(str(tmp))} "
                        f"(FORMAT parquet, KV_METADATA {{{kv}}})")
            os.replace(tmp, path)
        except duckdb.Error as exc:
            raise CacheError(f"cannot write {path}: {exc}") from exc
        finally:
            con.close()
            tmp.unlink(missing_ok=True)
        prune(lake, table, keep=path)
        return path


def prune(lake: Lake, table: str, keep: Path) -> None:
    """Delete copies of `table` other than `keep` and the newest before it."""
    others = sorted((p for p in files(lake) if p.name.startswith(f"{table}-v") and p != keep),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for p in others[KEEP - 1:]:
        p.unlink(missing_ok=True)


def files(lake: Lake) -> list[Path]:
    d = cache_dir(lake)
    return sorted(d.glob("*.parquet")) if d.is_dir() else []


@dataclass
class CacheFile:
    """One copy on disk (a row of `vidlake cache`)."""

    table: str
    version: int
    bytes: int
    current: bool
    path: str


_NAME = re.compile(r"^(\w+)-v(\d+)-\d+-\w+\.parquet$")


def status(lake: Lake) -> list[CacheFile]:
    """Every copy on disk for this lake: table, version, size, whether the head uses it."""
    now = {str(cache_path(lake, t)) for t in CACHED_VIEWS}
    out = []
    for p in files(lake):
        m = _NAME.match(p.name)
        if m:
            out.append(CacheFile(m.group(1), int(m.group(2)), p.stat().st_size, str(p) in now,
                                 str(p)))
    return out


def status_table(lake: Lake) -> Any:
    """`status` as an Arrow table (empty, with its columns, when there is no copy)."""
    import pyarrow as pa

    schema = pa.schema([("table", pa.string()), ("version", pa.int64()), ("bytes", pa.int64()),
                        ("current", pa.bool_()), ("path", pa.string())])
    return pa.Table.from_pylist([asdict(f) for f in status(lake)], schema=schema)


def clear(lake: Lake) -> int:
    """Delete every copy of this lake; returns the bytes freed."""
    freed = 0
    for p in files(lake):
        freed += p.stat().st_size
        p.unlink(missing_ok=True)
    return freed


def _lock(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


# ---------------------------------------------------------------------------- which SQL needs it
_VIEW_RE = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\s+)?VIEW\s+(\w+)", re.I)
_READERS: dict[str, frozenset[str]] = {}


def readers(table: str = "prompts") -> frozenset[str]:
    """Names whose reading reads the cached view: the view and every view built on it."""
    if table not in _READERS:
        from .sql import view_files

        deps: dict[str, set[str]] = {}
        for _, text in view_files():
            names = {m.group(1).lower() for m in _VIEW_RE.finditer(text)}
            used = _identifiers(re.sub(r"\{\{\w+\}\}", "x", text))
            for name in names:
                deps.setdefault(name, set()).update(used - {name})
        found = {CACHED_VIEWS[table]}
        grew = True
        while grew:
            more = {v for v, used in deps.items() if v not in found and used & found}
            found |= more
            grew = bool(more)
        _READERS[table] = frozenset(found)
    return _READERS[table]


def reads(sql: str, table: str = "prompts") -> bool:
    """Does `sql` mention the cached view or a view built on it? (Over-approximates.)"""
    try:
        return bool(_identifiers(sql) & readers(table))
    except Exception:  # an untokenisable query fails later with DuckDB's own message
        return False


@functools.lru_cache(maxsize=256)
def _identifiers(sql: str) -> frozenset[str]:
    import duckdb

    out = set()
    for start, kind in duckdb.tokenize(sql):
        if str(kind).rsplit(".", 1)[-1].lower() == "identifier":
            m = re.match(r'"((?:[^"]|"")*)"|(\w+)', sql[start:])
            if m:
                out.add((m.group(1) or m.group(2) or "").replace('""', '"').lower())
    return frozenset(out)
