"""Running an enricher over the lake: which rows, in which chunks, written how, recorded where.

One run is one batch. It reads only the rows still missing the enrichment (``column IS NULL``,
or all matching rows with ``recompute``), fragment by fragment, computes them in pieces (for
progress), and commits every ``chunk_rows`` rows (default: one 32,768-row fragment) as a durable
chunk, so a crash or Ctrl-C loses at most one chunk and the next run resumes where it stopped.

Write path (measured, see benchmarks/results/enrich.md): a new column is added once as
metadata (`Batch.add_column`), then each chunk is a Lance merge-insert on ``uuid`` in
``rewrite_columns`` mode, which writes one new column file per touched fragment and leaves every
other column (and the videos table) alone. Chunks follow fragment boundaries so a fragment's
column file is rewritten once per run, not once per scattered row. On the Ray engine the
workers write those same column files (`LanceFragment.update_columns`, fragment by fragment)
and this process commits each chunk's as one `LanceOperation.Update` (see `_run_remote`).

Rows a backend cannot handle (empty text, an input the server rejects, NaN output) are reported
with their uuid in the batch's counts and in the report; nothing is written for them, so they
stay NULL and the next run tries them again. A backend error that is not about one row (bad key,
unknown model, wrong dimension) stops the run; chunks already committed stay.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa

from .. import storage
from ..errors import InputError, SchemaError, VidlakeError
from ..schema import NSFW_LABELS, field_meta, is_vector_field, vector_field
from . import resolve
from .base import EmbedResult, EmbedSession, RowFailure, ScoreResult, ScoreSession

if TYPE_CHECKING:
    from ..lake import Batch, Lake

FRAGMENT_ROWS = 32_768
MAX_REPORTED_FAILURES = 100
#: Column `_pieces` adds: the Lance fragment a row to do lives in.
FRAGMENT_COLUMN = "_fragment"
Progress = Callable[[int, int], None]


@dataclass
class EnrichReport:
    kind: str
    model: str
    columns: list[str]
    batch_id: str | None = None
    rows_todo: int = 0
    rows_done: int = 0
    rows_failed: int = 0
    chunks: int = 0
    dims: int | None = None
    seconds: float = 0.0
    compute_seconds: float = 0.0
    retries: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return (self.rows_done + self.rows_failed) / self.seconds if self.seconds else 0.0

    def fail(self, uuid: str, error: str) -> None:
        self.rows_failed += 1
        if len(self.failures) < MAX_REPORTED_FAILURES:
            self.failures.append({"uuid": uuid, "error": error})

    def counts(self) -> dict[str, Any]:
        return {"rows_updated": self.rows_done, "rows_failed": self.rows_failed,
                "rows_todo": self.rows_todo, "chunks": self.chunks, "retries": self.retries,
                "failed_rows": self.failures[:MAX_REPORTED_FAILURES]}

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "columns": ",".join(self.columns),
                "batch_id": self.batch_id, "rows_todo": self.rows_todo,
                "rows_done": self.rows_done, "rows_failed": self.rows_failed,
                "chunks": self.chunks, "dims": self.dims, "retries": self.retries,
                "seconds": round(self.seconds, 3), "rows_per_s": round(self.rows_per_s, 1),
                "notes": "; ".join(self.notes)}


def _q(name: str) -> str:
    return f"`{name}`"


def _filter(missing: str | None, where: str | None) -> str | None:
    parts = [f"({p})" for p in (missing, where) if p]
    return " AND ".join(parts) or None


def _count(ds: Any, flt: str | None, where: str | None) -> int:
    """Rows matching `flt`, fragment by fragment: a NULL check on a vector column then holds
    one fragment's vectors in memory at a time, not the table's (1M x 384: 0.4 GB less)."""
    try:
        frags = ds.get_fragments()
        if not frags or flt is None:
            return int(ds.count_rows(filter=flt))
        return sum(int(f.count_rows(filter=flt)) for f in frags)
    except Exception as exc:  # Lance raises ValueError/OSError/others for bad SQL
        if where:
            raise InputError(f"bad --where {where!r}: {str(exc).splitlines()[0]}") from exc
        raise


def _check_text_column(ds: Any, text_column: str) -> None:
    if text_column not in ds.schema.names:
        raise SchemaError(f"no column {text_column!r} in prompts to read text from")
    if not pa.types.is_string(ds.schema.field(text_column).type) and not pa.types.is_large_string(
            ds.schema.field(text_column).type):
        raise SchemaError(f"column {text_column!r} is not text")


def _pieces(ds: Any, flt: str | None, text_column: str, limit: int | None,
            chunk_rows: int) -> Iterator[pa.Table]:
    """The rows to do, as tables of (uuid, text, fragment id) that never span a chunk boundary
    badly (the fragment id tells a remote writer which fragment's column file a row is in).

    Whole fragments are gathered until `chunk_rows` is reached; a fragment with more rows to do
    than `chunk_rows` is split.
    """
    left = limit if limit is not None else None
    pending: list[pa.Table] = []
    n_pending = 0
    for frag in ds.get_fragments():
        if left is not None and left <= 0:
            break
        t = frag.to_table(columns=["uuid", text_column], filter=flt)
        t = t.append_column(FRAGMENT_COLUMN, pa.array(
            np.full(t.num_rows, frag.fragment_id, dtype=np.uint64), pa.uint64()))
        if left is not None:
            t = t.slice(0, left)
            left -= t.num_rows
        if not t.num_rows:
            continue
        if n_pending and n_pending + t.num_rows > chunk_rows:
            yield pa.concat_tables(pending)
            pending, n_pending = [], 0
        for s in range(0, t.num_rows, chunk_rows):
            part = t.slice(s, chunk_rows)
            if part.num_rows == chunk_rows:
                yield part
            else:
                pending.append(part)
                n_pending += part.num_rows
    if n_pending:
        yield pa.concat_tables(pending)


Compute = Callable[[list[str]], tuple[dict[str, pa.Array], np.ndarray, list[RowFailure]]]
#: A session result -> the new column values of its ok rows (a module-level function, so a
#: remote worker can run it: `embed_columns` / `score_columns` with their keywords bound).
Columns = Callable[[Any], dict[str, pa.Array]]


def _engine(engine: Any, engine_options: dict[str, Any] | None) -> tuple[Any, bool]:
    """(engine object or None for in-process, whether this call owns it and shuts it down)."""
    if engine is None or engine == "local":
        if engine_options and any(v not in (None, 0, 1) for v in engine_options.values()):
            raise InputError("--address/--workers/--gpus-per-worker need --engine ray")
        return None, False
    if isinstance(engine, str):
        from ..engine import get_engine

        return get_engine(engine, **{k: v for k, v in (engine_options or {}).items()
                                     if v is not None}), True
    return engine, False


@contextlib.contextmanager
def _session(lake: Lake, enr: Any, variant: str | None, kind: str, model: str,
             open_kw: dict[str, Any], *, session: Any, engine: Any,
             engine_options: dict[str, Any] | None) -> Iterator[Any]:
    """The session to compute with: `session` as given (its owner closes it), or one opened
    here, in this process or on `engine`, and closed at the end (an engine started here is
    shut down too, also when the session fails to open)."""
    if session is not None:
        yield session
        return
    eng, own_engine = _engine(engine, engine_options)
    try:
        sess = (enr.open(variant, **open_kw) if eng is None
                else eng.open_session(kind, model, open_kw,
                                      remote_storage=storage.is_remote(lake.uri)))
        try:
            yield sess
        finally:
            sess.close()
    finally:
        if own_engine and eng is not None:
            eng.shutdown()


def _run(lake: Lake, b: Batch, report: EnrichReport, *, flt: str | None, text_column: str,
         limit: int | None, chunk_rows: int, piece_rows: int, compute: Compute,
         progress: Progress | None, total: int, sess: Any = None, columns: Columns | None = None,
         on_dims: Callable[[int | None], None] | None = None) -> None:
    """Compute and write every chunk; shared by embed and score.

    A session that computes AND writes elsewhere (a Ray engine's, see `_run_remote`) gets
    `columns` (what its workers turn a result into) and `on_dims` (the driver's check of a
    piece's vector width); an in-process one uses `compute` and is written here.
    """
    if sess is not None and hasattr(sess, "submit_piece") and columns is not None:
        _run_remote(lake, b, report, sess, flt=flt, text_column=text_column, limit=limit,
                    chunk_rows=chunk_rows, piece_rows=piece_rows, columns=columns,
                    on_dims=on_dims, progress=progress, total=total)
        return
    ds = lake._open("prompts")
    done = 0
    for chunk in _pieces(ds, flt, text_column, limit, chunk_rows):
        texts = chunk.column(text_column).to_pylist()
        uuids = chunk.column("uuid").combine_chunks()
        cols: dict[str, list[pa.Array]] = {}
        keep: list[np.ndarray] = []
        for s in range(0, len(texts), piece_rows):
            t0 = time.perf_counter()
            arrays, ok, failures = compute(texts[s:s + piece_rows])
            report.compute_seconds += time.perf_counter() - t0
            for k, arr in arrays.items():
                cols.setdefault(k, []).append(arr)
            keep.append(ok)
            for f in failures:
                report.fail(uuids[s + f.index].as_py(), f.error)
            done += len(ok)
            if progress:
                progress(done, total)
        ok_all = np.concatenate(keep) if keep else np.zeros(0, bool)
        n_ok = int(ok_all.sum())
        if n_ok:
            data = {"uuid": uuids.filter(pa.array(ok_all))}
            for k, parts in cols.items():
                data[k] = pa.concat_arrays(parts) if len(parts) > 1 else parts[0]
            table = pa.table(data)
            b.update_columns("prompts", table, on="uuid", mode="rewrite_columns")
        report.rows_done += n_ok
        report.chunks += 1
        b.counts.update(report.counts())
        b.commit()


def _one_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """Yield `items` with the next one already taken (its pieces already sent to workers)."""
    cur = next(items, None)
    while cur is not None:
        nxt = next(items, None)
        yield cur
        cur = nxt


def _run_remote(lake: Lake, b: Batch, report: EnrichReport, sess: Any, *, flt: str | None,
                text_column: str, limit: int | None, chunk_rows: int, piece_rows: int,
                columns: Columns, on_dims: Callable[[int | None], None] | None,
                progress: Progress | None, total: int) -> None:
    """The chunk loop when workers compute AND write (the Ray engine).

    Per chunk: its pieces go to the workers one chunk ahead (so they have work queued while
    the driver commits); the driver takes back only each piece's small summary (rows, ok,
    failures, vector width), then asks one worker to write the chunk's new column values into
    each touched fragment (`LanceFragment.update_columns`: one new column file per fragment,
    the layout the local merge-insert makes) from the pieces' results, which go worker to
    worker; the driver stages the returned fragment metadata as ONE `LanceOperation.Update`
    and commits it with the batch-log event. A chunk's write is asked for only after the
    previous chunk committed, so a fragment split over two chunks is rewritten on top of the
    first one's values. A chunk whose pieces or write fail for good is reported with its rows
    (`WorkerFailed`, and ``failed_chunk`` in the batch's counts); chunks before it stay.
    The last progress call of a chunk comes after its commit.
    """
    import lance

    from ..engine.ray_engine import WorkerFailed

    ds = lake._open("prompts")
    uri = lake.table_uri("prompts")

    def sent() -> Iterator[tuple[pa.Table, list[Any]]]:
        for chunk in _pieces(ds, flt, text_column, limit, chunk_rows):
            texts = chunk.column(text_column).to_pylist()
            uuids = chunk.column("uuid").to_pylist()
            frags = chunk.column(FRAGMENT_COLUMN).to_pylist()
            yield chunk, [sess.submit_piece(texts[s:s + piece_rows], uuids[s:s + piece_rows],
                                            frags[s:s + piece_rows], columns)
                          for s in range(0, len(texts), piece_rows)]

    done = 0
    first_row = 0
    for n_chunk, (chunk, pieces) in enumerate(_one_ahead(sent()), start=1):
        uuids = chunk.column("uuid").combine_chunks()
        n_ok = 0
        try:
            offset = 0
            for i, piece in enumerate(pieces):
                meta = sess.piece_result(piece)
                if on_dims is not None:
                    on_dims(meta["dims"])
                for f in meta["failures"]:
                    report.fail(uuids[offset + f.index].as_py(), f.error)
                offset += meta["rows"]
                n_ok += meta["ok"]
                done += meta["rows"]
                report.compute_seconds += meta["seconds"]
                if progress and i < len(pieces) - 1:
                    progress(done, total)
            if n_ok:
                w = sess.write_pieces(uri, lake._newest("prompts"), pieces)
                b.stage("prompts", lance.LanceOperation.Update(
                    updated_fragments=list(w["fragments"]),
                    fields_modified=list(w["fields_modified"]),
                    update_mode="rewrite_columns"), w["read_version"])
        except WorkerFailed as exc:
            frag_ids = sorted(set(chunk.column(FRAGMENT_COLUMN).to_pylist()))
            where = {"chunk": n_chunk, "rows": chunk.num_rows, "first_row": first_row + 1,
                     "last_row": first_row + chunk.num_rows, "fragments": frag_ids,
                     "first_uuid": uuids[0].as_py(), "last_uuid": uuids[-1].as_py()}
            b.counts["failed_chunk"] = where
            raise WorkerFailed(
                f"{exc} [chunk {n_chunk}: rows {where['first_row']}-{where['last_row']} of this "
                f"run ({chunk.num_rows} prompts, uuids {where['first_uuid']} .. "
                f"{where['last_uuid']}, fragment(s) {', '.join(map(str, frag_ids))}); nothing of "
                "it was committed]") from exc
        finally:
            pieces.clear()  # drop the workers' results as soon as the chunk is written
        report.rows_done += n_ok
        report.chunks += 1
        b.counts.update(report.counts())
        b.commit()
        first_row += chunk.num_rows
        if progress:
            progress(done, total)


# ------------------------------------------------------------------------------ embed
def _vectors(vecs: np.ndarray, dim: int, dtype: str) -> pa.Array:
    np_dtype = np.float16 if dtype == "float16" else np.float32
    flat = pa.array(np.ascontiguousarray(vecs, dtype=np_dtype).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def embed_columns(res: EmbedResult, *, column: str, dtype: str,
                  model_id: str) -> dict[str, pa.Array]:
    """An `EmbedResult` as the column's values for its ok rows (run in this process, or by a
    Ray worker on its own result: the same code either way)."""
    n_ok = int(np.asarray(res.ok).sum())
    if res.vectors.shape[0] != n_ok:
        raise VidlakeError(f"{model_id}: backend returned {res.vectors.shape[0]} vectors for "
                           f"{n_ok} inputs")
    if not len(res.vectors):
        return {}
    return {column: _vectors(res.vectors, int(res.vectors.shape[1]), dtype)}


def embed(lake: Lake, model: str = "minilm", *, column: str = "embedding",
          text_column: str = "prompt", dimensions: int | None = None, base_url: str | None = None,
          limit: int | None = None, where: str | None = None, recompute: bool = False,
          batch_size: int | None = None, chunk_rows: int = FRAGMENT_ROWS,
          device: str | None = None, dtype: str = "float32", concurrency: int | None = None,
          normalize: bool = True, progress: Progress | None = None,
          options: dict[str, Any] | None = None,
          session: EmbedSession | None = None, engine: Any = None,
          engine_options: dict[str, Any] | None = None) -> EnrichReport:
    """Embed every prompt still missing a vector in `column` (or all with `recompute`).

    `model` is a spec: ``minilm`` (default), ``st:/path``, ``openai:<id>`` or any registered
    embedder. `options` go to the backend as they are (openai: ``max_retries``, ``backoff``,
    ``timeout``). `session` reuses an already opened model (`enricher.open(...)`) across calls.
    Returns an `EnrichReport`; raises `SchemaError` when `column` already holds another model's
    vectors (one embedding space per column: pick another `column` or `recompute`).
    `engine` (``"local"``, ``"ray"`` with `engine_options` address/workers/gpus_per_worker, or
    an engine from `vidprom_lake.engine.get_engine`) says where the model runs. Locally this
    process writes each chunk; on Ray the workers write the chunk's column files and this
    process commits them, one commit per chunk either way.
    """
    t_start = time.perf_counter()
    if limit is not None and limit < 0:
        raise InputError(f"--limit must be >= 0, not {limit}")
    if chunk_rows <= 0:
        raise InputError(f"chunk_rows must be positive, not {chunk_rows}")
    enr, variant = resolve(model, "embedder")
    ds = lake._open("prompts")
    _check_text_column(ds, text_column)
    report = EnrichReport("embed", model, [column])
    existing = ds.schema.field(column) if column in ds.schema.names else None
    meta = field_meta(existing) if existing is not None else {}
    if existing is not None and not is_vector_field(existing):
        raise SchemaError(f"column {column!r} is not a vector column ({existing.type}); "
                          "choose another --column")
    # Same model (known without loading it), same size, same precision: only NULLs are work.
    cheap_id = enr.model_id(variant)
    same_spec = (existing is not None and cheap_id is not None
                 and meta.get("vidlake:model") == cheap_id
                 and (dimensions is None or meta.get("vidlake:dims") == str(dimensions))
                 and meta.get("vidlake:dtype", "float32") == dtype)
    if same_spec and not recompute:
        missing = f"{_q(column)} IS NULL"
        todo = _count(ds, _filter(missing, where), where)
        if limit is not None:
            todo = min(todo, limit)
        if todo == 0:
            report.dims = int(meta.get("vidlake:dims", 0)) or None
            report.notes.append(f"nothing to do: every selected prompt has {column} "
                                f"({meta.get('vidlake:model')})")
            report.seconds = time.perf_counter() - t_start
            return report
    else:
        _count(ds, _filter(None, where), where)  # validate --where before loading a model

    open_kw = dict(dimensions=dimensions, base_url=base_url, batch_size=batch_size,
                   device=device, concurrency=concurrency, normalize=normalize, **(options or {}))
    with _session(lake, enr, variant, "embedder", model, open_kw, session=session,
                  engine=engine, engine_options=engine_options) as sess:
        return _embed(lake, cast(EmbedSession, sess), report, model=model, column=column,
                      text_column=text_column, dimensions=dimensions, base_url=base_url,
                      limit=limit, where=where, recompute=recompute, batch_size=batch_size,
                      chunk_rows=chunk_rows, dtype=dtype, existing=existing, progress=progress,
                      t_start=t_start)


def _embed(lake: Lake, sess: EmbedSession, report: EnrichReport, *, model: str, column: str,
           text_column: str, dimensions: int | None, base_url: str | None, limit: int | None,
           where: str | None, recompute: bool, batch_size: int | None, chunk_rows: int,
           dtype: str, existing: pa.Field | None, progress: Progress | None,
           t_start: float) -> EnrichReport:
    import lance

    meta = field_meta(existing) if existing is not None else {}
    drop = False
    if existing is not None:
        old_dims = int(meta.get("vidlake:dims", existing.type.list_size))
        old_model = meta.get("vidlake:model", "unknown")
        if sess.dims is None and old_model == sess.model_id:
            sess.dims = old_dims  # a server that only tells by answering: expect the same
        same = (old_model == sess.model_id and old_dims == sess.dims
                and meta.get("vidlake:dtype", "float32") == dtype)
        if not same:
            ds0 = lake._open("prompts")
            if not recompute and ds0.count_rows(filter=f"{_q(column)} IS NOT NULL") == 0:
                recompute = True  # an empty column (a run that died before its first chunk)
            if not recompute:
                theirs = f"{sess.dims}-d {sess.model_id}" if sess.dims else sess.model_id
                raise SchemaError(
                    f"column {column!r} holds {old_dims}-d {old_model} vectors, not {theirs} "
                    "ones. One embedding space per column: write them to another column "
                    f"(--column {column}_2) or replace these with --recompute")
            drop = True
    missing = None if (recompute or drop or existing is None) else f"{_q(column)} IS NULL"
    flt = _filter(missing, where)
    ds = lake._open("prompts")
    total = _count(ds, flt, where)
    if limit is not None:
        total = min(total, limit)
    report.rows_todo = total
    if total == 0 and not drop:
        report.dims = sess.dims
        report.notes.append(f"nothing to do: every selected prompt has {column}")
        report.seconds = time.perf_counter() - t_start
        return report
    prov = sess.provenance()
    report.provenance = prov
    params = {"model": model, "column": column, "text_column": text_column,
              "dimensions": dimensions, "limit": limit, "where": where, "recompute": recompute,
              "batch_size": batch_size, "chunk_rows": chunk_rows, "dtype": dtype,
              "base_url": prov.get("base_url")}
    with lake.batch("embed", source=sess.model_id, params=params, provenance=prov) as b:
        report.batch_id = b.batch_id
        if drop:
            cur = lake._open("prompts")
            keep = pa.schema([f for f in cur.schema if f.name != column], metadata=cur.schema.metadata)
            b.stage("prompts", lance.LanceOperation.Project(keep), cur.version)
            b.commit()
            report.notes.append(f"dropped the old {column} ({meta.get('vidlake:model')}) to "
                                "recompute it")
            if where or limit is not None:
                report.notes.append(f"rows outside --where/--limit now have no {column}")
            existing = None
        state = {"field": existing}

        def make_field(dim: int) -> pa.Field:
            return vector_field(
                column, dim, dtype, model=sess.model_id, spec=model,
                dimensions_param=dimensions, backend=str(prov.get("backend", "")),
                batch=b.batch_id, text_column=text_column,
                provenance=json.dumps({k: v for k, v in prov.items() if k != "model"},
                                      default=str, sort_keys=True))

        if state["field"] is None and sess.dims:
            state["field"] = make_field(sess.dims)
            b.add_column("prompts", state["field"])

        def on_dims(got: int | None) -> None:
            """A piece's vector width: the first one makes the column; others must match."""
            if got is None:
                return
            fld = state["field"]
            if fld is None:
                sess.dims = got
                fld = state["field"] = make_field(got)
                b.add_column("prompts", fld)
            dim = fld.type.list_size
            if got != dim:
                raise SchemaError(f"{sess.model_id} returned {got}-d vectors for a {dim}-d "
                                  f"column {column!r}; nothing of it was stored")

        columns = partial(embed_columns, column=column, dtype=dtype, model_id=sess.model_id)

        def compute(texts: list[str]) -> tuple[dict[str, pa.Array], np.ndarray, list[RowFailure]]:
            res = sess.embed(texts)
            arrays = columns(res)
            on_dims(int(res.vectors.shape[1]) if len(res.vectors) else None)
            return arrays, res.ok, res.failures

        piece = int(getattr(sess, "piece_rows", 0) or 1024)
        _run(lake, b, report, flt=flt, text_column=text_column, limit=limit,
             chunk_rows=chunk_rows, piece_rows=piece, compute=compute, progress=progress,
             total=total, sess=sess, columns=columns, on_dims=on_dims)
        report.retries = int(getattr(sess, "retries", 0))
        report.dims = sess.dims
        b.counts.update(report.counts())
    report.seconds = time.perf_counter() - t_start
    return report


# ------------------------------------------------------------------------------ score
def score_columns(res: ScoreResult, *, labels: tuple[str, ...], absent: tuple[str, ...],
                  model_id: str) -> dict[str, pa.Array]:
    """A `ScoreResult` as column values for its ok rows: one float32 column per label, NULLs
    for VidProM labels the model lacks, and ``nsfw_model`` (here or on a Ray worker)."""
    n_ok = int(np.asarray(res.ok).sum())
    arrays: dict[str, pa.Array] = {}
    for lab in labels:
        vals = np.asarray(res.scores[lab], dtype=np.float32)
        if len(vals) != n_ok:
            raise VidlakeError(f"{model_id}: {len(vals)} {lab} scores for {n_ok} inputs")
        arrays[lab] = pa.array(vals, pa.float32())
    for lab in absent:
        arrays[lab] = pa.nulls(n_ok, pa.float32())
    arrays["nsfw_model"] = pa.array([model_id] * n_ok, pa.string())
    return arrays


def score(lake: Lake, model: str = "detoxify:unbiased", *, checkpoint: str | None = None,
          config_dir: str | None = None, download: bool = False, text_column: str = "prompt",
          limit: int | None = None, where: str | None = None, recompute: bool = False,
          batch_size: int | None = None, chunk_rows: int = FRAGMENT_ROWS,
          device: str | None = None, progress: Progress | None = None,
          options: dict[str, Any] | None = None,
          session: ScoreSession | None = None, engine: Any = None,
          engine_options: dict[str, Any] | None = None) -> EnrichReport:
    """Score prompts still missing NSFW scores (``toxicity IS NULL``), or all with `recompute`.

    VidProM's six labels go to their columns; a model's extra labels (``severe_toxicity``) get
    float32 columns of their own; ``nsfw_model`` records the model of every scored row. Labels of
    the six that the model lacks (``original`` has no sexual_explicit) are set to NULL.
    """
    t_start = time.perf_counter()
    if limit is not None and limit < 0:
        raise InputError(f"--limit must be >= 0, not {limit}")
    if chunk_rows <= 0:
        raise InputError(f"chunk_rows must be positive, not {chunk_rows}")
    enr, variant = resolve(model, "scorer")
    ds = lake._open("prompts")
    _check_text_column(ds, text_column)
    report = EnrichReport("score", model, [])
    missing = None if recompute else "toxicity IS NULL"
    flt = _filter(missing, where)
    total = _count(ds, flt, where)
    if limit is not None:
        total = min(total, limit)
    report.rows_todo = total
    if total == 0:
        report.notes.append("nothing to do: every selected prompt has NSFW scores")
        report.seconds = time.perf_counter() - t_start
        return report
    open_kw = dict(checkpoint=checkpoint, config_dir=config_dir, download=download,
                   device=device, batch_size=batch_size, **(options or {}))
    with _session(lake, enr, variant, "scorer", model, open_kw, session=session,
                  engine=engine, engine_options=engine_options) as opened:
        sess = cast(ScoreSession, opened)
        labels = list(sess.labels)
        report.columns = labels
        prov = sess.provenance()
        report.provenance = prov
        schema = ds.schema
        for lab in labels:
            if lab in schema.names and not pa.types.is_floating(schema.field(lab).type):
                raise SchemaError(f"{sess.model_id} label {lab!r} collides with the non-float "
                                  f"column {lab!r} ({schema.field(lab).type})")
        params = {"model": model, "limit": limit, "where": where, "recompute": recompute,
                  "batch_size": batch_size, "chunk_rows": chunk_rows, "text_column": text_column,
                  "checkpoint": prov.get("checkpoint")}
        with lake.batch("score", source=sess.model_id, params=params, provenance=prov) as b:
            report.batch_id = b.batch_id
            for lab in labels:
                if lab not in schema.names:
                    b.add_column("prompts", pa.field(lab, pa.float32(), metadata={
                        "vidlake:score": "true", "vidlake:model": sess.model_id,
                        "vidlake:batch": b.batch_id}))
                    report.notes.append(f"added column {lab} (a {sess.model_id} label)")
            absent = [lab for lab in NSFW_LABELS if lab not in labels]
            if absent:
                report.notes.append(f"{sess.model_id} has no {', '.join(absent)}: set to NULL")

            columns = partial(score_columns, labels=tuple(labels), absent=tuple(absent),
                              model_id=sess.model_id)

            def compute(texts: list[str]) -> tuple[dict[str, pa.Array], np.ndarray, list[RowFailure]]:
                res = sess.score(texts)
                return columns(res), res.ok, res.failures

            _run(lake, b, report, flt=flt, text_column=text_column, limit=limit,
                 chunk_rows=chunk_rows, piece_rows=int(getattr(sess, "piece_rows", 0) or 256),
                 compute=compute, progress=progress, total=total, sess=sess, columns=columns)
            report.retries = max(report.retries, int(getattr(sess, "retries", 0)))
            b.counts.update(report.counts())
    report.seconds = time.perf_counter() - t_start
    return report
