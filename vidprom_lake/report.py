"""`vidlake report`: one self-contained HTML file with the lake's analysis.

Charts are inline SVG drawn here (no JavaScript, no network at view time); thumbnails are
inlined as ``data:`` images. Prompts are untrusted text (the VidProM dump has raw HTML in them),
so every value goes through Jinja2's autoescaping, SVG labels included, and the page carries a
Content-Security-Policy that forbids scripts and any outside fetch as a second line of defence.

The embedding map: a random sample of prompts that have vectors in a vector column, reduced to
2-D with PCA and grouped with k-means (numpy only), with each cluster's most distinctive words.
"""

from __future__ import annotations

import base64
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .errors import InputError, VidlakeError
from .schema import field_meta, is_vector_field

if TYPE_CHECKING:
    from .lake import Lake

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#d62728"]
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


# ------------------------------------------------------------------ SVG charts (data only)
@dataclass
class Bar:
    label: str
    value: float
    color: str = PALETTE[0]


@dataclass
class BarChart:
    """Horizontal bars; the template draws it. Labels are escaped by the template."""
    title: str
    bars: list[Bar]
    fmt: str = "{:,.0f}"
    width: int = 560
    row: int = 18
    label_w: int = 150

    @property
    def height(self) -> int:
        return self.row * len(self.bars) + 10

    @property
    def scale(self) -> float:
        top = max((b.value for b in self.bars), default=0) or 1
        return (self.width - self.label_w - 70) / top

    def text(self, b: Bar) -> str:
        return self.fmt.format(b.value)


@dataclass
class Series:
    name: str
    color: str
    points: list[tuple[int, float]]  # (x index, value)


@dataclass
class ColumnChart:
    """Vertical columns over ordered x labels, one colour per series (stacked)."""
    title: str
    labels: list[str]
    series: list[Series]
    width: int = 760
    height: int = 220

    def rects(self) -> list[dict[str, Any]]:
        n = max(len(self.labels), 1)
        totals = [0.0] * n
        for s in self.series:
            for x, v in s.points:
                totals[x] += v
        top = max(totals) or 1
        bw = (self.width - 60) / n
        base = [0.0] * n
        out = []
        for s in self.series:
            for x, v in s.points:
                h = (self.height - 40) * v / top
                y = self.height - 25 - (self.height - 40) * base[x] / top - h
                base[x] += v
                out.append({"x": 50 + x * bw, "y": y, "w": max(bw - 1, 0.5), "h": h,
                            "color": s.color, "tip": f"{self.labels[x]} {s.name}: {v:,.0f}"})
        return out

    def axis(self) -> list[dict[str, Any]]:
        n = max(len(self.labels), 1)
        bw = (self.width - 60) / n
        step = max(1, math.ceil(n / 8))
        return [{"x": 50 + i * bw, "label": lab} for i, lab in enumerate(self.labels) if i % step == 0]

    def top(self) -> float:
        n = max(len(self.labels), 1)
        totals = [0.0] * n
        for s in self.series:
            for x, v in s.points:
                totals[x] += v
        return max(totals) if totals else 0


@dataclass
class Scatter:
    title: str
    points: list[dict[str, Any]]
    clusters: list[dict[str, Any]]
    size: int = 520
    column: str = ""
    model: str = ""


@dataclass
class ReportData:
    title: str
    generated: str
    lake_uri: str
    sections: list[tuple[str, pa.Table]]
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    bar_charts: list[BarChart] = field(default_factory=list)
    column_charts: list[ColumnChart] = field(default_factory=list)
    scatter: Scatter | None = None
    scatter_note: str = ""
    thumbs: list[dict[str, str]] = field(default_factory=list)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1 else f"{v:,.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _table(title: str, t: pa.Table, limit: int = 50) -> tuple[str, list[str], list[list[str]]]:
    rows = [[_cell(r[c]) for c in t.column_names] for r in t.slice(0, limit).to_pylist()]
    return (title, list(t.column_names), rows)


