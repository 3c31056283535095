"""HDF5 embedding attach: rows matched by uuid whatever the file's order, streamed slice by
slice into new column files, NULL (never zeros) for prompts the file lacks."""

from __future__ import annotations

import uuid as _uuid
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pytest

from vidprom_lake import create_lake, synth
from vidprom_lake.errors import InputError
from vidprom_lake.ingest.hdf5 import _key_bytes, _Lookup, _Mapping

DIM = 12


def _h5(path: Path, uuids: list[str], vecs: np.ndarray, *, vlen: bool = False,
        layout: str = "chunked") -> Path:
    """`layout`: chunked (HDF5 reads the vectors) or contiguous (read through a mapping)."""
    with h5py.File(path, "w") as h5:
        if vlen:  # variable-length strings: h5py hands them back as Python objects
            h5.create_dataset("uuid", data=uuids, dtype=h5py.string_dtype())
        else:
            h5.create_dataset("uuid", data=np.array(uuids, dtype="S36"))
        h5.create_dataset("embeddings", data=vecs,
                          chunks=(5, vecs.shape[1]) if layout == "chunked" else None)
    return path


@pytest.fixture
def two_fragments(tmp_path: Path):
    """A lake of 130 + 90 prompts in two fragments, and its uuids in lake (scan) order."""
    lake = create_lake(tmp_path / "lake")
    lake.ingest(str(synth.write_vidprom_csv(tmp_path / "a.csv", 130, seed=21)))
    lake.ingest(str(synth.write_vidprom_csv(tmp_path / "b.csv", 90, seed=22)))
    assert len(lake.dataset("prompts").get_fragments()) == 2
    uuids = lake.dataset("prompts").to_table(columns=["uuid"]).column("uuid").to_pylist()
    return lake, uuids


def _file_order(kind: str, n: int, rng: np.random.Generator) -> list[int]:
    """Which lake rows the file holds, in the file's order."""
    if kind == "lake":
        return list(range(n))
    if kind == "reversed":
        return list(range(n))[::-1]
    if kind == "shuffled":
        return [int(i) for i in rng.permutation(n)]
    if kind == "fragments-swapped":  # in order within each fragment, not across them
        return list(range(130, n)) + list(range(130))
    if kind == "partial":  # every third prompt missing; in order otherwise
        return [i for i in range(n) if i % 3]
    if kind == "partial-shuffled":
        keep = [i for i in range(n) if i % 4 != 1]
        return [keep[int(j)] for j in rng.permutation(len(keep))]
    raise AssertionError(kind)


@pytest.mark.parametrize("layout", ["chunked", "contiguous"])
@pytest.mark.parametrize("kind", ["lake", "reversed", "shuffled", "fragments-swapped", "partial",
                                  "partial-shuffled"])
def test_attach_matches_by_uuid_in_any_file_order(two_fragments, tmp_path, kind, layout):
    lake, uuids = two_fragments
    rng = np.random.default_rng(5)
    picks = _file_order(kind, len(uuids), rng)
    # file rows of uuids the lake lacks, spread through the file
    strangers = [str(_uuid.uuid5(_uuid.NAMESPACE_URL, f"stranger {i}")) for i in range(9)]
    file_uuids = [uuids[i] for i in picks]
    for k, s in enumerate(strangers):
        file_uuids.insert((k * 37) % (len(file_uuids) + 1), s)
    vecs = rng.standard_normal((len(file_uuids), DIM)).astype("float32")
    path = _h5(tmp_path / "e.h5", file_uuids, vecs, layout=layout)

    r = lake.ingest(str(path), chunk_rows=7)  # 7-row slices: many per fragment

    assert r.rows_updated == len(picks)
    assert r.rows_read == len(file_uuids)
    assert f"{len(strangers):,} file rows have no prompt in the lake" in r.notes[-1]
    want = dict(zip(file_uuids, vecs, strict=True))
    got = lake.dataset("prompts").to_table(columns=["uuid", "embedding"]).to_pylist()
    assert len(got) == len(uuids)
    for g in got:
        if g["uuid"] in want:
            assert np.array_equal(np.array(g["embedding"], dtype="float32"), want[g["uuid"]])
        else:
            assert g["embedding"] is None  # NULL, never a zero vector
    assert lake.count(where="embedding IS NULL") == len(uuids) - len(picks)
    assert lake.log()[-1].counts["not_in_lake"] == len(strangers)


