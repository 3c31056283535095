"""Semantic dedup (VidProS) and similarity search.

**Semantics.** Prompts that have a vector in the embedding column are taken in time order (ties
broken by uuid; prompts without a time come last, by uuid). A prompt is *kept*
(``unique_semantic = true``) if its cosine similarity to every earlier kept prompt is below the
threshold; otherwise it is a duplicate: ``dup_of`` is the most similar earlier kept prompt (ties:
the earliest) and ``dup_similarity`` that similarity. With threshold 0.8 the kept prompts are
VidProM's VidProS subset. Every decided row carries ``dedup_run``, a JSON object with the
threshold, embedding column, model, dims, mode and batch that decided it.

**Similarity** is the cosine of the two vectors after each is normalised to a float32 unit
vector; where a decision or a tie depends on the last digits (the similarity lies within the
float32 error bound of the threshold or of the best candidate), it is recomputed as the
correctly rounded (``math.fsum``) dot product of those float32 vectors, so exact mode gives the
same answer however the work is split into blocks.

**Incremental.** A run reuses the decisions of the longest time-ordered prefix that an earlier
run with the same threshold, column, model and dims decided (an exact run reuses only exact
decisions) and decides everything after it. New prompts later than every decided prompt are
therefore the only ones decided; a new prompt *earlier* than decided ones makes those later
prompts be decided again (the report says how many); a changed threshold or model is a full
recompute, and the report says so. The result always equals a full recompute in the same order
(exactly so in exact mode).

**Modes.** Exact mode compares every prompt with every earlier kept prompt (float32 matrix
products in blocks, the kept set streamed from the lake in chunks when it does not fit the
memory budget). Approximate mode (the default) keeps only compact structures of the kept set
in memory: a PCA projection r (a few hundred dimensions) plus the residual norm |e| of each
kept vector, held in k-means cells; a sign sketch of the residual; and an int8 copy. Since
r.r' + |e||e'| bounds the similarity from above, pairs below it are dropped without loss; the
sketch drops pairs whose estimated residual product leaves them below the threshold by more
than a measured margin; the rest are verified on the int8 copy, and pairs within its error
bound of the threshold on the exact vectors read back from the lake. A prompt probes the cells
within a measured gap of its best one. It estimates its recall by checking a random sample of
its decisions exactly against the kept set it built.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from . import heap
from .errors import SchemaError, VidlakeError
from .schema import field_meta, is_vector_field

if TYPE_CHECKING:
    from .lake import Lake

DEFAULT_THRESHOLD = 0.8
DEFAULT_COLUMN = "embedding"
#: Memory the kept-set structures may use before exact mode streams the kept set from disk.
DEFAULT_MEMORY_GB = float(os.environ.get("VIDLAKE_DEDUP_MEMORY_GB", "5"))
#: Up to this many prompts to decide against an existing kept set, exact mode is cheaper.
SMALL_INCREMENT = 4096
# kept rows per bound matrix in the approximate engine (queries x this many float32 at most)
CELL_SLICE = 8192
#: Share of the calibration window's true pairs (later prompt, earlier prompt's cell) that the
#: probe gap must cover; most prompts with a missed pair have another duplicate pair found.
PROBE_QUANTILE = float(os.environ.get("VIDLAKE_DEDUP_PROBE_QUANTILE", "0.999"))
#: Share of the calibration pairs whose sketch error the sketch margin must cover (plus 0.02).
SKETCH_QUANTILE = float(os.environ.get("VIDLAKE_DEDUP_SKETCH_QUANTILE", "0.999"))
RESULT_COLUMNS = ("unique_semantic", "dup_of", "dup_similarity", "dedup_run")

Progress = Callable[[int, int], None]


class DedupError(VidlakeError):
    """Dedup cannot run as asked (bad threshold, missing vectors, zero vectors...)."""


# ---------------------------------------------------------------------------- numerics
def normalize(x: np.ndarray) -> np.ndarray:
    """Rows as float32 unit vectors (norms summed in float64, divided in float32). Zero rows stay
    zero (caller checks)."""
    x32 = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x32, x32, dtype=np.float64))
    safe = np.where(norms > 0, norms, 1.0).astype(np.float32)
    return x32 / safe[:, None]


def gemm_margin(dim: int) -> float:
    """A bound on |float32 dot - exact dot| for unit vectors of `dim` (Higham: d*u)."""
    return float(dim) * 2.0 ** -23 + 1e-6


def canonical_sims(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of float32 rows, correctly rounded: the value `math.fsum` gives
    for the exact float64 products (compiled, `_dedup_kernels.exact_dots`)."""
    from ._dedup_kernels import exact_dots

    if not len(a):
        return np.empty(0)
    return exact_dots(np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32))


#: Pairs scored per gather in `canonical_pair_sims` (4,096 x 3072 float32 = 48 MB per side).
PAIR_CHUNK = 4096


def canonical_pair_sims(a: np.ndarray, ai: np.ndarray, b: np.ndarray, bi: np.ndarray) -> np.ndarray:
    """`canonical_sims(a[ai], b[bi])` without gathering every pair's rows at once: a block
    with 100k near pairs would otherwise copy 2 x 1.2 GB of 3072-d rows."""
    n = len(ai)
    out = np.empty(n)
    for c in range(0, n, PAIR_CHUNK):
        out[c:c + PAIR_CHUNK] = canonical_sims(a[ai[c:c + PAIR_CHUNK]], b[bi[c:c + PAIR_CHUNK]])
    return out


# ---------------------------------------------------------------------------- resolution
@dataclass
class Decisions:
    """Decisions for rows in order: kept flag, dup_of (order position, -1) and similarity."""

    kept: np.ndarray
    dup_of: np.ndarray
    sim: np.ndarray

    @classmethod
    def empty(cls, n: int) -> Decisions:
        return cls(np.ones(n, bool), np.full(n, -1, np.int64), np.full(n, np.nan, np.float64))


