"""Importing existing videos: tar shards, folders and single files, streamed, never extracted.

A VidProM shard (``pika_videos/pika_1.tar``) holds members named ``{model}-{uuid}.mp4``; other
collections name files freely and come with a mapping CSV (``file,uuid[,model]``). Each member
is read straight from the archive into memory, checked (name, known prompt uuid, not already
in the lake), probed (every sample present, the first frame decoded: see probe.py) and appended
to the ``videos`` table in chunks, each chunk a durable commit of one batch. Nothing touches the
disk outside the lake, so hostile member names (``../x.mp4``, ``/etc/x.mp4``) are harmless, and
are reported rather than imported, like empty, corrupt and non-video files and unknown uuids.

Where the bytes go: members of uncompressed tars, stored zip members and plain files are read
with positional reads into reusable 64 MB slabs (`_Slabs`), hashed and probed there by a
thread pool, and handed to Lance as Arrow arrays that point into the slab (no copy). A fresh
`bytes` per clip plus Arrow's copy of every batch meant touching two new pages for every page
of video, and on a virtual machine a first touch costs about as much as the copy itself.
Compressed tars and deflated zip members are read as before, one `bytes` per member.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import re
import stat
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import InputError, VidlakeError
from ..schema import VIDEO_BLOB_COLUMN, VIDEOS_SCHEMA
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
ROWS_PER_BATCH = 64
#: Clips read and probed ahead of the Lance writer (bounds the memory held in flight).
AHEAD_CLIPS = 2 * ROWS_PER_BATCH

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
    engine: str | None = None  # "ray" when Ray workers imported (see ray_import.py)
    retries: int = 0  # restarted Ray workers that answered
    worker_cpu_seconds: float = 0.0  # CPU time the Ray workers spent importing
    commit_seconds: float = 0.0  # the driver's time staging and committing workers' files

    def by_reason(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rejected))

    def counts(self) -> dict[str, Any]:
        """What the batch log records for this import so far."""
        return {"rows_added": self.imported, "already_in_lake": self.already_in_lake,
                "rejected": len(self.rejected), "rejected_by_reason": self.by_reason(),
                **({"retries": self.retries} if self.engine else {})}

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "model": self.model, "files_seen": self.files_seen,
            "imported": self.imported, "already_in_lake": self.already_in_lake,
            "rejected": len(self.rejected), "bytes": self.bytes, "chunks": self.chunks,
            "seconds": round(self.seconds, 3), "rejected_by_reason": self.by_reason(),
            **({"source": self.source, "rows_without_videos": self.rows_without_videos}
               if self.source else {}),
            **({"engine": self.engine, "retries": self.retries,
                "worker_cpu_seconds": round(self.worker_cpu_seconds, 3),
                "commit_seconds": round(self.commit_seconds, 3)}
               if self.engine else {}),
        }


class DamagedMember(Exception):
    """A member's bytes cannot be read whole from its archive (cut off, checksum mismatch):
    the member is rejected as corrupt and the import goes on."""


@dataclass
class _Member:
    container: str  # the shard or folder it came from
    name: str  # member name inside the container (posix, as stored)
    read: Callable[[], bytes] | None  # None when the member cannot be read (not a file)
    kind: str = "file"
    size: int | None = None  # known length, for `readinto`
    readinto: Callable[[memoryview], None] | None = None  # fills exactly `size` bytes


class _Slabs:
    """Reusable buffers that member bytes are read into (see the module docstring: why).

    `place` hands out consecutive ranges of the current slab; a slab goes back to the free
    list once every member placed in it has been written to Lance or rejected (`release`).
    Members larger than `LARGEST` get their own `bytes` instead.
    """

    SIZE = 64 << 20
    LARGEST = SIZE // 8

    def __init__(self) -> None:
        self.lock = threading.Lock()  # placed by the reading thread, released by the writer
        self.free: list[np.ndarray] = []
        self.current: np.ndarray | None = None
        self.pos = 0
        self.users: dict[int, int] = {}  # id(slab) -> members placed and not yet released

    def place(self, size: int) -> tuple[np.ndarray, int] | None:
        if size > self.LARGEST:
            return None
        with self.lock:
            return self._place(size)

    def _place(self, size: int) -> tuple[np.ndarray, int]:
        import numpy as np

        if self.current is None or self.pos + size > self.SIZE:
            self._retire()
            self.current = self.free.pop() if self.free else np.empty(self.SIZE, np.uint8)
            self.pos = 0
            self.users[id(self.current)] = 0
        start = self.pos
        self.pos += size
        self.users[id(self.current)] += 1
        return self.current, start

    def release(self, slab: np.ndarray) -> None:
        with self.lock:
            key = id(slab)
            self.users[key] -= 1
            if self.users[key] == 0 and slab is not self.current:
                del self.users[key]
                self.free.append(slab)

    def _retire(self) -> None:
        cur = self.current
        if cur is not None and self.users.get(id(cur)) == 0:
            del self.users[id(cur)]
            self.free.append(cur)
        self.current = None


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


#: Leading bytes of the compressions tarfile reads (gzip, bzip2, xz) and of zstd.
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _tar_members(path: str) -> Iterator[_Member]:
    """A tar member by member; nothing is written to disk. An uncompressed tar is walked
    header by header and each member read with a positional read; a compressed one is
    streamed."""
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(6).startswith(_COMPRESSED)
        seekable = not compressed and hasattr(os, "preadv")  # preadv: POSIX only
        tf = tarfile.open(path, mode="r:" if seekable else "r|*")  # noqa: SIM115 (closed below)
        fd = os.open(path, os.O_RDONLY) if seekable else -1
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"not a readable tar archive: {exc}", path=path) from None
    try:
        yield from _tar_walk(tf, path, fd)
    finally:
        if fd >= 0:
            os.close(fd)


def _s3_tar_members(uri: str) -> Iterator[_Member]:
    """A tar shard on S3, streamed in one GET (members are read in archive order)."""
    from .. import storage

    try:
        fh = storage.open_stream(uri)
    except OSError as exc:
        raise InputError(f"cannot read: {str(exc).splitlines()[0][:300]}", path=uri) from None
    try:
        try:
            tf = tarfile.open(fileobj=fh, mode="r|*")  # noqa: SIM115 (closed by _tar_walk)
        except (tarfile.TarError, OSError) as exc:
            raise InputError(f"not a readable tar archive: {exc}", path=uri) from None
        yield from _tar_walk(tf, uri, -1)
    finally:
        fh.close()


def _tar_walk(tf: tarfile.TarFile, path: str, fd: int) -> Iterator[_Member]:
    seen = 0
    try:
        with tf:
            for m in tf:
                seen += 1
                if m.isdir():
                    continue
                if not m.isfile():
                    kind = ("symlink" if m.issym() else "hard link" if m.islnk()
                            else "device/fifo")
                    yield _Member(path, m.name, None, kind)
                elif fd < 0 or m.sparse is not None:
                    yield _Member(path, m.name, functools.partial(_read_member, tf, m))
                else:
                    yield _Member(path, m.name, functools.partial(_pread, fd, m.offset_data,
                                                                  m.size),
                                  size=m.size, readinto=functools.partial(
                                      _pread_into, fd, m.offset_data, m.size))
    except tarfile.ReadError as exc:
        # The archive ends inside the last member read (a cut download): that member was
        # rejected as "cut off in the archive"; everything before it stands.
        if not (seen and "unexpected end of data" in str(exc)):
            raise InputError(f"tar archive is damaged: {exc}", path=path) from None
    except tarfile.TarError as exc:
        raise InputError(f"tar archive is damaged: {exc}", path=path) from None


def _read_member(tf: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    fh = tf.extractfile(m)
    if fh is None:
        return b""
    try:
        return fh.read()
    except tarfile.ReadError as exc:  # the stream ends inside this member
        raise DamagedMember(f"cut off in the archive: {exc}") from None


def _pread_into(fd: int, offset: int, size: int, view: memoryview) -> None:
    done = 0
    while done < size:
        n = os.preadv(fd, [view[done:size]], offset + done)
        if n <= 0:
            raise DamagedMember(f"cut off in the archive: {done:,} of {size:,} bytes present")
        done += n


def _pread(fd: int, offset: int, size: int) -> bytes:
    buf = bytearray(size)
    _pread_into(fd, offset, size, memoryview(buf))
    return bytes(buf)


def _file_into(path: str, size: int, view: memoryview) -> None:
    with open(path, "rb", buffering=0) as fh:
        done = 0
        while done < size:
            n = fh.readinto(view[done:size])
            if not n:
                raise DamagedMember(f"the file shrank while it was read ({done:,} of "
                                    f"{size:,} bytes)")
            done += n


def _walk_folder(root: str) -> Iterator[str]:
    """Paths (relative to `root`, posix) of every file under `root`, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for fn in sorted(filenames):
            yield os.path.relpath(os.path.join(dirpath, fn), root).replace(os.sep, "/")


