"""Batches: the log, tags, as-of reads, diff and restore."""

from __future__ import annotations

import json
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest

from vidprom_lake import open_lake, synth
from vidprom_lake.errors import BatchNotFound, LakeExists, LakeNotFound, VidlakeError


@pytest.fixture
def three_batches(lake, tmp_path):
    a = synth.write_vidprom_csv(tmp_path / "a.csv", 50, seed=1)
    b = synth.write_vidprom_csv(tmp_path / "b.csv", 30, seed=2)
    lake.ingest(a)                       # batch-0001
    lake.ingest(b)                       # batch-0002
    uuids = [r["uuid"] for r in synth.rows(50, seed=1)]
    synth.write_embeddings_hdf5(tmp_path / "e.h5", uuids[:20], 8)
    lake.ingest(tmp_path / "e.h5")       # batch-0003
    return lake


def test_log_records_every_batch(three_batches):
    log = three_batches.log()
    assert [b.batch_id for b in log] == [f"batch-000{i}" for i in range(4)]
    assert [b.kind for b in log] == ["init", "ingest", "ingest", "attach-embeddings"]
    assert all(b.status == "committed" for b in log)
    ing = log[1]
    assert ing.counts["rows_added"] == 50
    assert len(ing.source_sha256) == 64
    assert ing.params["format"] == "vidprom"
    assert set(ing.versions) == {"prompts", "videos"}
    assert log[3].counts["rows_updated"] == 20


def test_tags_on_changed_tables(three_batches):
    ds = lance.dataset(three_batches.table_uri("prompts"))
    tags = ds.tags.list()
    for b in three_batches.log():
        assert tags[b.batch_id]["version"] == b.versions["prompts"]
    vids = lance.dataset(three_batches.table_uri("videos")).tags.list()
    assert "batch-0001" not in vids  # videos did not change in an ingest


def test_as_of_reads_the_past(three_batches):
    lake = three_batches
    assert lake.as_of("batch-0001").count() == 50
    assert lake.as_of("batch-0002").query("select count(*) n from prompts").to_pylist() == [{"n": 80}]
    assert "embedding" not in lake.as_of("batch-0002").dataset("prompts").schema.names
    past = lake.as_of("batch-0001")
    assert past.read_only
    assert [b.batch_id for b in past.log()] == ["batch-0000", "batch-0001"]
    assert past.query("select count(*) n from batches").to_pylist() == [{"n": 2}]
    with pytest.raises(VidlakeError, match="read-only"):
        past.ingest  # noqa: B018 - attribute exists
        past.batch("ingest")
    with pytest.raises(BatchNotFound, match="batch-0099"):
        lake.as_of("batch-0099")
    with pytest.raises(BatchNotFound, match="not a batch id"):
        lake.as_of("latest")


def test_diff(three_batches):
    d = {r["table"]: r for r in three_batches.diff("batch-0001", "batch-0003")}
    assert (d["prompts"]["rows_from"], d["prompts"]["rows_to"]) == (50, 80)
    assert (d["prompts"]["added"], d["prompts"]["removed"], d["prompts"]["changed"]) == (30, 0, 20)
    assert d["videos"]["added"] == 0
    assert "batch-0003:attach-embeddings" in d["prompts"]["batches"]


def test_restore_keeps_history(three_batches):
    lake = three_batches
    info = lake.restore("batch-0001")
    assert info.batch_id == "batch-0004" and info.kind == "restore"
    lake = open_lake(lake.uri)
    assert lake.count() == 50
    assert "embedding" not in lake.dataset("prompts").schema.names
    # history is still there and can be restored again
    assert lake.as_of("batch-0003").count() == 80
    lake.restore("batch-0003")
    lake = open_lake(lake.uri)
    assert lake.count() == 80 and lake.count(where="embedding IS NOT NULL") == 20
    # and writing after a restore works
    lake.ingest(synth.write_vidprom_csv(lake.uri + "/../c.csv", 5, seed=9))
    assert open_lake(lake.uri).count() == 85


