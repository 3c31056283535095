"""The shared path of every prompt source: parse in DuckDB, validate, dedup, append one batch.

A format module turns its file into a DuckDB ``SELECT`` with normalised columns (see
`SourceQuery`); this module streams Arrow batches out of it, parses ctime text and computes
uuid5(prompt), the key hashes, the cleaned text and the flags per batch in compiled passes
(normalise.py), validates each row (with the file and row named in any error),
drops prompts already in the lake or already seen in the file, and appends the rest to the
``prompts`` table as one batch. Any error before the end commits nothing.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import heap
from ..errors import InputError
from ..schema import NSFW_LABELS, PROMPTS_SCHEMA
from .clean import sha1_sql, uuid5_sql
from .normalise import (
    canonical_uuids,
    clean_prompts,
    hash_keys,
    parse_ctime,
    uuid5_keys,
    warm_up_in_background,
)

if TYPE_CHECKING:
    import duckdb

    from ..lake import Lake

T = TypeVar("T")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DEFAULT_MAX_PROMPT_CHARS = 100_000
BATCH_ROWS = 65_536
MAX_REPORTED = 1000


@dataclass
class IngestOptions:
    source: str | None = None
    prompt_column: str | None = None
    time_column: str | None = None
    time_format: str | None = None
    uuid_column: str | None = None
    id_column: str | None = None
    skip_bad: bool = False
    strict_columns: bool = False
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    dry_run: bool = False
    # embeddings (HDF5)
    column: str = "embedding"
    dtype: str = "float32"
    model: str | None = None
    chunk_rows: int = 8192
    # Discord exports (ingest/discord.py)
    bot: str | None = None
    prompt_pattern: str | None = None
    since: Any = None  # date, datetime or ISO text
    until: Any = None
    keep_image_prompts: bool = False
    author_salt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[int, int | None], None] | None = None  # (done_units, total_units)


@dataclass
class IngestReport:
    path: str
    format: str
    batch_id: str | None = None
    rows_read: int = 0
    rows_added: int = 0
    rows_updated: int = 0
    already_in_lake: int = 0
    duplicates_in_file: int = 0
    uuid_mismatches: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    skipped_total: int = 0
    unknown_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    def skip(self, row: int | None, reason: str, **more: Any) -> None:
        self.skipped_total += 1
        if len(self.skipped) < MAX_REPORTED:
            self.skipped.append({"row": row, "reason": reason, **more})

    def counts(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "rows_added": self.rows_added,
            "rows_updated": self.rows_updated,
            "already_in_lake": self.already_in_lake,
            "duplicates_in_file": self.duplicates_in_file,
            "uuid_mismatches": self.uuid_mismatches,
            "skipped": self.skipped_total,
            "skipped_rows": self.skipped[:100],
            "unknown_columns": self.unknown_columns,
        }

    def as_dict(self) -> dict[str, Any]:
        d = {"path": self.path, "format": self.format, "batch_id": self.batch_id,
             **self.counts(), "seconds": round(self.seconds, 3), "notes": self.notes,
             "dry_run": self.dry_run}
        d["skipped_rows"] = self.skipped
        return d


@dataclass
class SourceQuery:
    """What a format hands the pipeline.

    ``sql`` selects, per input record: ``_row`` (1-based record number, may be NULL if the
    format cannot number records), ``prompt``, ``uuid_given``, ``time`` (TIMESTAMP or
    TIMESTAMPTZ, NULL if absent), ``time_bad`` (a value was given but did not parse),
    ``source_id``, ``occurrences``, ``extra`` (JSON text or NULL), the six NSFW labels as
    FLOAT and ``nsfw_bad``, and ``nsfw_model``.
    """

    con: duckdb.DuckDBPyConnection
    sql: str
    source: str
    aggregate: bool = False  # group records by uuid (earliest time wins, occurrences counted)
    total_bytes: int | None = None
    error_hint: Callable[[Exception], InputError] | None = None
    # uuid_given is the source's own id (e.g. uuid5 over a clip id), not uuid5(prompt): never
    # counted or flagged as a uuid mismatch. A query may also select ``bad_reason`` (VARCHAR,
    # NULL when the row is fine): a non-NULL value rejects the row with that reason.
    id_from_source: bool = False
    pika_flags: bool = True  # False: no Pika flag tail is cut or parsed (flags stay NULL)
    # set: ``time`` and ``time_bad`` are left to the pipeline, which parses ``time_raw`` with
    # this strptime format (ctime: a compiled pass, DuckDB's strptime for odd spellings)
    ctime_format: str | None = None
    # set: ``uuid_given`` is the text as written; the pipeline trims and lowercases it (and
    # makes '' NULL) per batch: a compiled check passes canonical uuids through as they are
    raw_uuids: bool = False

    @property
    def uuid5_in_batches(self) -> bool:
        """uuid5(prompt) and the key are computed per batch in the pipeline (compiled SHA-1),
        not in SQL: only a grouping query needs the key inside the query."""
        return not self.aggregate and not self.id_from_source


def read_ahead(items: Iterator[T], depth: int, name: str) -> Iterator[T]:
    """`items`, produced by a thread up to `depth` items ahead of the caller.

    The ingest is a chain of stages (DuckDB's parse, the per-batch kernels, Lance's encode and
    write) that each wait on the one before; a thread per stage lets them overlap on two
    cores. An exception in the thread is raised here, at the item where it happened; when
    the caller stops early the thread stops at its next item.
    """
    q: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[int, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((0, item)):
                    return
            put((1, None))
        except BaseException as exc:  # handed to the caller, raised there
            put((2, exc))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == 1:
                return
            if kind == 2:
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic GC off for a bulk write: it would walk every live object again and
    again while millions of short-lived Arrow wrappers come and go (~6% of an ingest's CPU);
    nothing a write makes holds reference cycles that matter, so it waits until the end."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class BackgroundHash:
    """A file's sha256, computed in a thread while the ingest works (hashlib releases the GIL
    on large buffers, so it costs no wall time on two cores). `result()` waits for it;
    `cancel()` stops the thread at its next read (a failed ingest does not hash on, and the
    interpreter does not wait for it at exit).

    ``low_priority``: on Linux the thread runs at nice +10, so that on a busy machine it takes
    the CPU the ingest's own stages leave (it is needed only at the commit).
    ``check``: called with (file offset, bytes) for every piece read, in file order (see
    `file_sha256`)."""

    def __init__(self, path: str | Path, *, low_priority: bool = False,
                 check: Callable[[int, memoryview], None] | None = None):
        from concurrent.futures import Future

        self._future: Future[str] = Future()
        self._stop = threading.Event()

        def run() -> None:
            if low_priority and sys.platform.startswith("linux"):
                with contextlib.suppress(OSError):  # a thread's own niceness, Linux only
                    tid = threading.get_native_id()
                    os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + 10)
            try:
                self._future.set_result(file_sha256(path, stop=self._stop, check=check))
            except BaseException as exc:  # handed to whoever waits for the result
                self._future.set_exception(exc)

        threading.Thread(target=run, name="vidlake-sha256", daemon=True).start()

    def result(self) -> str:
        return self._future.result()

    def cancel(self) -> None:
        self._stop.set()


class HashCancelled(Exception):
    """`file_sha256` was asked to stop."""


def file_sha256(path: str | Path, chunk: int = 1 << 18, *,
                stop: threading.Event | None = None,
                check: Callable[[int, memoryview], None] | None = None) -> str:
    """The file's sha256, read into one reused buffer small enough to stay in the CPU's cache
    (a fresh buffer per read, as ``fh.read`` gives, costs a third more here). With `stop`, it
    gives up (HashCancelled) once that is set. With `check`, each piece is also handed to
    ``check(offset, piece)`` while it is still in the cache (a second look at bytes a caller
    would otherwise read from memory again; the piece is only valid during the call)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    pos = 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            if stop is not None and stop.is_set():
                raise HashCancelled(str(path))
            h.update(view[:n])
            if check is not None:
                check(pos, view[:n])
            pos += n
    return h.hexdigest()


