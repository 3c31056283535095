"""Ingest of the real formats: VidProM CSV, HDF5 embeddings, DiffusionDB parquet, generic files."""

from __future__ import annotations

import csv
import json
import uuid as _uuid
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidprom_lake import synth
from vidprom_lake.errors import InputError, SchemaError
from vidprom_lake.ingest import detect

NSFW = ("toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")


def u5(text: str) -> str:
    return str(_uuid.uuid5(_uuid.NAMESPACE_DNS, text))


def write_csv(path: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    header = header or ["uuid", "prompt", "time", *NSFW]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def row(text: str, time: str = "Sun Sep  3 12:27:44 2023", uuid: str | None = None, **scores) -> dict:
    r = {"uuid": uuid if uuid is not None else u5(text), "prompt": text, "time": time}
    r.update({k: scores.get(k, 0.001) for k in NSFW})
    return r


def test_vidprom_csv_quirks(lake, tmp_path):
    texts = [
        "a cat surfing a wave at sunset -ar 16:9 -motion 4  ",
        "multi\nline &quot;quoted&quot; prompt (Font: RETRO) Message: 1 Attachment  ",
        "<b>bold</b> dragon it&#39;s -neg blurry, ugly -camera zoom in -gs 24 -fps 24 -seed 42",
        "caf\u00e9 \U0001f600 emoji, tabs\tand \"quotes\"  ",
    ]
    path = write_csv(tmp_path / "v.csv", [row(t, toxicity=0.7 if i == 0 else 0.01)
                                          for i, t in enumerate(texts)])
    assert detect(str(path)) == "vidprom"
    r = lake.ingest(path)
    assert (r.rows_read, r.rows_added, r.uuid_mismatches) == (4, 4, 0)
    got = {x["uuid"]: x for x in lake.query("select * from prompts").to_pylist()}
    for t in texts:
        rec = got[u5(t)]
        assert rec["prompt"] == t  # raw, byte for byte, trailing spaces included
        assert rec["time"] == datetime(2023, 9, 3, 12, 27, 44, tzinfo=UTC)
        assert rec["source"] == "vidprom" and rec["batch_id"] == "batch-0001"
    assert got[u5(texts[0])]["prompt_clean"] == "a cat surfing a wave at sunset"
    assert got[u5(texts[0])]["flags"]["aspect_ratio"] == "16:9"
    assert got[u5(texts[0])]["flags"]["motion"] == 4
    assert abs(got[u5(texts[0])]["toxicity"] - 0.7) < 1e-6
    assert got[u5(texts[1])]["prompt_clean"] == 'multi line "quoted" prompt'
    assert got[u5(texts[1])]["flags"] is None
    f = got[u5(texts[2])]["flags"]
    assert (f["negative"], f["camera"], f["guidance"], f["fps"], f["seed"]) == (
        "blurry, ugly", "zoom in", 24.0, 24, 42)
    assert got[u5(texts[2])]["prompt_clean"] == "bold dragon it's"
    assert got[u5(texts[3])]["prompt_clean"] == 'caf\u00e9 \U0001f600 emoji, tabs and "quotes"'


def test_uuid_mismatch_is_accepted_and_reported(lake, tmp_path):
    path = write_csv(tmp_path / "v.csv", [row("real text", uuid="6a83eb92-faa0-572b-9e1f-67dec99b711d"),
                                          row("other text")])
    r = lake.ingest(path)
    assert r.rows_added == 2 and r.uuid_mismatches == 1
    assert any("6a83eb92-faa0-572b-9e1f-67dec99b711d" in n for n in r.notes)
    t = lake.query("select uuid, uuid_mismatch from prompts order by uuid_mismatch").to_pylist()
    assert t[1] == {"uuid": "6a83eb92-faa0-572b-9e1f-67dec99b711d", "uuid_mismatch": True}
    assert t[0]["uuid_mismatch"] is False


def test_idempotent_and_overlapping(lake, tmp_path):
    rows_all = list(synth.rows(120, seed=3))
    hdr = list(rows_all[0])
    a = write_csv(tmp_path / "a.csv", rows_all[:80], hdr)
    b = write_csv(tmp_path / "b.csv", rows_all[40:], hdr)
    assert lake.ingest(a).rows_added == 80
    r = lake.ingest(a)
    assert (r.rows_added, r.already_in_lake) == (0, 80)
    r = lake.ingest(b)
    assert (r.rows_added, r.already_in_lake) == (40, 40)
    assert lake.count() == 120
    # a no-op batch does not create a new table version
    v = lake.head()["prompts"]
    lake.ingest(b)
    assert lake.head()["prompts"] == v


def test_synthetic_vidprom_matches_python_csv_reader(lake, vidprom_csv):
    r = lake.ingest(vidprom_csv)
    assert r.rows_added == 200 and r.uuid_mismatches == 0
    with open(vidprom_csv, newline="", encoding="utf-8") as fh:
        expected = {x["uuid"]: x["prompt"] for x in csv.DictReader(fh)}
    got = {x["uuid"]: x["prompt"] for x in lake.query("select uuid, prompt from prompts").to_pylist()}
    assert got == expected


def test_jsonl_with_column_mapping(lake, tmp_path):
    path = tmp_path / "p.jsonl"
    recs = [{"text": "a fox in snow", "created_at": "2024-01-02T03:04:05+02:00", "lang": "en"},
            {"text": "a fox in snow", "created_at": "2024-01-01T00:00:00Z", "lang": "de"},
            {"text": "robot dance", "created_at": "2024-02-01T00:00:00Z", "lang": "en"}]
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    r = lake.ingest(path, prompt_column="text", time_column="created_at")
    assert r.rows_added == 2 and r.unknown_columns == ["lang"]
    fox = lake.get_prompt(u5("a fox in snow"))
    assert fox["occurrences"] == 2
    assert fox["time"] == datetime(2024, 1, 1, tzinfo=UTC)  # earliest wins
    assert json.loads(fox["extra"]) == {"lang": "de"}
    assert fox["source"] == "p"


def test_generic_csv_and_parquet(lake, tmp_path):
    p = tmp_path / "my.parquet"
    pq.write_table(pa.table({"caption": ["x one", "x two"], "ts": [1700000000, 1700000100],
                             "score": [1.5, 2.5]}), p)
    r = lake.ingest(p, time_column="ts", source="mine")
    assert r.rows_added == 2
    rec = lake.get_prompt(u5("x one"))
    assert rec["source"] == "mine" and rec["time"].year == 2023
    assert json.loads(rec["extra"]) == {"score": 1.5}
    c = tmp_path / "plain.csv"
    c.write_text("id,prompt,when\n7,hello world,2023-01-01 10:00:00\n")
    r = lake.ingest(c, id_column="id", time_column="when")
    assert r.rows_added == 1 and lake.get_prompt(u5("hello world"))["source_id"] == "7"


def test_strict_columns_refuses_unknown(lake, tmp_path):
    c = tmp_path / "plain.csv"
    c.write_text("prompt,extra_col\nhello,1\n")
    with pytest.raises(InputError, match="unknown column.*extra_col"):
        lake.ingest(c, strict_columns=True)
    assert lake.count() == 0


def test_diffusiondb(lake, tmp_path):
    t0 = datetime(2022, 8, 1, tzinfo=UTC)
    rows = [{"image_name": f"{i}.png", "prompt": ["p one", "p two", "p one"][i], "part_id": 1,
             "seed": i, "step": 50, "cfg": 7.0, "sampler": 8, "width": 512, "height": 512,
             "user_name": "abc", "timestamp": t0.replace(hour=3 - i), "image_nsfw": 0.1,
             "prompt_nsfw": 0.2} for i in range(3)]
    p = tmp_path / "metadata.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p)
    assert detect(str(p)) == "diffusiondb"
    r = lake.ingest(p)
    assert r.rows_added == 2
    one = lake.get_prompt(u5("p one"))
    assert one["occurrences"] == 2 and one["time"].hour == 1  # earliest of the two images
    assert one["source"] == "diffusiondb" and one["source_id"] == "2.png"
    assert json.loads(one["extra"])["cfg"] == 7.0


def _h5(path: Path, uuids: list[str], vecs: np.ndarray) -> Path:
    with h5py.File(path, "w") as h5:
        h5.create_dataset("uuid", data=np.array(uuids, dtype="S36"))
        h5.create_dataset("embeddings", data=vecs)
    return path


def test_hdf5_attach_by_uuid_any_order(lake, vidprom_csv, tmp_path):
    lake.ingest(vidprom_csv)
    uuids = [r["uuid"] for r in lake.query("select uuid from prompts").to_pylist()]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(uuids))[:150]
    vecs = rng.standard_normal((150, 16)).astype("float32")
    extra = [u5("not in the lake")]
    path = _h5(tmp_path / "e.h5", [uuids[i] for i in order] + extra,
               np.vstack([vecs, np.ones((1, 16), "float32")]))
    r = lake.ingest(path)
    assert r.rows_updated == 150
    got = lake.dataset("prompts").to_table(columns=["uuid", "embedding"]).to_pylist()
    by = {g["uuid"]: g["embedding"] for g in got}
    for k, i in enumerate(order):
        assert np.allclose(by[uuids[i]], vecs[k])
    assert sum(v is None for v in by.values()) == 50  # never a zero vector for a missing one
    meta = lake.dataset("prompts").schema.field("embedding").metadata
    assert meta[b"vidlake:dims"] == b"16"
    # a second file fills the rest through the existing column
    rest = [i for i in range(len(uuids)) if i not in set(order)]
    vec2 = rng.standard_normal((len(rest), 16)).astype("float32")
    r = lake.ingest(_h5(tmp_path / "e2.h5", [uuids[i] for i in rest], vec2))
    assert r.rows_updated == 50
    assert lake.count(where="embedding IS NULL") == 0
    # prompts are untouched by the attach
    assert lake.count() == 200


