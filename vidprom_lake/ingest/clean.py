"""Normalising raw prompts: the cleaned text and the parsed Pika flags, as DuckDB SQL.

Both are pure functions of the raw prompt, written as SQL so DuckDB computes them in parallel
while it parses the file. The raw prompt is never changed (its uuid is computed from it).

Cleaning, in order: decode the common HTML entities (`&quot;`, `&#39;`, `&amp;`, `&lt;`, `&gt;`,
`&nbsp;`; any other entity is decoded in Python afterwards), drop HTML tags, drop Discord leftovers
(`Message: 1 Attachment`, `(Font: RETRO)`), cut the Pika option flags (everything from the first
`-ar/-motion/-gs/-neg/-camera/-fps/-seed` option on), and collapse white space.
"""

from __future__ import annotations

import html
import re
import uuid as _uuid

FLAG_NAMES = ("ar", "motion", "gs", "neg", "camera", "fps", "seed")
_FLAG_ALT = "|".join(FLAG_NAMES)
# A flag is " -name" followed by white space and a value; RE2 has no look-ahead, so values that
# run to the next flag (neg, camera) are cut in a second step.
FLAG_START = rf"(^|\s)-({_FLAG_ALT})\s"
NAMESPACE_HEX = _uuid.NAMESPACE_DNS.bytes.hex()


def sha1_sql(col: str) -> str:
    """The SHA-1 that uuid5(NAMESPACE_DNS, col) is made of (namespace bytes + UTF-8 text)."""
    return f"sha1(unhex('{NAMESPACE_HEX}') || encode({col}))"


def uuid5_sql(h: str) -> str:
    """Format the hex SHA-1 column `h` as a version-5 UUID string."""
    # variant nibble: (c & 3) | 8, by table lookup
    variant = f"substr('89ab89ab89ab89ab', instr('0123456789abcdef', substr({h}, 17, 1)), 1)"
    return (
        f"concat(substr({h}, 1, 8), '-', substr({h}, 9, 4), '-5', substr({h}, 14, 3), '-', "
        f"{variant}, substr({h}, 18, 3), '-', substr({h}, 21, 12))"
    )


def _gate(cond: str, then: str, value: str) -> str:
    # DuckDB evaluates CASE branches only for the rows that take them, so each regex below
    # runs only on the few prompts that can need it (most prompts need none).
    return f"CASE WHEN {cond} THEN {then} ELSE {value} END"


def tail_sql(col: str) -> str:
    """The Pika option tail of `col`: everything from its first flag on (NULL if none)."""
    return (
        f"CASE WHEN contains({col}, '-') THEN "
        f"nullif(regexp_extract({col}, '(?s)(?:^|\\s)(-(?:{_FLAG_ALT})\\s.*)$', 1), '') END"
    )


def clean_steps(col: str) -> list[str]:
    """The cleaning as a list of expressions, each over the previous one's result ``col``.

    The first input is the prompt with its flag tail already cut (see `clean_select`).
    Evaluated layer by layer, each expression mentions its input a few times without the
    expression tree growing with every step.
    """
    ents = col
    for ent, rep in (("&quot;", '"'), ("&#39;", "'"), ("&#x27;", "'"), ("&lt;", "<"),
                     ("&gt;", ">"), ("&nbsp;", " "), ("&amp;", "&")):
        rep_sql = rep.replace("'", "''")
        ents = f"replace({ents}, '{ent}', '{rep_sql}')"
    ws = (f"contains({col}, '  ') OR contains({col}, chr(10)) OR contains({col}, chr(9)) "
          f"OR contains({col}, chr(13)) OR contains({col}, chr(160))")
    return [
        _gate(f"contains({col}, '&')", ents, col),
        _gate(f"contains({col}, '<')", f"regexp_replace({col}, '<[^<>]{{0,200}}>', ' ', 'g')", col),
        _gate(f"{col} ILIKE '%message:%'",
              f"regexp_replace({col}, '(?i)Message:\\s*\\d+\\s*Attachments?', ' ', 'g')", col),
        _gate(f"{col} ILIKE '%font:%'", f"regexp_replace({col}, '(?i)\\(Font:[^)]*\\)', ' ', 'g')", col),
        f"trim({col})",
        _gate(ws, f"trim(regexp_replace({col}, '\\s+', ' ', 'g'))", col),
    ]


