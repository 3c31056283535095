"""`import-videos --engine ray`: workers import pieces and write Lance files; the driver commits.

The driver splits the inputs into *pieces*: every tar shard or zip is one piece, and the
plain video files of a folder or ``s3://`` prefix go in pieces of up to `chunk` files. Each
Ray actor (`ImportWorker`) runs exactly the local import (`importer._Importer`: name and uuid
checks, decode-verify, thumbnail, SHA-256) over its piece and writes the accepted videos
into new Lance data files of the lake's ``videos`` table with `Lake.write_rows`; it hands
back only the fragment metadata and the piece's report. The driver stages each finished
piece with `Batch.add_written` and commits it as one chunk of the batch, so a batch is one
tagged, atomic, resumable version whichever engine ran it, and files of a piece that never
got committed (its worker died, the run failed) stay invisible garbage.

Duplicates across pieces (the same ``{model}-{uuid}`` in two shards): a piece whose videos
clash with ones already committed by this run is not committed; it is sent again with those
ids marked, so they are rejected as ``duplicate`` exactly as the local import rejects them.
"""

from __future__ import annotations

import os
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..schema import VIDEOS_SCHEMA
from .importer import (
    ImportReport,
    _entry_members,
    _Importer,
    _is_tar,
    _s3_object_members,
    _s3_root,
    _walk_folder,
    _zip_members,
    iter_members,
    s3_objects,
)
from .zips import SortedSourceMapping, SourceMapping

if TYPE_CHECKING:
    from ..lake import Batch


@dataclass(frozen=True)
class Piece:
    """One unit of import work, small enough to pickle: what to read, not the bytes."""

    kind: str  # "paths" (local files/shards), "zip", "entries" (of a local folder), "s3"
    root: str  # folder or s3 prefix the names are relative to ("" for "paths")
    names: tuple[Any, ...] = ()  # paths, folder-relative names, or (s3 uri, size) pairs
    zip: Any = None  # zips.ZipSource for "zip"

    @property
    def label(self) -> str:
        if self.kind == "zip":
            return str(self.zip.label)
        first = self.names[0][0] if self.kind == "s3" else self.names[0]
        more = f" (+{len(self.names) - 1})" if len(self.names) > 1 else ""
        return f"{first if self.kind != 'entries' else self.root + '/' + first}{more}"


def plan_pieces(paths: list[str], chunk: int) -> list[Piece]:
    """Split the inputs into pieces: a shard or zip each, loose files `chunk` at a time."""
    from .zips import ZipSource, expand

    out: list[Piece] = []
    loose: list[str] = []

    def flush_loose() -> None:
        for s in range(0, len(loose), chunk):
            out.append(Piece("paths", "", tuple(loose[s:s + chunk])))
        loose.clear()

    for item in expand(paths):
        if isinstance(item, ZipSource):
            out.append(Piece("zip", "", zip=item))
            continue
        path = os.fspath(item)
        if path.startswith("s3://"):
            objs = s3_objects(path)
            root = _s3_root(path, objs)
            files: list[tuple[str, int]] = []
            for obj in objs:
                if _is_tar(obj[0]):
                    out.append(Piece("s3", root, (obj,)))
                else:
                    files.append(obj)
            for s in range(0, len(files), chunk):
                out.append(Piece("s3", root, tuple(files[s:s + chunk])))
        elif os.path.isdir(path):
            group: list[str] = []
            for rel in _walk_folder(path):
                full = os.path.join(path, rel)
                if not os.path.islink(full) and (_is_tar(full) or full.lower().endswith(".zip")):
                    out.append(Piece("entries", path, (rel,)))
                else:
                    group.append(rel)
            for s in range(0, len(group), chunk):
                out.append(Piece("entries", path, tuple(group[s:s + chunk])))
        elif _is_tar(path) or tarfile.is_tarfile(path):
            out.append(Piece("paths", "", (path,)))
        else:
            loose.append(path)
    flush_loose()
    return out


def piece_members(piece: Piece) -> Iterator[Any]:
    """The members of a piece, exactly as the local import walks them."""
    if piece.kind == "zip":
        yield from _zip_members(piece.zip)
    elif piece.kind == "entries":
        for rel in piece.names:
            yield from _entry_members(piece.root, rel)
    elif piece.kind == "s3":
        for uri, size in piece.names:
            yield from _s3_object_members(piece.root, uri, size)
    else:
        yield from iter_members(list(piece.names))