def _entry_members(root: str, rel: str) -> Iterator[_Member]:
    """The members one folder entry contributes: itself, or an archive's members."""
    full = os.path.join(root, *rel.split("/"))
    st = os.lstat(full)
    if stat.S_ISLNK(st.st_mode):
        yield _Member(root, rel, None, "symlink")
    elif not stat.S_ISREG(st.st_mode):
        yield _Member(root, rel, None, "special file")
    elif _is_tar(full):
        yield from _tar_members(full)
    elif full.lower().endswith(".zip"):
        yield from _zip_members(full)
    else:
        yield _Member(root, rel, Path(full).read_bytes, size=st.st_size,
                      readinto=functools.partial(_file_into, full, st.st_size))


def _folder_members(root: str) -> Iterator[_Member]:
    for rel in _walk_folder(root):
        yield from _entry_members(root, rel)


def _s3_root(uri: str, objects: list[tuple[str, int]]) -> str:
    """The container name of objects listed under `uri`: the prefix, or a lone object's
    parent."""
    if len(objects) == 1 and objects[0][0] == uri:
        return uri.rsplit("/", 1)[0]
    return uri.rstrip("/")


def _s3_object_members(root: str, key_uri: str, size: int) -> Iterator[_Member]:
    from .. import storage

    name = key_uri[len(root) + 1:] if key_uri.startswith(root + "/") else key_uri
    if _is_tar(key_uri):
        yield from _s3_tar_members(key_uri)
    else:
        yield _Member(root, name, functools.partial(storage.read_object, key_uri), size=size)


