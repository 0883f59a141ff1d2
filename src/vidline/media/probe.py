"""``probe(path) -> VideoInfo``: what a video file is, cheaply (container index + one decoded frame)."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vidline.errors import NoVideoStreamError, VideoOpenError
from vidline.log import logger
from vidline.types import VideoInfo

_HEAD_PACKETS = 400  # packets demuxed to find the keyframe interval when the container has no index
_TAIL_SECONDS = 10.0  # the end of the video stream is looked for from this far before the file's end
_TAIL_TRIES = 5  # each try starts 4x further back (the last one reads the whole file)


def check_path(path: str | os.PathLike[str]) -> Path:
    """Raise VideoOpenError unless ``path`` is an existing, non-empty regular file."""
    p = Path(path)
    if not p.exists():  # named as given (a URL keeps its "//"; only files are read)
        raise VideoOpenError(os.fspath(path), "no such file" + (" (only local files are read)" if "://" in
                                                                 os.fspath(path) else ""))
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
    image = next((n for n in str(container.format.name).split(",") if n.endswith("_pipe")), None)
    if image is not None:  # FFmpeg's single-image demuxers (png_pipe, jpeg_pipe, webp_pipe, ...)
        container.close()
        raise VideoOpenError(p, f"a still image ({image.removesuffix('_pipe')}), not a video "
                                "(`vidline ask` takes images)")
    return container


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def _has_stream_durations(container: Any) -> bool:
    """mp4/mov: the sample tables give each stream's exact extent."""
    return bool({"mov", "mp4"} & set(str(container.format.name).split(",")))


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
    sar = sample_aspect(stream)
    shown_w, shown_h = shown_size(width, height, sar)
    disp_w, disp_h = (shown_h, shown_w) if rotation in (90, 270) else (shown_w, shown_h)

    avg = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(avg) if avg else 0.0

    # Index (mp4/mov keep one per stream): VFR, keyframe interval, truncation.
    entries = stream.index_entries
    n_entries = len(entries)

    # Duration from the first displayed frame to the end of the last one. mp4/mov store the video
    # stream's own duration (edit lists applied); Matroska/WebM, FLV and MPEG-TS do not (FFmpeg then
    # gives the longest stream's, or an estimate from the bit rate or the first and last PTS), and
    # AVI's counts from the first decoded frame, not the first shown: there the last packets are read.
    duration = 0.0
    truncated = False
    tail: _Tail | None = None
    if stream.duration and stream.start_time is not None and n_entries and _has_stream_durations(container):
        duration = float((stream.start_time + stream.duration - first_pts) * tb)
    else:
        tail = _read_tail(container, stream)
        if tail is not None and _declared_end_missing(container, tail):
            # no stream gets near the end the header declares: the file was cut. Keep the declared
            # length (what the file was); decoding finds where the data stops and says so once.
            logger.debug("%s: the packets end %.3f s before the header says (truncated?)", p,
                         (tail.declared_end or 0.0) - tail.file_end)
            tail = None
        if tail is not None and tail.video_end is not None:
            frame = tail.frame_duration or frame_ticks(fps, tb)
            duration = float((tail.video_end + frame - first_pts) * tb)
        elif stream.duration and stream.start_time is not None:
            duration = float((stream.start_time + stream.duration - first_pts) * tb)
        elif container.duration:
            c_start = (container.start_time or 0) / av.time_base
            duration = container.duration / av.time_base - (start_time - c_start)
    duration = max(duration, 0.0)
    if duration <= 0.0:
        raise VideoOpenError(
            p, "no usable duration (the video has no timestamps: a still image or a raw elementary stream?"
            " remux it into .mp4 or .mkv, e.g. ffmpeg -r FPS -i FILE -c copy out.mp4)"
        )
    is_vfr = False
    keyframe_interval: float | None = None
    deltas: list[int] = []
    head: _Head | None = None  # the first packets, read at most once
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
        head = _read_head(container, stream)
        keyframe_interval = head.keyframe_interval(tb)

    frame_count = int(stream.frames or 0)
    every_frame_indexed = n_entries >= 3 and _indexes_every_frame(container)
    if every_frame_indexed and not is_vfr and deltas:
        # AVI holding H.264 says twice its rate (and frame count): the index's steps are the frames'
        index_fps = 1.0 / float(statistics.median(deltas) * tb)
        if fps and abs(fps - index_fps) > 0.05 * index_fps:
            fps = index_fps
            frame_count = min(frame_count, n_entries) if frame_count else n_entries
    elif not every_frame_indexed and tail is not None and tail.frame_duration and fps and duration:
        # no per-frame index (MPEG-TS; Matroska indexes keyframes only): FFmpeg's rate is a guess from
        # the first frames or the header's. When the first or the last frames run at another rate the
        # stream is variable: count its packets (no decoding, ~0.3 s per 90,000 frames) for its true
        # average rate and frame count
        rates = [1.0 / float(tail.frame_duration * tb)]
        head = head or _read_head(container, stream)  # read once: the keyframe interval may have read it
        if head.step:
            rates.append(1.0 / float(head.step * tb))
        if any(abs(rate - fps) > 0.05 * max(rate, fps) for rate in rates):
            counted = _count_frames(container, stream)
            if counted:
                fps, frame_count, is_vfr = counted / duration, counted, True
    if frame_count > 0 and n_entries == frame_count:
        # samples an edit list cuts away (mp4 cut with ``-ss ... -c copy``) are in the index, marked
        # "discard": they are decoded but never shown
        frame_count -= sum(1 for e in entries if e.is_discard)
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
        sample_aspect_ratio=sar,
    )