def _cut_tail(col: str, tail: str) -> str:
    return f"CASE WHEN {tail} IS NULL THEN {col} ELSE left({col}, length({col}) - length({tail})) END"


def clean_sql(col: str) -> str:
    """`prompt_clean` as one scalar expression over `col` (a subquery per step; for tests)."""
    expr = f"(SELECT {_cut_tail('_p', '_t')} FROM (SELECT _p, {tail_sql('_p')} AS _t FROM (SELECT {col} AS _p)))"
    for step in clean_steps("_c"):
        expr = f"(SELECT {step} FROM (SELECT {expr} AS _c))"
    return expr


def clean_select(inner: str, col: str = "prompt") -> str:
    """SELECT *, prompt_clean, flags FROM (inner), as nested projections (linear in size).

    The flag tail is found once; the flags are parsed from it (short strings) and the cleaned
    text starts from the prompt without it.
    """
    sql = f"SELECT *, {tail_sql(col)} AS _tail FROM ({inner}) AS _s0"
    sql = f"SELECT *, {_cut_tail(col, '_tail')} AS _c FROM ({sql}) AS _s1"
    for i, step in enumerate(clean_steps("_c"), 2):
        sql = f"SELECT * REPLACE ({step} AS _c) FROM ({sql}) AS _s{i}"
    return (f"SELECT * EXCLUDE (_tail, _c), _c AS prompt_clean, {flags_sql('_tail')} AS flags "
            f"FROM ({sql}) AS _sf")


def _flag(col: str, name: str, value: str) -> str:
    return f"regexp_extract({col}, '(?:^|\\s)-{name}\\s+({value})', 1)"


def _upto_next_flag(expr: str) -> str:
    return f"nullif(trim(regexp_replace({expr}, '{FLAG_START}.*$', '', 's')), '')"


AR_RE = "[0-9]+\\s*:\\s*[0-9]+"
INT_RE = "[0-9]+"
FLOAT_RE = "[0-9]+(?:\\.[0-9]+)?"


def flags_sql(tail: str) -> str:
    """The parsed Pika flags, as a DuckDB struct, from the flag tail (NULL when there is none)."""

    def num(name: str, pattern: str, typ: str) -> str:
        return f"TRY_CAST(nullif({_flag(tail, name, pattern)}, '') AS {typ})"

    aspect = f"nullif({_flag(tail, 'ar', AR_RE)}, '')"
    negative = _upto_next_flag(_flag(tail, "neg", ".*"))
    camera = _upto_next_flag(_flag(tail, "camera", ".*"))
    members = [
        f"aspect_ratio := {aspect}",
        f"motion := {num('motion', INT_RE, 'INTEGER')}",
        f"guidance := {num('gs', FLOAT_RE, 'FLOAT')}",
        f"negative := {negative}",
        f"camera := {camera}",
        f"fps := {num('fps', INT_RE, 'INTEGER')}",
        f"seed := {num('seed', INT_RE, 'BIGINT')}",
    ]
    return f"CASE WHEN {tail} IS NOT NULL THEN struct_pack({', '.join(members)}) END"


ENTITY_RE = r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+\d*);"
_ENTITY = re.compile(ENTITY_RE)


def finish_clean(text: str | None) -> str | None:
    """Decode any entity the SQL pass left (rare: numeric and named ones beyond the common six)."""
    if text is None or "&" not in text or not _ENTITY.search(text):
        return text
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def uuid5(text: str) -> str:
    return str(_uuid.uuid5(_uuid.NAMESPACE_DNS, text))
