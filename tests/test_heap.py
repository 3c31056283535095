"""The memory and thread settings a bulk write runs under (heap.py, pipeline.parse_threads)."""

from __future__ import annotations

import ctypes
import os
import sys
import threading

import pytest

from vidprom_lake import heap
from vidprom_lake.ingest import pipeline, sources

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux") or heap._libc() is None,
                                reason="PR_SET_THP_DISABLE is a Linux prctl (glibc)")


def thp_disabled() -> int:
    return heap._libc().prctl(heap._PR_GET_THP_DISABLE, 0, 0, 0, 0)


def pages_at_each_write(lake, monkeypatch) -> list[int]:
    """The THP-disable flag at each `Lake.write_rows` call (the start of every bulk write)."""
    seen: list[int] = []
    write_rows = type(lake).write_rows

    def spy(self, *args, **kwargs):
        seen.append(thp_disabled())
        return write_rows(self, *args, **kwargs)

    monkeypatch.setattr(type(lake), "write_rows", spy)
    return seen


@linux_only
def test_small_pages_turns_huge_pages_off_and_back_on():
    assert thp_disabled() == 0
    with heap.small_pages():
        assert thp_disabled() == 1
        with heap.small_pages():  # nested: the inner block must not turn them back on
            assert thp_disabled() == 1
        assert thp_disabled() == 1
    assert thp_disabled() == 0
    with pytest.raises(RuntimeError), heap.reuse():
        assert thp_disabled() == 1
        raise RuntimeError("boom")
    assert thp_disabled() == 0


def mmapped(size: int) -> bool:
    """Whether glibc serves a block of `size` bytes with its own mmap right now, read from
    mallinfo2's count of mmapped bytes. False whenever `heap.reuse` is on (the threshold is
    above it); outside, usually True, but a large enough free block left in the heap serves
    it too, so only the False is a sure sign."""
    libc = heap._libc()

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    try:
        return libc.mallinfo2().hblkhd - before >= size
    finally:
        libc.free(block)


@linux_only
def test_reuse_blocks_nest_across_threads():
    """A fetch holds a reuse block around its downloads while each import opens and closes
    its own: the inner one closing must not put the settings back under the outer one."""
    opened, release = threading.Event(), threading.Event()

    def outer() -> None:
        with heap.reuse():
            opened.set()
            release.wait(30)

    assert heap._reuse_depth == 0 and thp_disabled() == 0
    t = threading.Thread(target=outer)
    t.start()
    try:
        assert opened.wait(30)
        with heap.reuse():
            assert not mmapped(10 << 20) and thp_disabled() == 1
        assert not mmapped(10 << 20) and thp_disabled() == 1  # the other block is still open
    finally:
        release.set()
        t.join()
    assert heap._reuse_depth == 0 and thp_disabled() == 0


@linux_only
def test_after_a_bulk_write_buffers_of_a_few_mb_still_come_from_the_heap():
    """Once a threshold is set through mallopt glibc no longer adapts it: put back at its
    initial 128 KB, every 10 MB buffer of the rest of the process would be a fresh mapping."""
    with heap.reuse():
        pass
    assert not mmapped(10 << 20)


@linux_only
def test_csv_ingest_writes_with_small_pages_and_restores_them(lake, tmp_path, monkeypatch):
    seen = pages_at_each_write(lake, monkeypatch)
    path = tmp_path / "p.csv"
    path.write_text("prompt\nhello\nworld\n", encoding="utf-8")
    lake.ingest(path, format="csv")
    assert seen == [1] and thp_disabled() == 0
    assert lake.count() == 2


def test_parse_threads_is_half_the_cores_at_least_one(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert pipeline.parse_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert pipeline.parse_threads() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert pipeline.parse_threads() == 1


def test_streamed_parse_uses_parse_threads_and_aggregates_all(lake, vidprom_csv, tmp_path,
                                                              monkeypatch):
    import duckdb

    cons = []
    connect = sources._connect

    def keep():
        con = connect()
        cons.append(con)
        return con

    def threads(con) -> int:
        return con.execute("select current_setting('threads')").fetchone()[0]

    monkeypatch.setattr(sources, "_connect", keep)
    monkeypatch.setattr(pipeline, "parse_threads", lambda: 1)
    lake.ingest(vidprom_csv)  # streamed: DuckDB parses beside the other stages
    generic = tmp_path / "p.csv"
    generic.write_text("prompt\nhello\nworld\n", encoding="utf-8")
    lake.ingest(generic, format="csv")  # grouped by uuid before the first row: every core
    assert [threads(c) for c in cons] == [1, threads(duckdb.connect())]
    assert lake.count() == 202


@linux_only
def test_video_import_writes_with_small_pages_and_restores_them(tmp_path, monkeypatch):
    from video_fixtures import lake_with_prompts, make_mp4, write_tar

    from vidprom_lake.video import import_videos

    lake, uuids = lake_with_prompts(tmp_path, n=3)
    seen = pages_at_each_write(lake, monkeypatch)
    shard = write_tar(tmp_path / "s.tar", {f"pika-{u}.mp4": make_mp4(seed=i)
                                           for i, u in enumerate(uuids)})
    assert import_videos(lake, [shard], model="pika").imported == 3
    assert seen and set(seen) == {1} and thp_disabled() == 0
