"""Splitting a video into overlapping windows, one model request each (pure, no I/O).

Windows cover ``[0, duration)``. When the video does not divide evenly, every window is shortened
equally ("rebalanced") instead of leaving a tiny last window: ``n = ceil((duration - overlap) /
(window - overlap))`` windows of length ``(duration + (n - 1) * overlap) / n <= window``.
"""

from __future__ import annotations

import math

from vidline.errors import ConfigError
from vidline.types import Window

# Longest clip per request, seconds, per (backend, payload mode). From ../shared/protocols.md:
# DashScope Qwen2.5-VL accepts videos of 2 s - 10 min (frame lists of 4-512 frames); the
# OpenAI-compatible vLLM server has no documented length limit, so the Qwen2.5-VL 10-min limit and
# the token budget (768 frames at most) are used as well.
MAX_WINDOW_SECONDS: dict[tuple[str, str], float] = {
    ("dashscope", "video"): 600.0,
    ("dashscope", "frames"): 600.0,
    ("openai", "video"): 600.0,
    ("openai", "frames"): 600.0,
}
# Frames per request: DashScope frame lists take 4-512 frames; qwen-vl-utils caps videos at 768.
MAX_FRAMES: dict[str, int] = {"dashscope": 512, "openai": 768}
DEFAULT_MAX_WINDOW = 600.0
MIN_WINDOW = 2.0  # DashScope rejects videos shorter than 2 s


def max_window_for(mode: str | None, backend: str) -> float:
    """Longest window (seconds) a request in payload ``mode`` ("video" | "frames") to ``backend`` may cover."""
    if backend == "motion":
        return math.inf
    return MAX_WINDOW_SECONDS.get((backend, mode or "frames"), DEFAULT_MAX_WINDOW)


def window_cap_note(window: float | None, max_window: float) -> str | None:
    """What to tell a user whose window is longer than one request may cover (None when it is not)."""
    if window is None or window <= max_window:
        return None
    return f"--window {window:g} s is longer than one request may cover ({max_window:g} s): windows are at most that"


def max_frames_for(backend: str) -> int:
    """Most frames one request to ``backend`` may carry."""
    return MAX_FRAMES.get(backend, 768)


def plan_windows(
    duration: float,
    window: float = 120.0,
    overlap: float = 10.0,
    *,
    max_window: float | None = None,
) -> list[Window]:
    """Overlapping windows covering ``[0, duration)``; equal lengths, never a tiny tail."""
    if not (duration > 0 and math.isfinite(duration)):
        raise ConfigError(f"cannot plan windows for a duration of {duration}")
    if not window > 0:
        raise ConfigError(f"window must be positive, got {window}")
    if max_window is not None:
        window = min(window, max_window)
    if not math.isfinite(window):
        raise ConfigError(f"window must be a finite number of seconds, got {window}")
    if overlap < 0 or overlap >= window:
        raise ConfigError(f"overlap must be in [0, window), got overlap={overlap} window={window}")
    if duration <= window:
        return [Window(0, 0.0, float(duration))]
    step = window - overlap
    n = math.ceil((duration - overlap) / step - 1e-9)
    length = (duration + (n - 1) * overlap) / n
    stride = length - overlap
    windows = []
    for i in range(n):
        start = i * stride
        end = duration if i == n - 1 else start + length
        windows.append(Window(i, round(start, 6), round(end, 6)))
    return windows
