"""`import-videos` and `generate` on Ray: workers write Lance data files, the driver commits.

Real processes throughout: a local Ray cluster started here, real tar shards of H.264 clips,
tiny diffusers pipelines with random weights, and moto's S3 server on 127.0.0.1. Checks that
the Ray runs land exactly what the local engine lands, that a worker killed with SIGKILL is
restarted and its pieces redone without duplicates, that a worker failure with no retries
left stops the run with whole chunks committed and a rerun completes it, and that inputs and
the lake can both live on S3.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import ray_fixtures
import s3_fixtures
from click.testing import CliRunner
from ray_fixtures import kill_all_workers, kill_one_worker_once
from video_fixtures import lake_with_prompts, make_mp4, tiny_modelscope, write_tar

from vidprom_lake import create_lake, open_lake, synth
from vidprom_lake.cli import main

ray = pytest.importorskip("ray", reason="needs the ray extra")
pytest.importorskip("av")

moto_s3 = s3_fixtures.moto_s3
s3_env = s3_fixtures.s3_env
s3_client = s3_fixtures.s3_client
s3_bucket = s3_fixtures.s3_bucket
cluster = ray_fixtures.cluster

SHARD = 6  # clips per tar shard in these tests


@pytest.fixture(scope="module")
def clips() -> list[bytes]:
    return [make_mp4(n=6, seed=i) for i in range(4)]


def _shards(folder: Path, uuids: list[str], clips: list[bytes], model: str = "pika",
            per: int = SHARD) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, s in enumerate(range(0, len(uuids), per)):
        members = {f"{model}-{u}.mp4": clips[(s + i) % len(clips)]
                   for i, u in enumerate(uuids[s:s + per])}
        out.append(str(write_tar(folder / f"{model}_{k + 1}.tar", members)))
    return out


def _videos(lake) -> dict[str, str]:
    """video_id -> sha256 of the row, as the lake holds it now."""
    t = open_lake(lake.uri).dataset("videos").to_table(columns=["video_id", "sha256"])
    ids = t.column("video_id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicate video rows"
    return dict(zip(ids, t.column("sha256").to_pylist(), strict=True))


def _check_bytes(lake, clips: list[bytes]) -> None:
    """Every stored blob reads back as one of the clips, and its sha256 column agrees."""
    from vidprom_lake.video import read_video

    known = {hashlib.sha256(c).hexdigest() for c in clips}
    lk = open_lake(lake.uri)
    for vid, sha in _videos(lk).items():
        assert sha in known
        model, uuid = vid.split("-", 1)
        assert hashlib.sha256(read_video(lk, uuid, model)).hexdigest() == sha


# ---------------------------------------------------------------------- import
@pytest.mark.slow
def test_cli_import_on_ray_equals_local(cluster, tmp_path: Path, clips) -> None:
    lake, uuids = lake_with_prompts(tmp_path, n=30)
    shards = _shards(tmp_path / "in", uuids[:18], clips)  # 3 shards
    loose = tmp_path / "loose"
    loose.mkdir()
    for i, u in enumerate(uuids[16:26]):  # 2 overlap the last shard: duplicates
        (loose / f"pika-{u}.mp4").write_bytes(clips[i % len(clips)])
    (loose / "readme.txt").write_text("not a video")
    (loose / "pika-00000000-0000-5000-8000-000000000000.mp4").write_bytes(clips[0])
    args = [*shards, str(loose), "--chunk", "4", "--format", "json"]
    res = CliRunner().invoke(main, ["--lake", lake.uri, "import-videos", "--engine", "ray",
                                    "--workers", "2", *args])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["engine"] == "ray" and rep["imported"] == 26
    assert rep["rejected_by_reason"] == {"duplicate": 2, "not-video": 1, "unknown-uuid": 1}
    # 3 shards + the folder in pieces of 4 files (13 files -> 4 pieces, one all rejected)
    assert rep["chunks"] == 3 + 3
    info = open_lake(lake.uri).batch_info(rep["batch_id"])
    assert info.status == "committed" and info.counts["rows_added"] == 26
    assert info.provenance["engine"]["engine"] == "ray"
    import lance

    tags = lance.dataset(lake.uri + "/videos.lance").tags.list()
    assert tags[rep["batch_id"]]["version"] == info.versions["videos"]
    got = _videos(lake)
    _check_bytes(lake, clips)

    # the same inputs through the local engine land the same rows
    local, _ = lake_with_prompts(tmp_path / "local", n=30)
    res = CliRunner().invoke(main, ["--lake", local.uri, "import-videos", *args])
    assert res.exit_code == 0, res.output
    assert _videos(local) == got

    # a rerun on Ray lands nothing new
    res = CliRunner().invoke(main, ["--lake", lake.uri, "import-videos", "--engine", "ray",
                                    "--workers", "2", *args])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)[0]
    assert again["imported"] == 0 and again["already_in_lake"] >= 26
    assert _videos(lake) == got


@pytest.mark.slow
def test_import_worker_killed_is_retried_without_duplicates(cluster, tmp_path: Path,
                                                            clips) -> None:
    from vidprom_lake.engine import get_engine
    from vidprom_lake.video import import_videos

    lake, uuids = lake_with_prompts(tmp_path, n=48)
    shards = _shards(tmp_path / "in", uuids, clips)  # 8 shards
    eng = get_engine("ray", workers=2, max_restarts=2, max_task_retries=2)
    killed: list[int] = []
    progress = kill_one_worker_once(eng, killed)  # after the first committed shard

    try:
        rep = import_videos(lake, shards, engine=eng, verify="full", progress=progress)
    finally:
        eng.shutdown()
    assert killed
    assert rep.imported == 48 and rep.chunks == 8 and not rep.rejected
    assert rep.retries >= 1  # a restarted worker (a new process) answered
    assert len(_videos(lake)) == 48
    _check_bytes(lake, clips)
    info = open_lake(lake.uri).batch_info(rep.batch_id)
    assert info.status == "committed" and info.counts["rows_added"] == 48


@pytest.mark.slow
def test_import_worker_failure_stops_on_whole_chunks_and_rerun_completes(
        cluster, tmp_path: Path, clips) -> None:
    from vidprom_lake.engine import get_engine
    from vidprom_lake.engine.ray_engine import WorkerFailed
    from vidprom_lake.video import import_videos

    lake, uuids = lake_with_prompts(tmp_path, n=36)
    shards = _shards(tmp_path / "in", uuids, clips)  # 6 shards
    eng = get_engine("ray", workers=1, max_restarts=0, max_task_retries=0)
    progress = kill_all_workers(eng)

    try:
        with pytest.raises(WorkerFailed, match="rerun"):
            import_videos(lake, shards, engine=eng, verify="full", progress=progress)
    finally:
        eng.shutdown()
    landed = _videos(lake)
    assert 0 < len(landed) < 36 and len(landed) % SHARD == 0  # whole shards only
    failed = open_lake(lake.uri).log()[-1]
    assert failed.status == "failed" and "Ray worker died" in (failed.message or "")
    # files the dead worker wrote were never committed: nothing half-visible
    rep = import_videos(open_lake(lake.uri), shards)  # the rerun (local engine)
    assert rep.imported == 36 - len(landed) and rep.already_in_lake == len(landed)
    assert len(_videos(lake)) == 36
    _check_bytes(lake, clips)


@pytest.mark.slow
@pytest.mark.s3
def test_ray_import_from_s3_into_s3_lake(cluster, s3_bucket, s3_client, tmp_path: Path,
                                         clips) -> None:
    """Shards and loose mp4s under s3://bucket/in/, the lake at s3://bucket/lake."""
    uri = f"s3://{s3_bucket}/lake"
    lake = create_lake(uri)
    lake.ingest(str(synth.write_vidprom_csv(tmp_path / "p.csv", 20, seed=4)))
    uuids = [r["uuid"] for r in synth.rows(20, seed=4)]
    for path in _shards(tmp_path / "in", uuids[:12], clips, model="vc2"):
        s3_client.upload_file(path, s3_bucket, f"in/shards/{Path(path).name}")
    for i, u in enumerate(uuids[12:18]):
        s3_client.put_object(Bucket=s3_bucket, Key=f"in/loose/vc2-{u}.mp4",
                             Body=clips[i % len(clips)])
    res = CliRunner().invoke(main, ["--lake", uri, "import-videos", f"s3://{s3_bucket}/in/",
                                    "--engine", "ray", "--workers", "2", "--chunk", "4",
                                    "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["imported"] == 18 and rep["rejected"] == 0 and rep["chunks"] == 2 + 2
    lk = open_lake(uri)
    assert lk.batch_info(rep["batch_id"]).status == "committed"
    _check_bytes(lk, clips)
    row = lk.query("select source from videos where video_id = "
                   f"'vc2-{uuids[13]}'").to_pylist()[0]
    assert row["source"] == f"s3://{s3_bucket}/in:loose/vc2-{uuids[13]}.mp4"


@pytest.mark.s3
def test_local_import_reads_s3_inputs(s3_bucket, s3_client, tmp_path: Path, clips) -> None:
    """The local engine reads s3:// shards and prefixes too (lake on local disk)."""
    from vidprom_lake.errors import InputError
    from vidprom_lake.video import import_videos

    lake, uuids = lake_with_prompts(tmp_path, n=12)
    shard = _shards(tmp_path / "in", uuids[:6], clips)[0]
    s3_client.upload_file(shard, s3_bucket, "v/pika_1.tar")
    for i, u in enumerate(uuids[6:9]):
        s3_client.put_object(Bucket=s3_bucket, Key=f"v/mp4/pika-{u}.mp4", Body=clips[i])
    rep = import_videos(lake, [f"s3://{s3_bucket}/v/pika_1.tar", f"s3://{s3_bucket}/v/mp4"])
    assert rep.imported == 9 and not rep.rejected
    _check_bytes(lake, clips)
    with pytest.raises(InputError, match=f"s3://{s3_bucket}/nothing/: no such object"):
        import_videos(lake, [f"s3://{s3_bucket}/nothing/"])


@pytest.mark.slow
def test_import_source_on_ray_equals_local(cluster, tmp_path: Path) -> None:
    """`import-videos --source openvid --engine ray`: a zip, a split zip and a folder of clips
    named by clip id are matched to the seed rows on the workers (the source's clip ids
    shipped once as sorted arrays) and land exactly the rows the local engine lands."""
    from seed_fixtures import OPENVID_ROWS, split_file, write_openvid, write_zip

    names = [r[0] for r in OPENVID_ROWS]
    clip = {n: make_mp4(n=4, w=32, h=32, seed=i) for i, n in enumerate(names)}
    z0 = write_zip(tmp_path / "OpenVid_part0.zip",
                   {f"OpenVid_part0/{names[0]}": clip[names[0]],
                    "OpenVid_part0/not-in-csv_1_0to9.mp4": make_mp4(n=4, w=32, h=32, seed=9),
                    "README.txt": b"hello"})
    parts = split_file(write_zip(tmp_path / "OpenVid_part73.zip",
                                 {n: clip[n] for n in names[1:3]}), 3)
    folder = tmp_path / "loose"
    folder.mkdir()
    (folder / names[3]).write_bytes(clip[names[3]])
    csv = write_openvid(tmp_path / "OpenVid-1M.csv")
    args = ["import-videos", str(z0), *map(str, parts), str(folder), "--source", "openvid",
            "--format", "json"]
    reps, lakes = [], []
    for name, extra in (("ray", ["--engine", "ray", "--workers", "2"]), ("local", [])):
        lake = create_lake(tmp_path / name)
        lake.ingest(csv, format="openvid")
        res = CliRunner().invoke(main, ["--lake", lake.uri, *args, *extra])
        assert res.exit_code == 0, res.output
        reps.append(json.loads(res.stdout)[0])
        lakes.append(lake)
    ray_rep, local_rep = reps
    assert ray_rep["engine"] == "ray" and ray_rep["source"] == "openvid"
    for k in ("imported", "rows_without_videos", "rejected_by_reason"):
        assert ray_rep[k] == local_rep[k], k
    assert ray_rep["imported"] == 4 and ray_rep["rows_without_videos"] == 0
    assert ray_rep["rejected_by_reason"] == {"unmapped": 1, "not-video": 1}
    assert _videos(lakes[0]) == _videos(lakes[1]) and len(_videos(lakes[0])) == 4
    # a rerun on Ray finds them all in the lake
    res = CliRunner().invoke(main, ["--lake", lakes[0].uri, *args, "--engine", "ray",
                                    "--workers", "2"])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)[0]
    assert again["imported"] == 0 and again["already_in_lake"] == 4


# ---------------------------------------------------------------------- generate
SMALL = ["--frames", "4", "--steps", "2", "--height", "32", "--width", "32"]


@pytest.fixture(scope="module")
def tiny_ms(tmp_path_factory) -> Path:
    return tiny_modelscope(tmp_path_factory.mktemp("weights") / "tiny-ms")


@pytest.mark.slow
def test_cli_generate_on_ray_equals_local(cluster, tmp_path: Path, tiny_ms) -> None:
    import torch

    lake, _ = lake_with_prompts(tmp_path, n=12)
    args = ["generate", "--model", "modelscope", "--checkpoint", str(tiny_ms), "--limit", "5",
            *SMALL, "--seed", "7", "--batch-size", "2", "--chunk", "2", "--format", "json"]
    res = CliRunner().invoke(main, ["--lake", lake.uri, *args, "--engine", "ray",
                                    "--workers", "2"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["generated"] == 5 and rep["chunks"] == 3 and rep["engine"] == "ray"
    assert rep["pipeline"] == "TextToVideoSDPipeline"
    info = open_lake(lake.uri).batch_info(rep["batch_id"])
    assert info.status == "committed" and info.provenance["engine"]["workers"] == 2
    got = _videos(lake)
    assert len(got) == 5

    # the local engine makes the same videos (each video's seed is its own), byte for byte
    local, _ = lake_with_prompts(tmp_path / "local", n=12)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each actor
    try:
        res = CliRunner().invoke(main, ["--lake", local.uri, *args])
    finally:
        torch.set_num_threads(before)
    assert res.exit_code == 0, res.output
    assert _videos(local) == got

    res = CliRunner().invoke(main, ["--lake", lake.uri, *args, "--engine", "ray",
                                    "--workers", "2"])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)[0]
    assert again["generated"] == 0 and again["already_in_lake"] == 5


@pytest.mark.slow
def test_generate_worker_killed_is_retried_without_duplicates(cluster, tmp_path: Path,
                                                              tiny_ms) -> None:
    from vidprom_lake.engine import get_engine
    from vidprom_lake.video import generate

    lake, _ = lake_with_prompts(tmp_path, n=12)
    eng = get_engine("ray", workers=2, max_restarts=2, max_task_retries=2)
    killed: list[int] = []
    progress = kill_one_worker_once(eng, killed)

    try:
        rep = generate(lake, "modelscope", checkpoint=str(tiny_ms), limit=8, frames=4, steps=2,
                       height=32, width=32, chunk=1, engine=eng, progress=progress)
    finally:
        eng.shutdown()
    assert killed and rep.generated == 8 and rep.chunks == 8 and rep.retries >= 1
    assert len(_videos(lake)) == 8
    info = open_lake(lake.uri).batch_info(rep.batch_id)
    assert info.status == "committed" and info.counts["rows_added"] == 8


@pytest.mark.slow
def test_generate_worker_failure_stops_on_whole_chunks_and_rerun_completes(
        cluster, tmp_path: Path, tiny_ms) -> None:
    from vidprom_lake.engine import get_engine
    from vidprom_lake.engine.ray_engine import WorkerFailed
    from vidprom_lake.video import generate

    lake, _ = lake_with_prompts(tmp_path, n=12)
    opts = {"checkpoint": str(tiny_ms), "limit": 6, "frames": 4, "steps": 2, "height": 32,
            "width": 32, "chunk": 2}
    eng = get_engine("ray", workers=1, max_restarts=0, max_task_retries=0)
    progress = kill_all_workers(eng)

    try:
        with pytest.raises(WorkerFailed, match="rerun"):
            generate(lake, "modelscope", engine=eng, progress=progress, **opts)
    finally:
        eng.shutdown()
    landed = _videos(lake)
    assert 0 < len(landed) < 6 and len(landed) % 2 == 0  # whole chunks only
    assert open_lake(lake.uri).log()[-1].status == "failed"
    rep = generate(open_lake(lake.uri), "modelscope", **opts)  # the rerun, local engine
    assert rep.generated == 6 - len(landed) and rep.already_in_lake == len(landed)
    assert len(_videos(lake)) == 6


def test_pieces_a_shard_each_loose_files_by_chunk(tmp_path: Path, clips) -> None:
    from vidprom_lake.video.ray_import import piece_members, plan_pieces

    uuids = [r["uuid"] for r in synth.rows(20, seed=2)]
    shards = _shards(tmp_path / "in", uuids[:12], clips)  # 2 shards
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    for i, u in enumerate(uuids[12:19]):
        (folder / ("sub" if i % 2 else "") / f"pika-{u}.mp4").write_bytes(clips[0])
    write_tar(folder / "inner.tar", {f"pika-{uuids[19]}.mp4": clips[1]})
    pieces = plan_pieces([*shards, str(folder)], chunk=3)
    kinds = [(p.kind, len(p.names)) for p in pieces]
    assert kinds == [("paths", 1), ("paths", 1), ("entries", 1), ("entries", 3),
                     ("entries", 3), ("entries", 1)]
    names = [m.name for p in pieces for m in piece_members(p)]
    assert len(names) == 20 and len(set(names)) == 20