def _full_sql(q: SourceQuery) -> str:
    if q.uuid5_in_batches:  # uuid5, the key and the text hash come per batch, not from SQL
        return q.sql
    inner = f"SELECT *, {sha1_sql('prompt')} AS _h FROM ({q.sql}) AS src"
    inner = f"SELECT * EXCLUDE (_h), {uuid5_sql('_h')} AS uuid5 FROM ({inner}) AS h"
    keyed = f"SELECT *, coalesce(uuid_given, uuid5) AS _key FROM ({inner}) AS u"
    if q.id_from_source:  # the key is the source's id: no SHA-1 of every (long) caption
        keyed = f"SELECT *, uuid_given AS _key, uuid_given AS uuid5 FROM ({q.sql}) AS src"
    if q.aggregate:
        nsfw = ", ".join(f"arg_min({lab}, _ord) AS {lab}" for lab in NSFW_LABELS)
        keyed = (
            "SELECT min(_row) AS _row, arg_min(prompt, _ord) AS prompt, "
            "arg_min(uuid_given, _ord) AS uuid_given, min(time) AS time, "
            "bool_or(time_bad) AS time_bad, arg_min(source_id, _ord) AS source_id, "
            "sum(coalesce(occurrences, 1))::BIGINT AS occurrences, arg_min(extra, _ord) AS extra, "
            f"{nsfw}, bool_or(nsfw_bad) AS nsfw_bad, arg_min(nsfw_model, _ord) AS nsfw_model, "
            "_key, arg_min(uuid5, _ord) AS uuid5, "
            "count(DISTINCT prompt) AS _texts "
            f"FROM (SELECT *, (coalesce(time, TIMESTAMP '9999-12-31'), _row) AS _ord FROM ({keyed}) k) o "
            "GROUP BY _key ORDER BY _row"
        )
    # a 64-bit hash of the text lets the in-file dedup below run on integers in numpy (the
    # key's hash is computed per batch, hash_keys). The cleaned text and the flags are
    # computed later, on the rows that are kept (normalise.py: a compiled pass, ~5x cheaper
    # than the same rules in SQL).
    return f"SELECT *, hash(prompt) AS _hprompt FROM ({keyed}) AS k"


