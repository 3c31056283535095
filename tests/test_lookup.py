"""Point lookups by uuid (`Lake.get_prompt`): right rows, new versions seen, warm after one call."""

from __future__ import annotations

import pyarrow as pa
import pytest

from vidprom_lake import lake as lake_mod
from vidprom_lake import open_lake, synth


@pytest.fixture
def indexed(lake, tmp_path):
    """Three ingests (three fragments at least) and a uuid BTREE built in its own batch."""
    for i, n in enumerate((120, 90, 60)):
        lake.ingest(synth.write_vidprom_csv(tmp_path / f"p{i}.csv", n, seed=10 + i))
    with lake.batch("index") as b:
        assert b.refresh_key_index("prompts", "uuid", min_rows=0)
    return open_lake(lake.uri)


def _uuids(lake) -> list[str]:
    return lake.dataset("prompts").to_table(columns=["uuid"]).column("uuid").to_pylist()


def test_get_prompt_rows_and_misses(indexed):
    ds = indexed.dataset("prompts")
    assert len(ds.get_fragments()) >= 3
    assert any(d.field_names == ["uuid"] for d in ds.describe_indices())
    table = ds.to_table(columns=["uuid", "prompt", "toxicity", "flags"])
    for row in table.to_pylist()[::37]:
        got = indexed.get_prompt(row["uuid"])
        assert got is not None
        assert {k: got[k] for k in row} == row
        assert "embedding" not in got
    assert indexed.get_prompt("00000000-0000-5000-8000-000000000000") is None
    assert indexed.get_prompt("it's not a uuid") is None  # quoted, not an SQL error


def test_get_prompt_sees_a_new_version(indexed, tmp_path):
    before = set(_uuids(indexed))
    some = next(iter(before))
    assert indexed.get_prompt(some)["uuid"] == some  # warms version N
    indexed.ingest(synth.write_vidprom_csv(tmp_path / "new.csv", 40, seed=99))
    lake = open_lake(indexed.uri)
    new = [u for u in _uuids(lake) if u not in before]
    assert new and lake.get_prompt(new[0])["uuid"] == new[0]
    # the same Lake object after its own write sees the new rows too
    assert indexed.get_prompt(new[-1]) is not None


def test_first_lookup_warms_the_index_and_files(indexed, monkeypatch):
    """After the first call, lookups in every fragment read less than cold lookups do."""
    uuids = _uuids(indexed)
    probe = uuids[1::17]

    def reads(lake) -> tuple[int, int]:
        lake.get_prompt(uuids[0])
        ds = lake.dataset("prompts")
        ds.io_stats_incremental()
        for u in probe:
            assert lake.get_prompt(u)["uuid"] == u
        stats = ds.io_stats_incremental()
        return stats.read_iops, stats.read_bytes

    warm = reads(open_lake(indexed.uri))
    monkeypatch.setattr(lake_mod, "_warm_lookups", lambda ds, columns: None)
    cold = reads(open_lake(indexed.uri))
    # IO counts are deterministic; on this small lake the data pages dominate both, at 1.67M
    # rows 20 warm lookups read 340 times / 1.2 MB against 717 times / 8.6 MB cold
    assert warm[0] < cold[0] and warm[1] < cold[1], (warm, cold)


def test_warm_up_skips_huge_tables(indexed, monkeypatch):
    """Over the limits, the first lookup neither loads the index nor opens every file."""
    calls: list[str] = []
    monkeypatch.setattr(lake_mod, "LOOKUP_WARM_INDEX_BYTES", 0)
    monkeypatch.setattr(lake_mod, "LOOKUP_WARM_FRAGMENTS", 1)
    ds_type = type(indexed.dataset("prompts"))
    monkeypatch.setattr(ds_type, "prewarm_index", lambda self, name: calls.append(name))
    orig_take = ds_type.take

    def take(self, *a, **k):
        calls.append("take")
        return orig_take(self, *a, **k)

    monkeypatch.setattr(ds_type, "take", take)
    u = _uuids(indexed)[5]
    assert indexed.get_prompt(u)["uuid"] == u
    assert calls == []


