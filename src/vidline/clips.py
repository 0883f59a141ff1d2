"""Cut clips out of a video with PyAV: one range (``extract_clip``) or one file per timeline event.

Two modes:

- **stream copy** (default): packets are remuxed unchanged, starting at the keyframe at or before the
  requested start and ending before the requested end. Fast and lossless, but the clip starts at a
  keyframe, so up to one GOP early. The actual start is returned (``ClipResult.start``) and logged.
  Audio streams are copied too.
- **re-encode**: frames are decoded and those with ``start <= t < end`` are encoded to H.264 (audio to
  AAC, trimmed to the same range), timestamps starting at 0. Frame-exact, slower. Pictures are
  written upright (display-matrix rotation applied to the pixels) and, when a side is odd, padded
  by one pixel (a copy of the last row/column) to the even size H.264 in yuv420p needs.

Times are seconds from the first displayed frame (``VideoInfo.start_time``), the clock of every
timeline and sample. Outputs are .mp4, .mkv or .mov; a range without any video frame is an error
(``EmptyClipError``) and leaves no file behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidline.errors import ConfigError, DecodeError, require_number
from vidline.export.timefmt import split_ms
from vidline.log import logger
from vidline.media.pixels import frame_array, i420_rotate, video_frame
from vidline.media.probe import open_container, probe
from vidline.types import VideoInfo

_EPS = 1e-6
_MAX_REORDER = 32  # packets: more than any decoder's reordering delay

OUTPUT_FORMATS = (".mp4", ".mkv", ".mov")


class EmptyClipError(DecodeError):
    """The requested range holds no decodable video frame (no file is written)."""


@dataclass(frozen=True)
class ClipResult:
    """One written clip. ``start``/``end`` are the times actually covered (source seconds)."""

    path: Path
    requested_start: float
    requested_end: float
    start: float  # first frame's source time (copy mode: the keyframe at/before requested_start)
    end: float  # end of the last frame (its time + its duration)
    frames: int
    reencoded: bool
    label: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


# ----------------------------------------------------------------------------------------- pure helpers


def slugify(text: str, max_len: int = 40) -> str:
    """``"Yellow forklift / dock"`` -> ``"yellow-forklift-dock"``."""
    slug = re.sub(r"[^\w]+", "-", text.lower(), flags=re.UNICODE).strip("-_")
    return slug[:max_len].rstrip("-") or "event"


def file_timestamp(seconds: float) -> str:
    """``62.5`` -> ``"00-01-02.500"`` (a timestamp safe in file names on every OS)."""
    h, m, s, ms = split_ms(seconds)
    return f"{h:02d}-{m:02d}-{s:02d}.{ms:03d}"


MAX_NAME_BYTES = 255  # a file name's limit on Linux, macOS and Windows file systems


def clip_filename(stem: str, start: float, end: float, label: str | None = None, ext: str = ".mp4") -> str:
    """``<stem>_00-01-02.500_00-01-05.000_<label-slug>.mp4``. A video name too long for that to fit
    ``MAX_NAME_BYTES`` (UTF-8) is cut, with room to spare for a ``_<n>`` that tells clashes apart."""
    rest = f"_{file_timestamp(start)}_{file_timestamp(end)}"
    if label:
        rest += f"_{slugify(label)}"
    room = MAX_NAME_BYTES - 8 - len((rest + ext).encode())
    cut = stem.encode()[:max(room, 1)].decode("utf-8", errors="ignore")
    return (cut or "clip") + rest + ext


def _unused(name: str, used: set[str]) -> str:
    """``name``, or ``<name>_<n>`` with the smallest n >= 2 that is not in ``used``."""
    if name not in used:
        return name
    base, ext = os.path.splitext(name)
    n = 2
    while f"{base}_{n}{ext}" in used:
        n += 1
    return f"{base}_{n}{ext}"


def check_range(start: float, end: float) -> None:
    if start < 0:
        raise ConfigError(f"clip start {start:g} s is negative")
    if not end > start:
        raise ConfigError(f"clip end ({end:g} s) must be after its start ({start:g} s)")


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size a picture is encoded at: each odd side one pixel larger (H.264 in yuv420p)."""
    return width + width % 2, height + height % 2


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------------------- output paths


