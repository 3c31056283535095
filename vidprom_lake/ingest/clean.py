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


def tail_sql(col: str) -> str:
    """The Pika option tail of `col`: everything from its first flag on (NULL if none)."""
    return (
        f"CASE WHEN contains({col}, '-') THEN "
        f"nullif(regexp_extract({col}, '(?s)(?:^|\\s)(-(?:{_FLAG_ALT})\\s.*)$', 1), '') END"
    )


def clean_expr(col: str, gate: str | None = None) -> str:
    """`prompt_clean` from `col` (the prompt with its flag tail already cut), one expression.

    Most prompts hold no entity, tag or Discord leftover: one cheap test sends them straight
    to the white-space pass. `col` is mentioned three times and every other function takes the
    previous one's result once, so the expression stays small when DuckDB inlines it.
    """
    s = col
    for ent, rep in (("&quot;", '"'), ("&#39;", "'"), ("&#x27;", "'"), ("&lt;", "<"),
                     ("&gt;", ">"), ("&nbsp;", " "), ("&amp;", "&")):
        rep_sql = rep.replace("'", "''")
        s = f"replace({s}, '{ent}', '{rep_sql}')"
    s = f"regexp_replace({s}, '<[^<>]{{0,200}}>', ' ', 'g')"
    s = (f"regexp_replace({s}, '(?i)(?:message:\\s*\\d+\\s*attachments?|\\(font:[^)]*\\))', "
         "' ', 'g')")
    needs = "[&<]|(?i)message:|(?i)\\(font:"
    s = f"trim(CASE WHEN regexp_matches({gate or col}, '{needs}') THEN {s} ELSE {col} END)"
    # only runs of white space, or white space other than a plain space, need replacing
    odd_ws = "(?:\\s\\s|[\\t\\n\\r\\x{a0}\\x{0b}\\x{0c}])\\s*"
    return (f"CASE WHEN regexp_matches({s}, '{odd_ws}') "
            f"THEN trim(regexp_replace({s}, '{odd_ws}', ' ', 'g')) ELSE {s} END")


def _cut_tail(col: str, tail: str) -> str:
    return f"left({col}, length({col}) - coalesce(length({tail}), 0))"


def clean_select(inner: str, col: str = "prompt") -> str:
    """SELECT *, prompt_clean, flags FROM (inner).

    The flag tail is found once; the flags are parsed from it (short strings) and the cleaned
    text starts from the prompt without it.
    """
    sql = f"SELECT *, {tail_sql(col)} AS _tail FROM ({inner}) AS _s0"
    sql = f"SELECT *, {items_sql('_tail')} AS _items FROM ({sql}) AS _s1"
    # the gate tests the raw prompt, so each row evaluates the tail cut once, in one branch
    return (f"SELECT * EXCLUDE (_tail, _items), {clean_expr(_cut_tail(col, '_tail'), gate=col)} "
            f"AS prompt_clean, {flags_sql('_tail')} AS flags FROM ({sql}) AS _s2")


AR_RE = "[0-9]+\\s*:\\s*[0-9]+"
INT_RE = "[0-9]+"
FLOAT_RE = "[0-9]+(?:\\.[0-9]+)?"


def flags_sql(tail: str) -> str:
    """The parsed Pika flags, as a DuckDB struct, from the flag tail (NULL when there is none).

    The tail (`-ar 16:9 -neg blurry, ugly -motion 4`) is split on " -" into `name value` items;
    each flag takes the first item with its name (a repeated flag keeps its first value),
    numbers are taken from the start of the value. Expects a column ``_items`` next to `tail`
    (see `clean_select`), so the split happens once per row.
    """

    def value(name: str) -> str:
        item = f"list_filter(_items, x -> starts_with(x, '{name} '))[1]"
        return f"nullif(trim(substr({item}, {len(name) + 2})), '')"

    def num(name: str, pattern: str, typ: str) -> str:
        return f"TRY_CAST(nullif(regexp_extract({value(name)}, '^{pattern}'), '') AS {typ})"

    members = [
        f"aspect_ratio := nullif(regexp_extract({value('ar')}, '^{AR_RE}'), '')",
        f"motion := {num('motion', INT_RE, 'INTEGER')}",
        f"guidance := {num('gs', FLOAT_RE, 'FLOAT')}",
        f"negative := {value('neg')}",
        f"camera := {value('camera')}",
        f"fps := {num('fps', INT_RE, 'INTEGER')}",
        f"seed := {num('seed', INT_RE, 'BIGINT')}",
    ]
    return f"CASE WHEN {tail} IS NOT NULL THEN struct_pack({', '.join(members)}) END"


def items_sql(tail: str) -> str:
    return f"string_split(' ' || {tail}, ' -')"


ENTITY_RE = r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+\d*);"
_ENTITY = re.compile(ENTITY_RE)


def finish_clean(text: str | None) -> str | None:
    """Decode any entity the SQL pass left (rare: numeric and named ones beyond the common six)."""
    if text is None or "&" not in text or not _ENTITY.search(text):
        return text
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def uuid5(text: str) -> str:
    return str(_uuid.uuid5(_uuid.NAMESPACE_DNS, text))
