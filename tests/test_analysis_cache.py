"""The analysis cache: SQL over `prompts` reads a Parquet copy of exactly one Lance version.

Every test compares the lake's answers with the cache against the same lake read straight from
Lance, so a stale or wrong copy fails them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from vidprom_lake import analysis_cache, open_lake, synth
from vidprom_lake.cli import main

QUERIES = [
    "select count(*) as n from prompts where toxicity > 0.5",
    "select category, count(*) as n, avg(score) as s from nsfw where score > 0.5 "
    "group by category order by category",
    "select least(length(prompt) // 50 * 50, 2000) as b, count(*) as n from prompts "
    "group by b order by b",
    "select flags.aspect_ratio as ar, count(*) as n from prompts where flags is not null "
    "group by ar order by n desc, ar",
    "select * from prompts order by uuid",
    "select * from top_words order by occurrences desc, word limit 5",
]


@pytest.fixture(autouse=True)
def _cache_in_lake(monkeypatch):
    """These tests check the default location (inside a local lake) unless they move it."""
    monkeypatch.delenv(analysis_cache.ENV_CACHE_DIR, raising=False)
    monkeypatch.delenv(analysis_cache.ENV_CACHE, raising=False)


@pytest.fixture
def small(lake, tmp_path):
    lake.ingest(synth.write_vidprom_csv(tmp_path / "a.csv", 150, seed=3))
    return lake


def _answers(lake) -> list[pa.Table]:
    return [lake.query(q) for q in QUERIES]


def _lance(lake) -> list[pa.Table]:
    direct = open_lake(lake.uri, analysis_cache=False)
    if lake.as_of_batch:
        direct = direct.as_of(lake.as_of_batch)
    return _answers(direct)


def _same(lake) -> None:
    """The lake's answers (cache on) equal Lance's, values and column types."""
    for q, got, want in zip(QUERIES, _answers(lake), _lance(lake), strict=True):
        assert got.schema == want.schema, q
        assert got.to_pylist() == want.to_pylist(), q


def _current(lake) -> list[analysis_cache.CacheFile]:
    return [f for f in analysis_cache.status(lake) if f.current]


def test_a_prompts_query_builds_the_copy_and_reads_it(small):
    assert analysis_cache.status(small) == []
    small.query("select * from batches")  # no prompts: nothing built
    assert analysis_cache.status(small) == []
    _same(small)
    (copy,) = analysis_cache.status(small)
    assert copy.current and copy.table == "prompts"
    assert copy.version == small.head()["prompts"]
    assert Path(copy.path).parent == Path(small.uri) / "_cache"
    # the view really reads the copy: its plan names the Parquet file, not the Lance dataset
    plan = small.query("explain select count(*) from prompts where length(prompt) > 3").column(1)[0].as_py()
    assert "PARQUET" in plan.upper() and "ARROW_SCAN" not in plan.upper()
    lance_plan = open_lake(small.uri, analysis_cache=False).query(
        "explain select count(*) from prompts where length(prompt) > 3").column(1)[0].as_py()
    assert "ARROW_SCAN" in lance_plan.upper()
    # the copy holds the view's columns, and its footer names the version it belongs to
    import pyarrow.parquet as pq

    meta = pq.read_metadata(copy.path).metadata
    assert meta[b"vidlake_version"].decode() == analysis_cache.version_key(small.dataset("prompts"))
    assert pq.read_schema(copy.path).names == analysis_cache.columns(small)


def test_every_write_and_restore_gets_a_new_copy(small, tmp_path):
    _same(small)
    first = _current(small)[0]
    # 1. an ingest adds prompts
    small.ingest(synth.write_vidprom_csv(tmp_path / "b.csv", 40, seed=8))
    _same(small)
    second = _current(small)[0]
    assert second.version > first.version and second.path != first.path
    assert small.query(QUERIES[0]).to_pylist() != [] and small.query(
        "select count(*) n from prompts").to_pylist()[0]["n"] == 190
    # 2. an update of existing rows (an enricher writing scores)
    some = small.query("select uuid from prompts order by uuid limit 30").column("uuid")
    with small.batch("nsfw-test") as b:
        b.update_columns("prompts", pa.table({"uuid": some, "toxicity": pa.array(
            [0.99] * len(some), pa.float32())}))
    _same(small)
    third = _current(small)[0]
    assert third.version > second.version
    assert small.query("select count(*) n from prompts where toxicity = 0.99::FLOAT"
                       ).to_pylist()[0]["n"] >= 30
    # 3. a new column (embeddings attached): a new version, and the copy has no vector column
    synth.write_embeddings_hdf5(tmp_path / "e.h5", some.to_pylist()[:10], 4)
    small.ingest(tmp_path / "e.h5")
    _same(small)
    fourth = _current(small)[0]
    assert fourth.version > third.version
    assert "embedding" not in analysis_cache.columns(small)
    # 4. restore to the first batch: new head, equal to batch-0001 again
    small.restore("batch-0001")
    _same(small)
    fifth = _current(small)[0]
    assert fifth.version > fourth.version
    assert small.query("select count(*) n from prompts").to_pylist()[0]["n"] == 150
    # old copies are pruned: the current one and the one before it stay
    assert {f.version for f in analysis_cache.status(small)} == {fourth.version, fifth.version}


def test_a_videos_only_batch_keeps_the_copy(small):
    _same(small)
    before = _current(small)[0]
    uuids = small.query("select uuid from prompts limit 2").column("uuid").to_pylist()
    rows = [{"video_id": f"ms-{u}", "uuid": u, "model": "ms", "video": b"\x00" * 10,
             "bytes": 10} for u in uuids]
    with small.batch("import") as b:
        b.append("videos", pa.Table.from_pylist(rows))
    assert small.query("select count(*) n from gallery where model = 'ms'").to_pylist()[0]["n"] == 2
    assert _current(small) == [before]


def test_a_lake_recreated_at_the_same_path_never_reads_the_old_copy(tmp_path, monkeypatch):
    """Same path, same version numbers, different data: the version key tells them apart."""
    from vidprom_lake import create_lake

    monkeypatch.setenv(analysis_cache.ENV_CACHE_DIR, str(tmp_path / "cache"))
    first = create_lake(tmp_path / "lake")
    first.ingest(synth.write_vidprom_csv(tmp_path / "a.csv", 60, seed=1))
    assert first.query("select count(*) n from prompts").to_pylist()[0]["n"] == 60
    import shutil

    shutil.rmtree(tmp_path / "lake")
    again = create_lake(tmp_path / "lake")
    again.ingest(synth.write_vidprom_csv(tmp_path / "b.csv", 25, seed=2))
    assert again.head()["prompts"] == first.head()["prompts"]
    assert again.query("select count(*) n from prompts").to_pylist()[0]["n"] == 25
    _same(again)
    assert len(list((tmp_path / "cache").rglob("*.parquet"))) == 2


def test_opt_outs(small, monkeypatch):
    off = open_lake(small.uri, analysis_cache=False)
    assert off.query(QUERIES[0]).num_rows == 1
    off.query(QUERIES[1])
    monkeypatch.setenv(analysis_cache.ENV_CACHE, "off")
    env_off = open_lake(small.uri)
    assert env_off.analysis_cache is False
    env_off.query(QUERIES[2])
    env_off.as_of("batch-0001").query(QUERIES[2])
    assert analysis_cache.status(small) == [] == [
        p for p in (Path(small.uri) / "_cache").glob("*") if p.exists()]
    monkeypatch.delenv(analysis_cache.ENV_CACHE)
    r = CliRunner().invoke(main, ["--lake", small.uri, "query", "--no-cache", "--format", "json",
                                  QUERIES[0]])
    assert r.exit_code == 0, r.output
    assert analysis_cache.status(small) == []
    r = CliRunner().invoke(main, ["--lake", small.uri, "query", "--format", "json", QUERIES[0]])
    assert r.exit_code == 0, r.output
    assert len(analysis_cache.status(small)) == 1


def test_as_of_never_builds_but_uses_an_exact_copy(small, tmp_path):
    small.ingest(synth.write_vidprom_csv(tmp_path / "b.csv", 20, seed=9))
    old = small.as_of("batch-0001")
    _same(old)
    assert analysis_cache.status(small) == []
    # a copy of exactly that version (built while it was the head) is used
    head_then = open_lake(small.uri).as_of("batch-0001")
    analysis_cache.build(head_then)  # explicit build works for any pinned version
    assert [f.version for f in analysis_cache.status(small)] == [old.head()["prompts"]]
    assert analysis_cache.current(old) is not None
    _same(old)


def test_a_pruned_copy_falls_back_to_lance(small):
    assert small.query(QUERIES[0]) is not None
    (copy,) = analysis_cache.status(small)
    os.remove(copy.path)  # another process pruned it under this one's cached connection
    want = open_lake(small.uri, analysis_cache=False).query(QUERIES[0])
    assert small.query(QUERIES[0]) == want


def test_an_unwritable_cache_warns_and_answers_from_lance(small, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv(analysis_cache.ENV_CACHE_DIR, str(blocker))
    lake = open_lake(small.uri)
    with pytest.warns(UserWarning, match="analysis cache not built"):
        got = lake.query(QUERIES[0])
    assert got == open_lake(small.uri, analysis_cache=False).query(QUERIES[0])


def test_progress_and_cli_cache_command(small):
    seen: list[tuple[int, int]] = []
    path = analysis_cache.ensure(small, "prompts", lambda d, t: seen.append((d, t)))
    assert path is not None and seen and seen[-1] == (150, 150)
    runner = CliRunner()
    r = runner.invoke(main, ["--lake", small.uri, "cache", "--format", "json"])
    assert r.exit_code == 0 and '"current": true' in r.output.replace("True", "true")
    r = runner.invoke(main, ["--lake", small.uri, "cache", "--clear", "--format", "csv"])
    assert r.exit_code == 0 and "deleted the analysis cache" in r.output
    assert analysis_cache.status(small) == []
    r = runner.invoke(main, ["--lake", small.uri, "cache", "--build", "--format", "csv"])
    assert r.exit_code == 0 and len(analysis_cache.status(small)) == 1


def test_which_sql_reads_prompts():
    assert analysis_cache.reads("select count(*) from prompts")
    assert analysis_cache.reads('select * from "NSFW"')
    assert analysis_cache.reads("select * from videos_per_model")  # joins prompts
    assert not analysis_cache.reads("select * from batches")
    assert not analysis_cache.reads("select * from prompts_raw")  # reads Lance (with vectors)
    assert not analysis_cache.reads("select 1")


def test_warnings_are_not_raised_on_the_happy_path(small):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(small)
