"""Importing videos (tar shards, folders, mapping files) and reading them back."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import pytest
from video_fixtures import lake_with_prompts, make_mp4, write_tar

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def clips() -> list[bytes]:
    return [make_mp4(n=6 + i, seed=i) for i in range(4)]


@pytest.fixture
def setup(tmp_path: Path):
    return lake_with_prompts(tmp_path, n=20)


def _shard(tmp_path: Path, uuids: list[str], clips: list[bytes]) -> Path:
    good = {f"pika-{uuids[i]}.mp4": clips[i % len(clips)] for i in range(4)}
    good[f"sub/dir/pika-{uuids[4]}.mp4"] = clips[0]
    bad = {
        f"pika-{uuids[5]}.mp4": b"",  # empty
        f"pika-{uuids[6]}.mp4": clips[1][: len(clips[1]) // 2],  # truncated
        f"pika-{uuids[7]}.mp4": b"this is not a video at all, just text\n" * 20,  # not a video
        "pika-00000000-0000-5000-8000-000000000000.mp4": clips[2],  # unknown uuid
        f"../pika-{uuids[8]}.mp4": clips[2],  # hostile: parent dir
        f"/tmp/pika-{uuids[9]}.mp4": clips[2],  # hostile: absolute
        "README.txt": b"hello",  # not a video name
        f"vc2-{uuids[10]}.mp4": clips[3],  # another model inside a pika shard
        "pika-nouuid.mp4": clips[3],  # bad name
    }
    return write_tar(tmp_path / "pika_1.tar", {**good, **bad},
                     symlinks={f"pika-{uuids[11]}.mp4": "/etc/passwd"})


def test_tar_shard_imports_valid_members_and_reports_the_rest(setup, tmp_path, clips):
    lake, uuids = setup
    from vidprom_lake.video import import_videos

    shard = _shard(tmp_path, uuids, clips)
    r = import_videos(lake, [shard], model="pika", chunk=2)
    assert r.imported == 5
    assert sorted(r.imported_ids) == sorted(f"pika-{u}" for u in uuids[:5])
    reasons = {(rj.name, rj.reason) for rj in r.rejected}
    assert (f"pika-{uuids[5]}.mp4", "empty") in reasons
    assert (f"pika-{uuids[6]}.mp4", "corrupt") in reasons
    assert (f"pika-{uuids[7]}.mp4", "not-video") in reasons
    assert ("pika-00000000-0000-5000-8000-000000000000.mp4", "unknown-uuid") in reasons
    assert (f"../pika-{uuids[8]}.mp4", "hostile-name") in reasons
    assert (f"/tmp/pika-{uuids[9]}.mp4", "hostile-name") in reasons
    assert ("README.txt", "not-video") in reasons
    assert (f"vc2-{uuids[10]}.mp4", "model-mismatch") in reasons
    assert ("pika-nouuid.mp4", "bad-name") in reasons
    assert (f"pika-{uuids[11]}.mp4", "not-regular-file") in reasons
    assert len(r.rejected) == 10
    # nothing was extracted next to the shard, and no hostile path was created
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["lake", "pika_1.tar", "prompts-1.csv"])
    assert not Path(f"/tmp/pika-{uuids[9]}.mp4").exists()
    # chunked: 5 videos at chunk=2 -> 3 durable chunks, one batch
    assert r.chunks == 3
    info = lake.batch_info(r.batch_id)
    assert info.status == "committed" and info.counts["rows_added"] == 5
    assert info.counts["rejected_by_reason"]["hostile-name"] == 2

    rows = lake.query("select video_id, codec, width, height, fps, num_frames, duration_s, bytes, "
                      "sha256, has_thumbnail from videos order by video_id").to_pylist()
    assert len(rows) == 5
    by_id = {r["video_id"]: r for r in rows}
    import hashlib

    v0 = by_id[f"pika-{uuids[0]}"]
    assert v0["codec"] == "h264" and (v0["width"], v0["height"]) == (64, 48)
    assert v0["num_frames"] == 6 and v0["fps"] == pytest.approx(8.0)
    assert v0["duration_s"] == pytest.approx(0.75, abs=0.01)
    assert v0["bytes"] == len(clips[0]) and v0["sha256"] == hashlib.sha256(clips[0]).hexdigest()
    assert all(r["has_thumbnail"] for r in rows)


def test_rerun_skips_what_exists_and_bytes_read_back_unchanged(setup, tmp_path, clips):
    lake, uuids = setup
    from vidprom_lake.video import import_videos, open_video, read_video

    shard = _shard(tmp_path, uuids, clips)
    first = import_videos(lake, shard, model="pika")
    again = import_videos(lake, shard, model="pika")
    assert first.imported == 5 and again.imported == 0 and again.already_in_lake == 5
    assert lake.count("videos") == 5
    assert read_video(lake, uuids[1], "pika") == clips[1]
    with open_video(lake, uuids[2], "pika") as f, av.open(f) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8
    # prefix lookup
    assert read_video(lake, uuids[3][:8], "pika") == clips[3]


def test_folder_with_mapping_file(setup, tmp_path, clips):
    lake, uuids = setup
    from vidprom_lake.video import import_videos

    folder = tmp_path / "clips"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "one.mp4").write_bytes(clips[0])
    (folder / "two.mp4").write_bytes(clips[1])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.txt").write_text("x")
    (folder / "link.mp4").symlink_to(folder / "two.mp4")
    mapping = tmp_path / "map.csv"
    with open(mapping, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "uuid"])
        w.writerow(["a/one.mp4", uuids[0]])
        w.writerow(["two.mp4", uuids[1].upper()])
        w.writerow(["empty.mp4", uuids[2]])
        w.writerow(["../outside.mp4", uuids[3]])
        w.writerow(["missing.mp4", uuids[4]])
    r = import_videos(lake, [folder], model="my-model", mapping=mapping)
    assert sorted(r.imported_ids) == sorted([f"my-model-{uuids[0]}", f"my-model-{uuids[1]}"])
    reasons = sorted((rj.name, rj.reason) for rj in r.rejected)
    assert reasons == sorted([
        ("../outside.mp4", "hostile-name"), ("empty.mp4", "empty"), ("link.mp4", "not-regular-file"),
        ("missing.mp4", "unmapped"), ("notes.txt", "not-video")])
    got = lake.query("select model, uuid from videos order by uuid").to_pylist()
    assert {g["model"] for g in got} == {"my-model"}


def test_mapping_errors_name_file_and_row(setup, tmp_path):
    lake, _ = setup
    from vidprom_lake.errors import InputError
    from vidprom_lake.video import import_videos

    bad = tmp_path / "bad.csv"
    bad.write_text("file,uuid\nx.mp4,not-a-uuid\n")
    with pytest.raises(InputError, match=r"bad\.csv, row 2: uuid 'not-a-uuid' is not a UUID"):
        import_videos(lake, [tmp_path], model="m", mapping=bad)
    nohdr = tmp_path / "nohdr.csv"
    nohdr.write_text("name_of_file,id\n")
    with pytest.raises(InputError, match="mapping needs a file column"):
        import_videos(lake, [tmp_path], model="m", mapping=nohdr)


def test_compressed_shard_and_model_from_names(setup, tmp_path, clips):
    lake, uuids = setup
    from vidprom_lake.video import import_videos

    path = tmp_path / "mixed.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in ((f"pika-{uuids[0]}.mp4", clips[0]), (f"vc2-{uuids[0]}.mp4", clips[1]),
                           (f"t2vz-{uuids[1]}.mp4", clips[2])):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    r = import_videos(lake, path)
    assert sorted(r.imported_ids) == sorted(
        [f"pika-{uuids[0]}", f"vc2-{uuids[0]}", f"t2vz-{uuids[1]}"])
    t = lake.query("select uuid, count(*) n from gallery where video_id is not null "
                   "group by uuid order by n desc").to_pylist()
    assert t[0] == {"uuid": uuids[0], "n": 2}


def test_views_never_select_the_blob(setup, tmp_path, clips):
    lake, uuids = setup
    from vidprom_lake.video import import_videos

    import_videos(lake, _shard(tmp_path, uuids, clips), model="pika")
    for view in ("videos", "gallery"):
        cols = lake.query(f"select * from {view} limit 1").column_names
        assert "video" not in cols and "thumbnail" not in cols
        assert "bytes" in cols
    pl_cols = lake.to_polars("videos").collect_schema().names()
    assert "video" not in pl_cols


# ---------------------------------------------------------------------- CLI
def test_cli_import_video_frames_export(setup, tmp_path, clips):
    from click.testing import CliRunner

    from vidprom_lake.cli import main

    lake, uuids = setup
    shard = _shard(tmp_path, uuids, clips)
    runner = CliRunner()
    base = ["--lake", lake.uri]
    res = runner.invoke(main, [*base, "import-videos", str(shard), "--model", "pika",
                               "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)[0]
    assert out["imported"] == 5 and out["rejected"] == 10
    assert {r["reason"] for r in out["rejected_files"]} >= {"hostile-name", "corrupt", "empty"}

    res = runner.invoke(main, [*base, "import-videos", str(shard), "--model", "pika"])
    assert res.exit_code == 0
    assert "rejected: " in res.stderr and "hostile-name" in res.stderr

    mp4 = tmp_path / "out.mp4"
    res = runner.invoke(main, [*base, "video", uuids[0], "--model", "pika", "-o", str(mp4)])
    assert res.exit_code == 0, res.output
    assert mp4.read_bytes() == clips[0]
    assert f"wrote pika-{uuids[0]} ({len(clips[0]):,} bytes, 6 frames, 64x48)" in res.stderr

    res = runner.invoke(main, [*base, "video", uuids[0], "--model", "ms", "-o", str(mp4)])
    assert res.exit_code == 1
    assert f"no video for uuid {uuids[0]} and model 'ms'" in res.output
    assert "that uuid has videos from: pika" in res.output

    frames_dir = tmp_path / "frames"
    res = runner.invoke(main, [*base, "frames", uuids[1][:13] + "…", "--model", "pika",
                               "--every", "4", "-o", str(frames_dir)])
    assert res.exit_code == 0, res.output
    pngs = sorted(frames_dir.glob("*.png"))
    assert [p.name for p in pngs] == [f"pika-{uuids[1]}_00000.png", f"pika-{uuids[1]}_00004.png"]
    from PIL import Image

    with Image.open(pngs[0]) as im:
        assert im.size == (64, 48)

    exp = tmp_path / "exp"
    res = runner.invoke(main, [*base, "export-videos", "-o", str(exp), "--model", "pika",
                               "--where", "num_frames >= 7", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["videos"] == 3
    assert sorted(p.read_bytes() for p in exp.iterdir()) == sorted(
        [clips[1], clips[2], clips[3]])

    res = runner.invoke(main, [*base, "query",
                               "select model, count(*) n, avg(duration_s) d from videos group by model",
                               "--format", "json"])
    assert json.loads(res.stdout)[0]["n"] == 5


def test_cli_bad_input_messages(setup, tmp_path):
    from click.testing import CliRunner

    from vidprom_lake.cli import main

    lake, _ = setup
    runner = CliRunner()
    res = runner.invoke(main, ["--lake", lake.uri, "import-videos", str(tmp_path / "nope.tar")])
    assert res.exit_code == 2 and "does not exist" in res.output
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00garbage" * 10)
    res = runner.invoke(main, ["--lake", lake.uri, "import-videos", str(junk), "--model", "x"])
    assert res.exit_code == 1
    assert "junk.tar" in res.output
    res = runner.invoke(main, ["--lake", lake.uri, "video", "zz-not-uuid", "--model", "pika"])
    assert res.exit_code == 1 and "not a uuid or uuid prefix: 'zz-not-uuid'" in res.output


def test_cli_video_to_stdout_and_info(setup, tmp_path, clips):
    from click.testing import CliRunner

    from vidprom_lake.cli import main
    from vidprom_lake.video import import_videos

    lake, uuids = setup
    import_videos(lake, _shard(tmp_path, uuids, clips), model="pika")
    runner = CliRunner()
    res = runner.invoke(main, ["--lake", lake.uri, "video", uuids[2], "--model", "pika", "-o", "-"])
    assert res.exit_code == 0
    assert res.stdout_bytes == clips[2]
    res = runner.invoke(main, ["--lake", lake.uri, "video", uuids[2], "--model", "pika", "--info",
                               "--format", "json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)[0]
    assert info["video_id"] == f"pika-{uuids[2]}" and info["bytes"] == len(clips[2])
    assert "video" not in info and "thumbnail" not in info


def test_index_verify_rejects_the_same_files_and_stores_the_same_metadata(setup, tmp_path, clips):
    """--verify index --no-thumbnails decodes nothing, yet truncated, empty and garbage files
    are still rejected (with FFmpeg's verdict), and the probe columns match the default."""
    from vidprom_lake import create_lake
    from vidprom_lake.video import import_videos

    lake, uuids = setup
    shard = _shard(tmp_path, uuids, clips)
    fast = import_videos(lake, [shard], model="pika", verify="index", thumbnails=False)
    assert fast.imported == 5
    assert {(rj.name, rj.reason) for rj in fast.rejected} >= {
        (f"pika-{uuids[5]}.mp4", "empty"), (f"pika-{uuids[6]}.mp4", "corrupt"),
        (f"pika-{uuids[7]}.mp4", "not-video")}
    assert len(fast.rejected) == 10
    other = create_lake(tmp_path / "other")
    other.ingest(tmp_path / "prompts-1.csv")
    slow = import_videos(other, [shard], model="pika")
    cols = ("video_id, codec, width, height, fps, num_frames, duration_s, bytes, sha256, "
            "has_thumbnail")
    got = lake.query(f"select {cols} from videos order by video_id").to_pylist()
    want = other.query(f"select {cols} from videos order by video_id").to_pylist()
    assert [{**g, "has_thumbnail": True} for g in got] == want
    assert not any(g["has_thumbnail"] for g in got)
    from vidprom_lake.errors import InputError

    with pytest.raises(InputError, match="add --no-thumbnails"):
        import_videos(lake, [shard], model="pika", verify="index")
    assert {(rj.name, rj.reason) for rj in slow.rejected} == {
        (rj.name, rj.reason) for rj in fast.rejected}


def test_truncated_tar_rejects_the_cut_member_and_keeps_the_rest(setup, tmp_path, clips):
    lake, uuids = setup
    from vidprom_lake.video import import_videos

    shard = write_tar(tmp_path / "cut.tar", {f"pika-{uuids[i]}.mp4": clips[i] for i in range(3)})
    raw = shard.read_bytes()
    end = raw.index(clips[2]) + len(clips[2]) // 2
    shard.write_bytes(raw[:end])  # the archive ends inside the third member
    r = import_videos(lake, [shard], model="pika")
    assert sorted(r.imported_ids) == sorted(f"pika-{u}" for u in uuids[:2])
    (bad,) = r.rejected
    assert (bad.name, bad.reason) == (f"pika-{uuids[2]}.mp4", "corrupt")
    assert "cut off in the archive" in bad.detail
    # the same archive gzipped is streamed (no positional reads): same verdict
    import gzip

    gz = tmp_path / "cut.tar.gz"
    gz.write_bytes(gzip.compress(raw[:end]))
    other, _ = lake_with_prompts(tmp_path / "o", n=20)
    r2 = import_videos(other, [gz], model="pika")
    assert r2.imported == 2 and [x.reason for x in r2.rejected] == ["corrupt"]


def test_slabs_are_reused_only_after_lance_wrote_them(setup, tmp_path, monkeypatch):
    """Many members through small slabs, committed in small chunks: every stored video is
    byte for byte the file it came from (a slab reused too early would mix clips)."""
    import hashlib

    from vidprom_lake.video import import_videos, importer, read_video

    lake, uuids = setup
    clips = {u: make_mp4(n=3 + i % 5, seed=100 + i) for i, u in enumerate(uuids)}
    # slabs of about two clips: fewer than the probe look-ahead, so reuse happens mid-chunk
    monkeypatch.setattr(importer._Slabs, "SIZE", 2 * max(map(len, clips.values())))
    monkeypatch.setattr(importer._Slabs, "LARGEST", importer._Slabs.SIZE)
    members = {f"pika-{u}.mp4": d for u, d in clips.items()}
    members[f"pika-{uuids[3]}.mp4"] = b"junk" * 100  # rejected after being read into a slab
    shard = write_tar(tmp_path / "many.tar", members)
    allocated = []
    real_place = importer._Slabs.place

    def place(self, size):
        spot = real_place(self, size)
        if spot is not None and all(spot[0] is not a for a in allocated):
            allocated.append(spot[0])
        return spot

    monkeypatch.setattr(importer._Slabs, "place", place)
    r = import_videos(lake, [shard], model="pika", chunk=3)
    assert r.imported == len(uuids) - 1 and r.chunks == 7
    assert 0 < len(allocated) < 19  # slabs were used, and came back for reuse
    for u in uuids:
        if u == uuids[3]:
            continue
        got = read_video(lake, u, "pika")
        assert hashlib.sha256(got).digest() == hashlib.sha256(clips[u]).digest(), u
    rows = lake.query("select uuid, sha256 from videos").to_pylist()
    assert {r["sha256"] for r in rows} == {hashlib.sha256(clips[r["uuid"]]).hexdigest()
                                           for r in rows}


def test_read_ahead_thread_hands_over_errors_and_stops_when_closed():
    """The reading/probing thread runs ahead of the Lance writer: an error it meets is raised
    in the writer's thread, and closing it early stops it (no thread left behind)."""
    import threading

    from vidprom_lake.errors import InputError
    from vidprom_lake.video.importer import _Ahead

    def failing():
        yield 1
        yield 2
        raise InputError("tar archive is damaged", path="x.tar")

    got = []
    with pytest.raises(InputError, match="damaged"):
        for x in _Ahead(failing(), depth=1):
            got.append(x)
    assert got == [1, 2]

    pulled = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            yield i
            i += 1

    ahead = _Ahead(endless(), depth=4)
    it = iter(ahead)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    ahead.close()
    assert not ahead.thread.is_alive()
    assert len(pulled) <= 3 + 4 + 2  # at most `depth` (+ the one in hand) ahead
    assert "vidlake-import-read" not in {t.name for t in threading.enumerate()}