def s3_objects(uri: str) -> list[tuple[str, int]]:
    """The objects an ``s3://`` input names (one object, or all under a prefix); an input
    with nothing there is an error naming it."""
    from .. import storage

    try:
        objs = storage.list_objects(uri)
    except VidlakeError as exc:
        raise InputError(str(exc), path=uri) from None
    if not objs:
        raise InputError("no such object or prefix", path=uri)
    return objs


def _s3_members(uri: str) -> Iterator[_Member]:
    objs = s3_objects(uri)
    root = _s3_root(uri, objs)
    for key_uri, size in objs:
        yield from _s3_object_members(root, key_uri, size)


def _zip_members(item: Any) -> Iterator[_Member]:
    from .zips import ZipSource

    src = item if isinstance(item, ZipSource) else ZipSource([item])
    for container, name, read, kind, size, readinto in src.members():
        yield _Member(container, name, read, kind, size, readinto)


def iter_members(paths: Iterable[str | os.PathLike[str]]) -> Iterator[_Member]:
    from .zips import ZipSource, expand

    for p in expand(paths):  # zips, and split-zip pieces grouped into one archive
        if isinstance(p, ZipSource):
            yield from _zip_members(p)
            continue
        path = os.fspath(p)
        if path.startswith("s3://"):
            yield from _s3_members(path)
        elif os.path.isdir(path):
            yield from _folder_members(path)
        elif not os.path.exists(path):
            raise InputError("no such file or folder", path=path)
        elif _is_tar(path) or tarfile.is_tarfile(path):
            yield from _tar_members(path)
        else:
            size = os.path.getsize(path)
            yield _Member(os.path.dirname(path) or ".", os.path.basename(path),
                          Path(path).read_bytes, size=size,
                          readinto=functools.partial(_file_into, path, size))


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


