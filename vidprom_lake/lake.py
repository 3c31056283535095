"""The Lake: open/create, tables, batches, as-of reads. The only Lance writer in the package.

A lake is a folder (or object-store prefix) holding three Lance datasets:

- ``prompts.lance``: one row per unique prompt (text, time, flags, enrichments);
- ``videos.lance``: one row per video, the mp4 bytes in a Lance blob column, so rewriting
  prompt rows (enrichment) never copies video bytes;
- ``batches.lance``: the batch log, one event row per state change of a batch.

**Commit protocol.** A batch stages its data files without committing (Lance
``write_fragments`` / ``execute_uncommitted``), then under the lake's write lock commits the
staged transactions, and finally appends a batch-log event recording every table's new version.
That log event is the commit point: the lake's *head* is, per table, the newest version the log
records. A process killed between the data commit and the log event leaves a table version
nobody logged; the next process to open the lake (under the lock, so no writer is mid-commit)
restores such tables to their logged head and marks the batch aborted. Readers therefore always
see whole batches, and a re-run of the killed command completes it (ingest is idempotent).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from . import storage
from .analysis_cache import enabled_by_default
from .errors import BatchNotFound, LakeBusy, LakeExists, LakeNotFound, SchemaError, VidlakeError
from .lock import try_lock, write_lock
from .schema import BATCHES_SCHEMA, SCHEMAS, TABLES, conform, is_vector_field

if TYPE_CHECKING:
    import duckdb
    import lance
    import polars as pl

    from .keyset import KeySet

DATA_TABLES = ("prompts", "videos")
#: Versions `Lake._newest` steps through before it lists the table's whole history instead.
NEWEST_STEPS = 8
#: Rows per data file of an append. Small enough that enrichers can rewrite one fragment's
#: column as one resumable chunk; large enough that scans stay fast.
FRAGMENT_ROWS = 32_768
#: Fragments of the batch log (one per event as written) above which they are merged...
LOG_FRAGMENTS_MAX = 32
#: ... into fragments of up to this many events.
LOG_FRAGMENT_ROWS = 4096
#: Versions of the batch log younger than this are kept when it is cleaned up (a reader may
#: have just opened one); older ones are removed, about every LOG_CLEANUP_EVERY versions.
LOG_VERSIONS_KEPT = timedelta(minutes=1)
LOG_CLEANUP_EVERY = 256
#: Tables smaller than this get no automatic uuid index (a scan is as fast).
KEY_INDEX_MIN_ROWS = 50_000
#: From this many rows the key index is built as two segments over two halves of the
#: fragments, in two threads (Lance builds one segment on one core): at 1.67M rows 0.45 s
#: instead of 0.7 s, and a lookup probes both segments in ~0.1 ms more.
KEY_INDEX_SPLIT_ROWS = 500_000
#: Rows added to an indexed table get a segment of their own (a delta: only the new fragments
#: are read) while the index has fewer segments than this and the new rows are at most
#: a quarter of the table; otherwise the whole index is rebuilt (one or two segments again).
#: Each segment costs a lookup one more probe (~0.05 ms).
KEY_INDEX_MAX_SEGMENTS = 8
#: The first `get_prompt` on a table version loads the uuid index whole when it is at most this
#: big (the BTREE of 1.67M uuids is ~48 MB) ...
LOOKUP_WARM_INDEX_BYTES = 256 * 1024 * 1024
#: ... and opens every data file once when there are at most this many fragments.
LOOKUP_WARM_FRAGMENTS = 1024
BATCH_RE = re.compile(r"^batch-(\d{4,})$")
ENV_LAKE = "VIDLAKE_LAKE"
DEFAULT_LAKE = "lake"
SECRET_KEYS = re.compile(r"(api[_-]?key|secret|token|password|authorization)", re.I)


def _now() -> datetime:
    return datetime.now(UTC)


def batch_name(n: int) -> str:
    return f"batch-{n:04d}"


def batch_number(name: str) -> int:
    m = BATCH_RE.match(name)
    if not m:
        raise BatchNotFound(f"not a batch id: {name!r} (expected batch-NNNN, e.g. batch-0002)")
    return int(m.group(1))


def scrub(params: dict[str, Any] | None) -> dict[str, Any]:
    """Drop anything that looks like a secret before it reaches the batch log."""
    out: dict[str, Any] = {}
    for k, v in (params or {}).items():
        if SECRET_KEYS.search(k):
            continue
        if isinstance(v, dict):
            v = scrub(v)
        out[k] = v
    return out


def default_uri() -> str:
    return os.environ.get(ENV_LAKE) or DEFAULT_LAKE


@dataclass
class BatchInfo:
    """One batch as `vidlake log` shows it (the newest event of that batch wins)."""

    batch_id: str
    status: str
    kind: str | None
    source: str | None
    source_sha256: str | None
    params: dict[str, Any]
    counts: dict[str, Any]
    versions: dict[str, int]
    provenance: dict[str, Any]
    message: str | None
    started_at: datetime | None
    time: datetime | None

    def as_row(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "kind": self.kind,
            "status": self.status,
            "source": self.source,
            "rows_added": self.counts.get("rows_added", 0),
            "rows_updated": self.counts.get("rows_updated", 0),
            "time": self.time,
            "message": self.message,
        }


#: The columns of the batch log that commits and recovery read (not params, counts, ...).
_LOG_STATE_COLUMNS = ["batch_id", "seq", "status", "versions", "pid", "message"]
#: The saved fold of the log (`_LogState.to_json`), beside the tables: a fresh `Lake` starts
#: from it and folds only the events appended since. A cache; deleting it only costs time.
LOG_SNAPSHOT = "_log_state.json"
#: Events folded since the snapshot was read or written before it is written again.
LOG_SNAPSHOT_EVERY = 1000


class _LogState:
    """The batch log folded into what commits and recovery ask of it: per table the newest
    version a durable event recorded (the head), per batch its newest event and the newest
    versions its own durable events recorded, the highest batch number, and the newest
    committed event.

    `refresh` folds in only the events appended since it last ran: the log only grows, in
    order (its compaction keeps both), so a long import's chunk commits do not parse the
    lake's whole history each time (at 5,000 events that took ~160 ms a commit). If the event
    it stopped at is no longer where it was, it starts over from the first. The same holds
    for a state read back from its snapshot (`to_json`, `from_json`): a new `Lake` (every
    command opens one) folds only what was appended since it was saved.
    """

    FORMAT = 1

    def __init__(self) -> None:
        self.rows = 0
        self.tail: tuple[str, int] | None = None
        self.head: dict[str, int] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.batch_versions: dict[str, dict[str, int]] = {}
        self.newest_committed: dict[str, Any] | None = None
        self.max_number = 0
        self.open: set[str] = set()  # batches whose newest event says running or chunk
        self.tags_checked: str | None = None  # the newest committed batch, once its tags
        #                                       were checked (see Lake._repair_tags)
        self.saved_rows = 0  # rows when the snapshot was last read or written

    def to_json(self) -> bytes:
        return json.dumps({
            "format": self.FORMAT, "rows": self.rows, "tail": self.tail, "head": self.head,
            "last": self.last, "batch_versions": self.batch_versions,
            "newest_committed": self.newest_committed, "max_number": self.max_number,
            "open": sorted(self.open)}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _LogState | None:
        """The state saved by `to_json`, or None for anything else (another format, a
        damaged file): the caller then folds the whole log."""
        try:
            d = json.loads(data)
            if not isinstance(d, dict) or d.get("format") != cls.FORMAT:
                return None
            st = cls()
            st.rows = int(d["rows"])
            st.tail = (str(d["tail"][0]), int(d["tail"][1])) if d["tail"] else None
            st.head = {str(t): int(v) for t, v in d["head"].items()}
            st.last = {str(b): dict(e) for b, e in d["last"].items()}
            st.batch_versions = {str(b): {str(t): int(v) for t, v in vs.items()}
                                 for b, vs in d["batch_versions"].items()}
            st.newest_committed = d["newest_committed"]
            st.max_number = int(d["max_number"])
            st.open = set(d["open"])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None
        if st.rows < 0 or (st.rows > 0) != (st.tail is not None):
            return None
        st.saved_rows = st.rows
        return st

    def refresh(self, ds: lance.LanceDataset) -> _LogState:
        if self.rows:
            at = ds.to_table(columns=["batch_id", "seq"], offset=self.rows - 1,
                             limit=1).to_pylist()
            if not at or (at[0]["batch_id"], at[0]["seq"]) != self.tail:
                self.__init__()  # type: ignore[misc]
        for e in ds.to_table(columns=_LOG_STATE_COLUMNS, offset=self.rows).to_pylist():
            self._fold(e)
        return self

    def _fold(self, e: dict[str, Any]) -> None:
        b = e["batch_id"]
        self.rows += 1
        self.tail = (b, e["seq"])
        cur = self.last.get(b)
        if cur is None or e["seq"] > cur["seq"]:
            self.last[b] = e
            if e["status"] in ("running", "chunk"):
                self.open.add(b)
            else:
                self.open.discard(b)
        self.max_number = max(self.max_number, batch_number(b))
        if e["status"] == "running" or not e["versions"]:
            return
        mine = self.batch_versions.setdefault(b, {})
        for table, v in json.loads(e["versions"]).items():
            self.head[table] = max(self.head.get(table, 0), int(v))
            mine[table] = max(mine.get(table, 0), int(v))
        if e["status"] == "committed":
            self.newest_committed = e

    def running(self) -> list[dict[str, Any]]:
        """The newest event of each batch that says running or chunk, oldest batch first."""
        return [self.last[b] for b in sorted(self.open, key=batch_number)]

    def versions_before(self, number: int) -> dict[str, int]:
        """Per table, the newest version recorded by batches numbered below `number`."""
        out: dict[str, int] = {}
        for b, versions in self.batch_versions.items():
            if batch_number(b) < number:
                for table, v in versions.items():
                    out[table] = max(out.get(table, 0), v)
        return out


class Lake:
    """A VidLake lake. Get one with `open_lake` or `create_lake`."""

    def __init__(self, uri: str, *, pinned: dict[str, int] | None = None, as_of: str | None = None,
                 analysis_cache: bool | None = None):
        self.uri = uri
        #: Whether SQL over `prompts` reads (and builds) the Parquet analysis cache; see
        #: `vidprom_lake.analysis_cache`. Default: on unless VIDLAKE_ANALYSIS_CACHE=off.
        self.analysis_cache = enabled_by_default() if analysis_cache is None else analysis_cache
        self.as_of_batch = as_of
        self._pinned = pinned
        self._storage = storage.storage_options(uri)
        self._datasets: dict[tuple[str, int | None], lance.LanceDataset] = {}
        self._lookup_columns: dict[tuple[int, bool], list[str]] = {}
        self._committed: dict[str, int] = {}  # per table, the newest version known to exist

    # ------------------------------------------------------------------ basics
    def __repr__(self) -> str:
        at = f" as of {self.as_of_batch}" if self.as_of_batch else ""
        return f"<Lake {self.uri}{at}>"

    @property
    def read_only(self) -> bool:
        return self._pinned is not None

    def table_uri(self, table: str) -> str:
        if table not in TABLES:
            raise VidlakeError(f"unknown table {table!r}; the lake has {', '.join(TABLES)}")
        return storage.join(self.uri, f"{table}.lance")

    def write_behind(self, table: str) -> contextlib.AbstractContextManager[None]:
        """For a bulk write into `table`: the data files written while the block runs go to
        disk and out of the page cache as they grow (`storage.write_behind`), so they are on
        disk before the commit and the writer keeps reusing the same cache pages."""
        return storage.write_behind(storage.join(self.table_uri(table), "data"))

    def _open(self, table: str, version: int | None = None) -> lance.LanceDataset:
        import lance

        try:
            return lance.dataset(
                self.table_uri(table), version=version, storage_options=self._storage
            )
        except (ValueError, OSError) as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                raise LakeNotFound(
                    f"no lake at {self.uri} (table {table} missing); run `vidlake init`"
                ) from exc
            raise

    def _newest(self, table: str) -> int:
        """The newest version of `table`, found by stepping forward from the newest one this
        `Lake` knows exists (the log's head as last read, or its own last commit) rather than
        by opening the table at "latest", which lists its whole version history: 5.6 ms at
        20,000 versions on a local disk, one LIST request per 1,000 versions on S3, and a long
        import adds a version per chunk. Looking for a version that does not exist costs
        ~0.2 ms, opening one that does ~0.5 ms. Versions only ever grow by one, and vidlake
        never deletes a table's versions, so the first missing one ends the walk; after
        `NEWEST_STEPS` versions it lists after all."""
        state = getattr(self, "_log_state", None)
        known = max(state.head.get(table, 0) if state is not None else 0,
                    self._committed.get(table, 0))
        if known:
            for version in range(known + 1, known + 1 + NEWEST_STEPS):
                try:
                    self._open(table, version)
                except LakeNotFound:  # no such version
                    self._committed[table] = version - 1
                    return version - 1
        newest = self._committed[table] = self._open(table).version
        return newest

    def _commit_txn(self, table: str, txn: Any, read_version: int) -> None:
        """Commit a Lance transaction to `table` through the dataset at `read_version`
        (committed by URI, Lance would first list the table's whole version history: see
        `_newest`)."""
        import lance

        ds = lance.LanceDataset.commit(self._open(table, read_version), txn,
                                       read_version=read_version, storage_options=self._storage)
        self._committed[table] = max(self._committed.get(table, 0), ds.version)

    def dataset(self, table: str) -> lance.LanceDataset:
        """The Lance dataset of `table`, pinned at the lake's head (or its as-of batch)."""
        version = self.head()[table]
        key = (table, version)
        if key not in self._datasets:
            self._datasets[key] = self._open(table, version)
        return self._datasets[key]

    # ------------------------------------------------------------------ log & head
    def _events(self) -> pa.Table:
        ds = self._open("batches")
        return ds.to_table()

    def _log(self) -> _LogState:
        """The batch log's state, brought up to date with the events appended since."""
        state = getattr(self, "_log_state", None)
        if state is None:
            saved = storage.read_small(storage.join(self.uri, LOG_SNAPSHOT))
            state = self._log_state = (saved and _LogState.from_json(saved)) or _LogState()
        state.refresh(self._open("batches"))
        if state.rows - state.saved_rows >= LOG_SNAPSHOT_EVERY:
            # (where the lake is read-only to this process, not retried before as many more)
            storage.write_small(storage.join(self.uri, LOG_SNAPSHOT), state.to_json())
            state.saved_rows = state.rows
        return state

    def head(self) -> dict[str, int]:
        """Per table, the Lance version readers see."""
        if self._pinned is not None:
            return dict(self._pinned)
        if not hasattr(self, "_head_cache"):
            self._head_cache = dict(self._log().head)
        return dict(self._head_cache)

    def _invalidate(self) -> None:
        if hasattr(self, "_head_cache"):
            del self._head_cache

    def log(self) -> list[BatchInfo]:
        """Every batch, oldest first, with its latest status."""
        events = self._events().to_pylist()
        events.sort(key=lambda e: (batch_number(e["batch_id"]), e["seq"]))
        by_id: dict[str, BatchInfo] = {}
        for e in events:
            prev = by_id.get(e["batch_id"])
            counts = json.loads(e["counts"]) if e["counts"] else {}
            if prev is not None and not counts:
                counts = prev.counts
            by_id[e["batch_id"]] = BatchInfo(
                batch_id=e["batch_id"],
                status=e["status"],
                kind=e["kind"] or (prev.kind if prev else None),
                source=e["source"] or (prev.source if prev else None),
                source_sha256=e["source_sha256"] or (prev.source_sha256 if prev else None),
                params=json.loads(e["params"]) if e["params"] else (prev.params if prev else {}),
                counts=counts,
                versions=json.loads(e["versions"]) if e["versions"] else (prev.versions if prev else {}),
                provenance=json.loads(e["provenance"]) if e["provenance"] else (prev.provenance if prev else {}),
                message=e["message"],
                started_at=e["started_at"] or (prev.started_at if prev else None),
                time=e["time"],
            )
        infos = list(by_id.values())
        if self.as_of_batch:
            cut = batch_number(self.as_of_batch)
            infos = [b for b in infos if batch_number(b.batch_id) <= cut]
        return infos

    def batch_info(self, batch_id: str) -> BatchInfo:
        batch_number(batch_id)
        for info in self.log():
            if info.batch_id == batch_id:
                return info
        raise BatchNotFound(f"no batch {batch_id} in the log of {self.uri} (see `vidlake log`)")

    def versions_at(self, batch_id: str) -> dict[str, int]:
        """Every table's version right after `batch_id` committed."""
        info = self.batch_info(batch_id)
        if info.status not in ("committed", "chunk") or not info.versions:
            raise BatchNotFound(
                f"{batch_id} did not commit (status {info.status}); pick a committed batch"
            )
        return {t: int(v) for t, v in info.versions.items()}

    def as_of(self, batch_id: str) -> Lake:
        """A read-only view of the lake as it was right after `batch_id`."""
        return Lake(self.uri, pinned=self.versions_at(batch_id), as_of=batch_id,
                    analysis_cache=self.analysis_cache)

    # ------------------------------------------------------------------ recovery
    def recover(self) -> list[str]:
        """Roll back table versions that no batch-log event records (a writer died mid-commit).

        Needs the write lock; returns what it did, one line per table. Safe to call any time.
        """
        if self.read_only:
            return []
        with write_lock(self.uri):
            return self._recover_locked()

    def _recover_locked(self) -> list[str]:
        done: list[str] = []
        culprits: set[str] = set()
        log = self._log()
        head = dict(log.head)
        tagged = self._repair_tags(log)
        for table in DATA_TABLES:
            newest = self._newest(table)
            logged = head.get(table)
            if logged is None or newest <= logged:
                continue
            latest = self._open(table, newest)
            # The unlogged commit names its batch (see Batch._commit), so recovery aborts that
            # batch and never a live writer's that is still writing its data files.
            for v in range(logged + 1, latest.version + 1):
                culprit = _committing_batch(latest, v)
                if culprit:
                    culprits.add(culprit)
            self._open(table, logged).restore()
            done.append(f"{table}: rolled back unlogged versions {logged + 1}..{latest.version}")
        # Batches whose writer died: their last event says running (or chunk, for a long job
        # killed between chunks). Locally a dead pid tells; on an object store the culprit named
        # by the rolled-back commit does.
        running = log.running()
        local = not storage.is_remote(self.uri)
        dead = [e for e in running if e["batch_id"] in culprits or _writer_dead(e, local)]
        if done and not dead and running and not local:
            dead = [running[-1]]
        versions = self._latest_versions() if done else None
        for e in dead:
            self._append_event(
                e["batch_id"], e["seq"] + 1, "aborted", versions=versions,
                message="writer died before committing; " + ("; ".join(done) or "nothing to undo"),
            )
            done.append(f"{e['batch_id']}: marked aborted")
        if done:
            self._invalidate()
        return tagged + done

    def _latest_versions(self) -> dict[str, int]:
        return {t: self._newest(t) for t in DATA_TABLES}

    def _repair_tags(self, log: _LogState) -> list[str]:
        """Tag the newest committed batch where its writer died before tagging it."""
        newest = log.newest_committed
        if newest is None or newest["batch_id"] == log.tags_checked:
            return []
        before = log.versions_before(batch_number(newest["batch_id"]))
        out = []
        for table, v in json.loads(newest["versions"]).items():
            if table not in DATA_TABLES or int(v) <= before.get(table, -1):
                continue
            ds = self._open(table, int(v))  # tags are the table's, whichever version opens
            if newest["batch_id"] not in ds.tags.list():
                _tag(ds, newest["batch_id"], int(v))
                out.append(f"{table}: tagged {newest['batch_id']} (its writer died before tagging)")
        log.tags_checked = newest["batch_id"]
        return out

    def heal(self) -> list[str]:
        """Recover if the lake needs it and no writer is active; never blocks."""
        if self.read_only:
            return []
        log = self._log()
        head = self._head_cache = dict(log.head)
        needs = any(self._newest(t) > head.get(t, 0) for t in DATA_TABLES)
        if not needs:
            # A writer that died before committing anything leaves a batch that says running.
            local = not storage.is_remote(self.uri)
            needs = any(_writer_dead(e, local) for e in log.running())
        if not needs:
            return []
        cm = try_lock(self.uri)
        if cm is None:
            return []
        try:
            return self._recover_locked()
        finally:
            cm.__exit__(None, None, None)

    # ------------------------------------------------------------------ writing
    def _append_event(self, batch_id: str, seq: int, status: str, **fields: Any) -> None:
        import lance

        row = {
            "batch_id": batch_id,
            "seq": seq,
            "status": status,
            "time": _now(),
            "pid": os.getpid(),
        }
        for k in ("params", "counts", "versions", "provenance"):
            if k in fields and fields[k] is not None:
                fields[k] = json.dumps(fields[k], default=str, sort_keys=True)
        row.update(fields)
        table = pa.Table.from_pylist([row], schema=BATCHES_SCHEMA)
        ds = lance.write_dataset(
            table, self.table_uri("batches"), mode="append", storage_options=self._storage
        )
        if len(ds.get_fragments()) > LOG_FRAGMENTS_MAX:
            # Every event is a fragment of one row, and every commit reads the whole log
            # (recovery, the head, the next batch id): merged, the read stays a few ms
            # instead of growing with the lake's history (at 500 events, 170 ms a commit).
            # One Lance rewrite commit, in order; a crash mid-way leaves the log as it was.
            # Fragments already LOG_FRAGMENT_ROWS long are left as they are, so a merge costs
            # the same however long the log is.
            ds.optimize.compact_files(target_rows_per_fragment=LOG_FRAGMENT_ROWS)
            # The log's own old versions are read by no one (readers pin the data tables'
            # versions the events record, and read the log at its newest): about every
            # LOG_CLEANUP_EVERY versions, drop those older than LOG_VERSIONS_KEPT with the
            # files only they use, or every commit's open lists one manifest per event ever
            # written and the merged-away files pile up. (Each cleanup lists every version.)
            v = ds.version  # after the merge (~LOG_FRAGMENTS_MAX versions since the last)
            if v // LOG_CLEANUP_EVERY != (v - 2 * LOG_FRAGMENTS_MAX) // LOG_CLEANUP_EVERY:
                ds.cleanup_old_versions(older_than=LOG_VERSIONS_KEPT)

    def batch(
        self,
        kind: str,
        *,
        source: str | None = None,
        source_sha256: Any = None,
        params: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> Batch:
        """Start a batch: stage writes on it, then it commits whole when the block ends."""
        if self.read_only:
            raise VidlakeError(f"the lake is pinned at {self.as_of_batch}; it is read-only")
        return Batch(self, kind, source=source, source_sha256=source_sha256,
                     params=scrub(params), provenance=provenance or {})

    def restore(self, batch_id: str) -> BatchInfo:
        """Make a new head equal to the lake right after `batch_id`; history is kept."""
        target = self.versions_at(batch_id)
        with self.batch("restore", source=batch_id, params={"to": batch_id}) as b:
            b.restore_to(target)
        return self.batch_info(b.batch_id)

    def write_rows(self, table: str,
                   data: pa.RecordBatchReader | pa.Table | Iterable[pa.RecordBatch], *,
                   schema: pa.Schema | None = None,
                   max_rows_per_file: int = FRAGMENT_ROWS) -> Written:
        """Write rows of `table` into new Lance data files WITHOUT committing them.

        The worker half of a distributed write: any process that can reach the lake's storage
        (a Ray worker, with the same AWS variables) writes the files and hands the returned
        `Written` (picklable: fragment metadata only, no data) to the process that holds the
        batch, which stages it with `Batch.add_written` and commits it in one atomic Lance
        append. Files nobody commits are never visible (Lance garbage: `cleanup_old_versions`
        deletes them once they are 7 days old, or with ``delete_unverified=True``).
        Rows are checked against the table's schema on the way (a bad row names itself).
        """
        import lance.fragment

        if self.read_only:
            raise VidlakeError(f"the lake is pinned at {self.as_of_batch}; it is read-only")
        ds = self._open(table, self._newest(table))
        target = schema or _writable_schema(ds.schema, table)
        failure: list[BaseException] = []
        reader = _as_reader(data, target, failure)
        try:
            frags = lance.fragment.write_fragments(  # into `ds`: by URI, Lance would list
                reader, ds, schema=target, mode="append",  # every version again (`_newest`)
                storage_options=self._storage, max_rows_per_file=max_rows_per_file,
            )
        except Exception:
            # Lance wraps errors raised by our reader; surface the original (it names the row).
            if failure:
                raise failure[0] from None
            raise
        frags = list(frags)
        return Written(table=table, uri=self.table_uri(table), fragments=tuple(frags),
                       rows=sum(int(f.physical_rows) for f in frags), read_version=ds.version)

    # ------------------------------------------------------------------ reading
    def sql(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the lake's views (read-only on the lake)."""
        from .sql import connect

        return connect(self)

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run SQL over the lake's views; returns an Arrow table."""
        from .sql import run_query

        return run_query(self, sql, params)

    def to_polars(
        self,
        table: str = "prompts",
        *,
        columns: list[str] | None = None,
        lazy: bool = True,
        vectors: bool = False,
    ) -> pl.LazyFrame | pl.DataFrame:
        """The table as a Polars LazyFrame (or DataFrame with ``lazy=False``).

        Vector columns are left out unless ``vectors=True``; blob columns always are (read video
        bytes with `open_video`).
        """
        import polars as pl

        ds = self.dataset(table)
        if columns is None:
            columns = [
                f.name for f in ds.schema
                if not _is_blob(f) and (vectors or not is_vector_field(f))
            ]
        frame = pl.scan_pyarrow_dataset(ds).select(columns) if columns else pl.LazyFrame()
        return frame if lazy else frame.collect()

    def columns(self, table: str) -> list[pa.Field]:
        return list(self.dataset(table).schema)

    def count(self, table: str = "prompts", where: str | None = None) -> int:
        return self.dataset(table).count_rows(filter=where)

    def get_prompt(self, uuid: str, *, vectors: bool = False) -> dict[str, Any] | None:
        """One prompt row by uuid (uses the uuid scalar index when it exists).

        The first lookup on a table version also warms what later lookups read (see
        `_warm_lookups`), so a process that looks up many prompts pays one index probe and one
        row take per call, not cold index pages and file footers.
        """
        ds = self.dataset("prompts")
        key = (ds.version, vectors)
        cols = self._lookup_columns.get(key)
        if cols is None:
            cols = [f.name for f in ds.schema if vectors or not is_vector_field(f)]
            _warm_lookups(ds, cols)
            self._lookup_columns[key] = cols
        # no `limit=1`: uuids are unique, and a limit makes Lance plan a ranged scan that is
        # slower than the plain index-filtered take
        t = ds.to_table(columns=cols, filter=f"uuid = '{_sql_str(uuid)}'")
        return t.slice(0, 1).to_pylist()[0] if t.num_rows else None

    def ingest(self, path: str | os.PathLike[str], format: str | None = None, **options: Any) -> Any:
        """Ingest one file (format detected from its name and contents); see `vidprom_lake.ingest`."""
        from .ingest import ingest

        return ingest(self, path, format=format, **options)

    def diff(self, a: str, b: str) -> list[dict[str, Any]]:
        """Per table: rows at `a`, rows at `b`, rows added, removed and changed between them."""
        from .diffing import diff

        return diff(self, a, b)

    def uuid_index(self) -> KeySet:
        """Every uuid in the prompts table, for membership tests one key at a time (`KeySet`:
        60 MB at 1.67M uuids). Batches of keys are better asked through
        `ingest.pipeline.LakeKeys`, which can use the uuid index instead of reading them all."""
        from .keyset import KeySet

        return KeySet.of_arrow(self.dataset("prompts").to_table(columns=["uuid"]).column("uuid"))


def _warm_lookups(ds: lance.LanceDataset, columns: list[str]) -> None:
    """Load the uuid index whole and open every data file of `ds` once (for `get_prompt`).

    Cold, a lookup reads an index page and the footers of one fragment's files: on 1.67M rows
    in 52 fragments that made the first few hundred lookups of a process cost 4-12 ms instead
    of 2-4 ms. Warming costs ~0.3 s and ~50 MB of memory there, once per process and table
    version; it is skipped for an index over LOOKUP_WARM_INDEX_BYTES or a table of more than
    LOOKUP_WARM_FRAGMENTS fragments, where it would cost more than it saves.
    """
    for d in ds.describe_indices():
        size = d.total_size_bytes
        if list(d.field_names) == ["uuid"] and size is not None and size <= LOOKUP_WARM_INDEX_BYTES:
            ds.prewarm_index(d.name)
    fragments = ds.get_fragments()
    if not fragments or len(fragments) > LOOKUP_WARM_FRAGMENTS:
        return
    offsets, at = [], 0
    for frag in fragments:
        n = frag.count_rows()
        if n:
            offsets.append(at)
        at += n
    if offsets:
        ds.take(offsets, columns=columns)


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def _is_blob(field: pa.Field) -> bool:
    meta = field.metadata or {}
    return meta.get(b"lance-encoding:blob") == b"true" or "blob" in str(field.type)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own killed child) still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def _writer_note() -> str:
    """Who writes a batch, kept in its running event so recovery can tell a dead writer."""
    return f"writer {socket.gethostname()} pid {os.getpid()}"


_WRITER_RE = re.compile(r"^writer (\S+) pid (\d+)$")


def _writer_dead(event: dict[str, Any], local: bool) -> bool:
    """Whether the process that wrote a running/chunk event is gone.

    A local lake has one machine: a dead pid says it. On an object store only a writer on this
    same host can be checked; elsewhere, recovery relies on the batch named by its commit.
    """
    if not local:
        m = _WRITER_RE.match(event.get("message") or "")
        if not m or m.group(1) != socket.gethostname():
            return False
    return not _alive(event["pid"])


#: Transaction property naming the batch a Lance commit belongs to (read back by recovery).
TXN_BATCH_KEY = "vidlake:batch_id"


def _committing_batch(ds: lance.LanceDataset, version: int) -> str | None:
    """The batch whose commit made `version` of `ds`, when the commit recorded it."""
    try:
        txn = ds.read_transaction(version)
    except Exception:  # an old or foreign commit without a readable transaction file
        return None
    props = (txn.transaction_properties or {}) if txn is not None else {}
    name = props.get(TXN_BATCH_KEY) or props.get("__lance_commit_message") or ""
    m = re.search(r"batch-\d{4,}", name)
    return m.group(0) if m else None


@dataclass(frozen=True)
class Written:
    """Data files of one table written by `Lake.write_rows` and not committed yet.

    Holds only Lance fragment metadata (file names, row counts), so it pickles small and can
    travel from a worker to the driver; `Batch.add_written` commits it.
    """

    table: str
    uri: str  # the table's dataset URI the files live in
    fragments: tuple[Any, ...]  # lance.fragment.FragmentMetadata
    rows: int
    read_version: int  # the table version whose schema the files were written with

    @property
    def bytes(self) -> int:
        return sum(int(df.file_size_bytes or 0) for f in self.fragments for df in f.files)


@dataclass
class _Staged:
    table: str
    transaction: Any
    read_version: int
    kind: str


@dataclass
class Batch:
    """A unit of writing: staged Lance transactions that commit whole, then one log event.

    Use as a context manager. ``commit()`` inside the block commits what is staged so far as a
    durable chunk (long jobs call it every N rows); leaving the block commits the rest and
    marks the batch committed. An exception inside the block commits nothing more, rolls back
    anything half-done and records the batch as failed with the error.
    """

    lake: Lake
    kind: str
    source: str | None = None
    source_sha256: Any = None  # str, or an ingest.pipeline.BackgroundHash of one
    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    batch_id: str = ""
    _staged: list[_Staged] = field(default_factory=list)
    _seq: int = 0
    _changed: set[str] = field(default_factory=set)
    _chunks: int = 0
    _started: datetime = field(default_factory=_now)
    _key_indexes: list[tuple[str, str]] = field(default_factory=list)

    # -- lifecycle
    def __enter__(self) -> Batch:
        lake = self.lake
        with write_lock(lake.uri):
            lake._recover_locked()
            self.batch_id = batch_name(lake._log().max_number + 1)
            self._seq = 0
            lake._append_event(
                self.batch_id, self._seq, "running", kind=self.kind, source=self.source,
                source_sha256=self.source_sha256 if isinstance(self.source_sha256, str) else None,
                params=self.params, provenance=self.provenance, started_at=self._started,
                message=_writer_note(),
            )
            lake._invalidate()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            try:
                self._commit("committed")
            except BaseException as commit_exc:  # the final commit failed: say so in the log
                self._fail(commit_exc)
                raise
            return
        self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Undo anything half-committed and record the batch as failed, with the error."""
        self._staged.clear()
        if hasattr(self.source_sha256, "cancel"):  # a hash still running: no one needs it now
            self.source_sha256.cancel()
        message = f"{type(exc).__name__}: {exc}"[:2000]
        with contextlib.suppress(Exception), write_lock(self.lake.uri, timeout=60):
            self.lake._recover_locked()
            # Recovery may have logged an event for this batch (it rolled back our own commit).
            newest = self.lake._log().last.get(self.batch_id)
            self._seq = max(self._seq, newest["seq"] if newest else -1)
            self._seq += 1
            self.lake._append_event(
                self.batch_id, self._seq, "failed", counts=self.counts, message=message,
                versions=self.lake._latest_versions() if self._chunks else None,
            )
            self.lake._invalidate()

    # -- staging
    def append(self, table: str, data: pa.RecordBatchReader | pa.Table | Iterable[pa.RecordBatch],
               *, schema: pa.Schema | None = None, max_rows_per_file: int = FRAGMENT_ROWS) -> None:
        """Stage rows for `table` (written to new data files now, committed later)."""
        self.add_written(table, self.lake.write_rows(table, data, schema=schema,
                                                     max_rows_per_file=max_rows_per_file))

    def add_written(self, table: str, written: Written) -> int:
        """Stage data files written elsewhere (`Lake.write_rows`, e.g. on a Ray worker) as an
        append to `table`, committed with the batch's next `commit()` like any other write.

        Until then the files are invisible garbage: a batch that fails, or a driver that never
        calls this, leaves the table exactly as it was. Returns the rows staged.
        """
        import lance

        if written.table != table:
            raise VidlakeError(f"rows written for table {written.table!r} cannot be added to "
                               f"{table!r}")
        here = self.lake.table_uri(table)
        if storage.normalize(written.uri) != storage.normalize(here):
            raise VidlakeError(f"data files were written into {written.uri}, not into {here} "
                               f"(this lake's {table} table); write them with a Lake opened "
                               "on the same URI")
        if written.fragments:
            op = lance.LanceOperation.Append(list(written.fragments))
            self._staged.append(_Staged(table, op, written.read_version, "append"))
        return written.rows

    def stage(self, table: str, operation: Any, read_version: int) -> None:
        """Stage a prepared Lance operation or transaction (committed with the batch)."""
        self._staged.append(_Staged(table, operation, read_version, "op"))

    def update_columns(self, table: str, data: pa.Table, on: str = "uuid",
                       mode: str = "auto") -> int:
        """Stage an update of some columns of existing rows, matched on `on`.

        Returns how many rows matched. Rows of `data` with no match are an error, so a typo'd
        key never vanishes silently.
        """
        ds = self.lake._open(table)
        builder = ds.merge_insert(on).when_matched_update_all()
        if mode != "auto":
            builder = builder.write_mode(mode)  # type: ignore[arg-type]
        txn, stats = builder.execute_uncommitted(data)
        self._staged.append(_Staged(table, txn, ds.version, "update"))
        return int(stats.get("num_updated_rows", 0))

    def add_column(self, table: str, field_: pa.Field) -> None:
        """Add an all-null column (metadata only) so later updates can fill it.

        This commits at once (it carries no data), under the lock. Adding a column that exists
        with the same type is a no-op; with another type it is a SchemaError.
        """
        with write_lock(self.lake.uri):
            ds = self.lake._open(table)
            if field_.name in ds.schema.names:
                existing = ds.schema.field(field_.name)
                if not existing.type.equals(field_.type):
                    raise SchemaError(
                        f"column {field_.name!r} holds {existing.type}, not {field_.type}; "
                        "use another --column or --recompute"
                    )
                return
            ds.add_columns(field_)
            self._changed.add(table)
            self._seq += 1
            self.lake._append_event(
                self.batch_id, self._seq, "chunk", versions=self.lake._latest_versions(),
                message=f"added column {field_.name}",
            )
            self.lake._invalidate()

    def _resolve_sha(self) -> str | None:
        """The source's sha256; a Future (hashed in a thread beside the work) is waited for."""
        sha = self.source_sha256
        if sha is not None and not isinstance(sha, str):
            sha = sha.result()
            self.source_sha256 = sha
        return sha

    def refresh_key_index(self, table: str = "prompts", column: str = "uuid",
                          min_rows: int = KEY_INDEX_MIN_ROWS) -> bool:
        """Stage a BTREE index on `column` that covers every committed row of `table`.

        Point lookups by uuid stay in the milliseconds only with an index; ingest has it run
        inside its commit (`index_keys_at_commit`), so the index lands with the rows. Small tables (under
        `min_rows`, where a scan is fast anyway) get none unless one exists already.
        Returns whether an index was staged.
        """
        import lance

        from .index import _as_index

        ds = self.lake._open(table)
        name = f"{column}_idx"
        existing = {d.name: d for d in ds.describe_indices()}
        n = ds.count_rows()
        old = existing.get(name)
        if old is None and n < min_rows:
            return False
        fragments = ds.get_fragments()
        frags = [f.fragment_id for f in fragments]
        covered = {i for seg in old.segments for i in seg.fragment_ids} if old else set()
        new = [f for f in fragments if f.fragment_id not in covered]
        if old is not None and not new:
            return False
        if (old is not None and new and len(old.segments) < KEY_INDEX_MAX_SEGMENTS
                and sum(f.count_rows() for f in new) * 4 <= n):
            # a delta: one more segment over the new fragments, the old ones stay
            seg = self.lake._open(table, ds.version).create_index_uncommitted(
                column, "BTREE", name=name, fragment_ids=[f.fragment_id for f in new],
                replace=True)  # (Lance asks for it; the old segments are kept below)
            self.stage(table, lance.LanceOperation.CreateIndex([seg], []), ds.version)
            return True
        groups = [frags]
        if n >= KEY_INDEX_SPLIT_ROWS and len(frags) > 1:
            groups = [frags[: len(frags) // 2], frags[len(frags) // 2:]]

        def build(ids: list[int]) -> Any:
            # a dataset object per thread: one Lance dataset cannot build two at once
            return self.lake._open(table, ds.version).create_index_uncommitted(
                column, "BTREE", name=name, fragment_ids=ids, replace=old is not None)

        if len(groups) == 1:
            segments = [build(frags)]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(groups), thread_name_prefix="vidlake-index") as pool:
                segments = list(pool.map(build, groups))
        removed = _as_index(old) if old is not None else []
        self.stage(table, lance.LanceOperation.CreateIndex(segments, removed), ds.version)
        return True

    def index_keys_at_commit(self, table: str = "prompts", column: str = "uuid") -> None:
        """Refresh the key index of `table` (`refresh_key_index`) inside the next commit: after
        the staged rows, under the same hold of the write lock, before the log event.

        The index can only be built over committed rows; building it there keeps the batch
        one commit, so no other writer's rows can land between this batch's rows and its log
        event (its as-of view holds exactly its own rows). Other writers wait for the build.
        """
        self._key_indexes.append((table, column))

    def restore_to(self, versions: dict[str, int]) -> None:
        for table, v in versions.items():
            if table in DATA_TABLES:
                self._staged.append(_Staged(table, v, -1, "restore"))

    # -- committing
    def commit(self) -> None:
        """Commit what is staged as one durable chunk of this batch (nothing staged: no-op)."""
        if self._staged:
            self._commit("chunk")

    def _commit(self, status: str) -> None:
        lake = self.lake
        with write_lock(lake.uri):
            lake._recover_locked()
            self._commit_staged()
            for table, column in self._key_indexes:  # over the rows just committed
                if self.refresh_key_index(table, column):
                    self._commit_staged()
            self._key_indexes.clear()
            versions = lake._latest_versions()
            self._seq += 1
            lake._append_event(
                self.batch_id, self._seq, status, counts=self.counts, versions=versions,
                provenance=self.provenance or None, source_sha256=self._resolve_sha(),
            )
            self._chunks += 1
            lake._invalidate()
            if status == "committed":
                for table in sorted(self._changed):
                    _tag(lake._open(table, versions[table]), self.batch_id, versions[table])

    def _commit_staged(self) -> None:
        for st in self._staged:
            self._commit_one(st)
            self._changed.add(st.table)
        self._staged.clear()

    def _commit_one(self, st: _Staged) -> None:
        """Commit one staged operation; every commit names this batch (for recovery)."""
        import lance
        from lance.commit import CommitConflictError

        lake = self.lake
        if st.kind == "restore":
            lake._open(st.table, st.transaction).restore()
            return
        txn = st.transaction
        if not isinstance(txn, lance.Transaction):
            txn = lance.Transaction(read_version=st.read_version, operation=txn)
        txn.transaction_properties = {**(txn.transaction_properties or {}),
                                      TXN_BATCH_KEY: self.batch_id}
        try:
            lake._commit_txn(st.table, txn, st.read_version)
            return
        except CommitConflictError as exc:
            conflict = exc
        if st.kind == "append" and isinstance(txn.operation, lance.LanceOperation.Append):
            # New rows stand on their own: put the same data files on top of the table as it
            # is now (e.g. after a restore or a crash recovery since this batch read it).
            latest = lake._newest(st.table)
            again = lance.Transaction(
                read_version=latest, operation=lance.LanceOperation.Append(txn.operation.fragments),
                transaction_properties=txn.transaction_properties)
            lake._commit_txn(st.table, again, latest)
            return
        raise LakeBusy(
            f"another writer changed table {st.table} while {self.batch_id} ({self.kind}) was "
            f"running, so this commit was not made ({str(conflict).split(',')[0]}); run the "
            "command again: it resumes where the lake is"
        ) from conflict


def _writable_schema(stored: pa.Schema, table: str) -> pa.Schema:
    """The stored schema with blob columns in the form writers give them (large_binary).

    Lance reports a blob v2 column as an extension type; data is written to it as large_binary
    with the `lance-encoding:blob` field metadata, as declared in schema.py.
    """
    declared = SCHEMAS.get(table)
    fields = []
    for f in stored:
        if declared is not None and f.name in declared.names and _is_blob(f):
            fields.append(declared.field(f.name))
        else:
            fields.append(f)
    return pa.schema(fields, metadata=stored.metadata)


def _tag(ds: lance.LanceDataset, name: str, version: int) -> None:
    try:
        ds.tags.create(name, version)
    except (ValueError, OSError, RuntimeError):
        with contextlib.suppress(Exception):
            ds.tags.update(name, version)


def _as_reader(
    data: pa.RecordBatchReader | pa.Table | Iterable[pa.RecordBatch], schema: pa.Schema,
    failure: list[BaseException] | None = None,
) -> pa.RecordBatchReader:
    if isinstance(data, pa.Table):
        data = data.to_batches()
    elif isinstance(data, pa.RecordBatchReader):
        data = iter(data)

    def gen() -> Iterator[pa.RecordBatch]:
        try:
            for b in data:
                if b.num_rows:
                    yield conform(b, schema)
        except BaseException as exc:
            if failure is not None:
                failure.append(exc)
            raise

    return pa.RecordBatchReader.from_batches(schema, gen())


# ---------------------------------------------------------------------- entry points
def create_lake(uri: str | os.PathLike[str] | None = None, *, exist_ok: bool = False) -> Lake:
    """Create an empty lake (tables and batch log) at `uri`."""
    import lance

    root = storage.normalize(uri or default_uri())
    lake = Lake(root)
    if _initialised(lake):
        if exist_ok:
            return open_lake(root)
        raise LakeExists(f"a lake already exists at {root}")
    if not storage.is_remote(root):
        os.makedirs(root, exist_ok=True)
    with write_lock(root):
        if _initialised(lake):  # another process created it meanwhile
            if exist_ok:
                return lake
            raise LakeExists(f"a lake already exists at {root}")
        # The init event is this lake's commit point: tables left by an init that was killed
        # before it are not a lake yet, and are created afresh.
        opts = storage.storage_options(root)
        for table in (*DATA_TABLES, "batches"):
            schema = SCHEMAS[table]
            lance.write_dataset(
                schema.empty_table(), lake.table_uri(table), schema=schema,
                mode="overwrite" if storage.exists(lake.table_uri(table)) else "create",
                storage_options=opts, data_storage_version="2.2",
            )
        versions = lake._latest_versions()
        lake._append_event(
            "batch-0000", 0, "committed", kind="init", versions=versions,
            params={"schema_version": SCHEMAS["prompts"].metadata[b"vidlake:schema_version"].decode()},
            started_at=_now(),
        )
        for table in DATA_TABLES:
            _tag(lake._open(table), "batch-0000", versions[table])
    return lake


def open_lake(
    uri: str | os.PathLike[str] | None = None,
    *,
    as_of: str | None = None,
    create: bool = False,
    heal: bool = True,
    analysis_cache: bool | None = None,
) -> Lake:
    """Open the lake at `uri` (default: $VIDLAKE_LAKE or ./lake), optionally pinned at a batch.

    Opening heals a lake left mid-commit by a killed writer (when no writer is active).
    `analysis_cache=False` makes SQL read Lance only (default: $VIDLAKE_ANALYSIS_CACHE, on).
    """
    root = storage.normalize(uri or default_uri())
    lake = Lake(root, analysis_cache=analysis_cache)
    if not storage.exists(lake.table_uri("batches")):
        if create:
            made = create_lake(root)
            made.analysis_cache = lake.analysis_cache
            return made
        raise LakeNotFound(f"no lake at {root}; create one with `vidlake init --lake {root}`")
    if as_of:
        return lake.as_of(as_of)
    if heal:
        lake.heal()
    if any(t not in lake.head() for t in DATA_TABLES):
        raise LakeNotFound(
            f"the lake at {root} is incomplete (its creation was interrupted); "
            f"run `vidlake init --lake {root}` again"
        )
    return lake


def _initialised(lake: Lake) -> bool:
    """A lake exists once its batch log holds the init event (the last step of create_lake)."""
    return storage.exists(lake.table_uri("batches")) and lake._open("batches").count_rows() > 0
