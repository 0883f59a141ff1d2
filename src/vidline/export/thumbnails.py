"""Small JPEG thumbnails at given times, decoded with PyAV (seek to the keyframe before, decode forward).

Times are seconds from the first displayed frame (the vidline convention), so the stream's start
offset is added before seeking. Display rotation metadata is applied, so thumbnails are upright.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from vidline.errors import DecodeError, NoVideoStreamError, VideoOpenError
from vidline.log import logger
from vidline.media.probe import sample_aspect

DEFAULT_WIDTH = 160


def _upright(frame: av.VideoFrame) -> np.ndarray:
    rgb: np.ndarray = frame.to_ndarray(format="rgb24")
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    # PyAV reports the display matrix angle counter-clockwise; a player rotates clockwise by -angle.
    k = (rotation // 90) % 4
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
    return rgb


def _to_jpeg(rgb: np.ndarray, width: int, quality: int, pixel_aspect: Fraction = Fraction(1)) -> bytes:
    """JPEG of upright ``rgb`` at most ``width`` wide, with square pixels (``pixel_aspect``: the upright
    picture's pixel width over height; anamorphic video is stretched as a player shows it)."""
    img = Image.fromarray(rgb)
    shown_w = img.width * float(pixel_aspect)
    if shown_w > width or pixel_aspect != 1:
        out_w = min(width, max(1, round(shown_w)))
        height = max(1, round(img.height * out_w / shown_w))
        img = img.resize((out_w, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def extract_thumbnails(
    path: str | os.PathLike[str],
    times: Sequence[float],
    *,
    width: int = DEFAULT_WIDTH,
    quality: int = 75,
) -> list[bytes | None]:
    """One JPEG per requested time (same order): the first frame displayed at or after ``t``
    (the last frame when ``t`` is past the end). ``None`` where nothing could be decoded.

    Raises VideoOpenError / NoVideoStreamError when the file cannot be opened as a video.
    """
    if not os.path.isfile(path):
        raise VideoOpenError(path, "no such file")
    results: list[bytes | None] = [None] * len(times)
    with _FrameFinder(path) as finder:
        sar = sample_aspect(finder.stream)
        jpegs: dict[int, bytes | None] = {}  # by frame pts: many events can show the same frame
        for i in sorted(range(len(times)), key=lambda k: times[k]):
            try:
                frame = finder.at(finder.origin + max(0.0, float(times[i])))
            except av.error.FFmpegError as exc:
                logger.debug("thumbnail at %.3f s failed: %s", times[i], exc)
                finder.reset()
                continue
            if frame is not None:
                key = int(frame.pts or 0)  # the finder only returns frames with a pts
                if key not in jpegs:
                    quarter = int(getattr(frame, "rotation", 0) or 0) % 180 != 0  # a quarter turn: 1/SAR
                    jpegs[key] = _to_jpeg(_upright(frame), width, quality, 1 / sar if quarter else sar)
                results[i] = jpegs[key]
    return results


class _FrameFinder:
    """The first frame displayed at or after each target (the last frame past the end), for targets
    in increasing order: decoding goes on forward to a target less than ``FORWARD`` seconds ahead
    (events close together: one pass, not one seek each) and seeks to the keyframe before any other.

    A seek that lands past the target (MPEG-TS has no index and lands on the keyframe *after* the
    point asked; open GOPs show leading pictures before their keyframe) is redone from further back,
    and from the very start the file is opened afresh (with B-frames an MPEG-TS seek to its start
    still lands on the second keyframe)."""

    FORWARD = 2.0
    BACK_OFF = (1.0, 4.0, 16.0, 64.0)  # seconds further back for each seek that lands too late

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.container: av.container.InputContainer = self._open()
        self.frames: Iterator[av.VideoFrame] | None = None
        self.last: av.VideoFrame | None = None
        self.last_time = 0.0  # seconds (stream clock) of ``last``

    def _open(self) -> av.container.InputContainer:
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoOpenError(self.path, f"cannot open: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise NoVideoStreamError(self.path, "no video stream")
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.tb: Fraction = self.stream.time_base or Fraction(1, 1000)
        self.origin = float(self.stream.start_time * self.tb) if self.stream.start_time is not None else 0.0
        self.half_frame = 0.5 / float(self.stream.average_rate or 25)
        return container

    def __enter__(self) -> _FrameFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.close()

    def reset(self) -> None:
        self.frames, self.last = None, None

    def at(self, target: float) -> av.VideoFrame | None:
        goal = target - self.half_frame
        if self.last is not None and self.last_time >= goal:
            return self.last  # the frame found for the previous target is the first one at this one too
        if self.frames is None or self.last is None or target - self.last_time > self.FORWARD:
            self._seek_before(target)
            if self.last is not None and self.last_time >= goal:
                return self.last
        assert self.frames is not None
        for frame in self.frames:
            if frame.pts is None:
                continue
            self.last, self.last_time = frame, float(frame.pts * self.tb)
            if self.last_time >= goal:
                return frame
        self.frames = None  # the end: the last frame stands for any later target
        return self.last

    def _seek_before(self, target: float) -> None:
        """Position the decoder so that its first frame (``last``) is at or before ``target``."""
        for back in (0.0, *self.BACK_OFF):
            point = target - back
            if point <= self.origin:
                break
            self.container.seek(int(point / self.tb), stream=self.stream, backward=True, any_frame=False)
            self.frames = iter(self.container.decode(self.stream))
            self.last = next((f for f in self.frames if f.pts is not None), None)
            if self.last is not None:
                self.last_time = float(int(self.last.pts or 0) * self.tb)
                if self.last_time <= target + 1e-9:
                    return
            # landed past the target, or past the end (the keyframe after the point asked was none)
        self.container.close()  # from the start: opened afresh, no seek
        self.container = self._open()
        self.frames = iter(self.container.decode(self.stream))
        self.last = next((f for f in self.frames if f.pts is not None), None)
        if self.last is not None:
            self.last_time = float(int(self.last.pts or 0) * self.tb)


def thumbnail(path: str | os.PathLike[str], t: float, *, width: int = DEFAULT_WIDTH) -> bytes:
    """One JPEG at time ``t``; raises DecodeError when no frame can be decoded."""
    (jpeg,) = extract_thumbnails(path, [t], width=width)
    if jpeg is None:
        raise DecodeError(path, f"no frame decodable at {t:.3f} s")
    return jpeg


def data_uri(jpeg: bytes) -> str:
    """``data:image/jpeg;base64,...`` for inline <img> tags."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