def rows_to_batch(rows: list[dict[str, Any]], video: pa.Array | None = None) -> pa.RecordBatch:
    """``videos`` rows as one record batch; `video`, when given, is the blob column already
    built (see `_rows_batch`)."""
    arrays = [video if video is not None and f.name == VIDEO_BLOB_COLUMN
              else pa.array([r.get(f.name) for r in rows], f.type) for f in VIDEOS_SCHEMA]
    return pa.RecordBatch.from_arrays(arrays, schema=VIDEOS_SCHEMA)


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
    engine: Any = None,
    engine_options: dict[str, Any] | None = None,
) -> ImportReport:
    """Import every valid video from `paths` (tar shards, zips, folders, files, and ``s3://``
    objects or prefixes holding tar shards and video files) into ``videos``.

    With `source` (``openvid``, ``vidgen``: a seed dataset already ingested), members are
    matched to that source's rows by clip id (see `zips.source_mapping`); `model` defaults
    to the source name.

    `model` names the generator for every file (names ``{model}-{uuid}.mp4`` must agree); when
    None, it is taken from each file name or the mapping. Commits every `chunk` videos; a rerun
    skips video_ids already present. `verify` is ``first-frame`` (every sample present, the
    first frame decodes), ``full`` (every frame decodes) or ``index`` (every sample present,
    the first sample well framed, nothing decoded; needs ``thumbnails=False``, since a
    thumbnail is made from the decoded first frame). See `probe.probe_bytes`.

    `engine` ``"ray"`` (with `engine_options` address/workers/gpus_per_worker, or an engine
    from `vidprom_lake.engine.get_engine`) imports on Ray workers: each worker imports whole
    pieces (a tar shard, or up to `chunk` files of a folder / prefix), writes their Lance data
    files itself and this process commits one piece per chunk (see `ray_import.py`).
    """
    plist: list[str] = ([os.fspath(paths)] if isinstance(paths, str | os.PathLike)
                        else [os.fspath(p) for p in paths])
    paths = plist
    if not plist:
        raise InputError("no paths to import")
    if verify not in VERIFY_LEVELS:
        raise InputError(f"verify must be one of {', '.join(VERIFY_LEVELS)}, not {verify!r}")
    if verify == "index" and thumbnails:
        raise InputError("--verify index decodes nothing, but a thumbnail needs the first frame "
                         "decoded: add --no-thumbnails, or use --verify first-frame")
    if model is not None and not MODEL_RE.match(model):
        raise InputError(f"model {model!r} is not a valid model name (letters, digits, _.+-:/)")
    if chunk < 1:
        raise InputError(f"--chunk must be >= 1, not {chunk}")
    for p in plist:
        if not p.startswith("s3://") and not os.path.exists(p):
            raise InputError("no such file or folder", path=p)
    t0 = time.perf_counter()
    from ..enrich.runner import _engine

    eng, own_engine = _engine(engine, engine_options)
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
                  else current(lake).uuid_index())
    existing = existing_video_ids(lake, [model] if model else None)
    params = {"paths": plist, "model": model, "mapping": os.fspath(mapping) if mapping else None,
              "verify": verify, "chunk": chunk, **({"source": source} if source else {})}
    try:
        if eng is not None:
            from .ray_import import import_on_ray

            params["engine"] = eng.info()
            report.engine = eng.name
            prov = {**_provenance(), "engine": eng.info()}
            with lake.batch("import", source=plist[0] if len(plist) == 1
                            else f"{len(plist)} paths", params=params, provenance=prov) as b:
                report.batch_id = b.batch_id
                import_on_ray(eng, b, plist, report, model=model, mapping=mp, uuids=uuids,
                              existing=existing, chunk=chunk, verify=verify,
                              thumbnails=thumbnails, progress=progress)
        else:
            imp = _Importer(report, model=model, mapping=mp, uuids=uuids, existing=existing,
                            verify=verify, thumbnails=thumbnails,
                            threads=workers or min(4, os.cpu_count() or 1))
            with lake.batch("import", source=plist[0] if len(plist) == 1
                            else f"{len(plist)} paths", params=params,
                            provenance=_provenance()) as b:
                report.batch_id = b.batch_id
                imp.batch_id = b.batch_id

                def commit() -> None:
                    b.counts.update(report.counts())
                    b.commit()
                    report.chunks += 1

                imp.run(iter_members(plist), chunk,
                        lambda batches: b.append("videos", batches, schema=VIDEOS_SCHEMA),
                        commit, progress)
                b.counts.update(report.counts())
    finally:
        if own_engine and eng is not None:
            eng.shutdown()
    if mp:
        for name in sorted(set(mp.by_name) - mp.used):
            report.rejected.append(Rejected(mp.path, name, "unmapped",
                                            "listed in the mapping but no such file was found"))
    if source is not None:
        from .zips import rows_without_videos

        report.rows_without_videos = rows_without_videos(lake, source, model)
    report.seconds = time.perf_counter() - t0
    return report


