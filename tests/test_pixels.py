"""Planar yuv420p (I420) helpers: layout, rotation, conversion. Pure numpy tables."""

from __future__ import annotations

import av
import numpy as np
import pytest

from vidline.media.pixels import i420_pack, i420_planes, i420_rotate, i420_size, to_rgb
from vidline.types import Frame


def _i420(w: int, h: int) -> np.ndarray:
    """An I420 array whose samples encode (plane, row, col) so any mix-up shows."""
    y = (np.arange(h)[:, None] * 7 + np.arange(w)[None, :]) % 200
    u = 200 + (np.arange(h // 2)[:, None] + np.arange(w // 2)[None, :]) % 25
    v = 225 + (np.arange(h // 2)[:, None] * 3 + np.arange(w // 2)[None, :]) % 30
    return i420_pack(y.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8))


@pytest.mark.parametrize(("w", "h"), [(8, 6), (392, 280), (280, 392), (2, 2), (6, 10)])
def test_layout_matches_pyav(w: int, h: int) -> None:
    arr = _i420(w, h)
    assert arr.shape == (h * 3 // 2, w) and i420_size(arr) == (w, h)
    frame = av.VideoFrame.from_ndarray(arr, format="yuv420p")
    assert (frame.width, frame.height) == (w, h)
    assert np.array_equal(frame.to_ndarray(), arr)
    y, u, v = i420_planes(arr)
    assert y.shape == (h, w) and u.shape == v.shape == (h // 2, w // 2)
    assert int(y.max()) < 200 and int(u.min()) >= 200 and int(v.min()) >= 225  # planes in Y, U, V order


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_rotation_turns_every_plane_like_rgb(degrees: int) -> None:
    arr = _i420(12, 8)
    rotated = i420_rotate(arr, degrees)
    y, u, v = i420_planes(arr)
    ry, ru, rv = i420_planes(rotated)
    k = -(degrees // 90)
    assert np.array_equal(ry, np.rot90(y, k)) and np.array_equal(ru, np.rot90(u, k)) and np.array_equal(rv, np.rot90(v, k))
    assert i420_size(rotated) == ((12, 8) if degrees in (0, 180) else (8, 12))
    # the colour picture turns the same way as its RGB conversion would
    assert np.abs(to_rgb(rotated, "yuv420p").astype(int) - np.rot90(to_rgb(arr, "yuv420p"), k).astype(int)).max() <= 2


def test_pack_rejects_bad_planes() -> None:
    with pytest.raises(ValueError):
        i420_pack(np.zeros((3, 4), np.uint8), np.zeros((1, 2), np.uint8), np.zeros((1, 2), np.uint8))
    with pytest.raises(ValueError):
        i420_pack(np.zeros((4, 4), np.uint8), np.zeros((2, 2), np.uint8), np.zeros((1, 2), np.uint8))


def test_frame_rgb_and_size_for_every_format() -> None:
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
    gray = np.full((6, 8), 77, np.uint8)
    assert Frame(0.0, rgb).size == (8, 6) and Frame(0.0, rgb).rgb() is rgb
    f = Frame(0.0, yuv, format="yuv420p")
    assert f.size == (8, 6) and np.abs(f.rgb().astype(int) - rgb.astype(int)).max() <= 6
    g = Frame(0.0, gray, format="gray")
    assert g.size == (8, 6) and g.rgb().shape == (6, 8, 3) and int(g.rgb()[0, 0, 2]) == 77
    with pytest.raises(ValueError):
        to_rgb(rgb, "nv12")


@pytest.mark.parametrize(("w", "h"), [(392, 280), (644, 364), (30, 22)])
def test_video_frame_equals_pyav_from_ndarray(w: int, h: int) -> None:
    from vidline.media.pixels import video_frame

    yuv = _i420(w, h)
    assert np.array_equal(video_frame(yuv, "yuv420p").to_ndarray(), yuv)
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    frame = video_frame(rgb, "rgb24")
    assert frame.format.name == "rgb24" and np.array_equal(frame.to_ndarray(), rgb)
    with pytest.raises(ValueError):
        video_frame(rgb, "gray")


@pytest.mark.parametrize(("w", "h"), [(392, 280), (644, 364), (30, 22), (2, 2)])
def test_frame_array_equals_pyav_to_ndarray(w: int, h: int) -> None:
    """The decoder's plane copy gives PyAV's I420 layout, also when the chroma rows are padded
    (644 -> 322-wide chroma in a 336-byte line) and for the other formats."""
    from vidline.media.pixels import frame_array, video_frame

    yuv = _i420(w, h)
    frame = video_frame(yuv, "yuv420p")
    assert frame.planes[1].line_size >= w // 2
    out = frame_array(frame)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(out, frame.to_ndarray()) and np.array_equal(out, yuv)
    # decoder output with padded planes (libswscale's scaled frames)
    scaled = av.VideoFrame.from_ndarray(np.zeros((h + 10, w + 6, 3), np.uint8), format="rgb24").reformat(
        width=w, height=h, format="yuv420p")
    assert np.array_equal(frame_array(scaled), scaled.to_ndarray())
    rgb = np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)
    assert np.array_equal(frame_array(video_frame(rgb, "rgb24")), rgb)
