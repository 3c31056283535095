"""The compiled uuid5, key hash and ctime passes of the ingest (ingest/normalise.py) equal
their references: Python's `uuid.uuid5`, and DuckDB's `try_strptime` on the VidProM format."""

from __future__ import annotations

import hashlib
import uuid

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidprom_lake.ingest.normalise import hash_keys, normalise, parse_ctime, uuid5_strings
from vidprom_lake.ingest.sources import VIDPROM_TIME_FORMAT

TEXT = st.text(alphabet=st.sampled_from(list("ab -\n\t€é😀日&;<>")), max_size=300)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(TEXT, st.none()), max_size=40))
def test_uuid5_equals_python(values: list[str | None]) -> None:
    got = uuid5_strings(pa.array(values, pa.string())).to_pylist()
    assert got == [None if v is None else str(uuid.uuid5(uuid.NAMESPACE_DNS, v)) for v in values]


def test_uuid5_block_edges_and_two_threads() -> None:
    # every message length around the 64-byte SHA-1 blocks (16 namespace bytes + text), and a
    # batch large enough to be split across two threads
    values = ["x" * n for n in range(300)] + [f"prompt {i} é" for i in range(40_000)]
    got = uuid5_strings(pa.array(values)).to_pylist()
    assert got == [str(uuid.uuid5(uuid.NAMESPACE_DNS, v)) for v in values]
    sliced = pa.array(["a", "bb", "ccc", "dddd"]).slice(1, 2)  # an array offset
    assert uuid5_strings(sliced).to_pylist() == [str(uuid.uuid5(uuid.NAMESPACE_DNS, v))
                                                 for v in ("bb", "ccc")]


LIFETIME_SCRIPT = """
import ctypes, uuid
import numpy as np, pyarrow as pa
from numba.core.runtime import rtsys
from vidprom_lake.ingest import _kernels as k
from vidprom_lake.ingest.normalise import _buffers, sha1_scratch
freed = []
start = [0]
def record(ctx, data, size):  # stands in for SHA1_Init/Update/Final: how many frees so far
    freed.append(rtsys.get_allocation_stats().free - start[0])
    return 1
CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
cb = CB(record)
addr = ctypes.cast(cb, ctypes.c_void_p).value
fns = np.array([addr, addr, addr], np.int64)
data, off, valid = _buffers(pa.array(["a prompt", "another"]))
ns = np.frombuffer(uuid.NAMESPACE_DNS.bytes, dtype=np.uint8).copy()
out, hashes = np.zeros(72, np.uint8), np.zeros(2, np.uint64)
args = (data, off, valid, ns, out, hashes, fns, *sha1_scratch())
k.uuid5_batch_openssl(*args)  # compiled (or loaded) first
freed.clear()
start[0] = rtsys.get_allocation_stats().free
k.uuid5_batch_openssl(*args)
print("calls", len(freed), "freed during the calls", max(freed))
"""