def test_attach_float16_with_missing_rows(two_fragments, tmp_path):
    lake, uuids = two_fragments
    rng = np.random.default_rng(6)
    picks = [int(i) for i in rng.permutation(len(uuids))[:150]]
    vecs = rng.standard_normal((150, DIM)).astype("float32")
    r = lake.ingest(str(_h5(tmp_path / "e.h5", [uuids[i] for i in picks], vecs)),
                    column="half", dtype="float16", chunk_rows=16)
    assert r.rows_updated == 150
    t = lake.dataset("prompts").to_table(columns=["uuid", "half"])
    assert str(t.schema.field("half").type.value_type) == "halffloat"
    by = dict(zip(t.column("uuid").to_pylist(), t.column("half").to_pylist(), strict=True))
    for k, i in enumerate(picks):
        assert np.array_equal(np.array(by[uuids[i]], dtype="float16"), vecs[k].astype("float16"))
    assert sum(v is None for v in by.values()) == len(uuids) - 150


@pytest.mark.parametrize("layout", ["chunked", "contiguous"])
def test_nan_in_a_later_slice_names_its_row_and_commits_nothing(two_fragments, tmp_path, layout):
    lake, uuids = two_fragments
    order = uuids[::-1]
    vecs = np.ones((len(order), DIM), "float32")
    vecs[201, 3] = np.inf  # lands in the first fragment (file row 201 = lake row 18)
    before = lake.dataset("prompts").version
    with pytest.raises(InputError, match=rf"e\.h5, row 201: embedding of uuid {order[201]} has NaN"):
        lake.ingest(str(_h5(tmp_path / "e.h5", order, vecs, layout=layout)), chunk_rows=8)
    assert lake.dataset("prompts").version == before
    assert "embedding" not in lake.dataset("prompts").schema.names
    assert (lake.log()[-1].kind, lake.log()[-1].status) == ("attach-embeddings", "failed")


@pytest.mark.parametrize("bad_fragment", [1, 3])
def test_a_bad_row_in_a_fragment_written_alongside_others_is_the_error(tmp_path, bad_fragment):
    """Fragments are written two at a time: the failure of one stops the others, and the error
    raised is the bad row's, whichever fragment it is in (never the others' stop)."""
    lake = create_lake(tmp_path / "lake")
    for k, n in enumerate((400, 30, 30, 30)):
        lake.ingest(str(synth.write_vidprom_csv(tmp_path / f"{k}.csv", n, seed=40 + k)))
    frags = lake.dataset("prompts").get_fragments()
    assert [f.count_rows() for f in frags] == [400, 30, 30, 30]
    uuids = lake.dataset("prompts").to_table(columns=["uuid"]).column("uuid").to_pylist()
    vecs = np.ones((len(uuids), DIM), "float32")
    bad = 400 + 30 * (bad_fragment - 1) + 2  # lake order = file order here
    vecs[bad, 1] = np.nan
    before = lake.dataset("prompts").version
    with pytest.raises(InputError, match=rf"row {bad}: embedding of uuid {uuids[bad]} has NaN"):
        lake.ingest(str(_h5(tmp_path / "e.h5", uuids, vecs)), chunk_rows=4)
    assert lake.dataset("prompts").version == before
    assert "embedding" not in lake.dataset("prompts").schema.names
    vecs[bad, 1] = 0.5  # the rerun, with the row mended, lands whole
    r = lake.ingest(str(_h5(tmp_path / "e2.h5", uuids, vecs)), chunk_rows=4)
    assert r.rows_updated == len(uuids) and lake.count(where="embedding IS NULL") == 0


def test_float16_overflow_names_its_row_never_stores_inf(two_fragments, tmp_path):
    lake, uuids = two_fragments
    vecs = np.ones((len(uuids), DIM), "float32")
    vecs[150, 0] = 70000.0  # finite as float32, inf as float16
    with pytest.raises(InputError, match=rf"e\.h5, row 150: embedding of uuid {uuids[150]} has "
                                         r"values beyond 65504, the largest float16"):
        lake.ingest(str(_h5(tmp_path / "e.h5", uuids, vecs)), column="half", dtype="float16")
    assert "half" not in lake.dataset("prompts").schema.names


