"""Dedup on a real lake: columns and provenance, incremental runs, recompute rules, the CLI,
indexes, similarity search (Python, CLI, DuckDB SQL) and near-duplicate groups."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from test_dedup_exact import reference

from vidprom_lake import create_lake, synth
from vidprom_lake.cli import main
from vidprom_lake.dedup import _read_state, dedup, dupes, similar, time_order
from vidprom_lake.errors import SchemaError, VidlakeError
from vidprom_lake.index import build_indexes, list_indexes
from vidprom_lake.lake import open_lake

DIM = 24


def planted(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """Clustered vectors where a quarter of the rows are near copies of an earlier row."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim)).astype(np.float32)
    x = centres[rng.integers(0, 12, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    for i in range(1, n):
        if rng.random() < 0.25:
            x[i] = x[rng.integers(0, i)] + 0.15 * rng.standard_normal(dim).astype(np.float32)
    return x


def write_csv(path: Path, n: int, seed: int, start: datetime | None = None) -> Path:
    """A VidProM CSV; with `start`, every row's time is moved to start + i minutes."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["uuid", "prompt", "time", *synth.NSFW])
        w.writeheader()
        for i, r in enumerate(synth.rows(n, seed)):
            if start is not None:
                r["time"] = synth.ctime(start + timedelta(minutes=i))
            w.writerow(r)
    return path


def ordered_uuids(lake) -> list[str]:
    return time_order(_read_state(lake.dataset("prompts"), "uuid")).column("uuid").to_pylist()


def attach(lake, tmp: Path, vectors: dict[str, np.ndarray], name: str = "e.h5",
           model: str = "test-model") -> None:
    uu = list(vectors)
    with h5py.File(tmp / name, "w") as f:
        f.create_dataset("uuid", data=np.array(uu, dtype="S36"))
        f.create_dataset("embeddings", data=np.stack([vectors[u] for u in uu]).astype(np.float32))
        f.attrs["model"] = model
    lake.ingest(tmp / name)


def make_lake(tmp: Path, n: int = 300, seed: int = 1, vec_seed: int = 0):
    lake = create_lake(tmp / "lake")
    lake.ingest(write_csv(tmp / "a.csv", n, seed))
    uu = ordered_uuids(lake)
    x = planted(n, vec_seed)
    attach(lake, tmp, dict(zip(uu, x, strict=True)))
    return open_lake(tmp / "lake")


def results(lake) -> tuple[list[str], list[bool | None], list[str | None], list[float | None], list]:
    t = time_order(_read_state(lake.dataset("prompts"), "embedding"))
    return (t.column("uuid").to_pylist(), t.column("unique_semantic").to_pylist(),
            t.column("dup_of").to_pylist(), t.column("dup_similarity").to_pylist(),
            t.column("dedup_run").to_pylist())


def vectors_in_order(lake) -> tuple[list[str], np.ndarray]:
    t = time_order(_read_state(lake.dataset("prompts"), "embedding"))
    uu = t.column("uuid").to_pylist()
    offs = t.column("offset").to_numpy()
    v = lake.dataset("prompts").take(offs, columns=["embedding"]).column(0)
    return uu, np.array(v.to_pylist(), np.float32)


def assert_matches_reference(lake, threshold: float) -> None:
    uu, x = vectors_in_order(lake)
    kept, dup_of, sims = reference(x, threshold)
    got_u, got_k, got_d, got_s, _ = results(lake)
    assert got_u == uu
    assert got_k == kept
    assert got_d == [uu[j] if j >= 0 else None for j in dup_of]
    for g, s in zip(got_s, sims, strict=True):
        assert (g is None and math.isnan(s)) or g == pytest.approx(s, abs=1e-6)


def test_exact_dedup_writes_columns_and_provenance(tmp_path: Path) -> None:
    lake = make_lake(tmp_path)
    rep = dedup(lake, 0.8, exact=True)
    assert rep.mode == "exact" and rep.decided == 300 and rep.reused == 0
    assert 0 < rep.duplicates < 300 and rep.kept + rep.duplicates == 300
    lake = open_lake(tmp_path / "lake")
    assert_matches_reference(lake, 0.8)
    run = json.loads(results(lake)[4][0])
    assert run["threshold"] == 0.8 and run["column"] == "embedding"
    assert run["model"] == "test-model" and run["dims"] == DIM and run["mode"] == "exact"
    assert run["batch"] == rep.batch_id
    n = lake.query("select count(*) from prompts where unique_semantic").column(0)[0].as_py()
    assert n == rep.kept_total == rep.kept
    info = lake.batch_info(rep.batch_id)
    assert info.kind == "dedup" and info.status == "committed"
    assert info.counts["duplicates"] == rep.duplicates
    # vectors were not rewritten: the embedding column still reads back the same
    assert vectors_in_order(lake)[1].shape == (300, DIM)


def test_rerun_is_a_no_op_and_threshold_change_is_a_full_recompute(tmp_path: Path) -> None:
    lake = make_lake(tmp_path)
    dedup(lake, 0.8, exact=True)
    again = dedup(open_lake(tmp_path / "lake"), 0.8, exact=True)
    assert again.mode == "up to date" and again.batch_id is None and again.decided == 0
    other = dedup(open_lake(tmp_path / "lake"), 0.9, exact=True)
    assert other.recompute == "full recompute: threshold 0.8 -> 0.9"
    assert other.reused == 0 and other.decided == 300
    assert_matches_reference(open_lake(tmp_path / "lake"), 0.9)


def test_incremental_decides_only_new_later_prompts(tmp_path: Path) -> None:
    lake = make_lake(tmp_path)
    first = dedup(lake, 0.8, exact=True)
    lake.ingest(write_csv(tmp_path / "b.csv", 80, seed=7, start=datetime(2024, 3, 5)))
    lake = open_lake(tmp_path / "lake")
    new = [u for u in ordered_uuids(lake)[300:]]
    old_x = vectors_in_order(lake)[1]
    # new prompts: some near copies of old ones, some fresh
    rng = np.random.default_rng(3)
    nx = planted(80, 9)
    nx[::3] = old_x[rng.integers(0, 300, len(nx[::3]))] + 0.05
    attach(lake, tmp_path, dict(zip(new, nx, strict=True)), "f.h5")
    rep = dedup(open_lake(tmp_path / "lake"), 0.8, exact=True)
    assert rep.reused == 300 and rep.decided == 80 and rep.recompute is None
    # one update call per fragment when writes are capped at one row: same result
    again = dedup(open_lake(tmp_path / "lake"), 0.8, exact=True, recompute=True, write_rows=1)
    assert again.decided == 380 and again.kept_total == rep.kept_total
    assert rep.kept_total == first.kept_total + rep.kept
    assert_matches_reference(open_lake(tmp_path / "lake"), 0.8)


def test_new_prompt_earlier_in_time_redecides_the_later_ones(tmp_path: Path) -> None:
    lake = make_lake(tmp_path)
    dedup(lake, 0.8, exact=True)
    lake.ingest(write_csv(tmp_path / "b.csv", 5, seed=8, start=datetime(2023, 9, 1)))
    lake = open_lake(tmp_path / "lake")
    order = ordered_uuids(lake)
    old = set(results(lake)[0])
    new = [u for u in order if u not in old]
    first_new = order.index(new[0])
    x = planted(5, 11)
    attach(lake, tmp_path, dict(zip(new, x, strict=True)), "g.h5")
    rep = dedup(open_lake(tmp_path / "lake"), 0.8, exact=True)
    assert rep.reused == first_new and rep.decided == 305 - first_new
    assert "already-decided prompts come after a new or changed prompt" in (rep.recompute or "")
    assert_matches_reference(open_lake(tmp_path / "lake"), 0.8)


def test_prompts_without_vectors_stay_undecided(tmp_path: Path) -> None:
    lake = create_lake(tmp_path / "lake")
    lake.ingest(write_csv(tmp_path / "a.csv", 50, 1))
    uu = ordered_uuids(lake)
    attach(lake, tmp_path, dict(zip(uu[:40], planted(40), strict=True)))
    rep = dedup(open_lake(tmp_path / "lake"), 0.8, exact=True)
    assert rep.rows_with_vectors == 40 and rep.rows_without_vectors == 10
    assert any("10 prompts have no embedding vector" in n for n in rep.notes)
    lake = open_lake(tmp_path / "lake")
    assert lake.count("prompts", "unique_semantic IS NULL") == 10


def test_approximate_mode_agrees_with_exact_and_reports_recall(tmp_path: Path) -> None:
    lake = make_lake(tmp_path, n=2500)
    ex = dedup(lake, 0.8, exact=True)
    exact_kept = results(open_lake(tmp_path / "lake"))[1]
    ap = dedup(open_lake(tmp_path / "lake"), 0.8, min_approx_rows=0, check_sample=400,
               partitions=16, nprobe=4, recompute=True)
    assert ap.mode == "approx" and ap.check is not None and ap.check["sample"] == 400
    assert ap.check["false_duplicates"] == 0 and ap.check["agreement"] >= 0.98
    approx_kept = results(open_lake(tmp_path / "lake"))[1]
    agree = np.mean([a == b for a, b in zip(exact_kept, approx_kept, strict=True)])
    assert agree >= 0.98, agree
    assert abs(ap.kept_total - ex.kept_total) <= 0.02 * 2500
    # an exact run does not build on approximate decisions
    again = dedup(open_lake(tmp_path / "lake"), 0.8, exact=True)
    assert again.reused == 0 and "approximate" in (again.recompute or "")


def test_errors_are_clear(tmp_path: Path) -> None:
    lake = create_lake(tmp_path / "lake")
    lake.ingest(write_csv(tmp_path / "a.csv", 20, 1))
    with pytest.raises(SchemaError, match="no vector column 'embedding'"):
        dedup(open_lake(tmp_path / "lake"))
    (tmp_path / "x").mkdir()
    lake = make_lake(tmp_path / "x")
    with pytest.raises(VidlakeError, match=r"threshold must be in \(0, 1\]"):
        dedup(lake, 1.5)
    with pytest.raises(VidlakeError, match="give exactly one query"):
        similar(lake)
    with pytest.raises(VidlakeError, match="no prompt with uuid nope"):
        similar(lake, uuid="nope")
    with pytest.raises(VidlakeError, match="the query vector has 3 values; the column holds 24-d"):
        similar(lake, vector=[1, 2, 3])
    with pytest.raises(VidlakeError, match="no dedup results yet"):
        dupes(lake)


def test_dupes_lists_the_largest_groups(tmp_path: Path) -> None:
    lake = make_lake(tmp_path)
    dedup(lake, 0.8, exact=True)
    lake = open_lake(tmp_path / "lake")
    t = dupes(lake, top=5).to_pylist()
    counts = lake.query(
        "select dup_of, count(*) n from prompts where not unique_semantic group by 1 "
        "order by n desc, dup_of limit 5").to_pylist()
    assert [r["uuid"] for r in t] == [c["dup_of"] for c in counts]
    assert [r["duplicates"] for r in t] == [c["n"] for c in counts]
    assert t[0]["group_size"] == t[0]["duplicates"] + 1 and 1 <= len(t[0]["examples"]) <= 3
    assert t[0]["prompt"] == lake.get_prompt(t[0]["uuid"])["prompt"]


def test_similar_by_uuid_and_vector_matches_brute_force(tmp_path: Path) -> None:
    lake = make_lake(tmp_path)
    uu, x = vectors_in_order(lake)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    q = 17
    sims = xn @ xn[q]
    want = [uu[i] for i in np.argsort(-sims) if i != q][:5]
    got = similar(lake, uuid=uu[q], k=5)
    assert got.column("uuid").to_pylist() == want
    assert got.column("rank").to_pylist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(got.column("similarity").to_numpy(), np.sort(sims)[::-1][1:6], atol=1e-5)
    by_vec = similar(lake, vector=x[q].tolist(), k=3, where="toxicity < 0.5")
    assert by_vec.column("uuid")[0].as_py() == uu[q]
    allowed = set(lake.query("select uuid from prompts where toxicity < 0.5").column(0).to_pylist())
    assert set(by_vec.column("uuid").to_pylist()) <= allowed


def test_indexes_build_refresh_and_serve_search_and_sql(tmp_path: Path) -> None:
    lake = make_lake(tmp_path, n=600)
    rows = build_indexes(lake, num_partitions=4, num_sub_vectors=4)
    assert {r["index"]: r["action"] for r in rows} == {
        "embedding_idx": "built", "uuid_idx": "built", "time_idx": "built", "prompt_idx": "built"}
    lake = open_lake(tmp_path / "lake")
    names = {r["name"]: r for r in list_indexes(lake)}
    assert set(names) == {"embedding_idx", "uuid_idx", "time_idx", "prompt_idx"}
    assert lake.log()[-1].kind == "index"
    again = build_indexes(lake)
    assert {r["action"] for r in again} == {"up to date"}
    uu, x = vectors_in_order(lake)
    got = similar(lake, vector=x[42].tolist(), k=10)
    assert got.column("uuid")[0].as_py() == uu[42]
    # the full-text index answers lance_fts, the BTREE a uuid lookup
    assert lake.get_prompt(uu[3])["uuid"] == uu[3]
    # the same search from SQL, through the DuckDB lance extension
    vec = ", ".join(f"{v:.8f}" for v in x[42])
    sql = (f"select uuid, _distance from lance_vector_search('{lake.table_uri('prompts')}', "
           f"'embedding', [{vec}]::FLOAT[{DIM}], k=10, nprobs=32, refine_factor=20) "
           "order by _distance")
    via_sql = lake.query(sql)
    assert via_sql.column("uuid").to_pylist() == got.column("uuid").to_pylist()
    np.testing.assert_allclose(1 - via_sql.column("_distance").to_numpy(),
                               got.column("similarity").to_numpy(), atol=1e-5)
    # new prompts make the indexes stale: `index` rebuilds them
    lake.ingest(write_csv(tmp_path / "b.csv", 30, seed=5, start=datetime(2024, 3, 5)))
    lake = open_lake(tmp_path / "lake")
    new = [u for u in ordered_uuids(lake) if u not in set(uu)]
    attach(lake, tmp_path, dict(zip(new, planted(30, 4), strict=True)), "h.h5")
    rows = build_indexes(open_lake(tmp_path / "lake"), num_partitions=4, num_sub_vectors=4)
    actions = {r["index"]: r["action"] for r in rows}
    # ingest may keep the uuid index current itself; the others are stale and rebuilt
    assert {actions[n] for n in ("embedding_idx", "time_idx", "prompt_idx")} == {"rebuilt"}
    assert actions["uuid_idx"] in ("rebuilt", "up to date")
    after = list_indexes(open_lake(tmp_path / "lake"))
    assert len(after) == 4 and {r["rows_indexed"] for r in after} == {630}


def test_auto_index_is_rabitq_for_wide_vectors_and_search_finds_neighbours(tmp_path: Path) -> None:
    """`auto` builds IVF_RQ (1-bit codes) for 1024+ dims; `similar` re-ranks on the full
    vectors, so its top hits equal brute force on planted near-duplicates."""
    dim = 1024
    lake = create_lake(tmp_path / "lake")
    lake.ingest(write_csv(tmp_path / "a.csv", 400, seed=3))
    uu = ordered_uuids(lake)
    x = planted(400, 6, dim=dim)
    attach(lake, tmp_path, dict(zip(uu, x, strict=True)))
    lake = open_lake(tmp_path / "lake")
    rows = build_indexes(lake, scalar=False, num_partitions=4)
    assert rows[0]["type"] == "IVF_RQ" and "num_bits=1" in rows[0]["params"]
    assert json.loads(json.dumps(lake.log()[-1].params))["index_type"] == "IVF_RQ"
    lake = open_lake(tmp_path / "lake")
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for q in (7, 150, 399):
        got = similar(lake, vector=x[q].tolist(), k=5)
        truth = np.argsort(-(xn @ xn[q]), kind="stable")[:5]
        assert got.column("uuid").to_pylist()[0] == uu[q]
        assert len(set(got.column("uuid").to_pylist()) & {uu[i] for i in truth}) >= 4
    # narrower vectors keep IVF_PQ
    assert build_indexes(make_lake(tmp_path / "small"), scalar=False, num_partitions=4,
                         num_sub_vectors=4)[0]["type"] == "IVF_PQ"


def test_default_probes_scale_with_partitions() -> None:
    """IVF_RQ probes 6% of its partitions (78 of VidProM's 1,293 at 3072 dims, where 5x
    re-ranking finds what 20x does), IVF_PQ 8%, never fewer than the type's floor."""
    from vidprom_lake.index import SEARCH_DEFAULTS, default_nprobes

    assert default_nprobes("IVF_RQ", 1293) == 78 and SEARCH_DEFAULTS["IVF_RQ"]["refine_factor"] == 5
    assert default_nprobes("IVF_RQ", 100) == 32
    assert default_nprobes("IVF_PQ", 1000) == 80 and default_nprobes("IVF_HNSW_SQ", 10) == 16


def test_cli_dedup_similar_dupes_index(tmp_path: Path) -> None:
    make_lake(tmp_path)
    lk = str(tmp_path / "lake")
    r = CliRunner().invoke(main, ["--lake", lk, "dedup", "--exact", "--threshold", "0.85"])
    assert r.exit_code == 0, r.output
    assert "kept in total (VidProS size)" in r.output and "exact" in r.output
    r = CliRunner().invoke(main, ["--lake", lk, "dedup", "--threshold", "0.85", "--exact",
                                  "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.output)[0]["mode"] == "up to date"
    r = CliRunner().invoke(main, ["--lake", lk, "dedup", "--threshold", "0.9", "--exact"])
    assert r.exit_code == 0 and "full recompute: threshold 0.85 -> 0.9" in r.output
    r = CliRunner().invoke(main, ["--lake", lk, "dupes", "--top", "3", "--format", "json"])
    assert r.exit_code == 0 and len(json.loads(r.output)) == 3
    lake = open_lake(lk)
    u = ordered_uuids(lake)[10]
    r = CliRunner().invoke(main, ["--lake", lk, "similar", "--uuid", u, "-k", "4", "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 4 and u not in [x["uuid"] for x in rows]
    r = CliRunner().invoke(main, ["--lake", lk, "similar", "--vector", "[1, 2]"])
    assert r.exit_code == 1 and "the query vector has 2 values; the column holds 24-d" in r.output
    r = CliRunner().invoke(main, ["--lake", lk, "similar", "--uuid", u, "--where", "nonsense <<< 1"])
    assert r.exit_code == 1 and "check --where 'nonsense <<< 1'" in r.output
    r = CliRunner().invoke(main, ["--lake", lk, "similar"])
    assert r.exit_code == 1 and "give exactly one query" in r.output
    r = CliRunner().invoke(main, ["--lake", lk, "index", "--no-vector", "--format", "json"])
    assert r.exit_code == 0 and {x["index"] for x in json.loads(r.output)} == {
        "uuid_idx", "time_idx", "prompt_idx"}
    r = CliRunner().invoke(main, ["--lake", lk, "index", "--list", "--format", "csv"])
    assert r.exit_code == 0 and "uuid_idx" in r.output


@pytest.mark.slow
def test_similar_text_query_uses_the_columns_own_model(tmp_path: Path) -> None:
    """Text queries are embedded with the model that filled the column (local MiniLM here)."""
    from vidprom_lake.enrich import embed

    lake = create_lake(tmp_path / "lake")
    lake.ingest(write_csv(tmp_path / "a.csv", 60, 2))
    embed(lake)
    lake = open_lake(tmp_path / "lake")
    target = lake.query("select uuid, prompt from prompts order by uuid limit 1").to_pylist()[0]
    got = similar(lake, text=target["prompt"], k=3)
    assert got.column("uuid")[0].as_py() == target["uuid"]
    assert got.column("similarity")[0].as_py() == pytest.approx(1.0, abs=1e-4)
    r = CliRunner().invoke(main, ["--lake", str(tmp_path / "lake"), "similar",
                                  "a cat surfing a wave at sunset", "-k", "2", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)) == 2


def test_a_small_increment_is_decided_exactly(tmp_path: Path) -> None:
    lake = make_lake(tmp_path)
    first = dedup(lake, 0.8, min_approx_rows=0, check_sample=50)
    assert first.mode == "approx"
    lake.ingest(write_csv(tmp_path / "b.csv", 20, seed=7, start=datetime(2024, 3, 5)))
    lake = open_lake(tmp_path / "lake")
    new = ordered_uuids(lake)[300:]
    attach(lake, tmp_path, dict(zip(new, planted(20, 5), strict=True)), "f.h5")
    rep = dedup(open_lake(tmp_path / "lake"), 0.8, min_approx_rows=0)
    assert rep.mode == "exact (a small increment)" and rep.reused == 300 and rep.decided == 20
