"""Ray engine benchmarks (issue 9).

1. `embed` of N prompts (default 20,000) with MiniLM: the local engine (this process, torch on
   `--threads` threads) vs a local Ray cluster with 2 actors of 1 torch thread each, side by side
   in one run. Ray's start-up (`ray.init`) is timed separately; both sides include their model
   load and every chunk commit.
2. A real `import-videos --engine ray` of a small shard set at the VidProM clip sizes, with
   the inputs and the lake on local disk and then on S3 (moto on 127.0.0.1): the workers' CPU
   per clip and the driver's commit per chunk, fed into a 6.69M-video plan on 8 / 32 / 128
   workers (with an assumed object-storage bandwidth per worker) that names the bottleneck.

    python benchmarks/bench_ray.py --prompts 20000 --shards 4 --per-shard 25
"""

from __future__ import annotations

import argparse
import io
import logging
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


def _embed_local(work: Path, n: int, chunk_rows: int) -> float:
    from vidprom_lake.enrich import embed

    lake = make_lake(work / "local", n)
    t = time.perf_counter()
    rep = embed(lake, "minilm", chunk_rows=chunk_rows)
    took = time.perf_counter() - t
    assert rep.rows_done == n
    shutil.rmtree(work / "local")
    return took


def _embed_ray(work: Path, n: int, chunk_rows: int) -> dict:
    import ray

    from vidprom_lake.engine import get_engine
    from vidprom_lake.enrich import embed

    lake = make_lake(work / "ray", n)
    out: dict = {}
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out["init_s"] = time.perf_counter() - t
    try:
        # the engine's default piece size (the session's: 2,048 rows for MiniLM, the same as the
        # local engine's); 512-row pieces cost ~1.6x the actor CPU (sentence-transformers sorts
        # by length only within a piece, so small pieces pad more)
        eng = get_engine("ray", workers=2)
        t = time.perf_counter()
        rep = embed(lake, "minilm", engine=eng, chunk_rows=chunk_rows)
        out["s"] = time.perf_counter() - t
        assert rep.rows_done == n
        # the actors wrote the column files; the driver only committed them
        out["writes"] = len(eng.writes)
        out["writer_pids"] = sorted({w["pid"] for w in eng.writes} - {os.getpid()})
        assert sum(w["rows"] for w in eng.writes) == n and out["writer_pids"]
        eng.shutdown()
    finally:
        ray.shutdown()
    shutil.rmtree(work / "ray")
    return out


def bench_embed(work: Path, n: int, threads: int, chunk_rows: int, rounds: int) -> dict:
    """`rounds` pairs of runs, local then Ray, the order swapped every other round so a load
    that drifts over the run (a shared box) weighs on both engines alike."""
    import torch

    torch.set_num_threads(threads)
    out: dict = {"prompts": n, "local_threads": threads, "rounds": []}
    for r in range(rounds):
        rnd: dict = {"load_before": os.getloadavg()[0]}
        order = ("local", "ray") if r % 2 == 0 else ("ray", "local")
        for side in order:
            if side == "local":
                rnd["local_s"] = _embed_local(work, n, chunk_rows)
            else:
                rnd["ray"] = _embed_ray(work, n, chunk_rows)
        rnd["order"] = order
        rnd["load_after"] = os.getloadavg()[0]
        rnd["ratio"] = rnd["local_s"] / rnd["ray"]["s"]
        out["rounds"].append(rnd)
        print(rnd, flush=True)
    local_s = sum(r["local_s"] for r in out["rounds"])
    ray_s = sum(r["ray"]["s"] for r in out["rounds"])
    out["local_s"], out["ray_s"] = local_s / rounds, ray_s / rounds
    out["local_rows_s"] = n / out["local_s"]
    out["ray_rows_s"] = n / out["ray_s"]
    out["ratio"] = out["ray_rows_s"] / out["local_rows_s"]
    out["ray_init_s"] = out["rounds"][0]["ray"]["init_s"]
    out["ray_writes"] = out["rounds"][-1]["ray"]["writes"]
    out["ray_writer_pids"] = out["rounds"][-1]["ray"]["writer_pids"]
    out["load_avg"] = os.getloadavg()[0]
    return out