def check_output(out: str | os.PathLike[str], video: str | os.PathLike[str] | None = None) -> Path:
    """Raise ConfigError (naming ``out``) unless a clip can be written there: a .mp4/.mkv/.mov file
    name, not a directory, not the input video, no file where its folder should be. (The folder
    itself is created when the clip is written.)"""
    out_path = Path(out)
    if out_path.is_dir():
        raise ConfigError(f"output {out_path} is a directory: give a file name ending in "
                          f"{_formats_text()}")
    ext = out_path.suffix.lower()
    if ext not in OUTPUT_FORMATS:
        what = f"format {ext}" if ext else "format (no file extension)"
        raise ConfigError(f"output {out_path}: unsupported {what}: use {_formats_text()}")
    if video is not None and out_path.exists() and _same_file(out_path, Path(video)):
        raise ConfigError(f"output {out_path} is the input video: choose another file name")
    for parent in out_path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"output {out_path}: cannot create its folder {out_path.parent}: "
                                  f"{parent} is not a folder")
            break
    return out_path


def _formats_text() -> str:
    return ", ".join(OUTPUT_FORMATS[:-1]) + " or " + OUTPUT_FORMATS[-1]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _make_dir(path: Path, what: str) -> None:
    """``mkdir -p path``; ConfigError starting with ``what`` (e.g. "cannot create output directory")."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise ConfigError(f"{what} {path}: a file of that name is in the way") from exc
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {_short(exc)}") from exc


def _open_output(out_path: Path) -> Any:
    try:
        return av.open(str(out_path), "w")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot write {out_path}: {_short(exc)}") from exc


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        logger.debug("cannot remove %s: %s", path, exc)


# ----------------------------------------------------------------------------------------- I/O


def _open(path: str | os.PathLike[str]) -> tuple[VideoInfo, Any, Any]:
    """(probe info, container, its first video stream); VideoOpenError/NoVideoStreamError for bad input."""
    info = probe(path)
    container = open_container(path)
    return info, container, container.streams.video[0]


def _origin(info: VideoInfo, stream: Any) -> int:
    """PTS of the first displayed frame (time 0 of every timeline), in ``stream.time_base`` ticks."""
    return int(round(Fraction(info.start_time).limit_denominator(10**9) / stream.time_base))


def _demux_from_keyframe(container: Any, vs: Any, streams: Sequence[Any], target_pts: int, origin: int) -> tuple[
        Any, Iterator[Any], list[Any]]:
    """Position the demuxer at the video keyframe at or before ``target_pts``.

    Returns (that keyframe packet, the packet iterator continuing after it, other-stream packets seen
    on the way). Seeks further back when the container's index lands after the target.
    """
    tb = vs.time_base
    first = min(origin, int(vs.start_time)) if vs.start_time is not None else origin
    at_start: tuple[Any, Iterator[Any], list[Any]] | None = None  # the first keyframe a seek to the start gave
    for back in (0.0, 2.0, 10.0, 60.0, None, "byte"):
        seek_pts = first if not isinstance(back, float) else max(first, target_pts - int(back / tb))
        try:
            if back == "byte":  # the file's first byte: MPEG-TS with B-frames lands on its second keyframe
                container.seek(0, unsupported_byte_offset=True)  # even when asked for its first
            else:
                container.seek(seek_pts, stream=vs, backward=True)
        except av.error.FFmpegError:
            if isinstance(back, float):
                continue
            if back == "byte":
                break  # no byte seeks (mp4): the keyframe the start gave is the first there is
        packets = container.demux(list(streams))
        others: list[Any] = []
        for pkt in packets:
            if pkt.dts is None and pkt.pts is None:
                continue
            if pkt.stream is not vs:
                others.append(pkt)
                continue
            if not pkt.is_keyframe or pkt.pts is None:
                continue
            if pkt.pts <= target_pts or back == "byte":
                return pkt, packets, others
            if back is None:
                at_start = (pkt, packets, others)
            break  # the first keyframe is after the target: seek further back
    if at_start is not None:
        return at_start
    raise DecodeError(container.name, "no keyframe found before the clip start")


def extract_clip(
    video: str | os.PathLike[str],
    start: float,
    end: float,
    out: str | os.PathLike[str],
    *,
    reencode: bool = False,
    audio: bool = True,
    crf: int = 20,
    preset: str = "veryfast",
    label: str | None = None,
) -> ClipResult:
    """Write ``[start, end)`` of ``video`` to ``out`` (mp4/mkv/mov by extension).

    Stream copy by default (cut at the keyframe at/before ``start``); ``reencode=True`` for a
    frame-exact cut. ``end`` beyond the video is clamped to its end. Times are seconds from the first
    displayed frame, as in timelines.
    Raises VideoOpenError/NoVideoStreamError for bad input, ConfigError for a bad range or output
    path, EmptyClipError (a DecodeError) when the range holds no video frame; no file is left
    behind on error.
    """
    start, end = float(start), float(end)
    check_range(start, end)
    out_path = check_output(out, video)
    return _extract(video, None, start, end, out_path, reencode=reencode, audio=audio, crf=crf,
                    preset=preset, label=label)


def _extract(video: str | os.PathLike[str], info: VideoInfo | None, start: float, end: float, out_path: Path, *,
             reencode: bool, audio: bool, crf: int, preset: str, label: str | None) -> ClipResult:
    if info is None:
        info, container, vs = _open(video)
    else:
        container = open_container(video)
        vs = container.streams.video[0]
    written = False
    try:
        if info.duration > 0 and start >= info.duration:
            raise ConfigError(f"clip start {start:g} s is past the end of the video ({info.duration:.3f} s)")
        audio_streams = list(container.streams.audio) if audio else []
        _make_dir(out_path.parent, f"output {out_path}: cannot create its folder")
        out = _open_output(out_path)
        written = True
        try:
            if reencode:
                res = _reencode(container, vs, info, audio_streams[:1], start, end, out, crf=crf, preset=preset)
            else:
                res = _copy(container, vs, info, audio_streams, start, end, out)
        finally:
            out.close()
        if res[2] == 0 or not res[3]:
            raise EmptyClipError(video, f"no video frames between {start:.3f} s and {end:.3f} s; "
                                        f"no clip written")
        written = False  # keep the file
    except av.error.FFmpegError as exc:
        if getattr(exc, "filename", None) == str(out_path):
            raise ConfigError(f"cannot write {out_path}: {_short(exc)}") from exc
        raise DecodeError(video, f"clip failed ({_short(exc)})") from exc
    finally:
        container.close()
        if written:
            _remove(out_path)
    result = ClipResult(out_path, start, end, res[0], res[1], res[2], reencode, label)
    if not reencode and start - result.start > 0.001:
        logger.info("%s: stream copy starts at keyframe %.3f s (requested %.3f s); use --reencode for "
                    "an exact cut", out_path.name, result.start, start)
    return result


def _copy(container: Any, vs: Any, info: VideoInfo, audio_streams: list[Any], start: float, end: float,
          out: Any) -> tuple[float, float, int, bool]:
    tb = vs.time_base
    origin = _origin(info, vs)
    target = origin + int(round(start / tb))
    end_pts = origin + int(round(end / tb))
    key, packets, early = _demux_from_keyframe(container, vs, [vs, *audio_streams], target, origin)
    key_pts = int(key.pts)  # (mux_video shifts the packet's own pts)
    offset_sec = Fraction(key_pts) * tb  # becomes time 0 in the clip
    rate = vs.average_rate or vs.guessed_rate
    step = max(1, int(round(1 / (rate * tb)))) if rate else 0  # a frame's duration when packets lack one
    try:
        ovs = out.add_stream_from_template(vs)
        amap = {s.index: out.add_stream_from_template(s) for s in audio_streams}
    except ValueError as exc:  # e.g. "'matroska' format does not support 'gif' codec"
        raise ConfigError(f"output {out.name}: cannot hold the streams of the input with stream copy "
                          f"({_short(exc)}): use --reencode, --no-audio or another format") from exc
    n_frames = 0
    last_end = offset_sec
    last_pts = key_pts
    video_done = False
    audio_done = not amap

    def mux_video(pkt: Any) -> None:
        nonlocal n_frames, last_end, last_pts
        shift = int(round(offset_sec / tb))
        pkt_end = Fraction(pkt.pts + (pkt.duration or step)) * tb
        last_end = max(last_end, pkt_end)
        last_pts = max(last_pts, pkt.pts)
        pkt.pts -= shift
        if pkt.dts is not None:
            pkt.dts -= shift
        pkt.stream = ovs
        out.mux(pkt)
        n_frames += 1

    end_abs = Fraction(end_pts) * tb

    def mux_audio(pkt: Any) -> bool:
        """Mux an audio packet inside the clip (container clock); False once past the end."""
        atb = pkt.time_base
        t_abs = Fraction(pkt.pts) * atb
        if t_abs >= end_abs:
            return False
        if t_abs < offset_sec:
            return True  # before the clip's first frame
        shift = int(round(offset_sec / atb))
        pkt.pts -= shift
        if pkt.dts is not None:
            pkt.dts -= shift
        pkt.stream = amap[pkt.stream.index]
        out.mux(pkt)
        return True

    mux_video(key)
    for pkt in early:
        if pkt.pts is not None and pkt.stream.index in amap:
            mux_audio(pkt)
    # Packets shown at/after the end are held back: they are muxed only when a later packet (in
    # decode order) is shown before the end, as it may reference them (B-frames, open GOP).
    held: list[Any] = []
    for pkt in packets:
        if pkt.dts is None and pkt.pts is None:
            continue
        if pkt.stream is vs:
            if video_done:
                continue
            if pkt.dts is not None and pkt.dts >= end_pts or len(held) > _MAX_REORDER:
                video_done = True  # every later packet is shown after the end
            elif pkt.pts is None or pkt.pts < key_pts:
                continue  # (the leading pictures of an open GOP need the GOP before: undecodable)
            elif pkt.pts >= end_pts:
                held.append(pkt)
            else:
                for h in held:
                    mux_video(h)
                held.clear()
                mux_video(pkt)
        elif pkt.stream.index in amap and not audio_done and pkt.pts is not None:
            audio_done = not mux_audio(pkt)
        if video_done and audio_done:
            break
    first = float(offset_sec - Fraction(origin) * tb)
    # the clip shows part of [start, end) unless every frame copied lies before start
    covers = last_end > target * tb or last_pts >= target
    return first, float(last_end - Fraction(origin) * tb), n_frames, covers


def _upright(rotation: int, width: int, height: int) -> tuple[Callable[[Any], Any], int, int]:
    """(converter, width, height): the converter turns a decoded frame of coded size ``width`` x
    ``height`` into a yuv420p frame for x264, rotated by ``rotation`` degrees clockwise (the display
    matrix applied to the pixels) and padded by one pixel on an odd side."""
    disp_w, disp_h = (height, width) if rotation in (90, 270) else (width, height)
    out_w, out_h = even_size(disp_w, disp_h)
    if width % 2 == 0 and height % 2 == 0:
        if rotation == 0:
            return (lambda f: f.reformat(format="yuv420p", width=width, height=height)), out_w, out_h

        def rotate_i420(f: Any) -> Any:
            arr = frame_array(f.reformat(format="yuv420p", width=width, height=height))
            return video_frame(i420_rotate(arr, rotation), "yuv420p")

        return rotate_i420, out_w, out_h

    def via_rgb(f: Any) -> Any:  # odd sides: yuv420p cannot hold them, go through RGB
        rgb = f.to_ndarray(format="rgb24", width=width, height=height)
        if rotation:
            rgb = np.rot90(rgb, k=-(rotation // 90))
        rgb = np.pad(rgb, ((0, out_h - disp_h), (0, out_w - disp_w), (0, 0)), mode="edge")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")

    return via_rgb, out_w, out_h


def _reencode(container: Any, vs: Any, info: VideoInfo, audio_streams: list[Any], start: float, end: float,
              out: Any, *, crf: int, preset: str) -> tuple[float, float, int, bool]:
    tb = vs.time_base
    origin = _origin(info, vs)
    target = origin + int(round(start / tb))
    key, packets, _early = _demux_from_keyframe(container, vs, [vs], target, origin)
    out_tb = Fraction(1, 90000)
    rate = vs.average_rate or vs.guessed_rate or Fraction(25)
    convert, out_w, out_h = _upright(info.rotation, vs.codec_context.width, vs.codec_context.height)
    ovs = out.add_stream("libx264", rate=rate)
    ovs.width = out_w
    ovs.height = out_h
    ovs.pix_fmt = "yuv420p"
    ovs.time_base = out_tb
    ovs.codec_context.time_base = out_tb
    ovs.options = {"crf": str(crf), "preset": preset}
    sar = info.sample_aspect_ratio
    if sar != 1:  # anamorphic video stays so: the pixels are kept, their shape is said
        ovs.codec_context.sample_aspect_ratio = 1 / sar if info.rotation in (90, 270) else sar
    oas = _add_audio_stream(out, audio_streams[0]) if audio_streams else None
    durations: dict[int, int] = {}  # output pts -> duration (ticks): the encoder does not carry it

    def mux(packets_out: Sequence[Any]) -> None:
        for p in packets_out:
            if p.pts is not None and p.pts in durations:
                p.duration = durations.pop(p.pts)
            out.mux(p)

    first_t: float | None = None
    # the frame waiting to be encoded: its duration is known once the next frame is decoded (VFR)
    pending: tuple[Any, float, float] | None = None  # (yuv420p frame, source time, its own duration)
    last_step: float | None = None
    n_frames = 0

    def encode(img: Any, t: float, next_t: float, t0: float) -> float:
        """Encode ``img`` (source time ``t``), shown until ``next_t`` (capped at ``end``), with the
        first kept frame (time ``t0``) at time 0; returns its end."""
        nonlocal n_frames
        t_end = min(end, next_t)
        pts = int(round((t - t0) / out_tb))
        durations[pts] = max(1, int(round((t_end - t0) / out_tb)) - pts)
        img.pts = pts
        img.time_base = out_tb
        mux(ovs.encode(img))
        n_frames += 1
        return t_end

    def video_packets() -> Iterator[Any]:
        yield key
        for pkt in packets:
            if pkt.dts is None and pkt.pts is None:
                continue
            yield pkt
            if pkt.dts is not None and pkt.dts > target + int((end - start + 5.0) / tb):
                return
        yield None  # flush

    clip_end = start
    next_t: float | None = None  # time of the first frame at/after ``end``
    for pkt in video_packets():
        for frame in vs.codec_context.decode(pkt):
            if frame.pts is None:
                continue
            t = float((frame.pts - origin) * tb)
            if t < start - _EPS:
                continue
            if t >= end - _EPS:
                next_t = t
                break
            if first_t is None:
                first_t = t
            if pending is not None:
                last_step = t - pending[1]
                encode(pending[0], pending[1], t, first_t)
            own = float(frame.duration * tb) if frame.duration else 0.0
            pending = (convert(frame), t, own)
        if next_t is not None:
            break
    if pending is not None and first_t is not None:
        if next_t is None:  # the video ended inside the range: the last frame's own duration
            step = pending[2] or last_step or float(1 / rate)
            next_t = pending[1] + step
        clip_end = encode(pending[0], pending[1], next_t, first_t)
    mux(ovs.encode(None))
    if first_t is None:
        return start, start, 0, False
    if oas is not None:
        _reencode_audio(container, audio_streams[0], out, oas, info.start_time + first_t, info.start_time + end)
    return first_t, clip_end, n_frames, True


def _add_audio_stream(out: Any, ast: Any) -> Any:
    rate = ast.codec_context.sample_rate or 48000
    oas = out.add_stream("aac", rate=rate)
    oas.layout = ast.codec_context.layout.name if ast.codec_context.layout else "stereo"
    return oas


def _reencode_audio(container: Any, ast: Any, out: Any, oas: Any, start: float, end: float) -> None:
    """Decode the audio of ``[start, end)`` (container clock, seconds), trim it sample-exactly and
    encode AAC at time 0."""
    rate = oas.codec_context.sample_rate
    layout = oas.layout.name
    atb = ast.time_base
    a_first = int(ast.start_time) if ast.start_time is not None else 0
    container.seek(max(a_first, int((start - 1.0) / atb)), stream=ast, backward=True)
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=1024)
    written = 0
    want = int(round((end - start) * rate))

    def encode(frames: list[Any]) -> None:
        nonlocal written
        for f in frames:
            f.pts = written
            f.time_base = Fraction(1, rate)
            written += f.samples
            out.mux(oas.encode(f))

    started = False
    for frame in container.decode(ast):
        if frame.pts is None:
            continue
        t0 = float(frame.pts * atb)
        arr = frame.to_ndarray()
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        n = frame.samples
        if not frame.format.is_planar:
            arr = arr.reshape(n, -1).T
        lo = max(0, int(round((start - t0) * frame.sample_rate)))
        hi = min(n, int(round((end - t0) * frame.sample_rate)))
        if t0 >= end:
            break
        if hi <= lo:
            continue
        part = np.ascontiguousarray(arr[:, lo:hi])
        if not started:
            started = True
            # audio that starts after the clip does (a late track, a gap at the cut) starts as late in
            # the clip: silence until then, not the first sound moved to the clip's time 0
            gap = int(round((t0 - start) * frame.sample_rate)) + lo
            if gap > 0:
                part = np.concatenate([np.zeros((part.shape[0], gap), dtype=part.dtype), part], axis=1)
        fmt = frame.format.name if frame.format.is_planar else frame.format.name + "p"
        nf = av.AudioFrame.from_ndarray(part, format=fmt, layout=frame.layout.name)
        nf.sample_rate = frame.sample_rate
        encode(resampler.resample(nf))
        if written >= want:
            break
    encode(resampler.resample(None))
    out.mux(oas.encode(None))


# ----------------------------------------------------------------------------------------- timelines


def _resolve_video(d: dict[str, Any], source: Path | None, video: str | os.PathLike[str] | None) -> Path:
    if video is not None:
        return Path(video)
    v = d.get("video")
    path = v.get("path") if isinstance(v, dict) else v
    if not path:
        raise ConfigError("timeline has no video path; pass the video explicitly (--video)")
    from vidline.index import resolve_video_path

    p = Path(str(path))
    if p.exists():
        return p
    return Path(resolve_video_path(str(path), source))


def extract_event_clips(
    timeline: Any,
    out_dir: str | os.PathLike[str],
    *,
    pad: float = 0.0,
    reencode: bool = False,
    label: str | None = None,
    video: str | os.PathLike[str] | None = None,
    min_duration: float = 0.5,
) -> list[ClipResult]:
    """Write one clip per event of ``timeline`` (Timeline, its JSON dict, or a JSON path) into ``out_dir``.

    ``pad`` widens every event by that many seconds on both sides (clamped to the video). ``label``
    keeps only events whose label contains it (case-insensitive). Events shorter than
    ``min_duration`` are widened to it. File names carry the clip's requested times and label.
    """
    from vidline.index import timeline_to_dict

    require_number("pad", pad, minimum=0)
    source = Path(timeline) if isinstance(timeline, (str, os.PathLike)) else None
    d = timeline_to_dict(timeline)
    src = _resolve_video(d, source, video)
    info = probe(src)
    duration = info.duration if info.duration > 0 else None
    out = Path(out_dir)
    _make_dir(out, "cannot create output directory")
    results: list[ClipResult] = []
    used: set[str] = set()
    for ev in d["events"]:
        ev_label = str(ev.get("label") or "")
        if label and label.lower() not in ev_label.lower():
            continue
        s = max(0.0, float(ev["start"]) - pad)
        e = float(ev["end"]) + pad
        if e - s < min_duration:
            e = s + min_duration
        if duration is not None:
            e = min(e, duration)
            if s >= duration:
                logger.warning("event at %.3f s is past the end of %s; skipped", s, src)
                continue
        name = _unused(clip_filename(src.stem, s, e, ev_label or None), used)
        used.add(name)
        try:
            results.append(_extract(src, info, s, e, out / name, reencode=reencode, audio=True, crf=20,
                                    preset="veryfast", label=ev_label or None))
        except EmptyClipError as exc:
            logger.warning("%s; event skipped", exc)
    return results