def parse_threads() -> int:
    """DuckDB's threads for a streamed parse: half the cores this process may run on, at least
    one. The parse is one stage of a chain whose other stages (keys, cleaning, Lance's encoder)
    keep the other cores busy; on two cores DuckDB's default of one thread a core made a full
    VidProM CSV ingest take 4-8% more CPU and wall time (2026-12-03, benchmarks/results/core.md)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


def _fetch(reader: pa.RecordBatchReader, q: SourceQuery, path: str) -> Iterator[pa.RecordBatch]:
    """The batches of the query's result, a DuckDB error turned into an InputError."""
    import duckdb

    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except duckdb.Error as exc:
            raise (q.error_hint(exc) if q.error_hint else InputError(str(exc), path=path)) from exc
        yield batch


def _ask_duckdb(con: duckdb.DuckDBPyConnection, values: pa.Array, select: str) -> pa.Table:
    """`select` (reading column ``s`` of table ``__odd``) over `values`: the rows a compiled
    pass could not decide go to DuckDB's own functions, so the result is what SQL would give."""
    con.register("__odd", pa.table({"s": values}))
    try:
        return con.execute(select).to_arrow_table()
    finally:
        con.unregister("__odd")


def _replace_at(column: pa.Array, at: np.ndarray, values: pa.Array) -> pa.Array:
    """`column` with the rows `at` replaced by `values` (in that order)."""
    mask = np.zeros(len(column), dtype=bool)
    mask[at] = True
    return pc.replace_with_mask(column, pa.array(mask), values.cast(column.type))


