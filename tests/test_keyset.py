"""KeySet: sorted fixed-width key bytes for one-at-a-time membership tests."""

from __future__ import annotations

import pickle
import uuid

import pyarrow as pa
import pytest

from vidprom_lake.keyset import KeySet


@pytest.mark.parametrize("typ", [pa.string(), pa.large_string()])
def test_uuids_of_one_width_from_a_sliced_chunked_column(typ):
    keys = [str(uuid.uuid5(uuid.NAMESPACE_DNS, str(i))) for i in range(1000)]
    col = pa.chunked_array([pa.array(keys[:400], typ), pa.array(keys[400:], typ)])
    ks = KeySet.of_arrow(col.slice(3, 990))  # offsets into both chunks' buffers
    assert len(ks) == 990 and ks.arr.dtype.itemsize == 36
    assert list(ks.arr) == sorted(k.encode() for k in keys[3:993])
    assert all(k in ks for k in keys[3:993])
    assert not any(k in ks for k in keys[:3] + keys[993:])
    assert str(uuid.uuid4()) not in ks


def test_keys_of_mixed_widths_nulls_and_non_ascii():
    ks = KeySet.of_arrow(pa.array(["b", None, "abcd", "é-clip", "abc"]))
    assert ks.tolist() == ["abc", "abcd", "b", "é-clip"]  # UTF-8 byte order
    assert {"abc", "abcd", "b", "é-clip"} == {k for k in ["abc", "abcd", "b", "é-clip"] if k in ks}
    # neither a prefix nor a longer key matches (no truncation to the width)
    assert "ab" not in ks and "abcde" not in ks and "é-clip-2" not in ks and "" not in ks


def test_empty_and_pickled():
    assert "x" not in KeySet.of([]) and len(KeySet.of_arrow(pa.array([None], pa.string()))) == 0
    ks = KeySet.of({"model-1", "model-2"})
    back = pickle.loads(pickle.dumps(ks))
    assert "model-2" in back and "model-3" not in back and back.tolist() == ks.tolist()


def test_lake_uuid_index_holds_every_prompt(lake, vidprom_csv):
    lake.ingest(vidprom_csv)
    ks = lake.uuid_index()
    uuids = lake.query("select uuid from prompts").column(0).to_pylist()
    assert len(ks) == len(uuids) == 200 and all(u in ks for u in uuids)
    assert str(uuid.uuid4()) not in ks