def test_get_prompt_with_vectors(indexed, tmp_path):
    uuids = _uuids(indexed)
    synth.write_embeddings_hdf5(tmp_path / "e.h5", uuids[:10], 4)
    indexed.ingest(tmp_path / "e.h5")
    lake = open_lake(indexed.uri)
    plain = lake.get_prompt(uuids[3])
    full = lake.get_prompt(uuids[3], vectors=True)
    assert "embedding" not in plain and len(full["embedding"]) == 4
    assert {k: v for k, v in full.items() if k != "embedding"} == plain
    assert pa.array(full["embedding"], pa.float32()).null_count == 0


def test_rows_added_to_an_indexed_table_get_a_delta_segment_then_a_rebuild(indexed, tmp_path,
                                                                         monkeypatch):
    """Each small ingest indexes only its own fragments (one segment more); at the segment
    limit, or when the new rows are a big part of the table, the index is rebuilt whole."""
    monkeypatch.setattr(lake_mod, "KEY_INDEX_MAX_SEGMENTS", 3)

    def segments(lake) -> list[list[int]]:
        (idx,) = [d for d in lake.dataset("prompts").describe_indices() if d.name == "uuid_idx"]
        assert idx.num_rows_indexed == lake.dataset("prompts").count_rows()
        return [sorted(s.fragment_ids) for s in idx.segments]

    lake = indexed
    first = segments(lake)
    assert len(first) == 1
    added: list[str] = []
    for k in range(3):
        before = set(_uuids(lake))
        lake.ingest(synth.write_vidprom_csv(tmp_path / f"d{k}.csv", 20, seed=70 + k))
        added += [u for u in _uuids(lake) if u not in before]
        segs = segments(lake)
        if k < 2:  # one more segment, over the new fragment only; the old ones untouched
            assert segs[: len(first) + k] == first + [s for s in segs[len(first):len(first) + k]]
            assert len(segs) == len(first) + k + 1 and len(segs[-1]) == 1
        else:  # three segments already: rebuilt as one
            assert len(segs) == 1
    for u in added:  # every added row is found through the index
        assert lake.get_prompt(u)["uuid"] == u
    # new rows over a quarter of the table: rebuilt too, not a delta
    n = lake.dataset("prompts").count_rows()
    lake.ingest(synth.write_vidprom_csv(tmp_path / "big.csv", n // 2, seed=90))
    assert len(segments(lake)) == 1


def test_a_small_file_into_an_indexed_lake_asks_the_index_for_its_keys(indexed, tmp_path,
                                                                      monkeypatch):
    """The keys of a small file are looked up through the uuid index (the lake's keys are
    not all read), with the same answers: rows the lake has are skipped, new ones added."""
    from vidprom_lake.ingest import pipeline

    monkeypatch.setattr(pipeline.LakeKeys, "PROBE_RATIO", 1)
    read_all: list[int] = []
    load = pipeline.LakeKeys._load
    monkeypatch.setattr(pipeline.LakeKeys, "_load", lambda self: (read_all.append(1), load(self)))
    old = (tmp_path / "p0.csv").read_text()  # 120 rows the lake has
    new = synth.write_vidprom_csv(tmp_path / "n.csv", 30, seed=77).read_text()
    both = tmp_path / "both.csv"
    both.write_text(new + old.split("\n", 1)[1])  # one header, 30 new rows then 120 old ones
    n0 = indexed.dataset("prompts").count_rows()
    r = indexed.ingest(both)
    assert (r.rows_added, r.already_in_lake) == (30, 120) and not read_all
    assert indexed.dataset("prompts").count_rows() == n0 + 30
    assert indexed.ingest(both).rows_added == 0 and not read_all  # idempotent, still probed
    # a file as big as the lake reads the lake's keys once instead
    monkeypatch.setattr(pipeline.LakeKeys, "PROBE_RATIO", 20)
    assert indexed.ingest(both).rows_added == 0 and read_all == [1]
