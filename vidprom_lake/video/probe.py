"""Probing mp4 bytes into the ``videos`` columns, and checking that they decode.

The default check (``verify="first-frame"``) proves that every sample the container promises
is present (so a truncated file is caught) and that the first frame decodes (the thumbnail
comes from it). ``verify="full"`` decodes every frame instead, at a cost of roughly 10-50x;
``verify="index"`` decodes nothing and checks the first sample's bitstream framing instead.

Two ways to make that check, with the same answers:

* the fast path, for plain MP4/MOV files in H.264, HEVC, VP9 or AV1: `mp4box.read_movie`
  reads the ``moov`` box (codec, configuration, sample sizes and offsets, timing), every
  sample's byte range is checked against the file size, and a bare decoder fed the codec
  configuration decodes the first sample. No container is opened, so FFmpeg's stream-info
  probe (which decodes frames itself) and the packet-by-packet demux through Python are skipped.
* FFmpeg (PyAV): open the container, demux every packet (fewer packets than promised, or a
  demux error, means truncated), decode the first frame. Used for every other container and
  codec, for files the fast path cannot read (fragmented MP4, unusual edit lists, anything
  malformed), and for ``verify="full"``. A file the fast path rejects is always re-checked here,
  so the verdict and the error message on a bad file are FFmpeg's.
"""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass
from typing import Any

from . import _deps