SIZES = (("pika", 620, 512), ("t2vz", 390, 512), ("ms", 210, 256))  # VidProM classes


def write_shards(work: Path, gen: str, kb: int, side: int, uuids: list[str], per: int) -> list[Path]:
    from bench_video import make_clip

    data = [make_clip(kb, s, side=side) for s in range(4)]
    out = []
    for k, s in enumerate(range(0, len(uuids), per)):
        shard = work / "shards" / f"{gen}_{k + 1}.tar"
        shard.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(shard, "w") as tf:
            for i, u in enumerate(uuids[s:s + per]):
                b = data[(s + i) % len(data)]
                info = tarfile.TarInfo(f"{gen}-{u}.mp4")
                info.size = len(b)
                tf.addfile(info, io.BytesIO(b))
        out.append(shard)
    return out


def ray_import(lake, paths: list[str], workers: int) -> dict:
    """One real `import_videos(..., engine=ray)`: wall, worker CPU and driver commit time."""
    from vidprom_lake.engine import get_engine
    from vidprom_lake.video import import_videos

    eng = get_engine("ray", workers=workers)
    try:
        t = time.perf_counter()
        rep = import_videos(lake, paths, engine=eng)
        wall = time.perf_counter() - t
    finally:
        eng.shutdown()
    assert rep.imported and not rep.rejected, rep.as_dict()
    return {"clips": rep.imported, "bytes": rep.bytes, "wall_s": wall, "chunks": rep.chunks,
            "cpu_per_clip": rep.worker_cpu_seconds / rep.imported,
            "commit_s": rep.commit_seconds / rep.chunks, "retries": rep.retries}


def bench_import(work: Path, shards: int, per: int, workers: int) -> dict:
    """A real `import-videos --engine ray` of a small shard set: per size class on local disk,
    then all classes with inputs and lake on S3 (moto on 127.0.0.1)."""
    import ray

    from vidprom_lake import synth

    n = shards * per
    uuids = [r["uuid"] for r in synth.rows(n, seed=9)]
    made = {g: write_shards(work / g, g, kb, side, uuids, per) for g, kb, side in SIZES}
    out: dict = {"shards": shards, "per": per, "workers": workers, "local": {}}
    t = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    out["ray_init_s"] = time.perf_counter() - t
    try:
        for g, _kb, _side in SIZES:
            lake = make_lake(work / f"lake-{g}", n)
            r = ray_import(lake, [str(p) for p in made[g]], workers)
            r["kb"] = r["bytes"] / r["clips"] / 1024
            out["local"][g] = r
            print(g, r, flush=True)
            shutil.rmtree(work / f"lake-{g}")
        out["s3"] = bench_import_s3(work, made, n, workers)
    finally:
        ray.shutdown()
    out["load_avg"] = os.getloadavg()[0]
    return out


