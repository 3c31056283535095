"""Video benchmarks: import vs `tar -x`, random blob reads, bulk export vs file copy, and the
per-video overhead of generation (encode + probe + append) against a tiny real pipeline.

    python benchmarks/bench_video.py                       # full size (2,000 x ~400 KB; 20k reads)
    python benchmarks/bench_video.py --clips 200 --read-videos 2000 --skip-generate   # quick

Clip data goes under --workdir (default /tmp/video-bench) and is deleted afterwards unless
--keep. Writes benchmarks/results/video.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tiny pipeline builders live with the test fixtures


def rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return self_kb / 1024


def child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def make_clip(kb: int, seed: int, side: int = 512, frames: int = 16) -> bytes:
    """A 512x512 H.264 clip near `kb` KB: a moving gradient plus noise (tuned by bisection)."""
    from video_fixtures import make_frames

    from vidprom_lake.video.encode import EncodeParams, encode_mp4

    base = make_frames(frames, side, side, seed).astype(np.int16)
    rng = np.random.default_rng(seed)
    noise = rng.integers(-1000, 1001, base.shape).astype(np.float32) / 1000
    lo, hi = 0.0, 24.0
    best = b""
    for _ in range(7):
        amp = (lo + hi) / 2
        f = np.clip(base + noise * amp, 0, 255).astype(np.uint8)
        best = encode_mp4(f, EncodeParams(fps=8, preset="ultrafast", crf=23))
        if len(best) > kb * 1024:
            hi = amp
        else:
            lo = amp
        if abs(len(best) - kb * 1024) < kb * 1024 * 0.05:
            break
    return best


def timed(fn, *a, **kw):
    os.sync()  # untimed: no dirty-page backlog from the previous step throttles this one
    t = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t, out


def lake_with_prompts(path: Path, n: int):
    from vidprom_lake import create_lake, synth

    lake = create_lake(path)
    csv_path = synth.write_vidprom_csv(path.parent / f"{path.name}-prompts.csv", n, seed=3)
    lake.ingest(csv_path)
    uuids = [r["uuid"] for r in synth.rows(n, seed=3)]
    return lake, uuids


def bench_import_export(work: Path, n: int, kb: int, distinct: int, repeats: int) -> dict:
    from vidprom_lake.video import export_videos, import_videos

    print(f"[import] making {distinct} distinct ~{kb} KB clips ...", flush=True)
    clips = [make_clip(kb, seed) for seed in range(distinct)]
    lake, uuids = lake_with_prompts(work / "lake-import", n)
    shard = work / "t2vz_videos_1.tar"
    with tarfile.open(shard, "w") as tf:
        for i, u in enumerate(uuids[:n]):
            data = clips[i % distinct]
            info = tarfile.TarInfo(f"t2vz-{u}.mp4")
            info.size = len(data)
            info.mtime = 1_700_000_000
            import io

            tf.addfile(info, io.BytesIO(data))
    size = shard.stat().st_size
    payload = sum(len(clips[i % distinct]) for i in range(n))
    subprocess.run(["cat", str(shard)], stdout=subprocess.DEVNULL, check=True)  # warm cache
    # The box is shared and noisy: run each side `repeats` times, interleaved, keep the best.
    template = work / "lake-import"
    modes = {"default": {}, "nothumb": {"thumbnails": False},
             "index": {"thumbnails": False, "verify": "index"}}
    best = dict.fromkeys(["tar", "copy", "export", *modes], float("inf"))
    cpu = dict.fromkeys(modes, float("inf"))
    from vidprom_lake import open_lake

    for r in range(repeats):
        out_dir = work / f"extracted-{r}"
        out_dir.mkdir()
        dt, _ = timed(subprocess.run, ["tar", "-xf", str(shard), "-C", str(out_dir)], check=True)
        best["tar"] = min(best["tar"], dt)
        lake_dir = None
        for mode, kw in modes.items():
            lake_m = work / f"lake-import-{mode}-{r}"
            shutil.copytree(template, lake_m)
            lake_open = open_lake(str(lake_m))
            c0 = time.process_time()
            dt, rep = timed(import_videos, lake_open, [shard], model="t2vz", **kw)
            cpu[mode] = min(cpu[mode], time.process_time() - c0)
            assert rep.imported == n, rep.as_dict()
            best[mode] = min(best[mode], dt)
            if mode == "default":
                lake_dir, chunks = lake_m, rep.chunks
            else:
                shutil.rmtree(lake_m)
        assert lake_dir is not None
        lake_r = open_lake(str(lake_dir))
        files = sorted(out_dir.iterdir())
        copy_dir = work / f"copied-{r}"
        copy_dir.mkdir()

        def copy_all(files: list[Path] = files, copy_dir: Path = copy_dir) -> None:
            for f in files:
                shutil.copyfile(f, copy_dir / f.name)

        dt, _ = timed(copy_all)
        best["copy"] = min(best["copy"], dt)
        exp_dir = work / f"exported-{r}"
        # The copy reads files `tar -x` just wrote (in the page cache); the import wrote the
        # lake's files behind itself (out of the cache, see Lake.write_behind): warm them too,
        # so both sides read from memory and the comparison is of the copying alone.
        subprocess.run(["find", str(lake_dir / "videos.lance" / "data"), "-type", "f", "-exec",
                        "cat", "{}", "+"], stdout=subprocess.DEVNULL, check=True)
        dt, erep = timed(export_videos, lake_r, exp_dir, model="t2vz")
        assert erep.videos == n
        best["export"] = min(best["export"], dt)
        for f in random.Random(r).sample(files, min(20, n)):  # exported bytes == originals
            assert (exp_dir / f.name).read_bytes() == f.read_bytes()
        for d in (out_dir, copy_dir, exp_dir, lake_dir):
            shutil.rmtree(d)
    return {
        "clips": n, "avg_clip_kb": payload / n / 1024, "shard_mb": size / 2**20,
        "tar_s": best["tar"], "tar_mb_s": size / 2**20 / best["tar"],
        **{f"{m}_s": best[m] for m in modes}, **{f"{m}_cpu_s": cpu[m] for m in modes},
        **{f"{m}_ratio": best["tar"] / best[m] for m in modes},
        "copy_s": best["copy"], "export_s": best["export"],
        "export_ratio": best["copy"] / best["export"], "chunks": chunks, "repeats": repeats,
        "per_clip": per_clip_costs(clips),
    }


def per_clip_costs(clips: list[bytes], rounds: int = 3) -> dict[str, float]:
    """CPU ms per clip of each step of the import's check, one thread, best of `rounds`."""
    import hashlib
    import io

    import av

    from vidprom_lake.video import mp4box
    from vidprom_lake.video.probe import probe_bytes
    from vidprom_lake.video.thumbs import thumbnail

    frames = [probe_bytes(c).first_frame for c in clips]

    def ffmpeg_open(c: bytes) -> None:
        with av.open(io.BytesIO(c), format="mp4") as ct:
            ct.streams.video[0]

    steps = {
        "sha256": lambda i: hashlib.sha256(clips[i]).digest(),
        "moov parse (fast path)": lambda i: mp4box.read_movie(clips[i]),
        "index check (moov + framing, no decode)": lambda i: probe_bytes(clips[i],
                                                                          verify="index"),
        "first-frame check (moov + decode 1st frame)": lambda i: probe_bytes(clips[i]),
        "thumbnail from the decoded frame": lambda i: thumbnail(frames[i]),
        "FFmpeg container open alone (old path)": lambda i: ffmpeg_open(clips[i]),
        "FFmpeg probe (open, demux all, decode 1st frame)": lambda i: probe_bytes(
            clips[i], fast=False),
    }
    out = {}
    for name, fn in steps.items():
        best = float("inf")
        for _ in range(rounds):
            c0 = time.process_time()
            for i in range(len(clips)):
                fn(i)
            best = min(best, (time.process_time() - c0) / len(clips) * 1000)
        out[name] = best
    return out


