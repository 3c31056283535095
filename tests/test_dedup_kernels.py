"""The compiled dedup kernels equal their plain numpy / math.fsum references."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vidprom_lake._dedup_kernels import exact_dots, int8_pair_dots, quantize, sketch_filter

f32 = st.floats(width=32, allow_nan=False, allow_infinity=False, min_value=-(2.0 ** 60), max_value=2.0 ** 60)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64).flatmap(lambda d: st.tuples(arrays(np.float32, (3, d), elements=f32),
                                                      arrays(np.float32, (3, d), elements=f32))))
def test_exact_dots_equal_fsum(ab):
    a, b = ab
    a[1] = b[1]
    a[2] = -b[2]
    ref = [math.fsum(x) for x in a.astype(np.float64) * b.astype(np.float64)]
    assert exact_dots(a, b).tolist() == ref


def test_exact_dots_on_cancellation_and_midpoints():
    # sums that land exactly on a rounding midpoint or cancel to a tiny rest: the
    # compensated fast path cannot prove these and must fall back to the exact sum
    rows = [
        [1.0, 2.0 ** -53, 2.0 ** -80],
        [1.0, 2.0 ** -53, -(2.0 ** -80)],
        [1e30, 1.0, -1e30],
        [2.0 ** 60, 2.0 ** 7, -(2.0 ** 60), 2.0 ** -40],
        [0.1] * 10 + [-1.0],
    ]
    for r in rows:
        a = np.array([r], np.float32)
        b = np.ones_like(a)
        assert exact_dots(a, b)[0] == math.fsum(np.float64(v) for v in a[0])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 3072)).astype(np.float32)
    b = rng.standard_normal((500, 3072)).astype(np.float32)
    ref = [math.fsum(x) for x in a.astype(np.float64) * b.astype(np.float64)]
    assert exact_dots(a, b).tolist() == ref


def test_quantize_and_int8_dots_equal_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 97)).astype(np.float32)
    x[0] = 0.0
    x[1, :] = 0.5  # ties at .5 after scaling round half to even, as np.rint
    q, s = quantize(x)
    scale = np.abs(x).max(1) / np.float32(127)
    scale = np.where(scale > 0, scale, 1).astype(np.float32)
    assert np.array_equal(s, scale)
    assert np.array_equal(q, np.rint(x / scale[:, None]).astype(np.int8))
    ai = rng.integers(0, 300, 2000)
    bi = rng.integers(0, 300, 2000)
    ref = np.einsum("ij,ij->i", q[ai].astype(np.int32), q[bi].astype(np.int32))
    assert np.array_equal(int8_pair_dots(q, ai, q, bi), ref)


def _popcount_rows(a: np.ndarray) -> np.ndarray:
    return np.array([sum(bin(int(w)).count("1") for w in row) for row in a])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 3), st.floats(0.0, 0.6),
       st.floats(-0.5, 0.9), st.booleans(), st.integers(0, 2 ** 32))
def test_sketch_filter_equals_reference(nq, nk, words, c, cut, ordered, seed):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (nq, nk)).astype(np.float32)
    eq = rng.uniform(0, 1, nq).astype(np.float32)
    ek = rng.uniform(0, 1, nk).astype(np.float32)
    bq = rng.integers(0, 2 ** 63, (nq, words), dtype=np.uint64)
    bk = rng.integers(0, 2 ** 63, (nk, words), dtype=np.uint64)
    bits = 64 * words
    cos_tab = np.cos(np.pi * np.arange(bits + 1) / bits)
    pq = rng.integers(0, 40, nq)
    pk = rng.integers(0, 40, nk)
    i, j, v, total = sketch_filter(s, cut, eq, bq, ek, bk, cos_tab, c, pq, pk, ordered)
    want = []
    for a in range(nq):
        for b in range(nk):
            up = float(s[a, b])
            if up < cut or (ordered and pk[b] >= pq[a]):
                continue
            h = int(_popcount_rows((bq[a] ^ bk[b])[None])[0])
            est = up - float(eq[a]) * float(ek[b]) * max(0.0, 1.0 - cos_tab[h] - c)
            if est >= cut:
                want.append((a, b, est))
    assert total == int((s >= cut).sum())
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(a, b) for a, b, _ in want]
    assert np.allclose(v, [e for *_, e in want], rtol=0, atol=1e-12)
