"""Analysis benchmark: `stats`, `report` and the Parquet export on a VidProM-sized lake.

    python benchmarks/bench_analysis.py --rows 1672243          # full size (issue 7 figures)
    python benchmarks/bench_analysis.py --rows 100000 --keep    # quick

Builds the lake under /tmp/analysis-bench/ from `synth.write_vidprom_csv` (VidProM-shaped
prompts with NSFW scores), attaches 384-d embeddings to `--embed-rows` prompts (for the report's
embedding map) and imports `--clips` tiny clips with thumbnails. Each measured step runs in its
own process (wall seconds, CPU seconds, peak RSS). The Parquet export is compared side by side
with DuckDB copying the same columns to Parquet (a) straight from the Lance table and (b) from a
Parquet copy of it. Writes benchmarks/results/analysis.md; deletes the data unless --keep.

Targets (issue 7): stats < 3 s; report < 60 s and HTML < 10 MB; export <= 1.5x DuckDB.
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
from pathlib import Path

ROOT = Path("/tmp/analysis-bench")
HERE = Path(__file__).resolve().parent


def build(rows: int, embed_rows: int, clips: int) -> str:
    from vidprom_lake import create_lake, synth

    ROOT.mkdir(parents=True, exist_ok=True)
    uri = str(ROOT / "lake")
    if Path(uri).exists():
        shutil.rmtree(uri)
    lake = create_lake(uri)
    t = time.perf_counter()
    csv_path = synth.write_vidprom_csv(ROOT / "VidProM_unique.csv", rows, seed=1)
    lake.ingest(csv_path)
    print(f"ingested {rows:,} prompts in {time.perf_counter() - t:.1f} s", flush=True)
    uuids = lake.query(f"SELECT uuid FROM prompts USING SAMPLE {min(embed_rows, rows)} ROWS (reservoir, 7)"
                       ).column("uuid").to_pylist()
    if uuids:
        h5 = synth.write_embeddings_hdf5(ROOT / "embed.h5", uuids, 384, seed=3, model="synthetic:bench-384d")
        lake.ingest(h5, column="embedding")
        os.remove(h5)
    if clips:
        import numpy as np

        from vidprom_lake.video import import_videos
        from vidprom_lake.video.encode import EncodeParams, encode_mp4

        folder = ROOT / "clips"
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        models = ["pika", "vc2", "t2vz", "ms"]
        for i, u in enumerate(uuids[:clips]):
            frames = np.full((4, 48, 64, 3), rng.integers(0, 255, 3), np.uint8)
            (folder / f"{models[i % 4]}-{u}.mp4").write_bytes(
                encode_mp4(frames, EncodeParams(fps=8, preset="ultrafast")))
        import_videos(lake, folder)
        shutil.rmtree(folder)
    os.remove(csv_path)
    return uri


def step(name: str, uri: str) -> dict[str, object]:
    """Runs inside the child process; prints one JSON line."""
    from vidprom_lake import open_lake

    lake = open_lake(uri)
    out: dict[str, object] = {}
    t0 = time.perf_counter()
    c0 = time.process_time()
    if name == "stats":
        from vidprom_lake.analysis import stats

        sections = stats(lake)
        out["sections"] = len(sections)
    elif name == "report":
        from vidprom_lake.report import write_report

        r = write_report(lake, ROOT / "report.html", force=True)
        out.update(bytes=r.bytes, mapped=r.prompts_mapped, thumbs=r.thumbnails)
    elif name == "export":
        from vidprom_lake.export import export

        r = export(lake, ROOT / "export.parquet", "parquet", force=True)
        out.update(rows=r.rows, bytes=r.bytes)
    elif name in ("duckdb-lance", "duckdb-parquet"):
        import duckdb

        from vidprom_lake.schema import is_vector_field
        from vidprom_lake.sql import extension_path

        cols = ", ".join(f'"{f.name}"' for f in lake.dataset("prompts").schema if not is_vector_field(f))
        con = duckdb.connect()
        con.execute(f"LOAD '{extension_path('lance')}'")
        src = (f"'{lake.table_uri('prompts')}'" if name == "duckdb-lance"
               else f"read_parquet('{ROOT / 'source.parquet'}')")
        if name == "duckdb-parquet":
            t0 = time.perf_counter()
            c0 = time.process_time()
        con.execute(f"COPY (SELECT {cols} FROM {src}) TO '{ROOT / 'baseline.parquet'}' "
                    "(FORMAT parquet, COMPRESSION zstd)")
        out["rows"] = con.execute(f"SELECT count(*) FROM read_parquet('{ROOT / 'baseline.parquet'}')").fetchone()[0]
    else:
        raise SystemExit(f"unknown step {name}")
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    # VmHWM is this process's own peak (ru_maxrss would carry the parent's over fork+exec)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    return out


def measure_rss(name: str, uri: str) -> dict[str, object]:
    """Run the step in a child and read its peak RSS from wait4."""
    proc = subprocess.Popen([sys.executable, __file__, "--step", name, "--lake", uri],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"step {name} failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def cli_wall(args: list[str]) -> dict[str, object]:
    """The whole `vidlake ...` command as a user runs it: interpreter start to exit (its peak
    RSS is reported as the library call's: ru_maxrss would carry this parent's over exec)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vidprom_lake.cli", *args],
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"vidlake {' '.join(args)} failed")
    return {"seconds": time.perf_counter() - t, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": "-"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_672_243)
    ap.add_argument("--embed-rows", type=int, default=100_000)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep /tmp/analysis-bench")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing bench lake")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--lake", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.lake)))
        return
    try:
        uri = str(ROOT / "lake")
        if not (args.reuse and Path(uri).exists()):
            uri = build(args.rows, args.embed_rows, args.clips)
        from vidprom_lake import open_lake

        n = open_lake(uri).count("prompts")
        res = {name: measure_rss(name, uri) for name in ("stats", "report", "export", "duckdb-lance")}
        res["stats-cli"] = cli_wall(["--lake", uri, "stats", "--format", "json"])
        import duckdb

        con = duckdb.connect()
        con.execute(f"COPY (SELECT * FROM read_parquet('{ROOT / 'export.parquet'}')) TO "
                    f"'{ROOT / 'source.parquet'}' (FORMAT parquet)")
        res["duckdb-parquet"] = measure_rss("duckdb-parquet", uri)
        write_results(n, args, res)
    finally:
        if not args.keep:
            shutil.rmtree(ROOT, ignore_errors=True)


