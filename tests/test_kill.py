"""Crash safety, tested with real `kill -9`s of real `vidlake` processes.

Each test runs the CLI in a subprocess through a small harness script written here (never a
flag in library code): the harness wraps one library function so that the process sends
itself SIGKILL at a chosen point, then calls `vidlake`'s main. The points cover the whole
commit protocol of `vidprom_lake.lake`:

(a) while the rows are parsed and data files written (nothing committed yet);
(b) right after the Lance data commit, before the batch-log event (the commit point);
(c) right after the log event, before the batch's tags are made;
(d) while holding the lake's write lock.

After each kill the lake must open, read exactly as the previous batch (or, past the commit
point, as the finished one), `vidlake log` must show the killed batch as aborted, and a re-run
must complete it so that the lake equals one built without any kill.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from vidprom_lake import create_lake, open_lake, synth
from vidprom_lake.cli import main
from vidprom_lake.lock import write_lock

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEYS = {"prompts": "uuid", "videos": "video_id"}

# The harness: arms one kill point, then runs `vidlake <args>`. Its first argument is a JSON
# spec {"point": ..., "nth": N, ...}; the rest is the vidlake command line.
HARNESS = textwrap.dedent('''
    import json, os, signal, sys, time, contextlib

    spec = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    point, nth = spec["point"], spec.get("nth", 1)
    calls = {"n": 0}

    def die():
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def hit():
        calls["n"] += 1
        if calls["n"] == nth:
            die()

    import lance
    import vidprom_lake.lake as L
    import vidprom_lake.lock as K
    from vidprom_lake.ingest import hdf5, pipeline

    if spec.get("lease_seconds"):
        K.LEASE_SECONDS = float(spec["lease_seconds"])

    # Small row batches and data files, so that a kill "while writing" lands between files.
    pipeline.BATCH_ROWS = spec.get("batch_rows", pipeline.BATCH_ROWS)
    _append = L.Batch.append
    def append(self, table, data, *, schema=None, max_rows_per_file=L.FRAGMENT_ROWS):
        return _append(self, table, data, schema=schema,
                       max_rows_per_file=spec.get("file_rows", max_rows_per_file))
    L.Batch.append = append
    _attach = hdf5.attach
    def attach(lake, path, opts, report):
        opts.chunk_rows = spec.get("chunk_rows", opts.chunk_rows)
        return _attach(lake, path, opts, report)
    hdf5.attach = attach

    if point == "rows":            # (a) CSV: a batch of rows is handed to Lance to be written
        # (the ingest's stages run a few batches ahead of the write, so the hook sits at the
        # hand-over, where earlier batches are in data files already)
        _conform = L.conform
        def conform(*a, **k):
            hit()
            return _conform(*a, **k)
        L.conform = conform
    elif point == "vectors":       # (a) HDF5: a fragment's vector file has just been written
        import lance.fragment      # (and the other fragment's is being written beside it)
        _merge = lance.fragment.LanceFragment.merge_columns
        def merge_columns(self, *a, **k):
            out = _merge(self, *a, **k)
            hit()
            return out
        lance.fragment.LanceFragment.merge_columns = merge_columns
    elif point == "data-commit":   # (b) after the Lance commit, before the log event
        _commit = lance.LanceDataset.commit
        def commit(*a, **k):
            out = _commit(*a, **k)
            hit()
            return out
        lance.LanceDataset.commit = staticmethod(commit)
    elif point == "write-dataset":  # after the Nth whole-dataset write (init, log events)
        _write = lance.write_dataset
        def write_dataset(*a, **k):
            out = _write(*a, **k)
            hit()
            return out
        lance.write_dataset = write_dataset
    elif point == "log-event":     # (c) after the commit-point event, before tagging
        _tag = L._tag
        def tag(*a, **k):
            hit()
            return _tag(*a, **k)
        L._tag = tag
    elif point == "lock":          # (d) inside the write lock (Nth time it is taken)
        _lock = L.write_lock
        @contextlib.contextmanager
        def write_lock(root, timeout=600.0):
            with _lock(root, timeout):
                hit()
                yield
        L.write_lock = write_lock
    elif point == "hold-lock":     # not a kill: hold the lock a while (concurrency tests)
        _lock = L.write_lock
        @contextlib.contextmanager
        def write_lock(root, timeout=600.0):
            with _lock(root, timeout):
                time.sleep(spec.get("hold", 0.5))
                yield
        L.write_lock = write_lock
    elif point != "none":
        raise SystemExit(f"unknown kill point {point}")

    from vidprom_lake.cli import main
    main(argv, prog_name="vidlake")
''')


# ---------------------------------------------------------------------- helpers
def write_harness(where: Path) -> Path:
    path = where / "kill_harness.py"
    if not path.exists():
        path.write_text(HARNESS)
    return path


def spawn(harness: Path, spec: dict[str, Any], *args: str, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(harness), json.dumps(spec), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )


def run_killed(harness: Path, spec: dict[str, Any], *args: str, env: dict[str, str] | None = None
               ) -> None:
    """Run the harness and insist that it died of SIGKILL (the kill point was reached)."""
    proc = spawn(harness, spec, *args, env=env)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL, (
        f"expected a SIGKILL at {spec}, got exit {proc.returncode}\n{out.decode()}\n{err.decode()}"
    )


def fingerprint(lake: Any) -> dict[str, Any]:
    """Per table: schema, row count and a hash of every row's content (batch ids left out,
    since a re-run gets a new batch id; vector columns included)."""
    out: dict[str, Any] = {}
    for table, key in KEYS.items():
        df = lake.to_polars(table, vectors=True, lazy=False)
        cols = sorted(c for c in df.columns if c != "batch_id")
        df = df.select(cols).sort(key)
        h = hashlib.sha256()
        h.update(repr([(c, str(df.schema[c])) for c in cols]).encode())
        h.update(df.hash_rows(seed=1).to_numpy().tobytes())
        out[table] = (df.height, h.hexdigest())
    return out


def cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def log_rows(uri: str) -> list[dict[str, Any]]:
    result = cli("--lake", uri, "log", "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def data_files(uri: str, table: str = "prompts") -> set[str]:
    return {p.name for p in Path(uri, f"{table}.lance", "data").glob("*")}


def referenced_files(lake: Any, table: str = "prompts") -> set[str]:
    ds = lake.dataset(table)
    return {Path(f.path).name for frag in ds.get_fragments() for f in frag.metadata.files}


def tags(uri: str, table: str = "prompts") -> dict[str, int]:
    import lance

    ds = lance.dataset(str(Path(uri, f"{table}.lance")))
    return {name: t["version"] for name, t in ds.tags.list().items()}


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two CSVs, an HDF5 of their embeddings, and the lakes a never-killed run builds."""
    d = tmp_path_factory.mktemp("kill")
    a = synth.write_vidprom_csv(d / "a.csv", 400, seed=11)
    b = synth.write_vidprom_csv(d / "b.csv", 1500, seed=12)
    import csv

    uuids = []
    for f in (a, b):
        with open(f, encoding="utf-8") as fh:
            uuids += [r["uuid"] for r in csv.DictReader(fh)]
    h5 = synth.write_embeddings_hdf5(d / "e.h5", uuids, 24, seed=3, model="test:random-24")

    # Reference lakes, built in-process with no kill: after a.csv, after b.csv, after e.h5.
    ref = create_lake(d / "ref")
    ref.ingest(str(a))
    state_a = d / "state_a"
    shutil.copytree(ref.uri, state_a)
    fp_a = fingerprint(open_lake(ref.uri))
    ref.ingest(str(b))
    state_ab = d / "state_ab"
    shutil.copytree(ref.uri, state_ab)
    fp_ab = fingerprint(open_lake(ref.uri))
    ref.ingest(str(h5))
    fp_abe = fingerprint(open_lake(ref.uri))
    assert fp_a["prompts"][0] == 400 and fp_ab["prompts"][0] == 1900
    assert fp_ab != fp_abe  # the embeddings change the fingerprint
    return {"dir": d, "a": a, "b": b, "h5": h5, "state_a": state_a, "state_ab": state_ab,
            "fp_a": fp_a, "fp_ab": fp_ab, "fp_abe": fp_abe, "harness": write_harness(d)}