def bench_reads(work: Path, n_videos: int, kb: int, models: tuple[str, ...], samples: int) -> dict:
    import pyarrow as pa

    from vidprom_lake.schema import VIDEOS_SCHEMA
    from vidprom_lake.video import open_video, read_video
    from vidprom_lake.video.importer import rows_to_batch
    from vidprom_lake.video.probe import probe_bytes

    per_model = n_videos // len(models)
    print(f"[read] building a {per_model * len(models):,}-video lake of 256x256 clips ...",
          flush=True)
    clips = [make_clip(kb, 100 + s, side=256, frames=16) for s in range(8)]
    probes = [probe_bytes(c).columns() for c in clips]
    lake, uuids = lake_with_prompts(work / "lake-read", per_model)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    with lake.batch("import", source="bench") as b:
        for model in models:
            for start in range(0, per_model, 1000):
                batches = []
                for s2 in range(start, min(per_model, start + 1000), 32):
                    rows = []
                    for i in range(s2, min(per_model, start + 1000, s2 + 32)):
                        k = (i + hash(model)) % len(clips)
                        rows.append({"video_id": f"{model}-{uuids[i]}", "uuid": uuids[i],
                                     "model": model, "source": "bench", "video": clips[k],
                                     "params": "{}", "time": now, "batch_id": b.batch_id,
                                     **probes[k]})
                    batches.append(rows_to_batch(rows))
                b.append("videos", pa.Table.from_batches(batches, VIDEOS_SCHEMA),
                         schema=VIDEOS_SCHEMA)
                b.commit()
    t_build = time.perf_counter() - t0
    from vidprom_lake import open_lake

    lake = open_lake(lake.uri)
    rng = random.Random(1)
    picks = [(rng.choice(uuids), rng.choice(models)) for _ in range(samples)]
    t_first, _ = timed(read_video, lake, *picks[0])
    lat = []
    for u, m in picks:
        t = time.perf_counter()
        data = read_video(lake, u, m)
        lat.append((time.perf_counter() - t) * 1000)
        assert len(data) > 1000
    lat_open = []
    import av

    for u, m in picks[: samples // 2]:
        t = time.perf_counter()
        with open_video(lake, u, m) as f, av.open(f) as c:
            next(c.decode(video=0))
        lat_open.append((time.perf_counter() - t) * 1000)
    lat.sort()
    return {
        "videos": lake.count("videos"), "avg_clip_kb": sum(map(len, clips)) / len(clips) / 1024,
        "lake_mb": sum(f.stat().st_size for f in Path(lake.uri).rglob("*") if f.is_file()) / 2**20,
        "build_s": t_build, "first_read_ms": t_first * 1000,
        "p50_ms": statistics.median(lat), "p95_ms": lat[int(len(lat) * 0.95) - 1],
        "p50_first_frame_ms": statistics.median(lat_open), "samples": samples,
    }


def bench_generate(work: Path, n: int) -> dict:
    import torch
    from video_fixtures import tiny_modelscope

    from vidprom_lake.video import generate
    from vidprom_lake.video.generate import PRESETS, load_pipeline, replace

    torch.set_num_threads(1)  # a shared 2-core box: OpenMP spinning makes 2 threads ~20x slower
    weights = tiny_modelscope(work / "tiny-ms")
    lake, _ = lake_with_prompts(work / "lake-gen", n)
    spec = replace(PRESETS["modelscope"], checkpoint=str(weights))
    pipe = load_pipeline(spec, device="cpu", dtype="float32")
    opts = dict(checkpoint=str(weights), frames=16, steps=2, height=32, width=32, batch_size=1,
                chunk=4, fps=8)
    # warm-up (first-call allocations) on a throwaway lake
    warm, _ = lake_with_prompts(work / "lake-warm", 1)
    generate(warm, "modelscope", pipeline=pipe, limit=1, **opts)
    rep = generate(lake, "modelscope", pipeline=pipe, limit=n, **opts)
    return {
        "videos": rep.generated, "frames": 16, "size": "32x32", "steps": 2,
        "pipeline_s_per_video": rep.pipeline_seconds / rep.generated,
        "overhead_s_per_video": rep.overhead_seconds / rep.generated,
        "overhead_pct": 100 * rep.overhead_seconds / rep.pipeline_seconds,
        "avg_video_kb": rep.bytes / rep.generated / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--clip-kb", type=int, default=400)
    ap.add_argument("--distinct", type=int, default=24)
    ap.add_argument("--read-videos", type=int, default=20_000)
    ap.add_argument("--read-kb", type=int, default=120)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3, help="runs per side; the best counts")
    ap.add_argument("--gen-videos", type=int, default=8)
    ap.add_argument("--workdir", default="/tmp/video-bench")
    ap.add_argument("--skip-import", action="store_true")
    ap.add_argument("--skip-read", action="store_true")
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "video.md"))
    args = ap.parse_args()
    args.load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    res: dict[str, dict] = {}
    try:
        if not args.skip_import:
            res["import"] = bench_import_export(work, args.clips, args.clip_kb, args.distinct,
                                                args.repeats)
            print(res["import"], flush=True)
            shutil.rmtree(work / "lake-import", ignore_errors=True)
            (work / "t2vz_videos_1.tar").unlink(missing_ok=True)
        if not args.skip_read:
            res["read"] = bench_reads(work, args.read_videos, args.read_kb,
                                      ("pika", "vc2", "t2vz", "ms"), args.samples)
            print(res["read"], flush=True)
            shutil.rmtree(work / "lake-read", ignore_errors=True)
        if not args.skip_generate:
            res["generate"] = bench_generate(work, args.gen_videos)
            print(res["generate"], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    write_md(Path(args.out), res, args)


def verdict(ok: bool, target: str) -> str:
    return f"{'PASS' if ok else 'FAIL'} ({target})"


def write_md(path: Path, res: dict, args: argparse.Namespace) -> None:
    load = os.getloadavg()
    lines = [
        "# Video benchmarks",
        "",
        f"`python benchmarks/bench_video.py {' '.join(sys.argv[1:])}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"(load average {args.load_start[0]:.1f} at the start, {load[0]:.1f} at the end: the box "
        "is shared, absolute times are noisy; each comparison runs side by side in one process).",
        f"Peak RSS: {rss_mb():,.0f} MB (this process), {child_rss_mb():,.0f} MB (largest child).",
        "",
    ]
    if "import" in res:
        r = res["import"]
        pc = r["per_clip"]
        lines += [
            "## Import of a VidProM-like shard vs `tar -x`",
            "",
            f"{r['clips']:,} clips of {r['avg_clip_kb']:.0f} KB (512x512, 16 frames H.264) in one "
            f"{r['shard_mb']:.0f} MB tar, page cache warm for both; best of {r['repeats']} "
            "interleaved runs per side, each timed step started after a `sync` (so no step "
            "is throttled by the dirty pages of the one before); CPU: process CPU seconds of the "
            "same runs, best.",
            "",
            "| | seconds | CPU s | MB/s | vs baseline | target >= 70% |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
            f"| `tar -xf` to disk (baseline) | {r['tar_s']:.2f} | | {r['tar_mb_s']:.0f} | 100% | |",
            f"| import, default: every sample present, first frame decoded, thumbnail, "
            f"SHA-256, Lance blobs, {r['chunks']} chunk commits | {r['default_s']:.2f} | "
            f"{r['default_cpu_s']:.2f} | {r['shard_mb'] / r['default_s']:.0f} | "
            f"**{100 * r['default_ratio']:.0f}%** | "
            f"{verdict(r['default_ratio'] >= 0.7, 'default settings')} |",
            f"| import `--no-thumbnails` (first frame still decoded) | {r['nothumb_s']:.2f} | "
            f"{r['nothumb_cpu_s']:.2f} | {r['shard_mb'] / r['nothumb_s']:.0f} | "
            f"{100 * r['nothumb_ratio']:.0f}% | |",
            f"| import `--no-thumbnails --verify index` (nothing decoded; every sample present, "
            f"first sample's framing checked) | {r['index_s']:.2f} | {r['index_cpu_s']:.2f} | "
            f"{r['shard_mb'] / r['index_s']:.0f} | **{100 * r['index_ratio']:.0f}%** | "
            f"{verdict(r['index_ratio'] >= 0.7, 'with these two flags')} |",
            "",
            "Where an import's CPU goes, per clip (one thread, these clips, best of 3 passes):",
            "",
            "| step | CPU ms per clip |",
            "| --- | ---: |",
            *[f"| {k} | {v:.2f} |" for k, v in pc.items()],
            "",
            f"Per clip, `tar -x` spends {1000 * r['tar_s'] / r['clips']:.2f} ms of wall time "
            "(a copy into the page cache and a file create, in the kernel). The default import "
            "decodes each clip's first frame (to prove it decodes, and for the thumbnail): that "
            "decode alone is most of the default's CPU, and it is work `tar -x` never does.",
            "",
            "## Bulk export vs copying files",
            "",
            "| | seconds | vs baseline | target >= 70% |",
            "| --- | ---: | ---: | --- |",
            f"| copy {r['clips']:,} files folder -> folder (baseline, `shutil.copyfile`) | "
            f"{r['copy_s']:.2f} | 100% | |",
            f"| bulk export, `export_videos` (clips over 64 KB copied by the kernel from Lance's "
            f"blob files, `copy_file_range`; 2 threads; the lake's files read into the page "
            f"cache first, as the copy's are) | {r['export_s']:.2f} | **{100 * r['export_ratio']:.0f}%** | "
            f"{verdict(r['export_ratio'] >= 0.7, 'vs copy')} |",
            "",
        ]
    if "read" in res:
        r = res["read"]
        lines += [
            "## Random read of one video by uuid + model",
            "",
            f"{r['videos']:,} videos (4 models x {r['videos'] // 4:,} prompts), clips of "
            f"{r['avg_clip_kb']:.0f} KB (smaller than VidProM's so the lake is {r['lake_mb']:,.0f} MB "
            "instead of 8 GB; the lookup cost does not depend on clip size, the read grows with it "
            f"at disk speed). {r['samples']} random (uuid, model) reads on an open lake.",
            "",
            "| | p50 ms | p95 ms | target p50 < 15 ms |",
            "| --- | ---: | ---: | --- |",
            f"| random read, `read_video` (find row + `take_blobs` + read all bytes) | "
            f"**{r['p50_ms']:.1f}** | {r['p95_ms']:.1f} | {verdict(r['p50_ms'] < 15, 'p50')} |",
            f"| `open_video` + `av.open` + decode the first frame | {r['p50_first_frame_ms']:.1f} "
            "| | |",
            "",
            f"First read after opening the lake: {r['first_read_ms']:.0f} ms. "
            f"Building the lake: {r['build_s']:.0f} s.",
            "",
        ]
    if "generate" in res:
        r = res["generate"]
        lines += [
            "## Generation overhead",
            "",
            f"The tiny random-weight `TextToVideoSDPipeline` of the tests on the CPU (1 torch thread), "
            f"{r['frames']} frames at {r['size']}, {r['steps']} steps, {r['videos']} videos, "
            "chunk commits every 4 videos.",
            "",
            "| per video | seconds | target < 5% |",
            "| --- | ---: | --- |",
            f"| pipeline call | {r['pipeline_s_per_video']:.3f} | |",
            f"| encode + probe + thumbnail + append + commit | {r['overhead_s_per_video']:.3f} | |",
            f"| generation overhead | **{r['overhead_pct']:.1f}%** | "
            f"{verdict(r['overhead_pct'] < 5, 'of the pipeline time')} |",
            "",
            "Real models: no GPU on this machine, so no per-video figures for ModelScope 1.7B "
            "here; on a GPU, the pipeline call takes seconds per clip and the same fixed overhead "
            "(tens of ms) is well under 1%.",
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
