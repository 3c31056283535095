"""Ray engine benchmarks (issue 9).

1. `embed` of N prompts (default 20,000) with MiniLM: the local engine (this process, torch on
   `--threads` threads) vs a local Ray cluster with 2 actors of 1 torch thread each, side by side
   in one run. Ray's start-up (`ray.init`) is timed separately; both sides include their model
   load and every chunk commit.
2. A simulated 6.69M-video import plan: per-clip CPU cost measured by a small real
   `import_videos` of clips at the VidProM sizes, the driver's per-chunk commit cost measured by
   a real Lance fragment-append commit, and an assumed object-storage bandwidth per worker;
   estimated wall time on 8 / 32 / 128 workers and the bottleneck.

    python benchmarks/bench_ray.py --prompts 20000 --clips 60
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

RESULTS = Path(__file__).resolve().parent / "results" / "ray.md"
# VidProM: 1,672,243 prompts x 4 generators = 6.69M videos; mean clip sizes from the data.
GENERATORS = {"pika": 620, "vc2": 620, "t2vz": 390, "ms": 210}  # KB
VIDEOS_PER_GENERATOR = 1_672_243
WORKER_MB_S = 100.0  # ASSUMED object-storage throughput per worker (read input + write lake)
BUCKET_GB_S = 10.0  # ASSUMED aggregate cap of the bucket / network
CHUNK_VIDEOS = 1024  # videos per worker fragment, one driver commit each


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def make_lake(path: Path, n: int):
    from vidprom_lake import create_lake, synth

    if path.exists():
        shutil.rmtree(path)
    lake = create_lake(path)
    lake.ingest(str(synth.write_vidprom_csv(path.parent / f"{path.name}.csv", n, seed=9)))
    return lake


def bench_embed(work: Path, n: int, threads: int, chunk_rows: int) -> dict:
    import ray
    import torch

    from vidprom_lake.engine import get_engine
    from vidprom_lake.enrich import embed

    torch.set_num_threads(threads)
    out: dict = {"prompts": n, "local_threads": threads}
    lake = make_lake(work / "local", n)
    t = time.perf_counter()
    rep = embed(lake, "minilm", chunk_rows=chunk_rows)
    out["local_s"] = time.perf_counter() - t
    assert rep.rows_done == n
    lake = make_lake(work / "ray", n)
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out["ray_init_s"] = time.perf_counter() - t
    try:
        eng = get_engine("ray", workers=2, piece_rows=512)
        t = time.perf_counter()
        rep = embed(lake, "minilm", engine=eng, chunk_rows=chunk_rows)
        out["ray_s"] = time.perf_counter() - t
        assert rep.rows_done == n
        eng.shutdown()
    finally:
        ray.shutdown()
    out["local_rows_s"] = n / out["local_s"]
    out["ray_rows_s"] = n / out["ray_s"]
    out["ratio"] = out["ray_rows_s"] / out["local_rows_s"]
    out["load_avg"] = os.getloadavg()[0]
    return out


def measure_clip_cpu(work: Path, clips: int) -> dict:
    """CPU seconds per clip of a real import (decode-verify, thumbnail, sha256, Lance blob write)."""
    from bench_video import make_clip

    from vidprom_lake import synth
    from vidprom_lake.video import import_videos

    per: dict[str, float] = {}
    for gen, kb in (("t2vz", 390), ("pika", 620), ("ms", 210)):
        lake = make_lake(work / f"imp-{gen}", clips)
        uuids = [r["uuid"] for r in synth.rows(clips, seed=9)]
        data = [make_clip(kb, s) for s in range(4)]
        shard = work / f"{gen}.tar"
        with tarfile.open(shard, "w") as tf:
            for i, u in enumerate(uuids):
                b = data[i % len(data)]
                info = tarfile.TarInfo(f"{gen}-{u}.mp4")
                info.size = len(b)
                tf.addfile(info, io.BytesIO(b))
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        rep = import_videos(lake, [shard], model=gen)
        wall = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        assert rep.imported == clips, rep.as_dict()
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        per[gen] = cpu / clips
        per[gen + "_wall"] = wall / clips
        per[gen + "_kb"] = sum(len(d) for d in data) / len(data) / 1024
        shutil.rmtree(work / f"imp-{gen}")
    per["vc2"] = per["pika"]  # same size class (~620 KB)
    return per


def measure_commit(work: Path, commits: int) -> float:
    """Seconds of one driver commit of a fragment written elsewhere (what a worker would hand back)."""
    import lance
    import pyarrow as pa
    from lance.fragment import write_fragments

    uri = str(work / "commit.lance")
    schema = pa.schema([("uuid", pa.string()), ("bytes", pa.large_binary())])
    tbl = pa.table({"uuid": [f"u{i}" for i in range(CHUNK_VIDEOS)],
                    "bytes": [b"x" * 64] * CHUNK_VIDEOS}, schema=schema)
    ds = lance.write_dataset(tbl, uri)
    ts = []
    for _ in range(commits):
        frags = write_fragments(tbl, uri, schema=schema)  # on a worker, in the cluster
        t = time.perf_counter()
        ds = lance.LanceDataset.commit(uri, lance.LanceOperation.Append(frags),
                                       read_version=ds.version)
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def plan(per: dict, commit_s: float) -> list[dict]:
    total = VIDEOS_PER_GENERATOR * len(GENERATORS)
    cpu_s = sum(VIDEOS_PER_GENERATOR * per[g] for g in GENERATORS)
    mb = sum(VIDEOS_PER_GENERATOR * kb / 1024 for kb in GENERATORS.values())
    commit_total = total / CHUNK_VIDEOS * commit_s
    rows = []
    for w in (8, 32, 128):
        t_cpu = cpu_s / w
        t_net = mb / min(w * WORKER_MB_S, BUCKET_GB_S * 1024)
        t = {"worker CPU (decode-verify, thumbnail, hash)": t_cpu,
             "object-storage bandwidth": t_net, "driver commits": commit_total}
        bottleneck = max(t, key=lambda k: t[k])
        rows.append({"workers": w, "cpu_h": t_cpu / 3600, "net_h": t_net / 3600,
                     "commit_h": commit_total / 3600, "wall_h": max(t.values()) / 3600,
                     "bottleneck": bottleneck})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=2, help="local engine torch threads")
    ap.add_argument("--chunk-rows", type=int, default=32_768)
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--commits", type=int, default=30)
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--work", default="/tmp/ray9/bench")
    a = ap.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        emb = None if a.skip_embed else bench_embed(work, a.prompts, a.threads, a.chunk_rows)
        print(emb, flush=True)
        per = measure_clip_cpu(work, a.clips)
        commit_s = measure_commit(work, a.commits)
        rows = plan(per, commit_s)
        print(per, commit_s, rows, flush=True)
        write_md(emb, per, commit_s, rows, a)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_md(emb: dict | None, per: dict, commit_s: float, rows: list[dict], a) -> None:
    L = ["# Ray engine benchmarks (issue 9)", "",
         f"`python benchmarks/bench_ray.py --prompts {a.prompts} --clips {a.clips}` on "
         f"{os.uname().machine}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
         f"load average at the end {os.getloadavg()[0]:.1f} (shared box: absolute times are noisy). "
         f"Peak RSS: {rss_mb():,.0f} MB (driver), {child_rss_mb():,.0f} MB (largest child).", ""]
    if emb:
        L += ["## `embed` MiniLM: local engine vs Ray (2 actors x 1 torch thread)", "",
              f"{emb['prompts']:,} prompts, chunk commits every {a.chunk_rows:,} rows; both sides "
              "include the model load (Ray: in each actor) and every commit.", "",
              "| engine | seconds | rows/s | vs local |", "| --- | ---: | ---: | ---: |",
              f"| local ({emb['local_threads']} torch threads, baseline) | {emb['local_s']:.1f} | "
              f"{emb['local_rows_s']:,.0f} | 100% |",
              f"| ray, 2 workers x 1 thread | {emb['ray_s']:.1f} | {emb['ray_rows_s']:,.0f} | "
              f"**{emb['ratio']:.0%}** (target >= 85%) |", "",
              f"Ray start-up (`ray.init`, local cluster of 2 CPUs), not included above: "
              f"{emb['ray_init_s']:.1f} s.", ""]
    else:
        L += ["## `embed` local vs Ray: not run in this invocation (--skip-embed)", ""]
    L += ["## Simulated 6.69M-video import plan", "",
          f"Measured here: CPU seconds per clip of a real `import_videos` ({a.clips} clips per "
          "size, container open + decode-verify, first-frame thumbnail, SHA-256, Lance blob "
          "write); the driver's commit of one worker-written fragment "
          f"({CHUNK_VIDEOS:,} rows, Lance `write_fragments` + `LanceOperation.Append`, median of "
          f"{a.commits}, local disk).", "",
          "| generator | clip KB (made here) | CPU s / clip | wall s / clip (2 threads) |",
          "| --- | ---: | ---: | ---: |"]
    for g in ("pika", "t2vz", "ms"):
        L.append(f"| {g} | {per[g + '_kb']:.0f} | {per[g]:.4f} | {per[g + '_wall']:.4f} |")
    L += ["| vc2 | (= pika, same size class) | | |", "",
          f"Driver commit per fragment: {commit_s * 1000:.1f} ms.", "",
          f"Assumed (not measured): {WORKER_MB_S:.0f} MB/s of object-storage throughput per "
          f"worker, {BUCKET_GB_S:.0f} GB/s aggregate cap; one commit per {CHUNK_VIDEOS:,} "
          "videos; S3 commit latency is higher than this local-disk figure (tens of ms).", "",
          f"{VIDEOS_PER_GENERATOR * 4:,} videos ({VIDEOS_PER_GENERATOR:,} prompts x 4 "
          "generators at 620/620/390/210 KB):", "",
          "| workers | worker CPU h | bandwidth h | driver commits h | est. wall h | bottleneck |",
          "| ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        L.append(f"| {r['workers']} | {r['cpu_h']:.1f} | {r['net_h']:.2f} | {r['commit_h']:.2f} | "
                 f"**{r['wall_h']:.1f}** | {r['bottleneck']} |")
    L += ["", "This is a plan, not a run: `import-videos --engine ray` is not implemented yet "
          "(see docs/scale-out.md)."]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(L) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
