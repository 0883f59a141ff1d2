"""Cut clips out of a video with PyAV: one range (``extract_clip``) or one file per timeline event.

Two modes:

- **stream copy** (default): packets are remuxed unchanged, starting at the keyframe at or before the
  requested start and ending before the requested end. Fast and lossless, but the clip starts at a
  keyframe, so up to one GOP early. The actual start is returned (``ClipResult.start``) and logged.
  Audio streams are copied too.
- **re-encode**: frames are decoded and those with ``start <= t < end`` are encoded to H.264 (audio to
  AAC, trimmed to the same range), timestamps starting at 0. Frame-exact, slower.

Times are seconds from the first displayed frame, as everywhere in vidline.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidline.errors import ConfigError, DecodeError, NoVideoStreamError, VideoOpenError
from vidline.export.timefmt import split_ms
from vidline.log import logger

_EPS = 1e-6


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


def clip_filename(stem: str, start: float, end: float, label: str | None = None, ext: str = ".mp4") -> str:
    """``<stem>_00-01-02.500_00-01-05.000_<label-slug>.mp4``."""
    name = f"{stem}_{file_timestamp(start)}_{file_timestamp(end)}"
    if label:
        name += f"_{slugify(label)}"
    return name + ext


def check_range(start: float, end: float) -> None:
    if start < 0:
        raise ConfigError(f"clip start {start:g} s is negative")
    if not end > start:
        raise ConfigError(f"clip end ({end:g} s) must be after its start ({start:g} s)")


# ----------------------------------------------------------------------------------------- I/O


def _open(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    p = Path(path)
    if not p.exists():
        raise VideoOpenError(p, "no such file")
    if p.is_dir():
        raise VideoOpenError(p, "is a directory")
    if p.stat().st_size == 0:
        raise VideoOpenError(p, "empty file")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoOpenError(p, f"cannot open as a video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise NoVideoStreamError(p, "has no video stream")
    return container, container.streams.video[0]


def _origin(stream: Any) -> int:
    """PTS of the first displayed frame."""
    return int(stream.start_time) if stream.start_time is not None else 0


def _container_duration(container: Any, vs: Any) -> float | None:
    if vs.duration is not None and vs.time_base is not None:
        return float(vs.duration * vs.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    return None


def _demux_from_keyframe(container: Any, vs: Any, streams: Sequence[Any], target_pts: int) -> tuple[
        Any, Iterator[Any], list[Any]]:
    """Position the demuxer at the video keyframe at or before ``target_pts``.

    Returns (that keyframe packet, the packet iterator continuing after it, other-stream packets seen
    on the way). Seeks further back when the container's index lands after the target.
    """
    origin = _origin(vs)
    tb = vs.time_base
    for back in (0.0, 2.0, 10.0, 60.0, None):
        seek_pts = origin if back is None else max(origin, target_pts - int(back / tb))
        try:
            container.seek(seek_pts, stream=vs, backward=True)
        except av.error.FFmpegError:
            if back is not None:
                continue
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
            if pkt.pts <= target_pts or back is None or seek_pts <= origin:
                return pkt, packets, others
            break  # the first keyframe is after the target: seek further back
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
    frame-exact cut. ``end`` beyond the video is clamped to its end.
    Raises VideoOpenError/NoVideoStreamError for bad input, ConfigError for a bad range.
    """
    start, end = float(start), float(end)
    check_range(start, end)
    container, vs = _open(video)
    out_path = Path(out)
    try:
        duration = _container_duration(container, vs)
        if duration is not None and start >= duration:
            raise ConfigError(f"clip start {start:g} s is past the end of the video ({duration:.3f} s)")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        audio_streams = list(container.streams.audio) if audio else []
        if reencode:
            res = _reencode(container, vs, audio_streams[:1], start, end, out_path, crf=crf, preset=preset)
        else:
            res = _copy(container, vs, audio_streams, start, end, out_path)
    except av.error.FFmpegError as exc:
        raise DecodeError(video, f"clip failed ({exc})") from exc
    finally:
        container.close()
    result = ClipResult(out_path, start, end, res[0], res[1], res[2], reencode, label)
    if result.frames == 0:
        logger.warning("%s: no frames between %.3f s and %.3f s", video, start, end)
    if not reencode and start - result.start > 0.001:
        logger.info("%s: stream copy starts at keyframe %.3f s (requested %.3f s); use --reencode for "
                    "an exact cut", out_path.name, result.start, start)
    return result


