"""Pixel layouts of sampled frames (pure numpy, apart from PyAV's colour conversion).

Frames are RGB by default. The mp4 payload path asks the decoder for **planar yuv420p** instead
(``Frame.format == "yuv420p"``): libswscale then scales the decoded YUV picture straight to the
plan's size and x264 takes it as it is, skipping a YUV -> RGB -> YUV round trip that costs about as
much CPU as the H.264 encode itself (bench/results/pipeline.md).

The yuv420p array is PyAV's I420 layout (``VideoFrame.to_ndarray()`` / ``from_ndarray``): shape
``(H * 3 // 2, W)`` uint8 holding the Y plane (H x W), then U and V (each H/2 x W/2) packed row
after row. Width and height are even.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FORMATS = ("rgb24", "gray", "yuv420p")


def i420_size(image: np.ndarray) -> tuple[int, int]:
    """(width, height) of an I420 array."""
    rows, width = image.shape[:2]
    return int(width), int(rows * 2 // 3)


def i420_planes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y (H x W), U and V (H/2 x W/2) views of an I420 array."""
    w, h = i420_size(image)
    flat = np.ascontiguousarray(image).reshape(-1)
    q = (h // 2) * (w // 2)
    y = flat[: h * w].reshape(h, w)
    u = flat[h * w : h * w + q].reshape(h // 2, w // 2)
    v = flat[h * w + q : h * w + 2 * q].reshape(h // 2, w // 2)
    return y, u, v


def i420_pack(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """An I420 array from its three planes (H and W even)."""
    h, w = y.shape
    if h % 2 or w % 2 or u.shape != (h // 2, w // 2) or v.shape != u.shape:
        raise ValueError("I420 needs even sides and half-size chroma planes")
    return np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(h * 3 // 2, w)


def i420_rotate(image: np.ndarray, degrees: int) -> np.ndarray:
    """Rotate an I420 picture clockwise by 0/90/180/270 degrees (each plane turns the same way)."""
    k = -((degrees // 90) % 4)
    if k == 0:
        return image
    y, u, v = i420_planes(image)
    return i420_pack(*(np.ascontiguousarray(np.rot90(p, k=k)) for p in (y, u, v)))


def video_frame(image: np.ndarray, fmt: str) -> Any:
    """An ``av.VideoFrame`` holding ``image`` (``"yuv420p"`` I420 or ``"rgb24"``), filled plane by
    plane with one numpy copy each. PyAV's ``from_ndarray`` copies row by row while holding the GIL
    (~4x slower), which stalls the decoder thread running beside the payload encoders."""
    import av

    if fmt == "yuv420p":
        width, height = i420_size(image)
        planes: tuple[np.ndarray, ...] = i420_planes(image)
    elif fmt == "rgb24":
        height, width = image.shape[:2]
        planes = (np.ascontiguousarray(image).reshape(height, width * 3),)
    else:
        raise ValueError(f"cannot make a video frame from {fmt!r}")
    frame = av.VideoFrame(width, height, fmt)
    for plane, src in zip(frame.planes, planes, strict=True):
        _plane_rows(plane)[: src.shape[0], : src.shape[1]] = src
    return frame


def _plane_rows(plane: Any) -> np.ndarray:
    """A ``VideoPlane``'s buffer as rows of ``line_size`` bytes (padding included), without a copy."""
    return np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)


def frame_array(frame: Any) -> np.ndarray:
    """The pixels of a decoded ``av.VideoFrame`` as an array: I420 for yuv420p (copied plane by
    plane, ~20x faster than PyAV's ``to_ndarray``, which stacks the planes through slow strided
    copies when a chroma row is padded), PyAV's ``to_ndarray`` for the other formats."""
    if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
        arr: np.ndarray = frame.to_ndarray()
        return arr
    out = np.empty((frame.height * 3 // 2, frame.width), np.uint8)
    for plane, dst in zip(frame.planes, i420_planes(out), strict=True):  # views into ``out``
        dst[...] = _plane_rows(plane)[: dst.shape[0], : dst.shape[1]]
    return out


def to_rgb(image: np.ndarray, fmt: str) -> np.ndarray:
    """An H x W x 3 RGB uint8 array from an image in ``fmt`` (returned as is when already RGB)."""
    if fmt == "rgb24":
        return image
    if fmt == "gray":
        return np.repeat(image[..., None], 3, axis=2)
    if fmt == "yuv420p":
        rgb: np.ndarray = video_frame(image, "yuv420p").to_ndarray(format="rgb24")
        return rgb
    raise ValueError(f"unknown pixel format {fmt!r} (one of {', '.join(FORMATS)})")
