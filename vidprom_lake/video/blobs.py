"""Reading video bytes back through Lance's blob API (never through SQL).

`open_video` finds the row of (uuid, model) with a filtered scan of the small ``video_id``
column, then `take_blobs` hands back a `lance.BlobFile`: a seekable, read-only file object
that `av.open` decodes directly without copying the whole clip first. Bulk export copies each
clip over 64 KB inside the kernel from the file Lance keeps it in (`_Sidecars`, checked
against Lance's own read before use), as a plain file copy does; smaller ones are read into a
reused per-thread buffer and written from there; two threads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, VidlakeError
from ..export import safe_key
from ..schema import VIDEO_BLOB_COLUMN
from . import _deps

if TYPE_CHECKING:
    from ..lake import Lake


class VideoNotFound(VidlakeError):
    """No video for that uuid and model."""


UUID_PREFIX = re.compile(r"^[0-9a-fA-F-]{4,36}$")
def _q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def find_video(lake: Lake, uuid: str, model: str) -> dict[str, Any]:
    """The row (without bytes) of one video, plus its ``_rowid``.

    `uuid` may be a unique prefix (at least 4 characters), as printed in shortened listings.
    """
    uuid = uuid.strip().rstrip("…").rstrip(".")
    if not UUID_PREFIX.match(uuid):
        raise InputError(f"not a uuid or uuid prefix: {uuid!r}")
    ds = lake.dataset("videos")
    cols = [f.name for f in ds.schema if f.name not in (VIDEO_BLOB_COLUMN, "thumbnail")]
    if len(uuid) == 36:
        flt = f"video_id = {_q(f'{model}-{uuid.lower()}')}"
    else:
        flt = f"model = {_q(model)} AND starts_with(uuid, {_q(uuid.lower())})"
    t = ds.to_table(columns=cols, filter=flt, with_row_id=True, limit=2)
    if t.num_rows == 0:
        models = sorted(set(ds.to_table(columns=["model"], filter=(
            f"uuid = {_q(uuid.lower())}" if len(uuid) == 36
            else f"starts_with(uuid, {_q(uuid.lower())})")).column("model").to_pylist()))
        hint = f"; that uuid has videos from: {', '.join(models)}" if models else ""
        raise VideoNotFound(f"no video for uuid {uuid} and model {model!r} in {lake.uri}{hint}")
    if t.num_rows > 1:
        raise InputError(f"uuid prefix {uuid!r} matches several videos of {model!r}; give more of it")
    return t.to_pylist()[0]


def open_video(lake: Lake, uuid: str, model: str) -> Any:
    """A read-only, seekable file-like object over the stored mp4 (`av.open(f)` reads it)."""
    return _blob(lake, find_video(lake, uuid, model))


def _blob(lake: Lake, row: dict[str, Any]) -> Any:
    blobs = lake.dataset("videos").take_blobs(VIDEO_BLOB_COLUMN, ids=[row["_rowid"]])
    if not blobs or blobs[0] is None:
        raise VideoNotFound(f"video {row['video_id']} has no bytes stored")
    return blobs[0]


def read_video(lake: Lake, uuid: str, model: str) -> bytes:
    with open_video(lake, uuid, model) as f:
        return f.read()


def save_video(lake: Lake, uuid: str, model: str, output: str | os.PathLike[str]) -> dict[str, Any]:
    """Write one video to `output` ('-' for stdout); returns its metadata row."""
    import shutil
    import sys

    row = find_video(lake, uuid, model)
    with _blob(lake, row) as src:
        if str(output) == "-":
            shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        else:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            with open(output, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    row.pop("_rowid", None)
    row["output"] = str(output)
    return row


@dataclass
class ExportReport:
    out_dir: str
    videos: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped_existing: int = 0
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"out_dir": self.out_dir, "videos": self.videos, "bytes": self.bytes,
                "skipped_existing": self.skipped_existing, "seconds": round(self.seconds, 3)}


def export_videos(
    lake: Lake,
    out_dir: str | os.PathLike[str],
    *,
    model: str | None = None,
    where: str | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    chunk: int = 64,
    progress: Any = None,
) -> ExportReport:
    """Write videos to ``out_dir/{model}-{uuid}.mp4`` (see `export.safe_key` for unusual model names).

    `where` is a Lance (DataFusion SQL) filter over the videos columns, e.g.
    ``"duration_s > 2 AND width >= 512"``. Existing files are kept unless `overwrite`.
    """
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = lake.dataset("videos")
    parts = []
    if model:
        parts.append(f"model = {_q(model)}")
    if where:
        parts.append(f"({where})")
    try:
        t = ds.to_table(columns=["video_id", VIDEO_BLOB_COLUMN], filter=" AND ".join(parts) or None,
                        with_row_id=True, with_row_address=True, limit=limit)
    except (ValueError, OSError) as exc:
        raise InputError(f"bad --where filter {where!r}: {exc}") from None
    report = ExportReport(str(out))
    todo = []
    for row in zip(t.column("_rowid").to_pylist(), t.column("_rowaddr").to_pylist(),
                   t.column("video_id").to_pylist(), _descriptions(t.column(VIDEO_BLOB_COLUMN)),
                   strict=True):
        if not overwrite and (out / f"{safe_key(row[2], dots=True)}.mp4").exists():
            report.skipped_existing += 1
        else:
            todo.append(row)
    sidecars = _Sidecars(lake, ds)
    local = threading.local()

    def export_part(part: list[tuple[Any, ...]]) -> list[tuple[str, int]]:
        """Write each video of `part`; (path, size) each. A blob in a sidecar file that
        checked out is copied by the kernel from that file; any other is read through
        Lance into this thread's reused buffer."""
        done = []
        via_lance = []
        for rid, addr, name, desc in part:
            placed = sidecars.find(rid, addr, desc)
            if placed is None:
                via_lance.append((rid, name))
                continue
            path = out / f"{safe_key(name, dots=True)}.mp4"
            _write_file(path, lambda fd, p=placed: _copy_range(p[0], p[1], p[2], fd))
            done.append((str(path), placed[2]))
        if via_lance:
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = bytearray(1 << 20)
            blobs = ds.take_blobs(VIDEO_BLOB_COLUMN, ids=[r for r, _ in via_lance])
            for (_, name), blob in zip(via_lance, blobs, strict=True):
                if blob is None:
                    continue
                with blob:
                    size = blob.size()
                    if size > len(buf):
                        buf = local.buf = bytearray(size + (size >> 2))
                    view = _read_whole(blob, buf, size)
                path = out / f"{safe_key(name, dots=True)}.mp4"
                _write_file(path, lambda fd, v=view: _write_all(fd, v))
                done.append((str(path), size))
        return done

    # Two threads each export a part (the kernel copies, Lance's reads and the file writes
    # all release the GIL); parts finish in order for the report.
    pieces = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    try:
        with ThreadPoolExecutor(min(2, os.cpu_count() or 1),
                                thread_name_prefix="vidlake-export") as ex:
            for finished, done in enumerate(ex.map(export_part, pieces), start=1):
                for path, size in done:
                    report.videos += 1
                    report.bytes += size
                    report.files.append(path)
                if progress:
                    progress(min(finished * chunk, len(todo)), len(todo))
    finally:
        sidecars.close()
    report.seconds = time.perf_counter() - t0
    return report


