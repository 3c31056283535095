"""Encoding frames to H.264 MP4 with PyAV (libx264, yuv420p, faststart).

``+faststart`` moves the ``moov`` atom to the front so players (and our probe) can start before
the whole file arrives. FFmpeg implements it as a second pass that reopens the output *by file
name*, so encoding goes through a temporary file and returns its bytes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import VidlakeError
from . import _deps


@dataclass(frozen=True)
class EncodeParams:
    """How a clip was encoded; stored in the video's ``params`` JSON."""

    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    crf: int = 18
    preset: str = "medium"
    movflags: str = "+faststart"
    fps: float = 8.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_uint8_frames(frames: Any) -> np.ndarray:
    """Pipeline output for one video -> (T, H, W, 3) uint8.

    Accepts numpy or torch arrays in [0, 1] floats or uint8, channel-last or channel-first
    (T, 3, H, W), and lists of PIL images.
    """
    if isinstance(frames, list | tuple) and frames and hasattr(frames[0], "convert"):
        frames = np.stack([np.asarray(im.convert("RGB")) for im in frames])
    if hasattr(frames, "detach"):  # torch tensor
        frames = frames.detach().float().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim != 4:
        raise VidlakeError(f"expected video frames shaped (T, H, W, C), got {arr.shape}")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[1] in (1, 3, 4):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.dtype != np.uint8:
        arr = np.clip(np.nan_to_num(arr.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def encode_mp4(frames: Any, params: EncodeParams | None = None) -> bytes:
    """Encode frames (see `to_uint8_frames`) to H.264 MP4 bytes.

    yuv420p needs even sides: an odd width or height is padded by repeating the edge pixel.
    """
    av = _deps.av()
    p = params or EncodeParams()
    arr = to_uint8_frames(frames)
    t, h, w, _ = arr.shape
    if t == 0:
        raise VidlakeError("cannot encode a video with no frames")
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        t, h, w, _ = arr.shape
    from fractions import Fraction

    rate = Fraction(p.fps).limit_denominator(1001)
    fd, path = tempfile.mkstemp(prefix="vidlake-", suffix=".mp4")
    os.close(fd)
    try:
        with av.open(path, "w", format="mp4", options={"movflags": p.movflags}) as out:
            stream = out.add_stream(p.codec, rate=rate)
            stream.width = w
            stream.height = h
            stream.pix_fmt = p.pix_fmt
            stream.options = {"crf": str(p.crf), "preset": p.preset}
            for i in range(t):
                frame = av.VideoFrame.from_ndarray(arr[i], format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)
