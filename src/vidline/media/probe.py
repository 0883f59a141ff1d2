"""``probe(path) -> VideoInfo``: what a video file is, cheaply (container index + one decoded frame)."""

from __future__ import annotations

import os
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vidline.errors import NoVideoStreamError, VideoOpenError
from vidline.log import logger
from vidline.types import VideoInfo

_HEAD_PACKETS = 400  # packets demuxed to find the keyframe interval when the container has no index


def check_path(path: str | os.PathLike[str]) -> Path:
    """Raise VideoOpenError unless ``path`` is an existing, non-empty regular file."""
    p = Path(path)
    if not p.exists():
        raise VideoOpenError(p, "no such file")
    if p.is_dir():
        raise VideoOpenError(p, "is a directory, not a video file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise VideoOpenError(p, f"cannot read ({exc.strerror})") from exc
    if size == 0:
        raise VideoOpenError(p, "empty file (0 bytes)")
    return p


def open_container(path: str | os.PathLike[str]) -> Any:
    """``av.open`` with errors translated; the caller closes the container."""
    p = check_path(path)
    try:
        container = av.open(str(p), "r")
    except av.error.FFmpegError as exc:
        raise VideoOpenError(p, f"not a readable media file ({_short(exc)})") from exc
    except (OSError, ValueError) as exc:
        raise VideoOpenError(p, f"cannot open ({exc})") from exc
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = (
            "audio only"
            if kinds == ["audio"]
            else ("streams: " + ", ".join(kinds) if kinds else "no streams")
        )
        raise NoVideoStreamError(p, f"no video stream ({what})")
    return container


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def _container_name(container: Any, path: Path) -> str:
    names = str(container.format.name).split(",")
    ext = path.suffix.lower().lstrip(".")
    return ext if ext in names else names[0]


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe a video file. Raises VideoOpenError / NoVideoStreamError with a one-line message.

    Time 0 is the first displayed frame; ``start_time`` is that frame's PTS in seconds.
    """
    p = check_path(path)
    container = open_container(p)
    try:
        return _probe(container, p)
    except av.error.FFmpegError as exc:
        raise VideoOpenError(p, f"cannot read video stream ({_short(exc)})") from exc
    finally:
        container.close()


def _probe(container: Any, p: Path) -> VideoInfo:
    stream = container.streams.video[0]
    tb: Fraction = stream.time_base or Fraction(1, 1000)
    size_bytes = p.stat().st_size

    # First displayed frame: decode until the first frame comes out (decoder output is in
    # presentation order). Gives the true start PTS and the display-matrix rotation.
    first_pts: int | None = None
    rotation = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError:
                continue
            if frames:
                f = frames[0]
                first_pts = f.pts if f.pts is not None else 0
                rotation = (-int(round(f.rotation))) % 360
                break
    except av.error.FFmpegError as exc:
        raise VideoOpenError(p, f"no decodable video frames ({_short(exc)})") from exc
    if first_pts is None:
        raise VideoOpenError(p, "no decodable video frames")
    start_time = float(first_pts * tb)

    ctx = stream.codec_context
    width, height = int(ctx.width or stream.width), int(ctx.height or stream.height)
    rotation = rotation if rotation in (90, 180, 270) else 0
    disp_w, disp_h = (height, width) if rotation in (90, 270) else (width, height)

    avg = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(avg) if avg else 0.0

    # Duration from the first displayed frame.
    duration = 0.0
    if stream.duration and stream.start_time is not None:
        duration = float((stream.start_time + stream.duration - first_pts) * tb)
    elif container.duration:
        c_start = (container.start_time or 0) / av.time_base
        duration = container.duration / av.time_base - (start_time - c_start)
    duration = max(duration, 0.0)

    # Index (mp4/mov keep one per stream): VFR, keyframe interval, truncation.
    entries = stream.index_entries
    n_entries = len(entries)
    is_vfr = False
    keyframe_interval: float | None = None
    truncated = False
    if n_entries >= 3:
        stamps: list[int] = []
        key_stamps: list[int] = []
        last_complete: int | None = None
        for e in entries:
            stamps.append(e.timestamp)
            if e.is_keyframe:
                key_stamps.append(e.timestamp)
            if e.pos + e.size <= size_bytes:
                last_complete = e.timestamp
        deltas = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b > a]
        if deltas:
            med = statistics.median(deltas)
            is_vfr = any(abs(d - med) > max(1, 0.02 * med) for d in deltas)
            if not fps and duration:
                fps = n_entries / duration
        if len(key_stamps) >= 2:
            kd = [b - a for a, b in zip(key_stamps, key_stamps[1:], strict=False)]
            keyframe_interval = float(statistics.median(kd) * tb)
        elif len(key_stamps) == 1 and n_entries > 1:
            keyframe_interval = None  # one keyframe only: seeking never helps
        last = entries[n_entries - 1]
        if last.pos + last.size > size_bytes and last_complete is not None:
            truncated = True
            frame_dur = 1.0 / fps if fps else 0.0
            duration = max(0.0, float((last_complete - first_pts) * tb) + frame_dur)
            logger.debug("%s: index points past the end of the file (truncated)", p)
    else:
        base = stream.base_rate
        if avg and base and float(base) > 0:
            is_vfr = abs(float(avg) - float(base)) / float(base) > 0.01
        keyframe_interval = _keyframe_interval_from_head(container, stream, tb)

    frame_count = int(stream.frames or 0)
    if truncated or frame_count <= 0:
        frame_count = int(round(duration * fps)) if fps else 0

    return VideoInfo(
        path=str(p),
        container=_container_name(container, p),
        codec=str(ctx.name),
        width=width,
        height=height,
        display_width=disp_w,
        display_height=disp_h,
        rotation=rotation,
        duration=duration,
        fps=fps,
        is_vfr=is_vfr,
        frame_count=frame_count,
        keyframe_interval=keyframe_interval,
        start_time=start_time,
        time_base=tb,
        has_audio=bool(container.streams.audio),
        size_bytes=size_bytes,
        truncated=truncated,
    )


def _keyframe_interval_from_head(container: Any, stream: Any, tb: Fraction) -> float | None:
    """Keyframe spacing from the first few hundred packets (no decoding); None if < 2 keyframes seen."""
    try:
        container.seek(0, stream=stream, backward=True)
    except av.error.FFmpegError:
        return None
    keys: list[int] = []
    try:
        for i, packet in enumerate(container.demux(stream)):
            if i >= _HEAD_PACKETS or packet.pts is None and packet.size == 0:
                break
            if packet.is_keyframe and packet.pts is not None:
                keys.append(packet.pts)
                if len(keys) >= 4:
                    break
    except av.error.FFmpegError:
        pass
    if len(keys) < 2:
        return None
    diffs = [b - a for a, b in zip(keys, keys[1:], strict=False) if b > a]
    return float(statistics.median(diffs) * tb) if diffs else None
