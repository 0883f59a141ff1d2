"""Sampling plans and Qwen2.5-VL geometry: pure arithmetic, no I/O.

The resize and frame-count rules follow qwen-vl-utils' ``vision_process.py`` (``smart_resize``,
``smart_nframes``, per-frame max pixels from a total pixel budget) so that the frames vidline sends
are already the size the server would use, and token estimates match ``usage.prompt_tokens``.

``auto`` fps rule (also in docs/media.md):

1. Start from ``max_fps`` (2.0 by default: Qwen's time encoding degrades above 2 fps).
2. Lower it until the frame count fits ``max_frames`` (and, when set, the frames' tokens fit
   ``max_tokens``: frames shrink first, as the total pixel budget is shared and then down to
   ``min_pixels``, Qwen's minimum; only then does the count drop).
3. Never go below ``min_fps``: the floor wins over ``max_frames``/``max_tokens`` (split the video
   into shorter windows instead; ``plan_windows`` does that).

Frame counts are even (the temporal patch is 2) and at least 4 when that does not need more than
``max(fps, max_fps)`` frames per second. Timestamps are evenly spaced from ``start``:
``t_i = start + i * (end - start) / n``, so the model's clip time ``i / fps`` is exact with
``fps = n / (end - start)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from vidline.errors import ConfigError

QWEN_FACTOR = 28
FRAME_FACTOR = 2
MAX_RATIO = 200
IMAGE_MIN_PIXELS = 4 * 28 * 28
IMAGE_MAX_PIXELS = 16384 * 28 * 28
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = int(128000 * 28 * 28 * 0.9)  # qwen-vl-utils default total pixel budget per video
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
DEFAULT_FPS = 2.0
# frame counts within this many frames of an integer are that integer: (10.2 - 9.8) * 10 is
# 3.9999999999999964 in floating point and must give 4 frames, not 2
COUNT_TOLERANCE = 1e-6


def _round_by(x: float, f: int) -> int:
    return round(x / f) * f


def _ceil_by(x: float, f: int) -> int:
    return math.ceil(x / f) * f


def _floor_by(x: float, f: int) -> int:
    return math.floor(x / f) * f


def _count_floor(x: float, f: int = FRAME_FACTOR) -> int:
    """``_floor_by`` of a frame count computed in floating point (tolerant to rounding error)."""
    return _floor_by(x + COUNT_TOLERANCE, f)


def _count_ceil(x: float, f: int = FRAME_FACTOR) -> int:
    """``_ceil_by`` of a frame count computed in floating point (tolerant to rounding error)."""
    return _ceil_by(x - COUNT_TOLERANCE, f)


def aspect_problem(width: int, height: int, what: str = "frames") -> str | None:
    """Why a model cannot take pictures of ``width`` x ``height`` (over Qwen's ``MAX_RATIO``:1 aspect
    limit), for an error that names the file; None when it can."""
    if width > 0 and height > 0 and max(width, height) / min(width, height) > MAX_RATIO:
        return (f"its {width}x{height} {what} are over Qwen's {MAX_RATIO}:1 aspect limit, which models "
                "cannot take (--backend motion or scenes can read it)")
    return None


def within_ratio(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` with the longer side cut to ``MAX_RATIO`` times the shorter (for plans of
    frames whose size the caller fixes, where only the frame count and times matter)."""
    width, height = max(1, width), max(1, height)
    return min(width, MAX_RATIO * height), min(height, MAX_RATIO * width)