class _Importer:
    """The checks and row building of an import, over any stream of members, writing through
    any sink: `Batch.append` here, `Lake.write_rows` on a Ray worker (see ray_import.py).

    `run` reads members, rejects what cannot be imported (recorded in `report`), probes the
    rest in a small thread pool and hands record batches of at most `chunk` videos to
    `write`, calling `commit` after each chunk that imported something.
    """

    def __init__(self, report: ImportReport, *, model: str | None, mapping: Any, uuids: Any,
                 existing: Any, verify: str, thumbnails: bool, threads: int,
                 batch_id: str = "", duplicates: Any = ()) -> None:
        self.report = report
        self.model = model
        self.mp = mapping
        self.uuids = uuids
        self.existing = existing
        self.verify = verify
        self.thumbnails = thumbnails
        self.threads = threads
        self.batch_id = batch_id
        self.duplicates = duplicates  # video_ids another piece of this import already holds
        self.seen: set[str] = set()
        self.slabs = _Slabs()

    def reject(self, m: _Member, reason: str, detail: str = "") -> None:
        self.report.rejected.append(Rejected(m.container, m.name, reason, detail))

    def accepted(self, members: Iterable[_Member]) -> Iterator[tuple[_Member, str, str, Any, Any]]:
        report, mp, model, reject, slabs = (self.report, self.mp, self.model, self.reject,
                                            self.slabs)
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
            if uuid not in self.uuids:
                reject(m, "unknown-uuid", f"no prompt {uuid} in the lake")
                continue
            if vid in self.seen or vid in self.duplicates:
                reject(m, "duplicate", f"{vid} appears earlier in this import")
                continue
            self.seen.add(vid)
            if vid in self.existing:
                report.already_in_lake += 1
                continue
            spot = (slabs.place(m.size) if m.readinto is not None and m.size is not None
                    else None)
            try:
                if spot is not None and m.readinto is not None:
                    data: Any = spot[0].data[spot[1]:spot[1] + (m.size or 0)]
                    m.readinto(data)
                else:
                    data = m.read()
            except DamagedMember as exc:
                if spot is not None:
                    slabs.release(spot[0])
                reject(m, "corrupt", str(exc))
                continue
            except OSError as exc:  # an object-store read that failed for good
                if spot is not None:
                    slabs.release(spot[0])
                raise InputError(f"cannot read {m.name}: {str(exc).splitlines()[0][:300]}",
                                 path=m.container) from exc
            yield m, uuid, vmodel, data, spot

    def run(self, members: Iterable[_Member], chunk: int,
            write: Callable[[Iterator[pa.RecordBatch]], None], commit: Callable[[], None],
            progress: Callable[[int, int], None] | None = None) -> None:
        # A bulk write: freed buffers stay in the heap and the process takes small pages
        # (`heap.reuse`). On a VM that hands free memory back to its host, a 2,000-clip shard
        # imported in 2.9-3.1 s against 4.7-5.6 s (3+3 runs; small pages alone made the
        # difference; writing behind, as the CSV ingest does, gained nothing here).
        from .. import heap

        with heap.reuse():
            self._run(members, chunk, write, commit, progress)

    def _run(self, members: Iterable[_Member], chunk: int,
             write: Callable[[Iterator[pa.RecordBatch]], None], commit: Callable[[], None],
             progress: Callable[[int, int], None] | None) -> None:
        report, slabs, verify = self.report, self.slabs, self.verify
        # Reading, hashing and probing run in a thread of their own, ahead of the Lance writer
        # (which pulls rows, writes them and commits each chunk without asking for more).
        ahead = _Ahead(_probe_parallel(self.accepted(members), verify=verify,
                                       thumbnails=self.thumbnails, workers=self.threads),
                       depth=AHEAD_CLIPS)
        probed = iter(ahead)
        done = False
        errors: list[BaseException] = []
        written: list[Any] = []

        def chunk_batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from _chunk_batches()
            except BaseException as exc:  # re-raised below: Lance would wrap it in an OSError
                errors.append(exc)
                raise

        def _chunk_batches() -> Iterator[pa.RecordBatch]:
            nonlocal done
            rows: list[dict[str, Any]] = []
            spots: list[Any] = []
            n = 0
            for m, uuid, vmodel, data, spot, pr, thumb in probed:
                if isinstance(pr, ProbeError):
                    if spot is not None:
                        slabs.release(spot[0])
                    self.reject(m, pr.reason, pr.detail)
                    continue
                if rows and not _follows(spots[-1], spot, len(rows[-1]["video"])):
                    yield _rows_batch(rows, spots)  # a batch is one run of slab bytes
                    rows, spots = [], []
                rows.append(video_row(
                    uuid=uuid, model=vmodel, data=data, probe=pr,
                    source=f"{m.container}:{m.name}",
                    params={"kind": "import", "container": m.container, "member": m.name,
                            "verify": verify}, batch_id=self.batch_id, thumb=thumb))
                spots.append(spot)
                written.append(spot)
                report.imported += 1
                report.bytes += len(data)
                report.imported_ids.append(f"{vmodel}-{uuid}")
                n += 1
                if len(rows) >= ROWS_PER_BATCH:
                    yield _rows_batch(rows, spots)
                    rows, spots = [], []
                if n >= chunk:
                    break
            else:
                done = True
            if rows:
                yield _rows_batch(rows, spots)

        try:
            while not done:
                before = report.imported
                written.clear()
                try:
                    write(chunk_batches())
                except Exception:
                    if errors:
                        raise errors[0] from None
                    raise
                for spot in written:  # Lance has written these bytes: their slabs may be reused
                    if spot is not None:
                        slabs.release(spot[0])
                if report.imported > before:
                    commit()
                if progress:
                    progress(report.files_seen, report.files_seen)
        finally:
            ahead.close()  # stops the reading thread if the write failed


