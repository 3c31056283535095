"""`vidlake export`: every format re-read and checked against the lake."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tarfile

import pyarrow.parquet as pq
import pytest
from test_analysis import VIDEOS, VIDPROM, build_known_lake, uid


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return build_known_lake(tmp_path_factory.mktemp("known-export"))


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _lake_sha(lake) -> dict[str, str]:
    return {r["video_id"]: r["sha256"] for r in lake.query("SELECT video_id, sha256 FROM videos").to_pylist()}


def test_parquet_where_and_no_blobs(known, tmp_path):
    from vidprom_lake.export import export

    out = tmp_path / "train.parquet"
    r = export(known, out, "parquet", where="unique_semantic and toxicity < 0.5")
    t = pq.read_table(out)
    assert r.rows == t.num_rows == 1
    assert t.column("prompt").to_pylist() == ["red cat dancing in the rain"]
    assert "embedding" not in t.column_names and "video" not in t.column_names
    assert set(known.query("SELECT * FROM prompts LIMIT 0").column_names) == set(t.column_names)
    # every prompt, and with vectors
    r = export(known, tmp_path / "all.parquet", "parquet", vectors=True)
    t = pq.read_table(tmp_path / "all.parquet")
    assert r.rows == 9 and "embedding" in t.column_names
    assert sum(v is not None for v in t.column("embedding").to_pylist()) == 7


def test_refuses_to_overwrite_without_force(known, tmp_path):
    from vidprom_lake.errors import VidlakeError
    from vidprom_lake.export import export

    out = tmp_path / "x.parquet"
    out.write_bytes(b"keep")
    with pytest.raises(VidlakeError, match="exists; pass --force"):
        export(known, out, "parquet")
    assert out.read_bytes() == b"keep"
    export(known, out, "parquet", force=True, limit=2)
    assert pq.read_table(out).num_rows == 2
    # a folder that is not an earlier export is never replaced, even with force
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("precious")
    with pytest.raises(VidlakeError, match="not a VidLake export"):
        export(known, d, "mp4-dir", force=True)
    assert (d / "thesis.tex").read_text() == "precious"
    # an earlier export is replaced with force, and only with force
    e = tmp_path / "clips"
    export(known, e, "mp4-dir", limit=1)
    with pytest.raises(VidlakeError, match="exists"):
        export(known, e, "mp4-dir")
    export(known, e, "mp4-dir", force=True)
    assert len(list((e / "videos").iterdir())) == 7
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_bad_where_is_a_clear_error_and_leaves_nothing(known, tmp_path):
    from vidprom_lake.errors import QueryError
    from vidprom_lake.export import export

    with pytest.raises(QueryError, match="no_such_column"):
        export(known, tmp_path / "a.parquet", "parquet", where="no_such_column > 1")
    with pytest.raises(QueryError, match="cannot parse --where"):
        export(known, tmp_path / "b.parquet", "parquet", where="1=1; DROP TABLE x")
    with pytest.raises(QueryError):
        export(known, tmp_path / "c", "webdataset", where="nope = 1")
    assert list(tmp_path.iterdir()) == []


def test_webdataset_shards(known, tmp_path):
    from vidprom_lake.export import export

    out = tmp_path / "shards"
    r = export(known, out, "webdataset", shard_size=3)
    assert r.rows == 7
    shards = sorted(out.glob("shard-*.tar"))
    assert [s.name for s in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    sha = _lake_sha(known)
    seen = {}
    for s in shards:
        with tarfile.open(s) as tf:
            names = tf.getnames()
            assert all("/" not in n for n in names)
            for m in tf.getmembers():
                key, ext = m.name.split(".", 1)
                data = tf.extractfile(m).read()
                seen.setdefault(key, {})[ext] = data
    assert len(seen) == 7
    for key, parts in seen.items():
        meta = json.loads(parts["json"])
        assert meta["video_id"] == key and _sha(parts["mp4"]) == sha[key]
        assert meta["caption"] and meta["uuid"] in key
    # the clip decodes
    import av

    mp4 = next(iter(seen.values()))["mp4"]
    with av.open(io.BytesIO(mp4)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6
    r = export(known, tmp_path / "ms", "webdataset", where="model = 'ms'")
    assert r.rows == 3


def test_mp4_dir_with_captions(known, tmp_path):
    from vidprom_lake.export import export

    out = tmp_path / "clips"
    r = export(known, out, "mp4-dir", where="model = 'pika'")
    assert r.rows == 2
    with open(out / "captions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["caption"] for r in rows} == {VIDPROM[0][0], VIDPROM[2][0]}
    sha = _lake_sha(known)
    for row in rows:
        p = out / row["path"]
        assert p.is_file() and p.parent == out / "videos"
        assert _sha(p.read_bytes()) == sha[p.stem]
    meta = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert {m["model"] for m in meta} == {"pika"}
    r = export(known, tmp_path / "lim", "mp4-dir", limit=3)
    assert r.rows == 3 and len(list((tmp_path / "lim" / "videos").iterdir())) == 3


def test_hf_datasets_folder(known, tmp_path):
    datasets = pytest.importorskip("datasets", reason="hf export needs the 'datasets' package")
    from vidprom_lake.export import export

    out = tmp_path / "hf"
    r = export(known, out, "hf", where="source = 'vidprom'")
    ds = datasets.load_from_disk(str(out))
    assert r.rows == len(ds) == 6
    assert sorted(ds["prompt"]) == sorted(p for p, _, _ in VIDPROM)
    assert "uuid" in ds.column_names and "toxicity" in ds.column_names
    row = ds.filter(lambda x: x["prompt"] == "a red cat")[0]
    assert row["uuid"] == uid("a red cat") and row["toxicity"] == pytest.approx(0.27)


def test_paths_cannot_escape(tmp_path):
    from vidprom_lake.errors import InputError
    from vidprom_lake.export import inside, safe_key

    assert safe_key("ms-1234") == "ms-1234"  # a safe name keeps its stem
    assert re.fullmatch(r"etc_passwd-[0-9a-f]{8}", safe_key("../../etc/passwd"))
    assert re.fullmatch(r"ms-1234_mp4-[0-9a-f]{8}", safe_key("ms-1234.mp4"))
    assert re.fullmatch(r"a_b_c-[0-9a-f]{8}", safe_key("a/b\\c"))
    with pytest.raises(InputError):
        safe_key("../..")
    assert safe_key("wan2.1+x-1234", dots=True) == "wan2.1+x-1234"  # export-videos file names
    assert re.fullmatch(r"evil-1234-[0-9a-f]{8}", safe_key("../../evil-1234", dots=True))
    assert re.fullmatch(r"org_model_v2-1234-[0-9a-f]{8}", safe_key("org/model:v2-1234", dots=True))
    # names that clean to the same stem still get one file each; long names are cut, tagged
    names = ["a/b-1234", "a:b-1234", "a_b-1234", "a b-1234", "x" * 300, "x" * 301]
    for dots in (False, True):
        keys = [safe_key(n, dots=dots) for n in names]
        assert len(set(keys)) == len(names) and all(len(k) <= 200 for k in keys), keys
        assert keys[2] == "a_b-1234"
    with pytest.raises(InputError):
        safe_key("../..", dots=True)
    with pytest.raises(InputError, match="outside"):
        inside(tmp_path, "../x")
    with pytest.raises(InputError, match="outside"):
        inside(tmp_path, "/etc/passwd")
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(InputError, match="outside"):
        inside(tmp_path, "link/x")


def test_hostile_model_names_stay_inside(tmp_path):
    """A model name with path pieces in it still lands inside the target folder."""
    import pyarrow as pa

    from vidprom_lake.export import export

    lake = build_known_lake(tmp_path / "l", embeddings=False)
    vid = f"ms-{uid(VIDPROM[1][0])}"
    with lake.batch("rename") as b:
        b.update_columns("videos", pa.table({"video_id": [vid], "model": ["../../evil"]}), on="video_id")
    out = tmp_path / "out"
    export(lake, out, "mp4-dir")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4"))
    assert len(files) == sum(len(m) for m in VIDEOS.values())
    assert all(f.startswith("videos/") for f in files)
    assert not (tmp_path / "evil").exists()


def test_export_cli(known, tmp_path):
    from click.testing import CliRunner

    from vidprom_lake.cli import main

    out = tmp_path / "t.parquet"
    args = ["--lake", known.uri, "export", "--where", "toxicity > 0.5", "--format", "parquet",
            "-o", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).num_rows == 3
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "exists; pass --force" in r.output
    r = CliRunner().invoke(main, [*args, "--force", "--report", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["rows"] == 3
    r = CliRunner().invoke(main, ["--lake", known.uri, "export", "--format", "webdataset", "-o",
                                  str(tmp_path / "s"), "--shard-size", "4", "--where", "model = 'ms'"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "s").glob("*.tar"))) == 1