def copy_lake(src: Path, dst: Path) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def assert_killed_batch_aborted(uri: str, before: int) -> None:
    """`vidlake log`: the killed batch is shown as aborted (or not at all); nothing after it."""
    rows = log_rows(uri)
    ids = [r["batch_id"] for r in rows]
    assert len(ids) in (before, before + 1), ids
    for r in rows[:before]:
        assert r["status"] == "committed", rows
    if len(ids) == before + 1:
        assert rows[-1]["status"] == "aborted", rows[-1]
        assert "writer died" in (rows[-1]["message"] or ""), rows[-1]


def assert_rerun_completes(uri: str, path: Path, expected: dict[str, Any], kind: str) -> str:
    result = cli("--lake", uri, "ingest", str(path), "--report", "json")
    assert result.exit_code == 0, result.output
    rows = log_rows(uri)
    last = rows[-1]
    assert last["status"] == "committed" and last["kind"] == kind, last
    lake = open_lake(uri)
    assert fingerprint(lake) == expected
    # The re-run tagged what it changed, at the version its log event records.
    for table in ("prompts",):
        tv = tags(uri, table)
        if last["versions"].get(table) is not None and last["batch_id"] in tv:
            assert tv[last["batch_id"]] == last["versions"][table]
    return str(last["batch_id"])


