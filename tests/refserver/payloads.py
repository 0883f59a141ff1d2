"""Small helpers for tests that talk to the reference server directly: synthetic frames as JPEG /
mp4 data URLs (independent of vidline.encode on purpose)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from vidline.synth import Marker, render_frame


def frames_at(
    times: Sequence[float], markers: Sequence[Marker], size: tuple[int, int] = (160, 120)
) -> list[np.ndarray]:
    """``vidline.synth.render_frame`` at each time (seconds)."""
    return [render_frame(float(t), size[0], size[1], markers) for t in times]


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_data_url(image: np.ndarray, quality: int = 85) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(image, quality)).decode("ascii")


def jpeg_list_url(images: Sequence[np.ndarray]) -> str:
    """vLLM's frame-list form: ``data:video/jpeg;base64,<f1>,<f2>,...``."""
    return "data:video/jpeg;base64," + ",".join(
        base64.b64encode(jpeg_bytes(im)).decode("ascii") for im in images
    )


def mp4_bytes(images: Sequence[np.ndarray], pts_seconds: Sequence[float], *, crf: int = 26) -> bytes:
    """An H.264 mp4 whose frames carry exactly the given presentation times (seconds, 1/1000 s base)."""
    if len(images) != len(pts_seconds):
        raise ValueError("one PTS per image")
    tb = Fraction(1, 1000)
    buf = io.BytesIO()
    height, width = images[0].shape[:2]
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
        for img, t in zip(images, pts_seconds, strict=True):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = int(round(t * 1000))
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def mp4_data_url(images: Sequence[np.ndarray], pts_seconds: Sequence[float]) -> str:
    return "data:video/mp4;base64," + base64.b64encode(mp4_bytes(images, pts_seconds)).decode("ascii")