def sample_aspect(stream: Any) -> Fraction:
    """The stream's pixel aspect ratio (SAR: a pixel's width over its height), 1 when unset or absurd."""
    for source in (stream, stream.codec_context):
        value = getattr(source, "sample_aspect_ratio", None)
        if value:
            sar = Fraction(value)
            if Fraction(1, 10) <= sar <= 10:
                return sar
    return Fraction(1)


def frame_ticks(fps: float | None, time_base: Fraction | None) -> int:
    """One frame step of a ``fps`` stream in ``time_base`` ticks; 0 when either is unknown."""
    return round(1 / (fps * time_base)) if fps and time_base else 0


def true_last_pts(before: int, last: int, step: int) -> int:
    """The last frame's PTS, ``last``, unless it is one FFmpeg made up (AVI holding H.264 gives the last
    packet its DTS + 1 tick, where every other frame is shown a frame step after its DTS): a PTS less
    than a quarter ``step`` (the frame step, in ticks) after the one ``before`` it is taken as one
    step after it. Pure; used by probe and by both decoders."""
    if step > 4 and 0 < last - before < step / 4:
        return before + step
    return last


def shown_size(width: int, height: int, sar: Fraction) -> tuple[int, int]:
    """The size of a ``width x height`` picture of pixel aspect ``sar`` shown with square pixels:
    widened when its pixels are wide (720x576 at 64:45 -> 1024x576, as players show it), made taller
    when they are narrow (no pixel is lost either way)."""
    if sar > 1:
        return max(1, round(width * sar)), height
    if sar < 1:
        return width, max(1, round(height / sar))
    return width, height


@dataclass(frozen=True)
class _Head:
    """What the first packets of the video stream say (timestamps in its time base)."""

    keys: tuple[int, ...]  # PTS of the first keyframes (up to 4)
    step: int  # median step between the first frames' PTS; 0 when unknown

    def keyframe_interval(self, tb: Fraction) -> float | None:
        """Keyframe spacing in seconds; None if fewer than 2 keyframes were seen."""
        diffs = [b - a for a, b in zip(self.keys, self.keys[1:], strict=False) if b > a]
        return float(statistics.median(diffs) * tb) if diffs else None


_HEAD_KEYS = 4
_HEAD_FRAMES = 16


def _read_head(container: Any, stream: Any) -> _Head:
    """Demux (no decoding) the first packets of the video stream, up to ``_HEAD_KEYS`` keyframes and
    ``_HEAD_FRAMES`` frames or ``_HEAD_PACKETS`` packets."""
    try:
        container.seek(0, stream=stream, backward=True)
    except av.error.FFmpegError:
        return _Head((), 0)
    keys: list[int] = []
    pts: list[int] = []
    try:
        for i, packet in enumerate(container.demux(stream)):
            if i >= _HEAD_PACKETS or packet.pts is None and packet.size == 0:
                break
            if packet.pts is None:
                continue
            if packet.is_keyframe and len(keys) < _HEAD_KEYS:
                keys.append(int(packet.pts))
            if packet.size and len(pts) < _HEAD_FRAMES:
                pts.append(int(packet.pts))
            if len(keys) >= _HEAD_KEYS and len(pts) >= _HEAD_FRAMES:
                break
    except av.error.FFmpegError:
        pass
    distinct = sorted(set(pts))
    steps = [b - a for a, b in zip(distinct, distinct[1:], strict=False)]
    return _Head(tuple(keys), int(statistics.median(steps)) if steps else 0)


