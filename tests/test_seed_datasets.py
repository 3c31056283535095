"""OpenVid-1M, VidGen-1M and MiraData in the same lake as VidProM: ingest, zips, the view."""

from __future__ import annotations

import json
import uuid as uuidlib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from seed_fixtures import (
    MIRA_ROWS,
    OPENVID_ROWS,
    VIDGEN_ROWS,
    split_file,
    write_mira,
    write_openvid,
    write_vidgen,
    write_zip,
)
from video_fixtures import make_mp4

from vidprom_lake import create_lake
from vidprom_lake.cli import main
from vidprom_lake.errors import InputError


def _u(source: str, clip: str) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{source}:{clip}"))


def _rows(lake, source):
    return lake.query(f"SELECT * FROM prompts WHERE source = '{source}' ORDER BY source_id").to_pylist()


@pytest.fixture
def seeded(tmp_path: Path):
    lake = create_lake(tmp_path / "lake")
    ov = write_openvid(tmp_path / "OpenVid-1M.csv")
    vg = write_vidgen(tmp_path / "VidGen_1M_video_caption.json")
    mi = write_mira(tmp_path / "miradata_v1_330k.csv")
    reps = [lake.ingest(ov, format="openvid"), lake.ingest(vg, format="vidgen"),
            lake.ingest(mi, format="miradata")]
    return lake, (ov, vg, mi), reps


def test_openvid_rows_uuid_and_typed_fields(seeded):
    lake, (ov, _, _), reps = seeded
    assert reps[0].rows_added == len(OPENVID_ROWS)
    assert reps[0].uuid_mismatches == 0 and not reps[0].notes
    rows = {r["source_id"]: r for r in _rows(lake, "openvid")}
    assert set(rows) == {r[0] for r in OPENVID_ROWS}
    for src in OPENVID_ROWS:
        r = rows[src[0]]
        assert r["uuid"] == _u("openvid", src[0])
        assert r["prompt"] == src[1]  # multi-line, quoted caption byte for byte
        assert r["uuid_mismatch"] is False
        extra = json.loads(r["extra"])
        assert extra == {"aesthetic_score": float(src[2]), "motion_score": float(src[3]),
                         "temporal_consistency_score": float(src[4]), "camera_motion": src[5],
                         "frames": int(src[6]), "fps": float(src[7]), "seconds": float(src[8])}
        assert isinstance(extra["frames"], int) and isinstance(extra["fps"], float)
    # the same caption on two clips stays two rows
    cats = [r for r in rows.values() if r["prompt"] == "A cat sleeps on a sofa."]
    assert len(cats) == 2
    # typed access from SQL
    t = lake.query("SELECT source_id, (extra->>'aesthetic_score')::DOUBLE AS a, "
                   "(extra->>'frames')::INTEGER AS f FROM prompts WHERE source='openvid' "
                   "ORDER BY a DESC LIMIT 1").to_pylist()
    assert t == [{"source_id": "---_iRTHryQ_13_0to241.mp4", "a": 5.12, "f": 241}]


def test_reingest_is_idempotent(seeded):
    lake, paths, _ = seeded
    n = lake.count()
    for p, fmt in zip(paths, ("openvid", "vidgen", "miradata"), strict=True):
        rep = lake.ingest(p, format=fmt)
        assert rep.rows_added == 0 and rep.already_in_lake == rep.rows_read > 0
    assert lake.count() == n


def test_vidgen_rows(seeded):
    lake, _, reps = seeded
    rows = {r["source_id"]: r for r in _rows(lake, "vidgen")}
    assert {k: v["prompt"] for k, v in rows.items()} == {r["vid"]: r["caption"] for r in VIDGEN_ROWS}
    assert rows["Eep9uvenxAo-Scene-0030"]["uuid"] == _u("vidgen", "Eep9uvenxAo-Scene-0030")
    # the VidGen caption equal to an OpenVid caption is its own row (another source)
    same = lake.query("SELECT count(*) AS n FROM prompts WHERE prompt = "
                      "'A man walks along a beach at sunset, waves rolling in.'").to_pylist()
    assert same == [{"n": 2}]


