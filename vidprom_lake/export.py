"""`vidlake export`: take a subset of the lake out to train on.

Formats:

* ``parquet``: one row per prompt, every non-vector, non-blob column (``--vectors`` adds the
  vector columns). DuckDB streams the ``prompts`` view straight into the file.
* ``webdataset``: tar shards ``shard-000000.tar`` ... with ``{key}.mp4`` and ``{key}.json`` per
  video (key = video id), the layout `webdataset` and similar loaders read.
* ``mp4-dir``: ``videos/{video_id}.mp4`` plus ``captions.csv`` with columns ``path,caption``
  (path relative to the folder), plus ``metadata.jsonl``.
* ``hf``: a Hugging Face `datasets` folder (``Dataset.save_to_disk`` layout), one row per prompt,
  loadable with ``datasets.load_from_disk``.

`where` is DuckDB SQL over the ``prompts`` view (parquet, hf) or the ``gallery`` view (one row
per video: prompt columns plus ``model``, ``width``, ``duration_s``...; webdataset, mp4-dir).

Every export is written into a temporary sibling and renamed into place at the end, so a failed
export leaves nothing half-written; an existing output is refused unless ``force`` (and a folder
is only replaced if it is empty or an earlier VidLake export). File names inside the target come
from video ids reduced to ``[A-Za-z0-9_-]`` (a reduced id is tagged with its hash, so two ids
never share a name; see `safe_key`) and are checked to resolve inside the target.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import InputError, MissingDependency, QueryError, VidlakeError
from .schema import VIDEO_BLOB_COLUMN, is_vector_field

if TYPE_CHECKING:
    from .lake import Lake

FORMATS = ("parquet", "webdataset", "mp4-dir", "hf")
MARKER = ".vidlake-export.json"
SAFE = re.compile(r"[^A-Za-z0-9_-]")
SAFE_WITH_DOTS = re.compile(r"[^A-Za-z0-9_.+-]")
KEY_MAX = 200  # characters of a file-name stem from safe_key
# Per-video metadata carried into webdataset json / mp4-dir metadata.jsonl.
VIDEO_META = ("video_id", "uuid", "model", "prompt", "prompt_clean", "time", "source", "width",
              "height", "fps", "num_frames", "duration_s", "bytes", "sha256", "toxicity", "obscene",
              "identity_attack", "insult", "threat", "sexual_explicit", "unique_semantic")

Progress = Callable[[int, int | None], None]


@dataclass
class ExportResult:
    format: str
    output: str
    rows: int
    files: int
    bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "output": self.output, "rows": self.rows,
                "files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 3)}


def safe_key(name: str, *, dots: bool = False) -> str:
    """A file-name stem that cannot leave its folder (no separators, not empty), one per name.

    Any other character becomes ``_``. Without `dots` (WebDataset keys, where a dot starts
    the extension) dots go too; with them, dots and ``+`` stay (``{model}-{uuid}`` of a model
    ``wan2.1`` is unchanged) but not at the start. A name that had to change gets 8 hex
    digits of its hash appended (``../../x`` gives ``x-<hash>``), so two names that clean to
    the same stem (models ``a/b`` and ``a_b``) still get two files; names already safe keep
    their own stem."""
    if dots:
        key = re.sub(r"^[._]+|_+$", "", SAFE_WITH_DOTS.sub("_", name))
    else:
        key = SAFE.sub("_", name).strip("_")
    if not key:
        raise InputError(f"cannot make a file name from {name!r}")
    if key == name and len(key) <= KEY_MAX:
        return key
    tag = hashlib.blake2s(name.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{key[:KEY_MAX - 9]}-{tag}"


def inside(root: Path, rel: str) -> Path:
    """root/rel, refusing anything that resolves outside root."""
    target = (root / rel).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise InputError(f"refusing to write {rel!r}: it resolves outside {root}")
    return target


# ------------------------------------------------------------------ output handling
def _prepare(output: Path, *, is_dir: bool, force: bool) -> Path:
    """Check the target and return the temporary path to write to."""
    if output.exists() or output.is_symlink():
        if not force:
            if is_dir and output.is_dir() and not any(output.iterdir()):
                pass  # an empty folder is fine
            else:
                raise VidlakeError(f"{output} exists; pass --force to overwrite it")
        if is_dir:
            if not output.is_dir() or output.is_symlink():
                raise VidlakeError(f"{output} exists and is not a folder")
            if any(output.iterdir()) and not (output / MARKER).exists():
                raise VidlakeError(f"{output} is a folder that is not a VidLake export; "
                                   "not replacing it even with --force (choose another folder)")
        elif output.is_dir():
            raise VidlakeError(f"{output} is a folder; give a file name")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    if is_dir:
        tmp.mkdir()
    return tmp


def _finish(tmp: Path, output: Path, *, is_dir: bool, info: dict[str, Any]) -> None:
    if is_dir:
        (tmp / MARKER).write_text(json.dumps(info, default=str, indent=1))
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old)
            return
    os.replace(tmp, output)


def _cleanup(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists():
        tmp.unlink()


def _dir_size(p: Path) -> tuple[int, int]:
    files = [f for f in p.rglob("*") if f.is_file() and f.name != MARKER]
    return len(files), sum(f.stat().st_size for f in files)


# ------------------------------------------------------------------ row selection
def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _select_sql(view: str, columns: list[str], where: str | None, limit: int | None,
                order: str | None = None) -> str:
    sql = f"SELECT {', '.join(_q(c) for c in columns)} FROM {view}"
    if where:
        sql += f" WHERE ({where})"
    if order:
        sql += f" ORDER BY {order}"
    if limit is not None:
        if limit < 0:
            raise InputError(f"--limit must be >= 0, not {limit}")
        sql += f" LIMIT {int(limit)}"
    return sql


def _check_where(where: str | None) -> None:
    if where is None:
        return
    import duckdb

    try:
        sts = duckdb.extract_statements(f"SELECT 1 WHERE ({where})")
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse --where {where!r}: {exc}") from None
    if len(sts) != 1:
        raise QueryError(f"--where must be one expression, not statements: {where!r}")


def _run(con: Any, sql: str, where: str | None) -> Any:
    import duckdb

    try:
        return con.execute(sql)
    except duckdb.Error as exc:
        hint = f" (check --where {where!r})" if where else ""
        raise QueryError(f"{str(exc).strip()}{hint}") from None


# ------------------------------------------------------------------ formats
def _export_parquet(lake: Lake, tmp: Path, where: str | None, limit: int | None,
                    vectors: bool) -> int:
    con = lake.sql()
    try:
        if vectors:
            # vector columns are not in the prompts view; read them from the base relation, as
            # variable-length lists (DuckDB writes NULL fixed-size arrays that Arrow misreads)
            fields = list(lake.dataset("prompts").schema)
            cols = [f.name for f in fields]
            casts = {f.name: "FLOAT[]" for f in fields if is_vector_field(f)}
            view = "(SELECT * REPLACE (" + ", ".join(
                f"{_q(c)}::{t} AS {_q(c)}" for c, t in casts.items()) + ") FROM prompts_raw)" \
                if casts else "prompts_raw"
        else:
            cols = [f.name for f in lake.dataset("prompts").schema if not is_vector_field(f)]
            view = "prompts"
        sql = _select_sql(view, cols, where, limit)
        path = str(tmp).replace("'", "''")
        _run(con, f"COPY ({sql}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)", where)
        # the footer's row count: cheap, and it proves the file is readable Parquet
        row = con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def _video_rows(lake: Lake, where: str | None, limit: int | None, batch: int) -> Iterator[pa.RecordBatch]:
    """gallery rows that have a video, in video_id order, in record batches."""
    con = lake.sql()
    try:
        cols = [c for c in VIDEO_META]
        w = f"video_id IS NOT NULL AND ({where})" if where else "video_id IS NOT NULL"
        sql = _select_sql("gallery", cols, w, limit, order="video_id")
        reader = _run(con, sql, where).to_arrow_reader(batch)
        yield from reader
    finally:
        con.close()


def _blobs(lake: Lake, video_ids: list[str]) -> list[bytes]:
    """The mp4 bytes of these videos, in the same order."""
    ds = lake.dataset("videos")
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in video_ids)
    t = ds.to_table(columns=["video_id"], filter=f"video_id IN ({quoted})", with_row_id=True)
    where_ = dict(zip(t.column("video_id").to_pylist(), t.column("_rowid").to_pylist(), strict=True))
    missing = [v for v in video_ids if v not in where_]
    if missing:
        raise VidlakeError(f"video {missing[0]} vanished from the lake during the export")
    got = ds.read_blobs(VIDEO_BLOB_COLUMN, ids=[where_[v] for v in video_ids], preserve_order=True)
    out = []
    for v, (_, data) in zip(video_ids, got, strict=True):
        if data is None:
            raise VidlakeError(f"video {v} has no bytes stored")
        out.append(bytes(data))
    return out


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if hasattr(v, "isoformat"):
            v = v.isoformat()
        out[k] = v
    out["caption"] = row.get("prompt_clean") or row.get("prompt")
    return out


def _export_webdataset(lake: Lake, tmp: Path, where: str | None, limit: int | None,
                       shard_size: int, progress: Progress | None) -> int:
    if shard_size < 1:
        raise InputError(f"--shard-size must be >= 1, not {shard_size}")
    n = 0
    shard = -1
    tf: tarfile.TarFile | None = None
    seen: set[str] = set()
    try:
        for rb in _video_rows(lake, where, limit, 64):
            rows = rb.to_pylist()
            data = _blobs(lake, [r["video_id"] for r in rows])
            for r, mp4 in zip(rows, data, strict=True):
                if n % shard_size == 0:
                    if tf is not None:
                        tf.close()
                    shard += 1
                    tf = tarfile.open(  # noqa: SIM115 - one open shard at a time, closed below
                        inside(tmp, f"shard-{shard:06d}.tar"), "w", format=tarfile.PAX_FORMAT)
                key = safe_key(r["video_id"])
                if key in seen:
                    raise VidlakeError(f"two videos map to the same key {key!r}")
                seen.add(key)
                assert tf is not None
                for ext, payload in (("mp4", mp4),
                                     ("json", json.dumps(_meta(r), ensure_ascii=False, default=str).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    info.mtime = int(time.time())
                    info.mode = 0o644
                    tf.addfile(info, io.BytesIO(payload))
                n += 1
            if progress:
                progress(n, limit)
    finally:
        if tf is not None:
            tf.close()
    return n


def _export_mp4_dir(lake: Lake, tmp: Path, where: str | None, limit: int | None,
                    progress: Progress | None) -> int:
    n = 0
    (tmp / "videos").mkdir()
    with open(tmp / "captions.csv", "w", newline="", encoding="utf-8") as cf, \
            open(tmp / "metadata.jsonl", "w", encoding="utf-8") as mf:
        w = csv.writer(cf)
        w.writerow(["path", "caption"])
        for rb in _video_rows(lake, where, limit, 64):
            rows = rb.to_pylist()
            data = _blobs(lake, [r["video_id"] for r in rows])
            for r, mp4 in zip(rows, data, strict=True):
                rel = f"videos/{safe_key(r['video_id'])}.mp4"
                path = inside(tmp, rel)
                if path.exists():
                    raise VidlakeError(f"two videos map to the same file {rel}")
                path.write_bytes(mp4)
                meta = _meta(r)
                w.writerow([rel, meta["caption"]])
                mf.write(json.dumps({"path": rel, **meta}, ensure_ascii=False, default=str) + "\n")
                n += 1
            if progress:
                progress(n, limit)
    return n


def _export_hf(lake: Lake, tmp: Path, where: str | None, limit: int | None,
               progress: Progress | None) -> int:
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependency("datasets", "hf", "exporting a Hugging Face dataset") from exc
    con = lake.sql()
    cols = [f.name for f in lake.dataset("prompts").schema if not is_vector_field(f)]
    sql = _select_sql("prompts", cols, where, limit)
    reader = _run(con, sql, where).to_arrow_reader(50_000)
    schema = reader.schema
    cache = tmp.with_name(tmp.name + "-cache.arrow")
    try:
        # Stream the rows into one Arrow stream file (the format datasets memory-maps), then
        # let datasets lay out its folder; memory stays at one record batch.
        features = datasets.Features.from_arrow_schema(schema)
        n = 0
        with pa.OSFile(str(cache), "wb") as sink, \
                pa.ipc.new_stream(sink, features.arrow_schema) as w:
            for rb in reader:
                w.write_batch(rb.cast(features.arrow_schema) if rb.schema != features.arrow_schema else rb)
                n += rb.num_rows
                if progress:
                    progress(n, limit)
        ds = datasets.Dataset.from_file(str(cache), in_memory=False)
        ds.save_to_disk(str(tmp))
        return len(ds)
    finally:
        con.close()
        if cache.exists():
            cache.unlink()


def export(
    lake: Lake,
    output: str | os.PathLike[str],
    format: str = "parquet",
    *,
    where: str | None = None,
    limit: int | None = None,
    shard_size: int = 1000,
    vectors: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    """Export the rows matching `where` (see the module docstring) to `output`."""
    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    _check_where(where)
    if limit is not None and limit < 0:
        raise InputError(f"--limit must be >= 0, not {limit}")
    t0 = time.perf_counter()
    if str(output).startswith("s3://"):
        return _export_s3(lake, str(output), format, where=where, limit=limit,
                          shard_size=shard_size, vectors=vectors, force=force,
                          progress=progress, t0=t0)
    out = Path(output)
    is_dir = format != "parquet"
    tmp = _prepare(out, is_dir=is_dir, force=force)
    try:
        if format == "parquet":
            rows = _export_parquet(lake, tmp, where, limit, vectors)
        elif format == "webdataset":
            rows = _export_webdataset(lake, tmp, where, limit, shard_size, progress)
        elif format == "mp4-dir":
            rows = _export_mp4_dir(lake, tmp, where, limit, progress)
        else:
            rows = _export_hf(lake, tmp, where, limit, progress)
        info = {"format": format, "where": where, "limit": limit, "rows": rows,
                "lake": lake.uri, "head": lake.head()}
        _finish(tmp, out, is_dir=is_dir, info=info)
    except BaseException:
        _cleanup(tmp)
        raise
    files, size = _dir_size(out) if is_dir else (1, out.stat().st_size)
    return ExportResult(format, str(out), rows, files, size, time.perf_counter() - t0)


def _export_s3(lake: Lake, uri: str, format: str, *, where: str | None, limit: int | None,
               shard_size: int, vectors: bool, force: bool, progress: Progress | None,
               t0: float) -> ExportResult:
    """Export to ``s3://bucket/key`` (parquet) or ``s3://bucket/prefix/`` (folder formats).

    The export is written to a local staging folder first (under $TMPDIR: it needs that much
    free disk), then uploaded file by file in streamed parts; a folder's ``MARKER`` object goes
    last, so a reader that sees it sees a complete export. An existing non-empty target needs
    ``force`` (and a folder target must be an earlier VidLake export); replaced objects that the
    new export does not write are deleted after the upload."""
    import tempfile

    from . import storage

    is_dir = format != "parquet"
    uri = uri.rstrip("/") if not is_dir else uri.rstrip("/") + "/"
    if uri.count("/") < 3 or uri.startswith("s3:///"):
        raise InputError(f"give a bucket and a key for the export: {uri}")
    existing = storage.list_objects(uri)
    if existing:
        if not force:
            raise VidlakeError(f"{uri} exists; pass --force to overwrite it")
        if is_dir and not any(u == uri + MARKER for u, _ in existing):
            raise VidlakeError(f"{uri} holds objects that are not a VidLake export; not replacing "
                               "them even with --force (choose another prefix)")
    staging = Path(tempfile.mkdtemp(prefix="vidlake-export-"))
    try:
        local = staging / "out"
        res = export(lake, local, format, where=where, limit=limit, shard_size=shard_size,
                     vectors=vectors, force=False, progress=progress)
        s3 = storage.s3_filesystem()
        files = ([(local, uri)] if not is_dir else
                 [(f, uri + f.relative_to(local).as_posix())
                  for f in sorted(local.rglob("*")) if f.is_file() and f.name != MARKER])
        if is_dir:
            files.append((local / MARKER, uri + MARKER))
        try:
            for src, dst in files:
                with open(src, "rb") as fh, s3.open_output_stream(dst[len("s3://"):]) as w:
                    while True:
                        buf = fh.read(8 << 20)
                        if not buf:
                            break
                        w.write(buf)
            written = {dst for _, dst in files}
            for old_uri, _ in existing:
                if old_uri not in written:
                    s3.delete_file(old_uri[len("s3://"):])
        except OSError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise VidlakeError(f"cannot write the export to {uri}: {first[:400]}") from exc
        return ExportResult(format, uri, res.rows, res.files, res.bytes,
                            time.perf_counter() - t0)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
