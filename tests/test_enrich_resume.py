"""Chunks, interrupts and resumes: a crash or Ctrl-C loses at most one chunk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from enrich_fixtures import FakeEmbedder, fake_vector

import vidprom_lake.enrich as enrich
from vidprom_lake import create_lake, open_lake
from vidprom_lake.cli import main

N = 100
HERE = Path(__file__).parent


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeEmbedder]]:
    monkeypatch.setattr(enrich, "_REGISTRY", {})
    monkeypatch.setattr(enrich, "_LOADED", False)
    monkeypatch.setattr(enrich, "entry_points", lambda group: [
        EntryPoint("fake", "enrich_fixtures:FakeEmbedder", group)])
    monkeypatch.setattr(FakeEmbedder, "stop_after", None)
    yield FakeEmbedder


@pytest.fixture
def lake(tmp_path: Path):
    lake = create_lake(tmp_path / "lake")
    src = tmp_path / "p.jsonl"
    rows = [f"prompt {i} about a lighthouse" for i in range(N)]
    rows[41] = "this one will FAIL-ME"
    src.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in rows))
    lake.ingest(str(src))
    return lake


def _vecs(lake) -> dict[str, list[float] | None]:
    t = lake.dataset("prompts").to_table(columns=["prompt", "embedding"])
    return dict(zip(t.column("prompt").to_pylist(), t.column("embedding").to_pylist(), strict=True))


def test_ctrl_c_keeps_committed_chunks_and_rerun_resumes(lake, fake) -> None:
    fake.stop_after = 5  # 16 rows a call: Ctrl-C during the third 32-row chunk
    with pytest.raises(KeyboardInterrupt):
        enrich.embed(lake, "fake:8", chunk_rows=32)
    lake = open_lake(lake.uri)
    assert lake.count(where="embedding IS NOT NULL") == 63  # 2 chunks of 32, minus row 41
    last = lake.log()[-1]
    assert last.status == "failed" and last.message.startswith("KeyboardInterrupt")
    before = _vecs(lake)
    fake.stop_after = None
    r = enrich.embed(lake, "fake:8", chunk_rows=32)
    assert r.rows_todo == N - 63 and r.rows_done == N - 64 and r.rows_failed == 1
    assert r.failures[0]["error"] == "fake failure"
    after = _vecs(lake)
    for p, v in before.items():
        if v is not None:
            assert after[p] == v  # committed chunks untouched
    for p, v in after.items():
        if "FAIL-ME" in p:
            assert v is None  # a failed row is recorded, never written as NULL-as-data/zeros
        else:
            np.testing.assert_allclose(v, fake_vector(p, 8), rtol=1e-6)
    failed = lake.batch_info(r.batch_id).counts
    assert failed["rows_failed"] == 1 and "FAIL-ME" not in json.dumps(failed)  # uuid, not text


def test_cli_ctrl_c_exit_code(lake, fake) -> None:
    fake.stop_after = 1
    res = CliRunner().invoke(main, ["--lake", lake.uri, "embed", "-m", "fake:8",
                                    "--chunk-rows", "16"])
    assert res.exit_code == 130
    assert "interrupted; committed batches are safe" in res.output


def test_recompute_replaces_another_space(lake, fake) -> None:
    enrich.embed(lake, "fake:8")
    with pytest.raises(enrich.base.VidlakeError, match="One embedding space per column"):
        enrich.embed(lake, "fake:16")
    r = enrich.embed(lake, "fake:16", recompute=True)
    assert r.rows_done == N - 1 and "dropped the old embedding (fake:8)" in "; ".join(r.notes)
    assert lake.dataset("prompts").schema.field("embedding").type.list_size == 16
    # The old space is still readable as of its batch.
    old = lake.as_of(lake.log()[-2].batch_id)
    assert old.dataset("prompts").schema.field("embedding").type.list_size == 8


@pytest.mark.slow
def test_killed_process_loses_at_most_one_chunk(lake, tmp_path: Path) -> None:
    """SIGKILL while the third chunk is being computed, in a separate process."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(HERE)!r})
        import vidprom_lake.enrich as enrich
        from enrich_fixtures import FakeEmbedder
        from vidprom_lake import open_lake
        enrich.register(FakeEmbedder)
        lake = open_lake({lake.uri!r})
        def progress(done, total):
            if done >= 40:
                os.kill(os.getpid(), signal.SIGKILL)
        enrich.embed(lake, "fake:8", chunk_rows=16, progress=progress)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(HERE)}, timeout=300)
    assert p.returncode == -9, p.stderr
    lake = open_lake(lake.uri)  # heals if the kill hit mid-commit
    assert lake.count(where="embedding IS NOT NULL") == 32
    enrich.register(FakeEmbedder)
    try:
        r = enrich.embed(lake, "fake:8", chunk_rows=16)
    finally:
        enrich.unregister("fake")
    assert r.rows_todo == N - 32 and lake.count(where="embedding IS NULL") == 1


def test_float16_column_and_where(lake, fake) -> None:
    r = enrich.embed(lake, "fake:8", column="half", dtype="float16", where="prompt LIKE 'prompt 1%'")
    assert r.rows_done == 11  # prompt 1, 10..19
    f = lake.dataset("prompts").schema.field("half")
    assert str(f.type.value_type) == "halffloat" and f.metadata[b"vidlake:dtype"] == b"float16"
    t = lake.dataset("prompts").to_table(columns=["prompt", "half"], filter="half IS NOT NULL")
    for p, v in zip(t.column("prompt").to_pylist(), t.column("half").to_pylist(), strict=True):
        np.testing.assert_allclose(v, fake_vector(p, 8), atol=2e-3)
    # Same model but another precision is another space.
    with pytest.raises(enrich.base.VidlakeError, match="One embedding space per column"):
        enrich.embed(lake, "fake:8", column="half")
