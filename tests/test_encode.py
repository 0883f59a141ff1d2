"""encode.py: mp4 PTS carry the frames' real times, JPEG round trips, burned-in timestamps."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image

from vidline.encode import burn_timestamp, encode_jpeg, encode_mp4
from vidline.synth import Marker, detect_markers, render_frame
from vidline.types import Frame

MARKERS = [Marker("red square", 1.0, 2.0), Marker("blue triangle", 2.5, 4.0)]


def _frames(times: list[float], origin: float = 0.0, size: tuple[int, int] = (224, 168)) -> list[Frame]:
    w, h = size
    return [Frame(t=origin + t, image=render_frame(t, w, h, MARKERS)) for t in times]


def _decode(data: bytes) -> list[tuple[float, np.ndarray]]:
    with av.open(io.BytesIO(data)) as c:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


@pytest.mark.parametrize(
    ("times", "origin"),
    [
        ([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5], 0.0),  # CFR 2 fps
        ([0.2, 0.7, 1.1, 1.9, 2.6, 3.0, 3.7, 3.9], 600.0),  # VFR-like spacing, window at 600 s
        ([0.0, 1.0, 2.0, 3.0], 3600.0),
    ],
)
def test_mp4_pts_are_real_times_relative_to_origin(times: list[float], origin: float) -> None:
    frames = _frames(times, origin)
    decoded = _decode(encode_mp4(frames, origin=origin))
    assert [round(t, 3) for t, _ in decoded] == [round(t, 3) for t in times]
    for (t, img), wrote in zip(decoded, times, strict=True):
        expected = sorted(m.label for m in MARKERS if m.start <= wrote < m.end)
        assert sorted(detect_markers(img)) == expected, t


def test_mp4_origin_defaults_to_first_frame_and_times_override() -> None:
    frames = _frames([5.0, 6.0, 7.0, 8.0], origin=0.0)
    assert [round(t, 3) for t, _ in _decode(encode_mp4(frames))] == [0.0, 1.0, 2.0, 3.0]
    retimed = _decode(encode_mp4(frames, times=[0.0, 0.5, 1.0, 1.5]))
    assert [round(t, 3) for t, _ in retimed] == [0.0, 0.5, 1.0, 1.5]


def test_mp4_odd_size_and_scale() -> None:
    frames = _frames([0.0, 0.5, 1.0, 1.5], size=(161, 121))
    (_, img), *_ = _decode(encode_mp4(frames))
    assert img.shape[:2] == (120, 160)
    (_, small), *_ = _decode(encode_mp4(_frames([0.0, 0.5]), scale=0.5))
    assert small.shape[:2] == (84, 112)


def test_higher_crf_gives_smaller_files() -> None:
    rng = np.random.default_rng(0)
    frames = [Frame(t=i * 0.5, image=rng.integers(0, 255, (168, 224, 3), dtype=np.uint8)) for i in range(4)]
    assert len(encode_mp4(frames, crf=40)) < len(encode_mp4(frames, crf=18))


def test_jpeg_round_trip_keeps_markers() -> None:
    img = render_frame(1.5, 224, 168, MARKERS)
    data = encode_jpeg(img, quality=70)
    assert data[:2] == b"\xff\xd8"
    back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert back.shape == img.shape
    assert detect_markers(back) == ["red square"]


def test_burn_timestamp_draws_in_the_corner_only() -> None:
    img = render_frame(0.0, 320, 240)
    out = burn_timestamp(img, 12.5)
    assert out.shape == img.shape and out is not img
    diff = np.abs(out.astype(int) - img.astype(int)).sum(axis=2) > 0
    ys, xs = np.nonzero(diff)
    assert len(ys) > 200  # a visible label
    assert ys.max() < 240 // 3 and xs.max() < 320 // 2  # confined to the top-left corner
    assert (out[diff] == 255).all(axis=1).any()  # white text
    assert not np.array_equal(burn_timestamp(img, 12.5), burn_timestamp(img, 99.0))


def _yuv(frames: list[Frame]) -> list[Frame]:
    return [Frame(t=f.t, image=av.VideoFrame.from_ndarray(f.image, format="rgb24").reformat(format="yuv420p")
                  .to_ndarray(), format="yuv420p") for f in frames]


def test_mp4_from_planar_yuv_frames_matches_rgb_input() -> None:
    times = [0.2, 0.7, 1.1, 1.9, 2.6, 3.0, 3.7, 3.9]
    rgb = _frames(times, 600.0)
    from_yuv = _decode(encode_mp4(_yuv(rgb), origin=600.0))
    from_rgb = _decode(encode_mp4(rgb, origin=600.0))
    assert [round(t, 3) for t, _ in from_yuv] == [round(t, 3) for t in times]
    for (_, a), (_, b), wrote in zip(from_yuv, from_rgb, times, strict=True):
        assert a.shape == b.shape == (168, 224, 3)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3
        assert sorted(detect_markers(a)) == sorted(m.label for m in MARKERS if m.start <= wrote < m.end)


def test_mp4_from_yuv_frames_scaled_or_mixed_sizes() -> None:
    frames = _yuv(_frames([0.0, 0.5, 1.0, 1.5]))
    (_, small), *_ = _decode(encode_mp4(frames, scale=0.5))  # scaling goes through RGB
    assert small.shape[:2] == (84, 112)
    mixed = [*frames[:2], *_yuv(_frames([1.0, 1.5], size=(112, 84)))]  # a smaller frame is resized to fit
    decoded = _decode(encode_mp4(mixed))
    assert [img.shape[:2] for _, img in decoded] == [(168, 224)] * 4
