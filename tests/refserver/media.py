"""What the reference "model" sees: decoding data URLs, detecting markers, Qwen token counts.

Time is known only the way a real Qwen-VL server knows it (see docs/parsing.md, "Reference server"):
mp4 PTS (resampled at the server's fps), DashScope's ``fps``, a timestamp written in the text part
just before an image, or a default spacing.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from dataclasses import dataclass, field

import av
import numpy as np
from PIL import Image

from vidline.parse import parse_time
from vidline.synth import detect_markers

QWEN_FACTOR = 28
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = int(128000 * 28 * 28 * 0.9)
IMAGE_MIN_PIXELS = 4 * 28 * 28
IMAGE_MAX_PIXELS = 16384 * 28 * 28
DETECT_MAX_SIDE = 192  # frames are shrunk to at most this before marker detection (speed)


class MediaError(ValueError):
    """A media item the server cannot use (answered with 400)."""


# ------------------------------------------------------------------------------------------------
# Qwen geometry (independent of vidline.media.plan on purpose: the server is the oracle)


def smart_resize(
    height: int, width: int, *, min_pixels: int, max_pixels: int, factor: int = QWEN_FACTOR
) -> tuple[int, int]:
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def video_tokens(n_frames: int, height: int, width: int) -> int:
    """(T/2)(H/28)(W/28) after Qwen's video resize; T rounded up to even."""
    if n_frames <= 0:
        return 0
    t = n_frames + (n_frames % 2)
    max_pixels = max(min(VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS / t * 2), int(VIDEO_MIN_PIXELS * 1.05))
    h, w = smart_resize(height, width, min_pixels=VIDEO_MIN_PIXELS, max_pixels=int(max_pixels))
    return (t // 2) * (h // QWEN_FACTOR) * (w // QWEN_FACTOR)


def image_tokens(height: int, width: int) -> int:
    h, w = smart_resize(height, width, min_pixels=IMAGE_MIN_PIXELS, max_pixels=IMAGE_MAX_PIXELS)
    return (h // QWEN_FACTOR) * (w // QWEN_FACTOR)


def text_tokens(text: str) -> int:
    """Rough: one token per CJK character, one per 4 other characters."""
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return cjk + math.ceil((len(text) - cjk) / 4)


# ------------------------------------------------------------------------------------------------
# what the model perceived


@dataclass
class Sample:
    """One frame as the model perceives it: a clip time it believes, and the markers in it."""

    t: float
    labels: list[str]


@dataclass
class MediaItem:
    kind: str  # "mp4" | "frames" | "image"
    source: str  # e.g. "openai.video_url.mp4", "dashscope.video_list", "openai.image_url"
    samples: list[Sample] = field(default_factory=list)
    width: int = 0  # received frame size
    height: int = 0
    fps_used: float | None = None  # the fps the model's clock runs at (None: times from text / none)
    time_source: str = ""  # "pts", "fps", "default", "text", "none"
    tokens: int = 0
    step: float | None = None  # spacing between samples, for interval ends

    @property
    def n_frames(self) -> int:
        return len(self.samples)


def split_data_url(url: str) -> tuple[str, str]:
    """(media type, base64 payload) of a ``data:<type>;base64,<payload>`` URL."""
    if not isinstance(url, str):
        raise MediaError("media URL must be a string")
    if not url.startswith("data:"):
        scheme = url.split(":", 1)[0] if ":" in url else "a path"
        raise MediaError(f"the reference server cannot fetch {scheme} URLs (no network); send data URLs")
    head, sep, payload = url.partition(",")
    if not sep or ";base64" not in head:
        raise MediaError("data URL is not base64")
    return head[5:].split(";", 1)[0].lower(), payload


def b64decode(payload: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"bad base64 data: {exc}") from exc


def _small(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    step = max(1, math.ceil(max(h, w) / DETECT_MAX_SIDE))
    return rgb[::step, ::step] if step > 1 else rgb


def decode_image(data: bytes) -> tuple[list[str], int, int]:
    """(marker labels, width, height) of an encoded JPEG/PNG image."""
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if img.format == "JPEG":
            img.draft("RGB", (max(1, width // 4), max(1, height // 4)))
        rgb = np.asarray(img.convert("RGB"))
    except Exception as exc:  # PIL raises many types
        raise MediaError(f"cannot decode image: {exc}") from exc
    return detect_markers(_small(rgb)), width, height


def decode_mp4(data: bytes) -> tuple[list[tuple[float, list[str]]], int, int]:
    """[(pts seconds, labels)] of every frame of an mp4, and its (width, height)."""
    out: list[tuple[float, list[str]]] = []
    width = height = 0
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            scale = max(1, math.ceil(max(width, height) / DETECT_MAX_SIDE))
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    continue
                t = float(frame.pts * frame.time_base)
                rgb = frame.to_ndarray(
                    format="rgb24", width=max(2, frame.width // scale), height=max(2, frame.height // scale)
                )
                out.append((t, detect_markers(rgb)))
    except MediaError:
        raise
    except Exception as exc:  # av raises many types
        raise MediaError(f"cannot decode mp4: {exc}") from exc
    if not out:
        raise MediaError("the mp4 has no decodable video frames")
    out.sort(key=lambda x: x[0])
    return out, width, height


def clip_rate(frames: list[tuple[float, list[str]]]) -> float | None:
    """The mp4's own frame rate (1 / the median PTS spacing), None for a single frame."""
    times = [t for t, _ in frames]
    diffs = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
    return 1.0 / diffs[len(diffs) // 2] if diffs else None


def resample_mp4(frames: list[tuple[float, list[str]]], fps: float) -> list[Sample]:
    """What a server sampling the mp4 at ``fps`` sees: sample k at clip time k/fps (first frame = 0),
    showing the last frame whose PTS is <= that time.

    A server never samples more frames than the clip has: asked for ``fps`` at or above the clip's
    own rate, it keeps every frame once, at its PTS (vLLM's OpenCV loader samples
    min(total frames, duration * fps) frames and keeps them all when that is every frame;
    qwen-vl-utils clamps the count to the total the same way; see /work/shared/protocols.md)."""
    t0 = frames[0][0]
    times = [t - t0 for t, _ in frames]
    rate = clip_rate(frames)
    last_dur = 1.0 / rate if rate else 1.0 / fps
    duration = times[-1] + last_dur
    n = max(1, int(math.floor(duration * fps + 1e-6)))
    if n >= len(frames):
        return [Sample(round(t, 6), labels) for t, (_pts, labels) in zip(times, frames, strict=True)]
    samples: list[Sample] = []
    j = 0
    for k in range(n):
        target = k / fps
        while j + 1 < len(times) and times[j + 1] <= target + 1e-6:
            j += 1
        samples.append(Sample(round(target, 6), frames[j][1]))
    return samples


_TS_PATTERNS = [
    re.compile(r"t\s*=\s*(\d+(?:\.\d+)?)\s*s?", re.I),
    re.compile(r"(\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?)"),
    re.compile(r"(\d{1,3}:\d{2}(?:[.,]\d+)?)"),
    re.compile(r"(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds?|秒)\b", re.I),
    re.compile(r"(\d+(?:\.\d+)?)\s*秒"),
]


def timestamp_in_text(text: str) -> float | None:
    """The time written in a short text part placed just before an image, if any.

    Accepted (see docs/parsing.md): ``t=12.5s``, ``t=12.5``, ``[12.5s]``, ``12.5s``, ``12.5 seconds``,
    ``00:12.5``, ``00:00:12.500``, ``Frame at t=12.50s:``, ``<12.5 s>``. Texts longer than 80
    characters are prompts, not timestamps.
    """
    s = text.strip()
    if not s or len(s) > 80:
        return None
    for pat in _TS_PATTERNS:
        found = pat.findall(s)
        if found:
            try:
                return parse_time(found[-1])
            except ValueError:
                continue
    return None
