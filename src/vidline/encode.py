"""Encoding sampled frames for a model request: JPEG stills, small H.264 mp4 clips, burned-in times.

``encode_mp4`` writes the frames' *real* times into the container (PTS = ``frame.t - origin``) so a
server that reads the clip's timestamps (or the reference server) sees when each frame happened,
including the uneven spacing of a VFR source.
"""

from __future__ import annotations

import contextlib
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
    steps = np.diff(np.array(rel, dtype=float)) if len(rel) > 1 else np.array([0.5])
    mean_step = float(np.mean(steps)) if len(steps) and float(np.mean(steps)) > 0 else 0.5
    writer = Mp4Writer(crf=crf, rate=1.0 / mean_step, scale=scale)
    try:
        for frame, t in zip(frames, rel, strict=False):
            writer.add(frame, t)
        return writer.finish()
    finally:
        writer.close()


# x264's preset for the clips sent to the model. "superfast" against "veryfast" (measured on 1008x560
# windows of the 720p bench hour): ~30 % less encoding CPU, ~40 MB less peak RSS with two decode
# lanes (no lookahead buffers), the same size at the same CRF; "ultrafast" saves another ~40-50 % of
# CPU but its clips are ~35-70 % larger (no CABAC, no deblocking), which a remote server's upload pays.
X264_PRESET = "superfast"
# ... and the one used while a request slot waits for the clip (the timeline's start, a fast server, a
# decode-bound run): there the encoding CPU delays the request, and a few more bytes do not
X264_FAST_PRESET = "ultrafast"


class Mp4Writer:
    """An H.264 mp4 written one frame at a time (``encode_mp4`` and the timeline's encode-while-
    decoding path): ``add(frame, t)`` as frames arrive, then ``finish()`` for the bytes.

    ``rate`` is the nominal frame rate stored in the stream; each frame's PTS is its ``t`` (clip
    seconds), made strictly increasing. The first frame fixes the picture size; planar yuv420p
    frames reach x264 without any colour conversion."""

    def __init__(self, *, crf: int = 23, rate: float = 2.0, scale: float = 1.0,
                 preset: str = X264_PRESET) -> None:
        self.scale = scale
        self.preset = preset
        self.n_frames = 0
        self._buf = io.BytesIO()
        self._out = av.open(self._buf, "w", format="mp4")
        self._stream = self._out.add_stream("libx264", rate=Fraction(rate).limit_denominator(100000))
        self._crf = crf
        self._size: tuple[int, int] | None = None  # (height, width)
        self._last_pts = -1

    def add(self, frame: Frame, t: float) -> None:
        img, fmt = _picture(frame, self.scale)
        if self._size is None:
            self._open(*_picture_hw(img, fmt))
        assert self._size is not None
        if _picture_hw(img, fmt) != self._size:
            rgb = img if fmt == "rgb24" else frame.rgb()
            height, width = self._size
            img = np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))
            fmt = "rgb24"
        vf = video_frame(img, fmt)
        pts = max(int(round(max(t, 0.0) / _TICK)), self._last_pts + 1)
        self._last_pts = pts
        vf.pts = pts
        vf.time_base = MP4_TIME_BASE
        for packet in self._stream.encode(vf):
            self._out.mux(packet)
        self.n_frames += 1

    def _open(self, height: int, width: int) -> None:
        stream = self._stream
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = MP4_TIME_BASE
        stream.codec_context.time_base = MP4_TIME_BASE
        # one encoder thread: windows are encoded concurrently by the send workers, and x264's own
        # threading costs ~35% more CPU on these small clips (measured) for no gain in throughput
        stream.options = {"crf": str(int(self._crf)), "preset": self.preset, "bf": "0", "threads": "1"}
        self._size = (height, width)

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the clip, once the first frame is in."""
        return None if self._size is None else (self._size[1], self._size[0])

    def finish(self) -> bytes:
        """Flush the encoder and close the file; the mp4's bytes."""
        if self.n_frames == 0:
            raise ValueError("an mp4 needs at least one frame")
        for packet in self._stream.encode():
            self._out.mux(packet)
        self._out.close()
        return self._buf.getvalue()

    def close(self) -> None:
        """Abandon the clip (after ``finish`` this does nothing)."""
        with contextlib.suppress(av.error.FFmpegError, ValueError):  # no frame yet, or already closed
            self._out.close()


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
