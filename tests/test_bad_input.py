"""Bad input: a clear error naming the file and row, and nothing committed from a failed batch."""

from __future__ import annotations

import csv
import uuid as _uuid
from pathlib import Path

import pytest

from vidprom_lake.errors import InputError

NSFW = ("toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")
HEADER = ["uuid", "prompt", "time", *NSFW]


def u5(text: str) -> str:
    return str(_uuid.uuid5(_uuid.NAMESPACE_DNS, text))


def good(i: int) -> list[str]:
    t = f"good prompt number {i}  "
    return [u5(t), t, "Mon Oct  2 10:00:00 2023", *["0.001"] * 6]


def write(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def assert_untouched(lake, before: int = 0) -> None:
    assert lake.count() == before
    assert all(b.status != "committed" or b.kind != "ingest" or b.counts.get("rows_added", 0) == 0
               for b in lake.log() if b.batch_id != "batch-0000") or before


@pytest.fixture
def seeded(lake, tmp_path):
    """A lake that already holds 5 prompts (nothing of it may be lost by a failed batch)."""
    lake.ingest(write(tmp_path / "seed.csv", [good(i) for i in range(5)]))
    return lake


def _fails(lake, path, match, **kw):
    before = lake.count()
    head = lake.head()
    with pytest.raises(InputError, match=match) as info:
        lake.ingest(path, **kw)
    assert lake.count() == before
    assert lake.head()["prompts"] == head["prompts"]
    failed = lake.log()[-1]
    assert failed.status == "failed" and str(path) in failed.source
    return info.value


def test_missing_required_column(seeded, tmp_path):
    p = write(tmp_path / "m.csv", [["x", "y"]], header=["uuid", "prompt"])
    with pytest.raises(InputError, match=r"m\.csv, row 0: missing required column\(s\) time"):
        seeded.ingest(p, format="vidprom")
    assert seeded.count() == 5


def test_bad_timestamp_names_row(seeded, tmp_path):
    rows = [good(10), good(11), [u5("p"), "p", "yesterday-ish", *["0.1"] * 6], good(12)]
    e = _fails(seeded, write(tmp_path / "t.csv", rows), r"t\.csv, row 3: bad timestamp 'yesterday-ish'")
    assert e.row == 3


def test_empty_prompt(seeded, tmp_path):
    rows = [good(20), [u5(""), "", "Mon Oct  2 10:00:00 2023", *["0.1"] * 6]]
    _fails(seeded, write(tmp_path / "e.csv", rows), r"e\.csv, row 2: empty prompt")


def test_huge_prompt(seeded, tmp_path):
    big = "x" * 1_000_000
    rows = [good(30), [u5(big), big, "Mon Oct  2 10:00:00 2023", *["0.1"] * 6]]
    _fails(seeded, write(tmp_path / "h.csv", rows), r"h\.csv, row 2: prompt of 1,000,000 characters")
    # raising the limit accepts it, stored byte for byte
    seeded.ingest(tmp_path / "h.csv", max_prompt_chars=2_000_000)
    assert seeded.get_prompt(u5(big))["prompt"] == big


def test_bad_nsfw_score(seeded, tmp_path):
    rows = [good(40), [u5("q"), "q", "Mon Oct  2 10:00:00 2023", "high", *["0.1"] * 5]]
    _fails(seeded, write(tmp_path / "n.csv", rows), r"n\.csv, row 2: NSFW score")


def test_duplicate_uuid_with_different_text(seeded, tmp_path):
    u = u5("first text")
    rows = [good(50), [u, "first text", "Mon Oct  2 10:00:00 2023", *["0.1"] * 6],
            [u, "second text", "Mon Oct  2 10:00:00 2023", *["0.1"] * 6]]
    _fails(seeded, write(tmp_path / "d.csv", rows), r"d\.csv, row 3: uuid .* different prompt text")


def test_uuid_in_lake_with_other_text(seeded, tmp_path):
    existing = u5("good prompt number 0  ")
    rows = [[existing, "an impostor", "Mon Oct  2 10:00:00 2023", *["0.1"] * 6]]
    _fails(seeded, write(tmp_path / "i.csv", rows), r"already in the lake with a different prompt")


def test_invalid_utf8(seeded, tmp_path):
    p = write(tmp_path / "u.csv", [good(60)])
    with open(p, "ab") as fh:
        fh.write(b'x,"bad \xff\xfe bytes",Mon Oct  2 10:00:00 2023,0,0,0,0,0,0\n')
    _fails(seeded, p, r"u\.csv: line 3: .*(unicode|UTF-8|utf-8)")


def test_truncated_file(seeded, tmp_path):
    p = write(tmp_path / "c.csv", [good(i) for i in range(70, 80)])
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 25] + b'"unterminated\n')
    _fails(seeded, p, r"c\.csv: line \d+: ")


