"""Importing existing videos: tar shards, folders and single files, streamed, never extracted.

A VidProM shard (``pika_videos/pika_1.tar``) holds members named ``{model}-{uuid}.mp4``; other
collections name files freely and come with a mapping CSV (``file,uuid[,model]``). Each member
is read straight from the tar stream into memory, checked (name, known prompt uuid, not already
in the lake), probed (every packet demuxed, the first frame decoded) and appended to the
``videos`` table in chunks, each chunk a durable commit of one batch. Nothing touches the disk
outside the lake, so hostile member names (``../x.mp4``, ``/etc/x.mp4``) are harmless, and are
reported rather than imported, like empty, corrupt and non-video files and unknown uuids.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import stat
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import InputError
from ..schema import VIDEOS_SCHEMA
from .probe import FORMAT_HINTS, VERIFY_LEVELS, ProbeError, probe_bytes
from .thumbs import thumbnail

if TYPE_CHECKING:
    import numpy as np

    from ..lake import Lake

UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
VIDEO_EXTS = (".mp4", ".mov", ".webm", ".mkv", ".m4v")
NAME_RE = re.compile(rf"^(?P<model>[A-Za-z0-9_.+]+(?:-[A-Za-z0-9_.+]+)*?)-(?P<uuid>{UUID_RE})"
                     rf"\.(?:mp4|mov|webm|mkv|m4v)$")
MODEL_RE = re.compile(r"^[A-Za-z0-9_.+:/-]{1,128}$")
TAR_EXTS = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
ROWS_PER_BATCH = 32

#: Reasons a file is not imported, as they appear in reports.
REASONS = ("hostile-name", "not-regular-file", "not-video", "bad-name", "model-mismatch",
           "unknown-uuid", "duplicate", "empty", "corrupt", "unmapped")


@dataclass
class Rejected:
    container: str
    name: str
    reason: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"container": self.container, "name": self.name, "reason": self.reason,
                "detail": self.detail}


@dataclass
class ImportReport:
    paths: list[str]
    model: str | None
    batch_id: str | None = None
    files_seen: int = 0
    imported: int = 0
    already_in_lake: int = 0
    bytes: int = 0
    chunks: int = 0
    seconds: float = 0.0
    rejected: list[Rejected] = field(default_factory=list)
    imported_ids: list[str] = field(default_factory=list)
    source: str | None = None  # seed dataset matched by clip id (--source), see zips.py
    rows_without_videos: int | None = None  # rows of that source still without a video

    def by_reason(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rejected))

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "model": self.model, "files_seen": self.files_seen,
            "imported": self.imported, "already_in_lake": self.already_in_lake,
            "rejected": len(self.rejected), "bytes": self.bytes, "chunks": self.chunks,
            "seconds": round(self.seconds, 3), "rejected_by_reason": self.by_reason(),
            **({"source": self.source, "rows_without_videos": self.rows_without_videos}
               if self.source else {}),
        }


@dataclass
class _Member:
    container: str  # the shard or folder it came from
    name: str  # member name inside the container (posix, as stored)
    read: Callable[[], bytes] | None  # None when the member cannot be read (not a file)
    kind: str = "file"


# ---------------------------------------------------------------------- sources
def hostile(name: str) -> str | None:
    """Why a member name is unsafe to use as a path, or None."""
    if not name:
        return "empty name"
    if "\x00" in name:
        return "NUL byte in name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:/", norm):
        return "absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "parent directory (..) in path"
    return None


def _is_tar(path: str) -> bool:
    return path.lower().endswith(TAR_EXTS)


def _tar_members(path: str) -> Iterator[_Member]:
    """Stream a tar (optionally compressed) member by member; nothing is written to disk."""
    try:
        tf = tarfile.open(path, mode="r|*")  # noqa: SIM115 (closed by the `with` below)
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"not a readable tar archive: {exc}", path=path) from None
    with tf:
        try:
            for m in tf:
                if m.isdir():
                    continue
                if m.isfile():
                    yield _Member(path, m.name, functools.partial(_read_member, tf, m))
                else:
                    kind = ("symlink" if m.issym() else "hard link" if m.islnk()
                            else "device/fifo")
                    yield _Member(path, m.name, None, kind)
        except tarfile.TarError as exc:
            raise InputError(f"tar archive is damaged: {exc}", path=path) from None


def _read_member(tf: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    fh = tf.extractfile(m)
    return fh.read() if fh is not None else b""


def _folder_members(root: str) -> Iterator[_Member]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                yield _Member(root, rel, None, "symlink")
            elif not stat.S_ISREG(st.st_mode):
                yield _Member(root, rel, None, "special file")
            elif _is_tar(fn):
                yield from _tar_members(full)
            elif fn.lower().endswith(".zip"):
                yield from _zip_members(full)
            else:
                yield _Member(root, rel, Path(full).read_bytes)


def _zip_members(item: Any) -> Iterator[_Member]:
    from .zips import ZipSource

    src = item if isinstance(item, ZipSource) else ZipSource([item])
    for container, name, read, kind in src.members():
        yield _Member(container, name, read, kind)


def iter_members(paths: Iterable[str | os.PathLike[str]]) -> Iterator[_Member]:
    from .zips import ZipSource, expand

    for p in expand(paths):  # zips, and split-zip pieces grouped into one archive
        if isinstance(p, ZipSource):
            yield from _zip_members(p)
            continue
        path = os.fspath(p)
        if os.path.isdir(path):
            yield from _folder_members(path)
        elif not os.path.exists(path):
            raise InputError("no such file or folder", path=path)
        elif _is_tar(path) or tarfile.is_tarfile(path):
            yield from _tar_members(path)
        else:
            yield _Member(os.path.dirname(path) or ".", os.path.basename(path),
                          Path(path).read_bytes)


# ---------------------------------------------------------------------- mapping
@dataclass
class Mapping:
    """file -> (uuid, model) from a CSV with columns ``file`` (or path/filename/name), ``uuid``
    and optionally ``model``. Lookups try the member path, then its base name."""

    path: str
    by_name: dict[str, tuple[str, str | None]]
    by_base: dict[str, tuple[str, str | None] | None]
    rejected: list[Rejected]
    used: set[str] = field(default_factory=set)

    def get(self, name: str) -> tuple[str, str | None] | None:
        key = _norm(name)
        if key in self.by_name:
            self.used.add(key)
            return self.by_name[key]
        hit = self.by_base.get(PurePosixPath(key).name)
        if hit is not None:
            self.used.add(next(k for k, v in self.by_name.items()
                               if PurePosixPath(k).name == PurePosixPath(key).name))
        return hit


def _norm(name: str) -> str:
    n = name.replace("\\", "/")
    while n.startswith("./"):
        n = n[2:]
    return n


def load_mapping(path: str | os.PathLike[str]) -> Mapping:
    path = os.fspath(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise InputError(f"cannot read mapping file: {exc}", path=path) from None
    with fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        fcol = next((cols[c] for c in ("file", "path", "filename", "name", "video") if c in cols),
                    None)
        ucol = cols.get("uuid")
        mcol = cols.get("model")
        if fcol is None or ucol is None:
            raise InputError(
                f"mapping needs a file column (file/path/filename/name) and a uuid column; "
                f"it has {', '.join(reader.fieldnames or []) or 'no header'}", path=path)
        by_name: dict[str, tuple[str, str | None]] = {}
        rejected: list[Rejected] = []
        for i, row in enumerate(reader, start=2):
            name = (row.get(fcol) or "").strip()
            uuid = (row.get(ucol) or "").strip().lower()
            model = (row.get(mcol) or "").strip() if mcol else ""
            why = hostile(name)
            if why:
                rejected.append(Rejected(path, name, "hostile-name", f"row {i}: {why}"))
                continue
            if not re.fullmatch(UUID_RE, uuid):
                raise InputError(f"uuid {uuid!r} is not a UUID", path=path, row=i)
            if model and not MODEL_RE.match(model):
                raise InputError(f"model {model!r} is not a valid model name", path=path, row=i)
            key = _norm(name)
            if key in by_name:
                raise InputError(f"file {name!r} is mapped twice", path=path, row=i)
            by_name[key] = (uuid, model or None)
    by_base: dict[str, tuple[str, str | None] | None] = {}
    for k, v in by_name.items():
        base = PurePosixPath(k).name
        by_base[base] = None if base in by_base else v  # ambiguous base names need full paths
    return Mapping(path, by_name, by_base, rejected)


# ---------------------------------------------------------------------- import
class _UuidSet:
    def __init__(self, sorted_uuids: np.ndarray):
        self.arr = sorted_uuids

    def __contains__(self, uuid: str) -> bool:
        import numpy as np

        i = int(np.searchsorted(self.arr, uuid))
        return i < len(self.arr) and self.arr[i] == uuid


def existing_video_ids(lake: Lake, models: Iterable[str] | None = None) -> set[str]:
    """video_ids already in the lake, read at the lake's *current* head (not the head a
    long-lived Lake object cached), so videos other processes added since count too."""
    ds = current(lake).dataset("videos")
    flt = None
    if models is not None:
        ms = sorted(set(models))
        if not ms:
            return set()
        flt = "model IN (" + ", ".join("'" + m.replace("'", "''") + "'" for m in ms) + ")"
    return set(ds.to_table(columns=["video_id"], filter=flt).column("video_id").to_pylist())


def current(lake: Lake) -> Lake:
    """The lake at its newest head: `lake` itself if pinned, else a fresh handle."""
    if lake.read_only:
        return lake
    return type(lake)(lake.uri)


def video_row(*, uuid: str, model: str, data: bytes, probe: Any, source: str,
              params: dict[str, Any], batch_id: str, thumb: bytes | None) -> dict[str, Any]:
    row = {"video_id": f"{model}-{uuid}", "uuid": uuid, "model": model, "source": source,
           "video": data, "thumbnail": thumb, "params": json.dumps(params, sort_keys=True),
           "time": datetime.now(UTC), "batch_id": batch_id}
    row.update(probe.columns())
    return row


def rows_to_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    cols = {f.name: [r.get(f.name) for r in rows] for f in VIDEOS_SCHEMA}
    return pa.RecordBatch.from_pydict(cols, schema=VIDEOS_SCHEMA)


def import_videos(
    lake: Lake,
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    model: str | None = None,
    *,
    mapping: str | os.PathLike[str] | None = None,
    chunk: int = 256,
    verify: str = "first-frame",
    thumbnails: bool = True,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    source: str | None = None,
) -> ImportReport:
    """Import every valid video from `paths` (tar shards, zips, folders, files) into ``videos``.

    With `source` (``openvid``, ``vidgen``: a seed dataset already ingested), members are
    matched to that source's rows by clip id (see `zips.source_mapping`); `model` defaults
    to the source name.

    `model` names the generator for every file (names ``{model}-{uuid}.mp4`` must agree); when
    None, it is taken from each file name or the mapping. Commits every `chunk` videos; a rerun
    skips video_ids already present. `verify` is ``first-frame`` (every sample present, the
    first frame decodes), ``full`` (every frame decodes) or ``index`` (every sample present,
    the first sample well framed, nothing decoded; with `thumbnails` the first frame is
    decoded anyway, for the thumbnail). See `probe.probe_bytes`.
    """
    plist: list[str] = ([os.fspath(paths)] if isinstance(paths, str | os.PathLike)
                        else [os.fspath(p) for p in paths])
    paths = plist
    if not plist:
        raise InputError("no paths to import")
    if verify not in VERIFY_LEVELS:
        raise InputError(f"verify must be one of {', '.join(VERIFY_LEVELS)}, not {verify!r}")
    if model is not None and not MODEL_RE.match(model):
        raise InputError(f"model {model!r} is not a valid model name (letters, digits, _.+-:/)")
    for p in plist:
        if not os.path.exists(p):
            raise InputError("no such file or folder", path=p)
    t0 = time.perf_counter()
    mp: Any = load_mapping(mapping) if mapping else None
    if source is not None:
        from .zips import source_mapping

        if mapping:
            raise InputError("pass either --source or --mapping, not both")
        model = model or source
        mp = source_mapping(lake, source, plist)
    report = ImportReport(paths=plist, model=model, source=source)
    if mp:
        report.rejected.extend(mp.rejected)
    # with --source every uuid comes from the lake's rows: no need to load all of them
    uuids: Any = (set(mp.ids.values()) if source is not None
                  else _UuidSet(current(lake).uuid_index()))
    existing = existing_video_ids(lake, [model] if model else None)
    seen: set[str] = set()
    members = iter_members(plist)

    def reject(m: _Member, reason: str, detail: str = "") -> None:
        report.rejected.append(Rejected(m.container, m.name, reason, detail))

    def accepted() -> Iterator[tuple[_Member, str, str, bytes]]:
        for m in members:
            report.files_seen += 1
            why = hostile(m.name)
            if why:
                reject(m, "hostile-name", why)
                continue
            if m.read is None:
                reject(m, "not-regular-file", m.kind)
                continue
            base = PurePosixPath(_norm(m.name)).name
            mapped = mp.get(m.name) if mp else None
            if mapped:
                uuid, mmodel = mapped
                vmodel = mmodel or model
                if vmodel is None:
                    reject(m, "bad-name", "mapping has no model column; pass --model")
                    continue
                if model and mmodel and mmodel != model:
                    reject(m, "model-mismatch", f"mapping says {mmodel}, --model {model}")
                    continue
            else:
                if not base.lower().endswith(VIDEO_EXTS):
                    reject(m, "not-video", "not a video file name (.mp4, .mov, .webm, .mkv)")
                    continue
                nm = NAME_RE.match(base)
                if not nm:
                    reject(m, "unmapped" if mp else "bad-name",
                           "not in the mapping file" if mp else "expected {model}-{uuid}.mp4")
                    continue
                uuid, vmodel = nm.group("uuid").lower(), nm.group("model")
                if model and vmodel != model:
                    reject(m, "model-mismatch", f"file is {vmodel}, --model {model}")
                    continue
            vid = f"{vmodel}-{uuid}"
            if uuid not in uuids:
                reject(m, "unknown-uuid", f"no prompt {uuid} in the lake")
                continue
            if vid in seen:
                reject(m, "duplicate", f"{vid} appears earlier in this import")
                continue
            seen.add(vid)
            if vid in existing:
                report.already_in_lake += 1
                continue
            data = m.read()
            yield m, uuid, vmodel, data

    with lake.batch("import", source=plist[0] if len(plist) == 1 else f"{len(plist)} paths",
                    params={"paths": plist, "model": model, "mapping": os.fspath(mapping)
                            if mapping else None, "verify": verify, "chunk": chunk,
                            **({"source": source} if source else {})},
                    provenance=_provenance()) as b:
        report.batch_id = b.batch_id
        probed = _probe_parallel(accepted(), verify=verify, thumbnails=thumbnails,
                                 workers=workers or min(4, os.cpu_count() or 1))
        done = False

        errors: list[BaseException] = []

        def chunk_batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from _chunk_batches()
            except BaseException as exc:  # re-raised below: Lance would wrap it in an OSError
                errors.append(exc)
                raise

        def _chunk_batches() -> Iterator[pa.RecordBatch]:
            nonlocal done
            rows: list[dict[str, Any]] = []
            n = 0
            for m, uuid, vmodel, data, pr, thumb in probed:
                if isinstance(pr, ProbeError):
                    reject(m, pr.reason, pr.detail)
                    continue
                rows.append(video_row(
                    uuid=uuid, model=vmodel, data=data, probe=pr,
                    source=f"{m.container}:{m.name}",
                    params={"kind": "import", "container": m.container, "member": m.name,
                            "verify": verify}, batch_id=b.batch_id, thumb=thumb))
                report.imported += 1
                report.bytes += len(data)
                report.imported_ids.append(f"{vmodel}-{uuid}")
                n += 1
                if len(rows) >= ROWS_PER_BATCH:
                    yield rows_to_batch(rows)
                    rows = []
                if n >= chunk:
                    break
            else:
                done = True
            if rows:
                yield rows_to_batch(rows)

        while not done:
            before = report.imported
            try:
                b.append("videos", chunk_batches(), schema=VIDEOS_SCHEMA)
            except Exception:
                if errors:
                    raise errors[0] from None
                raise
            b.counts.update(rows_added=report.imported, already_in_lake=report.already_in_lake,
                            rejected=len(report.rejected), rejected_by_reason=report.by_reason())
            if report.imported > before:
                b.commit()
                report.chunks += 1
            if progress:
                progress(report.files_seen, report.files_seen)
    if mp:
        for name in sorted(set(mp.by_name) - mp.used):
            report.rejected.append(Rejected(mp.path, name, "unmapped",
                                            "listed in the mapping but no such file was found"))
    if source is not None:
        from .zips import rows_without_videos

        report.rows_without_videos = rows_without_videos(lake, source, model)
    report.seconds = time.perf_counter() - t0
    return report


def _probe_one(data: bytes, name: str, verify: str,
               thumbnails: bool) -> tuple[Any, bytes | None]:
    ext = os.path.splitext(name)[1].lower()
    if thumbnails and verify == "index":
        verify = "first-frame"  # the thumbnail needs the first frame decoded anyway
    try:
        pr = probe_bytes(data, verify=verify, format=FORMAT_HINTS.get(ext))
    except ProbeError as exc:
        return exc, None
    thumb = thumbnail(pr.first_frame) if thumbnails else None
    pr.first_frame = None
    return pr, thumb


def _probe_parallel(items: Iterator[tuple[_Member, str, str, bytes]], *, verify: str,
                    thumbnails: bool, workers: int) -> Iterator[tuple[Any, ...]]:
    """Probe in a small thread pool (FFmpeg releases the GIL while it decodes), in order,
    with a bounded look-ahead so memory stays at a few clips per worker."""
    if workers <= 1:
        for m, uuid, vmodel, data in items:
            yield (m, uuid, vmodel, data, *_probe_one(data, m.name, verify, thumbnails))
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    window: deque[tuple[Any, ...]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="vidlake-probe") as ex:
        for m, uuid, vmodel, data in items:
            window.append((m, uuid, vmodel, data,
                           ex.submit(_probe_one, data, m.name, verify, thumbnails)))
            if len(window) >= 4 * workers:
                m_, u_, v_, d_, fut = window.popleft()
                yield (m_, u_, v_, d_, *fut.result())
        while window:
            m_, u_, v_, d_, fut = window.popleft()
            yield (m_, u_, v_, d_, *fut.result())


def _provenance() -> dict[str, Any]:
    from . import _deps

    av = _deps.av()
    return {"av": av.__version__, "ffmpeg": {k: ".".join(map(str, v[:3])) if isinstance(v, tuple)
                                              else str(v) for k, v in
                                              getattr(av, "library_versions", {}).items()}}


def probe_clip(data: bytes, name: str, *, verify: str = "first-frame",
               thumbnails: bool = True) -> tuple[Any, bytes | None]:
    """Check one clip exactly as the import does (for other importers, e.g. the scraper):
    ``(Probe, thumbnail)``, or ``(ProbeError, None)`` when the bytes do not decode."""
    return _probe_one(data, name, verify, thumbnails)


def provenance() -> dict[str, Any]:
    """The library versions an import records in its batch's provenance."""
    return _provenance()
