"""Fetch benchmark: end-to-end `fetch` (download + verify + import) vs a plain download.

A local Hub stand-in (tests/hub_fixtures.py, in its own process) serves a VidProM-shaped repo
generated under /tmp/fetch-bench/: the prompts CSV and `ms_videos/ms_videos_{N}.tar` shards of
~400 KB H.264 clips, `--mb` MB of shards in all. Side by side, alternating, in one run, each
run in a fresh process of its own:

* plain: `huggingface_hub.hf_hub_download` of the same files (CSV + shards) into a fresh cache;
* fetch: `vidprom_lake.fetch.fetch(lake, "vidprom", videos="ms")` into a fresh lake: the same
  downloads (sha256 checked as they are written), the CSV ingested, every shard imported
  (probe, thumbnail, Lance blobs) while the next one downloads, downloads deleted.

Each is run at the server's full local speed and at `--rate` MB/s (a Hub-like link). The
target: fetch <= 1.3x plain. Everything under --workdir (default /tmp/fetch-bench/) is deleted
afterwards.

    python benchmarks/bench_fetch.py --mb 1000 --rate 50
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
WORK = Path("/tmp/fetch-bench")  # --workdir
REPO = "WenhaoWang/VidProM"


def rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def in_child(fn, *args, **kw):
    """`fn(*args, **kw)` in a fresh spawned process, as a user's own command would run: neither
    side inherits the other's heap settings or memory (a download in a process that has just
    imported runs with the heap `heap.reuse` left behind)."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args, kw)


def make_clips(distinct: int, kb: int) -> list[bytes]:
    from video_fixtures import make_frames

    from vidprom_lake.video.encode import EncodeParams, encode_mp4

    out = []
    for seed in range(distinct):
        base = make_frames(16, 384, 384, seed).astype(np.int16)
        rng = np.random.default_rng(seed)
        noise = rng.integers(-1000, 1001, base.shape).astype(np.float32) / 1000
        lo, hi, best = 0.0, 24.0, b""
        for _ in range(7):
            amp = (lo + hi) / 2
            best = encode_mp4(np.clip(base + noise * amp, 0, 255).astype(np.uint8),
                              EncodeParams(fps=8, preset="ultrafast", crf=23))
            if len(best) > kb * 1024:
                hi = amp
            else:
                lo = amp
            if abs(len(best) - kb * 1024) < kb * 1024 * 0.05:
                break
        out.append(best)
    return out


def build(mb: int, shards: int, kb: int) -> dict[str, Path]:
    import io
    import tarfile

    from vidprom_lake import synth

    data = WORK / "repo"
    (data / "ms_videos").mkdir(parents=True, exist_ok=True)
    clips = make_clips(12, kb)
    avg = sum(map(len, clips)) / len(clips)
    n = int(mb * 1e6 / avg)
    csv = synth.write_vidprom_csv(data / "VidProM_unique.csv", n, seed=7)
    uuids = [r["uuid"] for r in synth.rows(n, 7)]
    files = {"VidProM_unique.csv": csv}
    per = -(-n // shards)
    for s in range(shards):
        p = data / "ms_videos" / f"ms_videos_{s + 1}.tar"
        with tarfile.open(p, "w") as tf:
            for i in range(s * per, min(n, (s + 1) * per)):
                blob = clips[i % len(clips)]
                info = tarfile.TarInfo(f"ms-{uuids[i]}.mp4")
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
        files[f"ms_videos/ms_videos_{s + 1}.tar"] = p
    return files


def serve(files: dict[str, str], rate: float | None, q: mp.Queue) -> None:
    from hub_fixtures import HubRepo, HubServer, HubState, make_file

    state = HubState(repos={REPO: HubRepo({k: make_file(path_on_disk=v) for k, v in files.items()})},
                     rate=rate)
    with HubServer(state) as hub:
        q.put(hub.url)
        while True:
            time.sleep(3600)


def run_plain(url: str, files: list[str], cache: Path) -> float:
    from huggingface_hub import hf_hub_download

    shutil.rmtree(cache, ignore_errors=True)
    t = time.perf_counter()
    for f in files:
        hf_hub_download(REPO, f, repo_type="dataset", endpoint=url, cache_dir=cache)
    dt = time.perf_counter() - t
    shutil.rmtree(cache, ignore_errors=True)
    return dt


def run_fetch(url: str, lake_dir: Path, dl: Path, **kw: object) -> tuple[float, dict]:
    from vidprom_lake import create_lake
    from vidprom_lake.fetch import fetch

    shutil.rmtree(lake_dir, ignore_errors=True)
    shutil.rmtree(dl, ignore_errors=True)
    os.environ["HF_ENDPOINT"] = url
    lake = create_lake(lake_dir)
    t = time.perf_counter()
    rep = fetch(lake, "vidprom", videos="ms", download_dir=str(dl), **kw)
    dt = time.perf_counter() - t
    info = {"videos": sum(x.rows_added for x in rep.landed if x.kind == "videos"),
            "download_s": sum(x.seconds_download for x in rep.landed),
            "import_s": sum(x.seconds_import for x in rep.landed)}
    shutil.rmtree(lake_dir, ignore_errors=True)
    shutil.rmtree(dl, ignore_errors=True)
    return dt, info


def main() -> None:
    global WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1000, help="MB of video shards")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--kb", type=int, default=400, help="clip size")
    ap.add_argument("--rate", type=float, default=50, help="MB/s of the throttled runs")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/fetch-bench")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fetch.md"))
    args = ap.parse_args()
    args.load_start = os.getloadavg()
    WORK = Path(args.workdir)
    os.environ["HF_HUB_OFFLINE"] = "0"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    shutil.rmtree(WORK, ignore_errors=True)
    try:
        t = time.perf_counter()
        files = build(args.mb, args.shards, args.kb)
        build_s = time.perf_counter() - t
        sizes = {k: v.stat().st_size for k, v in files.items()}
        results = {}
        fast = {"verify": "index", "thumbnails": False}
        for label, rate, kw in (
                ("local full speed", None, {}),
                ("local full speed, `--no-thumbnails --verify index`", None, fast),
                (f"throttled {args.rate:g} MB/s", args.rate * 1e6, {})):
            ctx = mp.get_context("spawn")  # lance is not fork-safe
            q: mp.Queue = ctx.Queue()
            proc = ctx.Process(target=serve, args=({k: str(v) for k, v in files.items()}, rate, q),
                              daemon=True)
            proc.start()
            url = q.get(timeout=120)
            plain, fetched, infos = [], [], []
            for _ in range(args.repeats):  # alternate so both see the same machine load
                plain.append(in_child(run_plain, url, list(files), WORK / "hf-cache"))
                dt, info = in_child(run_fetch, url, WORK / "lake", WORK / "downloads", **kw)
                fetched.append(dt)
                infos.append(info)
            proc.terminate()
            proc.join()
            results[label] = (plain, fetched, infos)
            print(label, "plain", plain, "fetch", fetched, infos, flush=True)
        write_md(Path(args.out), args, sizes, build_s, results)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