def _copy(container: Any, vs: Any, audio_streams: list[Any], start: float, end: float,
          out_path: Path) -> tuple[float, float, int]:
    tb = vs.time_base
    origin = _origin(vs)
    target = origin + int(round(start / tb))
    end_pts = origin + int(round(end / tb))
    key, packets, early = _demux_from_keyframe(container, vs, [vs, *audio_streams], target)
    offset_sec = Fraction(key.pts) * tb  # becomes time 0 in the clip
    out = av.open(str(out_path), "w")
    try:
        ovs = out.add_stream_from_template(vs)
        amap = {s.index: out.add_stream_from_template(s) for s in audio_streams}
        n_frames = 0
        last_end = Fraction(key.pts) * tb
        video_done = False
        audio_done = not amap

        def mux_video(pkt: Any) -> None:
            nonlocal n_frames, last_end
            shift = int(round(offset_sec / tb))
            pkt_end = Fraction(pkt.pts + (pkt.duration or 0)) * tb
            last_end = max(last_end, pkt_end)
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
        for pkt in packets:
            if pkt.dts is None and pkt.pts is None:
                continue
            if pkt.stream is vs:
                if video_done:
                    continue
                if pkt.dts is not None and pkt.dts >= end_pts or pkt.pts is not None and pkt.pts >= end_pts \
                        and pkt.is_keyframe:
                    video_done = True
                elif pkt.pts is not None:
                    mux_video(pkt)
            elif pkt.stream.index in amap and not audio_done and pkt.pts is not None:
                audio_done = not mux_audio(pkt)
            if video_done and audio_done:
                break
    finally:
        out.close()
    first = float(offset_sec - Fraction(origin) * tb)
    return first, float(last_end - Fraction(origin) * tb), n_frames


def _reencode(container: Any, vs: Any, audio_streams: list[Any], start: float, end: float, out_path: Path,
              *, crf: int, preset: str) -> tuple[float, float, int]:
    tb = vs.time_base
    origin = _origin(vs)
    target = origin + int(round(start / tb))
    key, packets, _early = _demux_from_keyframe(container, vs, [vs], target)
    out_tb = Fraction(1, 90000)
    rate = vs.average_rate or vs.guessed_rate or Fraction(25)
    out = av.open(str(out_path), "w")
    first_t: float | None = None
    last_t = start
    n_frames = 0
    try:
        ovs = out.add_stream("libx264", rate=rate)
        ovs.width = vs.codec_context.width
        ovs.height = vs.codec_context.height
        ovs.pix_fmt = "yuv420p"
        ovs.time_base = out_tb
        ovs.codec_context.time_base = out_tb
        ovs.options = {"crf": str(crf), "preset": preset}
        oas = _add_audio_stream(out, audio_streams[0]) if audio_streams else None
        frame_dur = float(1 / rate)

        def video_packets() -> Iterator[Any]:
            yield key
            for pkt in packets:
                if pkt.dts is None and pkt.pts is None:
                    continue
                yield pkt
                if pkt.dts is not None and pkt.dts > target + int((end - start + 5.0) / tb):
                    return
            yield None  # flush

        done = False
        for pkt in video_packets():
            decoded = vs.codec_context.decode(pkt)
            for frame in decoded:
                if frame.pts is None:
                    continue
                t = float((frame.pts - origin) * tb)
                if t < start - _EPS:
                    continue
                if t >= end - _EPS:
                    done = True
                    break
                if first_t is None:
                    first_t = t
                last_t = t
                img = frame.reformat(format="yuv420p", width=ovs.width, height=ovs.height)
                img.pts = int(round((t - first_t) / out_tb))  # the first kept frame is time 0
                img.time_base = out_tb
                out.mux(ovs.encode(img))
                n_frames += 1
            if done:
                break
        out.mux(ovs.encode(None))
        if oas is not None and first_t is not None:
            _reencode_audio(container, audio_streams[0], out, oas, first_t, end)
    finally:
        out.close()
    if first_t is None:
        return start, start, 0
    return first_t, min(end, last_t + frame_dur), n_frames


def _add_audio_stream(out: Any, ast: Any) -> Any:
    rate = ast.codec_context.sample_rate or 48000
    oas = out.add_stream("aac", rate=rate)
    oas.layout = ast.codec_context.layout.name if ast.codec_context.layout else "stereo"
    return oas


def _reencode_audio(container: Any, ast: Any, out: Any, oas: Any, start: float, end: float) -> None:
    """Decode the audio of ``[start, end)``, trim it sample-exactly and encode AAC at time 0."""
    rate = oas.codec_context.sample_rate
    layout = oas.layout.name
    atb = ast.time_base
    a_origin = _origin(ast)
    container.seek(a_origin + max(0, int((start - 1.0) / atb)), stream=ast, backward=True)
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

    for frame in container.decode(ast):
        if frame.pts is None:
            continue
        t0 = float((frame.pts - a_origin) * atb)
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
    p = Path(str(path))
    if not p.is_absolute() and not p.exists() and source is not None and (source.parent / p).exists():
        return source.parent / p
    return p


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

    if pad < 0:
        raise ConfigError("--pad must be >= 0")
    source = Path(timeline) if isinstance(timeline, (str, os.PathLike)) else None
    d = timeline_to_dict(timeline)
    src = _resolve_video(d, source, video)
    container, vs = _open(src)
    duration = _container_duration(container, vs)
    container.close()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
        name = clip_filename(src.stem, s, e, ev_label or None)
        if name in used:
            name = name[:-4] + f"_{len(used)}.mp4"
        used.add(name)
        results.append(extract_clip(src, s, e, out / name, reencode=reencode, label=ev_label or None))
    return results