class ProbeError(Exception):
    """The bytes are not a decodable video; `reason` is one of empty, not-video, corrupt."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Probe:
    codec: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration_s: float
    bytes: int
    sha256: str
    first_frame: Any = None  # av.VideoFrame, for the thumbnail
    method: str = "ffmpeg"  # "moov" when the fast path answered (not a column)

    def columns(self) -> dict[str, Any]:
        return {
            "codec": self.codec, "width": self.width, "height": self.height, "fps": self.fps,
            "num_frames": self.num_frames, "duration_s": self.duration_s, "bytes": self.bytes,
            "sha256": self.sha256,
        }


MP4_BRANDS = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


#: Demuxer hints by file extension: skipping FFmpeg's format probing saves ~1/3 of a probe.
FORMAT_HINTS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
                ".webm": "matroska"}


#: mp4 sample entry -> the FFmpeg decoder PyAV picks for that codec (its name is the `codec`
#: column). Others (mpeg4, mjpeg, prores, ...) go through FFmpeg's own probe.
FAST_DECODERS = {"avc1": "h264", "avc3": "h264", "hvc1": "hevc", "hev1": "hevc",
                 "vp09": "vp9", "av01": "libdav1d"}


#: How much of a clip is checked: ``index`` (every sample present, the first sample well
#: framed; no decoding), ``first-frame`` (also decode the first frame; the default), ``full``
#: (decode every frame).
VERIFY_LEVELS = ("index", "first-frame", "full")


def probe_bytes(data: bytes | memoryview, *, verify: str = "first-frame", keep_frame: bool = True,
                format: str | None = None, fast: bool = True) -> Probe:
    """Probe mp4 (or any FFmpeg-readable video) bytes; raises ProbeError if they don't decode.

    `verify` is one of `VERIFY_LEVELS`. `format` is a demuxer hint (``"mp4"``); if the bytes
    are something else, FFmpeg's own format detection gets a second try, so a wrong hint costs
    time, never a wrong answer. With `fast` (the default) a plain MP4/MOV is checked from its
    ``moov`` box (see the module docstring); ``fast=False`` or ``verify="full"`` always opens
    the container with FFmpeg. ``index`` applies to the fast path only: a file it cannot
    check that way gets FFmpeg's ``first-frame`` check. With ``index`` no frame is decoded,
    so `Probe.first_frame` is None and width and height come from the sample description.
    """
    if verify not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {', '.join(VERIFY_LEVELS)}, not {verify!r}")
    if not len(data):
        raise ProbeError("empty", "0 bytes")
    if fast and verify != "full" and bytes(data[4:8]) in MP4_BRANDS:
        pr = probe_moov(data, keep_frame=keep_frame, decode=verify == "first-frame")
        if pr is not None:
            return pr
    return _probe_ffmpeg(data, full=verify == "full", keep_frame=keep_frame, format=format)


def probe_moov(data: bytes | memoryview, *, keep_frame: bool = True,
               decode: bool = True) -> Probe | None:
    """The fast path: a Probe from the ``moov`` box and (with `decode`) the first sample
    decoded, or None when this file needs FFmpeg's probe (not a plain MP4, another codec,
    malformed, truncated, or the first sample does not decode or frame: FFmpeg then gives
    the verdict). Without `decode`, H.264/HEVC first samples are checked for framing only
    (`mp4box.check_first_sample`); other codecs are decoded anyway."""
    from . import mp4box

    try:
        movie = mp4box.read_movie(data)
        track = movie.video_track()
    except mp4box.BoxError:
        return None
    decoder = FAST_DECODERS.get(track.fourcc)
    if decoder is None or (track.config is None and decoder != "vp9"):
        return None
    duration = _simple_duration(movie, track)
    if duration is None or track.stts_duration <= 0:
        return None
    first = None
    if decode or mp4box.check_first_sample(data, track) is not None:
        first = _decode_first(data, track, decoder)
        if first is None:
            return None
        width, height = int(first.width), int(first.height)
    else:
        width, height = track.entry_width, track.entry_height
        if not (width and height):
            return None
    fps = track.timescale * track.sample_count / track.stts_duration
    return Probe(
        codec=decoder, width=width, height=height, fps=round(fps, 4),
        num_frames=track.sample_count, duration_s=round(duration, 4), bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(), first_frame=first if keep_frame else None,
        method="moov",
    )


def _simple_duration(movie: Any, track: Any) -> float | None:
    """The stream duration FFmpeg reports, in seconds, for the edit lists writers actually
    produce (none, or one edit at normal rate that keeps every frame and starts at the first
    presented frame, as for B-frames); None for anything else (FFmpeg then decides)."""
    ts = track.timescale
    if not track.edits:
        return track.stts_duration / ts if track.media_duration == track.stts_duration else None
    if len(track.edits) != 1:
        return None
    seg, media_time, rate = track.edits[0]
    if rate != 0x10000 or media_time != track.cts_min or seg <= 0:
        return None
    # the edit must keep every frame: its length (movie timescale) may fall short of the
    # frames' span only by the rounding of one movie tick
    span = track.cts_end - track.cts_min
    if seg * ts + ts < span * movie.timescale:
        return None
    return track.stts_duration / ts


_local = threading.local()


def _decode_first(data: bytes | memoryview, track: Any, decoder: str) -> Any:
    """Decode the first sample with a bare decoder given the codec configuration.

    Each thread keeps its last decoder and reuses it (after a flush, which empties its
    reference frames) for the next clip with the same codec configuration, as the clips of
    one generator have: opening a decoder costs about a third of decoding one keyframe.
    A decoder that failed is not reused.
    """
    av = _deps.av()
    key = (decoder, track.config)
    cached = getattr(_local, "decoder", None)
    if cached is not None and cached[0] == key:
        ctx = cached[1]
    else:
        _local.decoder = None
        try:
            ctx = av.CodecContext.create(decoder, "r")
        except (av.FFmpegError, ValueError):
            return None  # decoder not in this FFmpeg build
        if track.config:
            ctx.extradata = track.config
        ctx.thread_count = 1  # clips are probed in parallel; one frame needs no threads
    try:
        off, size = int(track.offsets[0]), int(track.sizes[0])
        frames = ctx.decode(av.Packet(bytes(memoryview(data)[off:off + size])))
        if not frames:
            frames = ctx.decode(None)
        ctx.flush_buffers()
    except av.FFmpegError:
        _local.decoder = None
        return None
    _local.decoder = (key, ctx)
    return frames[0] if frames else None


def _probe_ffmpeg(data: bytes | memoryview, *, full: bool, keep_frame: bool,
                  format: str | None) -> Probe:
    av = _deps.av()
    container = None
    if format:
        try:
            container = av.open(io.BytesIO(data), mode="r", format=format,
                                metadata_errors="replace")
        except av.FFmpegError:
            container = None
    if container is None:
        try:
            container = av.open(io.BytesIO(data), mode="r", metadata_errors="replace")
        except av.FFmpegError as exc:
            kind = "corrupt" if bytes(data[4:8]) in MP4_BRANDS else "not-video"
            raise ProbeError(kind, f"cannot open: {exc}") from None
    try:
        if not container.streams.video:
            if not container.streams and bytes(data[4:8]) in MP4_BRANDS:
                raise ProbeError("corrupt", "an mp4 header but no readable streams (truncated?)")
            raise ProbeError("not-video", "no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:  # FFmpeg has no decoder for it (or the header that names it is cut)
            kind = "corrupt" if bytes(data[4:8]) in MP4_BRANDS else "not-video"
            raise ProbeError(kind, "no decoder for the video stream (its header is cut or "
                                   "names a codec this FFmpeg cannot decode)")
        first = None
        packets = 0
        frames = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0 and packet.dts is None:
                    continue  # the flush packet
                packets += 1
                if packet.is_corrupt:  # the demuxer read fewer bytes than the index promised
                    raise ProbeError("corrupt", f"truncated: packet {packets} is cut short")
                if first is None or full:
                    for frame in packet.decode():
                        frames += 1
                        if first is None:
                            first = frame
            if first is None or full:
                for frame in stream.codec_context.decode(None):
                    frames += 1
                    if first is None:
                        first = frame
        except av.FFmpegError as exc:
            raise ProbeError("corrupt", f"decode failed after {packets} packets: {exc}") from None
        if first is None:
            raise ProbeError("corrupt", f"no frame decodes ({packets} packets)")
        promised = stream.frames or 0
        if promised and packets < promised:
            raise ProbeError("corrupt", f"truncated: {packets} of {promised} frames present")
        num_frames = frames if full else (promised or packets)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = num_frames / fps if fps else 0.0
        return Probe(
            codec=ctx.name, width=int(ctx.width or first.width),
            height=int(ctx.height or first.height), fps=round(fps, 4),
            num_frames=int(num_frames), duration_s=round(duration, 4), bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(), first_frame=first if keep_frame else None,
        )
    finally:
        container.close()