def _parse_times(batch: pa.RecordBatch, q: SourceQuery,
                 con: duckdb.DuckDBPyConnection) -> pa.RecordBatch:
    """Fill ``time`` and ``time_bad`` from ``time_raw`` (formats with ``ctime_format``); `con`
    parses the odd spellings (a cursor of the query's connection, which is busy streaming)."""
    raw = batch.column("time_raw")
    times, ok = parse_ctime(raw)
    valid = raw.is_valid().to_numpy(zero_copy_only=False)
    bad = np.zeros(batch.num_rows, dtype=bool)
    odd = np.flatnonzero(valid & ~ok)
    if len(odd):  # anything but the canonical spelling: DuckDB's strptime decides
        fmt = (q.ctime_format or "").replace("'", "''")
        r = _ask_duckdb(con, raw.take(pa.array(odd)),
                        "SELECT t, s <> '' AND t IS NULL AS bad FROM (SELECT trim(s) AS s, "
                        f"try_strptime(trim(s), '{fmt}')::TIMESTAMP AS t FROM __odd)")
        times = _replace_at(times, odd, r.column("t").combine_chunks())
        bad[odd] = r.column("bad").to_numpy(zero_copy_only=False)
    names = batch.schema.names
    batch = batch.set_column(names.index("time"), "time", times)
    return batch.set_column(names.index("time_bad"), "time_bad", pa.array(bad))


def _normalise_uuids(batch: pa.RecordBatch, con: duckdb.DuckDBPyConnection) -> pa.RecordBatch:
    """``uuid_given`` trimmed, lowercased and '' made NULL (formats with ``raw_uuids``), by the
    same DuckDB functions as in SQL, asked only about the values that are not canonical."""
    raw = batch.column("uuid_given")
    if not isinstance(raw, pa.Array):
        raw = raw.combine_chunks()
    odd = np.flatnonzero(raw.is_valid().to_numpy(zero_copy_only=False) & ~canonical_uuids(raw))
    if not len(odd):
        return batch
    r = _ask_duckdb(con, raw.take(pa.array(odd)), "SELECT nullif(trim(lower(s)), '') AS u FROM __odd")
    column = _replace_at(raw, odd, r.column("u").combine_chunks())
    return batch.set_column(batch.schema.get_field_index("uuid_given"), "uuid_given", column)


def _validate(
    batch: pa.RecordBatch, first_row: int, path: str, opts: IngestOptions, report: IngestReport
) -> pa.RecordBatch:
    """Row checks: raise InputError (or record and drop the row with skip_bad)."""
    n = batch.num_rows
    cols = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
    row_col = cols.get("_row")

    def row_of(i: int) -> int:
        r = row_col[i].as_py() if row_col is not None else None
        return r if r is not None else first_row + i

    prompt = cols["prompt"]
    bad = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}

    def flag(mask: np.ndarray, reason: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask & ~bad):
            reasons[int(i)] = reason(int(i))
        bad[mask] = True

    # byte lengths come from the offsets; characters are counted only where the bytes alone
    # exceed the limit (a character is at least one byte)
    nbytes = pc.binary_length(prompt)
    is_null = prompt.is_null().to_numpy(zero_copy_only=False)
    flag(is_null, lambda i: "empty prompt (no value)")
    # empty, or white space only (utf8_is_space is false for "")
    blank = (pc.or_(pc.equal(nbytes, 0), pc.utf8_is_space(prompt))
             .fill_null(False).to_numpy(zero_copy_only=False))
    flag(blank & ~is_null, lambda i: "empty prompt")
    lens = np.nan_to_num(nbytes.to_numpy(zero_copy_only=False).astype("float64"), nan=0)
    over = np.flatnonzero(lens > opts.max_prompt_chars)
    if len(over):
        lens[over] = pc.utf8_length(prompt.take(pa.array(over))).to_numpy(zero_copy_only=False)
    flag(lens > opts.max_prompt_chars,
         lambda i: f"prompt of {int(lens[i]):,} characters exceeds --max-prompt-chars {opts.max_prompt_chars:,}")
    if "time_bad" in cols:
        tb = cols["time_bad"].fill_null(False).to_numpy(zero_copy_only=False)
        raw = cols.get("time_raw")
        flag(tb, lambda i: f"bad timestamp {raw[i].as_py()!r}" if raw is not None else "bad timestamp")
    if "nsfw_bad" in cols:
        nb = cols["nsfw_bad"].fill_null(False).to_numpy(zero_copy_only=False)
        flag(nb, lambda i: "NSFW score is not a number in [0, 1]")
    if "bad_reason" in cols and cols["bad_reason"].null_count < n:
        br = cols["bad_reason"]
        flag(br.is_valid().to_numpy(zero_copy_only=False), lambda i: str(br[i].as_py()))
    if "_texts" in cols:
        dup = (cols["_texts"].to_numpy(zero_copy_only=False) > 1)
        flag(dup, lambda i: f"uuid {cols['_key'][i].as_py()} is given to different prompt texts")
    given = cols["uuid_given"]
    if given.null_count < n:  # UUID_RE, by a compiled check (the same set of strings)
        ok = canonical_uuids(given) | given.is_null().to_numpy(zero_copy_only=False)
        flag(~ok, lambda i: f"malformed uuid {given[i].as_py()!r}")

    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        if not opts.skip_bad:
            raise InputError(reasons[first] + " (use --skip-bad to skip bad rows and list them)",
                             path=path, row=row_of(first))
        for i in np.flatnonzero(bad):
            report.skip(row_of(int(i)), reasons[int(i)])
        batch = batch.filter(pa.array(~bad))
    return batch


