"""scrape-videos: downloading the videos Discord exports link to, from a misbehaving local
HTTP server, through the import path (probe, chunked commits, resume, idempotence)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from discord_fixtures import Msg, html_export, json_export, write
from scrape_fixtures import App, Route, clip, point_at

av = pytest.importorskip("av")

MAX = 60_000  # --max-bytes in these tests: tiny clips are ~5-10 KB


@pytest.fixture(scope="module")
def clips() -> list[bytes]:
    return [clip(seed=i, frames=5 + i % 3) for i in range(6)]


def _msgs(files: list[tuple[str, int]]) -> list[Msg]:
    t = datetime(2023, 9, 3, 12, 0, tzinfo=UTC)
    return [Msg("pika", content=f"**a cat number {i} surfing -motion 2** - <@alice>",
                time=t + timedelta(minutes=i), attachments=[(name, size)],
                interaction=("create", "alice"))
            for i, (name, size) in enumerate(files)]


def _uuid_by_file(lake) -> dict[str, str]:
    out = {}
    for r in lake.dataset("prompts").to_table(columns=["uuid", "extra"]).to_pylist():
        atts = json.loads(r["extra"])["attachments"]
        out[atts[0]["filename"]] = r["uuid"]
    return out


@pytest.fixture
def world(tmp_path: Path, clips):
    """A lake, a server with one route per behaviour, and a JSON export pointing at it."""
    from vidprom_lake import create_lake

    big = clips[0] * 12  # > MAX
    r = {
        "ok0.mp4": Route(clips[0]),
        "ok1.mp4": Route(clips[1]),
        "ok2.mp4": Route(clips[2], ctype="application/octet-stream"),
        "slow.mp4": Route(clips[3], fail_first=1, fail="slow", slow_s=2.5),
        "drop.mp4": Route(clips[4], fail_first=2, fail="drop"),
        "busy429.mp4": Route(clips[5], fail_first=1, fail="429", retry_after="1"),
        "busy503.mp4": Route(clips[0], fail_first=1, fail="503"),
        "cut_once.mp4": Route(clips[1], fail_first=1, fail="truncate"),
        "forbidden.mp4": Route(b"expired", status=403, ctype="text/plain"),
        "missing.mp4": Route(b"nope", status=404, ctype="text/plain"),
        "gone.mp4": Route(b"gone", status=410, ctype="text/plain"),
        "page.mp4": Route(clips[2], ctype="text/html"),
        "truncated.mp4": Route(clips[3], truncate=True),
        "huge.mp4": Route(big),
        "huge_chunked.mp4": Route(big, chunked=True),
        "notvideo.mp4": Route(b"<html>this is not a video</html>" * 20),
        "moved.mp4": Route(location="/attachments/x/y/ok_target.mp4"),
        "ok_target.mp4": Route(clips[4]),
        "to_file.mp4": Route(location="file:///etc/passwd"),
        "to_ftp.mp4": Route(location="ftp://127.0.0.1/x.mp4"),
        "loop.mp4": Route(location="/attachments/a/b/loop.mp4"),
        "liar.mp4": Route(clips[5]),  # the export says another size
        "café été.mp4": Route(clips[2]),  # sent percent-encoded
        "wait_long.mp4": Route(clips[0], fail_first=99, fail="429", retry_after="3600"),
        "down.mp4": Route(clips[0], fail_first=99, fail="503"),
        "refused.mp4": Route(clips[0]),  # its URL is rewritten to a closed port below
        "local.mp4": Route(clips[0]),  # its URL is rewritten to file:///etc/passwd below
        "evil.mp4": Route(clips[0]),
    }
    app = App(r).start()
    sizes = {n: len(rt.body) for n, rt in r.items()}
    sizes["moved.mp4"] = len(clips[4])
    sizes["liar.mp4"] = len(clips[5]) + 7
    for n in ("forbidden.mp4", "missing.mp4", "gone.mp4"):  # expired links to real videos
        sizes[n] = len(clips[1])
    for n in ("to_file.mp4", "to_ftp.mp4", "loop.mp4"):
        sizes[n] = 1000
    names = [n for n in r if n not in ("ok_target.mp4", "evil.mp4")]
    msgs = _msgs([(n, sizes[n]) for n in names])
    # A hostile attachment file name: only a label, never a path.
    msgs.append(Msg("pika", content="**a hostile name** - <@bob>",
                    time=datetime(2023, 9, 4, tzinfo=UTC),
                    attachments=[("evil.mp4", len(clips[0]))], interaction=("create", "bob")))
    text = point_at(json_export(msgs), app).replace(
        '"fileName": "evil.mp4"', '"fileName": "../../../../tmp/vidlake-evil/../evil.mp4"')
    text = re.sub(r'"http://[^"]*/refused\.mp4"', '"http://127.0.0.1:9/refused.mp4"', text)
    text = re.sub(r'"http://[^"]*/local\.mp4"', '"file:///etc/passwd"', text)
    export = write(tmp_path / "generate-1.json", text)
    lake = create_lake(tmp_path / "lake")
    yield lake, app, export
    app.stop()


OPTS = {"concurrency": 4, "retries": 2, "backoff": 0.05, "timeout": 1.0, "max_bytes": MAX}
GOOD = ["ok0.mp4", "ok1.mp4", "ok2.mp4", "slow.mp4", "drop.mp4", "busy429.mp4",
        "busy503.mp4", "cut_once.mp4", "moved.mp4", "café été.mp4",
        "../../../../tmp/vidlake-evil/../evil.mp4"]
BAD = {"forbidden.mp4": "http-403", "missing.mp4": "http-404", "gone.mp4": "http-410",
       "page.mp4": "wrong-content-type", "truncated.mp4": "truncated", "huge.mp4": "oversized",
       "huge_chunked.mp4": "oversized", "notvideo.mp4": "not-video", "to_file.mp4": "bad-redirect",
       "to_ftp.mp4": "bad-redirect", "loop.mp4": "too-many-redirects",
       "liar.mp4": "size-mismatch", "wait_long.mp4": "rate-limited", "down.mp4": "http-503",
       "refused.mp4": "connection", "local.mp4": "bad-url"}


def test_scrape_export_imports_good_videos_and_reports_the_rest(world, tmp_path, clips):
    from vidprom_lake.video import read_video
    from vidprom_lake.video.scrape import scrape_videos

    lake, app, export = world
    r = scrape_videos(lake, [export], model="pika", chunk=4, **OPTS)
    by_file = _uuid_by_file(lake)
    assert r.prompts_with_video == len(GOOD) + len(BAD)
    assert sorted(r.imported_ids) == sorted(f"pika-{by_file[n]}" for n in GOOD)
    got = {f.filename: f.reason for f in r.failures}
    assert got == BAD
    # transient failures were retried, final ones were not
    assert app.hits["slow.mp4"] == 2 and app.hits["drop.mp4"] == 3
    assert app.hits["busy429.mp4"] == 2 and app.hits["busy503.mp4"] == 2
    assert app.hits["cut_once.mp4"] == 2 and app.hits["truncated.mp4"] == 3
    assert app.hits["forbidden.mp4"] == 1 and app.hits["gone.mp4"] == 1
    assert app.hits["huge.mp4"] == 0  # the export's exact size said too big: never fetched
    assert app.hits["huge_chunked.mp4"] == 0
    assert app.hits["loop.mp4"] == 6  # 1 + MAX_REDIRECTS hops, then given up
    assert app.hits["wait_long.mp4"] == 1  # Retry-After: 3600 is beyond what we wait
    assert app.hits["down.mp4"] == 3 and app.hits["local.mp4"] == 0
    t429 = app.times["busy429.mp4"]
    assert t429[1] - t429[0] >= 0.95  # Retry-After: 1 honoured
    # slow 1, drop 2, 429 1, 503 1, cut once 1, truncated 2, down 2, refused 2; a drop on a
    # reused keep-alive connection looks stale and is reopened at once (not counted)
    assert 1 + 1 + 1 + 1 + 1 + 2 + 4 <= r.retries <= 1 + 2 + 1 + 1 + 1 + 2 + 4
    # what landed is byte-identical, probed, and came in chunks of one batch
    assert r.imported == len(GOOD) and r.chunks == 3
    assert read_video(lake, by_file["moved.mp4"], "pika") == clips[4]
    rows = {x["video_id"]: x for x in lake.query(
        "select video_id, codec, num_frames, bytes, sha256, source from videos").to_pylist()}
    assert len(rows) == len(GOOD)
    v = rows[f"pika-{by_file['ok1.mp4']}"]
    assert v["codec"] == "h264" and v["bytes"] == len(clips[1])
    assert v["sha256"] == hashlib.sha256(clips[1]).hexdigest()
    assert v["source"].startswith(app.base) and "?" not in v["source"]
    # failures are in the batch log, per prompt, and were never stored
    info = lake.batch_info(r.batch_id)
    assert info.status == "committed" and info.kind == "scrape"
    assert info.counts["rows_added"] == len(GOOD)
    logged = {f["uuid"]: f["reason"] for f in info.counts["failures"]}
    assert logged == {by_file[n]: why for n, why in BAD.items()}
    assert info.counts["failed_by_reason"]["oversized"] == 2
    assert lake.count("videos") == len(GOOD)
    # the hostile file name created nothing
    assert not Path("/tmp/vidlake-evil").exists() and not Path("/tmp/evil.mp4").exists()


def test_oversized_without_declared_size_is_cut_while_streaming(tmp_path, clips):
    """A body with no Content-Length (chunked) and no size in the export stops at max-bytes."""
    from vidprom_lake import create_lake
    from vidprom_lake.video.scrape import scrape_videos

    with App({"big.mp4": Route(clips[0] * 12, chunked=True),
              "big2.mp4": Route(clips[0] * 12),
              "ok.mp4": Route(clips[1], chunked=True)}) as app:
        text = point_at(html_export(_msgs([("big.mp4", 1), ("big2.mp4", 1),
                                           ("ok.mp4", 1)])), app)
        lake = create_lake(tmp_path / "lake")
        lake.ingest(write(tmp_path / "g.html", text))
        r = scrape_videos(lake, model="pika", **OPTS)  # from the lake's prompts
        assert {f.filename: f.reason for f in r.failures} == {"big.mp4": "oversized",
                                                               "big2.mp4": "oversized"}
        assert r.imported == 1
        assert "body exceeds" in next(f.detail for f in r.failures if f.filename == "big.mp4")
        assert "Content-Length" in next(f.detail for f in r.failures if f.filename == "big2.mp4")


def test_rerun_resumes_and_imports_nothing_twice(world):
    from vidprom_lake.video.scrape import scrape_videos

    lake, app, export = world
    r1 = scrape_videos(lake, [export], model="pika", **OPTS)
    assert r1.imported == len(GOOD)
    app.routes["gone.mp4"] = Route(app.routes["ok1.mp4"].body)  # the link works again
    app.routes["forbidden.mp4"] = Route(b"still forbidden", status=403, ctype="text/plain")
    hits = app.hits["ok0.mp4"]
    r2 = scrape_videos(lake, [export], model="pika", **OPTS)
    assert r2.already_in_lake == len(GOOD)
    assert app.hits["ok0.mp4"] == hits  # present videos are not fetched again
    assert r2.imported_ids and len(r2.imported_ids) == 1  # only the link that works now
    assert {f.filename for f in r2.failures} == set(BAD) - {"gone.mp4"}
    assert lake.count("videos") == len(GOOD) + 1
    assert r2.prompts_ingested == 0  # the export's prompts were ingested once


def test_plan_fetches_and_writes_nothing(world):
    from vidprom_lake.video.scrape import scrape_videos

    lake, app, export = world
    n_log = len(lake.log())
    p = scrape_videos(lake, [export], model="pika", plan=True, **OPTS)
    assert sum(app.hits.values()) == 0 and len(lake.log()) == n_log
    assert p.prompts_with_video == len(GOOD) + len(BAD)
    assert p.prompts_not_in_lake == p.prompts_with_video  # not ingested yet
    assert p.as_dict()["oversized_declared"] == 2
    assert p.to_fetch == p.prompts_with_video - 2
    assert p.bytes_to_fetch > 0 and p.already_in_lake == 0
    scrape_videos(lake, [export], model="pika", **OPTS)
    p2 = scrape_videos(lake, [export], model="pika", plan=True, limit=5, **OPTS)
    assert p2.considered == 5 and p2.already_in_lake + p2.to_fetch + 0 <= 5
    assert p2.prompts_not_in_lake == 0


def test_limit_rate_and_lake_mode(tmp_path, clips):
    from vidprom_lake import create_lake
    from vidprom_lake.video.scrape import scrape_videos

    names = [f"c{i}.mp4" for i in range(6)]
    # slow answers (0.2 s each, within the timeout) just take longer
    with App({n: Route(clips[i]) for i, n in enumerate(names)}, latency=0.2) as app:
        text = point_at(html_export(_msgs([(n, len(clips[i])) for i, n in enumerate(names)])),
                        app)
        lake = create_lake(tmp_path / "lake")
        lake.ingest(write(tmp_path / "g.html", text))
        r = scrape_videos(lake, model="pika", limit=4, rate="5/s", concurrency=4)
        assert r.imported == 4 and sum(app.hits.values()) == 4
        assert set(app.hits) == set(names[:4])  # first by prompt time
        starts = sorted(t for ts in app.times.values() for t in ts)
        assert starts[-1] - starts[0] >= 0.55  # 4 starts at 5/s: >= 0.6 s apart (less jitter)
        app.max_active = 0
        r2 = scrape_videos(lake, model="vc2", concurrency=2)  # another model: its own videos
        assert r2.imported == 6 and lake.count("videos") == 10
        assert app.max_active == 2  # bounded concurrency (6 answers of 0.2 s overlap)
        n_log = len(lake.log())
        r3 = scrape_videos(lake, model="vc2")  # nothing left to do: no batch
        assert r3.batch_id is None and r3.already_in_lake == 6 and len(lake.log()) == n_log


def test_cli(world, tmp_path):
    from click.testing import CliRunner

    from vidprom_lake.cli import main

    lake, app, export = world
    runner = CliRunner()
    base = ["--lake", lake.uri, "scrape-videos", str(export)]
    res = runner.invoke(main, [*base, "--plan", "--format", "json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)[0]
    assert plan["plan"] is True and plan["prompts_with_video"] == len(GOOD) + len(BAD)
    res = runner.invoke(main, [*base, "--concurrency", "4", "--retries", "2", "--timeout", "1.0",
                               "--max-bytes", "60000", "--format", "json", "--limit", "3"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)[0]
    assert d["imported"] + d["failed"] == 3 and d["batch_id"].startswith("batch-")
    res = runner.invoke(main, [*base, "--rate", "fast"])
    assert res.exit_code == 1
    assert "--rate 'fast' is not a rate; use e.g. 5/s, 300/min, 1000/h" in res.output
    res = runner.invoke(main, [*base, "--max-bytes", "-3"])
    assert res.exit_code == 1 and "is not a size" in res.output


def test_options_parse():
    from vidprom_lake.errors import VidlakeError
    from vidprom_lake.video.scrape import parse_rate, parse_size, retry_after, strip_query

    assert parse_rate("5/s") == 5 and parse_rate("300/min") == 5 and parse_rate("3600/h") == 1
    assert parse_rate("2") == 2 and parse_rate(None) is None and parse_rate("none") is None
    assert parse_size("50MB") == 50 * 1024**2 and parse_size("800K") == 800 * 1024
    assert parse_size("1000") == 1000 and parse_size("1GiB") == 1024**3
    with pytest.raises(VidlakeError):
        parse_size("0")
    assert retry_after("7") == 7
    assert 0 <= retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert retry_after("soon") is None
    assert strip_query("https://cdn.x/a/b.mp4?ex=1&hm=abc#f") == "https://cdn.x/a/b.mp4"


def test_interrupted_run_keeps_its_chunks_and_a_rerun_completes(tmp_path, clips):
    import threading

    from vidprom_lake import create_lake
    from vidprom_lake.video.scrape import scrape_videos

    names = [f"k{i}.mp4" for i in range(10)]
    with App({n: Route(clips[i % 6]) for i, n in enumerate(names)}) as app:
        text = point_at(json_export(_msgs([(n, len(clips[i % 6]))
                                           for i, n in enumerate(names)])), app)
        export = write(tmp_path / "g.json", text)
        lake = create_lake(tmp_path / "lake")

        class Stop(Exception):
            pass

        def boom(done: int, total: int, nbytes: int) -> None:
            assert total == 10 and nbytes > 0
            if done == 7:
                raise Stop

        with pytest.raises(Stop):
            scrape_videos(lake, [export], chunk=3, concurrency=2, progress=boom)
        last = lake.log()[-1]
        assert last.kind == "scrape" and last.status == "failed"
        assert lake.count("videos") == 6  # two committed chunks of 3 survive
        assert not [t for t in threading.enumerate() if t.name.startswith("vidlake-")]
        stored = {r["video_id"] for r in lake.query("select video_id from videos").to_pylist()}
        hits = sum(app.hits.values())
        r = scrape_videos(lake, [export], chunk=3)
        assert r.already_in_lake == 6 and r.imported == 4 and not r.failures
        assert sum(app.hits.values()) - hits == 4  # only the missing ones were fetched
        assert not stored & set(r.imported_ids)
        assert lake.count("videos") == 10
