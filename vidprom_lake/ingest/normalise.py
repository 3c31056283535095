"""The cleaned text and the parsed Pika flags of a batch of raw prompts, in one compiled pass.

This is the ingest's normalisation (`prompt_clean` and `flags`), run on the Arrow buffers of
each batch by the numba kernels in `_kernels.py`. It implements exactly the rules of the SQL
expressions in `clean.py` (a property test holds the two equal), about 10x cheaper in CPU:

- the Pika option tail is everything from the first ``-ar/-motion/-gs/-neg/-camera/-fps/-seed``
  followed by white space, at the start of the prompt or after white space; it is cut from the
  text and parsed into flags (split on " -"; each flag takes its first item; the value is the
  rest of the item, trimmed; numbers from the value's start; a number out of range is no value);
- in the text before it: the entities ``&quot; &#39; &#x27; &lt; &gt; &nbsp; &amp;`` are
  decoded, tags ``<...>`` (up to 200 characters) and the Discord leftovers ``Message: N
  Attachment(s)`` and ``(Font: ...)`` (ASCII case-insensitive) become a space;
- the text is trimmed of space separators, runs of white space (and any tab, newline, carriage
  return, vertical tab, form feed or no-break space) become one space, and it is trimmed again.

Rare entities beyond those seven are decoded afterwards in Python (`clean.finish_clean`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import FLAGS_TYPE


def warm_up() -> None:
    """Load (or, on a fresh install, compile and cache) every kernel of the ingest."""
    from ._kernels import map_put_first

    a = pa.array(["a -ar 1:1", "b -gs 2"])  # two rows: numba types one-row slices apart
    normalise(a)
    uuid5_strings(a)
    hash_keys(a)
    canonical_uuids(a)
    parse_ctime(a)
    map_put_first(np.zeros((3, 2), np.uint64), np.ones(1, np.uint64), np.ones(1, np.uint64),
                  np.ones(1, bool), np.zeros(1, np.uint64))


def warm_up_in_background() -> None:
    """`warm_up` in a thread (~1 s of imports and cache loading), so that it overlaps
    DuckDB's parse instead of delaying the first batch."""
    import contextlib
    import threading

    def warm() -> None:
        # an error here is raised again, in place, by the first real call
        with contextlib.suppress(Exception):
            warm_up()

    threading.Thread(target=warm, name="vidlake-warm-kernels", daemon=True).start()


_SPLIT_ROWS = 20_000


def _halves(fn: Callable[[int, int], Any], n: int) -> list[Any]:
    """`fn(a, b)` over rows [0, n): in one call for small batches, else over two halves on two
    threads (the kernels release the GIL); the results in row order. The threads end with
    the call (a pool costs ~0.1 ms next to tens of ms of kernel time per batch)."""
    if n < _SPLIT_ROWS:
        return [fn(0, n)]
    from concurrent.futures import ThreadPoolExecutor

    mid = n // 2
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vidlake-kernel") as pool:
        futures = [pool.submit(fn, 0, mid), pool.submit(fn, mid, n)]
        return [f.result() for f in futures]


def _string_array(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    n = len(offsets) - 1
    large = int(offsets[-1]) >= 2**31
    off = offsets if large else offsets.astype(np.int32)
    bitmap = None
    null_count = 0
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
        null_count = int(n - valid.sum())
    arr = pa.Array.from_buffers(pa.large_string() if large else pa.string(), n,
                                [bitmap, pa.py_buffer(off), pa.py_buffer(data)], null_count)
    return arr.cast(pa.string()) if large else arr


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(UTF-8 bytes, int64 offsets into them, validity) of a string array, without copying
    the bytes."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    n = len(arr)
    _, off_buf, data_buf = arr.buffers()[:3]
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(off_buf, dtype=off_type)[arr.offset: arr.offset + n + 1].astype(np.int64)
    data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None and data_buf.size
            else np.zeros(1, dtype=np.uint8))
    # always read-only (as DuckDB's buffers are): numba compiles, caches and loads one
    # version of each kernel per argument type, and `warm_up` must load the one used
    data.flags.writeable = False
    valid = (arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count
             else np.ones(n, dtype=bool))
    return data, offsets, valid


