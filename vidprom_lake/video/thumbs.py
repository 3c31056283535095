"""Small JPEG previews for the ``thumbnail`` column (a few KB, not a blob)."""

from __future__ import annotations

import io
from typing import Any

from . import _deps

THUMB_MAX = 128
THUMB_QUALITY = 80


def thumbnail(frame: Any, max_side: int = THUMB_MAX, quality: int = THUMB_QUALITY) -> bytes:
    """JPEG bytes of an av.VideoFrame (or RGB ndarray), scaled to fit max_side x max_side."""
    image_mod = _deps.pil_image()
    if hasattr(frame, "reformat"):
        w, h = frame.width, frame.height
        scale = min(1.0, max_side / max(w, h))
        tw, th = max(2, int(round(w * scale))), max(2, int(round(h * scale)))
        rgb = frame.reformat(width=tw, height=th, format="rgb24").to_ndarray()
    else:
        rgb = frame
    im = image_mod.fromarray(rgb)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