# ---------------------------------------------------------------------- CSV ingest kills
CSV_POINTS = [
    pytest.param({"point": "rows", "nth": 4, "batch_rows": 128, "file_rows": 128}, "before",
                 id="a-writing-data-files"),
    pytest.param({"point": "data-commit", "nth": 1}, "before", id="b-after-data-commit"),
    pytest.param({"point": "log-event", "nth": 1}, "after", id="c-after-log-event"),
    pytest.param({"point": "lock", "nth": 2}, "before", id="d-holding-lock-at-commit"),
    pytest.param({"point": "lock", "nth": 1}, "before", id="d-holding-lock-at-start"),
]


@pytest.mark.parametrize(("spec", "outcome"), CSV_POINTS)
def test_kill_csv_ingest(corpus: dict[str, Any], tmp_path: Path, spec: dict[str, Any],
                         outcome: str) -> None:
    uri = copy_lake(corpus["state_a"], tmp_path / "lake")
    files_before = data_files(uri)
    run_killed(corpus["harness"], spec, "--lake", uri, "ingest", str(corpus["b"]))

    # The lake opens, and reads equal the previous batch exactly (or the finished batch when
    # the kill came after the commit point).
    lake = open_lake(uri)
    expected = corpus["fp_a"] if outcome == "before" else corpus["fp_ab"]
    assert fingerprint(lake) == expected
    assert lake.query("select count(*) as n from prompts").column("n")[0].as_py() == expected["prompts"][0]
    assert fingerprint(lake.as_of("batch-0001")) == corpus["fp_a"]
    if spec["point"] == "rows":
        # The kill really landed mid-write: data files exist that no version references.
        orphans = data_files(uri) - files_before
        assert orphans and not orphans & referenced_files(lake)
    if outcome == "before":
        assert_killed_batch_aborted(uri, before=2)
    else:
        rows = log_rows(uri)
        assert rows[-1]["batch_id"] == "batch-0002" and rows[-1]["status"] == "committed"

    # Nobody holds the lock any more.
    with write_lock(uri, timeout=2.0):
        pass

    batch = assert_rerun_completes(uri, corpus["b"], corpus["fp_ab"], "ingest")
    lake = open_lake(uri)
    new = lake.query(f"select count(*) as n from prompts where batch_id = '{batch}'")
    added = 0 if outcome == "after" else 1500
    assert new.column("n")[0].as_py() == added
    if outcome == "after":
        # The commit point had passed: batch-0002 holds the rows, and its tag was completed.
        assert tags(uri)["batch-0002"] == log_rows(uri)[2]["versions"]["prompts"]


# ---------------------------------------------------------------------- HDF5 attach kills
H5_POINTS = [
    # 128-row slices: the 400-row fragment takes 4 of them, the 1500-row one 12, written at
    # once (two threads); killed as the first fragment's vector file is complete, while the
    # other is being written: that file is left behind, never committed
    pytest.param({"point": "vectors", "nth": 1, "chunk_rows": 128}, "before",
                 id="a-writing-vector-files"),
    pytest.param({"point": "data-commit", "nth": 1}, "before", id="b-after-data-commit"),
    pytest.param({"point": "log-event", "nth": 1}, "after", id="c-after-log-event"),
    pytest.param({"point": "lock", "nth": 2}, "before", id="d-holding-lock"),
]


