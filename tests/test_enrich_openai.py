"""The openai backend: the real `openai` client against an embeddings server on 127.0.0.1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from enrich_fixtures import TEST_KEY, EmbeddingServer, fake_vector

from vidprom_lake import create_lake
from vidprom_lake.cli import main
from vidprom_lake.enrich import EnrichError, embed

MODEL = "openai:text-embedding-3-small"
FAST = {"max_retries": 3, "backoff": 0.01}


def _lake(tmp_path: Path, prompts: list[str]):
    lake = create_lake(tmp_path / "lake")
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    lake.ingest(str(src))
    return lake


PROMPTS = [f"a cinematic shot of prompt number {i}, golden hour" for i in range(60)]


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return TEST_KEY


def _vectors(lake, column: str) -> dict[str, list[float] | None]:
    t = lake.dataset("prompts").to_table(columns=["prompt", column])
    return dict(zip(t.column("prompt").to_pylist(), t.column(column).to_pylist(), strict=True))


def test_cli_embeds_every_prompt_in_overlapping_requests(tmp_path: Path, key: str) -> None:
    lake = _lake(tmp_path, PROMPTS)
    with EmbeddingServer(max_inputs=8, delay=0.05) as srv:
        res = CliRunner().invoke(main, [
            "--lake", lake.uri, "embed", "-m", MODEL, "--dimensions", "32",
            "--base-url", srv.base_url, "--batch-size", "8", "--format", "json"])
        assert res.exit_code == 0, res.output
        report = json.loads(res.stdout)[0]
        assert report["rows_done"] == 60 and report["rows_failed"] == 0 and report["dims"] == 32
        assert srv.requests == 8  # ceil(60 / 8): no request over the limit, none repeated
        assert srv.max_in_flight > 1  # requests overlapped
        assert {b["dimensions"] for b in srv.bodies} == {32}
    vecs = _vectors(lake, "embedding")
    for p, v in vecs.items():
        np.testing.assert_allclose(v, fake_vector(p, 32), rtol=1e-6)
    meta = lake.dataset("prompts").schema.field("embedding").metadata
    assert meta[b"vidlake:model"] == b"openai:text-embedding-3-small"
    assert meta[b"vidlake:dims"] == b"32"
    info = lake.batch_info(report["batch_id"])
    assert info.kind == "embed" and info.status == "committed"
    assert info.provenance["backend"] == "openai" and "openai" in info.provenance["versions"]


def test_retries_rate_limits_server_errors_and_malformed_answers(tmp_path: Path, key: str) -> None:
    lake = _lake(tmp_path, PROMPTS[:20])
    with EmbeddingServer(script=["429", "500", "malformed", "short"]) as srv:
        r = embed(lake, MODEL, dimensions=16, base_url=srv.base_url,
                  options={"max_retries": 5, "backoff": 0.01})
    assert r.rows_done == 20 and r.retries == 4
    for p, v in _vectors(lake, "embedding").items():
        np.testing.assert_allclose(v, fake_vector(p, 16), rtol=1e-6)


def test_rate_limit_honours_retry_after(tmp_path: Path, key: str) -> None:
    import time

    lake = _lake(tmp_path, PROMPTS[:4])
    with EmbeddingServer(script=["429"], retry_after=0.6) as srv:
        t0 = time.perf_counter()
        r = embed(lake, MODEL, dimensions=8, base_url=srv.base_url, options=FAST)
        assert time.perf_counter() - t0 >= 0.6
    assert r.rows_done == 4 and r.retries == 1


@pytest.mark.parametrize("fault, message", [
    ("500", "still failing after 3 retries: server error 500"),
    ("malformed", "still failing after 3 retries: malformed answer"),
    ("wrong_dims", "the server answered 15-d vectors but 16-d were expected"),
])
def test_persistent_faults_fail_clearly_and_store_nothing(tmp_path: Path, key: str, fault: str,
                                                          message: str) -> None:
    lake = _lake(tmp_path, PROMPTS[:10])
    with EmbeddingServer(always=fault) as srv, pytest.raises(EnrichError, match=message):
        embed(lake, MODEL, dimensions=16, base_url=srv.base_url, options=FAST)
    ds = lake.dataset("prompts")
    if "embedding" in ds.schema.names:
        assert ds.count_rows(filter="embedding IS NOT NULL") == 0
    assert lake.log()[-1].status == "failed"


def test_auth_and_model_errors_are_final(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _lake(tmp_path, PROMPTS[:5])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with EmbeddingServer() as srv:
        res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "-m", MODEL,
                                        "--base-url", srv.base_url])
        assert res.exit_code == 1
        assert "rejected the API key (401): set a valid OPENAI_API_KEY" in res.output
        assert srv.requests == 1  # not retried
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    with EmbeddingServer() as srv:
        res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "-m", "openai:no-such-model",
                                        "--base-url", srv.base_url])
        assert res.exit_code == 1
        assert "model 'no-such-model' not found (404)" in res.output
        assert srv.requests == 1


def test_missing_key_without_base_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _lake(tmp_path, PROMPTS[:3])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "-m", MODEL])
    assert res.exit_code == 1
    assert "OpenAI embeddings need an API key: export OPENAI_API_KEY=..." in res.output


def test_rejected_input_is_recorded_not_stored(tmp_path: Path, key: str) -> None:
    prompts = PROMPTS[:30] + ["an endless prompt REJECT-ME " + "x" * 50]
    lake = _lake(tmp_path, prompts)
    with EmbeddingServer(max_inputs=8) as srv:
        r = embed(lake, MODEL, dimensions=8, base_url=srv.base_url, batch_size=8, options=FAST)
        assert r.rows_done == 30 and r.rows_failed == 1
        bad = lake.query("select uuid from prompts where prompt like '%REJECT-ME%'").column(0)[0].as_py()
        assert r.failures == [{"uuid": bad, "error": "rejected by the server: This model's "
                                                     "maximum context length is 8192 tokens"}]
        assert lake.batch_info(r.batch_id).counts["failed_rows"][0]["uuid"] == bad
        assert lake.count(where="embedding IS NULL") == 1
        # A rerun tries only the missing row again.
        before = srv.inputs
        r2 = embed(lake, MODEL, dimensions=8, base_url=srv.base_url, batch_size=8, options=FAST)
        assert r2.rows_todo == 1 and r2.rows_failed == 1 and srv.inputs == before


def test_every_input_rejected_is_a_final_error(tmp_path: Path, key: str) -> None:
    lake = _lake(tmp_path, [f"REJECT-ME {i}" for i in range(4)])
    with EmbeddingServer() as srv, pytest.raises(EnrichError, match="rejected every input"):
        embed(lake, MODEL, dimensions=8, base_url=srv.base_url, options=FAST)


def test_api_key_never_reaches_the_lake(tmp_path: Path, key: str) -> None:
    lake = _lake(tmp_path, PROMPTS[:10])
    with EmbeddingServer() as srv:
        embed(lake, MODEL, dimensions=8, base_url=srv.base_url, options=FAST)
        assert f"Bearer {TEST_KEY}" in srv.auth_headers  # the key was used ...
    for root, _, files in os.walk(lake.uri):  # ... but no file of the lake holds it
        for f in files:
            assert TEST_KEY.encode() not in (Path(root) / f).read_bytes(), f
    for info in lake.log():
        assert TEST_KEY not in json.dumps([info.params, info.provenance, info.counts])


def test_one_space_per_column(tmp_path: Path, key: str) -> None:
    lake = _lake(tmp_path, PROMPTS[:6])
    with EmbeddingServer() as srv:
        embed(lake, MODEL, dimensions=8, base_url=srv.base_url)
        res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "-m", MODEL,
                                        "--dimensions", "16", "--base-url", srv.base_url])
        assert res.exit_code == 1
        assert ("column 'embedding' holds 8-d openai:text-embedding-3-small vectors, not 16-d "
                "openai:text-embedding-3-small ones") in res.output
        r = embed(lake, MODEL, dimensions=16, base_url=srv.base_url, column="emb16")
        assert r.rows_done == 6
        r = embed(lake, MODEL, dimensions=16, base_url=srv.base_url, recompute=True)
        assert r.rows_done == 6
    f = lake.dataset("prompts").schema.field("embedding")
    assert f.type.list_size == 16
    assert lake.count(where="embedding IS NULL") == 0


def test_nan_answer_is_a_failed_row_and_float_answers_work(tmp_path: Path, key: str) -> None:
    lake = _lake(tmp_path, PROMPTS[:6])
    with EmbeddingServer(script=["nan_first"], floats=True) as srv:
        r = embed(lake, MODEL, dimensions=8, base_url=srv.base_url, options=FAST)
    assert r.rows_done == 5 and r.rows_failed == 1
    assert r.failures[0]["error"] == "server returned NaN/inf values"
    assert lake.count(where="embedding IS NULL") == 1
    for p, v in _vectors(lake, "embedding").items():
        if v is not None:
            np.testing.assert_allclose(v, fake_vector(p, 8), rtol=1e-6)
            assert np.isfinite(v).all()


def test_empty_column_of_a_dead_run_is_replaced(tmp_path: Path, key: str) -> None:
    lake = _lake(tmp_path, PROMPTS[:4])
    with EmbeddingServer(always="500") as srv, pytest.raises(EnrichError):
        embed(lake, MODEL, dimensions=8, base_url=srv.base_url, options=FAST)
    assert lake.dataset("prompts").schema.field("embedding").type.list_size == 8
    with EmbeddingServer() as srv:
        r = embed(lake, MODEL, dimensions=16, base_url=srv.base_url)
    assert r.rows_done == 4
    assert lake.dataset("prompts").schema.field("embedding").type.list_size == 16
