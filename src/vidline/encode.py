"""Encoding sampled frames for a model request: JPEG stills, small H.264 mp4 clips, burned-in times.

``encode_mp4`` writes the frames' *real* times into the container (PTS = ``frame.t - origin``) so a
server that reads the clip's timestamps (or the reference server) sees when each frame happened,
including the uneven spacing of a VFR source.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidline.media.pixels import i420_size, video_frame
from vidline.types import Frame

MP4_TIME_BASE = Fraction(1, 1000)
_TICK = float(MP4_TIME_BASE)  # float / Fraction goes through Fraction's slow fallbacks (same result)


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """RGB uint8 array -> JPEG bytes."""
    img = Image.fromarray(np.ascontiguousarray(image[..., :3]).astype(np.uint8, copy=False), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _even(image: np.ndarray) -> np.ndarray:
    """Crop one row/column when a side is odd (yuv420p needs even sides)."""
    h, w = image.shape[:2]
    return image[: h - (h % 2), : w - (w % 2)]


def encode_mp4(
    frames: Sequence[Frame],
    *,
    crf: int = 23,
    origin: float | None = None,
    scale: float = 1.0,
    times: Sequence[float] | None = None,
) -> bytes:
    """H.264 mp4 (yuv420p) whose PTS are the frames' real times minus ``origin``.

    ``origin`` defaults to the first frame's ``t``. ``scale`` < 1 downscales every frame (used to
    stay under a data-URI limit). ``times`` overrides the clip-relative times written as PTS (used
    when a server will assume its own frame spacing). PTS are made strictly increasing.
    """
    if not frames:
        raise ValueError("encode_mp4 needs at least one frame")
    if origin is None:
        origin = frames[0].t
    rel = [f.t - origin for f in frames] if times is None else list(times)
    if len(rel) != len(frames):
        raise ValueError("times must have one entry per frame")
    first, first_fmt = _picture(frames[0], scale)
    height, width = _picture_hw(first, first_fmt)
    steps = np.diff(np.array(rel, dtype=float)) if len(rel) > 1 else np.array([0.5])
    mean_step = float(np.mean(steps)) if len(steps) and float(np.mean(steps)) > 0 else 0.5
    nominal = Fraction(1.0 / mean_step).limit_denominator(100000)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=nominal)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = MP4_TIME_BASE
        stream.codec_context.time_base = MP4_TIME_BASE
        # one encoder thread: windows are encoded concurrently by the send workers, and x264's own
        # threading costs ~35% more CPU on these small clips (measured) for no gain in throughput
        stream.options = {"crf": str(int(crf)), "preset": "veryfast", "bf": "0", "threads": "1"}
        last_pts = -1
        for frame, t in zip(frames, rel, strict=False):
            img, fmt = (first, first_fmt) if frame is frames[0] else _picture(frame, scale)
            if _picture_hw(img, fmt) != (height, width):
                rgb = img if fmt == "rgb24" else frame.rgb()
                img = np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))
                fmt = "rgb24"
            # yuv420p frames (the decoder's planar output) go to x264 without any colour conversion
            vf = video_frame(img, fmt)
            pts = max(int(round(max(t, 0.0) / _TICK)), last_pts + 1)
            last_pts = pts
            vf.pts = pts
            vf.time_base = MP4_TIME_BASE
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _picture(frame: Frame, scale: float) -> tuple[np.ndarray, str]:
    """(array, format) to feed the encoder: planar yuv420p frames as they are, else even-sided RGB."""
    if frame.format == "yuv420p" and scale >= 0.999:
        return frame.image, "yuv420p"
    return _even(_scaled(frame.rgb(), scale)), "rgb24"


def _picture_hw(image: np.ndarray, fmt: str) -> tuple[int, int]:
    """(height, width) of an encoder input from ``_picture``."""
    if fmt == "yuv420p":
        width, height = i420_size(image)
        return height, width
    return int(image.shape[0]), int(image.shape[1])


def _scaled(image: np.ndarray, scale: float) -> np.ndarray:
    image = np.ascontiguousarray(image[..., :3]).astype(np.uint8, copy=False)
    if scale >= 0.999:
        return image
    h, w = image.shape[:2]
    nw, nh = max(16, int(w * scale) // 2 * 2), max(16, int(h * scale) // 2 * 2)
    return np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))


def downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an RGB array by ``scale`` (even sides, at least 16 px)."""
    return _scaled(image, scale)


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def format_burn_time(t: float) -> str:
    return f"t={t:.1f}s"


def burn_timestamp(image: np.ndarray, t: float) -> np.ndarray:
    """A copy of ``image`` with ``t=12.5s`` drawn in white on a black box in the top-left corner."""
    img = Image.fromarray(np.ascontiguousarray(image[..., :3]).astype(np.uint8, copy=False), "RGB")
    h = img.height
    size = max(12, h // 10)
    font = _font(size)
    draw = ImageDraw.Draw(img)
    text = format_burn_time(t)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 6)
    draw.rectangle((0, 0, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), fill=(0, 0, 0))
    draw.text((pad - x0, pad - y0), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)
