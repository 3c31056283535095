"""Compiled (numba) kernels of the dedup engines (`dedup.py`).

- `sketch_filter`: one pass over a cell's bound matrix keeps only the pairs that survive both
  the bound and the sign-sketch estimate, so no per-pair arrays of the (far larger)
  bound-passing set are ever built;
- `int8_pair_dots`: integer dot products of gathered int8 rows, without gathering them;
- `quantize`: the int8 copy of float32 rows (per-row scale) in one pass;
- `exact_dots`: correctly rounded dot products of float32 rows (Python's `math.fsum`
  algorithm on the exact float64 products), ~100x cheaper than fsum over Python floats.

Imported only when a dedup runs; compiled once per install and cached next to this file; the
kernels release the GIL, so they run on one thread per core.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@njit(cache=True, nogil=True)
def sketch_filter(s, cut, en_q, bits_q, en_k, bits_k, cos_tab, c, pos_q, pos_k, ordered):
    """Pairs (i, j, estimate), and the number that passed the bound, of the bound matrix `s` (rows: queries, columns: kept rows) with
    bound s[i, j] >= cut whose sketch estimate s - |e_i||e_j| max(0, 1 - cos(pi h / bits) - c)
    is >= cut too (h: differing sketch bits; `cos_tab[h]` precomputed). With `ordered`, only
    pairs with pos_k[j] < pos_q[i] (the earlier prompt on the kept side) count."""
    nq, nk = s.shape
    words = bits_q.shape[1]
    total = 0
    for i in range(nq):
        for j in range(nk):
            if s[i, j] >= cut:
                total += 1
    oi = np.empty(total, np.int64)
    oj = np.empty(total, np.int64)
    ov = np.empty(total, np.float64)
    m = 0
    for i in range(nq):
        ei = np.float64(en_q[i])
        for j in range(nk):
            up = np.float64(s[i, j])
            if up < cut:
                continue
            if ordered and pos_k[j] >= pos_q[i]:
                continue
            h = 0
            for w in range(words):
                h += _popcount(bits_q[i, w] ^ bits_k[j, w])
            slack = 1.0 - cos_tab[h] - c
            est = up - ei * np.float64(en_k[j]) * slack if slack > 0.0 else up
            if est >= cut:
                oi[m] = i
                oj[m] = j
                ov[m] = est
                m += 1
    return oi[:m], oj[:m], ov[:m], total


@njit(cache=True, nogil=True)
def int8_pair_dots(a, ai, b, bi):
    """a[ai[n]] . b[bi[n]] for int8 row matrices a and b, accumulated exactly in int32."""
    n = len(ai)
    d = a.shape[1]
    out = np.empty(n, np.float64)
    for p in range(n):
        x = a[ai[p]]
        y = b[bi[p]]
        acc = np.int32(0)
        for t in range(d):
            acc += np.int32(x[t]) * np.int32(y[t])
        out[p] = acc
    return out


@njit(cache=True, nogil=True)
def quantize(x):
    """(int8 rows, float32 scale per row): x ~ q * scale, scale = max|x| / 127 (1 for a zero
    row), q = x / scale rounded half to even (as numpy's rint)."""
    n, d = x.shape
    q = np.empty((n, d), np.int8)
    scale = np.empty(n, np.float32)
    for i in range(n):
        m = np.float32(0.0)
        for t in range(d):
            v = abs(x[i, t])
            if v > m:
                m = v
        s = m / np.float32(127.0)
        if not s > 0:
            s = np.float32(1.0)
        scale[i] = s
        for t in range(d):
            q[i, t] = np.int8(np.rint(x[i, t] / s))
    return q, scale


@njit(cache=True, inline="always")
def _fsum_product(a, b):
    """math.fsum of a[t] * b[t] (float32 inputs: every product is exact in float64)."""
    partials = np.empty(128, np.float64)
    np_ = 0
    for t in range(len(a)):
        x = np.float64(a[t]) * np.float64(b[t])
        i = 0
        for k in range(np_):
            y = partials[k]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                partials[i] = lo
                i += 1
            x = hi
        partials[i] = x
        np_ = i + 1
    # the correctly rounded sum of the partials (CPython's msum tail)
    hi = 0.0
    n = np_
    if n > 0:
        n -= 1
        hi = partials[n]
        lo = 0.0
        while n > 0:
            x = hi
            n -= 1
            y = partials[n]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


@njit(cache=True, inline="always")
def _dot_rounded(a, b):
    """The correctly rounded dot product of float32 rows: a compensated sum (Ogita-Rump-Oishi
    Sum2) when its error bound proves the rounding, else the exact `_fsum_product`."""
    n = len(a)
    s = 0.0
    c = 0.0
    absum = 0.0
    for t in range(n):
        p = np.float64(a[t]) * np.float64(b[t])  # exact: 24 + 24 bits
        absum += abs(p)
        h = s + p
        z = h - s
        c += (s - (h - z)) + (p - z)
        s = h
    h = s + c
    z = h - s
    lo = (s - (h - z)) + (c - z)  # h + lo == s + c exactly
    # |s + c - exact| <= gamma_{n-1}^2 * sum|p| (Sum2); x1.01 covers the rounding of absum
    g = (n * 2.0 ** -53) / (1.0 - n * 2.0 ** -53)
    err = abs(lo) + g * g * absum * 1.01
    if h != 0.0:
        m, e = math.frexp(abs(h))
        gap = math.ldexp(1.0, e - 54) if m == 0.5 else math.ldexp(1.0, e - 53)  # gap below |h|
        if err < 0.5 * gap:
            return h
    return _fsum_product(a, b)


@njit(cache=True, nogil=True)
def exact_dots(a, b):
    """Row-wise dot products of float32 rows a[n] . b[n], correctly rounded."""
    out = np.empty(a.shape[0], np.float64)
    for n in range(a.shape[0]):
        out[n] = _dot_rounded(a[n], b[n])
    return out


def warm_up() -> None:
    """Load (or compile and cache) every kernel."""
    s = np.ones((1, 1), np.float32)
    e = np.ones(1, np.float32)
    b = np.zeros((1, 1), np.uint64)
    p = np.zeros(1, np.int64)
    sketch_filter(s, 0.5, e, b, e, b, np.ones(65), 0.1, p, p, False)
    q, _ = quantize(s)
    int8_pair_dots(q, p, q, p)
    exact_dots(s, s)
