"""Small JPEG previews for the ``thumbnail`` column (a few KB, not a blob).

A decoded frame is scaled and encoded by FFmpeg (swscale to full-range YUV 4:2:0 at the
thumbnail size, then FFmpeg's JPEG encoder), in one thread, with the scaler and the encoder
kept per thread and size. Both calls release the GIL, so thumbnails of clips made in parallel
threads really run in parallel; the former path (RGB through Pillow) held the GIL in Python
for about as long as FFmpeg worked, and cost about twice the CPU. Arrays (not av frames) and
frame sizes the encoder refuses still go through Pillow.
"""

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


def _qscale(quality: int) -> int:
    """Pillow-style quality (1-95) as FFmpeg's JPEG quantiser scale (2 best .. 31 worst);
    80 -> 4 gives files of about the size Pillow writes at 80."""
    return max(2, min(31, round((100 - quality) / 5)))


def _encoder(width: int, height: int, quality: int) -> Any:
    """This thread's JPEG encoder for the size (opened once; an encoder is reusable)."""
    cache = getattr(_local, "encoders", None)
    if cache is None:
        cache = _local.encoders = {}
    key = (width, height, quality)
    enc = cache.get(key)
    if enc is None:
        from fractions import Fraction

        av = _deps.av()
        enc = av.CodecContext.create("mjpeg", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuvj420p"
        enc.time_base = Fraction(1, 25)
        enc.thread_count = 1
        enc.qmin = enc.qmax = _qscale(quality)
        enc.options = {"huffman": "default"}  # one pass: "optimal" re-reads every block
        enc.open()
        if len(cache) > 8:
            cache.clear()
        cache[key] = enc
    return enc


def thumbnail(frame: Any, max_side: int = THUMB_MAX, quality: int = THUMB_QUALITY) -> bytes:
    """JPEG bytes of an av.VideoFrame (or RGB ndarray), scaled to fit max_side x max_side
    (area averaging: the right filter for shrinking, and the cheapest here)."""
    if hasattr(frame, "reformat"):
        w, h = frame.width, frame.height
        scale = min(1.0, max_side / max(w, h))
        tw, th = max(2, int(round(w * scale))), max(2, int(round(h * scale)))
        # threads=1: clips are thumbnailed in parallel already; swscale's own slice threads
        # (its default) cost more in hand-offs than they save on a frame this small
        av = _deps.av()
        try:
            small = _reformatter().reformat(frame, width=tw, height=th, format="yuvj420p",
                                            interpolation="AREA", dst_color_range="JPEG",
                                            threads=1)
            packets = _encoder(tw, th, quality).encode(small)
            if packets:
                return bytes(packets[0])
        except (av.FFmpegError, ValueError):
            _local.encoders = None  # never reuse an encoder that failed
        rgb = _reformatter().reformat(frame, width=tw, height=th, format="rgb24",
                                      interpolation="AREA", threads=1).to_ndarray()
    else:
        rgb = frame
    image_mod = _deps.pil_image()
    im = image_mod.fromarray(rgb)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
