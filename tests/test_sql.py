"""The DuckDB side: views, read-only queries, sql-init in a plain DuckDB, blobs never selected."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid as _uuid

import duckdb
import pyarrow as pa
import pytest

from vidprom_lake import synth
from vidprom_lake.errors import QueryError
from vidprom_lake.sql import init_script, view_files


@pytest.fixture
def small(lake, tmp_path):
    lake.ingest(synth.write_vidprom_csv(tmp_path / "a.csv", 100, seed=4))
    return lake


def _add_videos(lake, uuids, model="ms"):
    rows = [{"video_id": f"{model}-{u}", "uuid": u, "model": model, "video": b"\x00" * (100 + i),
             "bytes": 100 + i, "duration_s": 2.0, "codec": "h264"} for i, u in enumerate(uuids)]
    with lake.batch("import", params={"model": model}) as b:
        b.append("videos", pa.Table.from_pylist(rows))
        b.counts["rows_added"] = len(rows)


def test_views_exist_and_agree(small):
    q = small.query
    names = {r["table_name"] for r in q("select table_name from duckdb_tables() union all "
                                           "select view_name from duckdb_views() where not internal").to_pylist()}
    assert {"prompts", "videos", "gallery", "nsfw", "batches"} <= names
    n = q("select count(*) n from prompts").to_pylist()[0]["n"]
    assert n == 100
    scored = q("select count(*) n from nsfw").to_pylist()[0]["n"]
    assert scored == 600
    tox = q("select count(*) n from nsfw where category='toxicity' and score > 0.5").to_pylist()[0]["n"]
    assert tox == q("select count(*) n from prompts where toxicity > 0.5").to_pylist()[0]["n"]
    assert q("select count(*) n from gallery").to_pylist()[0]["n"] == 100


def test_gallery_joins_videos_without_blobs(small):
    uuids = [r["uuid"] for r in small.query("select uuid from prompts order by uuid limit 3").to_pylist()]
    _add_videos(small, uuids)
    small = type(small)(small.uri)
    cols = small.query("select * from videos limit 1").column_names
    assert "video" not in cols and "bytes" in cols and "has_thumbnail" in cols
    g = small.query("select model, count(*) n, sum(bytes) b from gallery where model is not null group by model")
    assert g.to_pylist() == [{"model": "ms", "n": 3, "b": 303}]
    assert small.query("select count(*) n from gallery").to_pylist()[0]["n"] == 100
    # the blob bytes themselves come from Lance
    ds = small.dataset("videos")
    blob = ds.take_blobs("video", indices=[0])[0]
    assert len(blob.read()) in (100, 101, 102)


def test_embedding_not_in_prompts_view(small, tmp_path):
    uuids = [r["uuid"] for r in small.query("select uuid from prompts").to_pylist()]
    synth.write_embeddings_hdf5(tmp_path / "e.h5", uuids, 4)
    small.ingest(tmp_path / "e.h5")
    cols = small.query("select * from prompts limit 1").column_names
    assert "embedding" not in cols
    # but the raw relation has it, for lance_vector_search-style SQL
    assert "embedding" in small.query("select * from prompts_raw limit 1").column_names
    vec = small.get_prompt(uuids[0], vectors=True)["embedding"]
    lit = "[" + ", ".join(repr(float(x)) for x in vec) + "]"
    hit = small.query(
        f"select uuid, _distance from lance_vector_search('{small.table_uri('prompts')}', "
        f"'embedding', {lit}::FLOAT[4], k = 3) order by _distance").to_pylist()
    assert hit[0]["uuid"] == uuids[0] and hit[0]["_distance"] < 1e-5


def test_query_is_read_only(small):
    for sql in ("delete from prompts", "create table t as select 1",
                "copy (select 1) to '/tmp/x.csv'", "insert into prompts select * from prompts",
                "attach ':memory:' as x"):
        with pytest.raises(QueryError, match="not allowed"):
            small.query(sql)
    with pytest.raises(QueryError, match="nonexistent_col"):
        small.query("select nonexistent_col from prompts")


def test_parameters(small):
    u = small.query("select uuid from prompts limit 1").to_pylist()[0]["uuid"]
    assert small.query("select count(*) n from prompts where uuid = ?", [u]).to_pylist() == [{"n": 1}]


def test_sql_init_in_plain_duckdb(small):
    script = init_script(small)
    con = duckdb.connect()
    body = "\n".join(ln for ln in script.splitlines() if not ln.startswith("--"))
    for stmt in body.split(";\n"):
        if stmt.strip():
            con.execute(stmt)
    assert con.execute("select count(*) from prompts").fetchone()[0] == 100
    assert con.execute("select count(*) from batches").fetchone()[0] == 2


def test_sql_init_with_duckdb_cli(small):
    exe = os.path.join(os.path.dirname(sys.executable), "duckdb")
    if not os.path.exists(exe):
        pytest.fail("duckdb-cli is part of the install: the `duckdb` CLI must be on the venv's bin")
    script = init_script(small)
    out = subprocess.run([exe, "-csv", "-c", script + "\nselect count(*) as n from prompts;"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "100"


def test_uuid5_macro_checks_a_lakes_ids_against_its_texts(small, tmp_path):
    # one more file whose first row carries a uuid that is not uuid5 of its text
    extra = synth.write_vidprom_csv(tmp_path / "b.csv", 3, seed=9)
    first = extra.read_text().splitlines()[1].split(",")[0]
    extra.write_text(extra.read_text().replace(first, "00000000-0000-5000-8000-000000000000", 1))
    assert small.ingest(extra).uuid_mismatches == 1
    texts = ["", "a cat", "caf\u00e9  ", "\U0001f600\n\t\"'", "x" * 3000]
    for t in texts:
        got = small.query("select uuid5(?) as u", [t]).to_pylist()[0]["u"]
        assert got == str(_uuid.uuid5(_uuid.NAMESPACE_DNS, t))
    check = ("select count(*) as n from prompts "
             "where uuid_mismatch is distinct from (uuid <> uuid5(prompt))")
    assert small.query(check).to_pylist() == [{"n": 0}]
    flagged = small.query("select count(*) as n from prompts where uuid <> uuid5(prompt)")
    assert flagged.to_pylist() == [{"n": 1}]
    # the same macro in a plain DuckDB session, from sql-init
    con = duckdb.connect()
    body = "\n".join(ln for ln in init_script(small).splitlines() if not ln.startswith("--"))
    for stmt in body.split(";\n"):
        if stmt.strip():
            con.execute(stmt)
    assert con.execute(check).fetchone()[0] == 0


def test_view_files_have_one_line_docs():
    for name, text in view_files():
        first = text.strip().splitlines()[0]
        assert first.startswith("-- "), f"{name} must start with a one-line description"


def test_uuid5_in_sql_matches_python(lake):
    from vidprom_lake.ingest.clean import sha1_sql, uuid5_sql

    texts = ["", "a", "caf\u00e9  ", "x" * 5000, "\U0001f600\n\t\"'"]
    con = duckdb.connect()
    for t in texts:
        got = con.execute(f"select {uuid5_sql('h')} from (select {sha1_sql('$1')} as h)",
                          [t]).fetchone()[0]
        assert got == str(_uuid.uuid5(_uuid.NAMESPACE_DNS, t)), t