def test_create_and_open_errors(tmp_path):
    from vidprom_lake import create_lake

    with pytest.raises(LakeNotFound, match="vidlake init"):
        open_lake(tmp_path / "none")
    create_lake(tmp_path / "l")
    with pytest.raises(LakeExists):
        create_lake(tmp_path / "l")
    assert create_lake(tmp_path / "l", exist_ok=True).count() == 0


def test_failed_batch_is_logged_and_commits_nothing(lake, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("uuid,prompt,time\n,x,not a time\n")
    with pytest.raises(VidlakeError):
        lake.ingest(bad)
    last = lake.log()[-1]
    assert last.status == "failed" and "bad timestamp" in last.message
    assert lake.count() == 0
    assert lake.query("select status from batches order by batch_id desc limit 1").to_pylist() == [
        {"status": "failed"}]


def test_secrets_never_reach_the_log(lake):
    with lake.batch("custom", params={"api_key": "sk-123", "nested": {"token": "t"}, "ok": 1}) as b:
        b.counts["rows_added"] = 0
    raw = lake._open("batches").to_table().to_pylist()
    assert "sk-123" not in json.dumps(raw, default=str)
    assert lake.log()[-1].params == {"nested": {}, "ok": 1}


def test_polars_and_point_lookup(three_batches):
    import polars as pl

    lf = three_batches.to_polars("prompts")
    assert isinstance(lf, pl.LazyFrame)
    df = lf.filter(pl.col("toxicity") > 0.5).select("uuid", "prompt").collect()
    assert df.height == three_batches.count(where="toxicity > 0.5")
    full = three_batches.to_polars("prompts", lazy=False, vectors=True)
    assert "embedding" in full.columns and "embedding" not in lf.collect_schema().names()
    v = three_batches.to_polars("videos", lazy=False)
    assert "video" not in v.columns
    some = df["uuid"][0] if df.height else full["uuid"][0]
    rec = three_batches.get_prompt(some)
    assert rec["uuid"] == some
    assert three_batches.get_prompt("00000000-0000-5000-8000-000000000000") is None
    vec = three_batches.get_prompt(full.filter(pl.col("embedding").is_not_null())["uuid"][0],
                                   vectors=True)["embedding"]
    assert len(vec) == 8 and np.isfinite(vec).all()


def _fresh_state(lake):
    from vidprom_lake.lake import _LogState

    return _LogState().refresh(lake._open("batches"))


def _state(st):
    return (st.rows, st.tail, st.head, st.last, st.batch_versions, st.newest_committed,
            st.max_number)


def test_log_is_compacted_and_commits_read_only_new_events(lake, tmp_path):
    """Every event is a one-row Lance fragment; past LOG_FRAGMENTS_MAX they are merged, in
    order. The state commits and recovery use is folded in event by event and always equals
    one built from the whole log."""
    from vidprom_lake.lake import LOG_FRAGMENTS_MAX

    rows = synth.write_vidprom_csv(tmp_path / "a.csv", 40, seed=1)
    lake.ingest(rows)
    for i in range(LOG_FRAGMENTS_MAX):  # two events each, a chunk commit between
        with lake.batch("test", params={"i": i}) as b:
            b.commit()
        if i % 7 == 3:  # and failed batches
            with pytest.raises(RuntimeError), lake.batch("test-fail"):
                raise RuntimeError(f"boom {i}")
        assert _state(lake._log()) == _state(_fresh_state(lake))
    ds = lake._open("batches")
    assert ds.count_rows() > 2 * LOG_FRAGMENTS_MAX
    assert len(ds.get_fragments()) <= LOG_FRAGMENTS_MAX
    log = lake.log()
    assert [b.batch_id for b in log] == [f"batch-{i:04d}" for i in range(len(log))]
    assert log[1].kind == "ingest" and log[1].counts["rows_added"] == 40
    assert [b.params["i"] for b in log if b.kind == "test"] == list(range(LOG_FRAGMENTS_MAX))
    assert {b.status for b in log if b.kind == "test-fail"} == {"failed"}
    assert lake.head() == lake._latest_versions()
    assert lake.count() == 40
    view = lake.query("select batch_id, status from batches order by batch_id").to_pylist()
    assert view == [{"batch_id": b.batch_id, "status": b.status} for b in log]  # SQL view too


def test_log_state_starts_over_when_the_log_is_not_what_it_read(lake, tmp_path):
    """If the event the state stopped at is no longer where it was (the log rewritten
    behind its back), it is rebuilt from the whole log, not folded onto stale counts."""
    lake.ingest(synth.write_vidprom_csv(tmp_path / "a.csv", 10, seed=1))
    with lake.batch("test") as b:
        b.commit()
    st = lake._log()
    assert st.max_number == 2
    ds = lake._open("batches")
    older = lance.dataset(ds.uri, version=2)
    lance.write_dataset(older.to_table(), ds.uri, mode="overwrite")  # the log as after init+1
    assert _state(lake._log()) == _state(_fresh_state(lake))
    assert lake._log().max_number < 2


def test_old_versions_of_the_log_are_cleaned_up(lake, monkeypatch):
    """Versions of the batch log past LOG_VERSIONS_KEPT go at cleanups, with the files only
    they used; the log itself and the data tables' versions are untouched."""
    from datetime import timedelta

    from vidprom_lake import lake as lake_mod

    monkeypatch.setattr(lake_mod, "LOG_VERSIONS_KEPT", timedelta(0))
    monkeypatch.setattr(lake_mod, "LOG_CLEANUP_EVERY", 64)
    for i in range(120):
        with lake.batch("test", params={"i": i}):
            pass
    ds = lake._open("batches")
    kept = list(ds.versions())
    assert ds.version > 240 and len(kept) < 100
    assert [b.params.get("i") for b in lake.log()][1:] == list(range(120))
    assert len(lake._open("prompts").versions()) == 1  # only the log is cleaned


def test_commits_find_newest_versions_without_listing_the_history(lake, tmp_path, monkeypatch):
    """A commit looks up each data table's newest version by stepping from the one the log
    (or its own last commit) names: no data table is opened at "latest", which lists every
    version, and each step is right even with versions the log does not know of yet."""
    from vidprom_lake.lake import Lake

    lake.ingest(synth.write_vidprom_csv(tmp_path / "a.csv", 30, seed=1))
    opened: list[tuple[str, int | None]] = []
    real_open = Lake._open

    def spy(self, table, version=None):
        opened.append((table, version))
        return real_open(self, table, version)

    monkeypatch.setattr(Lake, "_open", spy)
    with lake.batch("test") as b:
        for i in range(3):  # chunk commits, each a new prompts version
            b.append("prompts", _prompt_rows(lake, 100 + i))
            b.commit()
    assert [t for t, v in opened if v is None and t != "batches"] == []
    assert lake.head() == {t: lance.dataset(lake.table_uri(t)).version for t in lake.head()}
    assert lake.count() == 33
    assert lake._newest("prompts") == lake.head()["prompts"]


@pytest.mark.parametrize("unlogged", [1, 3, 20])
def test_recovery_finds_every_unlogged_version(lake, tmp_path, unlogged):
    """Versions committed behind the log's back (a writer killed between its data commit
    and its event) are rolled back however many there are: a few are found by stepping,
    more than NEWEST_STEPS by listing."""
    from vidprom_lake.lake import NEWEST_STEPS

    lake.ingest(synth.write_vidprom_csv(tmp_path / "a.csv", 30, seed=1))
    uri = lake.table_uri("prompts")
    before = lake.head()["prompts"]
    for i in range(unlogged):
        lance.write_dataset(_prompt_rows(lake, 200 + i), uri, mode="append")
    assert lance.dataset(uri).version == before + unlogged
    assert (unlogged > NEWEST_STEPS) == (unlogged == 20)
    fresh = open_lake(lake.uri)
    done = fresh.recover()
    assert any("rolled back unlogged versions" in d for d in done)
    assert fresh.count() == 30
    with fresh.batch("test") as b:  # and the next batch commits on top
        b.append("prompts", _prompt_rows(fresh, 300))
    assert open_lake(lake.uri).count() == 31


def _prompt_rows(lake, n: int):
    """One prompts row with a fresh uuid (seeded by `n`), shaped like the stored ones."""
    row = lake._open("prompts", lake.head()["prompts"]).to_table(limit=1)
    uuid = f"00000000-0000-4000-8000-{n:012d}"
    return row.set_column(row.schema.get_field_index("uuid"), "uuid", pa.array([uuid]))


def test_a_new_lake_starts_from_the_saved_log_state(lake, tmp_path, monkeypatch):
    """Past LOG_SNAPSHOT_EVERY new events the folded log is saved beside the tables; a new
    `Lake` (every command opens one) reads it and folds only the events appended since, and
    ends in exactly the state a fold of the whole log gives. A damaged, foreign-format or
    stale snapshot is never trusted: the whole log is folded instead."""
    from vidprom_lake import lake as lake_mod
    from vidprom_lake.lake import LOG_SNAPSHOT, _LogState

    monkeypatch.setattr(lake_mod, "LOG_SNAPSHOT_EVERY", 10)
    lake.ingest(synth.write_vidprom_csv(tmp_path / "a.csv", 10, seed=1))
    for i in range(12):
        with lake.batch("test", params={"i": i}) as b:
            b.commit()
    with pytest.raises(RuntimeError), lake.batch("test-fail"):
        raise RuntimeError("boom")
    snap = Path(lake.uri) / LOG_SNAPSHOT
    assert snap.exists()
    saved = _LogState.from_json(snap.read_bytes())
    assert saved is not None and 10 <= saved.rows < lake._log().rows
    folded: list[int] = []
    real_fold = _LogState._fold

    def counting(self, e):
        folded.append(1)
        real_fold(self, e)

    monkeypatch.setattr(_LogState, "_fold", counting)
    fresh = open_lake(lake.uri)
    assert 0 < len(folded) == fresh._log().rows - saved.rows < 10
    assert _state(fresh._log()) == _state(_fresh_state(lake))
    assert fresh._log().running() == [] and fresh.head() == lake.head()

    for bad in (b"{not json", b'{"format": 99}', b'{"format": 1, "rows": 3}'):
        snap.write_bytes(bad)
        folded.clear()
        again = open_lake(lake.uri)
        assert len(folded) == again._log().rows
        assert _state(again._log()) == _state(_fresh_state(lake))

    stale = json.loads(saved.to_json())  # a snapshot whose last event is not where it says
    stale["tail"] = ["batch-9999", 0]
    snap.write_bytes(json.dumps(stale).encode())
    folded.clear()
    assert _state(open_lake(lake.uri)._log()) == _state(_fresh_state(lake))
    assert len(folded) >= lake._log().rows


def test_a_running_batch_is_still_seen_through_the_snapshot(lake, tmp_path, monkeypatch):
    """A batch that was running when the snapshot was saved and died afterwards is found
    (and aborted) by the next open, as without a snapshot."""
    import os

    from vidprom_lake import lake as lake_mod

    monkeypatch.setattr(lake_mod, "LOG_SNAPSHOT_EVERY", 5)
    lake.ingest(synth.write_vidprom_csv(tmp_path / "a.csv", 10, seed=1))
    b = lake.batch("test")
    b.__enter__()
    for _ in range(6):  # chunk events: the snapshot is saved while it runs
        b._commit("chunk")
    newest = lake._log().last[b.batch_id]
    assert newest["status"] == "chunk" and newest["pid"] == os.getpid()
    assert lake_mod._LogState.from_json((Path(lake.uri) / lake_mod.LOG_SNAPSHOT).read_bytes()
                                        ).running()[-1]["batch_id"] == b.batch_id
    # its writer dies (as seen by the next process to open the lake)
    monkeypatch.setattr(lake_mod, "_writer_dead", lambda e, local: e["batch_id"] == b.batch_id)
    fresh = open_lake(lake.uri)  # heals: the dead batch is aborted
    assert fresh._log().last[b.batch_id]["status"] == "aborted"
    assert [x.status for x in fresh.log() if x.batch_id == b.batch_id] == ["aborted"]