@pytest.mark.parametrize(("spec", "outcome"), H5_POINTS)
def test_kill_hdf5_attach(corpus: dict[str, Any], tmp_path: Path, spec: dict[str, Any],
                          outcome: str) -> None:
    uri = copy_lake(corpus["state_ab"], tmp_path / "lake")
    files_before = data_files(uri)
    run_killed(corpus["harness"], spec, "--lake", uri, "ingest", str(corpus["h5"]))

    lake = open_lake(uri)
    expected = corpus["fp_ab"] if outcome == "before" else corpus["fp_abe"]
    assert fingerprint(lake) == expected
    has_vectors = "embedding" in lake.dataset("prompts").schema.names
    assert has_vectors == (outcome == "after")
    if spec["point"] == "vectors":
        orphans = data_files(uri) - files_before
        assert orphans and not orphans & referenced_files(lake)
    if outcome == "before":
        assert_killed_batch_aborted(uri, before=3)
    with write_lock(uri, timeout=2.0):
        pass

    assert_rerun_completes(uri, corpus["h5"], corpus["fp_abe"], "attach-embeddings")
    lake = open_lake(uri)
    got = lake.query("select count(*) as n from prompts").column("n")[0].as_py()
    assert got == 1900
    assert lake.dataset("prompts").count_rows(filter="embedding IS NULL") == 0


# ---------------------------------------------------------------------- timing-based kills
def test_kill_large_ingest_at_random_moments(corpus: dict[str, Any], tmp_path: Path) -> None:
    """Kill a large ingest at moments picked by watching it, not by wrapping anything.

    Every kill must leave the lake either exactly at the previous batch or exactly at the
    finished one, and a final re-run must equal a never-killed run.
    """
    big = synth.write_vidprom_csv(tmp_path / "big.csv", 40_000, seed=21)
    ref = create_lake(tmp_path / "ref")
    ref.ingest(str(corpus["a"]))
    ref.ingest(str(big))
    fp_big = fingerprint(open_lake(ref.uri))
    assert fp_big["prompts"][0] == 40_400

    uri = copy_lake(corpus["state_a"], tmp_path / "lake")
    data_dir = Path(uri, "prompts.lance", "data")
    versions_dir = Path(uri, "prompts.lance", "_versions")
    outcomes = []

    def watch_until(proc: subprocess.Popen[bytes], cond: Any, limit: float = 60.0) -> None:
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < limit:
            if cond():
                return
            time.sleep(0.002)

    def count(d: Path) -> int:
        return len(list(d.iterdir()))

    def after_delay() -> Any:
        t0 = time.monotonic()
        return lambda: time.monotonic() - t0 > 0.8

    def new_files_in(d: Path) -> Any:
        n = count(d)
        return lambda: count(d) > n

    # Three kills: as soon as new data files appear (surely mid-ingest, whatever the speed of
    # the machine); after a fixed delay; as soon as a new table version appears (racing the
    # log event). A kill that lands after the commit ends the series.
    triggers = [lambda: new_files_in(data_dir), after_delay, lambda: new_files_in(versions_dir)]
    for make_trigger in triggers:
        fp_now = fingerprint(open_lake(uri))
        if fp_now == fp_big:
            break
        known = len(log_rows(uri))
        trigger = make_trigger()
        proc = spawn(corpus["harness"], {"point": "none", "file_rows": 4096, "batch_rows": 4096},
                     "--lake", uri, "ingest", str(big))
        watch_until(proc, trigger)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        lake = open_lake(uri)
        fp = fingerprint(lake)
        assert fp in (corpus["fp_a"], fp_big), "a kill left the lake between two batches"
        outcomes.append(("before" if fp == corpus["fp_a"] else "after", proc.returncode))
        # The killed batch is committed (past the commit point), aborted, or absent (killed
        # before it logged its start); never left running.
        new = [r["status"] for r in log_rows(uri)[known:]]
        assert new in ([], ["aborted"], ["committed"]), new
        assert (new == ["committed"]) == (fp == fp_big)
    # At least one kill landed mid-ingest (otherwise this test proved nothing).
    print("kills:", outcomes)
    assert ("before", -signal.SIGKILL) in outcomes, outcomes
    result = cli("--lake", uri, "ingest", str(big), "--report", "json")
    assert result.exit_code == 0, result.output
    assert fingerprint(open_lake(uri)) == fp_big