def test_miradata_empty_trailing_columns_and_captions_struct(seeded):
    lake, _, reps = seeded
    assert any("unnamed column" in n for n in reps[2].notes)
    rows = _rows(lake, "miradata")
    assert len(rows) == len(MIRA_ROWS)
    r = next(r for r in rows if r["source_id"] == "aIPu1xGNbhc:0-1800")
    assert r["uuid"] == _u("miradata", "aIPu1xGNbhc:0-1800")
    assert r["prompt"] == MIRA_ROWS[0][9]
    extra = json.loads(r["extra"])
    assert extra["captions"] == {"main_object": MIRA_ROWS[0][4], "background": MIRA_ROWS[0][5],
                                 "style": MIRA_ROWS[0][6], "camera": MIRA_ROWS[0][7],
                                 "short": MIRA_ROWS[0][8], "dense": MIRA_ROWS[0][9]}
    assert extra["start_frame"] == 0 and extra["end_frame"] == 1800 and extra["index"] == 0
    assert extra["fps"] == 30.0 and extra["start_timestep"] == "0:00:00.000"
    assert not any(k.startswith("unnamed_") for k in extra)
    r2 = next(r for r in rows if r["source_id"] == "Kb8ON0iCs38:300-2100")
    assert json.loads(r2["extra"])["end_timestep"] == 70.0


def test_miradata_values_in_unnamed_columns_are_kept(tmp_path, lake):
    row = list(MIRA_ROWS[1])
    row[-1] = "surprise"
    rep = lake.ingest(write_mira(tmp_path / "m.csv", [row]), format="miradata")
    assert rep.rows_added == 1
    extra = json.loads(lake.query("SELECT extra FROM prompts").to_pylist()[0]["extra"])
    assert extra["unnamed_15"] == "surprise"


def test_miradata_other_caption_as_prompt(tmp_path, lake):
    lake.ingest(write_mira(tmp_path / "m.csv"), format="miradata", prompt_column="short_caption")
    assert sorted(r["prompt"] for r in _rows(lake, "miradata")) == sorted(r[8] for r in MIRA_ROWS)


def test_bad_score_names_the_row(tmp_path, lake):
    rows = [list(r) for r in OPENVID_ROWS]
    rows[2][2] = "high"
    p = write_openvid(tmp_path / "bad.csv", rows)
    with pytest.raises(InputError) as ei:
        lake.ingest(p, format="openvid")
    msg = str(ei.value)
    assert "row 3" in msg and "aesthetic score high is not a number" in msg and "bad.csv" in msg
    assert lake.count() == 0
    rep = lake.ingest(p, format="openvid", skip_bad=True)
    assert rep.rows_added == 3 and rep.skipped_total == 1
    assert rep.skipped[0]["row"] == 3


def test_missing_clip_id_and_columns(tmp_path, lake):
    rows = [list(r) for r in OPENVID_ROWS]
    rows[0][0] = " "
    with pytest.raises(InputError, match=r"row 1.*no clip id"):
        lake.ingest(write_openvid(tmp_path / "a.csv", rows), format="openvid")
    (tmp_path / "b.csv").write_text("name,text\nx,y\n")
    with pytest.raises(InputError, match="missing column"):
        lake.ingest(tmp_path / "b.csv", format="openvid")
    (tmp_path / "c.json").write_text('[{"id_x": 1, "caption": "a"}]')
    with pytest.raises(InputError, match="'vid' and 'caption'"):
        lake.ingest(tmp_path / "c.json", format="vidgen")


