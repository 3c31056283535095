"""Lake-core figures (issue 2), each measured side by side with its baseline in one run.

    python benchmarks/bench_core.py                       # full size: 1,672,243 rows, 200k x 3072
    python benchmarks/bench_core.py --rows 100000 --embed-rows 20000 --dim 768   # quick
    python benchmarks/bench_core.py --steps ingest,query  # a subset (ingest,query,lookup,embed)

1. CSV ingest (`lake.ingest(csv)`: parse, uuid5 check, cleaning, flags, Lance write, one
   batch) vs DuckDB's own `COPY (SELECT * FROM read_csv(csv)) TO 'x.parquet'`, each side's
   libraries imported before its clock starts (their load times are shown apart).
   Targets: <= 3x DuckDB's time; peak RSS < 3 GB.
2. Analytic queries through `lake.query(sql)` (fresh connection + views each call, as the
   CLI does) vs the same view definitions and SQL over a Parquet copy of the tables, also
   built fresh each call. Also shown: both on an already-open connection. Target: <= 1.2x.
3. `lake.get_prompt(uuid)` p50/p99 over 200 random uuids, without and with a BTREE index on
   `uuid` (built on a copy of the lake). Reference: DuckDB point query over the Parquet copy.
   Target: < 10 ms.
4. HDF5 embedding attach (`lake.ingest(embed.h5)` on a lake holding exactly the file's
   prompts) vs raw sequential h5py read of the same file in 8192-row chunks, run right after
   each other (the page cache is not dropped, so a busy machine may serve either from disk). Targets: attach throughput >=
   1/3 of the raw read throughput; peak RSS < 2 GB.

Every timed step runs in its own subprocess; its peak RSS is that child's ru_maxrss
(`os.wait4`). Small steps are repeated (`--reps`, default 3; the median is reported, baseline
and lake interleaved), big ones run `--big-reps` times (default 1). Data lives under `--work`
(default /tmp/core-bench) and is deleted at the end unless `--keep`. Results go to
benchmarks/results/core.md (`--out`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

QUERIES: dict[str, str] = {
    "nsfw_count": "select count(*) from prompts where toxicity > 0.5",
    "nsfw_by_category": (
        "select category, count(*) as n, avg(score) as mean_score from nsfw "
        "where score > 0.5 group by category order by category"
    ),
    "length_histogram": (
        "select least(length(prompt) // 50 * 50, 2000) as bucket, count(*) as n "
        "from prompts group by bucket order by bucket"
    ),
    "daily_counts": (
        "select date_trunc('day', time) as day, count(*) as n from prompts "
        "group by day order by day"
    ),
    "top_words": (
        "select word, count(*) as n from (select unnest(string_split(lower(prompt_clean), ' ')) "
        "as word from prompts) where length(word) > 3 group by word order by n desc, word limit 25"
    ),
    "flags_aspect_ratio": (
        "select flags.aspect_ratio as ar, count(*) as n from prompts "
        "where flags is not null group by ar order by n desc"
    ),
}

FINDINGS_MARK = "<!-- findings: hand-written, kept when the figures above are regenerated -->"
TARGET_INGEST_RATIO = 3.0
TARGET_INGEST_RSS_GB = 3.0
TARGET_QUERY_RATIO = 1.2
TARGET_LOOKUP_MS = 10.0
TARGET_EMBED_FRACTION = 1 / 3
TARGET_EMBED_RSS_GB = 2.0


# ============================================================================ child steps
# Each runs in its own process and returns a JSON-able dict.

def step_gen(a: dict[str, Any]) -> dict[str, Any]:
    import gen_vidprom as g

    t0 = time.perf_counter()
    heads = {a["embed_rows"]: Path(a["head_csv"])}
    stats = g.write_csv(a["csv"], a["rows"], a["seed"], a["jobs"], heads)
    t1 = time.perf_counter()
    h5 = g.write_h5(a["h5"], g.read_uuids(a["head_csv"], a["embed_rows"]), a["dim"], a["seed"])
    return {"csv": stats, "h5": h5, "csv_seconds": t1 - t0,
            "h5_seconds": time.perf_counter() - t1}


def step_ingest_lake(a: dict[str, Any]) -> dict[str, Any]:
    # The libraries are loaded before the clock starts, as DuckDB's are on the other side
    # (its step imports duckdb first): the figure compares the work on the file. Their load
    # time is kept apart ("imports") and shown in the notes; kernels and data stay timed.
    i0 = time.perf_counter()
    import duckdb  # noqa: F401
    import numba  # noqa: F401

    import vidprom_lake.ingest.pipeline  # noqa: F401
    import vidprom_lake.ingest.sources  # noqa: F401
    from vidprom_lake import create_lake

    imports = time.perf_counter() - i0
    shutil.rmtree(a["lake"], ignore_errors=True)
    lake = create_lake(a["lake"])
    t0, c0 = time.perf_counter(), time.process_time()
    rep = lake.ingest(a["csv"])
    secs = time.perf_counter() - t0
    return {"seconds": secs, "cpu": time.process_time() - c0, "rows_added": rep.rows_added, "rows_read": rep.rows_read,
            "mismatches": rep.uuid_mismatches, "skipped": rep.skipped_total, "imports": imports}


def step_duckdb_parquet(a: dict[str, Any]) -> dict[str, Any]:
    i0 = time.perf_counter()
    import duckdb

    imports = time.perf_counter() - i0
    out = a["parquet"]
    Path(out).unlink(missing_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    con = duckdb.connect(":memory:")
    con.execute(f"COPY (SELECT * FROM read_csv('{a['csv']}')) TO '{out}' (FORMAT parquet)")
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0
    n = con.execute(f"select count(*) from read_parquet('{out}')").fetchone()[0]
    return {"seconds": secs, "cpu": cpu, "rows": n, "imports": imports}


def step_export_parquet(a: dict[str, Any]) -> dict[str, Any]:
    """Parquet copies of the lake's base relations (same columns as the lake's views see)."""
    from vidprom_lake import open_lake

    lake = open_lake(a["lake"])
    con = lake.sql()
    t0 = time.perf_counter()
    for rel in ("prompts_raw", "videos_raw", "batches_raw"):
        con.execute(f"COPY (SELECT * FROM {rel}) TO '{a['pq_dir']}/{rel}.parquet' (FORMAT parquet)")
    return {"seconds": time.perf_counter() - t0}


def _parquet_connection(lake: Any, pq_dir: str) -> Any:
    import duckdb

    from vidprom_lake.sql import view_statements

    con = duckdb.connect(":memory:")
    for rel in ("prompts_raw", "videos_raw", "batches_raw"):
        con.execute(f"CREATE VIEW {rel} AS SELECT * FROM read_parquet('{pq_dir}/{rel}.parquet')")
    for st in view_statements(lake):
        con.execute(st)
    return con


def step_queries(a: dict[str, Any]) -> dict[str, Any]:
    """Each query once, fresh-connection style and prepared-connection style."""
    from vidprom_lake import open_lake
    from vidprom_lake.sql import view_statements

    lake = open_lake(a["lake"])
    mode = a["mode"]
    view_statements(lake)  # warm caches both sides share (schema read)
    res: dict[str, Any] = {"fresh": {}, "open": {}, "rows": {}, "fresh_cpu": {}, "open_cpu": {}}
    if mode == "lake":
        t0, c0 = time.perf_counter(), time.process_time()
        lake.query("select 1")  # the first call in a process loads the lance extension
        res["first_call"] = time.perf_counter() - t0
        res["first_call_cpu"] = time.process_time() - c0
        # the first query that reads `prompts` after a write builds the analysis cache (a
        # Parquet copy of this version): timed apart, from an empty cache every run
        from vidprom_lake import analysis_cache

        analysis_cache.clear(lake)
        t0, c0 = time.perf_counter(), time.process_time()
        lake.query("select count(*) from prompts")
        res["cache_build"] = time.perf_counter() - t0
        res["cache_build_cpu"] = time.process_time() - c0
        res["cache_bytes"] = sum(f.bytes for f in analysis_cache.status(lake))
        # the same queries straight over Lance (`--no-cache`), for comparison
        raw = open_lake(a["lake"], analysis_cache=False)
        raw.query("select count(*) from prompts")
        res["nocache"] = {}
        for name, q in QUERIES.items():
            t0 = time.perf_counter()
            raw.query(q)
            res["nocache"][name] = time.perf_counter() - t0
        for name, q in QUERIES.items():
            rows = _timed(res, "fresh", name, lambda q=q: lake.query(q), a.get("calls", 5))
            res["rows"][name] = rows
        con = lake.sql()
    else:
        _parquet_connection(lake, a["pq_dir"]).close()
        for name, q in QUERIES.items():
            t0, c0 = time.perf_counter(), time.process_time()
            con = _parquet_connection(lake, a["pq_dir"])
            t = con.execute(q).fetch_arrow_table()
            con.close()
            res["fresh"][name] = time.perf_counter() - t0
            res["fresh_cpu"][name] = time.process_time() - c0
            res["rows"][name] = t.num_rows
        con = _parquet_connection(lake, a["pq_dir"])
    for name, q in QUERIES.items():
        _timed(res, "open", name, lambda q=q: con.execute(q).to_arrow_table(), a.get("calls", 5))
    return res


def _timed(res: dict[str, Any], kind: str, name: str, call: Any, calls: int) -> int:
    """Run `call` `calls` times: the median wall / CPU go to res[kind], the first call apart.

    A single call of a few-ms query mostly measures noise on a shared box (one descheduling
    doubles it) and the first touch of a column in this DuckDB instance; both sides get the same
    treatment, and the first call is reported too.
    """
    walls, cpus, rows = [], [], 0
    for _ in range(max(1, calls)):
        t0, c0 = time.perf_counter(), time.process_time()
        rows = call().num_rows
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    res[kind][name] = statistics.median(walls)
    res[f"{kind}_cpu"][name] = statistics.median(cpus)
    res.setdefault(f"{kind}_first", {})[name] = walls[0]
    return rows


def step_lookup(a: dict[str, Any]) -> dict[str, Any]:
    from vidprom_lake import open_lake
    from vidprom_lake.lake import Lake

    uuids = json.loads(Path(a["uuids"]).read_text())
    lake = open_lake(a["lake"], heal=False)
    if a.get("version"):
        # The index version is not in the batch log (see the report); pin the lake at it.
        head = lake.head()
        head["prompts"] = int(a["version"])
        lake = Lake(lake.uri, pinned=head)
    lake.get_prompt(uuids[0])  # open the dataset, load the index
    times, cpus = [], []
    found = 0
    for u in uuids:
        t0, c0 = time.perf_counter(), time.process_time()
        row = lake.get_prompt(u)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        found += row is not None and row["uuid"] == u
    return {"times": times, "cpus": cpus, "found": found,
            "indices": list(dict.fromkeys(i["name"] for i in lake.dataset("prompts").list_indices()))}


def step_lookup_parquet(a: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    uuids = json.loads(Path(a["uuids"]).read_text())
    con = duckdb.connect(":memory:")
    con.execute(f"CREATE VIEW p AS SELECT * FROM read_parquet('{a['pq_dir']}/prompts_raw.parquet')")
    con.execute("select * from p where uuid = ?", [uuids[0]]).fetch_arrow_table().to_pylist()
    times = []
    for u in uuids:
        t0 = time.perf_counter()
        con.execute("select * from p where uuid = ? limit 1", [u]).fetch_arrow_table().to_pylist()
        times.append(time.perf_counter() - t0)
    return {"times": times}


def step_flip_index(a: dict[str, Any]) -> dict[str, Any]:
    """On a copy of the lake: drop the uuid index if ingest built one, else build a BTREE.

    Done straight on the Lance dataset (a version no batch records), so the lookup step pins a
    Lake at the returned version; `open_lake` would roll such a version back.
    """
    import lance

    ds = lance.dataset(f"{a['lake']}/prompts.lance")
    # an index built in segments is listed once per segment, under one name
    names = list(dict.fromkeys(i["name"] for i in ds.list_indices() if "uuid" in i["fields"]))
    t0 = time.perf_counter()
    if names:
        for n in names:
            ds.drop_index(n)
        action = "dropped " + ", ".join(names)
    else:
        ds.create_scalar_index("uuid", "BTREE")
        action = "built a BTREE on uuid"
    secs = time.perf_counter() - t0
    return {"seconds": secs, "action": action,
            "version": lance.dataset(f"{a['lake']}/prompts.lance").version}


def step_h5_raw(a: dict[str, Any]) -> dict[str, Any]:
    import h5py

    t0, c0 = time.perf_counter(), time.process_time()
    total = 0
    with h5py.File(a["h5"], "r") as h5:
        u = h5["uuid"][()]
        ds = h5["embeddings"]
        n = ds.shape[0]
        step = 8192
        for s in range(0, n, step):
            block = ds[s:s + step]
            total += block.nbytes
    total += u.nbytes
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "bytes": total}


def step_sha256(a: dict[str, Any]) -> dict[str, Any]:
    from vidprom_lake.ingest.pipeline import file_sha256

    t0, c0 = time.perf_counter(), time.process_time()
    file_sha256(a["h5"])
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}


def step_attach(a: dict[str, Any]) -> dict[str, Any]:
    # h5py is imported before the clock, as on the raw-read side (see step_ingest_lake)
    import h5py  # noqa: F401

    import vidprom_lake.ingest.hdf5  # noqa: F401
    from vidprom_lake import open_lake

    src = a["lake_src"]
    dst = a["lake"]
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    lake = open_lake(dst)
    t0, c0 = time.perf_counter(), time.process_time()
    rep = lake.ingest(a["h5"])
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0
    lake = open_lake(dst)
    n = lake.count("prompts", "embedding IS NOT NULL")
    return {"seconds": secs, "cpu": cpu, "rows_updated": rep.rows_updated, "with_embedding": n}


STEPS = {name[5:]: fn for name, fn in globals().items() if name.startswith("step_")}


def _child_main(step: str, arg_json: str) -> int:
    prof = os.environ.get("BENCH_PROFILE")
    args = json.loads(arg_json)
    if prof:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        res = STEPS[step](args)
        pr.disable()
        pr.dump_stats(prof)
        pstats.Stats(pr, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    else:
        res = STEPS[step](args)
    print("RESULT " + json.dumps(res))
    return 0


# ============================================================================ parent
def run_child_measured(step: str, args: dict[str, Any], *, profile: str | None = None) -> dict[str, Any]:
    """Run one step in a fresh interpreter, reaped with os.wait4 for its own ru_maxrss."""
    env = dict(os.environ)
    if profile:
        env["BENCH_PROFILE"] = profile
    outf = Path(args.get("_tmp", "/tmp")) / f".bench-{step}-{os.getpid()}.out"
    errf = outf.with_suffix(".err")
    t0 = time.perf_counter()
    with open(outf, "w") as o, open(errf, "w") as e:
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_child", step,
                              json.dumps(args)], stdout=o, stderr=e, env=env)
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    out, err = outf.read_text(), errf.read_text()
    outf.unlink(missing_ok=True)
    errf.unlink(missing_ok=True)
    if p.returncode != 0:
        raise RuntimeError(f"step {step} failed ({p.returncode}):\n{err[-4000:]}")
    line = next(ln for ln in reversed(out.splitlines()) if ln.startswith("RESULT "))
    res = json.loads(line[7:])
    res["wall"] = wall
    res["rss_mb"] = ru.ru_maxrss / 1024
    res["cpu_s"] = ru.ru_utime + ru.ru_stime
    if profile:
        Path(profile + ".txt").write_text(err)
    return res


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def du(path: str | Path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def machine_info() -> dict[str, str]:
    import duckdb
    import h5py
    import lance
    import numpy
    import pyarrow

    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for ln in fh:
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as fh:
        for ln in fh:
            if ln.startswith("MemTotal"):
                mem = f"{int(ln.split()[1]) / 1024 / 1024:.1f} GB"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                                capture_output=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ":/vidprom_lake"], cwd=HERE,
                               text=True, capture_output=True).stdout.strip()
        if dirty:
            commit += f" + uncommitted changes in {len(dirty.splitlines())} vidprom_lake file(s)"
    except OSError:
        commit = "?"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(), "cpu": f"{cpu} x {os.cpu_count()}", "memory": mem,
        "os": platform.platform(), "python": platform.python_version(),
        "duckdb": duckdb.__version__, "pylance": lance.__version__,
        "pyarrow": pyarrow.__version__, "h5py": h5py.__version__, "numpy": numpy.__version__,
        "git": commit,
    }


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ok(flag: bool) -> str:
    return "PASS" if flag else "FAIL"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_672_243)
    ap.add_argument("--embed-rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=3072)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="processes for data generation")
    ap.add_argument("--reps", type=int, default=3, help="repeats of small steps (median)")
    ap.add_argument("--calls", type=int, default=5,
                    help="timed calls of each query per process (median)")
    ap.add_argument("--big-reps", type=int, default=1, help="repeats of ingest and attach")
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--steps", default="ingest,query,lookup,embed")
    ap.add_argument("--work", default="/tmp/core-bench")
    ap.add_argument("--out", default=str(HERE / "results" / "core.md"))
    ap.add_argument("--keep", action="store_true", help="keep the generated data and lakes")
    ap.add_argument("--profile", help="folder for cProfile dumps of the lake-side steps")
    ap.add_argument("--rerender", help="only re-render a results.json of an earlier run into --out")
    a = ap.parse_args(argv)
    if a.rerender:
        R = json.loads(Path(a.rerender).read_text())
        for k in ("rows", "embed_rows", "dim", "reps", "big_reps", "lookups", "calls"):
            setattr(a, k, R["args"].get(k, 1))
        _write_md(render(R, a), a.out)
        return 0
    steps = set(a.steps.split(","))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / "VidProM_unique.csv"
    head_csv = work / f"VidProM_unique_{a.embed_rows}.csv"
    h5_path = work / "embed.h5"
    lake_dir = work / "lake"
    pq_dir = work / "parquet"
    pq_dir.mkdir(exist_ok=True)
    prof = Path(a.profile) if a.profile else None
    if prof:
        prof.mkdir(parents=True, exist_ok=True)

    def pf(name: str) -> str | None:
        return str(prof / f"{name}.prof") if prof else None

    info = machine_info()
    info["load_start"] = loadavg()
    print(f"# machine: {info}", flush=True)
    R: dict[str, Any] = {"info": info, "args": vars(a)}

    # ---------------------------------------------------------------- data
    meta = work / "gen.json"
    want = {"rows": a.rows, "embed_rows": a.embed_rows, "dim": a.dim, "seed": a.seed}
    if meta.exists() and json.loads(meta.read_text()).get("want") == want and csv_path.exists():
        gen = json.loads(meta.read_text())["gen"]
        print("# data: reusing", work, flush=True)
    else:
        print(f"# generating {a.rows:,} rows and {a.embed_rows:,} x {a.dim} embeddings ...", flush=True)
        gen = run_child_measured("gen", {"csv": str(csv_path), "head_csv": str(head_csv),
                                         "h5": str(h5_path), "rows": a.rows,
                                         "embed_rows": a.embed_rows, "dim": a.dim,
                                         "seed": a.seed, "jobs": a.jobs, "_tmp": str(work)})
        meta.write_text(json.dumps({"want": want, "gen": gen}))
    R["gen"] = gen
    print(f"# data: csv {gen['csv']['bytes'] / 1e6:.0f} MB in {gen['csv_seconds']:.1f} s, "
          f"h5 {gen['h5']['bytes'] / 1e9:.2f} GB in {gen['h5_seconds']:.1f} s", flush=True)
    common = {"_tmp": str(work)}

    # ---------------------------------------------------------------- 1. ingest
    if "ingest" in steps or (steps & {"query", "lookup"} and not (lake_dir / "batches.lance").exists()):
        ing, ddb = [], []
        for i in range(a.big_reps if "ingest" in steps else 1):
            d = run_child_measured("duckdb_parquet", {**common, "csv": str(csv_path),
                                                       "parquet": str(work / "duckdb.parquet")})
            ddb.append(d)
            print(f"  duckdb read_csv->parquet: {d['seconds']:.2f} s (cpu {d['cpu']:.1f} s), rss {d['rss_mb']:.0f} MB", flush=True)
            r = run_child_measured("ingest_lake", {**common, "csv": str(csv_path), "lake": str(lake_dir)},
                                   profile=pf("ingest") if i == 0 else None)
            ing.append(r)
            print(f"  lake.ingest(csv):         {r['seconds']:.2f} s (cpu {r['cpu']:.1f} s), rss {r['rss_mb']:.0f} MB "
                  f"({r['rows_added']:,} rows)", flush=True)
        R["ingest"] = {"lake": ing, "duckdb": ddb, "lake_bytes": du(lake_dir / "prompts.lance"),
                       "parquet_bytes": du(work / "duckdb.parquet")}

    # ---------------------------------------------------------------- 2. queries
    if "query" in steps or "lookup" in steps:
        run_child_measured("export_parquet", {**common, "lake": str(lake_dir), "pq_dir": str(pq_dir)})
    if "query" in steps:
        lq, pq = [], []
        for _ in range(a.reps):
            pq.append(run_child_measured("queries", {**common, "lake": str(lake_dir),
                                                     "pq_dir": str(pq_dir), "mode": "parquet",
                                                     "calls": a.calls}))
            lq.append(run_child_measured("queries", {**common, "lake": str(lake_dir),
                                                     "pq_dir": str(pq_dir), "mode": "lake",
                                                     "calls": a.calls}))
        R["query"] = {"lake": lq, "parquet": pq, "calls": a.calls,
                      "parquet_bytes": du(pq_dir / "prompts_raw.parquet")}
        for name in QUERIES:
            lf = med([x["fresh"][name] for x in lq])
            po = med([x["open"][name] for x in pq])
            print(f"  {name:20s} lake.query {lf * 1000:8.1f} ms  parquet (open connection) "
                  f"{po * 1000:8.1f} ms  x{lf / po:.2f}", flush=True)

    # ---------------------------------------------------------------- 3. lookup
    if "lookup" in steps:
        rnd = random.Random(a.seed)
        import gen_vidprom as g

        all_uuids = g.read_uuids(csv_path, a.rows)
        sample = rnd.sample(all_uuids, min(a.lookups, len(all_uuids)))
        del all_uuids
        uf = work / "uuids.json"
        uf.write_text(json.dumps(sample))
        idx_lake = work / "lake_idx"
        shutil.rmtree(idx_lake, ignore_errors=True)
        shutil.copytree(lake_dir, idx_lake)
        asis, flipped, pql = [], [], []
        ci = run_child_measured("flip_index", {**common, "lake": str(idx_lake)})
        print(f"  copy of the lake: {ci['action']} in {ci['seconds']:.2f} s, rss {ci['rss_mb']:.0f} MB", flush=True)
        for _ in range(a.reps):
            asis.append(run_child_measured("lookup", {**common, "lake": str(lake_dir), "uuids": str(uf)}))
            flipped.append(run_child_measured("lookup", {**common, "lake": str(idx_lake), "uuids": str(uf),
                                                         "version": ci["version"]}))
            pql.append(run_child_measured("lookup_parquet", {**common, "pq_dir": str(pq_dir),
                                                             "uuids": str(uf)}))
        R["lookup"] = {"asis": asis, "flipped": flipped, "parquet": pql, "flip": ci}
        for label, xs in (("as ingested", asis), ("flipped copy", flipped), ("duckdb/parquet", pql)):
            p50 = med([pct(x["times"], 0.5) for x in xs]) * 1000
            p99 = med([pct(x["times"], 0.99) for x in xs]) * 1000
            print(f"  get_prompt {label:15s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms", flush=True)
        shutil.rmtree(idx_lake, ignore_errors=True)

    # ---------------------------------------------------------------- 4. embeddings
    if "embed" in steps:
        src = work / "lake_200k"
        if not (src / "batches.lance").exists():
            r = run_child_measured("ingest_lake", {**common, "csv": str(head_csv), "lake": str(src)})
            print(f"  (setup) ingest {a.embed_rows:,} prompts: {r['seconds']:.1f} s", flush=True)
        raw, after, att, sha = [], [], [], []
        first = run_child_measured("h5_raw", {**common, "h5": str(h5_path)})  # warms the cache
        for i in range(a.big_reps):
            raw.append(run_child_measured("h5_raw", {**common, "h5": str(h5_path)}))
            sha.append(run_child_measured("sha256", {**common, "h5": str(h5_path)}))
            att.append(run_child_measured("attach", {**common, "h5": str(h5_path), "lake_src": str(src),
                                                     "lake": str(work / "lake_embed")},
                                          profile=pf("attach") if i == 0 else None))
            # Reads right after an attach run slower on this VM (the attach hands gigabytes of
            # page cache back, and a fresh process then faults in cold pages), so they are
            # shown but not the baseline: the baseline must not be slowed by the step it judges.
            after.append(run_child_measured("h5_raw", {**common, "h5": str(h5_path)}))
            shutil.rmtree(work / "lake_embed", ignore_errors=True)
        R["embed"] = {"raw": raw, "raw_after_attach": after, "raw_cold_or_first": first,
                      "attach": att, "sha256": sha, "h5_bytes": du(h5_path)}
        rb = med([x["bytes"] / x["seconds"] for x in raw])
        ab = gen["h5"]["bytes"] / med([x["seconds"] for x in att])
        print(f"  h5 raw read {rb / 1e9:.2f} GB/s; attach {ab / 1e9:.2f} GB/s "
              f"({med([x['seconds'] for x in att]):.1f} s, rss {max(x['rss_mb'] for x in att):.0f} MB); "
              f"sha256 {gen['h5']['bytes'] / med([x['seconds'] for x in sha]) / 1e9:.2f} GB/s", flush=True)

    info["load_end"] = loadavg()
    (work / "results.json").write_text(json.dumps(R, indent=1, default=str))
    md = render(R, a)
    _write_md(md, a.out)
    print(md)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _write_md(md: str, out: str | None) -> None:
    if not out:
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    prev = Path(out).read_text() if Path(out).exists() else ""
    if FINDINGS_MARK in prev:  # keep the hand-written profiling findings below the marker
        md = md.rstrip("\n") + "\n\n" + prev[prev.index(FINDINGS_MARK):]
    Path(out).write_text(md)
    print(f"# wrote {out}")


def secs_list(xs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{x['seconds']:.1f}" for x in xs)


def rate_list(xs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{x['bytes'] / x['seconds'] / 1e9:.2f}" for x in xs)


def render(R: dict[str, Any], a: argparse.Namespace) -> str:
    info, gen = R["info"], R["gen"]
    c = gen["csv"]
    out = [
        "# Lake core figures (issue 2)",
        "",
        f"Generated by `python benchmarks/bench_core.py --rows {a.rows} --embed-rows {a.embed_rows} "
        f"--dim {a.dim} --reps {a.reps} --calls {a.calls} --big-reps {a.big_reps}` on {info['date']}.",
        "",
        "## Machine",
        "",
        f"- {info['cpu']}, {info['memory']} RAM, {info['os']}",
        f"- Python {info['python']}, DuckDB {info['duckdb']}, pylance {info['pylance']}, "
        f"pyarrow {info['pyarrow']}, h5py {info['h5py']}, numpy {info['numpy']}; git {info['git']}",
        f"- load average at start {info['load_start']}, at end {info.get('load_end', '?')} "
        "(the machine was shared with other engineers' jobs: timings are noisy)",
        "- page cache not dropped between steps; inputs had just been written or read, but other",
        "  jobs compete for the 24 GB (see Notes)",
        "",
        "## Data",
        "",
        f"- CSV: {c['rows']:,} rows, {c['physical_lines']:,} physical lines, {c['bytes'] / 1e6:.0f} MB; "
        f"prompt length {c['min_chars']}..{c['max_chars']:,} chars (mean {c['mean_chars']}); "
        f"{c['with_newline']:,} multi-line, {c['with_flags']:,} with Pika flags, "
        f"{c['with_entity']:,} with `&` entities (generated by `benchmarks/gen_vidprom.py` in "
        f"{gen['csv_seconds']:.0f} s)",
        f"- HDF5: {gen['h5']['rows']:,} x {gen['h5']['dim']} float32, {gen['h5']['bytes'] / 1e9:.2f} GB "
        f"(uuids of the first {gen['h5']['rows']:,} CSV rows, file order; written in {gen['h5_seconds']:.0f} s)",
        "",
        "## Results",
        "",
        "Wall-clock times decide PASS/FAIL. Because the 2 cores were shared with other jobs, the",
        "CPU seconds (user+sys of the whole process, all threads) of the same step are shown too:",
        "their ratio is far less sensitive to the load.",
        "",
        "| figure | VidLake (wall / CPU) | baseline (wall / CPU) | ratio wall (CPU) | target | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    notes: list[str] = []
    if "ingest" in R:
        ing = R["ingest"]
        ls = med([x["seconds"] for x in ing["lake"]])
        ds = med([x["seconds"] for x in ing["duckdb"]])
        lc = med([x["cpu"] for x in ing["lake"]])
        dc = med([x["cpu"] for x in ing["duckdb"]])
        rss = max(x["rss_mb"] for x in ing["lake"]) / 1024
        out.append(f"| CSV ingest, {c['rows']:,} rows | {ls:.1f} s / {lc:.1f} s | DuckDB read_csv -> Parquet "
                   f"{ds:.1f} s / {dc:.1f} s | {ls / ds:.2f}x ({lc / dc:.2f}x) | <= {TARGET_INGEST_RATIO:g}x | "
                   f"{ok(ls / ds <= TARGET_INGEST_RATIO)} |")
        out.append(f"| CSV ingest peak RSS | {rss:.2f} GB | DuckDB "
                   f"{max(x['rss_mb'] for x in ing['duckdb']) / 1024:.2f} GB | | < {TARGET_INGEST_RSS_GB:g} GB | "
                   f"{ok(rss < TARGET_INGEST_RSS_GB)} |")
        notes.append(f"- Ingest runs (wall): lake {secs_list(ing['lake'])} s; "
                     f"DuckDB {secs_list(ing['duckdb'])} s. "
                     f"prompts.lance {ing['lake_bytes'] / 1e6:.0f} MB, DuckDB's Parquet "
                     f"{ing['parquet_bytes'] / 1e6:.0f} MB.")
        if all("imports" in x for x in ing["lake"] + ing["duckdb"]):
            li = med([x["imports"] for x in ing["lake"]])
            di = med([x["imports"] for x in ing["duckdb"]])
            notes.append(
                f"- Both sides load their libraries before the clock starts (DuckDB's step "
                f"always imported duckdb first; since 2026-12-03 17:30 UTC the lake's step also "
                f"imports duckdb, numba and its ingest modules first): lake {li:.2f} s, DuckDB "
                f"{di:.2f} s (medians). With those loads counted on both sides the ratio is "
                f"{(ls + li) / (ds + di):.2f}x. Everything that depends on the file (numba's "
                f"kernels loaded from their cache, DuckDB's connection) stays timed.")
    if "query" in R:
        q = R["query"]
        for name in QUERIES:
            lf = med([x["fresh"][name] for x in q["lake"]])
            lfc = med([x["fresh_cpu"][name] for x in q["lake"]])
            pf_ = med([x["fresh"][name] for x in q["parquet"]])
            po = med([x["open"][name] for x in q["parquet"]])
            poc = med([x["open_cpu"][name] for x in q["parquet"]])
            lo = med([x["open"][name] for x in q["lake"]])
            out.append(f"| query `{name}` | {lf * 1000:.0f} / {lfc * 1000:.0f} ms | Parquet {po * 1000:.0f} / "
                       f"{poc * 1000:.0f} ms | {lf / po:.2f}x ({lfc / poc:.2f}x) | <= {TARGET_QUERY_RATIO:g}x | "
                       f"{ok(lf / po <= TARGET_QUERY_RATIO)} |")
            nc = [x["nocache"][name] for x in q["lake"] if "nocache" in x]
            lff = [x["fresh_first"][name] for x in q["lake"] if "fresh_first" in x]
            pof = [x["open_first"][name] for x in q["parquet"] if "open_first" in x]
            first_of = (f"first call in the process: lake.query {med(lff) * 1000:.0f} ms, Parquet "
                        f"{med(pof) * 1000:.0f} ms; " if lff and pof else "")
            notes.append(f"  - `{name}`: {first_of}`lake.sql()` cursor {lo * 1000:.0f} ms; Parquet with a fresh "
                         f"connection and views per query {pf_ * 1000:.0f} ms"
                         + (f"; `lake.query` without the analysis cache (straight over Lance) "
                            f"{med(nc) * 1000:.0f} ms" if nc else ""))
        rss_l = max(x["rss_mb"] for x in q["lake"]) / 1024
        rss_p = max(x["rss_mb"] for x in q["parquet"]) / 1024
        out.append(f"| query process peak RSS | {rss_l:.2f} GB | {rss_p:.2f} GB | | | |")
        cb = [x["cache_build"] for x in q["lake"] if "cache_build" in x]
        if cb:
            cbc = med([x["cache_build_cpu"] for x in q["lake"]])
            cbytes = max(x["cache_bytes"] for x in q["lake"])
            out.append(f"| first query after a write (builds the analysis cache, {cbytes / 1e6:.0f} MB) | "
                       f"{med(cb):.2f} s / {cbc:.2f} s | | | once per table version | |")
        first = [x["first_call"] for x in q["lake"] if "first_call" in x]
        first_cpu = [x["first_call_cpu"] for x in q["lake"] if "first_call_cpu" in x]
        notes.insert(len(notes) - len(QUERIES),
                     "- Queries: VidLake = `lake.query(sql)` as a user calls it (after a first call in "
                     "the process, and after the first query since the write built the analysis "
                     "cache, timed apart in the table above; see docs/sql.md); baseline = the same view definitions over `read_parquet` of a "
                     "Parquet copy of the lake's base tables, on an already-open DuckDB connection "
                     f"(DuckDB's best case). Each side runs every query {q.get('calls', 1)} times in a process "
                     f"(median), in {len(q['lake'])} fresh processes (median of those). "
                     + (f"The first `lake.query` in a process (it loads the lance extension) took "
                        f"{med(first):.2f} s wall / {med(first_cpu):.2f} s CPU. " if first else "")
                     + f"Parquet copy of prompts: {q['parquet_bytes'] / 1e6:.0f} MB. Other views of the same runs:")
        notes.append("- SQL: " + "; ".join(f"`{k}`: `{v}`" for k, v in QUERIES.items()))
    if "lookup" in R:
        lk = R["lookup"]
        for key in ("asis", "flipped"):
            xs = lk[key]
            idx = ", ".join(xs[0]["indices"]) or "none"
            label = ("as ingested" if key == "asis" else "copy with the index " + (
                "dropped" if lk["flip"]["action"].startswith("dropped") else "built")) + f"; indices: {idx}"
            p50 = med([pct(x["times"], 0.5) for x in xs]) * 1000
            p99 = med([pct(x["times"], 0.99) for x in xs]) * 1000
            c50 = med([pct(x["cpus"], 0.5) for x in xs]) * 1000
            c99 = med([pct(x["cpus"], 0.99) for x in xs]) * 1000
            # the target is for a lake as VidLake builds it (with its uuid index); the row
            # without an index shows what the index buys and is not judged
            if xs[0]["indices"]:
                target = f"< {TARGET_LOOKUP_MS:g} ms"
                verdict = f"{ok(p99 < TARGET_LOOKUP_MS)} (p99), {ok(p50 < TARGET_LOOKUP_MS)} (p50)"
            else:
                target, verdict = "", "reference, not judged (no index)"
            out.append(f"| `get_prompt(uuid)`, {label}, p50 / p99 | {p50:.2f} / {p99:.2f} ms "
                       f"(CPU {c50:.2f} / {c99:.2f} ms) | | | {target} | {verdict} |")
        xs = lk["parquet"]
        out.append(f"| reference: DuckDB point query on Parquet, p50 / p99 | | "
                   f"{med([pct(x['times'], 0.5) for x in xs]) * 1000:.2f} / "
                   f"{med([pct(x['times'], 0.99) for x in xs]) * 1000:.2f} ms | | | |")
        notes.append(f"- Lookups: {a.lookups} random uuids of the CSV, each run in a fresh process "
                     f"after one warm-up call; medians of {len(lk['asis'])} runs. All found: "
                     f"{all(x['found'] == a.lookups for x in lk['asis'] + lk['flipped'])}. "
                     f"On a copy of the lake the benchmark {lk['flip']['action']} "
                     f"({lk['flip']['seconds']:.1f} s, {lk['flip']['rss_mb']:.0f} MB peak) straight on "
                     "the Lance dataset and pinned a `Lake` at that version (`open_lake()` would roll "
                     "back a version that no batch records).")
    if "embed" in R:
        e = R["embed"]
        hb = gen["h5"]["bytes"]
        rb = med([x["bytes"] / x["seconds"] for x in e["raw"]])
        rbc = med([x["bytes"] / x["cpu"] for x in e["raw"]])
        at = med([x["seconds"] for x in e["attach"]])
        atc = med([x["cpu"] for x in e["attach"]])
        ab, abc = hb / at, hb / atc
        rss = max(x["rss_mb"] for x in e["attach"]) / 1024
        out.append(f"| HDF5 attach {gen['h5']['rows']:,} x {gen['h5']['dim']} | {at:.1f} s / {atc:.1f} s = "
                   f"{ab / 1e9:.2f} GB/s | h5py raw read {rb / 1e9:.2f} GB/s (per CPU s {rbc / 1e9:.2f}) | "
                   f"{ab / rb:.2f} of raw ({abc / rbc:.2f}) | >= 0.33 of raw | {ok(ab / rb >= TARGET_EMBED_FRACTION)} |")
        out.append(f"| HDF5 attach peak RSS | {rss:.2f} GB | raw read "
                   f"{max(x['rss_mb'] for x in e['raw']) / 1024:.2f} GB | | < {TARGET_EMBED_RSS_GB:g} GB | "
                   f"{ok(rss < TARGET_EMBED_RSS_GB)} |")
        sh = med([x["seconds"] for x in e["sha256"]])
        after = e.get("raw_after_attach")
        notes.append(f"- HDF5: raw read runs (the baseline; each before an attach) {rate_list(e['raw'])} GB/s"
                     + (f"; raw reads right after each attach (not the baseline: slowed by the "
                        f"memory the attach handed back) {rate_list(after)} GB/s" if after else "")
                     + "; attach runs "
                     f"{secs_list(e['attach'])} s, of which the source sha256 alone takes ~{sh:.1f} s "
                     f"({hb / sh / 1e9:.2f} GB/s). Attach = `lake.ingest(embed.h5)` on a lake holding "
                     f"exactly the file's {gen['h5']['rows']:,} prompts (ingested from the first rows of the CSV).")
    notes += R.get("extra_notes", [])
    out += ["", "## Notes", "", *notes, ""]
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        raise SystemExit(_child_main(sys.argv[2], sys.argv[3]))
    raise SystemExit(main())