class LakeKeys:
    """Which keys the lake already has.

    A small file into a big indexed lake (a day's export into VidProM's 1.67M prompts) asks
    the lake's uuid index for just its own keys: ~0.1 s, where reading and hashing every key
    of the lake takes 1-2 s. Otherwise, from the first batch that is not small on: a sorted
    array of `hash_keys(uuid)` values of the whole lake with the uuids in the same order, so a
    hash hit is confirmed on the string itself (a collision never drops a prompt). The keys
    this file already gave are in `_FileKeys`.
    """

    #: A batch of at most this many keys, into a lake with a uuid index and at least
    #: `PROBE_RATIO` times as many rows, is looked up through the index.
    PROBE_KEYS = 10_000
    PROBE_RATIO = 20

    def __init__(self, lake: Lake):
        self.ds = lake.dataset("prompts")
        self.n = self.ds.count_rows()
        self.indexed = self.n > 0 and any(
            d.name == "uuid_idx" for d in self.ds.describe_indices())
        self.lake_h: np.ndarray | None = None
        self.lake_u: pa.Array | None = None

    def in_lake(self, keys: pa.Array, hk: np.ndarray | None = None) -> np.ndarray:
        """Which `keys` the lake has; `hk` (their `hash_keys`) if the caller has them."""
        if not self.n:
            return np.zeros(len(keys), dtype=bool)
        if (self.lake_h is None and self.indexed and len(keys) <= self.PROBE_KEYS
                and len(keys) * self.PROBE_RATIO <= self.n and not keys.null_count
                and canonical_uuids(keys).all()):  # canonical: nothing to quote in the filter
            return self._probe(keys)
        if self.lake_h is None:
            self._load()
        return self._in_table(hash_keys(keys) if hk is None else hk, keys)

    def _probe(self, keys: pa.Array) -> np.ndarray:
        listed = ", ".join(f"'{k}'" for k in pc.unique(keys).to_pylist())
        found = self.ds.to_table(columns=["uuid"], filter=f"uuid IN ({listed})").column("uuid")
        return pc.is_in(keys, value_set=found.combine_chunks()).to_numpy(zero_copy_only=False)

    def _load(self) -> None:
        uuids = self.ds.to_table(columns=["uuid"]).column("uuid").combine_chunks()
        h = hash_keys(uuids)
        order = np.argsort(h, kind="stable")
        self.lake_h = h[order]
        self.lake_u = uuids.take(pa.array(order))

    def _in_table(self, hk: np.ndarray, keys: pa.Array) -> np.ndarray:
        assert self.lake_h is not None and self.lake_u is not None
        n = len(self.lake_h)
        pos = np.searchsorted(self.lake_h, hk)
        pos[pos >= n] = n - 1
        cand = self.lake_h[pos] == hk
        hit = np.zeros(len(hk), dtype=bool)
        idx = np.flatnonzero(cand)
        if len(idx):
            same = pc.equal(self.lake_u.take(pa.array(pos[idx])), keys.take(pa.array(idx)))
            same_np = same.to_numpy(zero_copy_only=False)
            hit[idx[same_np]] = True
            for i in idx[~same_np]:  # a 64-bit collision: look at every uuid with that hash
                j = int(pos[i])
                while j < n and self.lake_h[j] == hk[i]:
                    if self.lake_u[j].as_py() == keys[int(i)].as_py():
                        hit[i] = True
                    j += 1
        return hit


