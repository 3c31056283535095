"""Small JPEG previews for the ``thumbnail`` column (a few KB, not a blob)."""

from __future__ import annotations

import io
import threading
from typing import Any

from . import _deps

THUMB_MAX = 128
THUMB_QUALITY = 80
_local = threading.local()


def _reformatter() -> Any:
    """One VideoReformatter per thread: it keeps its scaler between calls of the same shape,
    where `frame.reformat` builds a new one for every frame."""
    r = getattr(_local, "reformatter", None)
    if r is None:
        from av.video.reformatter import VideoReformatter

        r = _local.reformatter = VideoReformatter()
    return r


def thumbnail(frame: Any, max_side: int = THUMB_MAX, quality: int = THUMB_QUALITY) -> bytes:
    """JPEG bytes of an av.VideoFrame (or RGB ndarray), scaled to fit max_side x max_side
    (area averaging: the right filter for shrinking, and the cheapest here)."""
    image_mod = _deps.pil_image()
    if hasattr(frame, "reformat"):
        w, h = frame.width, frame.height
        scale = min(1.0, max_side / max(w, h))
        tw, th = max(2, int(round(w * scale))), max(2, int(round(h * scale)))
        # threads=1: clips are thumbnailed in parallel already; swscale's own slice threads
        # (its default) cost more in hand-offs than they save on a frame this small
        rgb = _reformatter().reformat(frame, width=tw, height=th, format="rgb24",
                                      interpolation="AREA", threads=1).to_ndarray()
    else:
        rgb = frame
    im = image_mod.fromarray(rgb)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
