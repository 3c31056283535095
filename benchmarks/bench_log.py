"""Batch-log benchmark: what one commit costs as the lake's history grows.

Every commit checks the batch log for crashed writers before it writes its event, and a full
VidProM video import alone commits ~26,000 chunks, so the log's read cost is paid once per
chunk, and the ``videos`` table gains a version per chunk. Side by side at each size: a chunk
commit (a one-row append to ``videos`` written and committed, and its event) on a `Lake` that
has been committing all along (it folds in only the events appended since it last looked)
against what the same check costs when the whole log is read and folded from the first event
(a new `Lake`, and what every commit paid before the log state was kept), plus how many
fragments the log has and what opening ``videos`` at "latest" costs (it lists every version;
a commit opens the versions it needs by number instead, see `Lake._newest`).

    python benchmarks/bench_log.py --events 20000

The lake is built under --workdir (default /tmp/log-bench) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@contextlib.contextmanager
def listing_lookups():
    """Commits as before `Lake._newest`: every look-up of a table's newest version opens it
    at latest, and data is committed by URI (both list the table's versions)."""
    import lance

    from vidprom_lake.lake import Lake

    def newest(self, table):
        return self._open(table).version

    def commit_txn(self, table, txn, read_version):
        ds = lance.LanceDataset.commit(self.table_uri(table), txn, read_version=read_version,
                                       storage_options=self._storage)
        self._committed[table] = ds.version

    saved = Lake._newest, Lake._commit_txn
    Lake._newest, Lake._commit_txn = newest, commit_txn
    try:
        yield
    finally:
        Lake._newest, Lake._commit_txn = saved


#: Events per filler batch: a long import's chunk commits, then its committed event.
FILLER_EVENTS = 256


def filler_video(i: int):
    """One ``videos`` row (a few bytes of "video"): what a chunk appends, at its smallest."""
    import pyarrow as pa

    from vidprom_lake.schema import VIDEOS_SCHEMA

    row = {f.name: None for f in VIDEOS_SCHEMA}
    row.update(video_id=f"bench-{i:08d}", uuid=f"{i:08d}-0000-0000-0000-000000000000",
               model="bench", video=b"\x00" * 64, batch_id="batch-0001")
    return pa.Table.from_pylist([row], schema=VIDEOS_SCHEMA)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000, help="log size to grow to")
    ap.add_argument("--samples", type=int, default=20, help="commits timed at each size")
    ap.add_argument("--workdir", default="/tmp/log-bench")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "log.md"))
    args = ap.parse_args()
    import lance

    from vidprom_lake import create_lake, open_lake
    from vidprom_lake.lake import (
        LOG_CLEANUP_EVERY,
        LOG_FRAGMENT_ROWS,
        LOG_FRAGMENTS_MAX,
        LOG_SNAPSHOT,
        LOG_SNAPSHOT_EVERY,
        LOG_VERSIONS_KEPT,
        Lake,
        _LogState,
    )
    from vidprom_lake.lock import write_lock

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load = os.getloadavg()[0]
    sizes = [s for s in (100, 1_000, 5_000, 20_000, 50_000) if s < args.events] + [args.events]
    rows = []
    try:
        lake = create_lake(work / "lake")
        params = {"paths": ["/data/pika_videos/pika_1.tar"], "model": "pika", "chunk": 256}
        grow_s = 0.0
        videos_uri = lake.table_uri("videos")
        for size in sizes:
            t = time.perf_counter()
            with write_lock(lake.uri):  # grow the log: filler imports of up to 256 events
                versions = lake._latest_versions()  # (chunks, then committed), each event
                have = lake._open("batches").count_rows()  # after a new version of videos
                for i in range(have, size):
                    # (a dataset opened afresh each time: the one a commit returns shares its
                    # caches, which keep every version's manifest: GBs over 20,000 commits)
                    v = versions["videos"]
                    versions["videos"] = lance.LanceDataset.commit(
                        lake._open("videos", v), lance.LanceOperation.Append([]),
                        read_version=v).version
                    first = max(have, i - i % FILLER_EVENTS)
                    last = i == size - 1 or (i + 1) % FILLER_EVENTS == 0
                    lake._append_event(f"batch-{10_000_000 + first}", i - first,
                                       "committed" if last else "chunk", kind="import",
                                       params=params, versions=versions,
                                       counts={"videos_imported": 256 * (i - first + 1)})
            grow_s += time.perf_counter() - t
            # The log keeps its versions for LOG_VERSIONS_KEPT; this grows it far faster than
            # any job (20,000 events in ~3 min), which would leave it thousands of versions a
            # real log never has (appending an event lists them): clean them as time would.
            lake._open("batches").cleanup_old_versions(older_than=timedelta(0))
            commit, before = [], []
            with lake.batch("import", params=params) as b:  # a long import's chunk commits,
                for _ in range(args.samples):  # alternately as now and as before _newest
                    for times, patch in ((commit, contextlib.nullcontext()),
                                         (before, listing_lookups())):
                        with patch:
                            t = time.perf_counter()
                            b.append("videos", filler_video(len(commit) + len(before)))
                            b._commit("chunk")
                            times.append(time.perf_counter() - t)
            latest = []
            for _ in range(args.samples):
                t = time.perf_counter()
                lance.dataset(videos_uri)
                latest.append(time.perf_counter() - t)
            full = []
            for _ in range(args.samples):
                t = time.perf_counter()
                _LogState().refresh(open_lake(lake.uri)._open("batches"))
                full.append(time.perf_counter() - t)
            fresh = []  # what a new Lake (every command) does: the saved state + new events
            for _ in range(args.samples):
                t = time.perf_counter()
                st = Lake(lake.uri)._log()
                fresh.append(time.perf_counter() - t)
            snap = work / "lake" / LOG_SNAPSHOT
            saved = _LogState.from_json(snap.read_bytes()) if snap.exists() else None
            behind = st.rows - (saved.rows if saved else 0)
            events = lake._open("batches").count_rows()
            frags = len(lake._open("batches").get_fragments())
            nver = lance.dataset(videos_uri).version
            rows.append((events, frags, nver, statistics.median(commit),
                         statistics.median(before), statistics.median(full),
                         statistics.median(fresh), behind, statistics.median(latest)))
            print(f"{events:,} events, {frags} fragments, videos v{nver:,}: chunk commit "
                  f"{rows[-1][3] * 1000:.1f} ms (before: {rows[-1][4] * 1000:.1f} ms), full "
                  f"read {rows[-1][5] * 1000:.1f} ms, fresh Lake {rows[-1][6] * 1000:.1f} ms "
                  f"({behind} events after the saved state), videos latest open "
                  f"{rows[-1][8] * 1000:.1f} ms", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# Batch-log benchmark", "",
        f"`python benchmarks/bench_log.py --events {args.events}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared; load average {load:.1f} at the start), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB. The log grown "
        f"with filler imports of up to {FILLER_EVENTS} events each (chunks, then committed; in "
        f"{grow_s:.0f} s), each event after a new `videos` version; "
        "then the log's old versions removed, as a real job's pace would have; medians of "
        f"{args.samples} commits.",
        "",
        "| events in the log | log fragments | `videos` versions | chunk commit ms (a one-row "
        "`videos` append written and committed, log folded incrementally) | the same, tables "
        "opened at latest (before `_newest`) | reading + folding the whole log ms (a fresh "
        "`Lake`'s first look before the saved state) | a fresh `Lake`'s first look ms (the "
        "saved state, then the events after it) | events after the saved state | opening "
        "`videos` at latest ms (lists every version) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {e:,} | {f} | {v:,} | {c * 1000:.1f} | {p * 1000:.1f} | {r * 1000:.1f} | "
          f"{n * 1000:.1f} | {b:,} | {o * 1000:.1f} |" for e, f, v, c, p, r, n, b, o in rows],
        "",
        f"The log's one-row event fragments are merged past {LOG_FRAGMENTS_MAX} (into fragments "
        f"of up to {LOG_FRAGMENT_ROWS:,} events), and about every {LOG_CLEANUP_EVERY} versions "
        f"the log's versions older than {LOG_VERSIONS_KEPT} are removed. A chunk commit is: the "
        "write lock, recovery's check of the log (folding in the events appended since the last "
        "look), the check that no table has versions the log does not know, the data "
        "commit, the table versions, the event, the lock released. The sixth column is what "
        "recovery's check of the log alone cost a fresh `Lake` (every command opens one) when "
        f"it folded the whole log; it now starts from the state saved beside the tables "
        f"(`{LOG_SNAPSHOT}`, written every {LOG_SNAPSHOT_EVERY:,} events) and folds the events "
        "after it (seventh and eighth columns). A commit looks up each table's newest "
        "version several times (recovery, the data write and commit, the event's versions); "
        "it steps forward from the version the "
        "log gave (`Lake._newest`), where it used to open the table at latest, which lists "
        "every version (last column). The fifth column times the same commits, interleaved, "
        "with those look-ups and the data commit done the old way (the data files are "
        "written through the already open dataset in both; by URI, as before, the old way "
        "would list once more).",
        "",
        "For comparison (measured apart, 2026-12-03 21:2x UTC, `import_videos(..., chunk=4)` of "
        "2,000 clips = 500 chunk commits on a fresh lake): before the log was merged and folded "
        "incrementally, a chunk commit took 27.5 ms over its first 100 events and 172 ms over "
        "events 400-500 (every commit read every one-row fragment and parsed every event); with "
        "merging alone, 17-24 ms; with both, 9-11 ms.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
