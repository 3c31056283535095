"""Embeddings with the structure real prompt embeddings have, for the dedup benchmarks.

Real text embeddings are anisotropic (a few hundred directions carry most of the variance),
clustered by topic with very uneven topic sizes, and a prompt gallery is full of near-duplicates
(users resubmit the same idea with small edits). This generator reproduces that:

* a random orthonormal basis of ``latent`` directions with a decaying spectrum, plus a little
  isotropic noise in every dimension (so no projection captures everything);
* topics with Zipf-distributed popularity; within a topic prompts are similar but mostly below
  the threshold;
* near-duplicates of earlier prompts, built to have an exact cosine to their parent: many well
  above the threshold, a band *just above* and a band *just below* it (0.0005 to 0.01 away), and
  a few exact copies;
* rows are produced in time order (parents always earlier than their variations).

``python benchmarks/gen_vectors.py --rows 100000 --dim 384 --lake /tmp/dedup-bench/l100k``
builds a lake with that many VidProM-shaped prompts and attaches the vectors through the real
HDF5 ingest path (the HDF5 file is deleted afterwards).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class Generator:
    def __init__(self, dim: int, *, seed: int = 0, threshold: float = 0.8, latent: int | None = None,
                 topics: int = 2000, dup_rate: float = 0.35, band_rate: float = 0.06,
                 exact_rate: float = 0.01, pool: int = 65536):
        self.rng = np.random.default_rng(seed)
        self.dim = dim
        self.t = threshold
        self.latent = latent or min(dim, max(64, dim // 6))
        g = self.rng.standard_normal((dim, self.latent)).astype(np.float32)
        q, _ = np.linalg.qr(g)
        self.basis = np.ascontiguousarray(q.T)  # latent x dim, orthonormal rows
        self.sigma = (1.0 + np.arange(self.latent, dtype=np.float32)) ** -0.5
        self.topics = self._unit(self._latent(topics))
        pop = 1.0 / (1.0 + np.arange(topics)) ** 1.1
        self.pop = pop / pop.sum()
        self.dup_rate, self.band_rate, self.exact_rate = dup_rate, band_rate, exact_rate
        self.pool = np.zeros((pool, dim), np.float32)
        self.pool_n = 0
        self.pool_i = 0

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def _latent(self, n: int) -> np.ndarray:
        z = self.rng.standard_normal((n, self.latent)).astype(np.float32) * self.sigma
        return z @ self.basis

    def _fresh(self, n: int) -> np.ndarray:
        t = self.rng.choice(len(self.topics), n, p=self.pop)
        own = self._unit(self._latent(n))
        iso = self.rng.standard_normal((n, self.dim)).astype(np.float32) / np.sqrt(self.dim)
        return self._unit(0.75 * self.topics[t] + 0.55 * own + 0.25 * iso)

    def _targets(self, n: int) -> np.ndarray:
        u = self.rng.random(n)
        s = np.where(u < 0.55, self.rng.uniform(0.86, 0.995, n), self.rng.uniform(self.t + 0.01, 0.86, n))
        band = self.rng.random(n) < self.band_rate
        side = np.where(self.rng.random(n) < 0.5, 1.0, -1.0)
        s = np.where(band, self.t + side * self.rng.uniform(0.0005, 0.01, n), s)
        s = np.where(self.rng.random(n) < self.exact_rate, 1.0, s)
        return s

    def block(self, n: int) -> np.ndarray:
        out = self._fresh(n)
        if self.pool_n:
            dup = np.flatnonzero(self.rng.random(n) < self.dup_rate)
            if len(dup):
                # recent prompts are resubmitted more often than old ones
                back = np.minimum((self.rng.pareto(0.8, len(dup)) * 50).astype(np.int64), self.pool_n - 1)
                parents = self.pool[(self.pool_i - 1 - back) % len(self.pool)]
                s = self._targets(len(dup))
                noise = self._unit(0.8 * self._unit(self._latent(len(dup)))
                                   + 0.2 * self.rng.standard_normal((len(dup), self.dim)).astype(np.float32)
                                   / np.sqrt(self.dim))
                noise -= np.einsum("ij,ij->i", noise, parents)[:, None] * parents
                noise = self._unit(noise)
                out[dup] = s[:, None] * parents + np.sqrt(np.maximum(0.0, 1 - s * s))[:, None] * noise
        out = self._unit(out.astype(np.float64)).astype(np.float32)
        # ring buffer of recent prompts, for later variations
        k = min(n, len(self.pool))
        idx = (self.pool_i + np.arange(k)) % len(self.pool)
        self.pool[idx] = out[-k:]
        self.pool_i = (self.pool_i + k) % len(self.pool)
        self.pool_n = min(len(self.pool), self.pool_n + k)
        return out

    def blocks(self, n: int, rows: int = 8192) -> Iterator[np.ndarray]:
        # small sub-blocks so that variations of very recent prompts happen too
        for s in range(0, n, rows):
            k = min(rows, n - s)
            parts = [self.block(min(1024, k - i)) for i in range(0, k, 1024)]
            yield np.concatenate(parts)


def lake_order(lake: object) -> list[str]:
    """The lake's uuids in dedup order (time, then uuid)."""
    from vidprom_lake.dedup import _read_state, time_order

    st = _read_state(lake.dataset("prompts"), "uuid")  # type: ignore[attr-defined]
    return time_order(st).column("uuid").to_pylist()


def build_lake(path: str | Path, rows: int, dim: int, *, seed: int = 0, model: str | None = None,
               dtype: str = "float32", log: bool = True) -> Path:
    """A lake at `path` with `rows` synthetic prompts and generated `dim`-d vectors attached."""
    import h5py

    from vidprom_lake import create_lake, synth
    from vidprom_lake.lake import open_lake

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    work = path.parent / (path.name + ".tmp")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    csv = synth.write_vidprom_csv(work / "prompts.csv", rows, seed=seed)
    lake = create_lake(path)
    lake.ingest(csv)
    os.remove(csv)
    if log:
        print(f"  {rows:,} prompts ingested in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    lake = open_lake(path)
    uuids = lake_order(lake)
    h5 = work / "embed.hdf5"
    gen = Generator(dim, seed=seed)
    t1 = time.perf_counter()
    with h5py.File(h5, "w") as f:
        f.create_dataset("uuid", data=np.array(uuids, dtype="S36"))
        ds = f.create_dataset("embeddings", shape=(len(uuids), dim), dtype=dtype,
                              chunks=(min(len(uuids), 256), dim))
        f.attrs["model"] = model or f"synthetic-{dim}d"
        done = 0
        for b in gen.blocks(len(uuids)):
            ds[done:done + len(b)] = b.astype(dtype)
            done += len(b)
    if log:
        print(f"  {rows:,} x {dim} vectors generated in {time.perf_counter() - t1:.0f}s", file=sys.stderr)
    t2 = time.perf_counter()
    lake.ingest(h5, dtype=dtype)
    shutil.rmtree(work)
    if log:
        print(f"  vectors attached in {time.perf_counter() - t2:.0f}s", file=sys.stderr)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    build_lake(a.lake, a.rows, a.dim, seed=a.seed, model=a.model)


if __name__ == "__main__":
    main()
