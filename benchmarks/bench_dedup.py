"""VidProS dedup and `similar` benchmarks, side by side with SemHash, on generated embeddings.

    python benchmarks/bench_dedup.py --size 100k            # ~3 min: ours, exact, SemHash
    python benchmarks/bench_dedup.py --size 1m              # ours; add --semhash for SemHash (~30 min)
    python benchmarks/bench_dedup.py --size full            # 1.67M x 3072: ~45 GB disk, run alone

Each size builds a lake under --root (default /tmp/dedup-bench) with benchmarks/gen_vectors.py
(clustered, anisotropic vectors with planted near-duplicates just above and below 0.8), then
runs every method in its own child process so that peak RSS is per method:

* ``vidpros``: `vidlake dedup` (approximate mode), with an exact check of 10k random decisions
  (the check's time is reported apart);
* ``exact``: `vidlake dedup --exact` where it is affordable (100k), the ground truth there;
* ``semhash``: SemHash 0.5 `self_deduplicate(0.8)` on the same vectors, fed through an encoder
  that returns the precomputed vectors;
* ``similar``: `vidlake index` then `similar` on 200 random queries: p50/p95 latency and
  recall@10 against brute force.

Agreement = share of prompts whose kept/duplicate decision equals the exact greedy's (all
prompts at 100k; at larger sizes, a 10k random sample checked exactly against the kept set the
method itself built, which is the only affordable check there). Duplicate recall = share of the
exact duplicates a method also marks. Results go to benchmarks/results/dedup.md (latest run per
size) and the lake is deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = {"100k": (100_000, 384), "1m": (1_000_000, 384), "full": (1_672_243, 3072)}
RESULTS = HERE / "results" / "dedup.md"
THRESHOLD = 0.8
WARM_QUERIES = 20  # unmeasured `similar` queries before the timed ones
FINDINGS = "<!-- findings: hand-written, kept when the figures above are regenerated -->"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------- workers
def _reader(lake_path: str):  # noqa: ANN202
    from vidprom_lake.dedup import VectorReader, _read_state, time_order
    from vidprom_lake.lake import open_lake

    ds = open_lake(lake_path).dataset("prompts")
    order = time_order(_read_state(ds, "embedding"))
    dim = ds.schema.field("embedding").type.list_size
    return order, VectorReader(ds, "embedding", order.column("offset").to_numpy(),
                               order.column("uuid"), dim)


def _order_vectors(lake_path: str) -> tuple[list[str], np.ndarray]:
    """Every vector in dedup order, in memory (SemHash needs them so; not for the full size)."""
    order, reader = _reader(lake_path)
    return order.column("uuid").to_pylist(), reader.read(np.arange(order.num_rows))


def _decisions(lake_path: str) -> np.ndarray:
    from vidprom_lake.dedup import _read_state, time_order
    from vidprom_lake.lake import open_lake

    order = time_order(_read_state(open_lake(lake_path).dataset("prompts"), "embedding"))
    return np.array(order.column("unique_semantic").to_pylist(), bool)


def w_dedup(lake_path: str, out: str, exact: bool, check: int) -> dict:
    from vidprom_lake.dedup import dedup
    from vidprom_lake.lake import open_lake

    t0 = time.perf_counter()
    rep = dedup(open_lake(lake_path), THRESHOLD, exact=exact, recompute=True,
                check_sample=check, min_approx_rows=0)
    secs = time.perf_counter() - t0
    np.save(out, _decisions(lake_path))
    return {"seconds": secs, "check_seconds": rep.timings.get("check", 0.0), "kept": rep.kept_total,
            "check": rep.check, "params": rep.params, "timings": rep.timings,
            "peak_rss_mb": rss_mb()}


class VectorEncoder:
    """SemHash encoder over precomputed vectors: each record is its row number as text."""

    def __init__(self, x: np.ndarray):
        self.x = x

    def encode(self, inputs, **kwargs):  # noqa: ANN001, ANN003, ANN201
        if isinstance(inputs, str):
            return self.x[int(inputs)]
        return self.x[np.fromiter((int(s) for s in inputs), np.int64, count=len(inputs))]


def w_semhash(lake_path: str, out: str) -> dict:
    from semhash import SemHash

    _, x = _order_vectors(lake_path)
    records = [str(i) for i in range(len(x))]
    t0 = time.perf_counter()
    sh = SemHash.from_records(records, model=VectorEncoder(x))
    res = sh.self_deduplicate(threshold=THRESHOLD)
    secs = time.perf_counter() - t0
    kept = np.zeros(len(x), bool)
    kept[[int(r) for r in res.selected]] = True
    np.save(out, kept)
    return {"seconds": secs, "kept": int(kept.sum()), "peak_rss_mb": rss_mb()}


def w_check(lake_path: str, decisions: str, sample: int, seed: int) -> dict:
    """Exact decision on a random sample, given the kept set of `decisions` (streamed)."""
    kept = np.load(decisions)
    order, reader = _reader(lake_path)
    rng = np.random.default_rng(seed)
    s = np.sort(rng.choice(order.num_rows, min(sample, order.num_rows), replace=False))
    xs = reader.read(s)
    best = np.full(len(s), -np.inf)
    kp = np.flatnonzero(kept)
    for k, xk in reader.blocks(kp, 32768):
        sims = xs @ xk.T
        sims[s[:, None] <= k[None, :]] = -np.inf
        best = np.maximum(best, sims.max(axis=1))
    exact_dup = best >= THRESHOLD
    ours_dup = ~kept[s]
    return {"sample": len(s), "agreement": float((exact_dup == ours_dup).mean()),
            "duplicate_recall": float((exact_dup & ours_dup).sum() / max(1, exact_dup.sum())),
            "false_duplicates": int((~exact_dup & ours_dup).sum()), "peak_rss_mb": rss_mb()}


def w_similar(lake_path: str, index_type: str, queries: int, seed: int,
              sweep: list[int] | None = None) -> dict:
    from vidprom_lake.index import build_indexes, similar
    from vidprom_lake.lake import open_lake

    t0 = time.perf_counter()
    rows = build_indexes(open_lake(lake_path), index_type=index_type, rebuild=True)
    build = time.perf_counter() - t0
    lake = open_lake(lake_path)
    order, reader = _reader(lake_path)
    rng = np.random.default_rng(seed)
    qi = np.sort(rng.choice(order.num_rows, queries, replace=False))
    qv = reader.read(qi)
    # noise of the same angle at every dimension: 0.02 per coordinate at 384 dims (norm ~0.39,
    # cosine ~0.93 to the prompt it came from); 0.02 per coordinate at 3072 dims would be norm
    # 1.1, a query at cosine ~0.67 to its source, farther than any real text query is from
    # its nearest prompts
    qv = qv + 0.02 * np.sqrt(384 / qv.shape[1]) * rng.standard_normal(qv.shape).astype(np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    # brute-force top 10 per query, streaming the vectors past the queries
    top_s = np.full((queries, 10), -np.inf)
    top_i = np.zeros((queries, 10), np.int64)
    for pos, xb in reader.blocks(np.arange(order.num_rows), 32768):
        sims = qv @ xb.T
        cat_s = np.concatenate([top_s, sims], axis=1)
        cat_i = np.concatenate([top_i, np.broadcast_to(pos, sims.shape)], axis=1)
        pick = np.argsort(-cat_s, axis=1)[:, :10]
        top_s = np.take_along_axis(cat_s, pick, 1)
        top_i = np.take_along_axis(cat_i, pick, 1)
    truth = top_i.tolist()
    sim10 = float(np.median(top_s[:, 9]))  # how close the 10th true neighbour is
    uarr = np.array(order.column("uuid").to_pylist())
    # Warm the process and the index with queries of their own (not the measured ones, whose
    # re-ranking rows would then be cached), then time the default and every --probe-sweep
    # setting on each query in turn, the order rotating from query to query, so no setting
    # runs first on cold pages more often than another.
    for q in reader.read(np.sort(rng.choice(order.num_rows, WARM_QUERIES, replace=False))):
        similar(lake, vector=q, k=10)
    settings: list[int | None] = [None, *(sweep or [])]  # None: similar's own default
    lat: dict[int | None, list[float]] = {s: [] for s in settings}
    rec: dict[int | None, list[float]] = {s: [] for s in settings}
    for i in range(queries):
        r = i % len(settings)
        for nprobes in settings[r:] + settings[:r]:
            t = time.perf_counter()
            got = similar(lake, vector=qv[i], k=10, nprobes=nprobes)
            lat[nprobes].append((time.perf_counter() - t) * 1000)
            rec[nprobes].append(len(set(got.column("uuid").to_pylist())
                                    & set(uarr[truth[i]].tolist())) / 10)
    other = [{"nprobes": n, "p50_ms": float(np.percentile(lat[n], 50)),
              "p95_ms": float(np.percentile(lat[n], 95)), "recall_at_10": float(np.mean(rec[n]))}
             for n in sweep or []]  # the same queries at other probe counts (refine unchanged)
    vec = [r for r in rows if r["index"] == "embedding_idx"][0]
    return {"index_type": index_type if index_type.upper() != "AUTO" else f"auto ({vec['type']})",
            "sweep": other,
            "build_seconds": build,
            "vector_index": [r for r in rows if r["index"] == "embedding_idx"][0]["params"],
            "search": search_params(lake),
            "sim10": sim10,
            "p50_ms": float(np.percentile(lat[None], 50)),
            "p95_ms": float(np.percentile(lat[None], 95)),
            "recall_at_10": float(np.mean(rec[None])), "peak_rss_mb": rss_mb()}


def search_params(lake) -> str:  # noqa: ANN001
    """The nprobes / refine_factor `similar` used (its defaults for this index)."""
    from vidprom_lake.index import SEARCH_DEFAULTS, _num_partitions, _vector_index, default_nprobes

    ds = lake.dataset("prompts")
    idx = _vector_index(ds, "embedding")
    kind = str(idx.index_type).upper()
    nprobes = default_nprobes(kind, _num_partitions(ds, idx.name))
    return f"nprobes={nprobes}, refine_factor={SEARCH_DEFAULTS.get(kind, {}).get('refine_factor')}"


WORKERS = {"dedup": w_dedup, "semhash": w_semhash, "check": w_check, "similar": w_similar}


def child(name: str, *args: object) -> dict:
    """Run one worker in a fresh interpreter (its own peak RSS); returns its JSON answer."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, json.dumps(args)]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"worker {name} failed:\n{p.stderr[-4000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_seconds"] = time.perf_counter() - t0
    out["load"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return out


# ---------------------------------------------------------------------------- driver
def agreement(a: np.ndarray, truth: np.ndarray) -> dict:
    dup_t, dup_a = ~truth, ~a
    return {"agreement": float((a == truth).mean()),
            "duplicate_recall": float((dup_t & dup_a).sum() / max(1, dup_t.sum())),
            "false_duplicates": int((~dup_t & dup_a).sum())}


def run_size(size: str, root: Path, *, semhash: bool, exact: bool, index_types: list[str],
             queries: int, keep: bool, reuse: bool, check: int, check_exact: int,
             similar_only: dict | None = None, sweep: list[int] | None = None) -> dict:
    sys.path.insert(0, str(HERE))
    from gen_vectors import build_lake

    n, dim = SIZES[size]
    lake = root / f"lake-{size}"
    print(f"[{size}] building {n:,} x {dim} lake under {root}", file=sys.stderr)
    t0 = time.perf_counter()
    reused = reuse and (lake / "prompts.lance").exists()
    if reused:
        print(f"[{size}] reusing the lake at {lake}", file=sys.stderr)
    else:
        build_lake(lake, n, dim, seed=0)
    res: dict = {"size": size, "rows": n, "dim": dim, "reused": reused,
                 "build_seconds": time.perf_counter() - t0,
                 "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "host": platform.node(),
                 "load": os.getloadavg()[0]}
    if similar_only is not None:  # keep the dedup figures of the earlier run of this size
        res = {**similar_only, "similar": [], "similar_when": res["when"],
               "similar_load": res["load"]}
        index_types = index_types or ["auto"]
    try:
        if similar_only is not None:
            pass
        elif exact:
            print(f"[{size}] exact", file=sys.stderr)
            res["exact"] = child("dedup", str(lake), str(root / "exact.npy"), True, 0)
        if similar_only is None:
            print(f"[{size}] vidpros (approximate)", file=sys.stderr)
            res["vidpros"] = child("dedup", str(lake), str(root / "ours.npy"), False, check)
            (root / f"partial-{size}.json").write_text(json.dumps(res, indent=1, default=str))
        if similar_only is None and not exact and check_exact:  # the agreement figure, by brute force apart from the run
            print(f"[{size}] exact check of {check_exact:,} random decisions", file=sys.stderr)
            res["vidpros"]["check10k"] = child("check", str(lake), str(root / "ours.npy"), check_exact, 1)
        if exact and similar_only is None:
            truth = np.load(root / "exact.npy")
            res["vidpros"]["vs_exact"] = agreement(np.load(root / "ours.npy"), truth)
        if semhash and similar_only is None:
            print(f"[{size}] semhash", file=sys.stderr)
            res["semhash"] = child("semhash", str(lake), str(root / "semhash.npy"))
            if exact:
                res["semhash"]["vs_exact"] = agreement(np.load(root / "semhash.npy"), truth)
            else:
                res["semhash"]["check"] = child("check", str(lake), str(root / "semhash.npy"), 10_000, 1)
        for it in index_types:
            print(f"[{size}] similar on {it}", file=sys.stderr)
            res.setdefault("similar", []).append(child("similar", str(lake), it, queries, 2, sweep))
    finally:
        if not keep and not reuse:
            shutil.rmtree(lake, ignore_errors=True)
            for f in ("exact.npy", "ours.npy", "semhash.npy"):
                (root / f).unlink(missing_ok=True)
    return res


def fmt_row(name: str, r: dict, key: str = "vs_exact") -> str:
    chk = r.get(key) or r.get("check10k") or r.get("check") or {}
    extra = ""
    if "check_seconds" in r and r["check_seconds"]:
        extra = f" (incl. {r['check_seconds']:.0f}s exact check of {(r.get('check') or {}).get('sample', 0):,})"
    if "load" in r:
        extra += f" [load {r['load'][0]:.1f} -> {r['load'][1]:.1f}]"
    return (f"| {name} | {r['seconds']:.1f}{extra} | {r['peak_rss_mb']:,.0f} | {r['kept']:,} | "
            f"{chk.get('agreement', float('nan')):.4%} | {chk.get('duplicate_recall', float('nan')):.4%} | "
            f"{chk.get('false_duplicates', '-')} |")


def targets(by_size: dict) -> list[str]:
    """Issue 5's figures, each with its status, from the latest run of each size."""
    def ok(flag: bool) -> str:
        return "PASS" if flag else "FAIL"

    rows = []
    full = by_size.get("full")
    if full and full.get("vidpros"):
        v = full["vidpros"]
        chk = v.get("check10k") or {}
        rows += [f"| VidProS 1.67M x 3072: time | {v['seconds']:.0f} s | < 600 s | {ok(v['seconds'] < 600)} |",
                 f"| VidProS 1.67M x 3072: peak RSS | {v['peak_rss_mb'] / 1024:.2f} GB | < 8 GB | "
                 f"{ok(v['peak_rss_mb'] < 8 * 1024)} |"]
        if chk:
            rows.append(f"| VidProS 1.67M x 3072: agreement, {chk['sample']:,} random prompts | "
                        f"{chk['agreement']:.2%} | >= 99.5% | {ok(chk['agreement'] >= 0.995)} |")
    small = by_size.get("100k")
    if small and small.get("semhash") and "vs_exact" in small["vidpros"]:
        v, sh = small["vidpros"], small["semhash"]
        better = (v["seconds"] < sh["seconds"]
                  and v["vs_exact"]["duplicate_recall"] >= sh["vs_exact"]["duplicate_recall"])
        rows.append(f"| 100k x 384 vs SemHash 0.5, same vectors, one run | {v['seconds']:.1f} s vs "
                    f"{sh['seconds']:.1f} s; duplicate recall {v['vs_exact']['duplicate_recall']:.2%} vs "
                    f"{sh['vs_exact']['duplicate_recall']:.2%} | faster at equal or better recall | "
                    f"{ok(better)} |")
    for s in (full or {}).get("similar") or []:
        for label, p50, rec in [(s.get("search", "default") + " (the default when run)", s["p50_ms"], s["recall_at_10"])] + [
                (f"nprobes={w['nprobes']}", w["p50_ms"], w["recall_at_10"]) for w in s.get("sweep") or []]:
            rows.append(f"| `similar` 1.67M x 3072, {s['index_type']}, {label} | p50 {p50:.1f} ms, "
                        f"recall@10 {rec:.3f} | p50 < 20 ms, recall@10 >= 0.95 | "
                        f"{ok(p50 < 20 and rec >= 0.95)} |")
    if not rows:
        return []
    return ["## Targets (issue 5)", "", "| figure | measured | target | result |",
            "|---|---|---|---|", *rows, ""]


def report(results: list[dict]) -> str:
    lines = ["# Dedup benchmark (`benchmarks/bench_dedup.py`)", "",
             f"Latest run per size; {os.cpu_count()} cores. The machine is shared with other "
             "engineers' jobs, so times are upper bounds (the load average is given per size).", ""]
    lines += targets({r["size"]: r for r in results})
    for r in results:
        lines += [f"## {r['rows']:,} x {r['dim']} (threshold {THRESHOLD})", "",
                  f"Run {r['when']} on {r['host']}, load average {r['load']:.1f} at start "
                  "(per method: 1-minute load at its start -> end, in brackets); "
                  + ("a lake generated earlier was reused" if r.get("reused") else
                     f"lake built in {r['build_seconds']:.0f}s (not counted)") + ".", "",
                  "| method | seconds | peak RSS MB | kept | agreement | duplicate recall | false dups |",
                  "|---|---|---|---|---|---|---|"]
        if "exact" in r:
            e = dict(r["exact"])
            e["vs_exact"] = {"agreement": 1.0, "duplicate_recall": 1.0, "false_duplicates": 0}
            lines.append(fmt_row("vidlake dedup --exact", e))
        v = r["vidpros"]
        lines.append(fmt_row("vidlake dedup (approx.)", v, "vs_exact" if "vs_exact" in v
                             else "check10k" if v.get("check10k") else "check"))
        if "semhash" in r:
            lines.append(fmt_row("SemHash 0.5", r["semhash"], "vs_exact" if "vs_exact" in r["semhash"] else "check"))
        if v.get("check10k"):
            c = v["check10k"]
            lines += ["", f"Agreement above: a separate brute-force check of {c['sample']:,} random "
                      f"decisions against the kept set the run built ({c['wall_seconds']:.0f}s, "
                      "not counted in the run's time)."]
        if v.get("check"):
            c = v["check"]
            lines += ["", f"vidlake's own exact check of {c['sample']:,} random decisions: "
                      f"{c['agreement']:.2%} agreement, {c['missed_duplicates']} missed duplicates, "
                      f"{c['false_duplicates']} false. Parameters: `{json.dumps(v['params'])}`; "
                      f"time split: `{json.dumps(v['timings'])}`."]
        if r.get("similar"):
            if r.get("similar_when"):
                lines += ["", f"`similar` measured apart (--similar-only) {r['similar_when']}, "
                          f"load average {r['similar_load']:.1f} at start; 200 noisy queries, "
                          "recall@10 against brute force."]
            lines += ["", "| similar: index | build s | params | search | p50 ms | p95 ms | recall@10 | "
                      "10th neighbour sim (median) | peak RSS MB |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for s in r["similar"]:
                lines.append(f"| {s['index_type']} | {s['build_seconds']:.1f} | {s['vector_index']} | "
                             f"{s.get('search', '')} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | "
                             f"{s['recall_at_10']:.3f} | {s.get('sim10', float('nan')):.3f} | "
                             f"{s['peak_rss_mb']:,.0f} |")
                for w in s.get("sweep") or []:
                    lines.append(f"| {s['index_type']} | | | nprobes={w['nprobes']}, same refine | "
                                 f"{w['p50_ms']:.1f} | {w['p95_ms']:.1f} | {w['recall_at_10']:.3f} | | |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", action="append", choices=list(SIZES), help="repeatable; default 100k")
    ap.add_argument("--root", default="/tmp/dedup-bench")
    ap.add_argument("--semhash", action="store_true", help="run SemHash at sizes above 100k too")
    ap.add_argument("--no-semhash", action="store_true")
    ap.add_argument("--index", action="append", default=None,
                    help="vector index types to time (repeatable); 'none' skips `similar`")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a lake generated by an earlier run under --root (and keep it)")
    ap.add_argument("--check-exact", type=int, default=10_000,
                    help="sizes without a full exact run: random decisions checked by brute force")
    ap.add_argument("--check", type=int, default=None,
                    help="the run's own exact check sample (default 10k; 1k at full size)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the generated lakes")
    ap.add_argument("--probe-sweep", default=None,
                    help="also time `similar` at these nprobes (comma-separated), same queries")
    ap.add_argument("--similar-only", action="store_true",
                    help="with --reuse: time only `similar`, keeping the size's saved dedup figures")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("--rerender", action="store_true",
                    help="only re-render results/dedup.md from results/dedup.json")
    a = ap.parse_args()
    if a.rerender:
        saved = json.loads(RESULTS.with_suffix(".json").read_text())
        text = report([saved[s] for s in SIZES if s in saved])
        old = RESULTS.read_text() if RESULTS.exists() else ""
        if FINDINGS in old:
            text += "\n" + old[old.index(FINDINGS):]
        RESULTS.write_text(text)
        return
    if a.worker:
        print(json.dumps(WORKERS[a.worker](*json.loads(a.args)), default=str))
        return
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    results = []
    store = RESULTS.with_suffix(".json")
    for size in a.size or ["100k"]:
        before = json.loads(store.read_text()).get(size) if store.exists() else None
        if a.similar_only and not (a.reuse and before):
            raise SystemExit(f"--similar-only needs --reuse and a saved {size} run")
        results.append(run_size(
            size, root, semhash=not a.no_semhash and (size == "100k" or a.semhash),
            exact=size == "100k",
            index_types=[i for i in (a.index or ["auto"]) if i.lower() != "none"],
            queries=a.queries, keep=a.keep, reuse=a.reuse, check_exact=a.check_exact,
            check=a.check if a.check is not None else (1000 if size == "full" else 10_000),
            similar_only=before if a.similar_only else None,
            sweep=[int(v) for v in a.probe_sweep.split(",")] if a.probe_sweep else None))
        if not results[-1].get("similar") and before and before.get("similar"):
            # --index none: keep the size's earlier `similar` figures, labelled with their date
            for k in ("similar", "similar_when", "similar_load"):
                results[-1][k] = before.get(k)
            results[-1]["similar_when"] = results[-1]["similar_when"] or before["when"]
            results[-1]["similar_load"] = results[-1]["similar_load"] or before["load"]
        saved = json.loads(store.read_text()) if store.exists() else {}
        saved[size] = results[-1]
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(saved, indent=1, default=str))
        text = report([saved[s] for s in SIZES if s in saved])
        old = RESULTS.read_text() if RESULTS.exists() else ""
        if FINDINGS in old:  # hand-written notes below the marker survive a regeneration
            text += "\n" + old[old.index(FINDINGS):]
        RESULTS.write_text(text)
        print(text)
    if not a.keep and not a.reuse:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
