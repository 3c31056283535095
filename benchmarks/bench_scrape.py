"""scrape-videos throughput beside a plain concurrent downloader, same server, same concurrency.

A local HTTP server (tests/scrape_fixtures.py, in its own process) answers every request after
--latency seconds (default 20 ms) with a ~400 KB mp4. A JSON Discord export with N bot replies
links to N distinct URLs; it is ingested into a lake once (not timed). Then, alternating, each
in its own child process (so its peak RSS is its own):

* plain-httpx: ThreadPoolExecutor(concurrency) + one pooled httpx.Client, each body written
  to a file (the baseline the issue names);
* plain-urllib: the same with urllib.request (a connection per request);
* plain-httpclient: the same with keep-alive http.client connections, one per thread (the
  transport the scraper uses, so the difference is the scraper's own work);
* scrape: `scrape_videos(lake, model="pika", concurrency=...)` on a fresh copy of the lake:
  download, checks, probe (demux + first frame), thumbnail, chunked Lance commits.

    python benchmarks/bench_scrape.py                 # full size: 2,000 clips, concurrency 8
    python benchmarks/bench_scrape.py --clips 200     # quick

The server cycles through --distinct encoded clips (encoding 2,000 clips would dominate the
run); every URL is distinct and every clip is fully downloaded, probed and stored. Data goes
under --workdir (default /tmp/scrape-bench) and is deleted afterwards unless --keep. Writes
benchmarks/results/scrape.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------- children
def child_plain(urls_file: str, out_dir: str, concurrency: int, client: str) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    urls = json.loads(Path(urls_file).read_text())
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    if client == "httpx":
        import httpx

        c = httpx.Client(limits=httpx.Limits(max_connections=concurrency,
                                             max_keepalive_connections=concurrency),
                         timeout=30)

        def get(i_url: tuple[int, str]) -> int:
            i, url = i_url
            r = c.get(url)
            r.raise_for_status()
            Path(out_dir, f"{i}.mp4").write_bytes(r.content)
            return len(r.content)
    elif client == "httpclient":
        import http.client
        import threading
        from urllib.parse import urlsplit

        local = threading.local()

        def get(i_url: tuple[int, str]) -> int:
            i, url = i_url
            p = urlsplit(url)
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(p.hostname, p.port, timeout=30)
            conn.request("GET", p.path)
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}")
            Path(out_dir, f"{i}.mp4").write_bytes(data)
            return len(data)
    else:
        import urllib.request

        def get(i_url: tuple[int, str]) -> int:
            i, url = i_url
            with urllib.request.urlopen(url, timeout=30) as r:
                data = r.read()
            Path(out_dir, f"{i}.mp4").write_bytes(data)
            return len(data)

    with ThreadPoolExecutor(concurrency) as ex:
        total = sum(ex.map(get, enumerate(urls)))
    dt = time.perf_counter() - t0
    return {"clips": len(urls), "bytes": total, "seconds": dt}


def child_scrape(lake_dir: str, concurrency: int) -> dict:
    from vidprom_lake import open_lake
    from vidprom_lake.video.scrape import scrape_videos

    lake = open_lake(lake_dir)
    t0 = time.perf_counter()
    r = scrape_videos(lake, model="pika", concurrency=concurrency)
    dt = time.perf_counter() - t0
    assert not r.failures, r.by_reason()
    return {"clips": r.imported, "bytes": r.bytes_downloaded, "seconds": dt,
            "chunks": r.chunks, "videos_in_lake": lake.count("videos")}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: per address space, so not the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(args: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                            text=True, cwd=str(ROOT))
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else ""
    if status != 0:
        raise SystemExit(f"child {args[:2]} failed (status {status}): {out[-2000:]}")
    d = json.loads(out.strip().splitlines()[-1])
    d["cpu_s"] = usage.ru_utime + usage.ru_stime
    d["wall_s"] = time.perf_counter() - t0
    return d


# ---------------------------------------------------------------------- setup
def make_clips(folder: Path, distinct: int, target_kb: int) -> list[int]:
    from video_fixtures import make_mp4

    folder.mkdir(parents=True, exist_ok=True)
    sizes = []
    for i in range(distinct):
        data = make_mp4(n=40, w=256, h=256, crf=21, seed=i)
        # nudge towards the target size with the frame count
        n = max(8, int(40 * target_kb * 1024 / len(data)))
        if abs(len(data) - target_kb * 1024) > 0.1 * target_kb * 1024:
            data = make_mp4(n=n, w=256, h=256, crf=21, seed=i)
        Path(folder, f"base-{i:03d}.mp4").write_bytes(data)
        sizes.append(len(data))
    return sizes


def build_lake(work: Path, base: str, n: int, sizes: list[int]) -> Path:
    from discord_fixtures import Msg, json_export
    from scrape_fixtures import CDN

    from vidprom_lake import create_lake

    t = datetime(2023, 9, 3, tzinfo=UTC)
    msgs = [Msg("pika", content=f"**bench prompt {i}: a fox in the snow -motion 2** - <@alice>",
                time=t + timedelta(seconds=20 * i),
                attachments=[(f"clip-{i}.mp4", sizes[i % len(sizes)])],
                interaction=("create", "alice")) for i in range(n)]
    text = json_export(msgs).replace(CDN, f"{base}/attachments/")
    export = work / "generate-bench.json"
    export.write_text(text, encoding="utf-8")
    lake_dir = work / "lake-template"
    lake = create_lake(lake_dir)
    rep = lake.ingest(export)
    assert rep.rows_added == n, rep.as_dict()
    urls = [a["url"] for m in json.loads(text)["messages"] for a in m["attachments"]]
    (work / "urls.json").write_text(json.dumps(urls))
    return lake_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--kb", type=int, default=400)
    ap.add_argument("--distinct", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (best is kept)")
    ap.add_argument("--workdir", default="/tmp/scrape-bench")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scrape.md"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        role, *rest = a.child
        if role == "plain":
            d = child_plain(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            d = child_scrape(rest[0], int(rest[1]))
        print(json.dumps({**d, "rss_mb": peak_rss_mb()}))
        return

    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = None
    try:
        t0 = time.perf_counter()
        sizes = make_clips(work / "clips", a.distinct, a.kb)
        print(f"{a.distinct} clips, mean {sum(sizes) / len(sizes) / 1024:.0f} KB "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)
        port_file = work / "port"
        server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "scrape_fixtures.py"),
                                   "--dir", str(work / "clips"), "--latency", str(a.latency),
                                   "--port-file", str(port_file), "--cycle"], cwd=str(ROOT))
        for _ in range(200):
            if port_file.exists():
                break
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port_file.read_text().strip()}"
        lake_tpl = build_lake(work, base, a.clips, sizes)
        print(f"lake with {a.clips} prompts ready", flush=True)
        results: dict[str, list[dict]] = {"plain-httpx": [], "plain-urllib": [],
                                          "plain-httpclient": [], "scrape": []}
        for rnd in range(a.rounds):
            for name in results:
                if name.startswith("plain"):
                    out = work / f"plain-{rnd}"
                    d = run_child(["--child", "plain", str(work / "urls.json"), str(out),
                                   str(a.concurrency), name.split("-")[1]])
                    shutil.rmtree(out, ignore_errors=True)
                else:
                    lake_dir = work / f"lake-{rnd}"
                    shutil.copytree(lake_tpl, lake_dir)
                    d = run_child(["--child", "scrape", str(lake_dir), str(a.concurrency)])
                    shutil.rmtree(lake_dir, ignore_errors=True)
                d["clips_s"] = d["clips"] / d["seconds"]
                d["mb_s"] = d["bytes"] / d["seconds"] / 1e6
                results[name].append(d)
                print(f"round {rnd} {name}: {d['clips']} clips in {d['seconds']:.2f}s = "
                      f"{d['clips_s']:.1f} clips/s, {d['mb_s']:.1f} MB/s, "
                      f"CPU {d['cpu_s']:.1f}s, RSS {d['rss_mb']:.0f} MB", flush=True)
        write_results(a, results, sizes)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def write_results(a: argparse.Namespace, results: dict[str, list[dict]], sizes: list[int]) -> None:
    import statistics

    best = {k: max(v, key=lambda d: d["clips_s"]) for k, v in results.items()}
    base_name = max((k for k in best if k.startswith("plain")), key=lambda k: best[k]["clips_s"])
    ratio = best["scrape"]["clips_s"] / best[base_name]["clips_s"]
    med = {k: statistics.median(d["clips_s"] for d in v) for k, v in results.items()}
    med_base = max((k for k in med if k.startswith("plain")), key=lambda k: med[k])
    med_ratio = med["scrape"] / med[med_base]
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    lines = [
        "# scrape-videos benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'host'} "
        f"({os.cpu_count()} CPUs, shared; load average {load:.1f} at the end), "
        f"`python benchmarks/bench_scrape.py --clips {a.clips}`.",
        "",
        f"{a.clips:,} clips of ~{sum(sizes) / len(sizes) / 1024:.0f} KB (256x256 H.264, "
        f"{a.distinct} distinct encodings cycled over distinct URLs) from a local HTTP server "
        f"(own process) adding {a.latency * 1000:.0f} ms latency per request; concurrency "
        f"{a.concurrency}; {a.rounds} alternating rounds, best of each kept. Each run is a child "
        "process: peak RSS and CPU are its own.",
        "",
        "| run | clips/s | MB/s | wall s | CPU s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k, runs in results.items():
        for i, d in enumerate(runs):
            lines.append(f"| {k} (round {i}) | {d['clips_s']:.1f} | {d['mb_s']:.1f} | "
                         f"{d['seconds']:.2f} | {d['cpu_s']:.1f} | {d['rss_mb']:.0f} |")
    lines += [
        "",
        f"**scrape / best plain downloader ({base_name}) = {ratio:.0%}** (target >= 80%); "
        f"medians over the rounds: scrape {med['scrape']:.1f} clips/s vs {med_base} "
        f"{med[med_base]:.1f} = {med_ratio:.0%}. "
        "The plain downloaders only write files; the scraper also checks each response "
        "(status, type, Content-Length, size), probes every clip (all packets demuxed, first "
        "frame decoded), makes a thumbnail and commits to Lance in chunks.",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
