"""Web gallery benchmark (issue 11): page latencies and a 50-client load test against
`vidlake serve` on 127.0.0.1, on a VidProM-sized lake with videos.

    python benchmarks/bench_web.py                                   # 1,672,243 prompts, 20k videos
    python benchmarks/bench_web.py --prompts 50000 --videos 1000 --duration 5 --clients 10

Builds the lake under --workdir (default /tmp/web-bench): the VidProM-shaped CSV from
`benchmarks/gen_vidprom.py`, ingested; a Lance full-text (INVERTED) index on prompt; tiny
H.264 clips (a few dozen distinct ones, PyAV) imported for --videos prompts, half `pika`,
half `vc2`. Then starts `vidlake serve` in its own process and measures, with one client:

* list page (newest first, default NSFW filter; pages 1..200), p50/p99;
* full-text search page, p50/p99;
* prompt page, p50;
* video first byte (a `Range: bytes=0-` request until its first body byte), p50/p99;

side by side with the baseline: the same list and search answered by DuckDB SQL over the lake's
views (`lake.query`, what a page would cost without the listing index). Then, against a second,
freshly started server (so nothing the single client cached helps), --clients concurrent
clients (one asyncio process; aiohttp, whose C parser costs ~0.25 ms of CPU a request where
httpx costs ~3 ms, as much as the server) run a mix of list pages, searches, prompt pages,
thumbnails and video ranges for --duration seconds: errors, p50/p99, throughput, the CPU
of server and load generator, and how many pages came from the server's page cache (its
``X-Cache`` header).

Everything under --workdir is deleted afterwards unless --keep (--reuse then reuses the lake and
reports how long building it took). Writes benchmarks/results/web.md, keeping the hand-written
notes below its ``<!-- findings:`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["dragon", "astronaut", "cyberpunk", "dolphins", "sunset", "robot", "anime", "forest",
         "samurai", "castle", "rain", "guitar", "whale", "neon", "cinematic", "ballerina"]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tree_hwm_mb(pid: int) -> float:
    """Peak RSS of a process plus its children (uvicorn workers)."""
    total = proc_hwm_mb(pid)
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return total + sum(proc_hwm_mb(int(k)) for k in kids)


def proc_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for p in [pid, *map(int, kids)]:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


# ---------------------------------------------------------------------- building the lake
def build_lake(work: Path, n: int, n_videos: int, log: list[str]) -> Path:
    from vidprom_lake import create_lake

    work.mkdir(parents=True, exist_ok=True)
    csv = work / f"VidProM_{n}.csv"
    if not csv.exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gen_vidprom.py"), "csv",
                        str(csv), "--rows", str(n)], check=True, stdout=subprocess.DEVNULL)
        log.append(f"CSV {n:,} rows generated in {time.perf_counter() - t:.0f} s")
    lake_dir = work / "lake"
    if lake_dir.exists():
        shutil.rmtree(lake_dir)
    lake = create_lake(lake_dir)
    t = time.perf_counter()
    lake.ingest(csv)
    log.append(f"ingest {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    build_fts_index(lake)
    log.append(f"full-text index {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    import_clips(lake, work, n_videos)
    log.append(f"{n_videos:,} videos made and imported in {time.perf_counter() - t:.0f} s")
    return lake_dir


def build_fts_index(lake) -> None:
    """An INVERTED index on prompt in one lake batch (merged before commit; see docs/web.md
    on `index.build_indexes`)."""
    import lance

    ds = lake.dataset("prompts")
    frags = [f.fragment_id for f in ds.get_fragments()]
    idx = ds.create_index_uncommitted("prompt", "INVERTED", name="prompt_idx", fragment_ids=frags)
    ds.merge_index_metadata(str(idx.uuid), "INVERTED")
    with lake.batch("index", params={"indexes": ["prompt_idx"]}) as b:
        b.stage("prompts", lance.LanceOperation.CreateIndex([idx], []), ds.version)


def import_clips(lake, work: Path, n_videos: int, distinct: int = 32) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from video_fixtures import make_mp4

    from vidprom_lake.video import import_videos

    clips = [make_mp4(n=24, w=96, h=64, fps=8, seed=s) for s in range(distinct)]
    n = lake.dataset("prompts").count_rows()
    rng = np.random.default_rng(5)
    pos = np.sort(rng.choice(n, size=min(n, max(1, n_videos // 2)), replace=False))
    uuids = lake.dataset("prompts").take(pos, columns=["uuid"]).column("uuid").to_pylist()
    half = n_videos // 2
    for model, sub in (("pika", uuids[:half]), ("vc2", uuids[:n_videos - half])):
        tar = work / f"{model}.tar"
        with tarfile.open(tar, "w") as tf:
            for i, u in enumerate(sub):
                data = clips[(i + (model == "vc2")) % distinct]
                info = tarfile.TarInfo(f"{model}-{u}.mp4")
                info.size = len(data)
                import io

                tf.addfile(info, io.BytesIO(data))
        import_videos(lake, [tar], model=model)
        tar.unlink()


# ---------------------------------------------------------------------- measuring
def start_server(lake_dir: Path, port: int, serve_args: list[str]) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "vidprom_lake.cli", "--lake", str(lake_dir), "serve",
           "--port", str(port), *serve_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("vidlake serve died: " + (proc.stderr.read() if proc.stderr else ""))
        if time.monotonic() > deadline:
            raise RuntimeError("vidlake serve did not come up in 10 minutes")
        time.sleep(0.5)


def sample_ids(lake_dir: Path, k: int = 400) -> tuple[list[str], list[tuple[str, str]]]:
    from vidprom_lake import open_lake

    lake = open_lake(lake_dir)
    ds = lake.dataset("prompts")
    n = ds.count_rows()
    rng = np.random.default_rng(1)
    uu = ds.take(np.sort(rng.choice(n, size=min(n, k), replace=False)),
                 columns=["uuid"]).column("uuid").to_pylist()
    v = lake.dataset("videos").to_table(columns=["uuid", "model"]).to_pylist()
    random.Random(2).shuffle(v)
    return uu, [(r["uuid"], r["model"]) for r in v[:k]]


def timed_get(client, url: str, headers: dict | None = None) -> tuple[float, int, bool]:
    """(ms, status, whether the page came from the server's page cache)."""
    t = time.perf_counter()
    r = client.get(url, headers=headers or {})
    _ = r.content
    return (time.perf_counter() - t) * 1000, r.status_code, r.headers.get("X-Cache") == "hit"


def first_byte_ms(client, url: str) -> tuple[float, int]:
    t = time.perf_counter()
    with client.stream("GET", url, headers={"Range": "bytes=0-"}) as r:
        for _chunk in r.iter_raw(1):
            break
        ms = (time.perf_counter() - t) * 1000
        return ms, r.status_code


def single_client(base: str, uuids: list[str], videos: list[tuple[str, str]], reps: int
                  ) -> dict[str, dict[str, float]]:
    import httpx

    out: dict[str, dict[str, float]] = {}
    rng = random.Random(3)
    with httpx.Client(base_url=base, timeout=60) as c:
        c.get("/")  # warm
        kinds = {
            "list page (newest, NSFW filter)": lambda: f"/?page={rng.randint(1, 200)}",
            "list page (random order)": lambda: f"/?sort=random&seed={rng.randint(1, 3)}"
                                                 f"&page={rng.randint(1, 20)}",
            "list page (longest first)": lambda: f"/?sort=longest&page={rng.randint(1, 50)}",
            "full-text search page": lambda: "/?q=" + "+".join(rng.sample(WORDS, rng.randint(1, 2))),
            "prompt page": lambda: f"/p/{rng.choice(uuids)}",
        }
        for name, make in kinds.items():
            times, bad, hits = [], 0, 0
            for _ in range(reps):
                ms, st, hit = timed_get(c, make())
                times.append(ms)
                bad += st != 200
                hits += hit
            out[name] = {"p50": pct(times, 50), "p99": pct(times, 99), "n": reps, "errors": bad,
                         "cache_hits": hits}
        if videos:
            times, bad = [], 0
            for _ in range(reps):
                u, m = rng.choice(videos)
                ms, st = first_byte_ms(c, f"/video/{u}/{m}")
                times.append(ms)
                bad += st != 206
            out["video first byte (Range: bytes=0-)"] = {"p50": pct(times, 50),
                                                         "p99": pct(times, 99), "n": reps,
                                                         "errors": bad}
    return out


def baseline(lake_dir: Path, reps: int) -> dict[str, dict[str, float]]:
    """The same list page and search as DuckDB SQL over the lake views (no listing index)."""
    from vidprom_lake import open_lake
    from vidprom_lake.schema import NSFW_LABELS

    lake = open_lake(lake_dir)
    nsfw = " AND ".join(f"coalesce({k}, 0) <= ?" for k in NSFW_LABELS)
    cols = "uuid, prompt, time, source, " + ", ".join(NSFW_LABELS) + ", unique_semantic, dup_of"
    rng = random.Random(4)
    out = {}
    queries = {
        "list page (newest, NSFW filter)": lambda: (
            f"SELECT {cols} FROM prompts WHERE {nsfw} ORDER BY time DESC LIMIT 49 OFFSET ?",
            [0.5] * 6 + [48 * rng.randint(0, 199)]),
        "full-text search page": lambda: (
            f"SELECT {cols} FROM prompts WHERE contains(lower(prompt), lower(?)) AND {nsfw} "
            "ORDER BY time DESC LIMIT 49", [rng.choice(WORDS)] + [0.5] * 6),
    }
    for name, make in queries.items():
        times = []
        for _ in range(reps):
            sql, params = make()
            t = time.perf_counter()
            lake.query(sql, params)
            times.append((time.perf_counter() - t) * 1000)
        out[name] = {"p50": pct(times, 50), "p99": pct(times, 99), "n": reps}
    return out


def _pick(rng: random.Random, uuids: list[str], videos: list[tuple[str, str]]
          ) -> tuple[str, str, dict[str, str]]:
    """One request of the load mix: (kind, url, headers)."""
    r = rng.random()
    if r < 0.35:
        return "list", f"/?page={rng.randint(1, 200)}", {}
    if r < 0.5:
        return "search", "/?q=" + "+".join(rng.sample(WORDS, rng.randint(1, 3))), {}
    if r < 0.7:
        return "prompt", f"/p/{rng.choice(uuids)}", {}
    if r < 0.85 and videos:
        u, m = rng.choice(videos)
        return "thumb", f"/thumb/{u}/{m}", {}
    if videos:
        u, m = rng.choice(videos)
        return "video", f"/video/{u}/{m}", {"Range": f"bytes={rng.randint(0, 2000)}-"}
    return "list", "/", {}


async def _load(base: str, clients: int, duration: float, uuids: list[str],
                videos: list[tuple[str, str]], client: str) -> dict:
    """`clients` concurrent clients, each with its own keep-alive connection, sending the mix
    back to back for `duration` seconds. aiohttp (C HTTP parser) where installed: httpx costs
    ~3 ms of CPU per request, as much as the server, on the same two cores."""
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    stop = time.monotonic() + duration

    cache: dict[str, dict[str, int]] = {}
    distinct: dict[str, set[str]] = {}

    def record(kind: str, url: str, t: float, status: int | None, exc: BaseException | None,
               cached: str | None = None) -> None:
        distinct.setdefault(kind, set()).add(url)
        if cached:
            cache.setdefault(kind, {}).setdefault(cached, 0)
            cache[kind][cached] += 1
        if exc is not None:
            errors.append(f"{type(exc).__name__} {url}: {str(exc)[:120]}")
        elif status not in (200, 206):
            errors.append(f"{status} {url}")
        lat.setdefault(kind, []).append((time.perf_counter() - t) * 1000)

    if client == "aiohttp":
        import aiohttp

        async def worker_aio(i: int, s: aiohttp.ClientSession) -> None:
            rng = random.Random(100 + i)
            while time.monotonic() < stop:
                kind, url, headers = _pick(rng, uuids, videos)
                t = time.perf_counter()
                try:
                    async with s.get(base + url, headers=headers) as resp:
                        await resp.read()
                        record(kind, url, t, resp.status, None, resp.headers.get("X-Cache"))
                except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                    record(kind, url, t, None, exc)

        conn = aiohttp.TCPConnector(limit=clients, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
            await asyncio.gather(*(worker_aio(i, s) for i in range(clients)))
    else:
        import httpx

        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

        async def worker(i: int, c: httpx.AsyncClient) -> None:
            rng = random.Random(100 + i)
            while time.monotonic() < stop:
                kind, url, headers = _pick(rng, uuids, videos)
                t = time.perf_counter()
                try:
                    resp = await c.get(url, headers=headers)
                    await resp.aread()
                    record(kind, url, t, resp.status_code, None, resp.headers.get("X-Cache"))
                except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                    record(kind, url, t, None, exc)

        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as c:
            await asyncio.gather(*(worker(i, c) for i in range(clients)))
    allx = [x for v in lat.values() for x in v]
    return {"requests": len(allx), "errors": len(errors), "error_examples": errors[:5],
            "p50": pct(allx, 50), "p99": pct(allx, 99), "max": max(allx, default=0),
            "rps": len(allx) / duration, "client": client,
            "by_kind": {k: {"n": len(v), "p50": pct(v, 50), "p99": pct(v, 99),
                            "distinct": len(distinct.get(k, ())), "cache": cache.get(k, {})}
                        for k, v in sorted(lat.items())}}


def default_client() -> str:
    import importlib.util

    return "aiohttp" if importlib.util.find_spec("aiohttp") else "httpx"


def load_main(argv: list[str]) -> int:
    """Child process: the load generator (so its CPU is not the server's GIL)."""
    base, clients, duration, ids_file = argv[0], int(argv[1]), float(argv[2]), argv[3]
    client = argv[4] if len(argv) > 4 else default_client()
    ids = json.loads(Path(ids_file).read_text())
    cpu0 = time.process_time()
    res = asyncio.run(_load(base, clients, duration, ids["uuids"],
                            [tuple(v) for v in ids["videos"]], client))
    res["loadgen_cpu_s"] = time.process_time() - cpu0  # during the load only
    res["loadgen_peak_rss_mb"] = proc_hwm_mb(os.getpid())
    print(json.dumps(res))
    return 0


# ---------------------------------------------------------------------- report
NOTES_MARK = "<!-- findings:"


def write_md(path: Path, a: argparse.Namespace, single: dict, base: dict, load: dict,
             server_rss: float, startup_s: float, log: list[str], load_before: str,
             load_after: str) -> None:
    tgt = {"list page (newest, NSFW filter)": 150, "full-text search page": 300,
           "video first byte (Range: bytes=0-)": 50}
    serve = " ".join(["vidlake serve", *a.serve_arg]) if a.serve_arg else "vidlake serve"
    lines = [
        "# Web gallery figures (issue 11)", "",
        f"Generated by `python benchmarks/bench_web.py {' '.join(sys.argv[1:])}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC (`{serve}`).", "",
        "## Machine", "",
        f"- {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}",
        f"- load average at start {load_before}, at end {load_after} (the 2 cores are shared "
        "with other engineers' jobs: timings are noisy)", "",
        "## Data", "",
        f"- {a.prompts:,} VidProM-shaped prompts (benchmarks/gen_vidprom.py), {a.videos:,} videos "
        "(tiny H.264 clips, pika + vc2), Lance INVERTED index on prompt", *[f"- {x}" for x in log],
        f"- `{serve}` start-up (open, listing index, first page ready): {startup_s:.1f} s; "
        f"server peak RSS {server_rss:,.0f} MB", "",
        "## One client (sequential requests over HTTP/1.1 keep-alive, a freshly started server)",
        "",
        "| page | gallery p50 / p99 (ms) | from the page cache | baseline: DuckDB SQL over the "
        "views, p50 / p99 (ms) | target | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in single.items():
        b = base.get(name)
        bs = f"{b['p50']:.0f} / {b['p99']:.0f}" if b else ""
        t = tgt.get(name)
        res = ("PASS" if r["p50"] < t else "FAIL") if t else ""
        err = f" ({r['errors']} errors)" if r.get("errors") else ""
        hits = f"{r['cache_hits']} of {r['n']}" if "cache_hits" in r else ""
        lines.append(f"| {name} | {r['p50']:.1f} / {r['p99']:.1f}{err} | {hits} | {bs} | "
                     f"{f'p50 < {t} ms' if t else ''} | {res} |")
    ok = load["errors"] == 0 and load["p99"] < 1000
    wall = load.get("wall_s", a.duration)  # server: from its idle start to the end
    lines += [
        "", f"## {a.clients} concurrent clients for {a.duration:.0f} s (load generator in another "
        "process on 127.0.0.1, against another freshly started server: every cache cold)", "",
        f"- requests {load['requests']:,} ({load['rps']:.0f}/s), errors {load['errors']}"
        + (f" (e.g. {load['error_examples']})" if load["errors"] else ""),
        f"- latency p50 {load['p50']:.0f} ms, p99 {load['p99']:.0f} ms, max {load['max']:.0f} ms"
        f" — target zero errors and p99 < 1 s: **{'PASS' if ok else 'FAIL'}**",
        f"- CPU during the load: server {load['server_cpu_s']:.1f} s "
        f"({load['server_cpu_s'] / wall:.0%} of one core, "
        f"{load['server_cpu_s'] / max(load['requests'], 1) * 1000:.2f} ms a request); load "
        f"generator ({load['client']}, one process, asyncio) {load['loadgen_cpu_s']:.1f} s "
        f"({load['loadgen_cpu_s'] / a.duration:.0%} of one core, "
        f"{load['loadgen_cpu_s'] / max(load['requests'], 1) * 1000:.2f} ms a request)",
        "- mix: 35% list pages (pages 1-200, newest first, default NSFW filter), 15% full-text "
        "searches (1-3 random words of 16, in random order), 20% prompt pages (400 prompts), "
        "15% thumbnails and 15% video range reads (400 videos)", "",
        "| kind | requests | distinct URLs | from the page cache | p50 (ms) | p99 (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for k, v in load["by_kind"].items():
        c = v.get("cache") or {}
        served = sum(c.values())
        hit = f"{c.get('hit', 0) / served:.0%}" if served else ""
        lines.append(f"| {k} | {v['n']:,} | {v.get('distinct', 0):,} | {hit} | {v['p50']:.0f} | "
                     f"{v['p99']:.0f} |")
    lines += ["", f"Benchmark process peak RSS {rss_mb():,.0f} MB; load generator "
              f"{load.get('loadgen_peak_rss_mb', float('nan')):,.0f} MB.", ""]
    notes = ""
    if path.exists():  # hand-written findings below the mark survive a regeneration
        old = path.read_text()
        if NOTES_MARK in old:
            notes = old[old.index(NOTES_MARK):]
    path.write_text("\n".join(lines) + ("\n" + notes if notes else ""))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        return load_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=1_672_243)
    ap.add_argument("--videos", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=60, help="requests per page kind, one client")
    ap.add_argument("--baseline-reps", type=int, default=5)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--port", type=int, default=8799)
    ap.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                    help="an extra argument for `vidlake serve` (repeat: --serve-arg=--workers "
                         "--serve-arg=2)")
    ap.add_argument("--client", choices=["aiohttp", "httpx"], default=None,
                    help="load generator's HTTP client (default aiohttp when installed)")
    ap.add_argument("--workdir", default="/tmp/web-bench")
    ap.add_argument("--reuse", action="store_true", help="reuse --workdir/lake if present")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "web.md"))
    a = ap.parse_args()
    work = Path(a.workdir)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log: list[str] = []
    lake_dir = work / "lake"
    try:
        built = work / "build-log.json"  # what building the lake took, kept for --reuse
        if not (a.reuse and lake_dir.exists()):
            lake_dir = build_lake(work, a.prompts, a.videos, log)
            built.write_text(json.dumps({"at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
                                         "log": log}))
        elif built.exists():
            b = json.loads(built.read_text())
            log = [f"(lake reused, built {b['at']})", *b["log"]]
        uuids, videos = sample_ids(lake_dir)
        base_url = f"http://127.0.0.1:{a.port}"
        t = time.perf_counter()
        proc = start_server(lake_dir, a.port, a.serve_arg)
        startup = time.perf_counter() - t
        try:
            single = single_client(base_url, uuids, videos, a.reps)
            print(json.dumps(single, indent=1), flush=True)
            server_rss = tree_hwm_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # the load test gets a server of its own: no page the single client cached helps it
        proc = start_server(lake_dir, a.port, a.serve_arg)
        try:
            ids_file = work / "ids.json"
            ids_file.write_text(json.dumps({"uuids": uuids, "videos": videos}))
            cpu0, t0 = tree_cpu_s(proc.pid), time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--loadgen", base_url, str(a.clients),
                                  str(a.duration), str(ids_file), a.client or default_client()],
                                 capture_output=True, text=True, check=True)
            load = json.loads(out.stdout.strip().splitlines()[-1])
            load["server_cpu_s"] = tree_cpu_s(proc.pid) - cpu0
            load["wall_s"] = time.perf_counter() - t0
            print(json.dumps(load, indent=1), flush=True)
            server_rss = max(server_rss, tree_hwm_mb(proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        base = baseline(lake_dir, a.baseline_reps)
        print(json.dumps(base, indent=1), flush=True)
        load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
        write_md(Path(a.out), a, single, base, load, server_rss, startup, log, load_before,
                 load_after)
        print(f"wrote {a.out}")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
