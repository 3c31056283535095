"""HTTP range requests over a seekable file-like object (a Lance blob), per RFC 9110 §14.

Browsers seek in a <video> by asking for byte ranges (``Range: bytes=123-``); the server
answers 206 with ``Content-Range`` and only those bytes. One range per request is served;
a request for several ranges gets the whole file (200), which RFC 9110 allows and every
browser handles. A range that starts past the end is 416 with ``Content-Range: bytes */size``.
Validators: the ETag is the clip's sha256 (strong), so ``If-None-Match`` gives 304 and
``If-Range`` with a stale tag gives the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

CHUNK = 256 * 1024
_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class RangeNotSatisfiable(ValueError):
    pass


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a ``Range`` header asks for, or None to send the whole body.

    None also for headers this server ignores (another unit, several ranges, bad syntax),
    as RFC 9110 lets a server ignore Range; `RangeNotSatisfiable` when no byte of the
    asked range exists.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None
    m = _SPEC.match(spec)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None  # syntactically invalid: ignore the header
        if start >= size:
            raise RangeNotSatisfiable(f"range starts at {start}, the body has {size} bytes")
        return ByteRange(start, min(end, size - 1))
    suffix = int(last)
    if suffix == 0 or size == 0:
        raise RangeNotSatisfiable("empty suffix range")
    return ByteRange(max(0, size - suffix), size - 1)


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches `etag` (weak comparison, ``*`` matches)."""
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    bare = etag.removeprefix("W/")
    return any(t == "*" or t.removeprefix("W/") == bare for t in tags)


def if_range_allows(header: str | None, etag: str) -> bool:
    """``If-Range``: honour Range only while the client's validator is still current.

    Dates are not compared (the ETag is the strong validator here), so a date sends the
    whole body, which is always correct."""
    if not header:
        return True
    return header.strip() == etag


def iter_file(f: Any, start: int, length: int, chunk: int = CHUNK, *, close: bool = True
              ) -> Iterator[bytes]:
    """Read `length` bytes of `f` from `start`, in chunks; closes `f` at the end if `close`.

    A Lance `BlobFile` reads each chunk with ``read_range`` (one positioned read, no
    read-ahead buffer); any other file object with seek/read."""
    try:
        pos, left = start, length
        ranged = getattr(f, "read_range", None)
        if ranged is None:
            f.seek(start)
        while left > 0:
            n = min(chunk, left)
            data = ranged(pos, n) if ranged is not None else f.read(n)
            if not data:
                raise OSError(f"the stored video ended {left} bytes early")
            pos += len(data)
            left -= len(data)
            yield data
    finally:
        if close and hasattr(f, "close"):
            f.close()


def sniff_video_type(head: bytes) -> str:
    """The media type of a clip from its first bytes (ISO BMFF, Matroska/WebM)."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    return "application/octet-stream"


def sniff_image_type(head: bytes) -> str | None:
    if head[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None