# ------------------------------------------------------------------ embedding map
def _vector_column(lake: Lake, column: str | None) -> pa.Field | None:
    fields = [f for f in lake.dataset("prompts").schema if is_vector_field(f)]
    if column:
        for f in fields:
            if f.name == column:
                return f
        raise InputError(f"no vector column {column!r} in prompts; it has: "
                         f"{', '.join(f.name for f in fields) or 'none'}")
    for f in fields:
        if f.name == "embedding":
            return f
    return fields[0] if fields else None


def pca(x: np.ndarray, r: int = 2) -> np.ndarray:
    """Rows projected on their first `r` principal components."""
    x = x - x.mean(axis=0, keepdims=True)
    n, d = x.shape
    r = min(r, n, d)
    # eigh of the smaller Gram matrix: much cheaper than an SVD of x on a busy machine
    if d <= n:
        w, v = np.linalg.eigh(x.T @ x)
        top = np.argsort(w)[::-1][:r]
        return x @ v[:, top]
    w, u = np.linalg.eigh(x @ x.T)
    top = np.argsort(w)[::-1][:r]
    return u[:, top] * np.sqrt(np.maximum(w[top], 0))


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 30) -> np.ndarray:
    """Plain k-means with k-means++ seeding; returns the label of each row."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    k = max(1, min(k, n))
    centers = [x[rng.integers(n)]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1 / n)
        centers.append(x[rng.choice(n, p=p)])
        d2 = np.minimum(d2, ((x - centers[-1]) ** 2).sum(1))
    c = np.stack(centers)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        dist = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
        new = dist.argmin(1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(k):
            m = labels == j
            if m.any():
                c[j] = x[m].mean(0)
    return labels


def top_terms(texts: list[str], labels: np.ndarray, stop: set[str], n: int = 5) -> list[list[str]]:
    """Per cluster, the words most over-represented against the whole sample (prompt counts)."""
    docs = [set(t for t in TOKEN.findall(s.lower()) if len(t) > 1 and t not in stop and not t.isdigit())
            for s in texts]
    overall: Counter[str] = Counter()
    for d in docs:
        overall.update(d)
    total = max(len(docs), 1)
    out = []
    for j in range(int(labels.max()) + 1 if len(labels) else 0):
        idx = np.flatnonzero(labels == j)
        c: Counter[str] = Counter()
        for i in idx:
            c.update(docs[i])
        size = max(len(idx), 1)
        scored = sorted(((cnt / size) * math.log((cnt / size) / (overall[w] / total) + 1e-9) if cnt > 1 else 0.0,
                         w) for w, cnt in c.items())
        out.append([w for s, w in sorted(scored, key=lambda t: (-t[0], t[1]))[:n] if s > 0]
                   or [w for w, _ in c.most_common(n)])
    return out


def embedding_map(lake: Lake, column: str | None = None, sample: int = 2000, clusters: int = 8,
                  seed: int = 0, stop_words: set[str] | None = None) -> tuple[Scatter | None, str]:
    f = _vector_column(lake, column)
    if f is None:
        return None, "No vector column in prompts yet (run `vidlake embed`)."
    ds = lake.dataset("prompts")
    name = f.name
    qname = "`" + name.replace("`", "``") + "`"  # Lance filters quote names with backticks
    t = _sample_with_vectors(ds, name, qname, sample, seed)
    if t.num_rows < 3:
        return None, f"Fewer than 3 prompts have a {name} vector."
    vec = t.column(name).combine_chunks()
    x = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(vec), -1)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if not np.all(np.isfinite(x)):
        raise VidlakeError(f"the {name} column holds non-finite values; cannot draw the map")
    reduced = pca(x.astype(np.float64), 50)  # one SVD: 2 components for the map, 50 to cluster
    xy = reduced[:, :2]
    labels = kmeans(reduced, clusters, seed=seed)
    texts = [c or p or "" for c, p in zip(t.column("prompt_clean").to_pylist(),
                                          t.column("prompt").to_pylist(), strict=True)]
    terms = top_terms(texts, labels, stop_words or set())
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1)
    size = 520
    pts = []
    for (px, py), lab, text in zip(xy, labels, texts, strict=True):
        pts.append({"x": 10 + (px - lo[0]) / span[0] * (size - 20),
                    "y": 10 + (1 - (py - lo[1]) / span[1]) * (size - 20),
                    "color": PALETTE[int(lab) % len(PALETTE)],
                    "tip": text[:160]})
    cl = [{"id": j, "color": PALETTE[j % len(PALETTE)], "size": int((labels == j).sum()),
           "words": ", ".join(terms[j]) if j < len(terms) else ""}
          for j in range(int(labels.max()) + 1)]
    meta = field_meta(f)
    return Scatter(f"Embedding map ({len(pts):,} sampled prompts, {name})", pts, cl, size,
                   name, meta.get("vidlake:model", "")), ""


def _sample_with_vectors(ds: Any, name: str, qname: str, sample: int, seed: int) -> pa.Table:
    """A uniform random sample of up to `sample` rows whose `name` vector is set.

    Scanning a whole vector column for NULLs reads every vector (GBs on a full lake), so rows
    are probed at random positions with `take` in growing rounds; only when vectors turn out
    to be rare (under 1 in 50 probed) does it fall back to the filtered scan.
    """
    cols = ["uuid", "prompt_clean", "prompt", "source", name]
    n = ds.count_rows()
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    got: list[pa.Table] = []
    have = probed = 0
    step = max(sample * 2, 1024)
    while have < sample and probed < n:
        pos = np.sort(order[probed:probed + step])
        probed += len(pos)
        t = ds.take(pos.tolist(), columns=cols)
        t = t.filter(t.column(name).is_valid())
        got.append(t)
        have += t.num_rows
        if probed >= 50 * max(sample, 100) and have * 50 < probed:
            # rare vectors: read only the rows that have one
            full = ds.to_table(columns=cols, filter=f"{qname} IS NOT NULL")
            if full.num_rows > sample:
                full = full.take(np.sort(rng.choice(full.num_rows, sample, replace=False)))
            return full
        step *= 2
    out = pa.concat_tables(got) if got else ds.to_table(columns=cols, limit=0)
    if out.num_rows > sample:
        out = out.take(np.sort(rng.choice(out.num_rows, sample, replace=False)))
    return out


# ------------------------------------------------------------------ thumbnails
def _mime(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def thumbnails(lake: Lake, n: int = 24, seed: int = 0) -> list[dict[str, str]]:
    ds = lake.dataset("videos")
    have = ds.to_table(columns=["uuid", "model", "video_id"], filter="thumbnail IS NOT NULL")
    if have.num_rows == 0:
        return []
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(have.num_rows, min(n, have.num_rows), replace=False))
    ids = [have.column("video_id")[int(i)].as_py() for i in pick]
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in ids)
    t = ds.to_table(columns=["video_id", "uuid", "model", "thumbnail"], filter=f"video_id IN ({quoted})")
    uuids = sorted(set(t.column("uuid").to_pylist()))
    pq = ", ".join("'" + u.replace("'", "''") + "'" for u in uuids)
    pr = lake.dataset("prompts").to_table(columns=["uuid", "prompt", "prompt_clean"], filter=f"uuid IN ({pq})")
    text = {r["uuid"]: (r["prompt_clean"] or r["prompt"]) for r in pr.to_pylist()}
    out = []
    for r in sorted(t.to_pylist(), key=lambda r: r["video_id"]):
        mime = _mime(r["thumbnail"] or b"")
        if mime is None:
            continue
        out.append({"src": f"data:{mime};base64," + base64.b64encode(r["thumbnail"]).decode("ascii"),
                    "model": r["model"], "prompt": (text.get(r["uuid"]) or "")[:300],
                    "video_id": r["video_id"]})
    return out


# ------------------------------------------------------------------ building the page
def collect(lake: Lake, *, column: str | None = None, sample: int = 2000, clusters: int = 8,
            thumbs: int = 24, seed: int = 0, title: str = "VidLake report",
            text_sample: int = 200_000) -> ReportData:
    from .analysis import connect, stats

    sections = stats(lake)
    con = connect(lake)
    try:
        def q(sql: str) -> pa.Table:
            return con.execute(sql).to_arrow_table()

        # Several charts read the same per-prompt text views: compute each once in this private
        # connection (a temp table under the view's name; the views that use it re-bind to it).
        # Tokenising is the slow part (regexes over every prompt), so above `text_sample`
        # prompts the text charts use a seeded uniform sample, and say so in their titles.
        total = con.execute("SELECT count(*) FROM prompts").fetchone()[0]
        sampled = total > text_sample
        keep = ""
        if sampled:
            con.execute(f"CREATE TEMP TABLE __sample AS SELECT uuid FROM prompts USING SAMPLE "
                        f"reservoir({int(text_sample)} ROWS) REPEATABLE ({int(seed)})")
            keep = " WHERE uuid IN (SELECT uuid FROM __sample)"
        for name in ("prompt_lengths", "prompt_tokens"):
            con.execute(f"CREATE TEMP TABLE __m_{name} AS SELECT * FROM {name}{keep}")
            con.execute(f"DROP VIEW {name}")
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM __m_{name}")
        con.execute("CREATE TEMP TABLE __m_source_summary AS SELECT * FROM source_summary")
        con.execute("DROP VIEW source_summary")
        con.execute("CREATE TEMP VIEW source_summary AS SELECT * FROM __m_source_summary")
        note = f" (uniform sample of {text_sample:,} of {total:,} prompts)" if sampled else ""

        data = ReportData(title, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), lake.uri, sections)
        lengths = q("SELECT unit, bin_lo, bin_hi, prompts FROM prompt_length_hist")
        for unit, label, width in (("words", "words", 5), ("chars", "characters", 50)):
            got = {r["bin_lo"]: r["prompts"] for r in lengths.to_pylist() if r["unit"] == unit}
            los = list(range(0, 21 * width, width))  # every bin, empty ones too (sql/70)
            data.column_charts.append(ColumnChart(
                f"Prompt length in {label}{note}",
                [f"{lo}+" if lo == los[-1] else f"{lo}-{lo + width - 1}" for lo in los],
                [Series("prompts", PALETTE[0], [(i, got.get(lo, 0)) for i, lo in enumerate(los)])]))
        weeks = q("SELECT week, source, prompts FROM prompts_per_week").to_pylist()
        labels = sorted({str(r["week"]) for r in weeks})
        xi = {w: i for i, w in enumerate(labels)}
        sources = sorted({r["source"] or "(none)" for r in weeks})
        data.column_charts.append(ColumnChart("Prompts per week (by source)", labels, [
            Series(s, PALETTE[i % len(PALETTE)],
                   [(xi[str(r["week"])], r["prompts"]) for r in weeks if (r["source"] or "(none)") == s])
            for i, s in enumerate(sources)]))
        shares = q("SELECT * FROM nsfw_shares").to_pylist()
        for cut in ("0_2", "0_5", "0_8"):
            data.bar_charts.append(BarChart(
                f"Share of scored prompts with NSFW score > {cut.replace('_', '.')}",
                [Bar(r["category"], 100 * (r[f"share_above_{cut}"] or 0), PALETTE[2]) for r in shares],
                fmt="{:.2f}%"))
        hist = q("SELECT category, bin_lo, prompts FROM nsfw_hist").to_pylist()
        cats = sorted({r["category"] for r in hist})
        bins = [f"{i / 20:.2f}" for i in range(20)]
        for i, cat in enumerate(cats):
            data.column_charts.append(ColumnChart(
                f"NSFW score histogram: {cat}", bins,
                [Series(cat, PALETTE[(i + 2) % len(PALETTE)],
                        [(min(int(round(r["bin_lo"] * 20)), 19), r["prompts"]) for r in hist
                         if r["category"] == cat])], width=370, height=160))
        vpm = q("SELECT model, videos FROM videos_per_model").to_pylist()
        if vpm:
            data.bar_charts.append(BarChart("Videos per model",
                                            [Bar(r["model"], r["videos"], PALETTE[4]) for r in vpm]))
        pvc = q("SELECT videos, prompts FROM prompt_video_counts").to_pylist()
        data.bar_charts.append(BarChart("Prompts by number of videos",
                                        [Bar(f"{r['videos']} videos", r["prompts"], PALETTE[3]) for r in pvc]))
        data.tables.append(_table(f"Top words (stop words removed){note}",
                                  q("SELECT word, occurrences, prompts FROM top_words LIMIT 30")))
        data.tables.append(_table(f"Top bigrams (stop words removed){note}",
                                  q("SELECT bigram, occurrences, prompts FROM top_bigrams LIMIT 30")))
        data.tables.append(_table(f"Sources side by side{note}", q("SELECT * FROM source_summary")))
        comp = q("SELECT * FROM vidprom_vs_diffusiondb")
        if comp.num_rows:
            data.tables.append(_table(f"VidProM vs DiffusionDB{note}", comp))
        # raw prompt text on purpose: it is what the lake holds, and it is escaped on output
        data.tables.append(_table("Newest prompts (raw text)", q(
            "SELECT time::DATE AS day, source, left(prompt, 300) AS prompt FROM prompts "
            "WHERE time IS NOT NULL ORDER BY time DESC, uuid LIMIT 12")))
        data.tables.append(_table("Highest toxicity (raw text)", q(
            "SELECT round(toxicity, 3) AS toxicity, left(prompt, 300) AS prompt FROM prompts "
            "WHERE toxicity IS NOT NULL ORDER BY toxicity DESC, uuid LIMIT 12")))
        stop = set(q("SELECT word FROM stop_words").column("word").to_pylist())
    finally:
        con.close()
    data.scatter, data.scatter_note = embedding_map(lake, column, sample, clusters, seed, stop)
    data.thumbs = thumbnails(lake, thumbs, seed)
    return data


CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'")


def render_html(data: ReportData) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("vidprom_lake", "templates"),
        autoescape=True,  # every {{ }} is HTML-escaped, in SVG text and attributes too
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(d=data, csp=CSP, cell=_cell)


@dataclass
class ReportResult:
    output: str
    bytes: int
    seconds: float
    prompts_mapped: int
    thumbnails: int

    def as_dict(self) -> dict[str, Any]:
        return {"output": self.output, "bytes": self.bytes, "seconds": round(self.seconds, 2),
                "prompts_mapped": self.prompts_mapped, "thumbnails": self.thumbnails}


def write_report(lake: Lake, output: str | os.PathLike[str], *, force: bool = False,
                 column: str | None = None, sample: int = 2000, clusters: int = 8,
                 thumbs: int = 24, seed: int = 0, text_sample: int = 200_000) -> ReportResult:
    """Write the report to `output` (atomically: a temporary file renamed into place)."""
    t0 = time.perf_counter()
    out = Path(output)
    if out.exists() and not force:
        raise VidlakeError(f"{out} exists; pass --force to overwrite it")
    if out.is_dir():
        raise InputError(f"{out} is a folder; give a file name such as report.html")
    if sample < 3 or clusters < 1:
        raise InputError("--sample must be at least 3 and --clusters at least 1")
    data = collect(lake, column=column, sample=sample, clusters=clusters, thumbs=thumbs, seed=seed,
                   text_sample=text_sample)
    html = render_html(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return ReportResult(str(out), len(html.encode("utf-8")), time.perf_counter() - t0,
                        len(data.scatter.points) if data.scatter else 0, len(data.thumbs))