def test_plain_layouts_are_read_through_a_mapping_others_through_hdf5(tmp_path):
    vecs = np.random.default_rng(3).standard_normal((40, DIM)).astype("float32")
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("plain", data=vecs)
        h5.create_dataset("chunked", data=vecs, chunks=(8, DIM))
        backwards = h5.create_dataset("backwards", shape=vecs.shape, dtype="float32",
                                      chunks=(8, DIM))
        for s in range(32, -1, -8):  # chunks written last first: none follows its neighbour
            backwards[s: s + 8] = vecs[s: s + 8]
        h5.create_dataset("gzip", data=vecs, compression="gzip")
        h5.create_dataset("half_rows", data=vecs, chunks=(8, DIM // 2))
        h5.create_dataset("big_endian", data=vecs.astype(">f4"))
        h5.create_dataset("empty", shape=(0, DIM), dtype="float32")
        h5.create_dataset("unwritten", shape=(40, DIM), dtype="float32", chunks=(8, DIM))
    with h5py.File(path, "r") as h5:
        for name, runs in (("plain", 1), ("chunked", 1), ("backwards", 5)):
            m = _Mapping.of(h5[name], str(path))
            assert m is not None and len(m.run_rows) == runs, name
            for a, b in ((0, 40), (3, 29), (8, 16), (39, 40)):
                views = m.rows(a, b)
                assert np.array_equal(np.concatenate(views), vecs[a:b]), (name, a, b)
                assert all(not v.flags.writeable and v.base is not None for v in views)
            m.release(0, 40)  # pages dropped from the mapping, the bytes still there
            assert np.array_equal(np.concatenate(m.rows(0, 40)), vecs)
        for name in ("gzip", "half_rows", "big_endian", "empty", "unwritten"):
            assert _Mapping.of(h5[name], str(path)) is None, name


@pytest.mark.parametrize("layout", ["chunked", "contiguous"])
def test_a_mapped_attach_names_the_row_of_a_nan_across_runs(two_fragments, tmp_path, layout):
    lake, uuids = two_fragments
    vecs = np.ones((len(uuids), DIM), "float32")
    vecs[77, 5] = np.nan
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("uuid", data=np.array(uuids, dtype="S36"))
        ds = h5.create_dataset("embeddings", shape=vecs.shape, dtype="float32",
                               chunks=(10, DIM) if layout == "chunked" else None)
        for s in range(210, -1, -10):
            ds[s: s + 10] = vecs[s: s + 10]
    with h5py.File(path, "r") as h5:
        assert _Mapping.of(h5["embeddings"], str(path)) is not None
    with pytest.raises(InputError, match=rf"e\.h5, row 77: embedding of uuid {uuids[77]} has NaN"):
        lake.ingest(str(path), chunk_rows=16)
    assert "embedding" not in lake.dataset("prompts").schema.names
    vecs[77, 5] = 1.0
    with h5py.File(path, "r+") as h5:
        h5["embeddings"][77] = vecs[77]
    assert lake.ingest(str(path), chunk_rows=16).rows_updated == len(uuids)
    got = lake.dataset("prompts").to_table(columns=["embedding"]).column(0).to_pylist()
    assert np.array_equal(np.array(got, dtype="float32"), vecs)


def test_vlen_string_uuids(two_fragments, tmp_path):
    lake, uuids = two_fragments
    vecs = np.arange(len(uuids) * DIM, dtype="float32").reshape(len(uuids), DIM)
    r = lake.ingest(str(_h5(tmp_path / "e.h5", uuids, vecs, vlen=True)))
    assert r.rows_updated == len(uuids)
    assert lake.count(where="embedding IS NULL") == 0


def test_key_bytes_views_arrow_and_falls_back_for_mixed_lengths():
    a = pa.array(["a" * 36, "b" * 36, "c" * 36, "d" * 36])
    assert _key_bytes(a.slice(1, 2)).tolist() == [b"b" * 36, b"c" * 36]
    chunked = pa.chunked_array([a.slice(0, 1), a.slice(3, 1)])
    assert _key_bytes(chunked).tolist() == [b"a" * 36, b"d" * 36]
    assert _key_bytes(pa.array(["short", "a-longer-key", "é"])).tolist() == [
        b"short", b"a-longer-key", "é".encode()]
    assert len(_key_bytes(pa.array([], pa.string()))) == 0


def test_lookup_never_cuts_a_longer_key_to_match():
    look = _Lookup(np.array([b"abc", b"abd"], dtype="S3"), "f.h5")
    keys = np.array([b"abcX", b"abd", b"zz"], dtype="S4")
    assert look.find(keys).tolist() == [-1, 1, -1]
    assert look.find(np.array([b"abc"], dtype="S3")).tolist() == [0]


def test_duplicate_uuid_in_file_is_an_error(two_fragments, tmp_path):
    lake, uuids = two_fragments
    dup = [*uuids[:5], uuids[2]]
    with pytest.raises(InputError, match=rf"uuid {uuids[2]} appears twice \(rows 2 and 5\)"):
        lake.ingest(str(_h5(tmp_path / "e.h5", dup, np.ones((6, DIM), "float32"))))


def test_write_behind_settles_new_files_only(tmp_path, monkeypatch):
    """Files that appear while the block runs are flushed and dropped from the cache (once
    more at the end); files that were there before are left alone; a temporary file renamed
    meanwhile is no error; a remote folder is left to the object store."""
    from vidprom_lake import storage

    (tmp_path / "old.lance").write_bytes(b"x")
    seen: list[str] = []
    real = storage.settle

    def settle(path: str) -> None:
        seen.append(Path(path).name)
        real(path)

    monkeypatch.setattr(storage, "settle", settle)
    with storage.write_behind(str(tmp_path), interval=0.01):
        tmp = tmp_path / ".tmp-being-written"
        tmp.write_bytes(b"y" * 100_000)
        tmp.rename(tmp_path / "new.lance")
    assert "new.lance" in seen and "old.lance" not in seen
    seen.clear()
    with storage.write_behind("s3://bucket/t.lance/data"):
        pass
    assert seen == []


def test_write_behind_raises_a_failed_flush(tmp_path, monkeypatch):
    from vidprom_lake import storage

    def settle(path: str) -> None:
        raise OSError(5, "Input/output error", path)

    monkeypatch.setattr(storage, "settle", settle)
    with pytest.raises(OSError, match="Input/output error"), storage.write_behind(str(tmp_path)):
        (tmp_path / "new.lance").write_bytes(b"z")


@pytest.mark.parametrize("piece", [7, 50, 1000, 1 << 18])
def test_the_hashing_pass_finds_bad_rows_in_pieces_that_cut_rows(tmp_path, piece):
    """The sha256 reader hands the file over in pieces that cut rows anywhere, and the runs of
    chunks lie in the file in another order than their rows: every bad row is found, and a
    row of large finite values whose sum overflows is not one."""
    from vidprom_lake.ingest.hdf5 import _FiniteScan
    from vidprom_lake.ingest.pipeline import file_sha256

    n = 230
    vecs = np.random.default_rng(3).standard_normal((n, DIM)).astype("float32")
    vecs[0, 0] = np.nan
    vecs[77, 11] = np.inf
    vecs[150, 3] = -np.inf
    vecs[229, 6] = np.nan
    vecs[100, :] = 3e38  # finite, but its sum is not
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("uuid", data=np.array([f"{i:036d}" for i in range(n)], dtype="S36"))
        ds = h5.create_dataset("embeddings", shape=vecs.shape, dtype="float32", chunks=(10, DIM))
        for s in (*range(100, 230, 10), *range(90, -1, -10)):  # chunks out of row order
            ds[s: s + 10] = vecs[s: s + 10]
    with h5py.File(path, "r") as h5:
        mapping = _Mapping.of(h5["embeddings"], str(path))
        assert mapping is not None and len(mapping.run_rows) > 2
        scan = _FiniteScan(mapping)
        file_sha256(path, chunk=piece, check=scan)
    assert np.flatnonzero(scan.bad).tolist() == [0, 77, 150, 229]


def test_a_bad_vector_of_a_uuid_not_in_the_lake_is_not_an_error(two_fragments, tmp_path):
    """Only the rows that are attached are checked (as when every slice was checked)."""
    lake, uuids = two_fragments
    stranger = str(_uuid.uuid4())
    vecs = np.ones((len(uuids) + 1, DIM), "float32")
    vecs[-1, 0] = np.nan  # a file row whose uuid the lake does not hold
    r = lake.ingest(str(_h5(tmp_path / "e.h5", [*uuids, stranger], vecs, layout="contiguous")))
    assert r.rows_updated == len(uuids) and lake.count(where="embedding IS NULL") == 0