class ImportWorker:
    """One Ray actor: imports pieces into new (uncommitted) data files of the lake's videos."""

    def __init__(self, lake_uri: str, uuids: Any, existing: Any, model: str | None,
                 mapping: Any, verify: str, thumbnails: bool, chunk: int) -> None:
        import lance  # noqa: F401  (loaded once here, not inside the first piece's timing)

        from ..lake import Lake
        from . import _deps
        from .thumbs import thumbnail  # noqa: F401

        _deps.av()
        self.lake = Lake(lake_uri)
        self.uuids, self.existing = uuids, existing  # KeySets
        self.model, self.mapping, self.verify = model, mapping, verify
        self.thumbnails, self.chunk = thumbnails, chunk

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid()}

    def run(self, piece: Piece, batch_id: str, duplicates: tuple[str, ...]) -> tuple[int, Any]:
        from ..lake import Written

        t0 = time.process_time()
        report = ImportReport(paths=[piece.label], model=self.model)
        if self.mapping is not None:
            self.mapping.used = set()
        imp = _Importer(report, model=self.model, mapping=self.mapping, uuids=self.uuids,
                        existing=self.existing, verify=self.verify,
                        thumbnails=self.thumbnails, threads=1, batch_id=batch_id,
                        duplicates=set(duplicates))
        parts: list[Written] = []
        # `chunk` videos per write keeps the worker's memory to one chunk of clips
        imp.run(piece_members(piece), self.chunk,
                lambda batches: parts.append(self.lake.write_rows("videos", batches,
                                                                  schema=VIDEOS_SCHEMA)),
                lambda: None)
        written = None
        parts = [p for p in parts if p.fragments]
        if parts:
            written = Written(table="videos", uri=parts[0].uri,
                              fragments=tuple(f for p in parts for f in p.fragments),
                              rows=sum(p.rows for p in parts),
                              read_version=min(p.read_version for p in parts))
        return os.getpid(), {
            "written": written, "files_seen": report.files_seen, "imported": report.imported,
            "already_in_lake": report.already_in_lake, "bytes": report.bytes,
            "rejected": report.rejected, "ids": report.imported_ids,
            "used": set(self.mapping.used) if self.mapping is not None else set(),
            "cpu_seconds": time.process_time() - t0}


def import_on_ray(eng: Any, b: Batch, paths: list[str], report: ImportReport, *,
                  model: str | None, mapping: Any, uuids: Any, existing: set[str], chunk: int,
                  verify: str, thumbnails: bool,
                  progress: Callable[[int, int], None] | None = None) -> None:
    """Run the import's pieces on `eng`'s actors and commit each finished piece in `b`."""
    import ray

    from ..keyset import KeySet

    pieces = plan_pieces(paths, chunk)
    if not pieces:
        return
    # sorted arrays in Ray's object store: one copy per node, not one set per actor
    uu = uuids if isinstance(uuids, KeySet) else KeySet.of(uuids)  # (--source: a set)
    ex = KeySet.of(existing)
    remote = b.lake.uri.startswith("s3://") or any(p.startswith("s3://") for p in paths)
    shipped: Any = mapping
    if isinstance(mapping, SourceMapping):  # --source: one shared copy per node
        shipped = ray.put(SortedSourceMapping.of(mapping))
    pool = eng.pool(ImportWorker, (b.lake.uri, ray.put(uu), ray.put(ex), model, shipped,
                                   verify, thumbnails, chunk), remote_storage=remote)
    try:
        feed: deque[tuple[int, tuple[Any, ...]]] = deque(
            (i, (p, b.batch_id, ())) for i, p in enumerate(pieces))
        marked: dict[int, set[str]] = {}
        landed: set[str] = set()
        for key, res in pool.run(feed):
            clash = landed.intersection(res["ids"])
            if clash:  # another piece of this run committed these first: do this one again
                marked[key] = marked.get(key, set()) | clash
                feed.append((key, (pieces[key], b.batch_id, tuple(sorted(marked[key])))))
                continue
            report.files_seen += res["files_seen"]
            report.imported += res["imported"]
            report.already_in_lake += res["already_in_lake"]
            report.bytes += res["bytes"]
            report.rejected.extend(res["rejected"])
            report.imported_ids.extend(res["ids"])
            if mapping is not None:
                mapping.used |= res["used"]
            w = res["written"]
            if w is not None:
                t0 = time.perf_counter()
                b.add_written("videos", w)
                b.counts.update(report.counts())
                b.commit()
                report.chunks += 1
                report.commit_seconds += time.perf_counter() - t0
            landed.update(res["ids"])
            report.worker_cpu_seconds += res["cpu_seconds"]
            if progress:
                progress(report.files_seen, report.files_seen)
        b.counts.update(report.counts())
        report.retries = pool.retries
        b.counts.update(report.counts())
    finally:
        pool.close()