class _FileKeys:
    """The key hashes this file already gave, with their text hashes (a compiled hash map:
    1.67M keys cost ~0.1 s, where a Python dict took seconds).

    A repeated key with the same text hash is a repeated prompt (dropped); with another text
    hash it is one uuid given to two texts (an error). Two different keys sharing a 64-bit
    hash (odds ~1e-7 in a 1.67M-row file) would be reported as such a conflict, never dropped
    silently.
    """

    def __init__(self, capacity: int = 1 << 17) -> None:
        self.used = 0
        self.slots = _table(capacity)

    def first(self, hk: np.ndarray, hp: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Record the first occurrence of each kept key; later ones are cleared from `keep`.

        Returns (repeat mask, the text hash stored for each repeated key).
        """
        from ._kernels import map_put_first

        need = 2 * (self.used + int(keep.sum()))  # at most half full
        if need > len(self.slots) - 1:
            table, zero = self.slots[:-1], self.slots[-1]
            old = table[table[:, 0] != 0]
            old_k, old_v = np.ascontiguousarray(old[:, 0]), np.ascontiguousarray(old[:, 1])
            if zero[0]:
                old_k, old_v = np.append(old_k, np.uint64(0)), np.append(old_v, zero[1])
            self.slots = _table(1 << (need - 1).bit_length())
            self.used = map_put_first(self.slots, old_k, old_v, np.ones(len(old_k), bool),
                                      np.zeros(len(old_k), np.uint64))
        before = keep.copy()
        prev = np.zeros(len(hk), np.uint64)
        self.used += map_put_first(self.slots, hk.astype(np.uint64, copy=False),
                                   hp.astype(np.uint64, copy=False), keep, prev)
        return before & ~keep, prev


def _table(capacity: int) -> np.ndarray:
    """An empty `map_put_first` table: zeros written now, not `np.zeros`. Lazily zeroed
    pages are first read (the probe) and then written, and each such write swaps the page
    and flushes the other core's TLB: at 1.67M keys ~0.4 CPU s of the ingest, against a few
    ms for writing the zeros."""
    slots = np.empty((capacity + 1, 2), np.uint64)
    slots.fill(0)
    return slots


def stream_new_rows(
    lake: Lake, q: SourceQuery, path: str, opts: IngestOptions, report: IngestReport, batch_id: str
) -> Iterator[pa.RecordBatch]:
    """The rows of `q` that the lake lacks, validated and shaped as the prompts schema.

    A chain of stages, each a thread a couple of batches ahead of the next, so that on two
    cores they overlap instead of waiting on each other: DuckDB's parse (`parse_threads`),
    the keys (`_new_rows`: times, validation, uuid5, dedup), then the cleaned text and flags
    here, in the caller's thread (the ingest runs this in one more, beside Lance's write).
    """
    for batch in read_ahead(_new_rows(lake, q, path, opts, report), 2, "vidlake-keys"):
        out = _shaped(batch, q, batch_id)
        report.rows_added += out.num_rows
        if opts.progress:
            opts.progress(report.rows_read, None)
        yield out


def _new_rows(lake: Lake, q: SourceQuery, path: str, opts: IngestOptions,
              report: IngestReport) -> Iterator[pa.RecordBatch]:
    """The valid rows of `q` whose key is neither in the lake nor earlier in the file, with
    their ``_key``, ``uuid5`` and ``_mismatch`` (a given uuid that is not uuid5(prompt))."""
    import duckdb

    sql = _full_sql(q)
    seen = LakeKeys(lake)
    file_keys = _FileKeys()
    try:
        # A streamed result is computed by DuckDB's threads ahead of the reader, up to this
        # buffer, so parsing overlaps the stages after it.
        q.con.execute("SET streaming_buffer_size = '16MB'")
        if not q.aggregate:  # (an aggregate is computed whole before its first row: all cores)
            q.con.execute(f"SET threads = {parse_threads()}")
        reader = q.con.execute(sql).to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        raise (q.error_hint(exc) if q.error_hint else InputError(str(exc), path=path)) from exc
    next_row = 1
    mismatch_check: list[tuple[str, str, int]] = []
    side = q.con.cursor()  # for the odd times and uuids: q.con is busy streaming
    for batch in read_ahead(_fetch(reader, q, path), 2, "vidlake-parse"):
        n = batch.num_rows
        report.rows_read += n
        first_row = next_row
        next_row += n
        if "_row" in batch.schema.names and batch.column("_row").null_count == n:
            batch = batch.set_column(batch.schema.get_field_index("_row"), "_row",
                                     pa.array(np.arange(first_row, first_row + n), pa.int64()))
        if q.ctime_format:
            batch = _parse_times(batch, q, side)
        if q.raw_uuids:
            batch = _normalise_uuids(batch, side)
        batch = _validate(batch, first_row, path, opts, report)
        if not batch.num_rows:
            continue
        text_hash = None
        if q.uuid5_in_batches:
            u5, text_hash = uuid5_keys(batch.column("prompt"))
            given = batch.column("uuid_given")
            key = (given if not given.null_count else u5 if given.null_count == len(given)
                   else pc.coalesce(given, u5))  # a copy only when some are given, some not
            batch = batch.append_column("uuid5", u5).append_column("_key", key)
        cols = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
        key = cols["_key"]
        hk = hash_keys(key)
        keep = ~seen.in_lake(key, hk)
        report.already_in_lake += int((~keep).sum())
        # within-file duplicates (only possible when the format does not aggregate): the first
        # occurrence of a key is kept; a later one is a repeat (same text) or a conflict
        if not q.aggregate:
            hp = text_hash if text_hash is not None else cols["_hprompt"].to_numpy()
            repeat, prev = file_keys.first(hk, hp, keep)
            for i in np.flatnonzero(repeat):
                if prev[i] != hp[i]:
                    row = cols["_row"][int(i)].as_py()
                    msg = f"uuid {key[int(i)].as_py()} appears again with a different prompt text"
                    if not opts.skip_bad:
                        raise InputError(msg, path=path, row=row)
                    report.skip(row, msg)
                else:
                    report.duplicates_in_file += 1
        given = cols["uuid_given"]
        uuid5 = cols["uuid5"]
        if q.id_from_source:
            mism = pa.array(np.zeros(batch.num_rows, dtype=bool))
        else:
            mism = pc.and_(pc.is_valid(given), pc.not_equal(given, uuid5)).fill_null(False)
        nm = int(pc.sum(mism).as_py() or 0)
        if nm:
            report.uuid_mismatches += nm
            for i in np.flatnonzero(mism.to_numpy(zero_copy_only=False))[:20]:
                if len(report.notes) < 20:
                    report.notes.append(
                        f"row {cols['_row'][int(i)].as_py()}: uuid {given[int(i)].as_py()} is not "
                        f"uuid5(prompt) = {uuid5[int(i)].as_py()} (kept as given, uuid_mismatch=true)"
                    )
            # a given uuid that exists in the lake under another text is a conflict
            for i in np.flatnonzero(mism.to_numpy(zero_copy_only=False) & ~keep):
                mismatch_check.append((key[int(i)].as_py(), cols["prompt"][int(i)].as_py(),
                                       cols["_row"][int(i)].as_py() or 0))
        batch = batch.append_column("_mismatch", mism)
        if not keep.all():
            batch = batch.filter(pa.array(keep))
        if batch.num_rows:
            yield batch
    _check_conflicts(lake, mismatch_check, path, opts, report)
    if opts.skip_bad:
        _collect_rejects(q.con, report)


def _shaped(batch: pa.RecordBatch, q: SourceQuery, batch_id: str) -> pa.RecordBatch:
    """A batch of `_new_rows` as rows of the prompts table: cleaned text and flags added."""
    n = batch.num_rows
    cols = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
    clean, flags = clean_prompts(cols["prompt"], pika_flags=q.pika_flags)
    out = {
        "uuid": cols["_key"],
        "prompt": cols["prompt"],
        "prompt_clean": clean,
        "time": cols["time"],
        "source": pa.repeat(pa.scalar(q.source, pa.string()), n),
        "source_id": cols["source_id"],
        "occurrences": cols["occurrences"],
        "uuid_mismatch": cols["_mismatch"],
        "flags": flags,
        "extra": cols["extra"],
        "batch_id": pa.repeat(pa.scalar(batch_id, pa.string()), n),
        "nsfw_model": cols["nsfw_model"],
    }
    for lab in NSFW_LABELS:
        out[lab] = cols[lab]
    arrays = []
    for f in PROMPTS_SCHEMA:
        if f.name in out:
            col = out[f.name]
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            if f.name == "time" and pa.types.is_timestamp(col.type) and col.type.tz is None:
                # naive times are UTC: the same values, labelled (as assume_timezone "UTC")
                col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
            arrays.append(col.cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=PROMPTS_SCHEMA)


def _collect_rejects(con: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
    """Records DuckDB's CSV reader skipped (unreadable lines), when it kept them."""
    import duckdb

    try:
        rows = con.execute(
            # DuckDB logs one reject per missing column of a short line: one entry per line
            "SELECT line, arg_min(error_type, rowid), arg_min(error_message, rowid) "
            "FROM reject_errors GROUP BY line ORDER BY line"
        ).fetchall()
    except duckdb.Error:
        return
    for line, kind, msg in rows:
        report.skip(None, f"line {line}: {str(kind).lower()}: {msg}")