def smart_resize(
    height: int,
    width: int,
    *,
    factor: int = QWEN_FACTOR,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
) -> tuple[int, int]:
    """Qwen's resize rule: ``(h, w)`` multiples of ``factor`` with ``min_pixels <= h*w <= max_pixels``.

    Sides are rounded to the nearest multiple (floor ``factor``); if the area is too large both sides
    are scaled by sqrt(area/max) and floored, if too small scaled by sqrt(min/area) and ceiled.
    """
    if height <= 0 or width <= 0:
        raise ConfigError(f"invalid frame size {width}x{height}")
    if aspect_problem(width, height) is not None:
        raise ConfigError(f"aspect ratio of {width}x{height} exceeds {MAX_RATIO}:1")
    h_bar = max(factor, _round_by(height, factor))
    w_bar = max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, _floor_by(height / beta, factor))
        w_bar = max(factor, _floor_by(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by(height * beta, factor)
        w_bar = _ceil_by(width * beta, factor)
    return h_bar, w_bar


def estimate_video_tokens(n_frames: int, height: int, width: int) -> int:
    """Visual tokens of ``n_frames`` frames of ``height x width`` (already resized): (T/2)(H/28)(W/28).

    T is rounded up to even (an odd list has its last frame repeated by the processor).
    """
    if n_frames <= 0:
        return 0
    t = _ceil_by(n_frames, FRAME_FACTOR)
    return (t // FRAME_FACTOR) * (height // QWEN_FACTOR) * (width // QWEN_FACTOR)


def estimate_image_tokens(height: int, width: int) -> int:
    """Visual tokens of one image already resized to ``height x width``: (H/28)(W/28)."""
    return (height // QWEN_FACTOR) * (width // QWEN_FACTOR)


def image_size_for(height: int, width: int) -> tuple[int, int]:
    """``(h, w)`` a Qwen server resizes an image of ``height x width`` to (image pixel limits)."""
    return smart_resize(height, width, min_pixels=IMAGE_MIN_PIXELS, max_pixels=IMAGE_MAX_PIXELS)


@dataclass(frozen=True)
class SamplingBudget:
    """What a caller allows for one clip. ``fps="auto"``: see the module docstring for the rule.

    ``total_pixels`` defaults (None) to qwen-vl-utils' 128000*28*28*0.9 shared by all frames;
    ``max_tokens`` (auto only) caps the clip's visual tokens.
    """

    fps: float | Literal["auto"] = "auto"
    min_fps: float = 0.1
    max_fps: float = DEFAULT_FPS
    max_frames: int = FPS_MAX_FRAMES
    total_pixels: int | None = None
    max_tokens: int | None = None
    min_pixels: int = VIDEO_MIN_PIXELS
    max_pixels: int = VIDEO_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.fps != "auto" and (not isinstance(self.fps, (int, float)) or self.fps <= 0):
            raise ConfigError(f"fps must be a positive number or 'auto', got {self.fps!r}")
        if self.min_fps <= 0 or self.max_fps <= 0 or self.min_fps > self.max_fps:
            raise ConfigError(f"need 0 < min_fps <= max_fps, got {self.min_fps} and {self.max_fps}")
        if self.max_frames < 2:
            raise ConfigError(f"max_frames must be at least 2, got {self.max_frames}")
        if self.min_pixels <= 0 or self.max_pixels <= 0:
            raise ConfigError("min_pixels and max_pixels must be positive")


@dataclass(frozen=True)
class SamplingPlan:
    """Frame timestamps (seconds from the first displayed frame) and the resized frame size."""

    start: float
    end: float
    fps: float  # real spacing of the timestamps: n_frames / (end - start)
    timestamps: tuple[float, ...]
    width: int
    height: int

    @property
    def n_frames(self) -> int:
        return len(self.timestamps)

    @property
    def tokens(self) -> int:
        return estimate_video_tokens(self.n_frames, self.height, self.width)

    @property
    def duration(self) -> float:
        return self.end - self.start


def frame_size_for(n_frames: int, src_height: int, src_width: int, budget: SamplingBudget) -> tuple[int, int]:
    """``(h, w)`` of each of ``n_frames`` frames: qwen-vl-utils' per-frame max pixels from the total budget."""
    total = budget.total_pixels if budget.total_pixels is not None else VIDEO_TOTAL_PIXELS
    per_frame = max(
        min(budget.max_pixels, total / max(n_frames, 1) * FRAME_FACTOR), int(budget.min_pixels * 1.05)
    )
    return smart_resize(src_height, src_width, min_pixels=budget.min_pixels, max_pixels=int(per_frame))


def _size_within_tokens(
    n_frames: int, src_height: int, src_width: int, budget: SamplingBudget, max_tokens: int
) -> tuple[int, int] | None:
    """``(h, w)`` of ``n_frames`` frames whose tokens fit ``max_tokens``: the total-budget size
    (``frame_size_for``) when it fits, else the largest smaller one down to Qwen's minimum
    (``budget.min_pixels``; a server resizes smaller frames up to it); None when even that does not
    fit."""
    h, w = frame_size_for(n_frames, src_height, src_width, budget)
    if estimate_video_tokens(n_frames, h, w) <= max_tokens:
        return h, w
    pairs = _ceil_by(n_frames, FRAME_FACTOR) // FRAME_FACTOR
    per_frame = max_tokens // pairs * QWEN_FACTOR * QWEN_FACTOR  # pixels of one frame's patch allowance
    # never below the smallest per-frame maximum qwen-vl-utils uses (``frame_size_for``'s floor)
    h, w = smart_resize(src_height, src_width, min_pixels=budget.min_pixels,
                        max_pixels=max(per_frame, int(budget.min_pixels * 1.05)))
    h, w = _kept_by_server(h, w, budget)
    return (h, w) if estimate_video_tokens(n_frames, h, w) <= max_tokens else None


def _kept_by_server(height: int, width: int, budget: SamplingBudget) -> tuple[int, int]:
    """``(h, w)`` a Qwen server resizes frames of ``height x width`` to, when smaller than ``min_pixels``
    (the flooring in ``smart_resize`` can go below it): sending them that size costs no more tokens."""
    return smart_resize(height, width, min_pixels=budget.min_pixels, max_pixels=max(budget.max_pixels, height * width))


def plan_sampling(
    start: float,
    end: float,
    budget: SamplingBudget,
    *,
    src_width: int,
    src_height: int,
    src_fps: float | None = None,
) -> SamplingPlan:
    """Plan frames for ``[start, end)`` of a video whose upright frames are ``src_width x src_height``.

    ``src_fps`` (optional) caps the count at the number of source frames in the range.
    """
    duration = end - start
    if not duration > 0:
        raise ConfigError(f"empty time range [{start:.3f}, {end:.3f})")
    auto = budget.fps == "auto"
    fps_target = budget.max_fps if auto else float(budget.fps)
    cap = _floor_by(budget.max_frames, FRAME_FACTOR)
    if src_fps and src_fps > 0:
        cap = min(cap, max(FRAME_FACTOR, _count_ceil(duration * src_fps)))
    n_min = (
        FPS_MIN_FRAMES
        if duration * max(fps_target, budget.max_fps) + COUNT_TOLERANCE >= FPS_MIN_FRAMES
        else FRAME_FACTOR
    )
    n_min = min(n_min, cap)
    n = max(_count_floor(duration * fps_target), n_min)
    n = min(n, cap)
    size: tuple[int, int] | None = None
    if auto:
        if budget.max_tokens is not None:
            size = _size_within_tokens(n, src_height, src_width, budget, budget.max_tokens)
            while n > n_min and size is None:
                n -= FRAME_FACTOR
                size = _size_within_tokens(n, src_height, src_width, budget, budget.max_tokens)
        floor_n = max(_count_ceil(duration * budget.min_fps), FRAME_FACTOR)
        if n < floor_n:  # the floor wins; with a token cap its frames are the smallest that fit, if any
            n = floor_n
            if budget.max_tokens is not None:
                size = _size_within_tokens(n, src_height, src_width, budget, budget.max_tokens) or _kept_by_server(
                    *frame_size_for(n, src_height, src_width, replace(budget, total_pixels=1)), budget)
    h, w = size or frame_size_for(n, src_height, src_width, budget)
    step = duration / n
    timestamps = tuple(start + i * step for i in range(n))
    return SamplingPlan(start=start, end=end, fps=n / duration, timestamps=timestamps, width=w, height=h)