def bench_import_s3(work: Path, made: dict, n: int, workers: int) -> dict:
    import boto3
    from moto.server import ThreadedMotoServer
    from s3_fixtures import free_port

    from vidprom_lake import create_lake, synth

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT": endpoint, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
           "AWS_ALLOW_HTTP": "true"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        for g, paths in made.items():
            for p in paths:
                s3.upload_file(str(p), "bench", f"in/{g}/{p.name}")
        lake = create_lake("s3://bench/lake")
        lake.ingest(str(synth.write_vidprom_csv(work / "s3.csv", n, seed=9)))
        r = ray_import(lake, [f"s3://bench/in/{g}/" for g in made], workers)
        r["kb"] = r["bytes"] / r["clips"] / 1024
        print("s3", r, flush=True)
        return r
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def plan(imp: dict) -> list[dict]:
    """6.69M videos on 8 / 32 / 128 workers, from the S3 run's per-clip worker CPU (scaled per
    size class by the local-disk runs) and its per-chunk driver commit."""
    s3, local = imp["s3"], imp["local"]
    mixed_local = sum(local[g]["cpu_per_clip"] for g in local) / len(local)
    s3_factor = s3["cpu_per_clip"] / mixed_local
    per = {g: local[g]["cpu_per_clip"] * s3_factor for g in local}
    per["vc2"] = per["pika"]  # same size class (~620 KB)
    total = VIDEOS_PER_GENERATOR * len(GENERATORS)
    cpu_s = sum(VIDEOS_PER_GENERATOR * per[g] for g in GENERATORS)
    mb = sum(VIDEOS_PER_GENERATOR * kb / 1024 for kb in GENERATORS.values())
    commit_total = total / CHUNK_VIDEOS * s3["commit_s"]
    rows = []
    for w in (8, 32, 128):
        t_cpu = cpu_s / w
        t_net = mb / min(w * WORKER_MB_S, BUCKET_GB_S * 1024)
        t = {"worker CPU (decode-verify, thumbnail, hash, Lance write)": t_cpu,
             "object-storage bandwidth (assumed)": t_net, "driver commits": commit_total}
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
    ap.add_argument("--shards", type=int, default=4, help="tar shards per size class")
    ap.add_argument("--per-shard", type=int, default=25, help="clips per shard")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2,
                    help="local/Ray pairs for embed, order swapped every other round")
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-import", action="store_true",
                    help="embed only: keep the import sections of the results file as they are")
    ap.add_argument("--work", default="/tmp/ray9/bench")
    a = ap.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        emb = (None if a.skip_embed
               else bench_embed(work, a.prompts, a.threads, a.chunk_rows, a.rounds))
        print(emb, flush=True)
        if a.skip_import:
            assert emb is not None, "--skip-embed and --skip-import leave nothing to run"
            write_embed_only(emb, a)
            return
        imp = bench_import(work, a.shards, a.per_shard, a.workers)
        rows = plan(imp)
        print(rows, flush=True)
        write_md(emb, imp, rows, a)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def embed_md(emb: dict, a) -> list[str]:
    L = ["## `embed` MiniLM: local engine vs Ray (2 actors x 1 torch thread)", "",
         f"{emb['prompts']:,} prompts, chunk commits every {a.chunk_rows:,} rows; both sides "
         "include the model load (Ray: in each actor) and every commit. On Ray the actors also "
         "write the new column files (`LanceFragment.update_columns`; in the last round "
         f"{emb['ray_writes']} write(s) by worker process(es) "
         f"{', '.join(map(str, emb['ray_writer_pids']))}) and the driver commits one "
         "`LanceOperation.Update` per chunk; the vectors never pass through the driver. "
         f"{len(emb['rounds'])} round(s), local then Ray, the order swapped every other round "
         "(a shared box: the load drifts). Load average after the runs: "
         f"{emb['load_avg']:.1f}.", "",
         "| round | order | load before / after | local s | Ray s | Ray vs local |",
         "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(emb["rounds"], start=1):
        L.append(f"| {i} | {' then '.join(r['order'])} | {r['load_before']:.1f} / "
                 f"{r['load_after']:.1f} | {r['local_s']:.1f} | {r['ray']['s']:.1f} | "
                 f"{r['ratio']:.0%} |")
    L += ["", "| engine | mean seconds | rows/s | vs local |", "| --- | ---: | ---: | ---: |",
          f"| local ({emb['local_threads']} torch threads, baseline) | {emb['local_s']:.1f} | "
          f"{emb['local_rows_s']:,.0f} | 100% |",
          f"| ray, 2 workers x 1 thread | {emb['ray_s']:.1f} | {emb['ray_rows_s']:,.0f} | "
          f"**{emb['ratio']:.0%}** (target >= 85%) {'PASS' if emb['ratio'] >= 0.85 else 'FAIL'} |", "",
          "Ray start-up (`ray.init`, local cluster of 2 CPUs), not included above: "
          + ", ".join(f"{r['ray']['init_s']:.1f} s" for r in emb["rounds"]) + ".", ""]
    return L


def write_embed_only(emb: dict, a) -> None:
    """Replace the embed section of the results file, keep the rest (import, plan, notes)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Ray engine benchmarks (issue 9)\n"
    head, sep, rest = text.partition("## `embed`")
    tail = rest[rest.index("\n## ", 1) + 1:] if sep and "\n## " in rest else ""
    cmd = (f"python benchmarks/bench_ray.py --prompts {a.prompts} --rounds {a.rounds} "
           "--skip-import")
    L = [f"`{cmd}` on {os.uname().machine}, {os.cpu_count()} CPUs, "
         f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at the end "
         f"{os.getloadavg()[0]:.1f}. Peak RSS: {rss_mb():,.0f} MB (driver), "
         f"{child_rss_mb():,.0f} MB (largest child).", "", *embed_md(emb, a)]
    RESULTS.write_text(head.rstrip() + "\n\n" + "\n".join(L) + "\n" + tail)
    print(RESULTS.read_text())


def write_md(emb: dict | None, imp: dict, rows: list[dict], a) -> None:
    cmd = (f"python benchmarks/bench_ray.py --prompts {a.prompts} --shards {a.shards} "
           f"--per-shard {a.per_shard}" + (" --skip-embed" if a.skip_embed else ""))
    L = ["# Ray engine benchmarks (issue 9)", "",
         f"`{cmd}` on {os.uname().machine}, {os.cpu_count()} CPUs, "
         f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at the end "
         f"{os.getloadavg()[0]:.1f} (shared box: absolute times are noisy). Peak RSS: "
         f"{rss_mb():,.0f} MB (driver), {child_rss_mb():,.0f} MB (largest child).", ""]
    if emb:
        L += embed_md(emb, a)
    else:
        L += ["## `embed` local vs Ray: not run in this invocation (--skip-embed)", ""]
    s3 = imp["s3"]
    L += ["## `import-videos --engine ray`, measured", "",
          f"Real imports of {imp['shards']} tar shards x {imp['per']} "
          f"clips per size class on a local Ray cluster with {imp['workers']} workers (one "
          "piece per shard: a worker imports it with the local code, decode-verify of the "
          "first frame, thumbnail, SHA-256, and writes the Lance blob files itself; the driver "
          "commits each shard as one chunk). *Worker CPU / clip* is the workers' process CPU "
          "time (Lance's writer threads included) over clips imported; *commit / chunk* is "
          "the driver's wall time for `Batch.add_written` + `commit` (Lance append, batch-log "
          "event) while the workers keep running on the same 2 cores. "
          f"Ray start-up ({imp['ray_init_s']:.1f} s) is not included. Load average after the "
          f"import runs: {imp['load_avg']:.1f}.", "",
          "| run | clip KB | clips | wall s | clips/s | worker CPU ms / clip | commit ms / chunk |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for g, r in imp["local"].items():
        L.append(f"| local disk, {g} | {r['kb']:.0f} | {r['clips']} | {r['wall_s']:.1f} | "
                 f"{r['clips'] / r['wall_s']:.1f} | {r['cpu_per_clip'] * 1000:.1f} | "
                 f"{r['commit_s'] * 1000:.0f} |")
    L.append(f"| moto S3 (inputs and lake), all three | {s3['kb']:.0f} | {s3['clips']} | "
             f"{s3['wall_s']:.1f} | {s3['clips'] / s3['wall_s']:.1f} | "
             f"{s3['cpu_per_clip'] * 1000:.1f} | {s3['commit_s'] * 1000:.0f} |")
    L += ["", "Wall times include each run's actor start-up (a few seconds per run, each actor "
          "imports Lance and PyAV), which dominates at this size; the per-clip and per-chunk "
          "figures are what the plan below uses.", "",
          "## 6.69M-video import plan (from the measured figures)", "",
          "Worker CPU per clip: the S3 run's figure, split over the size classes in the "
          "proportions of the local-disk runs (vc2 = pika, same size class). Driver commit per "
          f"chunk: the S3 run's figure, one commit per {CHUNK_VIDEOS:,} clips (a piece is a "
          "shard; bigger shards mean fewer commits). Assumed, not measured: "
          f"{WORKER_MB_S:.0f} MB/s of object-storage throughput per worker and a "
          f"{BUCKET_GB_S:.0f} GB/s aggregate cap (moto on loopback says nothing about real S3 "
          "bandwidth).", "",
          f"{VIDEOS_PER_GENERATOR * 4:,} videos ({VIDEOS_PER_GENERATOR:,} prompts x 4 "
          "generators at 620/620/390/210 KB):", "",
          "| workers | worker CPU h | bandwidth h | driver commits h | est. wall h | bottleneck |",
          "| ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        L.append(f"| {r['workers']} | {r['cpu_h']:.2f} | {r['net_h']:.2f} | "
                 f"{r['commit_h']:.2f} | **{r['wall_h']:.2f}** | {r['bottleneck']} |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(L) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
