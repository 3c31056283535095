"""Analysis views (sql/70-76) and `stats` on a small lake whose answers are known by hand.

`build_known_lake` is shared with the report, export and example tests.
"""

from __future__ import annotations

import csv
import json
import uuid as uuidlib
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

NSFW = ["toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit"]
LONG = " ".join(["word"] * 120)  # 120 words, 599 chars
# (prompt, ctime, toxicity); obscene is 0.9 for all, the others 0
VIDPROM = [
    ("red cat dancing in the rain", "Mon Sep  4 10:00:00 2023", 0.12),
    ("a red cat", "Mon Sep  4 23:59:00 2023", 0.27),
    ("red cat and blue dog", "Tue Sep  5 08:00:00 2023", 0.57),
    ("blue dog running", "Sun Sep 10 12:00:00 2023", 0.87),
    ("the the the of", "Mon Sep 11 00:30:00 2023", 0.0),
    (LONG, "Mon Sep 11 18:00:00 2023", 0.52),
]
DIFFUSIONDB = ["green tree", "Blue dog running", "a tall green tree at night"]
# videos: prompt index -> models
VIDEOS = {0: ["pika", "ms"], 1: ["ms"], 2: ["pika", "ms", "vc2", "t2vz"]}


def uid(text: str) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, text))