# ---------------------------------------------------------------------- the lock
def test_two_concurrent_writers_both_land(corpus: dict[str, Any], tmp_path: Path) -> None:
    """Two ingest processes at once: both commit, each batch whole, nothing lost."""
    c = synth.write_vidprom_csv(tmp_path / "c.csv", 700, seed=31)
    d = synth.write_vidprom_csv(tmp_path / "d.csv", 900, seed=32)
    uri = copy_lake(corpus["state_a"], tmp_path / "lake")
    # Each holds the lock a little at every acquisition, so their commits must queue.
    procs = [spawn(corpus["harness"], {"point": "hold-lock", "hold": 0.4},
                   "--lake", uri, "ingest", str(p)) for p in (c, d)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    lake = open_lake(uri)
    rows = log_rows(uri)
    assert [r["status"] for r in rows] == ["committed"] * 4
    assert sorted(r["source"] for r in rows[2:]) == sorted([str(c), str(d)])
    assert lake.count("prompts") == 400 + 700 + 900
    # Each batch's rows carry its id, and each batch's as-of view holds exactly its rows.
    for r in rows[2:]:
        n = lake.count("prompts", where=f"batch_id = '{r['batch_id']}'")
        assert n == r["rows_added"]
    # in commit order: the batch that started second may commit first
    first, second = sorted(rows[2:], key=lambda r: r["time"])
    assert open_lake(uri, as_of=first["batch_id"]).count("prompts") == 400 + first["rows_added"]
    assert open_lake(uri, as_of=second["batch_id"]).count("prompts") == 2000


def test_kill_while_holding_lock_does_not_leave_lake_locked(corpus: dict[str, Any],
                                                             tmp_path: Path) -> None:
    uri = copy_lake(corpus["state_a"], tmp_path / "lake")
    # Another writer waits on the lock while the first is killed inside it.
    holder = spawn(corpus["harness"], {"point": "lock", "nth": 2}, "--lake", uri, "ingest",
                   str(corpus["b"]))
    c = synth.write_vidprom_csv(tmp_path / "c.csv", 300, seed=41)
    holder.wait(timeout=120)
    assert holder.returncode == -signal.SIGKILL
    t0 = time.monotonic()
    with write_lock(uri, timeout=5.0):
        waited = time.monotonic() - t0
    assert waited < 1.0
    result = cli("--lake", uri, "ingest", str(c))
    assert result.exit_code == 0, result.output
    rows = log_rows(uri)
    assert [r["status"] for r in rows] == ["committed", "committed", "aborted", "committed"]
    assert open_lake(uri).count("prompts") == 700


def test_writer_killed_mid_commit_while_another_writes(corpus: dict[str, Any],
                                                        tmp_path: Path) -> None:
    """A writer is killed right after its data commit while a second one is still writing.

    Recovery (run by the second writer's commit) must roll back only the dead writer's version,
    mark only the dead batch aborted, and the live batch must commit whole on top.
    """
    uri = copy_lake(corpus["state_a"], tmp_path / "lake")
    c = synth.write_vidprom_csv(tmp_path / "c.csv", 250, seed=61)
    staged = create_lake(tmp_path / "c_lake")
    staged.ingest(str(c))
    rows = staged.dataset("prompts").to_table()
    lake = open_lake(uri)
    with lake.batch("ingest", source=str(c)) as b:
        i = rows.schema.get_field_index("batch_id")
        rows = rows.set_column(i, rows.schema.field(i), pa.array([b.batch_id] * rows.num_rows))
        b.append("prompts", rows)  # data files written, commit pending
        b.counts["rows_added"] = rows.num_rows
        run_killed(corpus["harness"], {"point": "data-commit"}, "--lake", uri, "ingest",
                   str(corpus["b"]))
        live = b.batch_id
    log = log_rows(uri)
    by_id = {r["batch_id"]: r for r in log}
    assert by_id[live]["status"] == "committed"
    dead = [r for r in log if r["batch_id"] != live and r["status"] != "committed"]
    assert [r["status"] for r in dead] == ["aborted"]
    assert "rolled back" in dead[0]["message"]
    lake = open_lake(uri)
    assert lake.count("prompts") == 400 + 250
    assert lake.count("prompts", where=f"batch_id = '{live}'") == 250
    # The killed ingest re-runs to completion on top.
    assert cli("--lake", uri, "ingest", str(corpus["b"])).exit_code == 0
    assert open_lake(uri).count("prompts") == 400 + 250 + 1500


def test_attach_racing_an_ingest_fails_whole_and_reruns(corpus: dict[str, Any],
                                                        tmp_path: Path) -> None:
    """An HDF5 attach whose table gained rows meanwhile cannot commit its column: it fails
    whole, with a clear message and a `failed` log entry; the ingest lands; a re-run attaches."""
    uri = copy_lake(corpus["state_a"], tmp_path / "lake")
    from vidprom_lake.errors import LakeBusy
    from vidprom_lake.ingest import hdf5

    lake = open_lake(uri)
    original = hdf5._Vectors.pieces
    ran: list[int] = []

    def pieces(self: Any, *a: Any, **k: Any) -> Any:
        if not ran:  # the first slice of vectors: another process ingests now
            proc = spawn(corpus["harness"], {"point": "none"}, "--lake", uri, "ingest",
                         str(corpus["b"]))
            ran.append(proc.wait(timeout=120))
        yield from original(self, *a, **k)

    hdf5._Vectors.pieces = pieces
    try:
        with pytest.raises(LakeBusy, match="another writer changed table prompts"):
            lake.ingest(str(corpus["h5"]))
    finally:
        hdf5._Vectors.pieces = original
    assert ran == [0]
    log = log_rows(uri)
    assert [(r["kind"], r["status"]) for r in log[2:]] == [
        ("attach-embeddings", "failed"), ("ingest", "committed")]
    lake = open_lake(uri)
    assert "embedding" not in lake.dataset("prompts").schema.names
    assert fingerprint(lake) == corpus["fp_ab"]
    assert_rerun_completes(uri, corpus["h5"], corpus["fp_abe"], "attach-embeddings")


def test_sql_reads_the_logged_head_inside_a_commit_window(corpus: dict[str, Any],
                                                          tmp_path: Path) -> None:
    """Between a writer's data commit and its log event, SQL must not show the new rows."""
    import lance

    uri = copy_lake(corpus["state_a"], tmp_path / "lake")
    lake = open_lake(uri)
    rows = open_lake(corpus["state_ab"]).dataset("prompts").to_table().slice(400, 10)
    b = lake.batch("ingest", source="window").__enter__()
    b.append("prompts", rows)
    st = b._staged[0]
    with write_lock(uri):  # the writer's commit window: data committed, event not yet written
        lance.LanceDataset.commit(lake.table_uri("prompts"), st.transaction,
                                  read_version=st.read_version)
        reader = open_lake(uri)  # cannot heal: the lock is held
        assert reader.count("prompts") == 400
        assert reader.query("select count(*) as n from prompts").column("n")[0].as_py() == 400


@pytest.mark.parametrize("spec", [
    pytest.param({"point": "data-commit", "nth": 1}, id="b-after-data-commit"),
    pytest.param({"point": "log-event", "nth": 1}, id="c-after-log-event"),
])
def test_kill_hdf5_fill_of_existing_column(corpus: dict[str, Any], tmp_path: Path,
                                           spec: dict[str, Any]) -> None:
    """The other attach path: the column exists, the file fills rows still missing it
    (a merge_insert of existing rows rather than new column files)."""
    import h5py
    import numpy as np

    part = tmp_path / "e_first400.h5"
    with h5py.File(corpus["h5"], "r") as src, h5py.File(part, "w") as dst:
        dst.create_dataset("uuid", data=src["uuid"][:400])
        dst.create_dataset("embeddings", data=np.asarray(src["embeddings"][:400]))
        dst.attrs["model"] = src.attrs["model"]
    uri = copy_lake(corpus["state_ab"], tmp_path / "lake")
    open_lake(uri).ingest(str(part))
    before = fingerprint(open_lake(uri))
    assert open_lake(uri).count("prompts", where="embedding IS NULL") == 1500

    run_killed(corpus["harness"], spec, "--lake", uri, "ingest", str(corpus["h5"]))
    lake = open_lake(uri)
    if spec["point"] == "data-commit":
        assert fingerprint(lake) == before
        assert_killed_batch_aborted(uri, before=4)
    else:
        assert fingerprint(lake) == corpus["fp_abe"]
    assert_rerun_completes(uri, corpus["h5"], corpus["fp_abe"], "attach-embeddings")
    assert open_lake(uri).count("prompts", where="embedding IS NULL") == 0


CHUNKED_JOB = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    import pyarrow as pa
    from vidprom_lake import open_lake

    uri, src, die_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lake = open_lake(uri)
    rows = open_lake(src).dataset("prompts").to_table()
    have = set(lake.uuid_index().tolist())
    todo = rows.filter(pa.array([u not in have for u in rows.column("uuid").to_pylist()]))
    with lake.batch("chunked-copy", source=src) as b:
        todo = todo.set_column(todo.schema.get_field_index("batch_id"), "batch_id",
                               pa.array([b.batch_id] * todo.num_rows))
        for i, start in enumerate(range(0, todo.num_rows, 300)):
            if i == die_after:
                os.kill(os.getpid(), signal.SIGKILL)
            b.append("prompts", todo.slice(start, 300))
            b.counts["rows_added"] = b.counts.get("rows_added", 0) + min(300, todo.num_rows - start)
            b.commit()
''')


def test_long_job_killed_between_chunks_keeps_its_chunks(corpus: dict[str, Any],
                                                         tmp_path: Path) -> None:
    """A chunked job (how enrichers and generators write) killed after two chunks: those two
    stay committed and readable, the batch is logged aborted, and a resumed run completes."""
    job = tmp_path / "chunked_job.py"
    job.write_text(CHUNKED_JOB)
    uri = copy_lake(corpus["state_a"], tmp_path / "lake")
    src = str(corpus["state_ab"])
    proc = subprocess.run([sys.executable, str(job), uri, src, "2"], capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    lake = open_lake(uri)
    assert lake.count("prompts") == 400 + 600
    log = log_rows(uri)
    assert log[-1]["status"] == "aborted" and log[-1]["kind"] == "chunked-copy"
    assert log[-1]["rows_added"] == 600
    proc = subprocess.run([sys.executable, str(job), uri, src, "-1"], capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert fingerprint(open_lake(uri)) == corpus["fp_ab"]
    assert log_rows(uri)[-1]["status"] == "committed"


@pytest.mark.parametrize("nth", [1, 3, 4], ids=["after-first-table", "after-empty-log",
                                                "after-init-event"])
def test_kill_init(corpus: dict[str, Any], tmp_path: Path, nth: int) -> None:
    """`vidlake init` killed part-way: before its init event there is no lake (a clear error,
    and init again works); after it, the lake is whole and its missing tags are repaired."""
    uri = str(tmp_path / "lake")
    run_killed(corpus["harness"], {"point": "write-dataset", "nth": nth}, "--lake", uri, "init")
    if nth < 4:
        result = cli("--lake", uri, "log")
        assert result.exit_code == 1
        assert "init" in result.output and ("no lake" in result.output or "incomplete" in result.output)
        result = cli("--lake", uri, "init")
        assert result.exit_code == 0, result.output
    else:
        result = cli("--lake", uri, "init")
        assert result.exit_code == 1 and "already exists" in result.output
        assert "batch-0000" not in tags(uri)
    result = cli("--lake", uri, "ingest", str(corpus["a"]))
    assert result.exit_code == 0, result.output
    assert fingerprint(open_lake(uri)) == corpus["fp_a"]
    assert [r["status"] for r in log_rows(uri)] == ["committed", "committed"]
    assert {"batch-0000", "batch-0001"} <= set(tags(uri))