def test_hdf5_rejects_nan_wrong_dim_and_keeps_lake(lake, vidprom_csv, tmp_path):
    lake.ingest(vidprom_csv)
    uuids = [r["uuid"] for r in lake.query("select uuid from prompts").to_pylist()]
    vecs = np.ones((200, 8), "float32")
    vecs[17, 3] = np.nan
    with pytest.raises(InputError, match=r"e\.h5, row 17: .*NaN"):
        lake.ingest(_h5(tmp_path / "e.h5", uuids, vecs))
    assert "embedding" not in lake.dataset("prompts").schema.names
    lake.ingest(_h5(tmp_path / "ok.h5", uuids, np.ones((200, 8), "float32")))
    with pytest.raises(SchemaError, match="--column"):
        lake.ingest(_h5(tmp_path / "d.h5", uuids, np.ones((200, 12), "float32")))
    r = lake.ingest(_h5(tmp_path / "d2.h5", uuids, np.ones((200, 12), "float32")), column="emb12",
                    dtype="float16")
    assert r.rows_updated == 200
    assert str(lake.dataset("prompts").schema.field("emb12").type) == "fixed_size_list<item: halffloat>[12]"


def test_hdf5_missing_dataset(lake, tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as h5:
        h5.create_dataset("vectors_only", data=np.ones((2, 2)))
    with pytest.raises(InputError, match="no uuid dataset"):
        lake.ingest(p)


def test_background_hash_gives_the_sha256_and_stops_when_cancelled(tmp_path):
    import contextlib
    import hashlib
    import threading

    from vidprom_lake.ingest.pipeline import BackgroundHash, HashCancelled, file_sha256

    data = bytes(range(256)) * 5000  # several reads of the hash's buffer
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert BackgroundHash(path).result() == hashlib.sha256(data).hexdigest()
    stop = threading.Event()
    stop.set()
    with pytest.raises(HashCancelled):
        file_sha256(path, stop=stop)
    cancelled = BackgroundHash(path)
    cancelled.cancel()  # whether it finished first or stopped, it never hangs or lies
    with contextlib.suppress(HashCancelled):
        assert cancelled.result() == hashlib.sha256(data).hexdigest()