def normalise(prompts: pa.Array, *, pika_flags: bool = True) -> tuple[pa.Array, pa.Array]:
    """(`prompt_clean`, `flags`) for an array of raw prompts (NULL in, NULL out): the compiled
    rules of ingest/clean.py; rare entities beyond the common seven are left (see
    `clean_prompts`).

    With ``pika_flags=False`` (captions, which carry no option tail) nothing is cut and the
    flags are all NULL.
    """
    clean, flags, _ = _normalise(prompts, pika_flags)
    return clean, flags


def clean_prompts(prompts: pa.Array, *, pika_flags: bool = True) -> tuple[pa.Array, pa.Array]:
    """`normalise`, then any entity it left decoded (`clean.finish_clean`). Only rows that had
    a '&' can hold one (~9% of VidProM's), so only those are searched."""
    from .clean import ENTITY_RE, finish_clean

    clean, flags, amp = _normalise(prompts, pika_flags)
    if amp.any():
        at = np.flatnonzero(amp)
        some = clean.take(pa.array(at))
        ent = pc.match_substring_regex(some, ENTITY_RE).fill_null(False).to_numpy(zero_copy_only=False)
        if ent.any():
            fixed = [finish_clean(v) for v in some.filter(pa.array(ent)).to_pylist()]
            mask = np.zeros(len(clean), dtype=bool)
            mask[at[ent]] = True
            clean = pc.replace_with_mask(clean, pa.array(mask), pa.array(fixed, pa.string()))
    return clean, flags


def _normalise(prompts: pa.Array, pika_flags: bool) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """`normalise`, and which rows' clean text may still hold a '&'."""
    from . import _kernels as k

    data, offsets, valid = _buffers(prompts)
    n = len(offsets) - 1
    # one thread: the ingest runs this in a stage of its own, beside the other stages
    out, out_off, spans, ints, has, amp = k.normalise_batch(data, offsets, valid, pika_flags)
    clean = _string_array(out, out_off, valid)
    if not pika_flags or not has.any():
        return clean, pa.nulls(n, FLAGS_TYPE), amp

    def text(slot: int) -> pa.Array:
        buf, off = k.gather(data, spans[:, slot, :])
        return _string_array(buf, off, spans[:, slot, 0] >= 0)

    def integer(slot: int, typ: pa.DataType) -> pa.Array:
        v = ints[:, slot]
        return pa.array(v, typ, mask=v < 0)

    guidance = pc.cast(text(k.GS), pa.float32())
    children = [text(k.AR), integer(k.MOTION, pa.int32()), guidance, text(k.NEG),
                text(k.CAMERA), integer(k.FPS, pa.int32()), integer(k.SEED, pa.int64())]
    flags = pa.StructArray.from_arrays(children, fields=list(FLAGS_TYPE),
                                       mask=pa.array(~has))
    return clean, flags, amp


def uuid5_strings(prompts: pa.Array) -> pa.Array:
    """``uuid5(NAMESPACE_DNS, prompt)`` of each prompt as text (NULL in, NULL out), computed
    on the batch's UTF-8 bytes (the same SHA-1 that Python's `uuid.uuid5` takes)."""
    return uuid5_keys(prompts)[0]


