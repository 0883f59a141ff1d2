"""Core data types shared by every layer. Pure data: no I/O here.

Time convention everywhere in vidline: ``float`` seconds from the first frame a player displays
(so a stream whose first PTS is 7.5 s starts at 0.0). Exact source time is kept as ``pts`` +
``time_base`` (a Fraction) where it matters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """What ``vidline.probe`` reports about a video file."""

    path: str
    container: str
    codec: str
    width: int  # coded size
    height: int
    display_width: int  # after rotation metadata and the pixel aspect ratio are applied
    display_height: int
    rotation: int  # degrees clockwise a player applies: 0, 90, 180, 270
    duration: float  # seconds, measured from the first displayed frame
    fps: float  # average frame rate
    is_vfr: bool
    frame_count: int  # estimated
    keyframe_interval: float | None  # seconds, when it can be found cheaply
    start_time: float  # stream start offset (first PTS) in seconds
    time_base: Fraction
    has_audio: bool
    size_bytes: int
    truncated: bool = False  # decoding stopped early; duration is what decodes
    # a pixel's width over its height (anamorphic video: 64:45 for 16:9 PAL); the display size has it applied
    sample_aspect_ratio: Fraction = Fraction(1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["time_base"] = str(self.time_base)
        d["sample_aspect_ratio"] = f"{self.sample_aspect_ratio.numerator}:{self.sample_aspect_ratio.denominator}"
        return d


@dataclass
class Frame:
    """One sampled frame: ``t`` seconds from the first displayed frame, an upright uint8 picture.

    ``image`` is RGB (H x W x 3) unless ``format`` says otherwise: ``"gray"`` (H x W) or
    ``"yuv420p"`` (planar I420, H*3/2 x W; see :mod:`vidline.media.pixels`), which the decoder
    gives when asked for the mp4 payload path. ``rgb()`` gives RGB whatever the format.
    """

    t: float
    image: np.ndarray  # uint8, rotation applied, resized to the plan's size; layout per ``format``
    pts: int | None = None  # source PTS in ``time_base`` units
    time_base: Fraction | None = None
    format: str = "rgb24"  # "rgb24" | "gray" | "yuv420p"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the picture."""
        if self.format == "yuv420p":
            from vidline.media.pixels import i420_size

            return i420_size(self.image)
        h, w = self.image.shape[:2]
        return int(w), int(h)

    def rgb(self) -> np.ndarray:
        """The picture as an H x W x 3 RGB uint8 array (a conversion for gray / yuv420p frames)."""
        if self.format == "rgb24":
            return self.image
        from vidline.media.pixels import to_rgb

        return to_rgb(self.image, self.format)


@dataclass(frozen=True)
class Window:
    """A time range ``[start, end)`` of the video sent to the model as one request."""

    index: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class Event:
    """One event on a timeline, in absolute seconds."""

    start: float
    end: float
    label: str
    description: str | None = None
    confidence: float | None = None
    windows: list[int] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "label": self.label,
            "description": self.description,
            "confidence": self.confidence,
            "windows": list(self.windows),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """An event of a saved timeline. ValueError naming the field when one is not what a timeline
        holds (times and confidence finite numbers; a null label is an empty one)."""
        if not isinstance(d, dict):
            raise ValueError(f"an event must be a JSON object, got {_short(d)}")
        label, description, confidence = d.get("label"), d.get("description"), d.get("confidence")
        windows = d.get("windows") or []
        if not isinstance(windows, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in windows):
            raise ValueError(f"'windows' must be a list of window numbers, got {_short(windows)}")
        return cls(
            start=_finite(d, "start"),
            end=_finite(d, "end"),
            label="" if label is None else str(label),
            description=None if description is None else str(description),
            confidence=None if confidence is None else _finite(d, "confidence"),
            windows=list(windows),
        )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _finite(d: dict[str, Any], key: str) -> float:
    """``d[key]`` as a finite float (numbers and numeric strings); ValueError naming ``key`` otherwise."""
    value = d.get(key)
    number: float | None = None
    if not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        what = "missing" if key not in d else f"got {_short(value)}"
        raise ValueError(f"'{key}' must be a finite number ({what})")
    return number


@dataclass
class WindowRecord:
    """What happened to one window of a run (the ``windows`` entries of a timeline's JSON)."""

    index: int
    start: float
    end: float
    frames: int
    status: str  # "ok" | "failed" | "cached"
    error: str | None = None
    estimated_tokens: int | None = None
    usage: Usage | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "frames": self.frames,
            "status": self.status,
            "error": self.error,
            "estimated_tokens": self.estimated_tokens,
            "usage": self.usage.to_dict() if self.usage else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowRecord:
        u = d.get("usage")
        return cls(
            index=int(d["index"]),
            start=float(d["start"]),
            end=float(d["end"]),
            frames=int(d.get("frames", 0)),
            status=str(d.get("status", "ok")),
            error=d.get("error"),
            estimated_tokens=d.get("estimated_tokens"),
            usage=Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0))) if u else None,
        )
