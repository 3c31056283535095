"""Encoding, probing and thumbnails (PyAV), including property tests of the round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from video_fixtures import make_frames, make_mp4

av = pytest.importorskip("av")


def test_encode_is_h264_yuv420p_faststart_and_probe_agrees():
    from vidprom_lake.video.encode import EncodeParams, encode_mp4
    from vidprom_lake.video.probe import probe_bytes

    data = encode_mp4(make_frames(12, 80, 64), EncodeParams(fps=12, preset="ultrafast"))
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart
    p = probe_bytes(data, verify="full")
    assert (p.codec, p.width, p.height, p.num_frames) == ("h264", 80, 64, 12)
    assert p.fps == pytest.approx(12) and p.duration_s == pytest.approx(1.0, abs=0.01)
    with av.open(io.BytesIO(data)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_frame_layouts_are_normalised():
    from PIL import Image

    from vidprom_lake.video.encode import to_uint8_frames

    u8 = make_frames(3, 16, 8)
    assert to_uint8_frames(u8).shape == (3, 8, 16, 3)
    f01 = u8.astype(np.float32) / 255
    assert np.abs(to_uint8_frames(f01).astype(int) - u8).max() <= 1
    assert to_uint8_frames(f01.transpose(0, 3, 1, 2)).shape == (3, 8, 16, 3)  # channel-first
    pil = [Image.fromarray(f) for f in u8]
    assert (to_uint8_frames(pil) == u8).all()


def test_odd_sizes_are_padded_to_even():
    from vidprom_lake.video.encode import encode_mp4
    from vidprom_lake.video.probe import probe_bytes

    p = probe_bytes(encode_mp4(make_frames(2, 33, 17)))
    assert (p.width, p.height) == (34, 18)


def test_probe_rejects_bad_bytes():
    from vidprom_lake.video.probe import ProbeError, probe_bytes

    good = make_mp4(n=8)
    for data, reason in ((b"", "empty"), (b"hello world" * 50, "not-video"),
                         (good[: len(good) // 2], "corrupt"), (good[:40], "corrupt")):
        with pytest.raises(ProbeError) as exc:
            probe_bytes(data, format="mp4")
        assert exc.value.reason == reason, (len(data), exc.value)


def test_thumbnail_is_a_small_jpeg():
    from PIL import Image

    from vidprom_lake.video.probe import probe_bytes
    from vidprom_lake.video.thumbs import thumbnail

    p = probe_bytes(make_mp4(n=2, w=320, h=240))
    jpg = thumbnail(p.first_frame)
    with Image.open(io.BytesIO(jpg)) as im:
        assert im.format == "JPEG" and im.size == (128, 96)
    assert len(jpg) < 20_000


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 6), w=st.integers(2, 40), h=st.integers(2, 40),
       fps=st.sampled_from([4, 8, 12.5, 24, 30]))
def test_encode_probe_round_trip(n, w, h, fps):
    from vidprom_lake.video.encode import EncodeParams, encode_mp4
    from vidprom_lake.video.probe import probe_bytes

    data = encode_mp4(make_frames(n, w, h, seed=n), EncodeParams(fps=fps, preset="ultrafast"))
    p = probe_bytes(data, verify="full")
    assert p.num_frames == n
    assert (p.width, p.height) == (w + w % 2, h + h % 2)
    assert p.fps == pytest.approx(fps, rel=1e-3)


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_what_is_imported_reads_back_unchanged(tmp_path_factory, sizes):
    from video_fixtures import lake_with_prompts, write_tar

    from vidprom_lake.video import import_videos, read_video

    tmp = tmp_path_factory.mktemp("rt")
    lake, uuids = lake_with_prompts(tmp, n=len(sizes))
    clips = {u: make_mp4(n=k, seed=i) for i, (u, k) in enumerate(zip(uuids, sizes, strict=True))}
    shard = write_tar(tmp / "s.tar", {f"m-{u}.mp4": d for u, d in clips.items()})
    rep = import_videos(lake, shard, model="m", chunk=2)
    assert rep.imported == len(sizes)
    for u, d in clips.items():
        assert read_video(lake, u, "m") == d
