"""Property tests: what is written reads back unchanged, and ids agree with VidProM's rule."""

from __future__ import annotations

import csv
import json
import tempfile
import uuid as _uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidprom_lake import create_lake

# Any text a user could type: all of Unicode except surrogates and NUL (which no CSV/JSON
# prompt source can carry), including newlines, quotes, HTML and trailing spaces.
texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1, max_size=300,
).filter(lambda t: t.strip() != "")

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@SETTINGS
@given(st.lists(texts, min_size=1, max_size=12, unique=True))
def test_csv_roundtrip(prompts):
    with tempfile.TemporaryDirectory() as d:
        lake = create_lake(Path(d) / "lake")
        path = Path(d) / "p.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            # QUOTE_ALL: Python's csv leaves a lone \r unquoted, which no CSV reader can parse back
            w = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_ALL)
            w.writerow(["uuid", "prompt", "time"])
            for p in prompts:
                w.writerow([str(_uuid.uuid5(_uuid.NAMESPACE_DNS, p)), p, "Sun Sep  3 12:27:44 2023"])
        r = lake.ingest(path, format="vidprom")
        assert r.rows_added == len(prompts) and r.uuid_mismatches == 0
        got = {x["uuid"]: x["prompt"] for x in lake.query("select uuid, prompt from prompts").to_pylist()}
        assert got == {str(_uuid.uuid5(_uuid.NAMESPACE_DNS, p)): p for p in prompts}


@SETTINGS
@given(st.lists(texts, min_size=1, max_size=12))
def test_jsonl_roundtrip_and_uuid5(prompts):
    with tempfile.TemporaryDirectory() as d:
        lake = create_lake(Path(d) / "lake")
        path = Path(d) / "p.jsonl"
        path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
        r = lake.ingest(path)
        unique = set(prompts)
        assert r.rows_added == len(unique)
        rows = lake.query("select uuid, prompt, occurrences from prompts").to_pylist()
        assert {x["prompt"] for x in rows} == unique
        for x in rows:
            assert x["uuid"] == str(_uuid.uuid5(_uuid.NAMESPACE_DNS, x["prompt"]))
            assert x["occurrences"] == prompts.count(x["prompt"])
