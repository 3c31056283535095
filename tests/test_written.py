"""Distributed writes: data files written by one process (a worker), committed by another.

`Lake.write_rows` writes Lance data files and commits nothing; `Batch.add_written` stages them
and the batch commits them atomically, tagged and logged like any other write.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import lance
import pyarrow as pa
import pytest

from vidprom_lake import Lake, synth
from vidprom_lake.errors import VidlakeError
from vidprom_lake.lake import Written
from vidprom_lake.schema import VIDEOS_SCHEMA


def _videos(uuids: list[str], model: str = "m") -> pa.Table:
    rows = [{"video_id": f"{model}-{u}", "uuid": u, "model": model, "source": "test",
             "video": bytes([i % 251]) * (1000 + i), "params": "{}",
             "time": datetime.now(UTC), "batch_id": "x", "bytes": 1000 + i}
            for i, u in enumerate(uuids)]
    return pa.Table.from_pylist(rows, schema=VIDEOS_SCHEMA)


@pytest.fixture
def prompts(lake, tmp_path):
    lake.ingest(synth.write_vidprom_csv(tmp_path / "p.csv", 30, seed=3))
    return [r["uuid"] for r in synth.rows(30, seed=3)]


def test_written_rows_are_invisible_until_the_driver_commits(lake, prompts) -> None:
    before = lake.dataset("videos").version
    # the "worker": its own Lake handle on the same URI, no batch
    w = Lake(lake.uri).write_rows("videos", _videos(prompts[:10]))
    assert w.rows == 10 and w.table == "videos" and w.bytes > 10_000
    w = pickle.loads(pickle.dumps(w))  # travels to the driver
    assert lance.dataset(lake.table_uri("videos")).version == before
    assert lake.count("videos") == 0

    with lake.batch("import", source="test") as b:
        assert b.add_written("videos", w) == 10
        b.commit()
        w2 = Lake(lake.uri).write_rows("videos", _videos(prompts[10:15]))
        b.add_written("videos", w2)
    fresh = Lake(lake.uri)
    assert fresh.count("videos") == 15
    info = fresh.batch_info(b.batch_id)
    assert info.status == "committed"
    tags = lance.dataset(lake.table_uri("videos")).tags.list()
    assert tags[b.batch_id]["version"] == info.versions["videos"]
    # the blob bytes read back
    ds = fresh.dataset("videos")
    t = ds.to_table(columns=["video_id"], with_row_id=True)
    i = t.column("video_id").to_pylist().index(f"m-{prompts[3]}")
    blob = ds.take_blobs("video", ids=[t.column("_rowid")[i].as_py()])[0]
    assert blob.read() == bytes([3]) * 1003


def test_a_failed_batch_leaves_written_files_invisible(lake, prompts) -> None:
    w = Lake(lake.uri).write_rows("videos", _videos(prompts[:5]))
    with pytest.raises(RuntimeError, match="boom"), lake.batch("import") as b:
        b.add_written("videos", w)
        raise RuntimeError("boom")
    fresh = Lake(lake.uri)
    assert fresh.count("videos") == 0
    assert fresh.log()[-1].status == "failed"


def test_written_elsewhere_is_refused(lake, prompts, tmp_path) -> None:
    from vidprom_lake import create_lake

    other = create_lake(tmp_path / "other")
    w = other.write_rows("videos", _videos(prompts[:2]))
    with pytest.raises(VidlakeError, match="not into"), lake.batch("import") as b:
        b.add_written("videos", w)
    with pytest.raises(VidlakeError, match="cannot be added"), lake.batch("import") as b:
        b.add_written("prompts", w)


def test_a_bad_row_fails_on_the_worker(lake, prompts) -> None:
    t = _videos(prompts[:3]).drop_columns(["uuid"])
    with pytest.raises(ValueError, match="'uuid' is required"):
        Lake(lake.uri).write_rows("videos", t)


def test_written_is_plain_data() -> None:
    w = Written(table="videos", uri="/x/videos.lance", fragments=(), rows=0, read_version=1)
    assert pickle.loads(pickle.dumps(w)) == w and w.bytes == 0
