"""Exact dedup equals a straightforward reference on every input (hypothesis), and the greedy
rules hold on hand-made cases. These run the engine over an in-memory vector source; the lake
path is covered in test_dedup_lake.py."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidprom_lake.dedup import (
    ApproxEngine,
    DedupError,
    ExactEngine,
    VectorReader,
    normalize,
    resolve_block,
)


def reference(vectors: np.ndarray, threshold: float) -> tuple[list[bool], list[int], list[float]]:
    """The rule, spelled out: rows in order; kept iff similarity to every earlier kept row is
    below the threshold; else dup_of = the most similar earlier kept row (earliest on ties).
    Similarity: correctly rounded dot product of the float32-normalised vectors."""
    x = normalize(vectors)
    kept_rows: list[int] = []
    kept, dup_of, sims = [], [], []
    for i in range(len(x)):
        best, arg = -math.inf, -1
        for j in kept_rows:
            s = math.fsum(float(a) * float(b) for a, b in zip(x[i], x[j], strict=True))
            if s > best:
                best, arg = s, j
        if best >= threshold:
            kept.append(False)
            dup_of.append(arg)
            sims.append(best)
        else:
            kept.append(True)
            dup_of.append(-1)
            sims.append(math.nan)
            kept_rows.append(i)
    return kept, dup_of, sims


class ArrayDataset:
    """Just enough of a Lance dataset for VectorReader: take(offsets, columns)."""

    def __init__(self, x: np.ndarray):
        self.x = np.asarray(x, np.float32)

    def take(self, offsets: np.ndarray, columns: list[str]) -> pa.Table:
        rows = self.x[np.asarray(offsets, np.int64)]
        arr = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), self.x.shape[1])
        return pa.table({columns[0]: arr})


def run_engine(x: np.ndarray, threshold: float, *, engine: str = "exact", block: int = 4,
               memory: float = 1e9, cut: int = 0, **kw: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d = x.shape
    uuids = pa.array([f"u{i}" for i in range(n)])
    reader = VectorReader(ArrayDataset(x), "v", np.arange(n), uuids, d)
    kept = np.ones(n, bool)
    dup_of = np.full(n, -1, np.int64)
    sim = np.full(n, np.nan)
    prior = np.empty(0, np.int64)
    if cut:  # decide the first `cut` rows with the reference, then continue incrementally
        k, dd, ss = reference(x[:cut], threshold)
        kept[:cut], dup_of[:cut], sim[:cut] = k, dd, ss
        prior = np.flatnonzero(kept[:cut])

    def on_block(pos: np.ndarray, dec: object) -> None:
        kept[pos] = dec.kept  # type: ignore[attr-defined]
        dup_of[pos] = dec.dup_of  # type: ignore[attr-defined]
        sim[pos] = dec.sim  # type: ignore[attr-defined]

    positions = np.arange(cut, n)
    if engine == "exact":
        eng: ExactEngine | ApproxEngine = ExactEngine(reader, threshold, memory_bytes=memory,
                                                      block_rows=block)
    else:
        eng = ApproxEngine(reader, threshold, capacity=n, block_rows=block, **kw)  # type: ignore[arg-type]
        eng.train(np.arange(n))
        eng.load_prior(prior)
    eng.run(positions, prior, None, on_block)
    return kept, dup_of, sim


def assert_same(x: np.ndarray, t: float, got: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    k, d, s = reference(x, t)
    assert got[0].tolist() == k
    assert got[1].tolist() == d
    np.testing.assert_allclose(got[2], np.array(s), rtol=0, atol=0, equal_nan=True)


# Small integer components make ties, identical and opposite vectors, and similarities landing
# exactly on round thresholds common; a small pool makes repeated vectors common.
@st.composite
def vector_sets(draw: st.DrawFn) -> tuple[np.ndarray, float]:
    d = draw(st.integers(1, 5))
    comp = st.integers(-3, 3)
    pool = draw(st.lists(st.lists(comp, min_size=d, max_size=d).filter(any), min_size=1, max_size=8))
    n = draw(st.integers(1, 30))
    idx = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
    x = np.array([pool[i] for i in idx], np.float32)
    t = draw(st.one_of(st.sampled_from([0.5, 0.6, 0.8, 0.9, 1.0, 1 / math.sqrt(2)]),
                       st.floats(0.05, 1.0, allow_nan=False)))
    return x, t


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vector_sets(), st.integers(1, 7))
def test_exact_equals_reference(data: tuple[np.ndarray, float], block: int) -> None:
    x, t = data
    assert_same(x, t, run_engine(x, t, block=block))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vector_sets(), st.integers(1, 5))
def test_exact_streamed_kept_set_equals_reference(data: tuple[np.ndarray, float], block: int) -> None:
    """A memory budget of a few rows forces superblocks and a kept set read back in chunks."""
    x, t = data
    d = x.shape[1]
    assert_same(x, t, run_engine(x, t, block=block, memory=d * 4 * 2 * block))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vector_sets(), st.data())
def test_incremental_equals_full(data: tuple[np.ndarray, float], more: st.DataObject) -> None:
    x, t = data
    cut = more.draw(st.integers(0, len(x)))
    assert_same(x, t, run_engine(x, t, block=3, cut=cut))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.sampled_from([0.6, 0.8, 0.9]))
def test_exact_random_float_vectors(seed: int, t: float) -> None:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((6, 16)).astype(np.float32)
    x = base[rng.integers(0, 6, 40)] + 0.3 * rng.standard_normal((40, 16)).astype(np.float32)
    assert_same(x, t, run_engine(x, t, block=int(rng.integers(1, 50))))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vector_sets())
def test_approx_engine_never_invents_duplicates(data: tuple[np.ndarray, float]) -> None:
    """Approximate mode may miss a duplicate, but every duplicate it reports is one: its
    similarity to dup_of reaches the threshold and dup_of is a kept, earlier prompt."""
    x, t = data
    kept, dup_of, sim = run_engine(x, t, engine="approx", block=4, partitions=2, nprobe=2)
    xn = normalize(x)
    for i in np.flatnonzero(~kept):
        j = int(dup_of[i])
        assert 0 <= j < i and kept[j]
        assert math.fsum(float(a) * float(b) for a, b in zip(xn[i], xn[j], strict=True)) >= t - 1e-6


def test_approx_engine_matches_exact_on_clustered_data() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((30, 48)).astype(np.float32)
    x = centres[rng.integers(0, 30, 3000)] + 0.35 * rng.standard_normal((3000, 48)).astype(np.float32)
    exact = run_engine(x, 0.8, block=512)
    approx = run_engine(x, 0.8, engine="approx", block=512, partitions=16, nprobe=4)
    agree = (exact[0] == approx[0]).mean()
    assert agree >= 0.99, agree
    assert (~exact[0]).sum() > 300  # the data does have duplicates


def test_rules_by_hand() -> None:
    x = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0.6, 0.8]], np.float32)
    kept, dup_of, sim = run_engine(x, 0.7, block=2)
    # row 1 duplicates row 0 (identical); row 3 is 0.7071 from both kept rows 0 and 2: the
    # earliest wins the tie; row 4 is 0.8 from row 2 and 0.6 from row 0
    assert kept.tolist() == [True, False, True, False, False]
    assert dup_of.tolist() == [-1, 0, -1, 0, 2]
    assert sim[1] == pytest.approx(1.0) and sim[3] == pytest.approx(math.sqrt(0.5))


def test_duplicates_of_duplicates_do_not_count() -> None:
    # b is a dup of a; c is close to b but not to a: c is kept (only kept prompts count)
    a = np.array([1.0, 0.0])
    b = np.array([math.cos(0.5), math.sin(0.5)])
    c = np.array([math.cos(1.0), math.sin(1.0)])
    kept, dup_of, _ = run_engine(np.array([a, b, c], np.float32), math.cos(0.55), block=1)
    assert kept.tolist() == [True, False, True]


def test_resolve_block_prefers_prior_on_equal_similarity() -> None:
    dec = resolve_block(2, 10, (np.array([1]), np.array([3]), np.array([0.9])),
                        (np.array([1]), np.array([0]), np.array([0.9])), 0.8)
    assert dec.kept.tolist() == [True, False] and dec.dup_of.tolist() == [-1, 3]


def test_zero_vector_is_an_error_naming_the_prompt() -> None:
    x = np.array([[1, 0], [0, 0]], np.float32)
    with pytest.raises(DedupError, match="u1 has an all-zero"):
        run_engine(x, 0.8)


def test_time_order_is_time_then_uuid_with_missing_times_last() -> None:
    from datetime import UTC, datetime

    from vidprom_lake.dedup import time_order

    t1, t2 = datetime(2023, 9, 3, tzinfo=UTC), datetime(2023, 9, 4, tzinfo=UTC)
    state = pa.table({
        "uuid": ["d", "c", "b", "a", "e", "f"],
        "time": pa.array([t2, None, t1, t2, t1, None], pa.timestamp("us", tz="UTC")),
        "has_vec": [True, True, True, True, True, False],
    })
    assert time_order(state).column("uuid").to_pylist() == ["b", "e", "a", "d", "c"]


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, 12)))[0].T.astype(np.float32)
    centres = rng.standard_normal((20, 12)).astype(np.float32) @ basis
    x = centres[rng.integers(0, 20, n)] + 0.6 * (rng.standard_normal((n, 12)).astype(np.float32) @ basis)
    return x + 0.08 * rng.standard_normal((n, d)).astype(np.float32)


def test_approx_bound_loses_nothing_when_every_cell_is_probed() -> None:
    """With one cell (so every kept prompt is probed) and no sketch, candidates are pruned only
    by the upper bound r.r' + |e||e'| of the PCA projection, which no true pair falls below:
    the decisions equal the exact engine's."""
    x = _clustered(1500, 64)
    exact = run_engine(x, 0.8, block=256)
    approx = run_engine(x, 0.8, engine="approx", block=256, partitions=1, reduced_dims=8,
                        sketch_dims=0)
    assert 100 < (~exact[0]).sum() < 1400
    assert approx[0].tolist() == exact[0].tolist()


def test_approx_sketch_filter_keeps_agreement() -> None:
    x = _clustered(3000, 96, seed=1)
    exact = run_engine(x, 0.8, block=512)
    approx = run_engine(x, 0.8, engine="approx", block=512, partitions=8, nprobe=8,
                        reduced_dims=16, sketch_dims=256)
    assert (exact[0] == approx[0]).mean() >= 0.995
