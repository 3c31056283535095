"""The probe's fast path: reading the moov box directly (mp4box.py) must give FFmpeg's answers
on real files, and on damaged or hostile files either the same verdict or a clean fallback."""

from __future__ import annotations

import contextlib
import os
import random
import struct
import tempfile
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from video_fixtures import make_frames, make_mp4

av = pytest.importorskip("av")

STBL = [b"moov", b"trak", b"mdia", b"minf", b"stbl"]


def encode(codec: str = "libx264", fmt: str = "mp4", n: int = 10, w: int = 64, h: int = 48,
           fps: Fraction | int = 8, opts: dict[str, str] | None = None,
           movflags: str | None = "+faststart", pix: str = "yuv420p",
           container_opts: dict[str, str] | None = None) -> bytes:
    """A clip written by FFmpeg's own muxer with the given encoder and muxer options."""
    frames = make_frames(n, w, h, seed=n)
    fd, path = tempfile.mkstemp(suffix="." + fmt)
    os.close(fd)
    try:
        options = {**({"movflags": movflags} if movflags else {}), **(container_opts or {})}
        with av.open(path, "w", format=fmt, options=options) as out:
            stream = out.add_stream(codec, rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = w, h, pix
            if opts:
                stream.options = opts
            for f in frames:
                for p in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(p)
            for p in stream.encode():
                out.mux(p)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


VARIANTS = {
    "h264 no B-frames": dict(opts={"preset": "ultrafast"}),
    "h264 B-frames (edit list, ctts)": dict(opts={"preset": "medium"}),
    "h264 one frame": dict(n=1, opts={"preset": "medium"}),
    "h264 29.97 fps": dict(n=16, fps=Fraction(30000, 1001), opts={"preset": "medium"}),
    "h264 25 fps, moov at the end": dict(n=13, fps=25, opts={"preset": "medium"}, movflags=None),
    "h264 no edit list": dict(opts={"preset": "medium"}, container_opts={"use_editlist": "0"}),
    "h264 odd size 24 fps": dict(n=7, w=34, h=18, fps=24, opts={"preset": "slow"}),
    "h264 in mov": dict(fmt="mov", n=9, opts={"preset": "medium"}, movflags=None),
    "h264 320x240": dict(n=20, w=320, h=240, opts={"preset": "medium"}),
    "hevc": dict(codec="libx265", n=9, opts={"preset": "ultrafast", "x265-params": "log-level=0"}),
    "hevc B-frames": dict(codec="libx265", n=12,
                          opts={"preset": "medium", "x265-params": "log-level=0"}),
    "vp9": dict(codec="libvpx-vp9", n=6),
    "av1": dict(codec="libsvtav1", n=6, w=64, h=64),
}


@pytest.fixture(scope="module")
def variants() -> dict[str, bytes]:
    out = {}
    for name, kw in VARIANTS.items():
        if _has_encoder(str(kw.get("codec", "libx264"))):
            out[name] = encode(**kw)  # type: ignore[arg-type]
    return out


def test_fast_path_gives_ffmpegs_answers(variants):
    """Every column and the first frame itself are what FFmpeg's container open says."""
    from vidprom_lake.video.probe import probe_bytes

    assert len(variants) >= 9
    for name, data in variants.items():
        slow = probe_bytes(data, fast=False)
        fast = probe_bytes(data)
        assert fast.method == "moov" and slow.method == "ffmpeg", name
        assert fast.columns() == slow.columns(), name
        a = fast.first_frame.to_ndarray(format="rgb24")
        b = slow.first_frame.to_ndarray(format="rgb24")
        assert np.array_equal(a, b), name
        # index: nothing decoded, same columns (dimensions from the sample description)
        idx = probe_bytes(data, verify="index")
        assert idx.columns() == slow.columns(), name
        if idx.codec in ("h264", "hevc"):
            assert idx.first_frame is None, name


def test_other_codecs_fall_back_to_ffmpeg():
    from vidprom_lake.video.probe import probe_bytes

    data = encode(codec="mpeg4", n=6)
    p = probe_bytes(data, verify="index")
    assert p.method == "ffmpeg" and (p.codec, p.num_frames, p.width) == ("mpeg4", 6, 64)
    assert p.first_frame is not None  # FFmpeg's path always decodes the first frame


def test_fragmented_mp4_falls_back():
    from vidprom_lake.video import mp4box
    from vidprom_lake.video.probe import probe_bytes

    data = encode(opts={"preset": "ultrafast"}, movflags="frag_keyframe+empty_moov")
    with pytest.raises(mp4box.BoxError, match="fragmented"):
        mp4box.read_movie(data)
    p = probe_bytes(data)
    assert p.method == "ffmpeg" and p.num_frames == 10


# ---------------------------------------------------------------------- damaged files
def find_box(data: bytes | bytearray, path: list[bytes]) -> tuple[int, int, int]:
    """(box start, payload start, end) of the first box along `path`."""
    from vidprom_lake.video.mp4box import _boxes

    buf = memoryview(bytes(data))
    start, end = 0, len(buf)
    found = (0, 0, 0)
    for kind in path:
        for k, s, e in _boxes(buf, start, end):
            if k == kind:
                found = (s - 8, s, e)
                start, end = s, e
                break
        else:
            raise KeyError(kind)
    return found


@pytest.fixture(scope="module")
def clip() -> bytes:
    return make_mp4(n=8, seed=3)


def _verdict(data: bytes, verify: str = "first-frame") -> str:
    from vidprom_lake.video.probe import ProbeError, probe_bytes

    try:
        probe_bytes(data, verify=verify)
    except ProbeError as exc:
        return exc.reason
    return "ok"


def test_every_truncation_is_rejected_by_both_paths(clip):
    """Cut the file anywhere: the moov parser raises BoxError (never anything else), and the
    verdict is FFmpeg's own, whatever the verify level."""
    from vidprom_lake.video import mp4box

    cuts = sorted(set(range(1, 200)) | set(range(200, len(clip), 97)) | {len(clip) - 1})
    for cut in cuts:
        data = clip[:cut]
        with pytest.raises(mp4box.BoxError):
            mp4box.read_movie(data)
        for verify in ("index", "first-frame"):
            assert _verdict(data, verify) in ("corrupt", "not-video"), (cut, verify)
        assert _verdict(data) == _verdict_ffmpeg(data), cut


def _verdict_ffmpeg(data: bytes) -> str:
    from vidprom_lake.video.probe import ProbeError, probe_bytes

    try:
        probe_bytes(data, fast=False)
    except ProbeError as exc:
        return exc.reason
    return "ok"


def test_truncated_mid_mdat_says_so(clip):
    from vidprom_lake.video import mp4box

    _, _, end = find_box(clip, [b"mdat"])
    with pytest.raises(mp4box.BoxError, match="truncated"):
        mp4box.read_movie(clip[:end - 1])


def _patched(data: bytes, path: list[bytes], offset: int, fmt: str, *values: int) -> bytes:
    buf = bytearray(data)
    _, payload, _ = find_box(buf, path)
    struct.pack_into(fmt, buf, payload + offset, *values)
    return bytes(buf)


def _at_box(data: bytes, path: list[bytes], fmt: str, *values: object) -> bytes:
    """Overwrite the start of a box (its header) with `values`."""
    buf = bytearray(data)
    start, _, _ = find_box(buf, path)
    struct.pack_into(fmt, buf, start, *values)
    return bytes(buf)


def _set_size(data: bytes, path: list[bytes], size: int) -> bytes:
    buf = bytearray(data)
    start, _, _ = find_box(buf, path)
    struct.pack_into(">I", buf, start, size)
    return bytes(buf)


HOSTILE = {
    # box sizes
    "moov larger than the file": lambda d: _set_size(d, [b"moov"], 0xFFFFFFF0),
    "moov size below its header": lambda d: _set_size(d, [b"moov"], 3),
    "trak runs past moov": lambda d: _set_size(d, [b"moov", b"trak"], 0x7FFFFFFF),
    "64-bit size past the end": lambda d: _at_box(d, [b"moov", b"trak"], ">I4sQ", 1, b"trak",
                                                  2**63),
    "stsd entry too short": lambda d: _set_size(d, [*STBL, b"stsd"], 20),
    # sample tables that do not add up
    "stsz count 2^32-1, constant size": lambda d: _patched(d, [*STBL, b"stsz"], 4, ">II", 1,
                                                           0xFFFFFFFF),
    "stsz entries past the box": lambda d: _patched(d, [*STBL, b"stsz"], 8, ">I", 100_000),
    "stsz sample of 2^32-1 bytes": lambda d: _patched(d, [*STBL, b"stsz"], 12, ">I",
                                                       0xFFFFFFFF),
    "stco offset past the end": lambda d: _patched(d, [*STBL, b"stco"], 8, ">I", 0xFFFFFFF0),
    "stco count larger than the box": lambda d: _patched(d, [*STBL, b"stco"], 4, ">I",
                                                         0x10000000),
    "stsc 2^32-1 samples per chunk": lambda d: _patched(d, [*STBL, b"stsc"], 12, ">I",
                                                         0xFFFFFFFF),
    "stsc 0 samples per chunk": lambda d: _patched(d, [*STBL, b"stsc"], 12, ">I", 0),
    "stsc first chunk 0": lambda d: _patched(d, [*STBL, b"stsc"], 8, ">I", 0),
    "stsc first chunk past the chunks": lambda d: _patched(d, [*STBL, b"stsc"], 8, ">I", 99),
    "stts count 2^32-1": lambda d: _patched(d, [*STBL, b"stts"], 8, ">I", 0xFFFFFFFF),
    "stts entries past the box": lambda d: _patched(d, [*STBL, b"stts"], 4, ">I", 0x0FFFFFFF),
    "stss names sample 0": lambda d: _patched(d, [*STBL, b"stss"], 8, ">I", 0),
    "mdhd timescale 0": lambda d: _patched(d, [b"moov", b"trak", b"mdia", b"mdhd"], 12, ">I", 0),
    "mvhd timescale 0": lambda d: _patched(d, [b"moov", b"mvhd"], 12, ">I", 0),
    "two edits": lambda d: _patched(d, [b"moov", b"trak", b"edts", b"elst"], 4, ">I", 2),
    "edit at half speed": lambda d: _patched(d, [b"moov", b"trak", b"edts", b"elst"], 16, ">I",
                                             0x8000),
    "edit that trims": lambda d: _patched(d, [b"moov", b"trak", b"edts", b"elst"], 8, ">I", 10),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_boxes_never_give_a_wrong_answer(clip, name):
    """A malformed moov raises BoxError or is left to FFmpeg: the fast path never answers
    with values FFmpeg would not give, never raises anything else, never allocates from an
    unchecked count."""
    from vidprom_lake.video import mp4box
    from vidprom_lake.video.probe import ProbeError, probe_bytes, probe_moov

    data = HOSTILE[name](clip)
    assert len(data) == len(clip)
    with contextlib.suppress(mp4box.BoxError):  # anything else fails the test
        mp4box.read_movie(data)
    fast = probe_moov(data)
    assert fast is None, name  # each of these needs FFmpeg's judgement
    try:
        slow: object = probe_bytes(data, fast=False).columns()
    except ProbeError as exc:
        slow = exc.reason
    try:
        got: object = probe_bytes(data).columns()
    except ProbeError as exc:
        got = exc.reason
    assert got == slow, name


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 8))
def test_random_damage_to_the_moov_box(seed, flips):
    """Overwrite random bytes of the moov box: the parser raises only BoxError, and when the
    fast path does answer, every sample it found lies inside the file."""
    from vidprom_lake.video import mp4box
    from vidprom_lake.video.probe import ProbeError, probe_bytes

    data = _fuzz_clip()
    start, _, end = find_box(data, [b"moov"])
    rng = random.Random(seed)
    buf = bytearray(data)
    for _ in range(flips):
        buf[rng.randrange(start, end)] = rng.randrange(256)
    damaged = bytes(buf)
    try:
        movie = mp4box.read_movie(damaged)
    except mp4box.BoxError:
        movie = None
    if movie is not None:
        for t in movie.tracks:
            if t.handler == b"vide":
                assert int((t.offsets + t.sizes).max()) <= len(damaged)
                assert int(t.offsets.min()) >= 0
    try:
        probe_bytes(damaged, verify="index")
        probe_bytes(damaged)
    except ProbeError:
        pass


