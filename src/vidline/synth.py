"""Deterministic synthetic videos with visible, machine-detectable events.

Used by the tests (ground truth), the committed samples, the benchmarks and the notebook. Each
``Marker`` draws a saturated coloured shape on a plain background during ``[start, end)``; the
colour alone identifies the marker, so a detector can find it after JPEG or H.264 compression.

Nothing here touches the network. Videos are written with PyAV.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

# label -> (shape, RGB). Colours are far apart in RGB so compression never confuses them.
MARKER_STYLES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "red square": ("square", (220, 30, 30)),
    "green circle": ("circle", (30, 200, 40)),
    "blue triangle": ("triangle", (30, 50, 220)),
    "yellow square": ("square", (235, 220, 30)),
    "magenta circle": ("circle", (220, 40, 220)),
    "cyan triangle": ("triangle", (30, 210, 220)),
}

BACKGROUND = (96, 96, 96)


@dataclass(frozen=True)
class Marker:
    """A coloured shape visible during ``[start, end)`` seconds of display time."""

    label: str
    start: float
    end: float
    x: float = 0.5  # centre, as a fraction of the width
    y: float = 0.5
    size: float = 0.25  # side / diameter as a fraction of the smaller side
    dx: float = 0.0  # horizontal motion, fraction of width per second (wraps)

    @property
    def color(self) -> tuple[int, int, int]:
        return MARKER_STYLES[self.label][1]

    @property
    def shape(self) -> str:
        return MARKER_STYLES[self.label][0]


def render_frame(t: float, width: int, height: int, markers: Sequence[Marker] = ()) -> np.ndarray:
    """The RGB frame shown at time ``t`` (seconds): background plus every active marker."""
    img = _background(width, height).copy()
    for m in markers:
        if not (m.start <= t < m.end):
            continue
        side = max(4.0, m.size * min(width, height))
        cx = ((m.x + m.dx * (t - m.start)) % 1.0) * width
        cy = m.y * height
        half = side / 2
        # every shape lies inside its bounding square: test only those pixels
        x0, x1 = max(0, math.floor(cx - half)), min(width, math.ceil(cx + half) + 1)
        y0, y1 = max(0, math.floor(cy - half)), min(height, math.ceil(cy + half) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        if m.shape == "square":
            mask = (abs(xx - cx) <= half) & (abs(yy - cy) <= half)
        elif m.shape == "circle":
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= half**2
        else:  # triangle, apex up
            rel_y = (yy - (cy - half)) / side  # 0 at apex, 1 at base
            mask = (rel_y >= 0) & (rel_y <= 1) & (abs(xx - cx) <= rel_y * half)
        img[y0:y1, x0:x1][mask] = m.color
    return img


@functools.lru_cache(maxsize=8)
def _background(width: int, height: int) -> np.ndarray:
    """The static background (a faint grid so encoders have something to chew on), read-only."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    img[:: max(1, height // 12), :, :] = 80
    img[:, :: max(1, width // 16), :] = 80
    img.flags.writeable = False
    return img


def frame_times(duration: float, fps: float | Sequence[tuple[float, float, float]]) -> list[Fraction]:
    """Presentation times of every frame. ``fps`` is a number (CFR) or ``(start, end, fps)`` segments (VFR)."""
    if isinstance(fps, (int, float)):
        segments: Sequence[tuple[float, float, float]] = [(0.0, duration, float(fps))]
    else:
        segments = fps
    times: list[Fraction] = []
    for seg_start, seg_end, seg_fps in segments:
        step = Fraction(1) / Fraction(seg_fps).limit_denominator(1001)
        t = Fraction(seg_start).limit_denominator(1000)
        end = Fraction(min(seg_end, duration)).limit_denominator(1000)
        while t < end:
            times.append(t)
            t += step
    return times


def make_video(
    path: str | Path,
    *,
    duration: float,
    fps: float | Sequence[tuple[float, float, float]] = 10,
    size: tuple[int, int] = (320, 240),
    markers: Sequence[Marker] = (),
    codec: str = "libx264",
    gop: int | None = None,
    start_time: float = 0.0,
    rotation: int = 0,
    audio: bool = False,
    audio_duration: float | None = None,
    audio_start: float = 0.0,
    sar: Fraction | None = None,
    crf: int = 28,
    faststart: bool = False,
    preset: str = "ultrafast",
    options: dict[str, str] | None = None,
) -> Path:
    """Write a synthetic video and return its path.

    ``start_time`` shifts every PTS (the first frame is still display time 0). ``rotation`` stores
    display-matrix rotation metadata (degrees a player rotates clockwise); the pixels are stored
    un-rotated, i.e. ``render_frame`` rotated back, so an upright decode shows the markers upright.
    ``faststart`` puts the mp4 index (moov) before the media data, like a streaming-friendly file; a
    truncated copy of such a file still opens and decodes up to the cut. ``preset`` is the x264
    preset ("ultrafast" has no B-frames; "medium" uses them, so decode order != display order).
    ``audio_duration`` makes the audio track (``audio=True``) longer or shorter than the video;
    ``audio_start`` starts it that many seconds after the first frame. ``sar`` makes the video
    anamorphic: the picture is drawn at ``size`` widened by ``sar`` (what a player shows), then stored
    squeezed into ``size`` with that pixel aspect ratio.
    ``options`` are further encoder options (e.g. ``{"x264-params": "open-gop=1:bframes=3"}``,
    ``{"bf": "2"}`` for MPEG-4 B-frames); the container follows the file's extension.
    """
    path = Path(path)
    width, height = size
    times = frame_times(duration, fps)
    container_options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=container_options) as out:
        nominal = fps if isinstance(fps, (int, float)) else max(s[2] for s in fps)
        # MPEG-4 part 2 allows time bases up to 1/65535, and AVI takes the codec's as its frame rate
        tb = 1 / Fraction(nominal).limit_denominator(1001) if codec == "mpeg4" else Fraction(1, 90000)
        coded_w, coded_h = (height, width) if rotation in (90, 270) else (width, height)
        stream = out.add_stream(codec, rate=Fraction(nominal).limit_denominator(1001))
        stream.width = coded_w
        stream.height = coded_h
        stream.pix_fmt = "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        opts = {"crf": str(crf), "preset": preset} if codec == "libx264" else {}
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        for key, value in (options or {}).items():
            opts[key] = f"{opts[key]}:{value}" if key.endswith("-params") and key in opts else value
        stream.options = opts
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = Fraction(sar)
        if rotation:
            _set_rotation(stream, rotation)
        astream = None
        if audio:
            astream = out.add_stream("aac", rate=16000)
        offset = Fraction(start_time).limit_denominator(90000)
        for t in times:
            if sar is not None:  # drawn as shown, stored squeezed
                shown = render_frame(float(t), round(width * Fraction(sar)), height, markers)
                img = np.asarray(Image.fromarray(shown).resize((width, height), Image.Resampling.BILINEAR))
            else:
                img = render_frame(float(t), width, height, markers)
            if rotation:
                # store pixels so that rotating them by `rotation` clockwise gives `img`
                img = np.ascontiguousarray(np.rot90(img, k=rotation // 90))
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = int((t + offset) / tb)
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _write_tone(out, astream, duration if audio_duration is None else audio_duration,
                        start=float(offset) + audio_start)
    return path


def _set_rotation(stream: av.video.stream.VideoStream, rotation: int) -> None:
    # PyAV writes a display matrix as stream coded side data (the mp4 muxer turns it into the
    # tkhd matrix). ``set_display_rotation`` takes counter-clockwise degrees; a player's clockwise
    # rotation of ``rotation`` degrees is therefore ``-rotation``. (The legacy "rotate" metadata tag
    # is ignored by ffmpeg >= 7.)
    stream.set_display_rotation(-float(rotation))


def _write_tone(out: av.container.OutputContainer, astream: av.audio.stream.AudioStream, duration: float,
                start: float = 0.0) -> None:
    rate = 16000
    first = int(round(start * rate))
    n = int(duration * rate)
    samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)
    chunk = 1024
    for i in range(0, n, chunk):
        block = samples[i : i + chunk]
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = first + i
        for packet in astream.encode(frame):
            out.mux(packet)
    for packet in astream.encode():
        out.mux(packet)


def make_audio_only(path: str | Path, *, duration: float = 2.0) -> Path:
    """An .m4a/.mp4 file with an AAC track and no video stream."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        astream = out.add_stream("aac", rate=16000)
        _write_tone(out, astream, duration)
    return path


def active_labels(markers: Sequence[Marker], t: float) -> list[str]:
    """Ground truth: the labels visible at time ``t``."""
    return [m.label for m in markers if m.start <= t < m.end]


def detect_markers(image: np.ndarray, min_fraction: float = 0.002) -> list[str]:
    """Which marker colours are visible in an RGB image (robust to JPEG/H.264 compression)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("expected an H x W x 3 RGB image")
    img = image.astype(np.int16)
    total = img.shape[0] * img.shape[1]
    found = []
    for label, (_shape, color) in MARKER_STYLES.items():
        dist = np.abs(img - np.array(color, dtype=np.int16)).max(axis=2)
        if (dist < 60).sum() >= max(4, min_fraction * total):
            found.append(label)
    return found


def iter_intervals(markers: Sequence[Marker]) -> Iterator[tuple[str, float, float]]:
    for m in markers:
        yield m.label, m.start, m.end