def test_source_comparison_view(seeded, vidprom_csv):
    lake, _, _ = seeded
    lake.ingest(vidprom_csv)
    rows = {r["source"]: r for r in lake.query("SELECT * FROM source_comparison").to_pylist()}
    assert set(rows) == {"openvid", "vidgen", "miradata", "vidprom"}
    ov = rows["openvid"]
    assert ov["prompts"] == 4
    assert ov["chars_p10"] <= ov["chars_median"] <= ov["chars_p90"]
    assert ov["words_median"] >= 5 and ov["vocabulary"] > 10
    assert "cat" in ov["top_words"] and "the" not in ov["top_words"]
    assert rows["vidprom"]["prompts"] == 200
    assert rows["miradata"]["chars_mean"] > rows["vidgen"]["chars_mean"]


# ---------------------------------------------------------------------- zips
def _clips(names: list[str]) -> dict[str, bytes]:
    return {n: make_mp4(n=4, w=32, h=32, seed=i) for i, n in enumerate(names)}


def test_import_openvid_zip_and_split_zip(seeded, tmp_path):
    lake, _, _ = seeded
    names = [r[0] for r in OPENVID_ROWS]
    clip0 = make_mp4(n=4, w=32, h=32, seed=1)
    z0 = write_zip(tmp_path / "OpenVid_part0.zip",
                   {f"OpenVid_part0/{names[0]}": clip0,
                    "OpenVid_part0/not-in-csv_1_0to9.mp4": make_mp4(n=4, w=32, h=32, seed=2),
                    "README.txt": b"hello"})
    big = write_zip(tmp_path / "OpenVid_part73.zip", _clips(names[1:3]))
    pieces = split_file(big, 3)
    assert [p.name for p in pieces] == ["OpenVid_part73_partaa", "OpenVid_part73_partab",
                                        "OpenVid_part73_partac"]
    unzip_dir_before = {p.name for p in tmp_path.iterdir()}
    from vidprom_lake.video import import_videos

    rep = import_videos(lake, [z0, *reversed(pieces)], source="openvid")
    assert rep.imported == 3
    by = rep.by_reason()
    assert by.get("unmapped") == 1 and by.get("not-video") == 1
    assert rep.rows_without_videos == 1  # zz-top_8 has no clip in these zips
    assert {p.name for p in tmp_path.iterdir()} == unzip_dir_before  # nothing extracted
    got = lake.query("SELECT v.video_id, v.model, p.source_id, v.num_frames FROM videos v "
                     "JOIN prompts p USING (uuid) ORDER BY p.source_id").to_pylist()
    assert [g["source_id"] for g in got] == sorted(names[:3])
    assert all(g["model"] == "openvid" and g["num_frames"] == 4 for g in got)
    assert got[0]["video_id"] == f"openvid-{_u('openvid', got[0]['source_id'])}"
    # bytes round-trip, and export by source through the gallery of the videos
    from vidprom_lake.video import export_videos, read_video

    assert read_video(lake, _u("openvid", names[0]), "openvid") == clip0
    exp = export_videos(lake, tmp_path / "out", model="openvid")
    assert len(list((tmp_path / "out").rglob("*.mp4"))) == 3, exp
    # re-import: nothing new
    rep2 = import_videos(lake, [z0, *pieces], source="openvid")
    assert rep2.imported == 0 and rep2.already_in_lake == 3


def test_split_zip_missing_piece_is_an_error(seeded, tmp_path):
    lake, _, _ = seeded
    pieces = split_file(write_zip(tmp_path / "OpenVid_part9.zip",
                                  _clips([OPENVID_ROWS[0][0]])), 3)
    from vidprom_lake.video import import_videos

    with pytest.raises(InputError, match="missing ab"):
        import_videos(lake, [pieces[0], pieces[2]], source="openvid")
    with pytest.raises(InputError, match="do not form a zip"):
        import_videos(lake, [pieces[0], pieces[1]], source="openvid")