def _probe_one(data: bytes, name: str, verify: str,
               thumbnails: bool) -> tuple[Any, bytes | None]:
    ext = os.path.splitext(name)[1].lower()
    try:
        pr = probe_bytes(data, verify=verify, format=FORMAT_HINTS.get(ext))
    except ProbeError as exc:
        return exc, None
    thumb = thumbnail(pr.first_frame) if thumbnails and pr.first_frame is not None else None
    pr.first_frame = None
    return pr, thumb


def _probe_parallel(items: Iterator[tuple[Any, ...]], *, verify: str, thumbnails: bool,
                    workers: int) -> Iterator[tuple[Any, ...]]:
    """Hash and probe in a small thread pool (hashlib and FFmpeg release the GIL), in order,
    with a bounded look-ahead so memory stays at a few clips per worker. Items are tuples
    whose first element is the member and fourth the bytes; the probe result and the
    thumbnail are appended."""
    if workers <= 1:
        for item in items:
            yield (*item, *_probe_one(item[3], item[0].name, verify, thumbnails))
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    window: deque[tuple[tuple[Any, ...], Any]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="vidlake-probe") as ex:
        for item in items:
            window.append((item, ex.submit(_probe_one, item[3], item[0].name, verify,
                                           thumbnails)))
            if len(window) >= 4 * workers:
                done, fut = window.popleft()
                yield (*done, *fut.result())
        while window:
            done, fut = window.popleft()
            yield (*done, *fut.result())


class _Ahead:
    """Iterate `items` in a background thread, at most `depth` items ahead of the consumer.

    An exception in the producer is raised in the consumer at the point it happened;
    `close` (or the consumer stopping early) stops the producer at its next item.
    """

    _END = object()

    def __init__(self, items: Iterator[Any], depth: int):
        import queue

        self.items = items
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vidlake-import-read", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> bool:
        import queue

        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self.items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer
            self._put(_Raised(exc))
            return
        self._put(self._END)

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                item = self.queue.get()
                if item is self._END:
                    return
                if isinstance(item, _Raised):
                    raise item.exc
                yield item
        finally:
            if self.thread.is_alive():
                self.close()

    def close(self) -> None:
        import queue

        if self.stop.is_set():
            return
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.queue.get(timeout=0.05)
        self.thread.join()
        close = getattr(self.items, "close", None)
        if close is not None:
            close()


@dataclass
class _Raised:
    exc: BaseException


def _follows(prev: Any, spot: Any, prev_len: int) -> bool:
    """Whether `spot` (slab, start) starts where the previous member's bytes end."""
    return (prev is None and spot is None) or (
        prev is not None and spot is not None and prev[0] is spot[0]
        and prev[1] + prev_len == spot[1])


def _rows_batch(rows: list[dict[str, Any]], spots: list[Any]) -> pa.RecordBatch:
    """The rows as a record batch; their video bytes, when they lie end to end in one slab,
    become an Arrow array over the slab itself (no copy)."""
    if spots[0] is None:
        return rows_to_batch(rows)
    import numpy as np

    slab, start = spots[0]
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(r["video"]) for r in rows], out=offsets[1:])
    video = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(rows),
        [None, pa.py_buffer(offsets), pa.py_buffer(slab[start:start + int(offsets[-1])])])
    return rows_to_batch(rows, video=video)


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