def write_md(path: Path, args: argparse.Namespace, sizes: dict[str, int], build_s: float,
             results: dict) -> None:
    total = sum(sizes.values())
    shards = sum(v for k, v in sizes.items() if k.endswith(".tar"))
    lines = [
        "# Fetch benchmark", "",
        f"`python benchmarks/bench_fetch.py --mb {args.mb} --shards {args.shards} --kb {args.kb} "
        f"--rate {args.rate:g} --repeats {args.repeats}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared; load average {args.load_start[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.", "",
        f"Repo: `VidProM_unique.csv` ({sizes['VidProM_unique.csv'] / 1e6:.1f} MB) + "
        f"{len(sizes) - 1} `ms_videos/ms_videos_N.tar` shards ({shards / 1e6:,.0f} MB of "
        f"~{args.kb} KB H.264 clips); {total / 1e6:,.0f} MB in all, served by the local Hub "
        f"stand-in (its own process; LFS files through a 302 to a second 'CDN' port, like the "
        f"Hub). Built in {build_s:.0f} s under {WORK}/ (deleted afterwards).", "",
        "| link | plain `hf_hub_download` s (best) | `fetch` s (best) | "
        "download s / import s inside fetch | fetch / plain (target <= 1.3x) |",
        "| --- | ---: | ---: | ---: | ---: |"]
    for label, (plain, fetched, infos) in results.items():
        bi = int(np.argmin(fetched))
        ratio = min(fetched) / min(plain)
        lines.append(f"| {label} | {min(plain):.2f} | {min(fetched):.2f} | "
                     f"{infos[bi]['download_s']:.1f} / {infos[bi]['import_s']:.1f} | "
                     f"**{ratio:.2f}x** {'PASS' if ratio <= 1.3 else 'FAIL'} |")
    lines += ["", f"Each run in a fresh process of its own; peak RSS of the largest: "
              f"{rss_mb(resource.RUSAGE_CHILDREN):,.0f} MB.", "",
              "All runs: " + "; ".join(
                  f"{k}: plain {', '.join(f'{x:.2f}' for x in p)} s, fetch "
                  f"{', '.join(f'{x:.2f}' for x in f)} s" for k, (p, f, _) in results.items()),
              "", "Reading it: `fetch` overlaps each shard's import with the next shard's "
              "download, so when the link is slower than the import the end-to-end time is the "
              "download time plus the import of the last shard (1/N of the data). When the link "
              "is faster than the import (the unthrottled loopback row), the import is the "
              "bottleneck and the ratio is the import's own cost (check every sample is present, "
              "decode the first frame, thumbnail, SHA-256, Lance blob write): import MB/s here = "
              + ", ".join(f"{k}: {shards / 1e6 / infos[int(np.argmin(f))]['import_s']:.0f}"
                          for k, (p, f, infos) in results.items())
              + "; plain download MB/s = "
              + ", ".join(f"{k}: {total / 1e6 / min(p):.0f}" for k, (p, f, infos) in results.items())
              + "."]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
