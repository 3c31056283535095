"""Compiled (numba) kernels behind `normalise`: one pass over a batch's UTF-8 bytes.

Imported only by `vidprom_lake.ingest.normalise` when an ingest runs (numba is heavy). The
functions are compiled once per install and cached next to this file (``cache=True``); they
release the GIL, so batches can be normalised in threads beside DuckDB's parse and Lance's write.

Byte-level rules (the documented semantics are in docs/ingest.md and `normalise`):
white space is RE2's ``\\s`` = tab, newline, form feed, carriage return, space.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# flag names in FLAG_NAMES order: ar, motion, gs, neg, camera, fps, seed
_NAMES = np.frombuffer(b"armotiongsnegcamerafpsseed", dtype=np.uint8).copy()
_NAME_OFF = np.array([0, 2, 8, 10, 13, 19, 22, 26], dtype=np.int64)
_MESSAGE = np.frombuffer(b"message:", dtype=np.uint8).copy()
_ATTACH = np.frombuffer(b"attachment", dtype=np.uint8).copy()
_FONT = np.frombuffer(b"(font:", dtype=np.uint8).copy()
# entities decoded in the SQL-era order; none can overlap another (all are `&...;`)
_ENT = np.frombuffer(b"&quot;&#39;&#x27;&lt;&gt;&nbsp;&amp;", dtype=np.uint8).copy()
_ENT_OFF = np.array([0, 6, 11, 17, 21, 25, 31, 36], dtype=np.int64)
_ENT_REP = np.frombuffer(b"\"''<> &", dtype=np.uint8).copy()

# flag slots in the output arrays
AR, MOTION, GS, NEG, CAMERA, FPS, SEED = range(7)


@njit(cache=True, inline="always")
def _ws(b: int) -> bool:
    return b == 32 or b == 9 or b == 10 or b == 12 or b == 13


@njit(cache=True)
def _zs_at(d, i, e) -> int:
    """Byte length of the Unicode space separator (category Zs) at d[i], else 0.

    Zs is what DuckDB's trim() removes: U+0020, U+00A0, U+1680, U+2000-U+200A, U+202F,
    U+205F, U+3000 (tabs and newlines are kept).
    """
    c = d[i]
    if c == 32:
        return 1
    if c == 0xC2:
        return 2 if i + 1 < e and d[i + 1] == 0xA0 else 0
    if i + 2 >= e:
        return 0
    c1 = d[i + 1]
    c2 = d[i + 2]
    if c == 0xE1:
        return 3 if c1 == 0x9A and c2 == 0x80 else 0
    if c == 0xE2:
        if c1 == 0x80 and (0x80 <= c2 <= 0x8A or c2 == 0xAF):
            return 3
        return 3 if c1 == 0x81 and c2 == 0x9F else 0
    if c == 0xE3:
        return 3 if c1 == 0x80 and c2 == 0x80 else 0
    return 0


@njit(cache=True)
def _trim(d, a, b):
    """d[a:b] without leading and trailing space separators (DuckDB's trim)."""
    while a < b:
        k = _zs_at(d, a, b)
        if k == 0:
            break
        a += k
    while b > a:
        if d[b - 1] == 32:
            b -= 1
        elif b - 2 >= a and _zs_at(d, b - 2, b) == 2:
            b -= 2
        elif b - 3 >= a and _zs_at(d, b - 3, b) == 3:
            b -= 3
        else:
            break
    return a, b


@njit(cache=True, inline="always")
def _lower(b: int) -> int:
    return b + 32 if 65 <= b <= 90 else b


@njit(cache=True)
def _match_ci(d, i, e, lit) -> bool:
    n = lit.shape[0]
    if i + n > e:
        return False
    for k in range(n):  # noqa: SIM110 (nopython mode has no all() over a generator)
        if _lower(d[i + k]) != lit[k]:
            return False
    return True


@njit(cache=True)
def _name_at(d, j, e, sep_space_only) -> int:
    """Index of the flag name at d[j:] followed by white space (or exactly a space), else -1."""
    for k in range(7):
        a = _NAME_OFF[k]
        ln = _NAME_OFF[k + 1] - a
        if j + ln >= e:
            continue
        ok = True
        for m in range(ln):
            if d[j + m] != _NAMES[a + m]:
                ok = False
                break
        if ok:
            c = d[j + ln]
            if (c == 32) if sep_space_only else _ws(c):
                return k
    return -1


@njit(cache=True)
def tail_start(d, s, e) -> int:
    """Start of the Pika option tail: the first ``-name`` + white space at the start of the
    text or after white space; -1 if there is none."""
    for i in range(s, e):
        if d[i] == 45 and (i == s or _ws(d[i - 1])) and _name_at(d, i + 1, e, False) >= 0:
            return i
    return -1


@njit(cache=True)
def _digits(d, i, e) -> int:
    while i < e and 48 <= d[i] <= 57:
        i += 1
    return i


@njit(cache=True)
def _parse_int(d, a, b, limit):
    """The integer of the digits d[a:b] if it is <= limit, else -1 (no value)."""
    while a < b - 1 and d[a] == 48:
        a += 1
    if b - a > 19:
        return -1
    v = np.uint64(0)
    for k in range(a, b):
        v = v * np.uint64(10) + np.uint64(d[k] - 48)
    if v > np.uint64(limit):
        return -1
    return np.int64(v)


@njit(cache=True)
def _parse_flags(d, p, e, row, spans, ints, has):
    """Parse the tail d[p:e] into spans[row, slot] (value byte ranges) and ints[row, slot].

    The tail is split on " -" (after a leading space is put before it); each flag takes the
    first item that starts with its name and a space; its value is the rest of the item with
    spaces trimmed (no value if that is empty). Numbers are read from the value's start.
    """
    found = 0  # bit k: flag k has its value
    a = p + 1
    while a <= e:
        # item [a, b): up to the next " -" or the end
        b = a
        while b < e and not (d[b] == 32 and b + 1 < e and d[b + 1] == 45):
            b += 1
        k = _name_at(d, a, b, True)
        if k >= 0 and not (found >> k) & 1:
            found |= 1 << k
            vs = a + (_NAME_OFF[k + 1] - _NAME_OFF[k]) + 1
            vs, ve = _trim(d, vs, b)
            if ve > vs:
                if k == 0:  # ar: digits \s* : \s* digits
                    j = _digits(d, vs, ve)
                    if j > vs:
                        while j < ve and _ws(d[j]):
                            j += 1
                        if j < ve and d[j] == 58:
                            j += 1
                            while j < ve and _ws(d[j]):
                                j += 1
                            j2 = _digits(d, j, ve)
                            if j2 > j:
                                spans[row, AR, 0] = vs
                                spans[row, AR, 1] = j2
                elif k == 2:  # gs: digits (. digits)?
                    j = _digits(d, vs, ve)
                    if j > vs:
                        if j + 1 < ve and d[j] == 46 and 48 <= d[j + 1] <= 57:
                            j = _digits(d, j + 1, ve)
                        spans[row, GS, 0] = vs
                        spans[row, GS, 1] = j
                elif k == 3 or k == 4:  # neg, camera: the text
                    spans[row, k, 0] = vs
                    spans[row, k, 1] = ve
                else:  # motion, fps (int32), seed (int64)
                    j = _digits(d, vs, ve)
                    if j > vs:
                        limit = 9223372036854775807 if k == 6 else 2147483647
                        ints[row, k] = _parse_int(d, vs, j, limit)
        if b >= e:
            break
        a = b + 2
    has[row] = True


@njit(cache=True)
def _entities(src, a, b, dst) -> int:
    o = 0
    i = a
    while i < b:
        c = src[i]
        if c == 38:
            hit = -1
            for k in range(7):
                s0 = _ENT_OFF[k]
                ln = _ENT_OFF[k + 1] - s0
                if i + ln <= b:
                    ok = True
                    for m in range(1, ln):
                        if src[i + m] != _ENT[s0 + m]:
                            ok = False
                            break
                    if ok:
                        hit = k
                        break
            if hit >= 0:
                dst[o] = _ENT_REP[hit]
                o += 1
                i += _ENT_OFF[hit + 1] - _ENT_OFF[hit]
                continue
        dst[o] = c
        o += 1
        i += 1
    return o


@njit(cache=True)
def _tags(src, n, dst) -> int:
    """`<[^<>]{0,200}>` -> one space (200 characters, not bytes)."""
    o = 0
    i = 0
    while i < n:
        if src[i] == 60:
            j = i + 1
            chars = 0
            while j < n and src[j] != 60 and src[j] != 62:
                if (src[j] & 0xC0) != 0x80:
                    chars += 1
                    if chars > 200:
                        break
                j += 1
            if j < n and src[j] == 62 and chars <= 200:
                dst[o] = 32
                o += 1
                i = j + 1
                continue
        dst[o] = src[i]
        o += 1
        i += 1
    return o


@njit(cache=True)
def _discord(src, n, dst) -> int:
    """``message: <n> attachment(s)`` and ``(font: ...)`` (ASCII case-insensitive) -> a space."""
    o = 0
    i = 0
    while i < n:
        c = _lower(src[i])
        if c == 109 and _match_ci(src, i, n, _MESSAGE):
            j = i + 8
            while j < n and _ws(src[j]):
                j += 1
            j2 = _digits(src, j, n)
            if j2 > j:
                j = j2
                while j < n and _ws(src[j]):
                    j += 1
                if _match_ci(src, j, n, _ATTACH):
                    j += 10
                    if j < n and _lower(src[j]) == 115:
                        j += 1
                    dst[o] = 32
                    o += 1
                    i = j
                    continue
        elif c == 40 and _match_ci(src, i, n, _FONT):
            j = i + 6
            while j < n and src[j] != 41:
                j += 1
            if j < n:
                dst[o] = 32
                o += 1
                i = j + 1
                continue
        dst[o] = src[i]
        o += 1
        i += 1
    return o


@njit(cache=True)
def _spaces(src, a, b, dst, o) -> int:
    """Trim, collapse white space, trim: src[a:b] -> dst[o:], returns the end.

    A run of two or more white-space characters, or one tab/newline/CR/VT/FF/no-break space
    with any white space after it, becomes one space (one left-to-right pass).
    """
    a, b = _trim(src, a, b)
    start = o
    i = a
    while i < b:
        c = src[i]
        # fast path: a byte that is no white space, or a single space before a non-space
        if c > 32 and c != 0xC2:
            dst[o] = c
            o += 1
            i += 1
            continue
        if c == 32 and (i + 1 >= b or not _ws(src[i + 1])):
            dst[o] = c
            o += 1
            i += 1
            continue
        j = -1
        if _ws(c) and i + 1 < b and _ws(src[i + 1]):
            j = i + 2
        elif c == 9 or c == 10 or c == 13 or c == 11 or c == 12:
            j = i + 1
        elif c == 0xC2 and i + 1 < b and src[i + 1] == 0xA0:
            j = i + 2
        if j >= 0:
            while j < b and _ws(src[j]):
                j += 1
            dst[o] = 32
            o += 1
            i = j
        else:
            dst[o] = c
            o += 1
            i += 1
    # trim what the collapse left at either end
    lead, o = _trim(dst, start, o)
    if lead > start:
        n = o - lead
        for k in range(n):
            dst[start + k] = dst[lead + k]
        o = start + n
    return o


@njit(cache=True)
def _maybe_tail(row) -> bool:
    """Whether the row may hold a flag tail: a '-' at its start or after a byte <= 32 (a
    superset of `tail_start`'s rule, tested without branches so it runs at memory speed)."""
    hit = False
    prev = np.uint8(32)
    for i in range(row.shape[0]):
        x = row[i]
        hit |= (x == 45) & (prev <= 32)
        prev = x
    return hit


@njit(cache=True)
def _plain(row) -> bool:
    """Whether the (trimmed) row comes out of cleaning unchanged: no '&', '<' or ':' (the
    entity, tag and Discord rules), no two bytes <= 32 in a row, no control byte and no 0xC2
    (a no-break space's lead byte). Branch-free, like `_maybe_tail`."""
    odd = False
    n = row.shape[0]
    for i in range(n - 1):
        x = row[i]
        y = row[i + 1]
        odd |= (x == 38) | (x == 60) | (x == 58) | ((x <= 32) & (y <= 32)) | (x < 32) | (x == 0xC2)
    if n:
        x = row[n - 1]
        odd |= (x == 38) | (x == 60) | (x == 58) | (x < 32) | (x == 0xC2)
    return not odd


@njit(cache=True, nogil=True)
def normalise_batch(data, offsets, valid, want_flags):
    """Clean text and flag fields for every row of a string array (see `normalise`)."""
    n = offsets.shape[0] - 1
    out = np.empty(max(offsets[n] - offsets[0], 1), dtype=np.uint8)
    out_off = np.zeros(n + 1, dtype=np.int64)
    spans = np.full((n, 7, 2), -1, dtype=np.int64)
    ints = np.full((n, 7), -1, dtype=np.int64)
    has = np.zeros(n, dtype=np.bool_)
    amp_rows = np.zeros(n, dtype=np.bool_)  # rows whose clean text may still hold a '&'
    longest = 1
    for r in range(n):
        longest = max(longest, offsets[r + 1] - offsets[r])
    buf1 = np.empty(longest, dtype=np.uint8)
    buf2 = np.empty(longest, dtype=np.uint8)
    o = 0
    for r in range(n):
        out_off[r] = o
        if not valid[r]:
            continue
        s = offsets[r]
        e = offsets[r + 1]
        h = e
        if want_flags and _maybe_tail(data[s:e]):
            p = tail_start(data, s, e)
            if p >= 0:
                _parse_flags(data, p, e, r, spans, ints, has)
                h = p
        a, b = _trim(data, s, h)
        if _plain(data[a:b]):  # most prompts: the trimmed text as it is
            out[o:o + b - a] = data[a:b]
            o += b - a
            continue
        # each rule runs only where its trigger byte is: '&' (entities), '<' (tags, also made
        # by decoding &lt;), ':' (message:, (font:); the text moves between buf1 and buf2
        amp = False
        lt = False
        colon = False
        for i in range(s, h):
            c = data[i]
            amp |= c == 38
            lt |= c == 60
            colon |= c == 58
        if not (amp or lt or colon):
            o = _spaces(data, s, h, out, o)
            continue
        amp_rows[r] = amp
        m = h - s
        buf1[:m] = data[s:h]
        in1 = True
        if amp:
            m = _entities(buf1, 0, m, buf2)
            in1 = False
        if amp or lt:
            m = _tags(buf1, m, buf2) if in1 else _tags(buf2, m, buf1)
            in1 = not in1
        if colon:
            m = _discord(buf1, m, buf2) if in1 else _discord(buf2, m, buf1)
            in1 = not in1
        o = _spaces(buf1, 0, m, out, o) if in1 else _spaces(buf2, 0, m, out, o)
    out_off[n] = o
    return out, out_off, spans, ints, has, amp_rows


@njit(cache=True, nogil=True)
def gather(data, spans):
    """Concatenate data[spans[i,0]:spans[i,1]] (a start of -1 is no value) as Arrow buffers."""
    n = spans.shape[0]
    total = 0
    for i in range(n):
        if spans[i, 0] >= 0:
            total += spans[i, 1] - spans[i, 0]
    out = np.empty(max(total, 1), dtype=np.uint8)
    off = np.zeros(n + 1, dtype=np.int64)
    o = 0
    for i in range(n):
        a = spans[i, 0]
        if a >= 0:
            for k in range(a, spans[i, 1]):
                out[o] = data[k]
                o += 1
        off[i + 1] = o
    return out, off


@njit(cache=True, nogil=True)
def map_put_first(slots, keys, vals, keep, prev):
    """Open-addressing hash map (linear probing) of 64-bit key hashes -> 64-bit text hashes.

    ``slots`` is (capacity + 1, 2): rows [0, capacity) hold (key, value) with key 0 meaning
    empty (capacity a power of two); the last row holds (1, value) once key 0 itself is in.
    Key and value share a cache line, so a probe costs one memory access.
    For each i with keep[i]: a new key is inserted with vals[i]; a key already there sets
    prev[i] to its stored value and keep[i] to False. Returns how many keys were inserted.
    The caller keeps the table under half full.
    """
    cap = slots.shape[0] - 1
    mask = np.uint64(cap - 1)
    added = 0
    for i in range(keys.shape[0]):
        if not keep[i]:
            continue
        k = keys[i]
        if k == 0:
            j = cap
            if slots[j, 0] == 0:
                slots[j, 0] = 1
                slots[j, 1] = vals[i]
                added += 1
            else:
                prev[i] = slots[j, 1]
                keep[i] = False
            continue
        j = k & mask
        while True:
            s = slots[j, 0]
            if s == 0:
                slots[j, 0] = k
                slots[j, 1] = vals[i]
                added += 1
                break
            if s == k:
                prev[i] = slots[j, 1]
                keep[i] = False
                break
            j = (j + np.uint64(1)) & mask
    return added


# ----------------------------------------------------------------- uuid5, key hashes, ctime
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()
_M32 = 0xFFFFFFFF


@njit(cache=True, inline="always")
def _rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


@njit(cache=True, inline="always")
def _emit_uuid5(md, out, o, hashes, i):
    """The 16 digest bytes md[:16] as a version-5 uuid (36 ASCII bytes at out[o:]), and their
    first 8 bytes (big-endian) as hashes[i]."""
    h = np.uint64(0)
    for pos in range(8):
        h = (h << np.uint64(8)) | np.uint64(md[pos])
    hashes[i] = h
    for pos in range(16):
        byte = md[pos]
        if pos == 6:
            byte = (byte & 0x0F) | 0x50
        elif pos == 8:
            byte = (byte & 0x3F) | 0x80
        if pos == 4 or pos == 6 or pos == 8 or pos == 10:
            out[o] = 45  # '-'
            o += 1
        out[o] = _HEX[byte >> 4]
        out[o + 1] = _HEX[byte & 15]
        o += 2


@intrinsic
def _call3(typingctx, fn, a, b, c):  # noqa: ARG001 (numba passes the typing context)
    """Call the C function at address `fn` with three 64-bit words (pointers or sizes)."""
    sig = types.int32(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):  # noqa: ARG001
        word = ir.IntType(64)
        ptr = builder.inttoptr(args[0], ir.FunctionType(ir.IntType(32), [word] * 3).as_pointer())
        return builder.call(ptr, list(args[1:]))

    return sig, codegen


@njit(cache=True, nogil=True)
def uuid5_batch_openssl(data, offsets, valid, ns, out, hashes, fns, ctx, md):
    """`uuid5_batch` with OpenSSL's SHA-1 (fns: addresses of SHA1_Init, SHA1_Update and
    SHA1_Final), which uses the CPU's SHA instructions where it has them.

    `ctx` (at least 96 bytes: OpenSSL's SHA_CTX) and `md` (20 bytes) are the caller's: C writes
    to them through bare addresses, and numba frees an array it allocated itself after the
    array's last use *by name*, not after the last use of its address (a SHA_CTX allocated
    here was freed before the loop, and OpenSSL then wrote into freed heap memory)."""
    c = ctx.ctypes.data
    for i in range(offsets.shape[0] - 1):
        if not valid[i]:
            continue
        s = offsets[i]
        _call3(fns[0], c, 0, 0)
        _call3(fns[1], c, ns.ctypes.data, 16)
        _call3(fns[1], c, data.ctypes.data + s, offsets[i + 1] - s)
        _call3(fns[2], md.ctypes.data, c, 0)
        _emit_uuid5(md, out, 36 * i, hashes, i)


@njit(cache=True, nogil=True)
def uuid5_batch(data, offsets, valid, ns, out, hashes):
    """uuid5(NAMESPACE_DNS, text) of each valid string, as 36 ASCII bytes per row in `out`
    (row i at out[36*i:36*i+36]), and the digest's first 64 bits in hashes[i] (a hash of the
    text); SHA-1 over the 16 namespace bytes + the UTF-8 text."""
    w = np.zeros(80, dtype=np.int64)
    md = np.zeros(20, dtype=np.uint8)
    msg = np.zeros(128, dtype=np.uint8)
    for i in range(offsets.shape[0] - 1):
        if not valid[i]:
            continue
        s = offsets[i]
        length = offsets[i + 1] - s
        total = ((16 + length + 8) // 64 + 1) * 64
        if total > msg.shape[0]:
            msg = np.zeros(2 * total, dtype=np.uint8)
        # the padded message: namespace, text, 0x80, zeros, bit length (big-endian)
        msg[:16] = ns
        msg[16:16 + length] = data[s:s + length]
        msg[16 + length] = 0x80
        msg[17 + length:total - 8] = 0
        bits = np.int64(16 + length) * 8
        for t in range(8):
            msg[total - 1 - t] = (bits >> (8 * t)) & 0xFF
        h0 = np.int64(0x67452301)
        h1 = np.int64(0xEFCDAB89)
        h2 = np.int64(0x98BADCFE)
        h3 = np.int64(0x10325476)
        h4 = np.int64(0xC3D2E1F0)
        for blk in range(0, total, 64):
            for t in range(16):
                j = blk + 4 * t
                w[t] = ((np.int64(msg[j]) << 24) | (np.int64(msg[j + 1]) << 16)
                        | (np.int64(msg[j + 2]) << 8) | np.int64(msg[j + 3]))
            for t in range(16, 80):
                w[t] = _rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
            a, b, c, d, e = h0, h1, h2, h3, h4
            for t in range(0, 20):
                tmp = (_rotl(a, 5) + ((b & c) | ((b ^ _M32) & d)) + e + 0x5A827999 + w[t]) & _M32
                e, d, c, b, a = d, c, _rotl(b, 30), a, tmp
            for t in range(20, 40):
                tmp = (_rotl(a, 5) + (b ^ c ^ d) + e + 0x6ED9EBA1 + w[t]) & _M32
                e, d, c, b, a = d, c, _rotl(b, 30), a, tmp
            for t in range(40, 60):
                tmp = (_rotl(a, 5) + ((b & c) | (b & d) | (c & d)) + e + 0x8F1BBCDC + w[t]) & _M32
                e, d, c, b, a = d, c, _rotl(b, 30), a, tmp
            for t in range(60, 80):
                tmp = (_rotl(a, 5) + (b ^ c ^ d) + e + 0xCA62C1D6 + w[t]) & _M32
                e, d, c, b, a = d, c, _rotl(b, 30), a, tmp
            h0 = (h0 + a) & _M32
            h1 = (h1 + b) & _M32
            h2 = (h2 + c) & _M32
            h3 = (h3 + d) & _M32
            h4 = (h4 + e) & _M32
        for t in range(4):
            word = h0 if t == 0 else h1 if t == 1 else h2 if t == 2 else h3
            md[4 * t] = (word >> 24) & 0xFF
            md[4 * t + 1] = (word >> 16) & 0xFF
            md[4 * t + 2] = (word >> 8) & 0xFF
            md[4 * t + 3] = word & 0xFF
        _emit_uuid5(md, out, 36 * i, hashes, i)


@njit(cache=True, nogil=True)
def hash_strings(data, offsets, valid, out):
    """A 64-bit hash of each string (FNV-1a over 8-byte words, splitmix64 finish); 0 for NULL.

    Used only to find candidate equal keys: every hit is confirmed on the strings."""
    for i in range(offsets.shape[0] - 1):
        if not valid[i]:
            out[i] = np.uint64(0)
            continue
        s = offsets[i]
        e = offsets[i + 1]
        h = np.uint64(0xCBF29CE484222325) ^ np.uint64(e - s)
        j = s
        while j + 8 <= e:
            v = np.uint64(0)
            for t in range(8):
                v |= np.uint64(data[j + t]) << np.uint64(8 * t)
            h = (h ^ v) * np.uint64(0x100000001B3)
            j += 8
        while j < e:
            h = (h ^ np.uint64(data[j])) * np.uint64(0x100000001B3)
            j += 1
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
        out[i] = h


@njit(cache=True, nogil=True)
def canonical_uuids(data, offsets, valid, ok):
    """ok[i] = the string is a uuid as the lake writes it (36 bytes, lowercase hex in 8-4-4-4-12
    groups), so trimming and lowercasing would leave it as it is; False for NULL."""
    for i in range(offsets.shape[0] - 1):
        a = offsets[i]
        good = valid[i] and offsets[i + 1] - a == 36
        if good:
            for t in range(36):
                c = data[a + t]
                if t == 8 or t == 13 or t == 18 or t == 23:
                    good &= c == 45
                else:
                    good &= (48 <= c <= 57) | (97 <= c <= 102)
        ok[i] = good


_MONTHS = np.frombuffer(b"JanFebMarAprMayJunJulAugSepOctNovDec", dtype=np.uint8).copy()
_DAYS = np.frombuffer(b"MonTueWedThuFriSatSun", dtype=np.uint8).copy()
_MDAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


@njit(cache=True, inline="always")
def _digit(d, j):
    c = np.int64(d[j]) - 48
    return c if 0 <= c <= 9 else np.int64(-1000000)


@njit(cache=True)
def _days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True)
def parse_ctime(data, offsets, valid, micros, ok):
    """ctime text ("Sat Dec  2 16:11:31 2023", day space- or zero-padded, ASCII spaces around)
    -> microseconds since the epoch, ok[i] = True. Only the canonical form with a consistent
    weekday, a real date and a year 1900-2999 is taken; anything else is left with ok = False
    for the caller's exact (DuckDB strptime) path."""
    for i in range(offsets.shape[0] - 1):
        ok[i] = False
        if not valid[i]:
            continue
        a = offsets[i]
        b = offsets[i + 1]
        while a < b and data[a] == 32:
            a += 1
        while b > a and data[b - 1] == 32:
            b -= 1
        if b - a != 24:
            continue
        if data[a + 3] != 32 or data[a + 7] != 32 or data[a + 10] != 32 or data[a + 19] != 32:
            continue
        if data[a + 13] != 58 or data[a + 16] != 58:
            continue
        wd = -1
        for k in range(7):
            if (data[a] == _DAYS[3 * k] and data[a + 1] == _DAYS[3 * k + 1]
                    and data[a + 2] == _DAYS[3 * k + 2]):
                wd = k
        mo = -1
        for k in range(12):
            if (data[a + 4] == _MONTHS[3 * k] and data[a + 5] == _MONTHS[3 * k + 1]
                    and data[a + 6] == _MONTHS[3 * k + 2]):
                mo = k + 1
        if wd < 0 or mo < 0:
            continue
        d1 = np.int64(0) if data[a + 8] == 32 else _digit(data, a + 8)
        day = d1 * 10 + _digit(data, a + 9)
        hh = _digit(data, a + 11) * 10 + _digit(data, a + 12)
        mi = _digit(data, a + 14) * 10 + _digit(data, a + 15)
        ss = _digit(data, a + 17) * 10 + _digit(data, a + 18)
        yr = (_digit(data, a + 20) * 1000 + _digit(data, a + 21) * 100
              + _digit(data, a + 22) * 10 + _digit(data, a + 23))
        if yr < 1900 or yr > 2999 or hh < 0 or hh > 23 or mi < 0 or mi > 59 or ss < 0 or ss > 59:
            continue
        leap = (yr % 4 == 0 and yr % 100 != 0) or yr % 400 == 0
        dim = _MDAYS[mo - 1] + (1 if (mo == 2 and leap) else 0)
        if day < 1 or day > dim:
            continue
        days = _days_from_civil(yr, mo, day)
        if (days + 3) % 7 != wd:  # 1970-01-01 was a Thursday (Mon = 0)
            continue
        micros[i] = ((days * 86400) + hh * 3600 + mi * 60 + ss) * 1000000
        ok[i] = True
