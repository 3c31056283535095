"""Discord ingest: DiscordChatExporter HTML and JSON exports built by the tests themselves."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid as _uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from discord_fixtures import (
    Msg,
    full_name,
    html_encode,
    html_export,
    json_export,
    write,
    write_big_html,
)

from vidprom_lake import synth
from vidprom_lake.cli import main
from vidprom_lake.errors import InputError, VidlakeError
from vidprom_lake.ingest import detect

CAT = '**a cat "surfing" & it\'s 🐱 *slowly* -ar 16:9 -motion 4  ** - <@alice>'
CAT_HTML_RAW = ("a cat &quot;surfing&quot; &amp; it&#39;s "
                '<img loading="lazy" class="chatlog__emoji " alt="🐱" title="cat" '
                'src="https://cdn.jsdelivr.net/gh/twitter/twemoji@latest/assets/svg/1f431.svg"> '
                "<em>slowly</em> -ar 16:9 -motion 4  ")
CAT_JSON_RAW = 'a cat "surfing" & it\'s 🐱 *slowly* -ar 16:9 -motion 4  '
T0 = datetime(2023, 9, 3, 12, 0, tzinfo=UTC)


def u5(text: str) -> str:
    return str(_uuid.uuid5(_uuid.NAMESPACE_DNS, text))


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def channel_messages() -> list[Msg]:
    """One busy stretch of a Pika channel, with every case the parser must handle."""
    return [
        Msg("alice", "hello 🔥 everyone, <@bob> look"),                                   # 0 chatter
        Msg("pika", CAT, attachments=[("cat.mp4", 612_345)], interaction=("create", "alice")),  # 1
        Msg("bob", "/create prompt: a dog on the moon -gs 12"),                            # 2 command
        Msg("pika", "**a dog on the moon -gs 12** - <@bob>", reply_to=2,                    # 3 its reply
            attachments=[("dog.mp4", 400_000)]),
        Msg("pika", "**a portrait that moves** - <@carol>",                                 # 4 img2vid
            attachments=[("input.png", 1_000), ("out.mp4", 5_000)], interaction=("create", "carol")),
        Msg("pika", CAT, edited=True, attachments=[("cat2.mp4", 612_000)],                  # 5 again
            interaction=("create", "bob")),
        Msg("pika", "**a very long prompt about a castle, part one"),                      # 6 split
        Msg("pika", "and part two of it** - <@bob>"),                                       # 7
        Msg("pika", "", attachments=[("castle.mp4", 777_777)]),                            # 8 video
        Msg("carol", "", system=True),                                                     # 9 pin
        Msg("pika", "**a fox in the snow** - <@carol>", reply_deleted=True,                # 10
            attachments=[("fox.mp4", 300_000)]),
        Msg("bob", "/create prompt: a robot dancing image: robot.png",                      # 11 img option
            attachments=[("robot.png", 2_000)]),
        Msg("pika", "Queued! Your video will be ready soon."),                             # 12 no prompt
        Msg("alice", "**not the bot** - <@bob>"),                                           # 13 not bot
    ]


@pytest.fixture
def exports(tmp_path: Path) -> dict[str, Path]:
    msgs = channel_messages()
    return {
        "html": write(tmp_path / "generate-1.html", html_export(msgs)),
        "json": write(tmp_path / "generate-1.json", json_export(msgs)),
    }


def rows_by_prompt(lake) -> dict[str, dict]:
    t = lake.dataset("prompts").to_table().to_pylist()
    return {r["prompt"]: r for r in t}


# ------------------------------------------------------------------------------ extraction
@pytest.mark.parametrize("kind", ["html", "json"])
def test_extracts_prompts_and_metadata(lake, exports, kind):
    report = lake.ingest(exports[kind])
    assert report.format == f"discord-{kind}"
    assert report.messages == 14
    # prompts: cat x2, dog (command + reply = one), portrait, castle, fox, robot
    assert report.prompts == 7
    assert report.skipped_by_reason == {"image_to_video": 2, "unmatched_bot_message": 1}
    assert report.rows_added == 4 and report.unique_prompts == 4
    rows = rows_by_prompt(lake)
    cat_raw = CAT_HTML_RAW if kind == "html" else CAT_JSON_RAW
    assert set(rows) == {cat_raw, "a dog on the moon -gs 12",
                         "a very long prompt about a castle, part one\nand part two of it",
                         "a fox in the snow"}
    cat = rows[cat_raw]
    assert cat["uuid"] == u5(cat_raw)
    assert cat["occurrences"] == 2
    assert cat["time"] == T0 + timedelta(seconds=40)          # the first of the two
    assert cat["source"] == "discord" and cat["channel"] == "generate-1"
    assert cat["author_sha256"] == sha("alice")                # the first requester, hashed
    assert cat["flags"]["aspect_ratio"] == "16:9" and cat["flags"]["motion"] == 4
    assert cat["prompt_clean"] == ('a cat "surfing" & it\'s slowly' if kind == "html"
                                   else 'a cat "surfing" & it\'s 🐱 *slowly*')
    extra = json.loads(cat["extra"])
    assert extra["command"] == "create" and extra["edited"] is False
    assert extra["time_offset"] == "+00:00"
    [att] = extra["attachments"]
    assert att["filename"] == "cat.mp4" and att["content_type"] == "video/mp4"
    assert att["url"].startswith("https://cdn.discordapp.com/attachments/")
    assert att["url"].endswith("/cat.mp4") and str(cat["source_id"]) in att["url"]
    if kind == "json":
        assert att["size"] == 612_345
    else:
        assert abs(att["size"] - 612_345) < 1024 and att["size_text"].endswith("KB")
    dog = rows["a dog on the moon -gs 12"]
    dextra = json.loads(dog["extra"])
    assert dextra["via"] == "command" and dog["author_sha256"] == sha(full_name("bob"))
    assert [a["filename"] for a in dextra["attachments"]] == ["dog.mp4"]
    assert dextra["reply_id"] != dog["source_id"]               # the bot's reply carries the video
    castle = rows["a very long prompt about a castle, part one\nand part two of it"]
    cextra = json.loads(castle["extra"])
    assert len(cextra["parts"]) == 3 and cextra["attachments"][0]["filename"] == "castle.mp4"
    fox = json.loads(rows["a fox in the snow"]["extra"])
    assert fox["reply_id"] == rows["a fox in the snow"]["source_id"]
    if kind == "html":  # the HTML export says the request was deleted; JSON only has its id
        assert fox["request_deleted"] is True
    else:
        assert fox["request_id"]
    # nobody's name is stored anywhere
    for r in rows.values():
        for v in r.values():
            assert "alice" not in str(v).lower() and "bob" not in str(v).lower()


def test_edited_flag_and_html_entities(lake, tmp_path):
    msgs = [Msg("pika", "**Tom &amp; Jerry's \"chase\" <b>fast</b>** - <@alice>", edited=True,
                attachments=[("tj.mp4", 10_000)])]
    lake.ingest(write(tmp_path / "e.html", html_export(msgs)))
    [row] = lake.dataset("prompts").to_table().to_pylist()
    # the HTML source exactly: the exporter encoded the typed "&amp;" once more
    assert row["prompt"] == "Tom &amp;amp; Jerry&#39;s &quot;chase&quot; &lt;b&gt;fast&lt;/b&gt;"
    assert json.loads(row["extra"])["edited"] is True


def test_html_offset_and_json_offset(lake, tmp_path):
    tz = timezone(timedelta(hours=2))
    msgs = [Msg("pika", "**a sunrise** - <@alice>", attachments=[("s.mp4", 1)])]
    r1 = lake.ingest(write(tmp_path / "a.html", html_export(msgs, tz=tz)), dry_run=True)
    assert r1.rows_added == 1
    from vidprom_lake.ingest.discord import Config, DiscordReport, parse_file
    from vidprom_lake.ingest.pipeline import IngestOptions

    for f in (write(tmp_path / "a.html", html_export(msgs, tz=tz)),
              write(tmp_path / "a.json", json_export(msgs, tz=tz))):
        occ = []
        parse_file(str(f), None, Config.from_options(IngestOptions()),
                   DiscordReport(path=str(f), format="x"), occ.append)
        assert occ[0].msg.offset == "+02:00"
        assert occ[0].msg.time.replace(microsecond=0, second=0) == T0 + timedelta(minutes=0)


def test_uuids_agree_with_vidprom_csv(lake, tmp_path):
    csv_path = synth.write_vidprom_csv(tmp_path / "VidProM_unique.csv", 50, seed=3)
    import csv

    with open(csv_path, newline="", encoding="utf-8") as fh:
        vidprom = list(csv.DictReader(fh))
    first = lake.ingest(csv_path)
    assert first.rows_added == 50
    # the same prompts as the Pika bot posted them: the HTML source is VidProM's raw text
    picks = [r for r in vidprom if "\n" not in r["prompt"]][:20]
    msgs = [Msg("pika", html=f"<strong>{r['prompt']}</strong> - "
                f'<span class="chatlog__markdown-mention" title="alice">@Alice</span>',
                attachments=[(f"{i}.mp4", 1000)])
            for i, r in enumerate(picks)]
    msgs.append(Msg("pika", "**a brand new prompt -motion 2  ** - <@bob>"))
    report = lake.ingest(write(tmp_path / "pika.html", html_export(msgs)), keep_image_prompts=True)
    assert report.already_in_lake == 20 and report.rows_added == 1
    by_uuid = {r["uuid"]: r["prompt"] for r in lake.dataset("prompts").to_table().to_pylist()}
    for r in picks:
        assert by_uuid[r["uuid"]] == r["prompt"]
    assert by_uuid[u5("a brand new prompt -motion 2  ")] == "a brand new prompt -motion 2  "
    # JSON exports carry the decoded text: prompts without entities agree too
    plain = [r for r in picks if "&" not in r["prompt"] and "<" not in r["prompt"]][:5]
    assert plain
    jmsgs = [Msg("pika", f"**{r['prompt']}** - <@carol>") for r in plain]
    rj = lake.ingest(write(tmp_path / "pika.json", json_export(jmsgs)))
    assert rj.already_in_lake == len(plain) and rj.rows_added == 0


def test_an_export_into_an_indexed_lake_asks_the_index_and_extends_it(lake, tmp_path,
                                                                     monkeypatch):
    """The daily-export case: the export's prompts are looked up through the lake's uuid index
    (the lake's keys are not all read), and the index covers the new rows after the commit."""
    from vidprom_lake.ingest import pipeline

    csv_path = synth.write_vidprom_csv(tmp_path / "VidProM_unique.csv", 60, seed=4)
    lake.ingest(csv_path)
    with lake.batch("index") as b:
        assert b.refresh_key_index("prompts", "uuid", min_rows=0)
    monkeypatch.setattr(pipeline.LakeKeys, "PROBE_RATIO", 1)
    monkeypatch.setattr(pipeline.LakeKeys, "_load", lambda self: pytest.fail("read every key"))
    old = lake.dataset("prompts").to_table(columns=["prompt"]).column("prompt").to_pylist()
    known = [p for p in old if "\n" not in p and "&" not in p and "<" not in p and "*" not in p][:3]
    msgs = [Msg("pika", f"**{p}** - <@carol>") for p in [*known, "a heron at dawn"]]
    r = lake.ingest(write(tmp_path / "day.json", json_export(msgs)))
    assert (r.already_in_lake, r.rows_added) == (len(known), 1)
    (idx,) = [d for d in lake.dataset("prompts").describe_indices() if d.name == "uuid_idx"]
    assert idx.num_rows_indexed == lake.dataset("prompts").count_rows() == 61
    assert lake.get_prompt(u5("a heron at dawn"))["prompt"] == "a heron at dawn"


def test_folder_aggregates_across_channels(lake, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    later = datetime(2023, 10, 1, tzinfo=UTC)
    earlier = datetime(2023, 8, 1, tzinfo=UTC)
    write(folder / "generate-1.html", html_export(
        [Msg("pika", "**shared prompt -ar 9:16** - <@alice>"),
         Msg("pika", "**only in one** - <@alice>")], channel="generate-1", start=later))
    write(folder / "generate-2.json", json_export(
        [Msg("pika", "**shared prompt -ar 9:16** - <@bob>"),
         Msg("pika", "**shared prompt -ar 9:16** - <@carol>")], channel="generate-2", start=earlier))
    (folder / "notes.txt").write_text("not an export, not looked at")
    assert detect(str(folder)) == "discord-html"
    report = lake.ingest(folder)
    assert report.files == 2 and report.messages == 4 and report.rows_added == 2
    assert report.duplicates_in_file == 2
    rows = rows_by_prompt(lake)
    shared = rows["shared prompt -ar 9:16"]
    assert shared["occurrences"] == 3
    assert shared["channel"] == "generate-2"                     # where it was first seen
    assert shared["time"] == earlier + timedelta(seconds=20)
    assert shared["author_sha256"] == sha(full_name("bob"))
    assert len(lake.log()) == 2                                   # init + one batch for the folder
    again = lake.ingest(folder)
    assert again.rows_added == 0 and again.already_in_lake == 2


def test_since_until_and_keep_images(lake, exports):
    r = lake.ingest(exports["html"], since="2023-09-03T12:01:00", until="2023-09-03T12:03:00",
                    dry_run=True)
    # messages are 20 s apart from 12:00:20: the first cat (12:00:40) is before, the fox
    # (12:03:40) after; the dog (12:01:00), the second cat and the castle are in range
    assert r.skipped_by_reason["before_since"] == 1
    assert r.skipped_by_reason["after_until"] == 1
    assert r.rows_added == 3
    r2 = lake.ingest(exports["html"], keep_image_prompts=True, dry_run=True)
    assert "image_to_video" not in r2.skipped_by_reason and r2.rows_added == 6
    r3 = lake.ingest(exports["html"], until="2023-09-03", dry_run=True)   # the whole day
    assert r3.rows_added == 4
    with pytest.raises(VidlakeError, match="--since 'yesterday' is not a date"):
        lake.ingest(exports["html"], since="yesterday")


def test_dry_run_writes_nothing(lake, exports):
    before = lake.log()
    r = lake.ingest(exports["json"], dry_run=True)
    assert r.dry_run and r.rows_added == 4 and r.messages == 14
    assert "14 messages" in r.notes[0] and "image_to_video 2" in r.notes[0]
    assert lake.count("prompts") == 0 and len(lake.log()) == len(before)


def test_author_salt(lake, exports, monkeypatch):
    lake.ingest(exports["json"], author_salt="pepper")
    rows = rows_by_prompt(lake)
    expect = hmac.new(b"pepper", b"alice", hashlib.sha256).hexdigest()
    assert rows[CAT_JSON_RAW]["author_sha256"] == expect
    info = lake.log()[-1]
    assert "pepper" not in json.dumps(info.params) and info.params["author_hash"].startswith("hmac")
    monkeypatch.setenv("VIDLAKE_AUTHOR_SALT", "pepper")
    from vidprom_lake.ingest.discord import Config
    from vidprom_lake.ingest.pipeline import IngestOptions

    assert Config.from_options(IngestOptions()).author_hash("alice") == expect


def test_custom_bot_and_pattern(lake, tmp_path):
    msgs = [Msg("helper", "Prompt: a tiny house\nSeed: 5", attachments=[("h.mp4", 10)]),
            Msg("helper", "Prompt: a big house\nSeed: 6"),
            Msg("pika", "**a pika prompt** - <@bob>")]
    f = write(tmp_path / "helper.json", json_export(msgs))
    r = lake.ingest(f, bot="HelperBot", prompt_pattern=r"^Prompt: (.+)$")
    assert r.rows_added == 2
    assert set(rows_by_prompt(lake)) == {"a tiny house", "a big house"}
    with pytest.raises(VidlakeError, match="not a valid regular expression"):
        lake.ingest(f, prompt_pattern="(unclosed")
    with pytest.raises(VidlakeError, match="needs a group"):
        lake.ingest(f, prompt_pattern="Prompt: .+")


def test_command_pattern_by_anyone(lake, tmp_path):
    msgs = [Msg("alice", "/create prompt: a whale in space -motion 3  "),
            Msg("bob", "/create prompt: a whale in space -motion 3")]
    r = lake.ingest(write(tmp_path / "c.json", json_export(msgs)), bot="")
    assert r.rows_added == 1
    [row] = lake.dataset("prompts").to_table().to_pylist()
    assert row["prompt"] == "a whale in space -motion 3" and row["occurrences"] == 2


# ------------------------------------------------------------------------------ bad input
def _lake_unchanged(lake, versions):
    assert lake.count("prompts") == 0
    assert [b.batch_id for b in lake.log() if b.status == "committed"] == versions


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_html(lake, exports, tmp_path, cut):
    data = exports["html"].read_bytes()
    bad = tmp_path / "cut.html"
    bad.write_bytes(data[: int(len(data) * cut)])
    committed = [b.batch_id for b in lake.log() if b.status == "committed"]
    with pytest.raises(InputError, match=r"cut\.html: .*truncated"):
        lake.ingest(bad)
    _lake_unchanged(lake, committed)


def test_json_cut_in_the_middle(lake, exports, tmp_path):
    data = exports["json"].read_bytes()
    bad = tmp_path / "cut.json"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.json: the export is cut in the middle after message"):
        lake.ingest(bad)
    doc = json.loads(data)
    doc["messageCount"] = 99
    wrong = write(tmp_path / "count.json", json.dumps(doc))
    with pytest.raises(InputError, match=r"count\.json: .*messageCount 99 but holds 14"):
        lake.ingest(wrong)
    assert lake.count("prompts") == 0


def test_not_an_export(lake, tmp_path):
    page = write(tmp_path / "page.html", "<!DOCTYPE html><html><body><p>hi</p></body></html>")
    with pytest.raises(InputError, match=r"page\.html: not a DiscordChatExporter HTML export"):
        lake.ingest(page)
    with pytest.raises(InputError, match=r"page\.html: not a DiscordChatExporter"):
        lake.ingest(page, format="discord-html")
    other = write(tmp_path / "other.json", json.dumps({"data": [1, 2, 3]}))
    with pytest.raises(InputError, match=r"other\.json: not a DiscordChatExporter JSON export"):
        lake.ingest(other, format="discord-json")
    assert lake.count("prompts") == 0


def test_bad_file_in_folder_writes_nothing(lake, exports, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a.html").write_bytes(exports["html"].read_bytes())
    data = exports["json"].read_bytes()
    (folder / "b.json").write_bytes(data[: len(data) - 40])
    with pytest.raises(InputError, match=r"b\.json"):
        lake.ingest(folder)
    assert lake.count("prompts") == 0
    (folder / "b.json").write_text("{}")
    with pytest.raises(InputError, match=r"b\.json: is in a folder of exports but is not"):
        lake.ingest(folder)


def test_too_long_prompt(lake, tmp_path):
    f = write(tmp_path / "long.json", json_export([Msg("pika", "**" + "x" * 500 + "** - <@bob>")]))
    with pytest.raises(InputError, match=r"long\.json: message \d+: prompt of 500 characters"):
        lake.ingest(f, max_prompt_chars=100)
    r = lake.ingest(f, max_prompt_chars=100, skip_bad=True)
    assert r.skipped_by_reason == {"too_long": 1} and r.rows_added == 0


# ------------------------------------------------------------------------------ CLI
def test_cli(tmp_path, exports):
    lake_dir = str(tmp_path / "clilake")
    runner = CliRunner()
    assert runner.invoke(main, ["--lake", lake_dir, "init"]).exit_code == 0
    folder = exports["html"].parent
    res = runner.invoke(main, ["--lake", lake_dir, "ingest", str(folder), "--bot", "Pika",
                               "--since", "2023-07-01", "--until", "2024-02-29", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "dry run" in res.output
    assert "28 messages" in res.output and "image_to_video 4" in res.output
    res = runner.invoke(main, ["--lake", lake_dir, "ingest", str(exports["json"]),
                               "--format", "discord-json", "--report", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)[0]
    assert out["rows_added"] == 4 and out["skipped_by_reason"]["image_to_video"] == 2
    bad = write(tmp_path / "x.html", "<html><body>nothing</body></html>")
    res = runner.invoke(main, ["--lake", lake_dir, "ingest", str(bad)])
    assert res.exit_code == 1
    assert f"Error: {bad}: not a DiscordChatExporter HTML export" in res.output


# ------------------------------------------------------------------------------ streaming
@pytest.mark.slow
def test_streaming_memory(tmp_path):
    """Parsing holds one block and one message, not the file: peak Python memory stays small."""
    import tracemalloc

    from vidprom_lake.ingest.discord import Config, DiscordReport, parse_file
    from vidprom_lake.ingest.pipeline import IngestOptions

    path = tmp_path / "big.html"
    counts = write_big_html(path, 40_000_000, seed=7)
    size = path.stat().st_size
    found = [0]
    report = DiscordReport(path=str(path), format="discord-html")
    tracemalloc.start()
    parse_file(str(path), None, Config.from_options(IngestOptions()), report,
               lambda occ: found.__setitem__(0, found[0] + 1))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.messages == counts["messages"] and found[0] == counts["bot_prompts"]
    # one 1 MB block, one message and the still-open occurrences: a bound that does not grow
    assert size > 40e6 and peak < 16e6, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB export"


@pytest.mark.slow
def test_streaming_json_and_ingest(lake, tmp_path):
    import tracemalloc

    from discord_fixtures import big_messages

    from vidprom_lake.ingest.discord import Config, DiscordReport, parse_file
    from vidprom_lake.ingest.pipeline import IngestOptions

    msgs = big_messages(6000, seed=2)
    path = write(tmp_path / "big.json", json_export(msgs))
    size = path.stat().st_size
    images = sum(any(a[0].endswith(".png") for a in m.attachments) for m in msgs)
    report = DiscordReport(path=str(path), format="discord-json")
    tracemalloc.start()
    parse_file(str(path), None, Config.from_options(IngestOptions()), report, lambda occ: None)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.prompts == 6000 and report.messages == len(msgs)
    assert peak < size / 4, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB export"
    report = lake.ingest(path, dry_run=True)
    assert report.skipped_by_reason.get("image_to_video", 0) == images
    report = lake.ingest(path)
    assert lake.count("prompts") == report.rows_added == 6000 - images


def test_html_encode_matches_dotnet():
    assert html_encode("a'b\"c<d>&é😀") == "a&#39;b&quot;c&lt;d&gt;&amp;&#233;&#128512;"


def test_nested_markup_kept_verbatim(lake, tmp_path):
    """Spoilers hold mentions and emoji: the content span is cut at its own closing tag."""
    inner = ('<strong>a <span class="chatlog__markdown-spoiler chatlog__markdown-spoiler--hidden" '
             'onclick="showSpoiler(event, this)">secret <span class="chatlog__markdown-mention" '
             'title="bob#4242">@Bob</span> <em>door</em></span> &lt;/span&gt; opens</strong>')
    msgs = [Msg("pika", html=inner + ' - <span class="chatlog__markdown-mention" '
                'title="alice">@Alice ✨</span>', attachments=[("d.mp4", 5)]),
            Msg("pika", html="<strong>second</strong> - <span class=\"chatlog__markdown-mention\" "
                'title="carol">@Carol</span>')]
    r = lake.ingest(write(tmp_path / "n.html", html_export(msgs)))
    assert r.rows_added == 2
    rows = rows_by_prompt(lake)
    raw = inner[len("<strong>"):-len("</strong>")]
    assert raw in rows
    # the shared cleaning decodes entities, then drops tags (the encoded one too)
    assert rows[raw]["prompt_clean"] == "a secret @Bob door opens"
    assert rows[raw]["author_sha256"] == sha("alice")      # the last mention, not Bob
    assert rows["second"]["author_sha256"] == sha("carol")


def test_json_requester_is_last_mention(lake, tmp_path):
    msgs = [Msg("pika", "**a duel between <@bob> and a dragon** - <@alice>")]
    lake.ingest(write(tmp_path / "m.json", json_export(msgs)))
    [row] = lake.dataset("prompts").to_table().to_pylist()
    assert row["prompt"] == "a duel between @Bob and a dragon"
    assert row["author_sha256"] == sha("alice")


def test_multi_block_export_cut_and_bad_utf8(lake, tmp_path):
    big = tmp_path / "big.html"
    counts = write_big_html(big, 3_000_000, seed=5)              # three 1 MB blocks and more
    r = lake.ingest(big, dry_run=True)
    assert r.messages == counts["messages"] and r.prompts == counts["bot_prompts"]
    data = big.read_bytes()
    cut = tmp_path / "cut.html"
    cut.write_bytes(data[: 2_500_000])
    with pytest.raises(InputError, match=r"cut\.html: the export is truncated after message \d+"):
        lake.ingest(cut)
    i = data.index(b"<strong>", 1_500_000)
    broken = tmp_path / "broken.html"
    broken.write_bytes(data[: i + 8] + b"\xff\xfe" + data[i + 8:])
    with pytest.raises(InputError, match=r"broken\.html: message \d+ is not valid UTF-8"):
        lake.ingest(broken)
    assert lake.count("prompts") == 0