def _descriptions(col: Any) -> list[tuple[int, ...] | None]:
    """(kind, position, size, blob_id) of each row of a blob v2 column read as a table
    (Lance returns descriptions, not bytes); None for a null or where there are none."""
    import pyarrow as pa

    arr = col.combine_chunks()
    if not pa.types.is_struct(arr.type) or {"kind", "position", "size", "blob_id"} - {
            arr.type.field(i).name for i in range(arr.type.num_fields)}:
        return [None] * len(arr)
    valid = arr.is_valid().to_pylist()
    cols = [arr.field(k).to_pylist() for k in ("kind", "position", "size", "blob_id")]
    return [tuple(d) if ok else None for ok, *d in zip(valid, *cols, strict=True)]


def _write_file(path: Path, fill: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        fill(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def _copy_range(src: int, pos: int, size: int, dst: int) -> None:
    """Copy `size` bytes at `pos` of `src` to `dst` inside the kernel."""
    while size:
        n = os.copy_file_range(src, dst, size, pos)
        if n <= 0:
            raise VidlakeError(f"blob sidecar ended {size:,} bytes early")
        pos += n
        size -= n


#: Blob v2 kinds whose bytes lie in a sidecar file of their own (packed: several blobs
#: end to end; dedicated: one). Inline blobs (<= 64 KB) sit inside the data file.
SIDECAR_KINDS = (1, 2)


def sidecar_name(blob_id: int) -> str:
    """Lance 14's file name for sidecar `blob_id` of a data file: its 32 bits reversed."""
    return f"{int(f'{blob_id:032b}'[::-1], 2):032b}.blob"


class _Sidecars:
    """The files in which Lance (blob v2) keeps the bytes of blobs over 64 KB, so a bulk
    export can copy them inside the kernel, as a plain file copy does, instead of through
    Lance's reader and a buffer (a third of the CPU on 2,000 clips of 430 KB).

    Lance 14 names them ``data/<data file stem>/<blob id, its 32 bits reversed, in binary>.blob``.
    That is its private layout, so each file is checked before it is used: it must exist
    and the first blob asked of it must hold, byte for byte, what Lance itself reads for that
    row; where either fails (another Lance version, a remote lake, no
    ``os.copy_file_range``), every row of that file goes through Lance's reader instead.
    """

    def __init__(self, lake: Lake, ds: Any):
        import threading

        from .. import storage

        self.ds = ds
        self.usable = hasattr(os, "copy_file_range") and not storage.is_remote(lake.uri)
        self.data = os.path.join(lake.table_uri("videos"), "data")
        self.stems: dict[int, str] | None = None
        self.files: dict[tuple[int, int], tuple[int, int] | None] = {}  # -> (fd, file size)
        self.lock = threading.Lock()

    def find(self, rid: int, addr: int, desc: Any) -> tuple[int, int, int] | None:
        """(fd, position, size) of the row's bytes in a checked sidecar, or None."""
        if not self.usable or desc is None or desc[0] not in SIDECAR_KINDS:
            return None
        _, pos, size, blob_id = desc
        key = (addr >> 32, blob_id)
        with self.lock:
            if key not in self.files:
                self.files[key] = self._open(key, rid, pos, size)
            opened = self.files[key]
        if opened is None or pos + size > opened[1]:
            return None
        return opened[0], pos, size

    def _open(self, key: tuple[int, int], rid: int, pos: int, size: int) -> tuple[int, int] | None:
        if self.stems is None:
            field = self.ds.schema.get_field_index(VIDEO_BLOB_COLUMN)
            self.stems = {f.fragment_id: os.path.splitext(d.path)[0]
                          for f in self.ds.get_fragments() for d in f.data_files()
                          if field in d.fields}
        stem = self.stems.get(key[0])
        if stem is None:
            return None
        try:
            fd = os.open(os.path.join(self.data, stem, sidecar_name(key[1])), os.O_RDONLY)
        except OSError:
            return None
        try:
            length = os.fstat(fd).st_size
            with self.ds.take_blobs(VIDEO_BLOB_COLUMN, ids=[rid])[0] as blob:
                theirs = blob.read()
            if pos + size <= length and os.pread(fd, size, pos) == theirs:
                return fd, length
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            pass
        os.close(fd)
        return None

    def close(self) -> None:
        for opened in self.files.values():
            if opened is not None:
                os.close(opened[0])
        self.files.clear()


def _read_whole(blob: Any, buf: bytearray, size: int) -> memoryview:
    """The blob's bytes as a view of `buf` (at least `size` long), read without allocating:
    `BlobFile.readinto` copies through a temporary unless the buffer is exactly the blob's
    size, so its inner reader's ``read_into`` (which fills a bytearray) is used directly."""
    read_into = getattr(getattr(blob, "inner", None), "read_into", None)
    n = read_into(buf) if read_into is not None else 0
    if n != size:  # no inner reader, or a short read: plain read of what is left
        rest = blob.read()
        buf[n:n + len(rest)] = rest
        n += len(rest)
    if n != size:
        raise VidlakeError(f"blob read returned {n:,} of {size:,} bytes")
    return memoryview(buf)[:n]


def extract_frames(
    lake: Lake,
    uuid: str,
    model: str,
    out_dir: str | os.PathLike[str],
    *,
    every: int = 1,
    limit: int | None = None,
) -> list[str]:
    """Decode the video and write every `every`-th frame as PNG; returns the paths written."""
    av = _deps.av()
    _deps.pil_image()
    if every < 1:
        raise InputError(f"--every must be >= 1, not {every}")
    row = find_video(lake, uuid, model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with _blob(lake, row) as f, av.open(f) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every:
                continue
            path = out / f"{safe_key(row['video_id'], dots=True)}_{i:05d}.png"
            frame.to_image().save(path, format="PNG")
            written.append(str(path))
            if limit and len(written) >= limit:
                break
    return written