def write_results(n: int, args: argparse.Namespace, res: dict[str, dict[str, object]]) -> None:
    def s(k: str) -> float:
        return float(res[k]["seconds"])  # type: ignore[arg-type]

    rep = res["report"]
    lines = [
        "# Analysis benchmark (issue 7)",
        "",
        f"`python benchmarks/bench_analysis.py --rows {args.rows}` on {platform.node()} "
        f"({os.cpu_count()} CPUs, shared), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Lake: {n:,} VidProM-shaped prompts (synth), 384-d embeddings on {args.embed_rows:,}, "
        f"{args.clips} clips with thumbnails. Each step in its own process.",
        "",
        "| step | wall s | CPU s | peak RSS MB | target | result |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        f"| `stats` (library call) | {s('stats'):.2f} | {res['stats']['cpu_seconds']:.2f} | {res['stats']['peak_rss_mb']} "
        f"| < 3 s | {'ok' if s('stats') < 3 else 'MISSED'} |",
        f"| `vidlake stats --format json` (whole process) | {s('stats-cli'):.2f} | "
        f"{res['stats-cli']['cpu_seconds']:.2f} | {res['stats-cli']['peak_rss_mb']} | < 3 s | "
        f"{'ok' if s('stats-cli') < 3 else 'MISSED'} |",
        f"| `report` | {s('report'):.2f} | {rep['cpu_seconds']:.2f} | {rep['peak_rss_mb']} | < 60 s, "
        f"< 10 MB | {'ok' if s('report') < 60 and int(rep['bytes']) < 10e6 else 'MISSED'}: "  # type: ignore[call-overload]
        f"{int(rep['bytes']) / 1e6:.2f} MB, {rep['mapped']} points, {rep['thumbs']} thumbnails |",  # type: ignore[call-overload]
        f"| `export --format parquet` | {s('export'):.2f} | {res['export']['cpu_seconds']:.2f} | "
        f"{res['export']['peak_rss_mb']} | <= 1.5x DuckDB | ratio {s('export') / s('duckdb-lance'):.2f}x "
        f"vs (a), {s('export') / s('duckdb-parquet'):.2f}x vs (b) |",
        f"| (a) DuckDB COPY Lance -> Parquet, same columns | {s('duckdb-lance'):.2f} | "
        f"{res['duckdb-lance']['cpu_seconds']:.2f} | {res['duckdb-lance']['peak_rss_mb']} | baseline | |",
        f"| (b) DuckDB COPY Parquet -> Parquet, same columns | {s('duckdb-parquet'):.2f} | "
        f"{res['duckdb-parquet']['cpu_seconds']:.2f} | {res['duckdb-parquet']['peak_rss_mb']} | baseline | |",
        "",
        "The export is DuckDB's own streaming COPY over the lake's `prompts` view (lance extension),",
        "written to a temporary file and renamed into place, so (a) is the like-for-like baseline.",
        "",
    ]
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "analysis.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
