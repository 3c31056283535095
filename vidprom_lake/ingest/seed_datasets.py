"""The video-caption datasets text-to-video models are trained on: OpenVid-1M, VidGen-1M, MiraData.

Each caption becomes one prompts row next to VidProM's real user prompts:

* ``prompt`` is the caption (MiraData: ``dense_caption``, or the caption chosen with
  ``--prompt-column``), byte for byte; ``source`` is ``openvid``, ``vidgen`` or ``miradata``.
* ``source_id`` is the dataset's own clip id: OpenVid's ``video`` file name
  (``---_iRTHryQ_13_0to241.mp4``), VidGen's ``vid`` (``Eep9uvenxAo-Scene-0030``), MiraData's
  ``clip_id`` when the file has one, else ``{video_id}:{start_frame}-{end_frame}``.
* ``uuid`` is ``uuid5(NAMESPACE_DNS, "{source}:{source_id}")`` (e.g.
  ``uuid5(NAMESPACE_DNS, "openvid:---_iRTHryQ_13_0to241.mp4")``), so re-ingesting a file adds
  nothing and two clips that share a caption stay two rows. These rows are never flagged
  ``uuid_mismatch`` (their id is not meant to be uuid5 of the text).
* Every other column of the source row is kept, typed, in the ``extra`` JSON object: scores
  and fps as JSON numbers, frame counts and frame ranges as integers, MiraData's six captions
  as one object under ``captions``; unknown columns are kept as text, and values in MiraData's
  unnamed trailing columns are kept under ``unnamed_<position>`` (they are empty in the
  release, so the key is absent). A value that does not parse as its type is an error naming
  the row (or a skipped row with ``--skip-bad``).

The views ``openvid_clips``, ``vidgen_clips`` and ``miradata_clips`` (``sql/60_source_comparison.sql``)
expose those fields as typed columns.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from .clean import sha1_sql, uuid5_sql
from .pipeline import IngestOptions, IngestReport, SourceQuery, quote_ident
from .sources import _connect, _csv_error, _lit, csv_header

SOURCES = ("openvid", "vidgen", "miradata")

# OpenVid-1M.csv / OpenVidHD.csv: normalised header name -> (JSON key, type)
OPENVID_FIELDS: dict[str, tuple[str, str]] = {
    "aesthetic_score": ("aesthetic_score", "float"),
    "motion_score": ("motion_score", "float"),
    "temporal_consistency_score": ("temporal_consistency_score", "float"),
    "camera_motion": ("camera_motion", "text"),
    "frame": ("frames", "int"),
    "frames": ("frames", "int"),
    "fps": ("fps", "float"),
    "seconds": ("seconds", "float"),
}
MIRA_CAPTIONS = ("main_object_caption", "background_caption", "style_caption",
                 "camera_caption", "short_caption", "dense_caption")
MIRA_FIELDS: dict[str, tuple[str, str]] = {
    "index": ("index", "int"),
    "video_id": ("video_id", "text"),
    "clip_id": ("clip_id", "text"),
    "start_frame": ("start_frame", "int"),
    "end_frame": ("end_frame", "int"),
    "fps": ("fps", "float"),
    "start_timestep": ("start_timestep", "time"),
    "end_timestep": ("end_timestep", "time"),
    "seconds": ("seconds", "float"),
    "video_url": ("video_url", "text"),
    "source": ("source", "text"),
}


def uuid_for(source: str, source_id: str) -> str:
    """The lake uuid of a clip: uuid5(NAMESPACE_DNS, "{source}:{source_id}")."""
    from .clean import uuid5

    return uuid5(f"{source}:{source_id}")


def norm_name(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _typed(col: str, typ: str, label: str) -> tuple[str, str | None]:
    """(JSON value SQL, SQL of the reason the value is bad or NULL) for one source column."""
    c = quote_ident(col)
    txt = f"nullif(trim({c}::VARCHAR), '')"
    if typ == "text":
        return f"{c}::VARCHAR", None
    if typ == "float":
        val = f"TRY_CAST({txt} AS DOUBLE)"
        kind = "a number"
    elif typ == "int":
        d = f"TRY_CAST({txt} AS DOUBLE)"
        val = f"CASE WHEN {d} = floor({d}) AND abs({d}) < 9e18 THEN {d}::BIGINT END"
        kind = "an integer"
    else:  # "time": a number of seconds or a clock text (h:mm:ss.fff), kept as given
        val = f"coalesce(to_json(TRY_CAST({txt} AS DOUBLE)), to_json({txt}))"
        return val, None
    bad = (f"CASE WHEN {txt} IS NOT NULL AND {val} IS NULL THEN "
           f"{_lit(label)} || ' ' || {txt} || ' is not {kind}' END")
    return val, bad


def _bad_sql(parts: list[str]) -> str:
    return f"nullif(concat_ws('; ', {', '.join(parts)}), '')" if parts else "NULL::VARCHAR"


def _no_nsfw() -> str:
    from ..schema import NSFW_LABELS

    return (", ".join(f"NULL::FLOAT AS {lab}" for lab in NSFW_LABELS)
            + ", false AS nsfw_bad, NULL::VARCHAR AS nsfw_model")


def _id_sql(source: str, expr: str) -> str:
    return uuid5_sql(sha1_sql(f"({_lit(source + ':')} || {expr})"))


def _csv_rel(path: str, names: list[str], skip_bad: bool) -> str:
    cols = ", ".join(f"{_lit(c)}: 'VARCHAR'" for c in names)
    opts = (f"delim=',', quote='\"', escape='\"', header=true, auto_detect=false, "
            f"columns={{{cols}}}, strict_mode=true, encoding='utf-8', null_padding=false")
    if skip_bad:
        opts += ", ignore_errors=true, store_rejects=true"
    return f"read_csv({_lit(path)}, {opts})"


def _header_names(header: list[str]) -> tuple[list[str], list[int]]:
    """Column names for DuckDB (unnamed columns get ``unnamed_<position>``) and the positions of
    the unnamed ones."""
    names, unnamed, seen = [], [], set()
    for i, h in enumerate(header, start=1):
        n = h.strip()
        if not n:
            n = f"unnamed_{i}"
            unnamed.append(i)
        while n in seen:
            n = f"{n}_{i}"
        seen.add(n)
        names.append(n)
    return names, unnamed


def _extra_sql(pairs: list[tuple[str, str]], optional: list[tuple[str, str]]) -> str:
    """JSON object of (key, value SQL) pairs; `optional` keys only appear when not NULL."""
    base = "json_object(" + ", ".join(f"{_lit(k)}, {v}" for k, v in pairs) + ")"
    for k, v in optional:
        base = (f"CASE WHEN {v} IS NULL THEN {base} "
                f"ELSE json_merge_patch({base}, json_object({_lit(k)}, {v})) END")
    return f"{base}::VARCHAR"


def _fields(cols: list[str], known: dict[str, tuple[str, str]], used: set[str],
            report: IngestReport, opts: IngestOptions, path: str,
            ) -> tuple[list[tuple[str, str]], list[str]]:
    pairs: list[tuple[str, str]] = []
    bads: list[str] = []
    unknown: list[str] = []
    for c in cols:
        if c in used or c.startswith("unnamed_"):
            continue
        spec = known.get(norm_name(c))
        if spec is None:
            unknown.append(c)
            pairs.append((c, f"{quote_ident(c)}::VARCHAR"))
            continue
        key, typ = spec
        val, bad = _typed(c, typ, c)
        pairs.append((key, val))
        if bad:
            bads.append(bad)
    if unknown:
        if opts.strict_columns:
            raise InputError(f"unknown column(s) {', '.join(unknown)} (drop --strict-columns to "
                             "keep them in the `extra` JSON column)", path=path, row=0)
        report.unknown_columns = unknown
        report.notes.append(f"kept unknown column(s) {', '.join(unknown)} as text in `extra`")
    return pairs, bads


def _find(cols: list[str], *names: str) -> str | None:
    by_norm = {norm_name(c): c for c in cols}
    return next((by_norm[n] for n in names if n in by_norm), None)


def _query(con: Any, sql: str, source: str, path: str, hint: Any = None) -> SourceQuery:
    return SourceQuery(con, sql, source, total_bytes=Path(path).stat().st_size, error_hint=hint,
                       id_from_source=True, pika_flags=False)


# ------------------------------------------------------------------------------- OpenVid-1M
def openvid(path: str, opts: IngestOptions, report: IngestReport) -> SourceQuery:
    """OpenVid-1M.csv / OpenVidHD.csv: video, caption, scores, camera motion, frame, fps, seconds."""
    header = csv_header(path)
    names, unnamed = _header_names(header)
    video = _find(names, "video", "video_name", "video_path")
    caption = opts.prompt_column or _find(names, "caption")
    missing = [n for n, c in (("video", video), ("caption", caption)) if c is None or c not in names]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; OpenVid-1M.csv has video, caption, "
                         f"aesthetic score, motion score, temporal consistency score, camera "
                         f"motion, frame, fps, seconds (found {', '.join(header)})", path=path, row=0)
    assert video is not None and caption is not None
    pairs, bads = _fields(names, OPENVID_FIELDS, {video, caption}, report, opts, path)
    return _build(path, opts, "openvid", names, unnamed, caption, f"{quote_ident(video)}::VARCHAR",
                  pairs, bads, video)


def _build(path: str, opts: IngestOptions, source: str, names: list[str], unnamed: list[int],
           caption: str, id_expr: str, pairs: list[tuple[str, str]], bads: list[str],
           id_label: str) -> SourceQuery:
    con = _connect()
    optional = [(f"unnamed_{i}", f"nullif(trim(unnamed_{i}), '')") for i in unnamed]
    sid = f"nullif(trim({id_expr}), '')"
    bads = [f"CASE WHEN {sid} IS NULL THEN 'no clip id ({id_label} is empty)' END", *bads]
    sql = (
        f"SELECT NULL::BIGINT AS _row, {quote_ident(caption)}::VARCHAR AS prompt, "
        f"{_id_sql(source, sid)} AS uuid_given, NULL::VARCHAR AS time_raw, "
        "NULL::TIMESTAMPTZ AS time, false AS time_bad, "
        f"{sid} AS source_id, 1::BIGINT AS occurrences, "
        f"{_extra_sql(pairs, optional)} AS extra, {_no_nsfw()}, "
        f"{_bad_sql(bads)} AS bad_reason "
        f"FROM {_csv_rel(path, names, opts.skip_bad)}"
    )
    return _query(con, sql, opts.source or source, path, _csv_error(path))


# ------------------------------------------------------------------------------- MiraData
def miradata(path: str, opts: IngestOptions, report: IngestReport) -> SourceQuery:
    """MiraData CSV: video_id, frame range, six hierarchical captions, fps, timesteps."""
    header = csv_header(path)
    names, unnamed = _header_names(header)
    caps = {c: _find(names, c) for c in MIRA_CAPTIONS}
    video_id = _find(names, "video_id")
    clip_id = _find(names, "clip_id")
    start, end = _find(names, "start_frame"), _find(names, "end_frame")
    caption = opts.prompt_column or caps["dense_caption"]
    if caption is None or caption not in names:
        raise InputError(
            f"no caption column {opts.prompt_column or 'dense_caption'!r}; a MiraData CSV has "
            f"index, video_id, start_frame, end_frame, {', '.join(MIRA_CAPTIONS)}, fps, "
            f"start_timestep, end_timestep (found {', '.join(h or '<empty>' for h in header)})",
            path=path, row=0)
    if clip_id is None and (video_id is None or start is None or end is None):
        raise InputError("a MiraData CSV needs clip_id, or video_id with start_frame and "
                         f"end_frame, to identify each clip (found {', '.join(header)})",
                         path=path, row=0)
    cap_cols = {c for c in caps.values() if c}
    pairs, bads = _fields(names, MIRA_FIELDS, cap_cols, report, opts, path)
    present = [(k.removesuffix("_caption"), f"{quote_ident(v)}::VARCHAR")
               for k, v in caps.items() if v]
    pairs.append(("captions", "json_object(" + ", ".join(f"{_lit(k)}, {v}" for k, v in present)
                  + ")"))
    if clip_id is not None:
        id_expr, label = f"{quote_ident(clip_id)}::VARCHAR", clip_id
    else:
        assert video_id and start and end
        s_val, _ = _typed(start, "int", start)
        e_val, _ = _typed(end, "int", end)
        id_expr = (f"(nullif(trim({quote_ident(video_id)}), '') || ':' || {s_val}::VARCHAR "
                   f"|| '-' || {e_val}::VARCHAR)")
        label = f"{video_id}/{start}/{end}"
    if unnamed:
        report.notes.append(
            f"header has {len(unnamed)} unnamed column(s) (position {', '.join(map(str, unnamed))}); "
            "their values are kept in `extra` as unnamed_<position> where not empty")
    return _build(path, opts, "miradata", names, unnamed, caption, id_expr, pairs, bads, label)


# ------------------------------------------------------------------------------- VidGen-1M
def vidgen(path: str, opts: IngestOptions, report: IngestReport) -> SourceQuery:
    """VidGen_1M_video_caption.json: a JSON array of {vid, caption} (JSON lines also read)."""
    con = _connect()
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    fmt = "array" if head.startswith(b"[") else "newline_delimited"
    rel = (f"read_json({_lit(path)}, format='{fmt}', records=true, "
           "maximum_object_size=67108864)")
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
    except Exception as exc:
        raise InputError(f"cannot read as VidGen-1M JSON: {str(exc).splitlines()[0]}",
                         path=path) from exc
    vid = _find(cols, "vid", "video_id", "id")
    caption = opts.prompt_column or _find(cols, "caption")
    if vid is None or caption is None or caption not in cols:
        raise InputError("VidGen-1M JSON records need 'vid' and 'caption' "
                         f"(found {', '.join(cols)})", path=path, row=0)
    pairs, bads = _fields(cols, {}, {vid, caption}, report, opts, path)
    # unknown JSON fields keep their JSON type
    pairs = [(k, quote_ident(k)) for k, _ in pairs]
    sid = f"nullif(trim({quote_ident(vid)}::VARCHAR), '')"
    bads = [f"CASE WHEN {sid} IS NULL THEN 'no clip id (vid is empty)' END", *bads]
    extra = (_extra_sql(pairs, []) if pairs else "NULL::VARCHAR")
    sql = (
        f"SELECT row_number() OVER () AS _row, {quote_ident(caption)}::VARCHAR AS prompt, "
        f"{_id_sql('vidgen', sid)} AS uuid_given, NULL::VARCHAR AS time_raw, "
        "NULL::TIMESTAMPTZ AS time, false AS time_bad, "
        f"{sid} AS source_id, 1::BIGINT AS occurrences, {extra} AS extra, {_no_nsfw()}, "
        f"{_bad_sql(bads)} AS bad_reason FROM {rel}"
    )
    return _query(con, sql, opts.source or "vidgen", path)


def reader(kind: str) -> Any:
    """The ingest reader (lake, path, opts, report) -> IngestReport for one dataset."""
    fn = {"openvid": openvid, "vidgen": vidgen, "miradata": miradata}[kind]

    def read(lake: Any, path: str, opts: IngestOptions, report: IngestReport) -> IngestReport:
        from .pipeline import run

        q = fn(path, opts, report)
        return run(lake, q, path, report.format, opts, report)

    read.__doc__ = fn.__doc__
    return read


# ------------------------------------------------------------------------------- comparison
def source_overlap(lake: Any, *, threshold: float | None = None, column: str = "embedding",
                   sample: int | None = 10_000, seed: int = 0, block_rows: int = 8192,
                   ) -> list[dict[str, Any]]:
    """Per source: the share of its prompts whose nearest neighbour in *another* source has a
    cosine similarity at or above `threshold` (default: the dedup threshold, 0.8).

    Exact: each source's prompts (a uniform random sample of `sample` per source, all of them
    with ``sample=None``) are compared with every vector of every other source, streamed from
    the lake in blocks, so memory stays at the sample plus one block. With a sample, ``share``
    is an estimate and ``share_ci95`` its Wilson 95% interval. Rows without a vector are left
    out (``with_vectors`` says how many count).
    """
    import numpy as np

    from ..dedup import DEFAULT_THRESHOLD, normalize, vector_column

    thr = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    fld, meta = vector_column(lake, column)
    ds = lake.dataset("prompts")
    col = "`" + column.replace("`", "``") + "`"  # a Lance filter identifier
    srcs: list[np.ndarray] = []
    offs: list[np.ndarray] = []
    base = 0
    for b in ds.to_batches(columns=["source", column]):
        valid = b.column(1).is_valid().to_numpy(zero_copy_only=False)
        s = np.array(b.column(0).fill_null("(none)").to_pylist(), dtype=object)
        srcs.append(s[valid])
        offs.append(np.flatnonzero(valid) + base)
        base += b.num_rows
    src = np.concatenate(srcs) if srcs else np.array([], dtype=object)
    off = np.concatenate(offs) if offs else np.array([], dtype=np.int64)
    names = sorted(set(src.tolist()))
    rng = np.random.default_rng(seed)
    queries: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        idx = np.flatnonzero(src == name)
        if sample is not None and len(idx) > sample:
            idx = np.sort(rng.choice(idx, sample, replace=False))
        tbl = ds.take(off[idx], columns=[column])
        flat = tbl.column(0).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        queries[name] = (normalize(flat.reshape(len(idx), -1)), np.full(len(idx), -2.0, np.float32))
    if len(names) > 1:
        for b in ds.to_batches(columns=["source", column], batch_size=block_rows,
                               filter=f"{col} IS NOT NULL"):
            bs = np.array(b.column(0).fill_null("(none)").to_pylist(), dtype=object)
            x = normalize(b.column(1).flatten().to_numpy(zero_copy_only=False)
                          .reshape(b.num_rows, -1)) if b.num_rows else None
            if x is None:
                continue
            for name, (q, best) in queries.items():
                other = bs != name
                if not other.any() or not len(q):
                    continue
                sims = q @ x[other].T
                np.maximum(best, sims.max(axis=1), out=best)
    out = []
    for name in names:
        q, best = queries[name]
        total = int((src == name).sum())
        n = len(best)
        hits = int((best >= thr).sum()) if len(names) > 1 else 0
        share = hits / n if (n and len(names) > 1) else None
        ci = _wilson(hits, n) if share is not None and n < total else None
        out.append({"source": name, "with_vectors": total, "compared": n,
                    "near_other_source": hits if share is not None else None,
                    "share": None if share is None else round(share, 6),
                    "share_ci95": None if ci is None else [round(ci[0], 6), round(ci[1], 6)],
                    "threshold": thr, "column": column,
                    "model": meta.get("model")})
    return out


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / d
    return max(0.0, c - h), min(1.0, c + h)


def compare_sources(lake: Any, *, with_overlap: bool = True, **overlap: Any) -> list[dict[str, Any]]:
    """The ``source_comparison`` view, plus the cross-source near-neighbour share per source
    when the prompts have vectors in the embedding column (``share`` NULL otherwise)."""
    rows = lake.query("SELECT * FROM source_comparison").to_pylist()
    if not with_overlap:
        return rows
    from ..errors import SchemaError

    try:
        ov = {r["source"]: r for r in source_overlap(lake, **overlap)}
    except SchemaError:
        ov = {}
    for r in rows:
        o = ov.get(r["source"], {})
        r["with_vectors"] = o.get("with_vectors", 0)
        r["near_other_source_share"] = o.get("share")
        r["share_ci95"] = o.get("share_ci95")
        r["threshold"] = o.get("threshold")
    return rows