def test_malformed_row(seeded, tmp_path):
    p = write(tmp_path / "r.csv", [good(90)])
    with open(p, "a") as fh:
        fh.write("only,two\n")
    _fails(seeded, p, r"r\.csv: line 3: .*[Cc]olumns")


def test_malformed_uuid(seeded, tmp_path):
    rows = [["not-a-uuid", "z", "Mon Oct  2 10:00:00 2023", *["0.1"] * 6]]
    _fails(seeded, write(tmp_path / "b.csv", rows), r"b\.csv, row 1: malformed uuid 'not-a-uuid'")


def test_skip_bad_lists_every_skipped_row(seeded, tmp_path):
    rows = [good(100), [u5("p"), "p", "never", *["0.1"] * 6], good(101),
            [u5(""), "", "Mon Oct  2 10:00:00 2023", *["0.1"] * 6], good(102)]
    p = write(tmp_path / "s.csv", rows)
    with open(p, "a") as fh:
        fh.write("only,two\n")
    r = seeded.ingest(p, skip_bad=True)
    assert r.rows_added == 3
    reasons = [(s["row"], s["reason"]) for s in r.skipped]
    assert (2, "bad timestamp 'never'") in reasons
    assert (4, "empty prompt (no value)") in reasons
    assert any(row is None and "line 7" in why for row, why in reasons)
    assert seeded.count() == 8
    assert seeded.log()[-1].counts["skipped"] == 3, r.skipped


def test_not_a_file_and_unknown_format(lake, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        lake.ingest(tmp_path / "nope.csv")
    p = tmp_path / "blob.bin"
    p.write_bytes(b"\x00\x01\x02")
    with pytest.raises(InputError, match="cannot tell the format"):
        lake.ingest(p)


def test_generic_missing_prompt_column(lake, tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"g\.csv, row 0: no prompt column"):
        lake.ingest(p)
    with pytest.raises(InputError, match=r"--time-column 'zzz' is not a column"):
        lake.ingest(p, prompt_column="a", time_column="zzz")


def test_jsonl_bad_line(lake, tmp_path):
    p = tmp_path / "j.jsonl"
    p.write_text('{"prompt": "ok"}\n{"prompt": "broken\n')
    with pytest.raises(InputError, match=r"j\.jsonl"):
        lake.ingest(p)
    assert lake.count() == 0


def test_given_uuids_are_trimmed_and_lowercased(seeded, tmp_path):
    # the canonical ones pass straight through a compiled check; the rest take DuckDB's
    # trim/lower, as in SQL: the lake holds them canonical, and a blank one means "none given"
    texts = [f"spelled prompt {i}" for i in range(4)]
    rows = [[f"  {u5(texts[0]).upper()} ", texts[0], "Mon Oct  2 10:00:00 2023", *["0.1"] * 6],
            [u5(texts[1]).upper(), texts[1], "Mon Oct  2 10:00:00 2023", *["0.1"] * 6],
            ["   ", texts[2], "Mon Oct  2 10:00:00 2023", *["0.1"] * 6],
            [u5(texts[3]), texts[3], "Mon Oct  2 10:00:00 2023", *["0.1"] * 6]]
    r = seeded.ingest(write(tmp_path / "u.csv", rows))
    assert r.rows_added == 4 and r.uuid_mismatches == 0
    for t in texts:
        assert seeded.get_prompt(u5(t))["prompt"] == t
    bad = [[f" {u5('x').upper()}Z", "x", "Mon Oct  2 10:00:00 2023", *["0.1"] * 6]]
    _fails(seeded, write(tmp_path / "v.csv", bad),
           rf"v\.csv, row 1: malformed uuid '{u5('x')}z'")


def test_max_prompt_chars_counts_characters_not_bytes(seeded, tmp_path):
    fits, too_long = "é" * 60, "日" * 101  # 120 and 303 bytes
    rows = [[u5(t), t, "Mon Oct  2 10:00:00 2023", *["0.1"] * 6] for t in (fits, too_long)]
    r = seeded.ingest(write(tmp_path / "l.csv", rows), max_prompt_chars=100, skip_bad=True)
    assert r.rows_added == 1 and seeded.get_prompt(u5(fits))["prompt"] == fits
    assert [(s["row"], s["reason"]) for s in r.skipped] == [
        (2, "prompt of 101 characters exceeds --max-prompt-chars 100")]
