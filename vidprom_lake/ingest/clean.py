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
    return (
        f"(substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-5' || substr({h}, 14, 3) || '-' || "
        f"lower(printf('%x', (('0x' || substr({h}, 17, 1))::INTEGER & 3) | 8)) || "
        f"substr({h}, 18, 3) || '-' || substr({h}, 21, 12))"
    )


def clean_sql(col: str) -> str:
    s = col
    for ent, rep in (("&quot;", '"'), ("&#39;", "'"), ("&#x27;", "'"), ("&lt;", "<"),
                     ("&gt;", ">"), ("&nbsp;", " "), ("&amp;", "&")):
        rep_sql = rep.replace("'", "''")
        s = f"replace({s}, '{ent}', '{rep_sql}')"
    s = f"regexp_replace({s}, '<[^<>]{{0,200}}>', ' ', 'g')"
    s = f"regexp_replace({s}, '(?i)Message:\\s*\\d+\\s*Attachments?', ' ', 'g')"
    s = f"regexp_replace({s}, '(?i)\\(Font:[^)]*\\)', ' ', 'g')"
    s = f"regexp_replace({s}, '{FLAG_START}.*$', ' ', 's')"
    s = f"trim(regexp_replace({s}, '\\s+', ' ', 'g'))"
    return s


def _flag(col: str, name: str, value: str) -> str:
    return f"regexp_extract({col}, '(?:^|\\s)-{name}\\s+({value})', 1)"


def _upto_next_flag(expr: str) -> str:
    return f"nullif(trim(regexp_replace({expr}, '{FLAG_START}.*$', '', 's')), '')"


AR_RE = "[0-9]+\\s*:\\s*[0-9]+"
INT_RE = "[0-9]+"
FLOAT_RE = "[0-9]+(?:\\.[0-9]+)?"


def flags_sql(col: str) -> str:
    """The parsed Pika flags as a DuckDB struct (NULL when the prompt has no flag at all)."""

    def num(name: str, pattern: str, typ: str) -> str:
        return f"TRY_CAST(nullif({_flag(col, name, pattern)}, '') AS {typ})"

    aspect = f"nullif({_flag(col, 'ar', AR_RE)}, '')"
    negative = _upto_next_flag(_flag(col, "neg", ".*"))
    camera = _upto_next_flag(_flag(col, "camera", ".*"))
    members = [
        f"aspect_ratio := {aspect}",
        f"motion := {num('motion', INT_RE, 'INTEGER')}",
        f"guidance := {num('gs', FLOAT_RE, 'FLOAT')}",
        f"negative := {negative}",
        f"camera := {camera}",
        f"fps := {num('fps', INT_RE, 'INTEGER')}",
        f"seed := {num('seed', INT_RE, 'BIGINT')}",
    ]
    return (
        f"CASE WHEN regexp_matches({col}, '{FLAG_START}') "
        f"THEN struct_pack({', '.join(members)}) END"
    )


_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+\d*);")


def finish_clean(text: str | None) -> str | None:
    """Decode any entity the SQL pass left (rare: numeric and named ones beyond the common six)."""
    if text is None or "&" not in text or not _ENTITY.search(text):
        return text
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def uuid5(text: str) -> str:
    return str(_uuid.uuid5(_uuid.NAMESPACE_DNS, text))