def _best_per_query(q: np.ndarray, k: np.ndarray, s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the candidate with the highest similarity, ties to the smallest position."""
    best_s = np.full(n, -np.inf)
    best_k = np.full(n, -1, np.int64)
    if len(q):
        order = np.lexsort((k, -s, q))
        q, k, s = q[order], k[order], s[order]
        first = np.ones(len(q), bool)
        first[1:] = q[1:] != q[:-1]
        best_s[q[first]] = s[first]
        best_k[q[first]] = k[first]
    return best_s, best_k


def resolve_block(nb: int, base: int, prior: tuple[np.ndarray, np.ndarray, np.ndarray],
                  inner: tuple[np.ndarray, np.ndarray, np.ndarray], threshold: float) -> Decisions:
    """Greedy decisions for `nb` consecutive rows starting at order position `base`.

    `prior` holds (row, kept position, similarity) against kept rows before the block, `inner`
    (row, earlier row, similarity) within it; rows are local (0..nb-1). Only pairs at or above
    the threshold matter.
    """
    pq, pk, ps = prior
    m = ps >= threshold
    best_s, best_k = _best_per_query(pq[m], pk[m], ps[m], nb)
    out = Decisions.empty(nb)
    dup = best_s >= threshold
    out.kept[dup] = False
    out.dup_of[dup] = best_k[dup]
    out.sim[dup] = best_s[dup]
    iq, ij, isim = inner
    m = isim >= threshold
    iq, ij, isim = iq[m], ij[m], isim[m]
    if len(iq):
        order = np.lexsort((ij, iq))
        iq, ij, isim = iq[order], ij[order], isim[order]
        starts = np.flatnonzero(np.r_[True, iq[1:] != iq[:-1]])
        ends = np.r_[starts[1:], len(iq)]
        kept = out.kept
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            i = int(iq[a])
            js = ij[a:b]
            live = kept[js]
            if not live.any():
                continue
            js, ss = js[live], isim[a:b][live]
            top = int(np.argmax(ss))  # js ascending, so argmax picks the earliest on ties
            s, j = float(ss[top]), int(js[top]) + base
            if s > best_s[i]:  # a prior kept row is earlier, so it wins ties
                best_s[i], best_k[i] = s, j
            kept[i] = False
            out.dup_of[i] = best_k[i]
            out.sim[i] = best_s[i]
    return out


# ---------------------------------------------------------------------------- reading
#: `VectorReader.read` takes vectors from Lance in pieces of about this many float32 bytes.
READ_PIECE_BYTES = 32 * 2 ** 20


class VectorReader:
    """Reads vectors by order position from a Lance dataset, normalised, in blocks."""

    def __init__(self, ds: Any, column: str, offsets: np.ndarray, uuids: pa.Array, dim: int):
        self.ds = ds
        self.column = column
        self.offsets = offsets  # dataset row offset of each order position
        self.uuids = uuids
        self.dim = dim
        self.rows_read = 0
        self.seconds = 0.0

    def read(self, positions: np.ndarray) -> np.ndarray:
        """The vectors at `positions`, normalised, as one float32 array.

        Taken from Lance in pieces of READ_PIECE_BYTES, each normalised straight into the
        result: the Arrow buffers of a piece are the only transient, not a second and third
        copy of the whole block (at 32,768 x 3072 that is 0.4 GB per copy)."""
        t0 = time.perf_counter()
        positions = np.asarray(positions, np.int64)
        offs = self.offsets[positions]
        sort = np.argsort(offs, kind="stable")
        out = np.empty((len(positions), self.dim), np.float32)
        step = max(1, READ_PIECE_BYTES // (4 * max(self.dim, 1)))
        for a in range(0, len(sort), step):
            idx = sort[a:a + step]
            tbl = self.ds.take(offs[idx], columns=[self.column])
            arr = tbl.column(0).combine_chunks()
            del tbl
            if arr.null_count:
                bad = int(positions[idx][np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0]])
                raise DedupError(f"prompt {self.uuids[bad]} lost its {self.column} vector during the run")
            x = normalize(arr.flatten().to_numpy(zero_copy_only=False).reshape(-1, self.dim))
            del arr
            zero = ~np.any(x != 0, axis=1)
            if zero.any():
                bad = int(positions[idx][np.flatnonzero(zero)[0]])
                raise DedupError(
                    f"prompt {self.uuids[bad]} has an all-zero {self.column} vector: cosine "
                    "similarity is undefined; re-embed it")
            out[idx] = x
        self.rows_read += len(positions)
        self.seconds += time.perf_counter() - t0
        return out

    def blocks(self, positions: np.ndarray, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for s in range(0, len(positions), rows):
            p = positions[s:s + rows]
            yield p, self.read(p)


# ---------------------------------------------------------------------------- exact engine
def _pairs_at_least(s: np.ndarray, cut: float) -> tuple[np.ndarray, np.ndarray]:
    qi, kj = np.nonzero(s >= cut)
    return qi, kj


class _Pairs:
    def __init__(self) -> None:
        self.q: list[np.ndarray] = []
        self.k: list[np.ndarray] = []
        self.s: list[np.ndarray] = []

    def add(self, q: np.ndarray, k: np.ndarray, s: np.ndarray) -> None:
        if len(q):
            self.q.append(q.astype(np.int64))
            self.k.append(k.astype(np.int64))
            self.s.append(s.astype(np.float64))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.q:
            e = np.empty(0, np.int64)
            return e, e, np.empty(0)
        return np.concatenate(self.q), np.concatenate(self.k), np.concatenate(self.s)


def _exact_pairs(xq: np.ndarray, xk: np.ndarray, kpos: np.ndarray, threshold: float,
                 margin: float, qpos: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Pairs (query row, kept position, canonical sim) with float32 sim >= threshold - margin.

    With `qpos`, only pairs whose kept position is before the query's position count.
    """
    s = xq @ xk.T
    qi, kj = _pairs_at_least(s, threshold - margin)
    if qpos is not None and len(qi):
        ok = kpos[kj] < qpos[qi]
        qi, kj = qi[ok], kj[ok]
    sims = s[qi, kj].astype(np.float64)
    # Decide on the canonical value wherever float32 rounding could matter.
    near = sims < threshold + margin
    if near.any():
        sims[near] = canonical_pair_sims(xq, qi[near], xk, kj[near])
    return qi, kpos[kj], sims


def _fix_ties(q: np.ndarray, k: np.ndarray, s: np.ndarray, xq: Callable[[np.ndarray], np.ndarray],
              xk: Callable[[np.ndarray], np.ndarray], margin: float) -> np.ndarray:
    """Recompute canonically every candidate pair whose float32 similarity is within 2*margin
    of another candidate of the same query, so that the argmax and its ties are exact whichever
    candidates turn out to be kept."""
    if len(q) < 2:
        return s
    order = np.lexsort((s, q))
    qs, ss = q[order], s[order]
    close = (qs[1:] == qs[:-1]) & (ss[1:] - ss[:-1] < 2 * margin)
    redo = np.zeros(len(q), bool)
    redo[order[1:][close]] = True
    redo[order[:-1][close]] = True
    if redo.any():
        s = s.copy()
        s[redo] = canonical_sims(xq(q[redo]), xk(k[redo]))
    return s


class _KeptChunks:
    """The exact engine's kept set: (positions, vectors) in memory up to a budget, else positions
    only (vectors streamed back from the lake when needed)."""

    def __init__(self, reader: VectorReader, budget: float):
        self.reader = reader
        self.budget = budget
        self.chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self.positions: list[np.ndarray] = []
        self.resident = True
        self.bytes = 0

    def add(self, pos: np.ndarray, x: np.ndarray | None) -> None:
        if not len(pos):
            return
        self.positions.append(pos)
        if self.resident and self.bytes + len(pos) * self.reader.dim * 4 <= self.budget:
            if x is None:
                for p, v in self.reader.blocks(pos, 16384):
                    self.chunks.append((p, v))
            else:
                self.chunks.append((pos, x))
            self.bytes += len(pos) * self.reader.dim * 4
        else:
            self.resident = False
            self.chunks = []
            self.bytes = 0

    def iter(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.resident:
            yield from self.chunks
        elif self.positions:
            yield from self.reader.blocks(np.sort(np.concatenate(self.positions)), 16384)


class ExactEngine:
    """Brute force in blocks of float32 matrix products, canonical sims near the threshold."""

    mode = "exact"

    def __init__(self, reader: VectorReader, threshold: float, *, memory_bytes: float,
                 block_rows: int | None = None):
        self.reader = reader
        self.t = threshold
        self.dim = reader.dim
        self.margin = gemm_margin(self.dim)
        self.block = block_rows or max(256, min(4096, int(2 ** 25 // max(self.dim, 1))))
        self.memory = memory_bytes
        self.stats: dict[str, Any] = {"block_rows": self.block}

    def run(self, positions: np.ndarray, prior_kept: np.ndarray, progress: Progress | None,
            on_block: Callable[[np.ndarray, Decisions], None]) -> None:
        """Decide `positions` (consecutive order positions) given the kept rows before them."""
        per_row = self.dim * 4
        store = _KeptChunks(self.reader, self.memory / 2)
        store.add(np.asarray(prior_kept, np.int64), None)
        sb_rows = max(self.block, int(self.memory // (2 * per_row)))
        self.stats["superblock_rows"] = sb_rows
        done = 0
        for s0 in range(0, len(positions), sb_rows):
            sbpos = positions[s0:s0 + sb_rows]
            xsb = self.reader.read(sbpos)
            prior = _Pairs()
            kept_vecs: dict[int, np.ndarray] = {}
            for kp, xk in store.iter():
                for b0 in range(0, len(sbpos), self.block):
                    q, k, s = _exact_pairs(xsb[b0:b0 + self.block], xk, kp, self.t, self.margin)
                    prior.add(q + b0, k, s)
                    if len(k):  # keep the few kept vectors that candidates point at (ties)
                        idx = np.searchsorted(kp, k)
                        for pk, i in zip(k.tolist(), idx.tolist(), strict=True):
                            kept_vecs.setdefault(pk, xk[i])
            pq, pk, ps = prior.arrays()
            o = np.argsort(pq, kind="stable")
            pq, pk, ps = pq[o], pk[o], ps[o]
            base = int(sbpos[0])
            sb_kept: list[np.ndarray] = []
            for b0 in range(0, len(sbpos), self.block):
                b1 = min(b0 + self.block, len(sbpos))
                xb = xsb[b0:b1]
                lo, hi = np.searchsorted(pq, [b0, b1])
                bq, bk, bs = pq[lo:hi] - b0, pk[lo:hi], ps[lo:hi]
                if sb_kept:  # kept rows of this superblock before this block
                    rows = np.concatenate(sb_kept)
                    q2, k2, s2 = _exact_pairs(xb, xsb[rows], sbpos[rows], self.t, self.margin)
                    bq, bk, bs = np.r_[bq, q2], np.r_[bk, k2], np.r_[bs, s2]
                sims = xb @ xb.T
                iq, ij = np.nonzero(np.tril(sims >= self.t - self.margin, -1))
                isim = sims[iq, ij].astype(np.float64)
                near = isim < self.t + self.margin
                if near.any():
                    isim[near] = canonical_pair_sims(xb, iq[near], xb, ij[near])

                def vec(pos: np.ndarray, xsb: np.ndarray = xsb, base: int = base,
                        kept_vecs: dict[int, np.ndarray] = kept_vecs) -> np.ndarray:
                    out = np.empty((len(pos), self.dim), np.float32)
                    for n, p in enumerate(pos.tolist()):
                        out[n] = xsb[p - base] if p >= base else kept_vecs[p]
                    return out

                allk = np.r_[bk, ij + sbpos[b0]]
                def qvec(q: np.ndarray, xb: np.ndarray = xb) -> np.ndarray:
                    return xb[q]

                alls = _fix_ties(np.r_[bq, iq], allk, np.r_[bs, isim], qvec, vec, self.margin)
                bs, isim = alls[:len(bq)], alls[len(bq):]
                dec = resolve_block(b1 - b0, int(sbpos[b0]), (bq, bk, bs), (iq, ij, isim), self.t)
                dups = np.flatnonzero(~dec.kept)
                if len(dups):  # the recorded similarity is the canonical one too
                    dec.sim[dups] = canonical_sims(xb[dups], vec(dec.dup_of[dups]))
                sb_kept.append(np.flatnonzero(dec.kept) + b0)
                on_block(sbpos[b0:b1], dec)
                done += b1 - b0
                if progress:
                    progress(done, len(positions))
            rows = np.concatenate(sb_kept) if sb_kept else np.empty(0, np.int64)
            store.add(sbpos[rows], xsb[rows].copy())
        self.stats["kept_streamed"] = not store.resident


# ---------------------------------------------------------------------------- approximate engine
def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest scores, best first (torch when present: faster)."""
    k = min(k, scores.shape[1])
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency here
        part = np.argpartition(scores, -k, axis=1)[:, -k:]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
        return np.take_along_axis(part, order, 1)
    return torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1).indices.numpy()


def _orth(y: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning y (Cholesky QR twice: fast and stable enough here)."""
    for _ in range(2):
        g = (y.T @ y).astype(np.float64)
        g += np.eye(len(g)) * (1e-10 * np.trace(g) / len(g))
        lower = np.linalg.cholesky(g)
        y = np.linalg.solve(lower, y.T.astype(np.float64)).T.astype(np.float32)
    return y


def _pca(x: np.ndarray, r: int, seed: int) -> np.ndarray:
    """Top-r right singular vectors of x (uncentred: they preserve dot products), d x r."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    k = min(d, r + 16)
    y = x @ rng.standard_normal((d, k)).astype(np.float32)
    for _ in range(2):
        y = x @ (x.T @ _orth(y))
    q = _orth(y)
    b = (q.T @ x).astype(np.float64)  # k x d
    w, v = np.linalg.eigh(b @ b.T)
    top = np.argsort(w)[::-1][:r]
    vt = (v[:, top].T @ b) / np.sqrt(np.maximum(w[top], 1e-12))[:, None]
    return np.ascontiguousarray(vt.T.astype(np.float32))


def _kmeans(r: np.ndarray, p: int, seed: int, iters: int = 8) -> np.ndarray:
    """Spherical k-means (centres are unit vectors; assignment by largest dot product)."""
    rng = np.random.default_rng(seed)
    p = min(p, len(r))
    c = r[rng.choice(len(r), p, replace=False)].copy()
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    for _ in range(iters):
        a = np.concatenate([np.argmax(r[s:s + 8192] @ c.T, axis=1) for s in range(0, len(r), 8192)])
        sums = np.zeros_like(c)
        np.add.at(sums, a, r)
        counts = np.bincount(a, minlength=p)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            sums[empty] = r[rng.choice(len(r), len(empty), replace=False)]
        c = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return c.astype(np.float32)


def _quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The int8 copy of float32 rows and its per-row scale (x ~ q * scale)."""
    from ._dedup_kernels import quantize

    return quantize(np.ascontiguousarray(x, np.float32))


def _int8_dots(a: np.ndarray, ai: np.ndarray, b: np.ndarray, bi: np.ndarray) -> np.ndarray:
    """Integer dot products of int8 rows a[ai[n]] . b[bi[n]] (exact in int32), without
    gathering the rows: a quarter of float32's memory traffic."""
    from ._dedup_kernels import int8_pair_dots

    return int8_pair_dots(a, np.ascontiguousarray(ai, np.int64), b, np.ascontiguousarray(bi, np.int64))


def _pairs_above(a: np.ndarray, b: np.ndarray, cut: float, qa: np.ndarray | None = None,
                 qb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row of a, row of b, a.b) for every pair with a.b >= cut (and qb < qa when given)."""
    s = a @ b.T
    i, j = np.divmod(np.flatnonzero(s >= cut), s.shape[1])  # 1-d nonzero: far faster than 2-d
    if qa is not None and qb is not None:
        ok = qb[j] < qa[i]
        i, j = i[ok], j[ok]
    return i, j, s[i, j].astype(np.float64)


def _map_cells(fn: Callable[[int], Any], cells: list[int]) -> Iterator[Any]:
    """fn over cells on one thread per core, each with a single-threaded BLAS: the per-cell
    products are small, and multi-threaded BLAS on small products spins badly on a busy box."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - numpy's own threads then
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            yield from pool.map(fn, cells)
        return
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        yield from pool.map(fn, cells)


_POP8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits per row of two packed (rows x words) uint64 matrices."""
    x = a ^ b
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x).sum(axis=1, dtype=np.int64)
    return _POP8[x.view(np.uint8)].sum(axis=1, dtype=np.int64)  # pragma: no cover


class _Cell:
    """One k-means cell of the kept set: rows (r, |e|), their sketch words and store ids.

    Grows by half its size (not doubling): the cells together hold ~1 KB per kept prompt at
    3072 dims, so the slack of doubling would cost gigabytes at VidProM's size."""

    __slots__ = ("bits", "data", "ids", "n")

    def __init__(self, width: int, words: int):
        self.data = np.empty((8, width), np.float32)
        self.bits = np.empty((8, words), np.uint64)
        self.ids = np.empty(8, np.int64)
        self.n = 0

    def add(self, rows: np.ndarray, bits: np.ndarray, ids: np.ndarray) -> None:
        need = self.n + len(rows)
        if need > len(self.ids):
            cap = max(need, len(self.ids) + len(self.ids) // 2)
            self.data = _grown(self.data, self.n, cap)
            self.bits = _grown(self.bits, self.n, cap)
            self.ids = _grown(self.ids, self.n, cap)
        self.data[self.n:need] = rows
        self.bits[self.n:need] = bits
        self.ids[self.n:need] = ids
        self.n = need


def _grown(a: np.ndarray, n: int, cap: int) -> np.ndarray:
    out = np.empty((cap, *a.shape[1:]), a.dtype)
    out[:n] = a[:n]
    return out


class ApproxEngine:
    """Greedy dedup against a compact in-memory copy of the kept set.

    Each vector x (unit, d dims) is described by its PCA projection r (`reduced_dims`), the
    norm |e| of the residual e = x - W r, and a sign sketch of e (`sketch_dims` bits, signs of
    random projections). For two vectors, sim = r.r' + e.e' and |e.e'| <= |e||e'|, so
    r.r' + |e||e'| is an upper bound that no true pair can fall below: it prunes without loss.
    The sketch estimates e.e' = |e||e'| cos(pi * hamming / bits); a pair is dropped only when
    the estimate is below the threshold by more than a calibrated multiple of |e||e'|. The
    survivors are scored on an int8 copy of the kept vector (error about 1e-4) and pairs whose
    int8 score lies within its error bound of the threshold are re-read and scored exactly.

    Candidates come from k-means cells over r: every kept prompt lives in its nearest cell;
    a new prompt probes each cell whose centroid score is within a *measured* probe gap of its
    best one (at most `nprobe` cells). Gap and sketch margin are measured on the true pairs of
    a contiguous time window of the data (near-duplicates are mostly recent resubmissions).

    Memory per kept prompt: d bytes (int8) + 4 * reduced_dims + sketch_dims / 8 + 24; one block
    of float32 vectors besides. 1M kept x 3072 dims: about 4.2 GB.
    """

    mode = "approx"

    def __init__(self, reader: VectorReader, threshold: float, *, capacity: int,
                 partitions: int | None = None, nprobe: int | None = None,
                 reduced_dims: int | None = None, sketch_dims: int = 512,
                 block_rows: int | None = None, seed: int = 0):
        self.reader = reader
        self.t = threshold
        self.dim = d = reader.dim
        self.margin32 = gemm_margin(d)
        if reduced_dims is None:
            reduced_dims = 256 if d >= 1024 else 128
        self.r = max(1, min(reduced_dims, d))
        self.bits = 0 if self.r >= d or sketch_dims <= 0 else max(64, (sketch_dims // 64) * 64)
        self.words = max(1, self.bits // 64)
        self.partitions = partitions or int(np.clip(2 ** round(math.log2(max(capacity, 1) / 1000)), 8, 4096))
        self.nprobe = max(1, nprobe or 64)
        self.block = block_rows or max(1024, min(32768, int(2 ** 26 // d)))  # 21,845 rows at 3072 dims
        self.seed = seed
        self.capacity = capacity
        self.eps = 1e-3 + self.margin32  # float32 slack on the pruning bound
        # the kept store, indexed by store id; pages are only touched as rows arrive
        self.q8 = np.empty((capacity, d), np.int8)
        self.scale = np.empty(capacity, np.float32)
        self.kpos = np.empty(capacity, np.int64)
        self.n = 0
        self.cells: list[_Cell] = []
        self.w: np.ndarray | None = None
        self.gap = 0.0
        self.sketch_c = 2.0
        span = 64 * self.words + 1  # cos(pi h / bits) for every possible Hamming distance h
        self.cos_tab = (np.cos(np.pi * np.arange(span) / self.bits) if self.bits else np.ones(span))
        self.stats: dict[str, Any] = {}
        self.timers: dict[str, float] = {}
        self.sample_pos = np.empty(0, np.int64)
        self.sample_x = np.empty((0, d), np.float32)
        self.sample_ra = np.empty((0, self.r + 1), np.float32)
        self.sample_best = np.empty(0)
        self.sample_arg = np.empty(0, np.int64)

    def _tick(self, key: str, t0: float) -> float:
        now = time.perf_counter()
        self.timers[key] = self.timers.get(key, 0.0) + now - t0
        return now

    # -- training
    def train(self, positions: np.ndarray) -> None:
        """PCA, sketch, k-means cells from a random sample; probe gap and sketch margin from
        the true pairs of a contiguous window."""
        t0 = time.perf_counter()
        positions = np.asarray(positions, np.int64)
        rng = np.random.default_rng(self.seed)
        n_train = int(min(len(positions), max(40 * self.partitions, 20_000), 100_000))
        sample = np.sort(rng.choice(positions, n_train, replace=False))
        head = min(len(sample), 10_000)
        xh = self.reader.read(sample[:head])
        if self.r < self.dim:
            self.w = _pca(xh, self.r, self.seed)
            if self.bits:
                # a CountSketch: every coordinate goes to one of `bits` buckets with a random
                # sign; O(d) per vector where a dense Gaussian projection costs d * bits
                # (coordinate i goes to bucket i mod bits: embedding coordinates carry no order)
                k = -(-self.dim // self.bits)
                sign = rng.choice(np.array([-1.0, 1.0], np.float32), k * self.bits)
                sign[self.dim:] = 0.0  # padding
                self.cs_sign = sign.reshape(k, self.bits)
                self.cs_w = np.ascontiguousarray(self._countsketch(np.ascontiguousarray(self.w.T)))  # r x bits
        rs = [self._features(xh)[0]]
        for _p, x in self.reader.blocks(sample[head:], 16384):
            rs.append(self._features(x)[0])
        rall = np.concatenate(rs)
        self.partitions = min(self.partitions, len(rall))
        self.nprobe = min(self.nprobe, self.partitions)
        self.centroids = _kmeans(rall, self.partitions, self.seed)
        self.cells = [_Cell(self.r + 1, self.words) for _ in range(self.partitions)]
        self._calibrate(positions)
        self.stats.update({"partitions": self.partitions, "nprobe": self.nprobe,
                           "reduced_dims": self.r, "sketch_dims": self.bits,
                           "train_rows": n_train, "block_rows": self.block})
        self._tick("train", t0)

    def _features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(projection r, residual norm |e|, packed sign sketch of e) per row."""
        n = len(x)
        if self.w is None:
            return x, np.zeros(n, np.float32), np.zeros((n, self.words), np.uint64)
        r = x @ self.w
        en = np.sqrt(np.maximum(0.0, 1.0 - np.einsum("ij,ij->i", r, r))).astype(np.float32)
        if self.bits:
            sk = self._countsketch(x) - r @ self.cs_w  # the sketch of the residual x - W r
            bits = np.ascontiguousarray(np.packbits(sk > 0, axis=1)).view(np.uint64)
        else:
            bits = np.zeros((n, self.words), np.uint64)
        return r, en, np.ascontiguousarray(bits)

    def _countsketch(self, x: np.ndarray) -> np.ndarray:
        k = self.cs_sign.shape[0]
        if x.shape[1] != k * self.bits:
            x = np.concatenate([x, np.zeros((len(x), k * self.bits - x.shape[1]), np.float32)], axis=1)
        xs = x.reshape(len(x), k, self.bits)
        out = xs[:, 0] * self.cs_sign[0]
        for i in range(1, k):
            out += xs[:, i] * self.cs_sign[i]
        return out

    def _calibrate(self, positions: np.ndarray) -> None:
        m = min(len(positions), 8_000)
        a = (len(positions) - m) // 2
        x = self.reader.read(positions[a:a + m])
        r, en, bits = self._features(x)
        qs: list[np.ndarray] = []
        ks: list[np.ndarray] = []
        ss: list[np.ndarray] = []
        for i0 in range(0, m, 2048):
            s = x[i0:i0 + 2048] @ x[:i0 + 2048].T
            qi, kj = np.nonzero(s >= self.t - 0.1)
            ok = kj < qi + i0
            qs.append(qi[ok] + i0)
            ks.append(kj[ok])
            ss.append(s[qi[ok], kj[ok]])
        q, k, s = np.concatenate(qs), np.concatenate(ks), np.concatenate(ss).astype(np.float64)
        rr = np.einsum("ij,ij->i", r[q], r[k]).astype(np.float64)
        if self.bits and len(q) >= 50:
            e2 = np.maximum(en[q].astype(np.float64) * en[k], 1e-9)
            cos = np.cos(np.pi * _hamming(bits[q], bits[k]) / self.bits)
            self.sketch_c = float(min(2.0, np.quantile(np.abs(s - rr - e2 * cos) / e2, SKETCH_QUANTILE) + 0.02))
        true = s >= self.t
        cs = r @ self.centroids.T
        if true.sum() >= 20:
            home = np.argmax(cs[k[true]], axis=1)
            qq = q[true]
            gaps = cs[qq].max(axis=1) - cs[qq, home]
            self.gap = float(np.quantile(gaps, PROBE_QUANTILE) + 0.01)
        else:
            self.gap = 0.1
        top = _topk(cs, self.nprobe)
        ts = np.take_along_axis(cs, top, 1)
        self.stats.update({"probe_gap": round(self.gap, 4), "sketch_margin": round(self.sketch_c, 3),
                           "calibration_pairs": int(true.sum()),
                           "mean_probes": round(float((ts >= ts[:, :1] - self.gap).sum(1).mean()), 2)})

    # -- the kept store
    def _add_kept(self, pos: np.ndarray, x: np.ndarray, r: np.ndarray, en: np.ndarray,
                  bits: np.ndarray, home: np.ndarray,
                  q8: tuple[np.ndarray, np.ndarray] | None = None,
                  xi: np.ndarray | None = None) -> None:
        """Store kept rows; their float32 vectors are `x`, or `x[xi]` (not copied out)."""
        if not len(pos):
            return
        q, sc = q8 if q8 is not None else _quantize(x if xi is None else x[xi])
        a, b = self.n, self.n + len(pos)
        self.q8[a:b] = q
        self.scale[a:b] = sc
        self.kpos[a:b] = pos
        self.n = b
        order = np.argsort(home, kind="stable")
        hs = home[order]
        cuts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1], True])
        for s, e in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
            rows = order[s:e]
            self.cells[int(hs[s])].add(np.concatenate([r[rows], en[rows, None]], axis=1), bits[rows], a + rows)
        self._check_sample(pos, x, np.concatenate([r, en[:, None]], axis=1), xi)

    def _probe(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's cells within the probe gap of its best (best first) and a mask of them."""
        cs = r @ self.centroids.T
        top = _topk(cs, self.nprobe)
        ts = np.take_along_axis(cs, top, 1)
        return top, ts >= ts[:, :1] - self.gap

    def load_prior(self, prior_kept: np.ndarray) -> None:
        t0 = time.perf_counter()
        for pos, x in self.reader.blocks(np.asarray(prior_kept, np.int64), self.block):
            r, en, bits = self._features(x)
            top, _ = self._probe(r)
            self._add_kept(pos, x, r, en, bits, top[:, 0])
        self._tick("load_prior", t0)

    # -- the sample check (exact max similarity to the kept set, for recall estimates)
    def set_sample(self, positions: np.ndarray) -> None:
        self.sample_pos = np.sort(np.asarray(positions, np.int64))
        self.sample_x = self.reader.read(self.sample_pos) if len(positions) else self.sample_x
        r, en, _ = self._features(self.sample_x)
        self.sample_ra = np.concatenate([r, en[:, None]], axis=1)
        self.sample_best = np.full(len(self.sample_pos), -np.inf)
        self.sample_arg = np.full(len(self.sample_pos), -1, np.int64)

    def _check_sample(self, pos: np.ndarray, x: np.ndarray, ra: np.ndarray,
                      xi: np.ndarray | None = None) -> None:
        """Update each sample prompt's best exact similarity to the kept prompts `pos` (vectors
        x, bound rows ra) earlier than it. Pairs are first pruned by the lossless bound
        r.r' + |e||e'| (a tenth of the full product's cost at 3072 dims); the survivors are
        scored exactly, so every similarity at or above the threshold is found."""
        if not len(self.sample_pos) or not len(pos):
            return
        t0 = time.perf_counter()
        cut = self.t - self.eps
        for a in range(0, len(self.sample_pos), 2048):  # bounded score matrices
            rows = np.arange(a, min(a + 2048, len(self.sample_pos)))
            idx = rows[self.sample_pos[rows] > pos[0]]
            if not len(idx):
                continue
            qi, kj, _ = _pairs_above(self.sample_ra[idx], ra, cut, self.sample_pos[idx], pos)
            if not len(qi):
                continue
            self.stats["check_pairs"] = self.stats.get("check_pairs", 0) + len(qi)
            sims = canonical_pair_sims(self.sample_x, idx[qi], x, kj if xi is None else xi[kj])
            order = np.lexsort((-sims, qi))  # per sample row, its best pair first
            first = np.r_[True, qi[order][1:] != qi[order][:-1]]
            top = order[first]
            rows_ = idx[qi[top]]
            better = sims[top] > self.sample_best[rows_]
            self.sample_best[rows_[better]] = sims[top][better]
            self.sample_arg[rows_[better]] = pos[kj[top][better]]
        self._tick("check", t0)

    # -- deciding
    def run(self, positions: np.ndarray, prior_kept: np.ndarray, progress: Progress | None,
            on_block: Callable[[np.ndarray, Decisions], None]) -> None:
        done = 0
        for k in ("bound_pairs", "sketch_pairs", "verified_pairs", "reread_pairs", "inblock_pairs"):
            self.stats[k] = 0
        from concurrent.futures import ThreadPoolExecutor

        # the next block is read (Lance take, normalisation) while this one is decided
        with ThreadPoolExecutor(1, thread_name_prefix="vidlake-dedup-read") as ahead:
            starts = list(range(0, len(positions), self.block))
            nxt = ahead.submit(self.reader.read, positions[:self.block]) if starts else None
            for s0 in starts:
                pos = positions[s0:s0 + self.block]
                t0 = time.perf_counter()
                assert nxt is not None
                x = nxt.result()
                e = s0 + self.block
                nxt = ahead.submit(self.reader.read, positions[e:e + self.block]) if e < len(positions) else None
                self._block(pos, x, t0, on_block)
                done += len(pos)
                if progress:
                    progress(done, len(positions))

    def _block(self, pos: np.ndarray, x: np.ndarray, t0: float,
               on_block: Callable[[np.ndarray, Decisions], None]) -> None:
        t0 = self._tick("read", t0)  # waiting for the read-ahead
        r, en, bits = self._features(x)
        self._tick("project", t0)
        dec, home, (x8, xs) = self._decide(pos, x, r, en, bits)
        t0 = time.perf_counter()
        keep = np.flatnonzero(dec.kept)
        self._add_kept(pos[keep], x, r[keep], en[keep], bits[keep], home[keep],
                       (x8[keep], xs[keep]), xi=keep)
        self._tick("store", t0)
        on_block(pos, dec)
        # the kept set's cells grow by half many thousand times over a run; glibc keeps the
        # freed smaller arrays, fragmented and resident (1.67M x 3072: 8.9 -> 8.4 GB peak)
        heap.trim()

    def _decide(self, pos: np.ndarray, x: np.ndarray, r: np.ndarray, en: np.ndarray,
                bits: np.ndarray) -> tuple[Decisions, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        t0 = time.perf_counter()
        nb = len(pos)
        top, ok = self._probe(r)
        home = top[:, 0]
        rows, cols = np.nonzero(ok)
        cells = top[rows, cols]
        o = np.argsort(cells, kind="stable")
        fc, fq = cells[o], rows[o]
        bounds = np.searchsorted(fc, np.arange(self.partitions + 1))
        ho = np.argsort(home, kind="stable")
        hb = np.searchsorted(home[ho], np.arange(self.partitions + 1))
        t0 = self._tick("probe", t0)
        cut = self.t - self.eps
        pq: list[np.ndarray] = []
        pk: list[np.ndarray] = []
        iq: list[np.ndarray] = []
        ij: list[np.ndarray] = []
        ir: list[np.ndarray] = []
        ra = np.concatenate([r, en[:, None]], axis=1)  # unit: |r|^2 + |e|^2 = 1
        from ._dedup_kernels import sketch_filter

        cos_tab = self.cos_tab
        margin = self.sketch_c if self.bits else 0.0
        no_pos = np.empty(0, np.int64)

        def pairs(rq: np.ndarray, bq: np.ndarray, kd: np.ndarray, kb: np.ndarray,
                  pq: np.ndarray | None = None,
                  pk: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
            """Bound then sketch for queries (rq, bq) against rows (kd, kb), in slices of
            the kept side so that the bound matrix stays small: (query row, row, estimate) of
            the survivors and how many pairs passed the bound."""
            ii, jj, vv = [], [], []
            nbound = 0
            eq = np.ascontiguousarray(rq[:, -1])
            for a in range(0, len(kd), CELL_SLICE):
                kds = kd[a:a + CELL_SLICE]
                i, j, v, nb_ = sketch_filter(rq @ kds.T, cut, eq, bq, np.ascontiguousarray(kds[:, -1]),
                                             kb[a:a + CELL_SLICE], cos_tab, margin,
                                             no_pos if pq is None else pq,
                                             no_pos if pk is None else pk[a:a + CELL_SLICE],
                                             pq is not None)
                ii.append(i)
                jj.append(j + a)
                vv.append(v)
                nbound += int(nb_)
            if len(ii) == 1:
                return ii[0], jj[0], vv[0], nbound
            return np.concatenate(ii), np.concatenate(jj), np.concatenate(vv), nbound

        def cell(c: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], int]:
            qs = fq[bounds[c]:bounds[c + 1]]
            rq = ra[qs]
            bq = bits[qs]
            g = self.cells[c]
            prior: tuple[np.ndarray, ...] = ()
            inner: tuple[np.ndarray, ...] = ()
            nbound = 0
            if g.n:
                qi, kj, _, n1 = pairs(rq, bq, g.data[:g.n], g.bits[:g.n])
                prior = (qs[qi], g.ids[kj])
                nbound += n1
            ms = ho[hb[c]:hb[c + 1]]
            if len(ms):
                qi, mj, sv, n2 = pairs(rq, bq, ra[ms], bits[ms], qs, ms)
                inner = (qs[qi], ms[mj], sv)
                nbound += n2
            return prior, inner, nbound

        for prior, inner, nbound in _map_cells(cell, np.flatnonzero(np.diff(bounds)).tolist()):
            self.stats["bound_pairs"] += nbound
            if prior and len(prior[0]):
                pq.append(prior[0])
                pk.append(prior[1])
            if inner and len(inner[0]):
                iq.append(inner[0])
                ij.append(inner[1])
                ir.append(inner[2])
        e64, ef = np.empty(0, np.int64), np.empty(0)
        q1 = np.concatenate(pq) if pq else e64
        k1 = np.concatenate(pk) if pk else e64
        q2 = np.concatenate(iq) if iq else e64
        j2 = np.concatenate(ij) if ij else e64
        r2 = np.concatenate(ir) if ir else ef
        t0 = self._tick("candidates", t0)
        x8, xs = _quantize(x)
        s1 = self._scored(q1, k1, x, x8, xs, self.q8, self.scale,
                          lambda k: self.reader.read(self.kpos[k]), reread=True)
        t0 = self._tick("verify", t0)
        # A prompt with an earlier kept prompt at or above the threshold is a duplicate whatever
        # the block holds: pairs with it as the earlier prompt cannot matter, nor pairs that
        # cannot beat its best prior similarity (a prior prompt wins ties: it is earlier).
        best = np.full(nb, -np.inf)
        hit = s1 >= self.t
        np.maximum.at(best, q1[hit], s1[hit])
        m2 = (r2 >= cut) & (best[j2] < self.t) & (r2 >= best[q2])
        q2, j2 = q2[m2], j2[m2]
        self.stats["sketch_pairs"] += len(q1) + len(q2)
        s2 = self._scored(q2, j2, x, x8, xs, x8, xs, lambda k: x[k])
        self.stats["inblock_pairs"] += len(q2)
        t0 = self._tick("inblock", t0)
        dec = resolve_block(nb, int(pos[0]), (q1, self.kpos[k1], s1), (q2, j2, s2), self.t)
        self._tick("resolve", t0)
        return dec, home, (x8, xs)

    def _scored(self, q: np.ndarray, k: np.ndarray, x: np.ndarray, x8: np.ndarray,
                xs: np.ndarray, k8: np.ndarray, ks: np.ndarray,
                vectors: Callable[[np.ndarray], np.ndarray], reread: bool = False) -> np.ndarray:
        """Similarities of pairs (block row q, row k of the int8 store k8) from int8 copies on
        both sides; pairs within the int8 error bound of the threshold are scored exactly (the
        earlier vectors from `vectors`: re-read from the lake for kept prompts).

        Each int8 copy has an error of at most scale/2 per component, so the product's error is
        at most (sa |y|_1 + sb |x|_1) / 2 and about sqrt((sa^2 + sb^2) / 12) in practice
        (independent rounding); pairs within min(worst case, 8 such deviations) are re-scored."""
        if not len(q):
            return np.empty(0)
        sa, sb = xs[q].astype(np.float64), ks[k].astype(np.float64)
        sims = _int8_dots(x8, q, k8, k) * sa * sb
        worst = 0.5 * (sa + sb) * math.sqrt(self.dim)  # |x|_1 <= sqrt(d) for unit vectors
        bound = np.minimum(worst, 8.0 * np.sqrt((sa * sa + sb * sb) / 12.0)) + self.margin32
        self.stats["verified_pairs"] += len(q)
        near = np.abs(sims - self.t) < bound
        if near.any():
            idx = np.flatnonzero(near)
            uk, inv = np.unique(k[idx], return_inverse=True)
            xk = vectors(uk)
            sims[idx] = canonical_pair_sims(x, q[idx], xk, inv)
            if reread:
                self.stats["reread_pairs"] += len(idx)
        return sims

    def sample_report(self, decided: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any] | None:
        """Exact decision vs ours on the sample: agreement, missed duplicates, false ones."""
        if not len(self.sample_pos):
            return None
        exact_dup = self.sample_best >= self.t
        ours_dup = ~decided(self.sample_pos)
        agree = exact_dup == ours_dup
        n_dup = int(exact_dup.sum())
        return {
            "sample": len(self.sample_pos),
            "agree": int(agree.sum()),
            "agreement": float(agree.mean()),
            "exact_duplicates": n_dup,
            "missed_duplicates": int((exact_dup & ~ours_dup).sum()),
            "false_duplicates": int((~exact_dup & ours_dup).sum()),
            "duplicate_recall": float((exact_dup & ours_dup).sum() / n_dup) if n_dup else 1.0,
        }



# ---------------------------------------------------------------------------- the lake side
@dataclass
class DedupReport:
    """What a dedup run did (the CLI prints it; `check` is the sample-based recall estimate)."""

    batch_id: str | None
    mode: str
    threshold: float
    column: str
    model: str | None
    dims: int
    rows: int = 0
    rows_with_vectors: int = 0
    rows_without_vectors: int = 0
    reused: int = 0
    decided: int = 0
    kept: int = 0
    duplicates: int = 0
    kept_total: int = 0
    recompute: str | None = None
    notes: list[str] = field(default_factory=list)
    check: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def summary_rows(self) -> list[dict[str, Any]]:
        rows: list[tuple[str, Any]] = [
            ("batch", self.batch_id or "(nothing to do)"), ("mode", self.mode),
            ("threshold", self.threshold), ("column", self.column), ("model", self.model),
            ("prompts", self.rows), ("with vectors", self.rows_with_vectors),
            ("without vectors (skipped)", self.rows_without_vectors),
            ("decisions reused", self.reused), ("decided now", self.decided),
            ("kept now", self.kept), ("duplicates now", self.duplicates),
            ("kept in total (VidProS size)", self.kept_total),
            ("full/partial recompute", self.recompute or "no"),
        ]
        if self.check:
            c = self.check
            rows.append(("estimated recall", f"{c['agreement']:.2%} agreement with the exact "
                         f"decision on {c['sample']:,} sampled prompts ({c['missed_duplicates']} "
                         f"missed duplicates, {c['false_duplicates']} false)"))
        for k, v in self.params.items():
            rows.append((k, v))
        rows.append(("seconds", round(self.seconds, 2)))
        return [{"key": k, "value": str(v)} for k, v in rows]


def vector_column(lake: Lake, column: str = DEFAULT_COLUMN) -> tuple[pa.Field, dict[str, str]]:
    ds = lake.dataset("prompts")
    if column not in ds.schema.names:
        vecs = [f.name for f in ds.schema if is_vector_field(f)]
        raise SchemaError(
            f"the prompts table has no vector column {column!r} "
            f"({'it has ' + ', '.join(vecs) if vecs else 'it has no vector columns'}); attach "
            "embeddings first (`vidlake ingest VidProM_embed.hdf5` or `vidlake embed`)")
    f = ds.schema.field(column)
    if not is_vector_field(f):
        raise SchemaError(f"column {column!r} is {f.type}, not a fixed-size vector column")
    return f, field_meta(f)


def _signature(threshold: float, column: str, model: str | None, dims: int) -> dict[str, Any]:
    return {"threshold": float(threshold), "column": column, "model": model, "dims": dims}


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _read_state(ds: Any, column: str) -> pa.Table:
    cols = {"uuid": "uuid", "time": "time", "has_vec": f"{_quote(column)} IS NOT NULL",
            **{c: c for c in RESULT_COLUMNS}}
    t = ds.to_table(columns=cols)
    return t.append_column("offset", pa.array(np.arange(t.num_rows, dtype=np.int64)))


def _prior_decisions(order: pa.Table, sig: dict[str, Any],
                     exact: bool) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """Per row in order: decided by an earlier run whose signature matches (and, for an exact
    run, that was exact), that run's kept flag, and the first other run's record met."""
    import pyarrow.compute as pc

    runs = order.column("dedup_run").combine_chunks().dictionary_encode()
    uniq = order.column("unique_semantic").combine_chunks()
    records: list[dict[str, Any]] = []
    for text in runs.dictionary.to_pylist():
        try:
            p = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            p = {}
        records.append(p if isinstance(p, dict) else {})
    good = np.array([all(p.get(k) == v for k, v in sig.items())
                     and (not exact or p.get("mode") == "exact") for p in records] + [False], bool)
    has = np.asarray(pc.and_(runs.is_valid(), uniq.is_valid()).to_numpy(zero_copy_only=False), bool)
    idx = np.asarray(runs.indices.fill_null(len(records)).to_numpy(zero_copy_only=False), np.int64)
    decided = has & good[idx]
    odd = np.flatnonzero(has & ~good[idx])
    other = records[int(idx[odd[0]])] if len(odd) else None
    kept = np.asarray(uniq.fill_null(False).to_numpy(zero_copy_only=False), bool) & decided
    return decided, kept, other


def time_order(state: pa.Table) -> pa.Table:
    """Rows with vectors, sorted by time (nulls last) then uuid."""
    import pyarrow.compute as pc

    t = state.filter(pc.field("has_vec"))
    idx = pc.sort_indices(t, sort_keys=[("time", "ascending", "at_end"),
                                        ("uuid", "ascending", "at_end")])
    return t.take(idx)


def dedup(
    lake: Lake,
    threshold: float = DEFAULT_THRESHOLD,
    exact: bool = False,
    *,
    column: str = DEFAULT_COLUMN,
    recompute: bool = False,
    check_sample: int = 1000,
    partitions: int | None = None,
    nprobe: int | None = None,
    reduced_dims: int | None = None,
    sketch_dims: int = 512,
    block_rows: int | None = None,
    min_approx_rows: int = 50_000,
    memory_gb: float = DEFAULT_MEMORY_GB,
    commit_rows: int = 500_000,
    write_rows: int = 65_536,
    seed: int = 0,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> DedupReport:
    """Decide `unique_semantic`, `dup_of`, `dup_similarity` for every prompt with a vector.

    Reuses earlier decisions where they still hold (see the module docstring); `exact=True`
    gives the brute-force answer; below `min_approx_rows` rows to compare, approximate mode
    runs the exact engine too (it is faster there). Returns a `DedupReport`.
    """
    t_start = time.perf_counter()
    if not isinstance(threshold, int | float) or not (0.0 < float(threshold) <= 1.0):
        raise DedupError(f"threshold must be in (0, 1], got {threshold!r}")
    threshold = float(threshold)
    f, meta = vector_column(lake, column)
    dims = f.type.list_size
    model = meta.get("vidlake:model")
    ds = lake.dataset("prompts")
    t_state = time.perf_counter()
    state = _read_state(ds, column)
    order = time_order(state)
    t_state = time.perf_counter() - t_state
    n = order.num_rows
    sig = _signature(threshold, column, model, dims)
    report = DedupReport(None, "exact" if exact else "approx", threshold, column, model, dims,
                         rows=state.num_rows, rows_with_vectors=n,
                         rows_without_vectors=state.num_rows - n)
    if report.rows_without_vectors:
        report.notes.append(f"{report.rows_without_vectors:,} prompts have no {column} vector "
                            "and were left undecided (run `vidlake embed` first)")

    # -- what earlier runs decided that still holds (each distinct run record parsed once;
    # no per-row Python objects: at 1.67M rows those lists cost hundreds of MB for the run)
    decided, kept_flags, other = _prior_decisions(order, sig, exact)
    uuids = order.column("uuid")
    cut = int(np.argmin(decided)) if not decided.all() else n
    if recompute:
        cut = 0
        report.recompute = "full recompute (--recompute)"
    # every duplicate in the reused prefix must point at a kept prompt of the prefix
    if cut:
        pos_of = {u: i for i, u in enumerate(uuids.slice(0, cut).to_pylist())}
        for i, d in enumerate(order.column("dup_of").slice(0, cut).to_pylist()):
            if d is not None and not kept_flags[i] and (d not in pos_of or not kept_flags[pos_of[d]]):
                cut = i
                report.notes.append(f"prompt {uuids[i]} points at {d}, which is no longer a kept "
                                    "prompt: deciding again from there")
                break
        del pos_of
    later = int(decided[cut:].sum())
    if report.recompute is None:
        if cut == 0 and other is not None and not decided.any():
            changes = [f"{k} {other.get(k)!r} -> {v!r}" for k, v in sig.items() if other.get(k) != v]
            if not changes and exact:
                changes = ["the earlier run was approximate; --exact decides everything again"]
            report.recompute = "full recompute: " + ", ".join(changes)
        elif later:
            report.recompute = (f"{later:,} already-decided prompts come after a new or changed "
                                "prompt in time order and are decided again")
    report.reused = cut
    positions = np.arange(cut, n, dtype=np.int64)
    prior_kept = np.flatnonzero(kept_flags[:cut])
    offsets = order.column("offset").to_numpy()
    del state, order  # the earlier results' columns are not needed for the run
    reader = VectorReader(ds, column, offsets, uuids, dims)
    frag_rows = np.cumsum([f.count_rows() for f in ds.get_fragments()])
    frag_of = np.searchsorted(frag_rows, offsets, side="right")
    if not len(positions):
        report.kept_total = int(kept_flags.sum())
        report.mode = "up to date"
        report.seconds = time.perf_counter() - t_start
        return report

    # Exact is also the cheaper way to add a few new prompts: one pass over the kept set.
    small = len(positions) <= SMALL_INCREMENT and len(prior_kept) > 0
    use_exact = exact or small or (len(positions) + len(prior_kept)) < min_approx_rows
    engine: ExactEngine | ApproxEngine
    if use_exact:
        engine = ExactEngine(reader, threshold, memory_bytes=memory_gb * 2 ** 30,
                             block_rows=block_rows)
        report.mode = ("exact" if exact else "exact (a small increment)" if small
                       else "exact (small enough; approximate mode not needed)")
    else:
        engine = ApproxEngine(reader, threshold, capacity=len(prior_kept) + len(positions),
                              partitions=partitions, nprobe=nprobe, reduced_dims=reduced_dims,
                              block_rows=block_rows, sketch_dims=sketch_dims, seed=seed)
        rng = np.random.default_rng(seed + 1)
        engine.train(np.concatenate([prior_kept, positions]))
        if check_sample:
            engine.set_sample(rng.choice(positions, min(check_sample, len(positions)), replace=False))
        engine.load_prior(prior_kept)

    kept = np.ones(n, bool)
    kept[:cut] = kept_flags[:cut]
    dup_of = np.full(n, -1, np.int64)
    sim = np.full(n, np.nan)

    def on_block(pos: np.ndarray, dec: Decisions) -> None:
        kept[pos] = dec.kept
        dup_of[pos] = dec.dup_of
        sim[pos] = dec.sim

    run_info = {**sig, "mode": "exact" if use_exact else "approx",
                "time": datetime.now(UTC).isoformat(timespec="seconds")}
    params = {"threshold": threshold, "column": column, "model": model, "dims": dims,
              "mode": run_info["mode"], "recompute": report.recompute, "reused": cut}
    if dry_run:
        engine.run(positions, prior_kept, progress, on_block)
        report.batch_id = None
    else:
        with lake.batch("dedup", params=params,
                        provenance={"numpy": np.__version__, "engine": engine.mode,
                                    "model": model, "dims": dims}) as b:
            report.batch_id = b.batch_id
            run_info["batch"] = b.batch_id
            run_json = json.dumps(run_info, sort_keys=True)
            written = cut

            def on_block_commit(pos: np.ndarray, dec: Decisions) -> None:
                nonlocal written
                on_block(pos, dec)
                end = int(pos[-1]) + 1
                if end - written >= commit_rows and end < n:
                    _write(b, uuids, kept, dup_of, sim, written, end, run_json, frag_of, write_rows)
                    b.commit()
                    written = end

            engine.run(positions, prior_kept, progress, on_block_commit)
            _write(b, uuids, kept, dup_of, sim, written, n, run_json, frag_of, write_rows)
            b.counts.update({"rows_updated": n - cut, "kept": int(kept[cut:].sum()),
                             "duplicates": int((~kept[cut:]).sum()), "reused": cut})
    report.decided = n - cut
    report.kept = int(kept[cut:].sum())
    report.duplicates = report.decided - report.kept
    report.kept_total = int(kept.sum())
    report.params = {k: v for k, v in engine.stats.items()}
    if isinstance(engine, ApproxEngine):
        report.timings = {k: round(v, 2) for k, v in engine.timers.items()}
        report.check = engine.sample_report(lambda p: kept[p])
    report.timings["read_vectors"] = round(reader.seconds, 2)
    report.timings["state"] = round(t_state, 2)
    report.seconds = time.perf_counter() - t_start
    report.peak_rss_mb = _peak_rss_mb()
    return report


def _write(b: Any, uuids: pa.Array, kept: np.ndarray, dup_of: np.ndarray, sim: np.ndarray,
           start: int, end: int, run_json: str, frag_of: np.ndarray, write_rows: int) -> None:
    """Write the decisions of order positions [start, end), whole fragments per update call
    (each call rewrites the result columns of the fragments it touches, and Lance's merge
    join has a bounded memory pool), committing each call as a chunk of the batch."""
    import pyarrow.compute as pc

    if end <= start:
        return
    pos = np.arange(start, end)
    frag = frag_of[pos]
    order = np.argsort(frag, kind="stable")
    pos, frag = pos[order], frag[order]
    bounds = np.flatnonzero(np.r_[True, frag[1:] != frag[:-1], True])
    groups: list[np.ndarray] = []
    cur: list[np.ndarray] = []
    size = 0
    for a, z in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if cur and size + (z - a) > write_rows:
            groups.append(np.concatenate(cur))
            cur, size = [], 0
        cur.append(pos[a:z])
        size += z - a
    if cur:
        groups.append(np.concatenate(cur))
    for i, p in enumerate(groups):
        k = kept[p]
        idx = pa.array(p)
        dup_uuid = pa.nulls(len(p), pa.string())
        if (~k).any():
            taken = uuids.take(pa.array(np.where(k, 0, dup_of[p])))
            dup_uuid = pc.if_else(pa.array(~k), taken, pa.scalar(None, pa.string()))
        s = np.where(k, np.nan, sim[p]).astype(np.float32)
        table = pa.table({
            "uuid": uuids.take(idx),
            "unique_semantic": pa.array(k),
            "dup_of": dup_uuid,
            "dup_similarity": pa.array(s, mask=k),
            "dedup_run": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(len(p), np.int32)), pa.array([run_json])).cast(pa.string()),
        })
        b.update_columns("prompts", table, on="uuid", mode="rewrite_columns")
        if i < len(groups) - 1:
            b.commit()


from .index import build_indexes, dupes, similar  # noqa: E402  (the public API lives here too)

__all__ = ["DEFAULT_COLUMN", "DEFAULT_THRESHOLD", "DedupReport", "build_indexes", "dedup",
           "dupes", "similar"]
