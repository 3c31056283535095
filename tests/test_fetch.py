"""`vidlake fetch`: a local Hub stand-in (tests/hub_fixtures.py) serves a small VidProM-shaped
dataset; huggingface_hub talks to it through HF_ENDPOINT. Nothing reaches the internet."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hub_fixtures import HubRepo, HubServer, HubState, make_file
from video_fixtures import make_mp4, write_tar

from vidprom_lake import create_lake, synth

pytest.importorskip("huggingface_hub")
av = pytest.importorskip("av")

REPO = "WenhaoWang/VidProM"
N = 12


@pytest.fixture(scope="module")
def repo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("hubdata")
    csv_path = synth.write_vidprom_csv(d / "VidProM_unique.csv", N, seed=3)
    uuids = [r["uuid"] for r in synth.rows(N, 3)]
    h5 = synth.write_embeddings_hdf5(d / "e.hdf5", uuids, 8, seed=1)
    ex_csv = synth.write_vidprom_csv(d / "ex.csv", 4, seed=3)
    ex_uuids = [r["uuid"] for r in synth.rows(4, 3)]
    ex_h5 = synth.write_embeddings_hdf5(d / "ex.hdf5", ex_uuids, 8, seed=2)
    clips = [make_mp4(n=4, w=32, h=32, seed=i) for i in range(3)]
    files: dict[str, bytes] = {
        "README.md": b"---\nlicense: cc-by-nc-4.0\n---\n# VidProM\n",
        "VidProM_unique.csv": csv_path.read_bytes(),
        "VidProM_embed.hdf5": h5.read_bytes(),
        "example/VidProM_unique_example.csv": ex_csv.read_bytes(),
        "example/VidProM_embed_example.hdf5": ex_h5.read_bytes(),
    }
    for s in range(3):
        members = {f"ms-{uuids[2 * s + k]}.mp4": clips[(s + k) % 3] for k in range(2)}
        files[f"ms_videos/ms_videos_{s + 1}.tar"] = write_tar(d / f"ms{s}.tar", members).read_bytes()
    files["pika_videos/pika_videos_1.tar"] = write_tar(
        d / "pika.tar", {f"pika-{uuids[0]}.mp4": clips[0]}).read_bytes()
    files["example/ms_videos_example.tar"] = write_tar(
        d / "msex.tar", {f"ms-{ex_uuids[1]}.mp4": clips[1]}).read_bytes()
    return files


@pytest.fixture
def hub(repo_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import huggingface_hub.constants as c

    state = HubState(repos={REPO: HubRepo({p: make_file(b) for p, b in repo_files.items()})})
    with HubServer(state) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("VIDLAKE_DOWNLOADS", str(tmp_path / "downloads"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server


@pytest.fixture
def lake(tmp_path: Path):
    return create_lake(tmp_path / "lake")


def _dl(tmp_path: Path) -> Path:
    return tmp_path / "downloads" / "WenhaoWang--VidProM"


def test_plan_lists_real_files_without_downloading(hub, lake, repo_files):
    from vidprom_lake.fetch import plan

    fp = plan("vidprom", lake, embeddings=True, videos="ms", shards="1-2")
    assert [i.path for i in fp.items] == ["VidProM_unique.csv", "VidProM_embed.hdf5",
                                         "ms_videos/ms_videos_1.tar", "ms_videos/ms_videos_2.tar"]
    for it in fp.items:
        assert it.size == len(repo_files[it.path])
        assert it.status == "download"
    assert fp.items[2].sha256 == make_file(repo_files["ms_videos/ms_videos_1.tar"]).sha256
    assert fp.to_download == sum(i.size for i in fp.items)
    assert fp.disk and fp.disk_ok()
    assert not hub.gets("/resolve/") and not hub.gets("/cdn/")  # listed, nothing downloaded
    assert hub.gets("/api/datasets/WenhaoWang/VidProM/tree/")


def test_fetch_prompts_then_rerun_imports_nothing(hub, lake, tmp_path):
    from vidprom_lake.fetch import fetch

    rep = fetch(lake, "vidprom")
    assert [(x.path, x.status, x.rows_added) for x in rep.landed] == [
        ("VidProM_unique.csv", "imported", N)]
    assert lake.query("select count(*) as n from prompts").column("n")[0].as_py() == N
    assert not (_dl(tmp_path) / "VidProM_unique.csv").exists()  # not kept by default
    log = {b.kind: b for b in lake.log()}
    assert log["fetch"].source == f"hf://datasets/{REPO}/VidProM_unique.csv"
    assert log["fetch"].params["import_batch"] == rep.landed[0].batch_id
    n_get = len(hub.gets("/cdn/"))
    again = fetch(lake, "vidprom")
    assert [(x.status, x.fetch_batch) for x in again.landed] == [("skipped", log["fetch"].batch_id)]
    assert len(hub.gets("/cdn/")) == n_get  # not downloaded again
    assert lake.query("select count(*) as n from prompts").column("n")[0].as_py() == N


def test_videos_shards_embeddings_keep_downloads(hub, lake, tmp_path):
    from vidprom_lake.fetch import fetch

    rep = fetch(lake, "vidprom", embeddings=True, videos="modelscope", shards="1,3",
                keep_downloads=True)
    assert [(x.path, x.status) for x in rep.landed] == [
        ("VidProM_unique.csv", "imported"), ("VidProM_embed.hdf5", "imported"),
        ("ms_videos/ms_videos_1.tar", "imported"), ("ms_videos/ms_videos_3.tar", "imported")]
    assert [x.rows_added for x in rep.landed[2:]] == [2, 2]
    q = lake.query("select model, count(*) as n from videos group by model").to_pylist()
    assert q == [{"model": "ms", "n": 4}]
    emb = lake.to_polars("prompts", vectors=True).select("embedding").collect()
    assert emb["embedding"].null_count() == 0
    assert (_dl(tmp_path) / "ms_videos" / "ms_videos_3.tar").exists()  # --keep-downloads
    # a second run with shard 2 added downloads only shard 2; kept files count as landed
    rep2 = fetch(lake, "vidprom", videos="ms", shards="1-3")
    assert [(x.path, x.status) for x in rep2.landed] == [
        ("VidProM_unique.csv", "skipped"), ("ms_videos/ms_videos_1.tar", "skipped"),
        ("ms_videos/ms_videos_3.tar", "skipped"), ("ms_videos/ms_videos_2.tar", "imported")]
    assert lake.query("select count(*) as n from videos").column("n")[0].as_py() == 6


def test_resume_after_dropped_connection(hub, lake, repo_files, monkeypatch):
    import huggingface_hub.constants as c

    from vidprom_lake.fetch import fetch

    # huggingface_hub writes whole chunks of DOWNLOAD_CHUNK_SIZE (10 MB); small ones here
    monkeypatch.setattr(c, "DOWNLOAD_CHUNK_SIZE", 256)
    size = len(repo_files["VidProM_unique.csv"])
    hub.state.drop_after["VidProM_unique.csv"] = size // 3
    rep = fetch(lake, "vidprom")
    assert rep.landed[0].rows_added == N
    gets = hub.gets("/cdn/")
    assert len(gets) == 2 and gets[0]["range"] is None
    start = int(gets[1]["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= size // 3 and start % 256 == 0  # resumed, not restarted
    assert rep.landed[0].bytes_downloaded == size


def test_resume_partial_file_from_an_interrupted_run(hub, lake, repo_files, tmp_path):
    from vidprom_lake.fetch import fetch, plan

    data = repo_files["ms_videos/ms_videos_2.tar"]
    part = _dl(tmp_path) / "ms_videos" / "ms_videos_2.tar.incomplete"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    fp = plan("vidprom", lake, videos="ms", shards="2")
    assert fp.items[1].status == "resume" and fp.to_download == fp.items[0].size + len(data) - 1000
    rep = fetch(lake, "vidprom", videos="ms", shards="2")
    assert rep.landed[1].rows_added == 2 and rep.landed[1].bytes_downloaded == len(data) - 1000
    assert [g["range"] for g in hub.gets("/cdn/") if "ms_videos_2" in g["path"]] == ["bytes=1000-"]
    assert not part.exists()


def test_corrupt_file_is_an_error_and_nothing_is_imported(hub, lake, tmp_path):
    from vidprom_lake.fetch import FetchError, fetch

    hub.state.corrupt.add("ms_videos/ms_videos_1.tar")
    with pytest.raises(FetchError, match=r"ms_videos/ms_videos_1\.tar: sha256 mismatch"):
        fetch(lake, "vidprom", videos="ms", shards="1")
    assert lake.query("select count(*) as n from videos").column("n")[0].as_py() == 0
    assert not list((_dl(tmp_path) / "ms_videos").glob("ms_videos_1.tar*"))  # removed
    hub.state.corrupt.clear()
    rep = fetch(lake, "vidprom", videos="ms", shards="1")  # the prompts landed before: skipped
    assert [(x.path, x.status) for x in rep.landed] == [
        ("VidProM_unique.csv", "skipped"), ("ms_videos/ms_videos_1.tar", "imported")]


def test_corrupt_small_file_fails_on_its_git_hash(hub, lake, repo_files):
    from hub_fixtures import make_file

    from vidprom_lake.fetch import FetchError, fetch

    hub.state.repos[REPO].files["example/VidProM_unique_example.csv"] = make_file(
        repo_files["example/VidProM_unique_example.csv"], lfs=False)
    hub.state.corrupt.add("example/VidProM_unique_example.csv")
    with pytest.raises(FetchError, match="git blob hash mismatch"):
        fetch(lake, "vidprom", example=True)
    assert lake.query("select count(*) as n from prompts").column("n")[0].as_py() == 0


def test_missing_shard(hub, lake):
    from vidprom_lake.fetch import FetchError, fetch, plan

    with pytest.raises(FetchError, match=r"ms_videos/ms_videos_7\.tar not in WenhaoWang/VidProM.*"
                                         r"ms has shards 1-3"):
        plan("vidprom", lake, videos="ms", shards="2,7")
    with pytest.raises(FetchError, match=r"no video shards of model 'vc2'.*it has: ms, pika"):
        plan("vidprom", lake, videos="vc2")
    hub.state.missing.add("ms_videos/ms_videos_2.tar")  # listed, but the download 404s
    with pytest.raises(FetchError, match=r"ms_videos/ms_videos_2\.tar: the Hub has no such file"):
        fetch(lake, "vidprom", videos="ms", shards="1-2")
    # what landed before the missing shard stays landed
    assert lake.query("select count(*) as n from videos").column("n")[0].as_py() == 2


def test_gated_dataset_401_and_403(hub, lake, monkeypatch):
    from vidprom_lake.fetch import FetchError, fetch

    hub.state.repos[REPO].gated = "manual"
    with pytest.raises(FetchError, match=r"is gated: accept its licence.*/datasets/WenhaoWang/"
                                         r"VidProM.*HF_TOKEN is not set.*Please log in"):
        fetch(lake, "vidprom")
    monkeypatch.setenv("HF_TOKEN", "hf_notaccepted")
    with pytest.raises(FetchError, match=r"HF_TOKEN is set.*not in the authorized list"):
        fetch(lake, "vidprom")
    hub.state.tokens.add("hf_accepted")
    monkeypatch.setenv("HF_TOKEN", "hf_accepted")
    rep = fetch(lake, "vidprom")
    assert rep.landed[0].rows_added == N
    assert all(r["auth"] == "Bearer hf_accepted" for r in hub.gets("/resolve/"))


def test_offline_mode_uses_what_is_local(hub, lake, tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    from vidprom_lake.fetch import FetchError, fetch, plan

    plan("vidprom", lake, videos="ms", shards="1")  # online: the listing is saved
    part = _dl(tmp_path)
    (part / "VidProM_unique.csv").write_bytes(
        hub.state.repos[REPO].files["VidProM_unique.csv"].data)  # a file already downloaded
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    n_req = len(hub.state.requests)
    fp = plan("vidprom", lake, videos="ms", shards="1")
    assert fp.offline and [i.status for i in fp.items] == ["local", "download"]
    with pytest.raises(FetchError, match=r"ms_videos/ms_videos_1\.tar is not downloaded yet and "
                                         r"HF_HUB_OFFLINE is set"):
        fetch(lake, "vidprom", videos="ms", shards="1")
    rep = fetch(lake, "vidprom")  # the prompts alone are local: they land
    assert rep.landed[0].rows_added == N
    assert not (part / "VidProM_unique.csv").exists()  # a download of ours: removed once imported
    assert len(hub.state.requests) == n_req  # nothing went to the server
    monkeypatch.setenv("VIDLAKE_DOWNLOADS", str(tmp_path / "elsewhere"))
    with pytest.raises(FetchError, match="no earlier listing"):
        plan("vidprom", lake)


def test_hub_cache_file_is_used_not_downloaded(hub, lake):
    from huggingface_hub import hf_hub_download

    from vidprom_lake.fetch import fetch, plan

    hf_hub_download(REPO, "VidProM_unique.csv", repo_type="dataset",
                    endpoint=os.environ["HF_ENDPOINT"], cache_dir=os.environ["HF_HUB_CACHE"])  # a file the user got earlier
    n_get = len(hub.gets("/cdn/"))
    assert plan("vidprom", lake).items[0].status == "local"
    rep = fetch(lake, "vidprom")
    assert rep.landed[0].rows_added == N and len(hub.gets("/cdn/")) == n_get


def test_not_enough_disk(hub, lake, monkeypatch):
    import shutil

    from vidprom_lake import fetch as f

    real = shutil.disk_usage
    monkeypatch.setattr(f.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=100))
    with pytest.raises(f.FetchError, match=r"not enough free disk: .* has 100 B free, needs"):
        f.fetch(lake, "vidprom")
    assert not hub.gets("/cdn/")


def test_listing_is_paginated_like_the_hub(hub, lake):
    from vidprom_lake.fetch import plan

    hub.state.page_size = 3
    fp = plan("vidprom", lake, videos="ms")
    assert [i.path for i in fp.items][1:] == [f"ms_videos/ms_videos_{n}.tar" for n in (1, 2, 3)]
    assert len(hub.gets("/tree/")) > 3


def test_example_and_metadata_datasets(hub, lake, tmp_path):
    from vidprom_lake.fetch import fetch

    rep = fetch(lake, "vidprom", example=True, videos="ms")
    assert [(x.path, x.rows_added, x.rows_updated) for x in rep.landed] == [
        ("example/VidProM_unique_example.csv", 4, 0),
        ("example/VidProM_embed_example.hdf5", 0, 4), ("example/ms_videos_example.tar", 1, 0)]


def test_openvid_metadata_only(hub, lake):
    from vidprom_lake.fetch import FetchError, fetch

    csv = (b"video,caption,aesthetic score,motion score,temporal consistency score,"
           b"camera motion,frame,fps,seconds\n"
           b"a_1.mp4,A dog runs.,5.1,3.2,0.98,static,120,24.0,5.0\n"
           b"b_2.mp4,A cat sleeps.,4.9,0.5,0.99,pan_left,96,24.0,4.0\n")
    hub.state.repos["nkp37/OpenVid-1M"] = HubRepo(
        {"data/train/OpenVid-1M.csv": make_file(csv), "data/train/OpenVidHD.csv": make_file(csv),
         "OpenVid_part0.zip": make_file(b"PK" + b"\0" * 2000)}, license="cc-by-4.0")
    rep = fetch(lake, "openvid", metadata_only=True)
    assert [(x.path, x.rows_added) for x in rep.landed] == [("data/train/OpenVid-1M.csv", 2)]
    assert lake.query("select count(*) as n from prompts where source = 'openvid'"
                      ).column("n")[0].as_py() == 2
    with pytest.raises(FetchError, match="dataset Fudan-FUXI/VIDGEN-1M not found"):
        fetch(lake, "vidgen", metadata_only=True)


def test_cli_plan_and_fetch(hub, tmp_path):
    from click.testing import CliRunner

    from vidprom_lake.cli import main

    lake_dir = str(tmp_path / "lake2")
    r = CliRunner().invoke(main, ["--lake", lake_dir, "fetch", "vidprom", "--videos", "ms",
                                  "--shards", "1-2", "--plan", "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["path"] for x in rows] == ["VidProM_unique.csv", "ms_videos/ms_videos_1.tar",
                                        "ms_videos/ms_videos_2.tar"]
    assert not Path(lake_dir).exists() and not hub.gets("/cdn/")
    r = CliRunner().invoke(main, ["--lake", lake_dir, "fetch", "vidprom", "--videos", "ms",
                                  "--shards", "1"])
    assert r.exit_code == 0, r.output
    assert "landed 2 file(s)" in r.stderr and f"{N + 2} rows/videos added" in r.stderr
    r = CliRunner().invoke(main, ["--lake", lake_dir, "fetch", "vidprom", "--videos", "ms",
                                  "--shards", "1", "--format", "json"])
    assert [(x["path"], x["status"]) for x in json.loads(r.stdout)] == [
        ("VidProM_unique.csv", "skipped"), ("ms_videos/ms_videos_1.tar", "skipped")]
    # import options reach the shard import: no thumbnails, the index check
    r = CliRunner().invoke(main, ["--lake", lake_dir, "fetch", "vidprom", "--videos", "ms",
                                  "--shards", "2", "--verify", "index", "--no-thumbnails"])
    assert r.exit_code == 0, r.output
    from vidprom_lake import open_lake

    got = open_lake(lake_dir).query("select has_thumbnail, count(*) as n from videos "
                                    "group by has_thumbnail order by has_thumbnail").to_pylist()
    assert got == [{"has_thumbnail": False, "n": 2}, {"has_thumbnail": True, "n": 2}]
    imports = [b for b in open_lake(lake_dir).log() if b.kind == "import"]
    assert imports[-1].params["verify"] == "index"
    r = CliRunner().invoke(main, ["--lake", lake_dir, "fetch", "vidprom", "--shards", "1-2"])
    assert r.exit_code == 1 and "--shards needs --videos MODEL" in r.output
    hub.state.repos[REPO].gated = "auto"
    r = CliRunner().invoke(main, ["--lake", lake_dir, "fetch", "vidprom"])
    assert r.exit_code == 1 and "is gated: accept its licence" in r.output


def test_file_ingested_by_hand_counts_as_landed(hub, lake, repo_files, tmp_path):
    from vidprom_lake.fetch import fetch

    own = tmp_path / "VidProM_unique.csv"
    own.write_bytes(repo_files["VidProM_unique.csv"])
    bid = lake.ingest(own).batch_id
    rep = fetch(lake, "vidprom")
    assert [(x.status, x.fetch_batch) for x in rep.landed] == [("skipped", bid)]
    assert not hub.gets("/cdn/")


def test_a_listing_with_unsafe_paths_is_refused(hub, lake, tmp_path):
    """A download lands at <download dir>/<repo>/<path>: a listing (from a Hub mirror named
    by HF_ENDPOINT) with '..' or absolute paths is refused before anything is downloaded."""
    from vidprom_lake.fetch import FetchError, fetch

    hub.state.repos[REPO].files["../../evil.csv"] = make_file(b"uuid,prompt\n")
    with pytest.raises(FetchError, match=r"unsafe path.*'\.\./\.\./evil\.csv' \(parent dir"):
        fetch(lake, "vidprom", files=["*.csv"])
    assert not list(tmp_path.rglob("evil.csv"))
    assert lake.count() == 0