_FUZZ: list[bytes] = []


def _fuzz_clip() -> bytes:
    if not _FUZZ:
        _FUZZ.append(encode(n=6, opts={"preset": "medium"}))
    return _FUZZ[0]


# ---------------------------------------------------------------------- bitstream framing
def test_first_sample_framing(clip):
    from vidprom_lake.video import mp4box

    movie = mp4box.read_movie(clip)
    t = movie.video_track()
    assert mp4box.check_first_sample(clip, t) is None
    off = int(t.offsets[0])
    bad = bytearray(clip)
    struct.pack_into(">I", bad, off, 0x7FFFFFFF)  # first NAL length far past the sample
    assert "does not fit" in mp4box.check_first_sample(bytes(bad), t)
    bad = bytearray(clip)
    bad[off + 4] |= 0x80  # forbidden_zero_bit
    assert "forbidden" in mp4box.check_first_sample(bytes(bad), t)
    # the second sample is not an IDR picture: make the track start there
    t2 = mp4box.read_movie(clip).video_track()
    t2.offsets, t2.sizes = t2.offsets[1:], t2.sizes[1:]
    assert "not an IDR" in mp4box.check_first_sample(clip, t2)
    t3 = mp4box.read_movie(clip).video_track()
    t3.config = b"\x01\x64"
    assert "cut off" in mp4box.check_first_sample(clip, t3)