def build_known_lake(tmp: Path, *, extra_prompts: list[str] = (), videos: bool = True,
                     embeddings: bool = True):
    """6 VidProM prompts, 3 DiffusionDB prompts, 7 videos, dedup flags on 3 prompts, and a
    2-cluster 8-d embedding column; `extra_prompts` are appended to the VidProM CSV."""
    from vidprom_lake import create_lake

    tmp.mkdir(parents=True, exist_ok=True)
    lake = create_lake(tmp / "lake")
    rows = list(VIDPROM) + [(p, "Tue Sep 12 09:00:00 2023", 0.01) for p in extra_prompts]
    with open(tmp / "vidprom.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["uuid", "prompt", "time", *NSFW])
        for p, t, tox in rows:
            w.writerow([uid(p), p, t, tox, 0.9, 0, 0, 0, 0])
    lake.ingest(tmp / "vidprom.csv")
    ddb = [{"image_name": f"{i:08x}-0000-0000-0000-000000000000.png", "prompt": p, "part_id": 1,
            "seed": i, "step": 50, "cfg": 7.0, "sampler": 8, "width": 512, "height": 512,
            "user_name": "u", "timestamp": datetime(2022, 8, 1 + i, tzinfo=UTC),
            "image_nsfw": 0.1, "prompt_nsfw": 0.1} for i, p in enumerate(DIFFUSIONDB)]
    pq.write_table(pa.Table.from_pylist(ddb), tmp / "diffusiondb.parquet")
    lake.ingest(tmp / "diffusiondb.parquet")
    with lake.batch("test-dedup-flags") as b:
        b.update_columns("prompts", pa.table({
            "uuid": [uid(VIDPROM[0][0]), uid(VIDPROM[1][0]), uid(VIDPROM[2][0])],
            "unique_semantic": [True, False, True],
            "dup_of": [None, uid(VIDPROM[0][0]), None],
            "dup_similarity": pa.array([None, 0.91, None], pa.float32()),
        }))
    if embeddings:
        import h5py

        cat = [VIDPROM[i][0] for i in (0, 1, 2)]
        other = [VIDPROM[3][0], *DIFFUSIONDB]
        texts = cat + other
        rng = np.random.default_rng(0)
        x = np.zeros((len(texts), 8), np.float32)
        x[: len(cat), 0] = 1
        x[len(cat):, 1] = 1
        x += rng.normal(0, 0.05, x.shape).astype(np.float32)
        with h5py.File(tmp / "embed.h5", "w") as h5:
            h5.create_dataset("uuid", data=np.array([uid(t) for t in texts], dtype="S36"))
            h5.create_dataset("embeddings", data=x)
            h5.attrs["model"] = "test:two-clusters-8d"
        lake.ingest(tmp / "embed.h5", column="embedding")
    if videos:
        from video_fixtures import make_mp4

        from vidprom_lake.video import import_videos

        folder = tmp / "clips"
        folder.mkdir()
        k = 0
        for i, models in VIDEOS.items():
            for m in models:
                (folder / f"{m}-{uid(VIDPROM[i][0])}.mp4").write_bytes(make_mp4(n=6, seed=k))
                k += 1
        import_videos(lake, folder)
    return lake


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return build_known_lake(tmp_path_factory.mktemp("known"))


def rows(lake, sql):
    return lake.query(sql).to_pylist()


def test_length_views(known):
    got = {r["uuid"]: (r["words"], r["chars"]) for r in rows(known, "SELECT * FROM prompt_lengths")}
    assert got[uid("red cat dancing in the rain")] == (6, 27)
    assert got[uid("a red cat")] == (3, 9)
    assert got[uid(LONG)] == (120, 599)
    assert got[uid("Blue dog running")] == (3, 16)
    hist = {(r["unit"], r["bin_lo"]): (r["bin_hi"], r["prompts"])
            for r in rows(known, "SELECT * FROM prompt_length_hist")}
    # words: 6,3,5,3,4,120 | 2,3,6
    assert hist[("words", 0)] == (5, 5)
    assert hist[("words", 5)] == (10, 3)
    assert hist[("words", 100)] == (None, 1)
    # chars: 27,9,20,16,14,599 | 10,16,26
    assert hist[("chars", 0)] == (50, 8)
    assert hist[("chars", 550)] == (600, 1)
    assert sum(p for (u, _), (_, p) in hist.items() if u == "chars") == 9


def test_top_words_and_bigrams(known):
    words = rows(known, "SELECT * FROM top_words")
    # ordered by occurrences, then alphabetically
    assert [r["word"] for r in words[:8]] == ["word", "blue", "cat", "dog", "red", "green",
                                              "running", "tree"]
    counts = {r["word"]: (r["occurrences"], r["prompts"]) for r in words}
    assert counts["word"] == (120, 1)
    assert counts["red"] == (3, 3) and counts["cat"] == (3, 3)
    assert counts["blue"] == (3, 3) and counts["dog"] == (3, 3)  # 2 VidProM + 1 DiffusionDB
    assert counts["green"] == (2, 2) and counts["tree"] == (2, 2)
    assert counts["running"] == (2, 2) and counts["night"] == (1, 1)
    for stop in ("the", "a", "of", "in", "and", "at"):
        assert stop not in counts
    bi = {r["bigram"]: (r["occurrences"], r["prompts"]) for r in rows(known, "SELECT * FROM top_bigrams")}
    assert bi["word word"] == (119, 1)
    assert bi["red cat"] == (3, 3)
    assert bi["blue dog"] == (3, 3)
    assert bi["dog running"] == (2, 2)
    assert bi["cat dancing"] == (1, 1)
    assert bi["green tree"] == (2, 2)
    assert "cat and" not in bi and "a red" not in bi and "the rain" not in bi
    assert bi["tall green"] == (1, 1)
    assert len(bi) == 7


def test_prompts_per_day_and_week(known):
    day = {(r["day"], r["source"]): r["prompts"] for r in rows(known, "SELECT * FROM prompts_per_day")}
    assert day[(date(2023, 9, 4), "vidprom")] == 2
    assert day[(date(2023, 9, 5), "vidprom")] == 1
    assert day[(date(2023, 9, 10), "vidprom")] == 1
    assert day[(date(2023, 9, 11), "vidprom")] == 2
    assert day[(date(2022, 8, 1), "diffusiondb")] == 1
    week = {(r["week"], r["source"]): r["prompts"] for r in rows(known, "SELECT * FROM prompts_per_week")}
    assert week == {(date(2023, 9, 4), "vidprom"): 4, (date(2023, 9, 11), "vidprom"): 2,
                    (date(2022, 8, 1), "diffusiondb"): 3}


def test_nsfw_views(known):
    shares = {r["category"]: r for r in rows(known, "SELECT * FROM nsfw_shares")}
    tox = shares["toxicity"]
    assert tox["scored"] == 6  # DiffusionDB prompts carry no Detoxify scores
    assert (tox["above_0_2"], tox["above_0_5"], tox["above_0_8"]) == (4, 3, 1)
    assert tox["share_above_0_2"] == pytest.approx(4 / 6)
    assert tox["share_above_0_8"] == pytest.approx(1 / 6)
    assert (shares["obscene"]["above_0_8"], shares["insult"]["above_0_2"]) == (6, 0)
    hist = {(r["bin_lo"], r["prompts"]) for r in rows(
        known, "SELECT * FROM nsfw_hist WHERE category = 'toxicity'")}
    assert {(round(b, 2), n) for b, n in hist} == {(0.0, 1), (0.1, 1), (0.25, 1), (0.5, 1), (0.55, 1), (0.85, 1)}
    assert rows(known, "SELECT sum(prompts) AS n FROM nsfw_hist WHERE category = 'obscene'")[0]["n"] == 6
    assert rows(known, "SELECT bin_lo FROM nsfw_hist WHERE category = 'obscene'")[0]["bin_lo"] == pytest.approx(0.9)


def test_video_views(known):
    per_model = {r["model"]: (r["videos"], r["prompts"]) for r in rows(known, "SELECT * FROM videos_per_model")}
    assert per_model == {"ms": (3, 3), "pika": (2, 2), "t2vz": (1, 1), "vc2": (1, 1)}
    cov = rows(known, "SELECT prompt_coverage FROM videos_per_model WHERE model = 'ms'")[0]
    assert cov["prompt_coverage"] == pytest.approx(3 / 9)
    counts = [(r["videos"], r["prompts"]) for r in rows(known, "SELECT * FROM prompt_video_counts")]
    assert counts == [(0, 6), (1, 1), (2, 1), (3, 0), (4, 1)]


def test_semantic_unique_share(known):
    got = {r["source"]: r for r in rows(known, "SELECT * FROM semantic_unique_share")}
    v = got["vidprom"]
    assert (v["prompts"], v["checked"], v["unique_prompts"], v["duplicates"]) == (6, 3, 2, 1)
    assert v["unique_share"] == pytest.approx(2 / 3)
    assert got["diffusiondb"]["unique_share"] is None
    assert got["(all)"]["prompts"] == 9


def test_vidprom_vs_diffusiondb(known):
    comp = {r["metric"]: (r["vidprom"], r["diffusiondb"]) for r in rows(known, "SELECT * FROM vidprom_vs_diffusiondb")}
    assert comp["prompts"] == (6, 3)
    assert comp["avg_words"] == pytest.approx(((6 + 3 + 5 + 3 + 4 + 120) / 6, (2 + 3 + 6) / 3))
    assert comp["median_chars"] == (pytest.approx((16 + 20) / 2), 16)
    assert comp["shared_texts"] == (1, 1)  # "blue dog running" / "Blue dog running"
    assert comp["share_toxic_0_5"][0] == pytest.approx(3 / 6)


def test_vidprom_vs_diffusiondb_empty_with_one_source(tmp_path):
    lake = build_known_lake(tmp_path, videos=False, embeddings=False)
    assert rows(lake, "SELECT count(*) AS n FROM vidprom_vs_diffusiondb")[0]["n"] == 11
    # a lake holding only VidProM
    from vidprom_lake import create_lake

    only = create_lake(tmp_path / "only")
    only.ingest(tmp_path / "vidprom.csv")
    assert rows(only, "SELECT count(*) AS n FROM vidprom_vs_diffusiondb")[0]["n"] == 0
    assert rows(only, "SELECT count(*) AS n FROM source_summary")[0]["n"] == 1


def test_views_have_one_line_descriptions():
    from vidprom_lake.sql import view_files

    ours = [(n, t) for n, t in view_files() if n[:1] == "7"]
    assert len(ours) >= 7
    for name, text in ours:
        first = text.splitlines()[0]
        assert first.startswith("-- ") and len(first) > 20, name


def test_stats_sections(known):
    from vidprom_lake.analysis import stats, stats_long

    sections = dict(stats(known))
    totals = {r["metric"]: r["value"] for r in sections["totals"].to_pylist()}
    assert totals["prompts"] == "9" and totals["videos"] == "7" and totals["video models"] == "4"
    assert totals["vector column embedding"].startswith("8-d, model test:two-clusters-8d")
    src = {r["source"]: r for r in sections["sources"].to_pylist()}
    assert (src["vidprom"]["prompts"], src["vidprom"]["nsfw_scored"], src["vidprom"]["semantic_unique"]) == (6, 6, 2)
    assert sections["prompts by number of videos"].num_rows == 5
    assert {r["kind"] for r in sections["batches"].to_pylist()} >= {"ingest", "test-dedup-flags"}
    long = stats_long(list(sections.items()))
    assert set(long.column("section").to_pylist()) == set(sections)


def test_stats_cli_formats(known):
    from click.testing import CliRunner

    from vidprom_lake.cli import main

    r = CliRunner().invoke(main, ["--lake", known.uri, "stats"])
    assert r.exit_code == 0, r.output
    assert "videos per model" in r.output and "nsfw shares" in r.output
    r = CliRunner().invoke(main, ["--lake", known.uri, "stats", "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert {"section": "totals", "row": 0, "column": "metric", "value": "prompts"} in data
    r = CliRunner().invoke(main, ["--lake", known.uri, "stats", "--format", "csv"])
    assert r.exit_code == 0 and r.output.splitlines()[0] == "section,row,column,value"


def test_stats_cli_no_lake(tmp_path):
    from click.testing import CliRunner

    from vidprom_lake.cli import main

    r = CliRunner().invoke(main, ["--lake", str(tmp_path / "nope"), "stats"])
    assert r.exit_code == 1
    assert "Error:" in r.output