def test_import_vidgen_zip_cli(seeded, tmp_path):
    lake, _, _ = seeded
    z = write_zip(tmp_path / "VidGen_video_0.zip",
                  _clips([f"{r['vid']}.mp4" for r in VIDGEN_ROWS[:2]] + ["../evil.mp4"]))
    res = CliRunner().invoke(main, ["--lake", lake.uri, "import-videos", str(z), "--source",
                                    "vidgen", "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)[0]
    assert d["imported"] == 2 and d["rows_without_videos"] == 1 and d["source"] == "vidgen"
    assert d["rejected_by_reason"] == {"hostile-name": 1}
    assert lake.count("videos", where="model = 'vidgen'") == 2


def test_import_source_without_rows_is_an_error(lake, tmp_path):
    z = write_zip(tmp_path / "VidGen_video_0.zip", _clips(["a.mp4"]))
    from vidprom_lake.video import import_videos

    with pytest.raises(InputError, match="no vidgen rows"):
        import_videos(lake, [z], source="vidgen")


def test_corrupt_zip_is_named(seeded, tmp_path):
    lake, _, _ = seeded
    bad = tmp_path / "OpenVid_part1.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    from vidprom_lake.video import import_videos

    with pytest.raises(InputError, match="OpenVid_part1.zip"):
        import_videos(lake, [bad], source="openvid")


def test_damaged_zip_member_is_rejected_and_the_rest_lands(seeded, tmp_path):
    """A stored member whose bytes no longer match the zip's CRC-32 is reported as corrupt
    (named), like a member cut off by a truncated archive; the other members land."""
    lake, _, _ = seeded
    from vidprom_lake.video import import_videos

    names = [r[0] for r in OPENVID_ROWS]
    clips = {f"OpenVid_part0/{names[0]}": make_mp4(n=4, w=32, h=32, seed=1),
             f"OpenVid_part0/{names[1]}": make_mp4(n=4, w=32, h=32, seed=2)}
    z = write_zip(tmp_path / "OpenVid_part0.zip", clips)
    raw = bytearray(z.read_bytes())
    at = raw.index(clips[f"OpenVid_part0/{names[1]}"]) + 100
    raw[at] ^= 0xFF  # one flipped byte inside the second member
    z.write_bytes(bytes(raw))
    r = import_videos(lake, [z], source="openvid")
    assert r.imported == 1
    (bad,) = r.rejected
    assert (bad.name, bad.reason) == (f"OpenVid_part0/{names[1]}", "corrupt")
    assert "CRC-32" in bad.detail


def test_zip_members_stream(tmp_path):
    from vidprom_lake.video.zips import ConcatFile, expand

    data = _clips(["a.mp4", "b.mp4"])
    pieces = split_file(write_zip(tmp_path / "x.zip", data), 4)
    (item,) = expand(pieces)
    got = {name: read() for _, name, read, _, _, _ in item.members() if read}
    assert got == data
    # stored members are also read straight into a caller's buffer (CRC-checked)
    into = {}
    for _, name, _, _, size, readinto in item.members():
        buf = bytearray(size)
        readinto(memoryview(buf))
        into[name] = bytes(buf)
    assert into == data
    cf = ConcatFile([str(p) for p in pieces])
    whole = b"".join(p.read_bytes() for p in pieces)
    cf.seek(len(whole) - 30)
    assert cf.read(100) == whole[-30:]
    cf.seek(5)
    assert cf.read(len(whole)) == whole[5:]
    assert zipfile.is_zipfile(cf)


# ---------------------------------------------------------------------- other capabilities
@pytest.mark.slow
def test_embed_dedup_overlap_export_on_seed_rows(seeded, vidprom_csv, tmp_path):
    lake, _, _ = seeded
    lake.ingest(vidprom_csv)
    from vidprom_lake.enrich import embed
    from vidprom_lake.ingest.seed_datasets import compare_sources, source_overlap

    rep = embed(lake)
    assert lake.count(where="embedding IS NOT NULL") == lake.count() == 209
    del rep
    ov = {r["source"]: r for r in source_overlap(lake, sample=None)}
    # the VidGen caption equal to an OpenVid caption has a neighbour at similarity 1
    assert ov["vidgen"]["near_other_source"] >= 1 and ov["openvid"]["near_other_source"] >= 1
    assert ov["vidgen"]["share"] == pytest.approx(ov["vidgen"]["near_other_source"] / 3)
    assert ov["vidprom"]["compared"] == 200 and ov["vidprom"]["share_ci95"] is None
    rows = {r["source"]: r for r in compare_sources(lake, sample=None)}
    assert rows["vidgen"]["near_other_source_share"] == ov["vidgen"]["share"]
    s = {r["source"]: r for r in source_overlap(lake, sample=50)}
    assert s["vidprom"]["compared"] == 50 and s["vidprom"]["share_ci95"] is not None
    res = CliRunner().invoke(main, ["--lake", lake.uri, "compare-sources", "--sample", "0",
                                    "--format", "json"]) if "compare-sources" in main.commands \
        else None
    if res is not None:
        assert res.exit_code == 0, res.output
        assert {r["source"] for r in json.loads(res.output)} == set(rows)

    # dedup across sources: the two "cat" clips (one caption) and the shared caption pair
    from vidprom_lake.dedup import dedup

    dedup(lake, threshold=0.99, exact=True)
    dup = lake.query("SELECT p.source, p.source_id, d.source AS of_source FROM prompts p "
                     "JOIN prompts d ON p.dup_of = d.uuid WHERE p.source <> 'vidprom'").to_pylist()
    pairs = {(r["source"], r["of_source"]) for r in dup}
    assert ("openvid", "openvid") in pairs  # zz-top_7 / zz-top_8
    assert pairs & {("vidgen", "openvid"), ("openvid", "vidgen")}

    # Polars export of one source with its typed fields
    import polars as pl

    df = (lake.to_polars("prompts").filter(pl.col("source") == "miradata")
          .select("source_id", "prompt", "extra").collect())
    assert df.height == len(MIRA_ROWS)
    df.write_parquet(tmp_path / "m.parquet")
    assert pl.read_parquet(tmp_path / "m.parquet").height == len(MIRA_ROWS)


def test_cli_ingest_query_and_compare_sources(tmp_path):
    from vidprom_lake.cli.seed import compare_sources as cmd

    lake_dir = str(tmp_path / "lake")
    r = CliRunner()
    assert r.invoke(main, ["--lake", lake_dir, "init"]).exit_code == 0
    res = r.invoke(main, ["--lake", lake_dir, "ingest", str(write_mira(tmp_path / "m.csv")),
                          "--format", "miradata"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["--lake", lake_dir, "query",
                          "select source, count(*) as n from prompts group by source",
                          "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.output) == [{"source": "miradata", "n": 2}]
    res = r.invoke(cmd, ["--format", "json"], obj={"lake_uri": lake_dir})
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    assert row["source"] == "miradata" and row["prompts"] == 2
    assert row["near_other_source_share"] is None  # no vectors yet
    res = r.invoke(main, ["--lake", lake_dir, "ingest", str(tmp_path / "m.csv"), "--format",
                          "nope"])
    assert res.exit_code != 0 and "miradata" in res.output


def test_formats_are_detected(tmp_path):
    """The three layouts are recognised from their contents, without --format."""
    from seed_fixtures import write_mira, write_openvid, write_vidgen

    from vidprom_lake.ingest import detect

    assert detect(str(write_openvid(tmp_path / "OpenVid-1M.csv"))) == "openvid"
    assert detect(str(write_vidgen(tmp_path / "VidGen_1M_video_caption.json"))) == "vidgen"
    assert detect(str(write_mira(tmp_path / "miradata_v1_9k.csv"))) == "miradata"
    plain = tmp_path / "plain.csv"
    plain.write_text("video,caption\nx.mp4,a cat\n")
    assert detect(str(plain)) == "csv"