@dataclass(frozen=True)
class _Tail:
    """What the last packets of a file say (timestamps in the video stream's time base)."""

    video_end: int | None  # largest video PTS (the last displayed frame's)
    frame_duration: int  # the last frame's duration (0 when unknown)
    file_end: float  # seconds: where the last packet of any stream ends
    declared_end: float | None  # seconds: where the container header says the file ends


def _read_tail(container: Any, stream: Any) -> _Tail | None:
    """Demux (no decoding) the last few seconds of every stream: the video stream's own extent.

    Starts ``_TAIL_SECONDS`` before the container's end and goes further back only when no video
    packet turns up there (a longer audio track), so an hour-long file costs a seek and a few seconds
    of packets. None when the file has no timestamps at all.
    """
    c_start = (container.start_time or 0) / av.time_base
    declared_end = c_start + container.duration / av.time_base if container.duration else None
    back = _TAIL_SECONDS
    for attempt in range(_TAIL_TRIES):
        whole = attempt == _TAIL_TRIES - 1 or declared_end is None or declared_end - back <= c_start
        try:
            if whole:
                container.seek(0, backward=True, any_frame=False)  # from the start (AV_TIME_BASE units)
            else:
                assert declared_end is not None
                container.seek(int((declared_end - back) * av.time_base), backward=True, any_frame=False)
        except av.error.FFmpegError:
            if whole:
                return None
            back *= 4
            continue
        video_pts: list[int] = []
        last_duration = 0
        file_end = 0.0
        try:
            for packet in container.demux():
                if packet.pts is None or packet.stream.time_base is None:
                    continue
                end = float((packet.pts + (packet.duration or 0)) * packet.stream.time_base)
                file_end = max(file_end, end)
                if packet.stream.index == stream.index and packet.size:
                    if not video_pts or packet.pts >= max(video_pts[-1], packet.pts):
                        last_duration = int(packet.duration or 0)
                    video_pts.append(packet.pts)
        except av.error.FFmpegError:
            pass  # a damaged or cut tail: what was read is what there is
        if video_pts:
            distinct = sorted(set(video_pts))[-9:]
            steps = [b - a for a, b in zip(distinct, distinct[1:], strict=False)]
            # the last frame lasts as long as the frames before it (packet durations are often the
            # container's nominal rate, wrong on VFR)
            frame_duration = int(statistics.median(steps)) if steps else last_duration
            end = true_last_pts(distinct[-2], distinct[-1], frame_duration) if len(steps) >= 3 else distinct[-1]
            return _Tail(end, frame_duration, file_end, declared_end)
        if whole:
            return _Tail(None, 0, file_end, declared_end)
        back *= 4
    return None


def _indexes_every_frame(container: Any) -> bool:
    """mp4/mov and AVI index every frame (Matroska's cues name keyframes only)."""
    return _has_stream_durations(container) or "avi" in str(container.format.name).split(",")


def _count_frames(container: Any, stream: Any) -> int:
    """The video stream's frames, counted from its packets (demuxed from the start, not decoded)."""
    try:
        container.seek(0, backward=True, any_frame=False)
        return sum(1 for packet in container.demux(stream) if packet.pts is not None and packet.size)
    except av.error.FFmpegError:
        return 0


def _declared_end_missing(container: Any, tail: _Tail) -> bool:
    """True when no stream reaches the end the header declares by far: the rest of the file is missing
    (a cut Matroska file keeps its header's duration). A longer audio track is not truncation."""
    if tail.declared_end is None or not tail.file_end:
        return False
    c_start = (container.start_time or 0) / av.time_base
    declared = tail.declared_end - c_start
    missing = min(tail.declared_end - tail.file_end, declared - (tail.file_end - c_start))
    return missing > max(1.0, 0.05 * declared)
