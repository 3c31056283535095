"""The compiled cleaning pass (ingest/normalise.py) equals the SQL rules of ingest/clean.py.

The SQL expressions are the readable statement of the rules (Discord ingest still runs them);
the ingest runs the numba kernels. Hypothesis draws prompts from the pieces that matter:
flags, numbers at the edges of their types, entities, tags, Discord leftovers, every kind of
white space and multi-byte text.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidprom_lake.ingest import clean
from vidprom_lake.ingest.normalise import normalise

PIECES = [
    " ", "  ", "\t", "\n", "\r", "\x0b", "\x0c", "\xa0", "\u2003", "\u3000", "\u200b", "\u1680",
    "-", " -", "-ar ", "-ar", "-motion ", "-gs ", "-neg ", "-camera ", "-fps ", "-seed ", "ar ",
    "16:9", "16 : 9", "3", "12.5", "1.", ".5", "0007", "99999999999", "2147483647", "2147483648",
    "9223372036854775807", "9223372036854775808", "99999999999999999999999",
    "&quot;", "&#39;", "&#x27;", "&lt;", "&gt;", "&nbsp;", "&amp;", "&amp;lt;", "&", ";", "<",
    ">", "<b>", "</i>", "Message: 1 Attachment", "message:2  attachments", "MESSAGE: x",
    "(Font: RETRO)", "(font:", ")", ":", "a", "cat", "é", "日本", "😀", "zoom in", ".", ",",
]

prompts = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


def sql_reference(values: list[str | None]) -> tuple[list, list, list]:
    con = duckdb.connect()
    con.register("t", pa.table({"prompt": pa.array(values, pa.string())}))
    inner = "SELECT row_number() OVER () AS i, prompt FROM t"
    with_flags = con.execute(
        f"SELECT prompt_clean, flags FROM ({clean.clean_select(inner)}) ORDER BY i").fetchall()
    without = con.execute(
        f"SELECT {clean.clean_expr('prompt', gate='prompt')} FROM ({inner}) ORDER BY i").fetchall()
    return [r[0] for r in with_flags], [r[1] for r in with_flags], [r[0] for r in without]


def compare(values: list[str | None]) -> None:
    ref_clean, ref_flags, ref_plain = sql_reference(values)
    got_clean, got_flags = normalise(pa.array(values, pa.string()))
    plain, no_flags = normalise(pa.array(values, pa.string()), pika_flags=False)
    assert got_clean.to_pylist() == ref_clean
    flags = got_flags.to_pylist()
    for want, got in zip(ref_flags, flags, strict=True):
        if want is not None and want["guidance"] is not None:  # FLOAT read back via Python
            assert got is not None and got["guidance"] == pytest.approx(want["guidance"], rel=1e-6)
            want, got = dict(want, guidance=None), dict(got, guidance=None)
        assert got == want
    assert plain.to_pylist() == ref_plain
    assert no_flags.null_count == len(values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(prompts, min_size=1, max_size=40))
def test_compiled_pass_equals_the_sql_rules(values: list[str]) -> None:
    compare(values)


def test_edges() -> None:
    compare([
        None, "", "-ar 16:9", "a -neg x -neg y", "x\t-ar 1:1", "a -ar\t16:9", "-gs 1e5 -fps 0",
        "<" + "a" * 199 + ">", "<" + "a" * 200 + ">", "<" + "é" * 200 + ">", "a &amp;quot; b",
        "  \u3000 lead and trail \u2003 ", "p -seed 00000000000000000000000042 -motion 2147483648",
        "Message: 12 Attachments (Font: RETRO) x", "\n\n-ar 9:16",
    ])


def test_expected_values() -> None:
    clean_text, flags = normalise(pa.array(
        ["A cat &amp; a dog  <b>surfing</b>   -ar 16:9 -gs 12.5 -neg blurry, ugly -seed 7"]))
    assert clean_text.to_pylist() == ["A cat & a dog surfing"]
    assert flags.to_pylist() == [{"aspect_ratio": "16:9", "motion": None, "guidance": 12.5,
                                  "negative": "blurry, ugly", "camera": None, "fps": None,
                                  "seed": 7}]


RARE = ["&eacute;", "&#233;", "&#x263A;", "&hellip;", "&amp;eacute;", "&amp;#233;", "&frac12;",
        "&nosuch;", "&x1;"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(PIECES + RARE), max_size=20).map("".join) | st.none(),
                min_size=1, max_size=40))
def test_clean_prompts_finishes_rare_entities_exactly_where_a_full_search_would(values):
    """The ingest searches for leftover entities only in rows that had a '&': the same result
    as running `finish_clean` on every row."""
    from vidprom_lake.ingest.normalise import clean_prompts

    whole, flags = normalise(pa.array(values, pa.string()))
    got, got_flags = clean_prompts(pa.array(values, pa.string()))
    assert got.to_pylist() == [clean.finish_clean(v) for v in whole.to_pylist()]
    assert got_flags.equals(flags)


def test_clean_prompts_decodes_a_rare_entity_and_leaves_other_rows_alone():
    from vidprom_lake.ingest.normalise import clean_prompts

    got, _ = clean_prompts(pa.array(["caf&eacute; &amp; bar", "plain cat", None, "a &#233; b -ar 16:9",
                                     "tom &amp; jerry"]))
    assert got.to_pylist() == ["café & bar", "plain cat", None, "a é b", "tom & jerry"]