def test_index_verify_checks_framing_and_falls_back_to_ffmpeg(clip):
    """A first sample whose framing is damaged is not accepted on the index check: FFmpeg
    decodes it and gives the verdict."""
    from vidprom_lake.video import mp4box
    from vidprom_lake.video.probe import probe_bytes

    t = mp4box.read_movie(clip).video_track()
    off = int(t.offsets[0])
    bad = bytearray(clip)
    bad[off + 4:off + int(t.sizes[0])] = bytes(int(t.sizes[0]) - 4)  # NAL payload zeroed
    assert _verdict(bytes(bad), "index") == _verdict_ffmpeg(bytes(bad))
    assert probe_bytes(clip, verify="index").method == "moov"


def test_reused_decoder_gives_each_clip_its_own_verdict(clip):
    """The decoder a thread reuses between clips of the same configuration is flushed: a
    damaged first sample after a good clip gets the verdict it gets on its own, and the
    next good clip decodes to its own first frame."""
    from vidprom_lake.video import mp4box
    from vidprom_lake.video.probe import probe_bytes

    t = mp4box.read_movie(clip).video_track()
    off, size = int(t.offsets[0]), int(t.sizes[0])
    bad = bytearray(clip)
    bad[off + 5:off + size] = bytes(size - 5)  # keep the NAL header, zero the slice data
    bad = bytes(bad)
    alone = _verdict_ffmpeg(bad)
    other = make_mp4(n=8, seed=4)  # same encoder settings, so the same codec configuration
    assert mp4box.read_movie(other).video_track().config == t.config
    for _ in range(2):
        first = probe_bytes(clip)
        assert _verdict(bad) == alone
        again = probe_bytes(other)
        assert again.method == "moov"
        want = probe_bytes(other, fast=False).first_frame.to_ndarray(format="rgb24")
        assert np.array_equal(again.first_frame.to_ndarray(format="rgb24"), want)
        assert np.array_equal(first.first_frame.to_ndarray(format="rgb24"),
                              probe_bytes(clip, fast=False).first_frame.to_ndarray(format="rgb24"))
