"""Reading the ``moov`` box of an MP4/MOV file directly: the probe's fast path.

FFmpeg's container open (``avformat_find_stream_info``) decodes frames to learn what the
``moov`` box already says, and demuxing every packet to catch truncation reads the whole file
through Python callbacks. For a plain (non-fragmented) MP4 both answers are in the sample
tables: the codec and its configuration (``stsd``), the sample count, sizes and file offsets
(``stsz``, ``stsc``, ``stco``/``co64``), the timing (``mdhd``, ``stts``, ``elst``). `read_movie`
parses them with numpy and checks that every sample lies inside the file, which is what the
packet-by-packet demux checked.

The parser is strict and small on purpose: anything it does not fully understand (fragmented
files, ``stz2``, a sample table that does not add up, a box that runs past its parent) raises
`BoxError`, and the caller falls back to FFmpeg. The input is untrusted: every size and count
is checked against the bytes that hold it before anything is allocated from it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Boxes whose payload is a list of boxes (on the path to the sample tables).
CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"})
MAX_SAMPLES = 50_000_000  # ~ 19 days at 30 fps; more is not a clip
MAX_TRACKS = 64


class BoxError(ValueError):
    """The bytes are not a plain MP4 this parser handles (malformed, truncated, or unusual)."""


@dataclass
class Track:
    track_id: int = 0
    handler: bytes = b""
    fourcc: str = ""  # sample entry type of the first sample description: avc1, hvc1, ...
    config: bytes | None = None  # codec configuration record (avcC, hvcC, av1C payload)
    entry_width: int = 0  # from the visual sample entry
    entry_height: int = 0
    timescale: int = 0  # mdhd
    media_duration: int = 0  # mdhd, in timescale units
    sample_count: int = 0
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sync: np.ndarray | None = None  # 1-based sync sample numbers (stss); None: all are sync
    stts_total: int = 0  # sum of stts sample counts
    stts_duration: int = 0  # sum of stts count x delta, in timescale units
    cts_min: int = 0  # earliest composition time (stts + ctts), in timescale units
    cts_end: int = 0  # latest composition time + that sample's duration
    edits: list[tuple[int, int, int]] = field(default_factory=list)  # (duration, media_time, rate)
    descriptions: int = 0  # stsd entry count
    description_index_max: int = 0  # highest sample description index stsc uses


@dataclass
class Movie:
    brand: str  # major brand from ftyp ("" when there is none, as in old QuickTime files)
    timescale: int  # mvhd
    duration: int  # mvhd, in its timescale
    tracks: list[Track]
    size: int  # bytes in the file

    def video_track(self) -> Track:
        for t in self.tracks:
            if t.handler == b"vide":
                return t
        raise BoxError("no video track")


# ---------------------------------------------------------------------- box walking
def _boxes(buf: memoryview, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes laid end to end in buf[start:end]."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise BoxError(f"{end - pos} stray bytes at offset {pos}")
        size, kind = struct.unpack_from(">I4s", buf, pos)
        head = 8
        if size == 1:
            if end - pos < 16:
                raise BoxError(f"box {kind!r} at {pos}: 64-bit size cut off")
            (size,) = struct.unpack_from(">Q", buf, pos + 8)
            head = 16
        elif size == 0:
            size = end - pos  # to the end of the enclosing box (or file)
        if size < head:
            raise BoxError(f"box {kind!r} at {pos}: size {size} is smaller than its header")
        if pos + size > end:
            raise BoxError(f"box {kind!r} at {pos}: {size} bytes declared, "
                           f"{end - pos} present (truncated?)")
        yield kind, pos + head, pos + size
        pos += size


def _full(buf: memoryview, start: int, end: int, need: int, kind: str) -> int:
    """Version byte of a full box whose fixed part needs `need` bytes after version/flags."""
    if end - start < 4 + need:
        raise BoxError(f"{kind} box too short ({end - start} bytes)")
    return int(buf[start])


def _u32_table(buf: memoryview, start: int, end: int, count: int, width: int,
               kind: str, dtype: Any = ">u4") -> np.ndarray:
    """`count` rows of `width` big-endian integers at buf[start:], checked against `end`."""
    item = np.dtype(dtype).itemsize
    need = count * width * item
    if count < 0 or start + need > end:
        raise BoxError(f"{kind}: {count} entries need {need} bytes, the box has {end - start}")
    arr = np.frombuffer(buf, dtype=dtype, count=count * width, offset=start)
    return arr.reshape(count, width) if width > 1 else arr


# ---------------------------------------------------------------------- parsing
def read_movie(data: bytes | bytearray | memoryview) -> Movie:
    """Parse the top level and the ``moov`` box of a non-fragmented MP4/MOV.

    Raises `BoxError` when the file is malformed, truncated (a box or a sample past the end of
    the file), fragmented, or uses table forms this parser leaves to FFmpeg.
    """
    buf = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    n = len(buf)
    brand = ""
    moov: tuple[int, int] | None = None
    saw_mdat = False
    for kind, start, end in _boxes(buf, 0, n):
        if kind == b"ftyp":
            if end - start >= 4:
                brand = bytes(buf[start:start + 4]).decode("latin-1").strip()
        elif kind == b"moov":
            if moov is not None:
                raise BoxError("two moov boxes")
            moov = (start, end)
        elif kind == b"mdat":
            saw_mdat = True
        elif kind in (b"moof", b"mfra", b"sidx"):
            raise BoxError(f"fragmented MP4 ({kind.decode('latin-1')} box)")
    if moov is None:
        raise BoxError("no moov box")
    if not saw_mdat:
        raise BoxError("no mdat box")
    timescale = duration = 0
    tracks: list[Track] = []
    for kind, start, end in _boxes(buf, *moov):
        if kind == b"mvhd":
            timescale, duration = _read_mvhd(buf, start, end)
        elif kind == b"trak":
            if len(tracks) >= MAX_TRACKS:
                raise BoxError(f"more than {MAX_TRACKS} tracks")
            tracks.append(_read_trak(buf, start, end, n))
        elif kind == b"mvex":
            raise BoxError("fragmented MP4 (mvex box)")
    if timescale <= 0:
        raise BoxError("no movie header (mvhd) or timescale 0")
    return Movie(brand=brand, timescale=timescale, duration=duration, tracks=tracks, size=n)


def _read_mvhd(buf: memoryview, start: int, end: int) -> tuple[int, int]:
    v = _full(buf, start, end, 16, "mvhd")
    if v == 1:
        if end - start < 4 + 28:
            raise BoxError("mvhd box too short")
        ts, dur = struct.unpack_from(">IQ", buf, start + 4 + 16)
    else:
        ts, dur = struct.unpack_from(">II", buf, start + 4 + 8)
    return ts, dur


def _read_trak(buf: memoryview, start: int, end: int, file_size: int) -> Track:
    t = Track()
    tables: dict[bytes, tuple[int, int]] = {}
    for kind, s, e in _boxes(buf, start, end):
        if kind == b"tkhd":
            v = _full(buf, s, e, 12, "tkhd")
            if v == 1:
                _full(buf, s, e, 20, "tkhd")
            t.track_id = struct.unpack_from(">I", buf, s + 4 + (16 if v == 1 else 8))[0]
        elif kind == b"edts":
            for k2, s2, e2 in _boxes(buf, s, e):
                if k2 == b"elst":
                    t.edits = _read_elst(buf, s2, e2)
        elif kind == b"mdia":
            for k2, s2, e2 in _boxes(buf, s, e):
                if k2 == b"mdhd":
                    v = _full(buf, s2, e2, 16, "mdhd")
                    if v == 1:
                        if e2 - s2 < 4 + 28:
                            raise BoxError("mdhd box too short")
                        t.timescale, t.media_duration = struct.unpack_from(">IQ", buf, s2 + 20)
                    else:
                        t.timescale, t.media_duration = struct.unpack_from(">II", buf, s2 + 12)
                elif k2 == b"hdlr":
                    _full(buf, s2, e2, 8, "hdlr")
                    t.handler = bytes(buf[s2 + 8:s2 + 12])
                elif k2 == b"minf":
                    for k3, s3, e3 in _boxes(buf, s2, e2):
                        if k3 == b"stbl":
                            for k4, s4, e4 in _boxes(buf, s3, e3):
                                if k4 in tables:
                                    raise BoxError(f"two {k4.decode('latin-1')} boxes in a track")
                                tables[k4] = (s4, e4)
    if t.handler != b"vide":
        return t  # only the video track's tables are read
    if t.timescale <= 0:
        raise BoxError(f"track {t.track_id}: no media header (mdhd) or timescale 0")
    if b"stz2" in tables:
        raise BoxError("compact sample sizes (stz2)")
    for need in (b"stsd", b"stts", b"stsc", b"stsz"):
        if need not in tables:
            raise BoxError(f"track {t.track_id}: no {need.decode()} box")
    if b"stco" not in tables and b"co64" not in tables:
        raise BoxError(f"track {t.track_id}: no chunk offsets (stco/co64)")
    _read_stsd(buf, *tables[b"stsd"], t)
    _read_samples(buf, tables, t, file_size)
    return t


def _read_elst(buf: memoryview, s: int, e: int) -> list[tuple[int, int, int]]:
    v = _full(buf, s, e, 4, "elst")
    (count,) = struct.unpack_from(">I", buf, s + 4)
    if v == 1:
        rows = _u32_table(buf, s + 8, e, count, 1, "elst", dtype=[
            ("d", ">u8"), ("m", ">i8"), ("r", ">i4")])
    else:
        rows = _u32_table(buf, s + 8, e, count, 1, "elst", dtype=[
            ("d", ">u4"), ("m", ">i4"), ("r", ">i4")])
    return [(int(r["d"]), int(r["m"]), int(r["r"])) for r in rows]


_VISUAL_ENTRY = 78  # bytes of a VisualSampleEntry before its child boxes
_CONFIG_BOXES = {b"avcC", b"hvcC", b"av1C", b"vpcC"}


def _read_stsd(buf: memoryview, s: int, e: int, t: Track) -> None:
    _full(buf, s, e, 4, "stsd")
    (t.descriptions,) = struct.unpack_from(">I", buf, s + 4)
    if t.descriptions < 1:
        raise BoxError("stsd has no sample description")
    for kind, s2, e2 in _boxes(buf, s + 8, e):
        t.fourcc = kind.decode("latin-1")
        if e2 - s2 < _VISUAL_ENTRY:
            raise BoxError(f"visual sample entry {t.fourcc!r} too short")
        t.entry_width, t.entry_height = struct.unpack_from(">HH", buf, s2 + 24)
        for k3, s3, e3 in _boxes(buf, s2 + _VISUAL_ENTRY, e2):
            if k3 in _CONFIG_BOXES:
                t.config = bytes(buf[s3:e3])
        return  # the first description is the one FFmpeg decodes with
    raise BoxError("stsd has no sample entry box")


def _read_samples(buf: memoryview, tables: dict[bytes, tuple[int, int]], t: Track,
                  file_size: int) -> None:
    # sizes
    s, e = tables[b"stsz"]
    _full(buf, s, e, 8, "stsz")
    const, count = struct.unpack_from(">II", buf, s + 4)
    if count == 0:
        raise BoxError("the video track has no samples")
    if count > MAX_SAMPLES or count > file_size:
        raise BoxError(f"stsz: {count} samples cannot fit in {file_size} bytes")
    if const:
        sizes = np.full(count, const, np.int64)
    else:
        sizes = _u32_table(buf, s + 12, e, count, 1, "stsz").astype(np.int64)
    t.sample_count = count
    # timing
    s, e = tables[b"stts"]
    _full(buf, s, e, 4, "stts")
    (n_stts,) = struct.unpack_from(">I", buf, s + 4)
    stts = _u32_table(buf, s + 8, e, n_stts, 2, "stts").astype(np.uint64)
    t.stts_total = int(stts[:, 0].sum()) if n_stts else 0
    if t.stts_total != count:
        raise BoxError(f"stts covers {t.stts_total} samples, stsz has {count}")
    t.stts_duration = int((stts[:, 0] * stts[:, 1]).sum())
    deltas = np.repeat(stts[:, 1].astype(np.int64), stts[:, 0].astype(np.int64))
    cts = np.cumsum(deltas) - deltas  # decode times
    if b"ctts" in tables:  # composition offsets (B-frames): signed in practice in both versions
        s, e = tables[b"ctts"]
        _full(buf, s, e, 4, "ctts")
        (n_ctts,) = struct.unpack_from(">I", buf, s + 4)
        ctts = _u32_table(buf, s + 8, e, n_ctts, 1, "ctts", dtype=[("n", ">u4"), ("o", ">i4")])
        runs = ctts["n"].astype(np.int64)
        if int(runs.sum()) != count:
            raise BoxError(f"ctts covers {int(runs.sum())} samples, stsz has {count}")
        cts = cts + np.repeat(ctts["o"].astype(np.int64), runs)
    t.cts_min = int(cts.min())
    t.cts_end = int((cts + deltas).max())
    # chunks
    if b"co64" in tables:
        s, e = tables[b"co64"]
        _full(buf, s, e, 4, "co64")
        (n_chunks,) = struct.unpack_from(">I", buf, s + 4)
        chunk_off = _u32_table(buf, s + 8, e, n_chunks, 1, "co64", dtype=">u8")
        if n_chunks and int(chunk_off.max()) > file_size:
            raise BoxError("co64: a chunk offset lies past the end of the file (truncated?)")
        chunk_off = chunk_off.astype(np.int64)
    else:
        s, e = tables[b"stco"]
        _full(buf, s, e, 4, "stco")
        (n_chunks,) = struct.unpack_from(">I", buf, s + 4)
        chunk_off = _u32_table(buf, s + 8, e, n_chunks, 1, "stco").astype(np.int64)
    if n_chunks == 0 or n_chunks > count:
        raise BoxError(f"{n_chunks} chunks for {count} samples")
    s, e = tables[b"stsc"]
    _full(buf, s, e, 4, "stsc")
    (n_stsc,) = struct.unpack_from(">I", buf, s + 4)
    stsc = _u32_table(buf, s + 8, e, n_stsc, 3, "stsc").astype(np.int64)
    if n_stsc == 0:
        raise BoxError("stsc has no entries")
    first = stsc[:, 0]
    per_chunk = stsc[:, 1]
    if first[0] != 1 or np.any(np.diff(first) <= 0) or first[-1] > n_chunks:
        raise BoxError("stsc: first-chunk numbers are not increasing from 1 within the chunks")
    if np.any(per_chunk < 1) or np.any(per_chunk > count):
        raise BoxError("stsc: a run has 0 samples per chunk, or more than the track has")
    t.description_index_max = int(stsc[:, 2].max())
    if t.description_index_max > t.descriptions or int(stsc[:, 2].min()) < 1:
        raise BoxError("stsc refers to a sample description stsd does not have")
    run_chunks = np.diff(np.append(first, n_chunks + 1))
    total = int((run_chunks * per_chunk).sum())  # both bounded: no overflow, no huge allocation
    if total != count:
        raise BoxError(f"stsc places {total} samples, stsz has {count}")
    spc = np.repeat(per_chunk, run_chunks)  # samples in each chunk (n_chunks <= count entries)
    chunk_of = np.repeat(np.arange(n_chunks), spc)
    ends = np.cumsum(sizes)
    starts_in_track = ends - sizes
    first_sample = np.cumsum(spc) - spc
    offsets = chunk_off[chunk_of] + starts_in_track - starts_in_track[first_sample][chunk_of]
    if int(offsets.min()) < 0 or int((offsets + sizes).max()) > file_size:
        last = int((offsets + sizes).max())
        raise BoxError(f"samples run to byte {last:,}, the file has {file_size:,} (truncated?)")
    t.sizes = sizes
    t.offsets = offsets
    # sync samples
    if b"stss" in tables:
        s, e = tables[b"stss"]
        _full(buf, s, e, 4, "stss")
        (n_sync,) = struct.unpack_from(">I", buf, s + 4)
        sync = _u32_table(buf, s + 8, e, n_sync, 1, "stss").astype(np.int64)
        if n_sync and (int(sync.min()) < 1 or int(sync.max()) > count):
            raise BoxError("stss names a sample the track does not have")
        t.sync = sync


def sample(data: Any, track: Track, i: int) -> bytes:
    """The bytes of sample `i` (0-based) of `track`."""
    off = int(track.offsets[i])
    return bytes(memoryview(data)[off:off + int(track.sizes[i])])


# ---------------------------------------------------------------------- bitstream framing
#: NAL unit types that start a decodable picture: H.264 IDR slice; HEVC IRAP (BLA, IDR, CRA).
_H264_IDR = frozenset({5})
_HEVC_IRAP = frozenset(range(16, 22))


def check_first_sample(data: Any, track: Track) -> str | None:
    """Check, without decoding, that the first sample of an H.264/HEVC track is well framed:
    the codec configuration parses, the sample is a run of length-prefixed NAL units that
    fill it exactly, and it holds a picture a decoder can start from (IDR/IRAP) with its
    parameter sets available. None when it is, else why not (the caller then decodes)."""
    hevc = track.fourcc in ("hvc1", "hev1")
    if not hevc and track.fourcc not in ("avc1", "avc3"):
        return f"no framing check for {track.fourcc!r}"
    cfg = track.config or b""
    try:
        length_size, in_config = (_hvcc(cfg) if hevc else _avcc(cfg))
    except (IndexError, struct.error):
        return "codec configuration is cut off"
    if length_size not in (1, 2, 4):
        return f"NAL length size {length_size}"
    off, size = int(track.offsets[0]), int(track.sizes[0])
    buf = memoryview(data).cast("B")[off:off + size]
    types: set[int] = set()
    pos = 0
    while pos < size:
        if pos + length_size > size:
            return "a NAL length runs past the end of the first sample"
        n = int.from_bytes(buf[pos:pos + length_size], "big")
        pos += length_size
        if n == 0 or pos + n > size:
            return f"a NAL unit of {n} bytes does not fit the first sample"
        head = buf[pos]
        if head & 0x80:
            return "forbidden bit set in a NAL header"
        types.add((head >> 1) & 0x3F if hevc else head & 0x1F)
        pos += n
    params = in_config | types
    if hevc:
        if not types & _HEVC_IRAP:
            return "the first sample is not a random-access picture"
        if not {32, 33, 34} <= params:
            return "parameter sets (VPS/SPS/PPS) missing"
    else:
        if not types & _H264_IDR:
            return "the first sample is not an IDR picture"
        if not {7, 8} <= params:
            return "parameter sets (SPS/PPS) missing"
    return None


def _avcc(cfg: bytes) -> tuple[int, set[int]]:
    """(NAL length size, NAL types carried) of an AVCDecoderConfigurationRecord."""
    if cfg[0] != 1:
        raise IndexError
    length_size = (cfg[4] & 3) + 1
    types: set[int] = set()
    pos = 5
    for mask in (0x1F, 0xFF):  # SPS count (5 bits), then PPS count
        count = cfg[pos] & mask
        pos += 1
        for _ in range(count):
            (n,) = struct.unpack_from(">H", cfg, pos)
            if n == 0 or pos + 2 + n > len(cfg):
                raise IndexError
            types.add(cfg[pos + 2] & 0x1F)
            pos += 2 + n
    return length_size, types


def _hvcc(cfg: bytes) -> tuple[int, set[int]]:
    """(NAL length size, NAL types carried) of an HEVCDecoderConfigurationRecord."""
    if len(cfg) < 23:
        raise IndexError
    length_size = (cfg[21] & 3) + 1
    types: set[int] = set()
    pos = 23
    for _ in range(cfg[22]):
        kind = cfg[pos] & 0x3F
        (count,) = struct.unpack_from(">H", cfg, pos + 1)
        pos += 3
        for _ in range(count):
            (n,) = struct.unpack_from(">H", cfg, pos)
            if n == 0 or pos + 2 + n > len(cfg):
                raise IndexError
            types.add(kind)
            pos += 2 + n
    return length_size, types