def uuid5_keys(prompts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(`uuid5_strings`, a 64-bit hash of each prompt: the first 8 bytes of the same SHA-1;
    0 for NULL)."""
    import uuid

    from . import _kernels as k

    data, offsets, valid = _buffers(prompts)
    n = len(offsets) - 1
    ns = np.frombuffer(uuid.NAMESPACE_DNS.bytes, dtype=np.uint8).copy()
    out = np.zeros(36 * max(n, 1), dtype=np.uint8)
    hashes = np.zeros(n, dtype=np.uint64)
    fns = openssl_sha1()

    def run(a: int, b: int) -> None:
        args = (data, offsets[a:b + 1], valid[a:b], ns, out[36 * a:36 * b], hashes[a:b])
        if fns is not None:
            k.uuid5_batch_openssl(*args, fns, *sha1_scratch())
        else:
            k.uuid5_batch(*args)

    _halves(run, n)
    return _string_array(out, np.arange(0, 36 * n + 1, 36, dtype=np.int64), valid), hashes


def sha1_scratch() -> tuple[np.ndarray, np.ndarray]:
    """A SHA_CTX (256 bytes; OpenSSL's takes 96) and a 20-byte digest for
    `uuid5_batch_openssl`, owned by the caller for the whole call."""
    return np.zeros(32, dtype=np.int64), np.zeros(20, dtype=np.uint8)


@functools.cache
def openssl_sha1() -> np.ndarray | None:
    """The addresses of SHA1_Init, SHA1_Update and SHA1_Final in OpenSSL's libcrypto (the
    library Python's hashlib is built on), or None where it cannot be loaded or gives a wrong
    digest; then the compiled SHA-1 of `_kernels` is used.

    OpenSSL's SHA-1 uses the CPU's SHA instructions: ~0.12 us per prompt against ~0.5 us for
    the compiled one, the largest single cost of the ingest after the CSV parse. hashlib
    itself costs ~1 us per call in Python, so the kernel calls libcrypto directly.
    """
    import ctypes
    import ctypes.util
    import hashlib
    import uuid

    from . import _kernels as k

    for name in ("libcrypto.so.3", ctypes.util.find_library("crypto")):
        try:
            lib = ctypes.CDLL(name) if name else None
            if lib is None:
                continue
            fns = np.array([ctypes.cast(getattr(lib, f), ctypes.c_void_p).value or 0
                            for f in ("SHA1_Init", "SHA1_Update", "SHA1_Final")], np.int64)
        except (OSError, AttributeError):
            continue
        if not fns.all():
            continue
        text = "a known prompt, ü -ar 16:9".encode() * 3  # more than one 64-byte block
        data = np.frombuffer(text, dtype=np.uint8)
        out = np.zeros(36, dtype=np.uint8)
        hashes = np.zeros(1, dtype=np.uint64)
        ns = np.frombuffer(uuid.NAMESPACE_DNS.bytes, dtype=np.uint8).copy()
        k.uuid5_batch_openssl(data, np.array([0, len(text)], np.int64), np.ones(1, bool), ns,
                              out, hashes, fns, *sha1_scratch())
        want = hashlib.sha1(uuid.NAMESPACE_DNS.bytes + text).digest()
        if (bytes(out) == str(uuid.UUID(bytes=want[:16], version=5)).encode()
                and int(hashes[0]) == int.from_bytes(want[:8], "big")):
            return fns
    return None


def hash_keys(keys: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string (0 for NULL): candidates for equality, never a proof."""
    from . import _kernels as k

    data, offsets, valid = _buffers(keys)
    out = np.zeros(len(offsets) - 1, dtype=np.uint64)
    k.hash_strings(data, offsets, valid, out)
    return out


def canonical_uuids(uuids: pa.Array) -> np.ndarray:
    """Which strings are lowercase uuids in the canonical 8-4-4-4-12 form (False for NULL)."""
    from . import _kernels as k

    data, offsets, valid = _buffers(uuids)
    ok = np.zeros(len(offsets) - 1, dtype=bool)
    k.canonical_uuids(data, offsets, valid, ok)
    return ok


def parse_ctime(times: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(timestamps, parsed) for ctime text such as ``Sat Dec  2 16:11:31 2023``.

    Only the canonical form is parsed here; ``parsed`` is False where the caller must ask
    DuckDB's ``strptime`` (any other spelling, NULL, or no date at all)."""
    from . import _kernels as k

    data, offsets, valid = _buffers(times)
    n = len(offsets) - 1
    micros = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    k.parse_ctime(data, offsets, valid, micros, ok)
    return pa.array(micros, pa.timestamp("us"), mask=~ok), ok