def test_uuid5_with_openssl_frees_nothing_while_openssl_runs(tmp_path) -> None:
    """OpenSSL's SHA-1 writes its context through a bare address, so nothing may be freed
    while the kernel calls it. (The context was once a numba array allocated in the kernel,
    freed after its last use by name, before the loop: OpenSSL then wrote into freed heap
    memory, and full ingests aborted with heap corruption under MALLOC_ARENA_MAX=1.) The
    SHA-1 functions are replaced by a callback that counts numba's frees."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_NRT_STATS="1")
    run = subprocess.run([sys.executable, "-c", LIFETIME_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    words = run.stdout.split()
    assert words[1] == "8", run.stdout  # 4 calls per prompt
    assert words[-1] == "0", run.stdout


def test_hash_keys_equal_strings_equal_hashes() -> None:
    keys = [str(uuid.uuid4()) for _ in range(50_000)]
    h = hash_keys(pa.array(keys + keys[:10] + [None]))
    assert len(np.unique(h[:50_000])) == 50_000
    assert (h[50_000:50_010] == h[:10]).all() and h[-1] == 0


DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "mon", "Xyz"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
          "dec", "Foo"]


@st.composite
def ctimes(draw: st.DrawFn) -> str:
    if draw(st.booleans()):  # an arbitrary spelling, for the fallback path
        return draw(st.text(alphabet=st.sampled_from(list("MonDec 0123456789:\t")), max_size=30))
    day = draw(st.integers(0, 32))
    d = draw(st.sampled_from([f"{day:2d}", f"{day:02d}", f"{day}"]))
    return (f"{draw(st.sampled_from(['', ' ', '  ']))}{draw(st.sampled_from(DAYS))} "
            f"{draw(st.sampled_from(MONTHS))} {d} {draw(st.integers(0, 25)):02d}:"
            f"{draw(st.integers(0, 61)):02d}:{draw(st.integers(0, 61)):02d} "
            f"{draw(st.sampled_from([1899, 1900, 1970, 2000, 2023, 2024, 2100, 2999, 3000]))}"
            f"{draw(st.sampled_from(['', ' ', '  ']))}")


def _duckdb_times(values: list[str | None]) -> list:
    con = duckdb.connect()
    con.register("t", pa.table({"s": pa.array(values, pa.string())}))
    return con.execute(f"SELECT try_strptime(trim(s), '{VIDPROM_TIME_FORMAT}')::TIMESTAMP "
                       "FROM t").fetchall()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ctimes(), st.none()), max_size=30))
def test_ctime_fast_path_agrees_with_duckdb(values: list[str | None]) -> None:
    """Where the compiled pass parses a value, DuckDB's strptime gives the same instant
    (what it leaves, the ingest hands to DuckDB)."""
    times, ok = parse_ctime(pa.array(values, pa.string()))
    ref = _duckdb_times(values)
    for v, t, good, (r,) in zip(values, times.to_pylist(), ok, ref, strict=True):
        if good:
            assert r is not None and t == r, v


def test_ctime_examples() -> None:
    times, ok = parse_ctime(pa.array(["Sat Dec  2 16:11:31 2023", " Thu Feb 29 00:00:00 2024 ",
                                      "Fri Dec  2 16:11:31 2023", "Sat Dec 02 16:11:31 2023",
                                      "Fri Feb 30 00:00:00 2024", None]))
    assert ok.tolist() == [True, True, False, True, False, False]  # wrong weekday: DuckDB's call
    assert str(times[0].as_py()) == "2023-12-02 16:11:31"


def test_normalise_split_across_threads_equals_one_pass() -> None:
    values = [f"a cat &amp; dog {i} -ar 16:9 -motion {i % 5}" if i % 3 else f"plain {i}  x"
              for i in range(45_000)]
    whole_clean, whole_flags = normalise(pa.array(values))
    parts = [normalise(pa.array(values[a:a + 10_000])) for a in range(0, 45_000, 10_000)]
    assert whole_clean.to_pylist() == sum((p[0].to_pylist() for p in parts), [])
    assert whole_flags.to_pylist() == sum((p[1].to_pylist() for p in parts), [])


def test_file_keys_first_occurrence_across_growth_and_key_zero() -> None:
    from vidprom_lake.ingest.pipeline import _FileKeys

    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64)
    keys[123] = 0  # the one value the table cannot mark as empty
    texts = keys ^ np.uint64(7)
    fk = _FileKeys(capacity=8)  # grows many times
    for a in range(0, len(keys), 4096):
        keep = np.ones(len(keys[a:a + 4096]), bool)
        repeat, _ = fk.first(keys[a:a + 4096], texts[a:a + 4096], keep)
        assert keep.all() and not repeat.any()
    again = np.concatenate([keys[:100], keys[120:130]])
    other = again ^ np.uint64(7)
    other[-5] = np.uint64(99)  # key 125 comes back with another text
    keep = np.ones(len(again), bool)
    repeat, prev = fk.first(again, other, keep)
    assert repeat.all() and not keep.any()
    assert (prev == again ^ np.uint64(7)).all()
    new = np.array([2**63 + 5, 2**63 + 5], dtype=np.uint64)  # a new key twice in one batch
    keep = np.ones(2, bool)
    repeat, _ = fk.first(new, new, keep)
    assert keep.tolist() == [True, False] and repeat.tolist() == [False, True]


def test_uuid5_compiled_sha1_where_openssl_is_missing(monkeypatch) -> None:
    from vidprom_lake.ingest import normalise as nz

    values = ["x" * n for n in range(200)] + ["é😀 日本", None]
    with_openssl, hashes = nz.uuid5_keys(pa.array(values))
    monkeypatch.setattr(nz, "openssl_sha1", lambda: None)
    compiled, compiled_hashes = nz.uuid5_keys(pa.array(values))
    want = [None if v is None else str(uuid.uuid5(uuid.NAMESPACE_DNS, v)) for v in values]
    assert compiled.to_pylist() == with_openssl.to_pylist() == want
    assert (compiled_hashes == hashes).all() and hashes[-1] == 0
    # the text hash is the first 8 bytes of the SHA-1 that uuid5 is made of
    for v, h in zip(values[:-1], hashes[:-1], strict=True):
        digest = hashlib.sha1(uuid.NAMESPACE_DNS.bytes + v.encode()).digest()
        assert int(h) == int.from_bytes(digest[:8], "big")


def test_canonical_uuids_is_the_uuid_pattern() -> None:
    from vidprom_lake.ingest.normalise import canonical_uuids
    from vidprom_lake.ingest.pipeline import UUID_RE

    u = str(uuid.uuid4())
    values = [u, u.upper(), u + "\n", " " + u, u[:-1], u[:-1] + "g", u.replace("-", "_"),
              u[:8] + u[9:] + "-", "", "0" * 36, "-" * 36, None,
              "00000000-0000-0000-0000-00000000000é"]
    arr = pa.array(values, pa.string())
    # the regex as the ingest used to apply it (RE2 through Arrow: `$` is the end of the text)
    want = pc.match_substring_regex(arr, UUID_RE.pattern).fill_null(False).to_pylist()
    assert canonical_uuids(arr).tolist() == want
    assert want[0] and sum(want) == 1
