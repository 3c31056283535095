"""Reading video bytes back through Lance's blob API (never through SQL).

`open_video` finds the row of (uuid, model) with a filtered scan of the small ``video_id``
column, then `take_blobs` hands back a `lance.BlobFile`: a seekable, read-only file object
that `av.open` decodes directly without copying the whole clip first. Bulk export reads each
blob into a reused per-thread buffer (no new memory per clip) and writes it from there, on
two threads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, VidlakeError
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
    """Write videos to ``out_dir/{model}-{uuid}.mp4``.

    `where` is a Lance (DataFusion SQL) filter over the videos columns, e.g.
    ``"duration_s > 2 AND width >= 512"``. Existing files are kept unless `overwrite`.
    """
    import time

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
        t = ds.to_table(columns=["video_id"], filter=" AND ".join(parts) or None,
                        with_row_id=True, limit=limit)
    except (ValueError, OSError) as exc:
        raise InputError(f"bad --where filter {where!r}: {exc}") from None
    ids = t.column("_rowid").to_pylist()
    names = t.column("video_id").to_pylist()
    report = ExportReport(str(out))
    todo = []
    for rid, name in zip(ids, names, strict=True):
        if not overwrite and (out / f"{name}.mp4").exists():
            report.skipped_existing += 1
        else:
            todo.append((rid, name))
    import threading
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()

    def export_part(part: list[tuple[int, str]]) -> list[tuple[str, int]]:
        """Read each blob into this thread's buffer and write it out; (path, size) each."""
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = bytearray(1 << 20)
        done = []
        blobs = ds.take_blobs(VIDEO_BLOB_COLUMN, ids=[r for r, _ in part])
        for (_, name), blob in zip(part, blobs, strict=True):
            if blob is None:
                continue
            with blob:
                size = blob.size()
                if size > len(buf):
                    buf = local.buf = bytearray(size + (size >> 2))
                view = _read_whole(blob, buf, size)
            path = out / f"{name}.mp4"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            done.append((str(path), size))
        return done

    # Two threads each read a part into their own reused buffer and write it (Lance's reads
    # and the file writes both release the GIL); parts finish in order for the report.
    pieces = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    with ThreadPoolExecutor(min(2, os.cpu_count() or 1),
                            thread_name_prefix="vidlake-export") as ex:
        for finished, done in enumerate(ex.map(export_part, pieces), start=1):
            for path, size in done:
                report.videos += 1
                report.bytes += size
                report.files.append(path)
            if progress:
                progress(min(finished * chunk, len(todo)), len(todo))
    report.seconds = time.perf_counter() - t0
    return report


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
            path = out / f"{row['video_id']}_{i:05d}.png"
            frame.to_image().save(path, format="PNG")
            written.append(str(path))
            if limit and len(written) >= limit:
                break
    return written