def _check_conflicts(lake: Lake, items: list[tuple[str, str, int]], path: str,
                     opts: IngestOptions, report: IngestReport) -> None:
    for u, text, row in items:
        existing = lake.get_prompt(u)
        if existing is not None and existing["prompt"] != text:
            msg = f"uuid {u} is already in the lake with a different prompt text"
            if not opts.skip_bad:
                raise InputError(msg, path=path, row=row)
            report.skip(row, msg)


def run(lake: Lake, q: SourceQuery, path: str, fmt: str, opts: IngestOptions,
        report: IngestReport) -> IngestReport:
    """Stream `q` into the lake as one batch (or count only, with ``dry_run``)."""
    t0 = time.perf_counter()
    # numba's first kernel in a process costs ~0.35 s (import, runtime set-up): begin now, so
    # that it overlaps opening the batch and DuckDB's first chunks, not the first batch
    warm_up_in_background()
    params = {"format": fmt, "source": q.source,
              **{k: v for k, v in vars(opts).items()
                 if k in ("prompt_column", "time_column", "time_format", "uuid_column",
                          "id_column", "skip_bad", "strict_columns", "max_prompt_chars")
                 and v not in (None, False)}}
    if opts.dry_run:
        for _ in stream_new_rows(lake, q, path, opts, report, "dry-run"):
            pass
        report.dry_run = True
    else:
        sha = BackgroundHash(path, low_priority=True) if Path(path).is_file() else None
        # write_behind: ~7% off a full VidProM CSV ingest (the page cache copy of Lance's
        # output goes to fresh pages otherwise; see `storage.write_behind`)
        with gc_paused(), heap.reuse(), lake.write_behind("prompts"), lake.batch(
                "ingest", source=path, source_sha256=sha, params=params) as b:
            report.batch_id = b.batch_id
            # the batches are cleaned in a thread while Lance encodes and writes the last
            b.append("prompts", read_ahead(
                stream_new_rows(lake, q, path, opts, report, b.batch_id), 2, "vidlake-clean"))
            b.counts.update(report.counts())
            if report.rows_added:  # an index covering the rows, in the same commit
                b.index_keys_at_commit("prompts", "uuid")
    report.seconds = time.perf_counter() - t0
    return report


def extra_json_sql(columns: list[str]) -> str:
    """JSON object of `columns` (the source columns the schema has no place for)."""
    if not columns:
        return "NULL::VARCHAR"
    parts = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}', {quote_ident(c)}" for c in columns)
    return f"json_object({parts})::VARCHAR"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
