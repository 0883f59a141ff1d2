"""Streaming frame sampling: ``sample`` (one clip) and ``sample_windows`` (many windows, one decode pass).

Both return generators that hold no list of full-resolution frames: frames are resized while they
are converted from the decoder's YUV, and only frames of windows still in flight are kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from vidline.errors import ConfigError, UnsupportedVideoError
from vidline.log import logger
from vidline.media.plan import SamplingBudget, SamplingPlan, aspect_problem, plan_sampling, within_ratio
from vidline.media.probe import probe
from vidline.media.source import FrameSource, Target, open_source
from vidline.types import Frame, VideoInfo, Window


def clip_range(info: VideoInfo, start: float | None, end: float | None) -> tuple[float, float]:
    """``[start, end)`` clamped to the video; ConfigError when empty."""
    s = max(0.0, float(start or 0.0))
    e = info.duration if end is None else min(float(end), info.duration)
    if not e > s:
        raise ConfigError(
            f"{info.path}: empty time range [{s:.3f}, {e:.3f}) (video is {info.duration:.3f} s long)"
        )
    return s, e


def plan_for(
    info: VideoInfo,
    budget: SamplingBudget | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
    size: tuple[int, int] | None = None,
) -> SamplingPlan:
    """The sampling plan ``sample`` would follow for this video and range (frames of ``size`` when
    the caller fixes it, e.g. the motion detector's small frames: then Qwen's sizing rules, such as
    its 200:1 aspect limit, do not apply)."""
    s, e = clip_range(info, start, end)
    if size is None:
        check_frame_shape(info)
        width, height = info.display_width, info.display_height
    else:  # the caller's own frame size (it is what is decoded): Qwen's 200:1 limit is not its business
        width, height = within_ratio(*size)
    return plan_sampling(
        s,
        e,
        budget or SamplingBudget(),
        src_width=width,
        src_height=height,
        src_fps=info.fps or None,
    )


def check_frame_shape(info: VideoInfo) -> None:
    """UnsupportedVideoError naming the file when its frames are over Qwen's aspect limit, which no
    model plan can take (the offline backends, with their own sizes, can)."""
    problem = aspect_problem(info.display_width, info.display_height)
    if problem is not None:
        raise UnsupportedVideoError(info.path, problem)


def sample(
    path: str | os.PathLike[str],
    budget: SamplingBudget | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
    backend: str = "pyav",
    keyframes_only: bool = False,
    size: tuple[int, int] | None = None,
    gray: bool = False,
    info: VideoInfo | None = None,
) -> Iterator[Frame]:
    """Frames of ``[start, end)`` following the budget's plan (see ``plan_sampling``).

    ``Frame.t`` is the real presentation time (seconds from the first displayed frame) of the
    decoded frame nearest each planned timestamp; images are upright RGB resized to the plan's
    ``(width, height)`` or ``size``. With ``keyframes_only`` every keyframe in the range is yielded
    (cheap coarse pass) instead. The file is probed immediately, so open errors raise here; the
    decoding itself happens as the returned generator is consumed.
    """
    info = info or probe(path)
    plan = plan_for(info, budget, start=start, end=end, size=size)
    out = size or (plan.width, plan.height)
    source = open_source(path, info, backend)
    if keyframes_only:
        return _closing(source, source.keyframes(plan.start, plan.end, size=out, gray=gray))
    targets = [Target(t, out[0], out[1]) for t in plan.timestamps]
    return _closing(source, source.read(targets, gray=gray))


def _closing(source: FrameSource, frames: Iterator[Frame]) -> Iterator[Frame]:
    try:
        yield from frames
        _warn_if_truncated(source)
    finally:
        source.close()


def _warn_if_truncated(source: FrameSource) -> None:
    """Probe saw a truncated index: warn once (unless the decoder already did) where the data ends."""
    if source.info.truncated and source.truncated_at is None:
        source.truncated_at = source.info.duration
        if not source.warn_truncated:
            return
        logger.warning(
            "%s: decoding stopped at %.3f s (file truncated: the rest of the data is missing)",
            source.path,
            source.info.duration,
        )


@dataclass
class WindowFrames:
    """The frames sampled for one window, following ``plan``."""

    window: Window
    plan: SamplingPlan
    frames: list[Frame] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Sampling rate to tell the model (the plan's real frame spacing)."""
        return self.plan.fps


def plan_windows_sampling(
    info: VideoInfo, windows: Sequence[Window], budget: SamplingBudget
) -> list[SamplingPlan]:
    """Each window's sampling plan (what ``sample_windows`` will decode)."""
    check_frame_shape(info)
    return [
        plan_sampling(
            w.start,
            min(w.end, info.duration) if info.duration > w.start else w.end,
            budget,
            src_width=info.display_width,
            src_height=info.display_height,
            src_fps=info.fps or None,
        )
        for w in windows
    ]


def sample_windows(
    path: str | os.PathLike[str],
    windows: Sequence[Window],
    budget: SamplingBudget,
    *,
    backend: str = "pyav",
    info: VideoInfo | None = None,
    pixel_format: str = "rgb24",
    threads: int | None = None,
) -> Iterator[WindowFrames]:
    """Sample every window in ONE streaming decode pass; yield windows in order as they complete.

    ``pixel_format="yuv420p"`` asks for planar YUV frames where the decoder can give them (the
    mp4 payload path; see ``FrameSource.read``); check ``Frame.format``. ``threads``: decoder threads
    (see ``open_source``; None = automatic).

    Overlapping windows share the decode; only frames of windows still in flight are held. If
    the file ends early (truncated), unfinished windows are yielded with the frames that exist
    (trimmed to an even count); windows with fewer than 2 frames are dropped with a warning.
    """
    info = info or probe(path)
    windows = list(windows)
    plans = plan_windows_sampling(info, windows, budget)
    events = _stream_windows(path, info, plans, backend, pixel_format, threads)
    return collect_windows(path, windows, plans, events)


def stream_windows(
    path: str | os.PathLike[str],
    windows: Sequence[Window],
    budget: SamplingBudget,
    *,
    backend: str = "pyav",
    info: VideoInfo | None = None,
    pixel_format: str = "rgb24",
    threads: int | None = None,
    warn_truncated: bool = True,
) -> Iterator[tuple[int, Frame | None]]:
    """The decode pass of ``sample_windows`` frame by frame: ``(i, frame)`` as each frame of
    ``windows[i]`` is decoded (a window's frames in time order; overlapping windows interleave), then
    ``(i, None)`` when that window has all its frames, or when the file ended before (truncated).

    The timeline encodes each window while it is decoded from this, so no window's frames are ever
    all held; ``collect_windows`` turns it back into ``WindowFrames``. ``warn_truncated=False``
    leaves out the warning where decoding stops early (a second pass over a file already reported)."""
    info = info or probe(path)
    plans = plan_windows_sampling(info, list(windows), budget)
    return _stream_windows(path, info, plans, backend, pixel_format, threads, warn_truncated)


def _stream_windows(
    path: str | os.PathLike[str],
    info: VideoInfo,
    plans: list[SamplingPlan],
    backend: str,
    pixel_format: str,
    threads: int | None = None,
    warn_truncated: bool = True,
) -> Iterator[tuple[int, Frame | None]]:
    entries: list[tuple[float, int]] = []  # (t, window)
    for wi, plan in enumerate(plans):
        entries.extend((t, wi) for t in plan.timestamps)
    entries.sort()
    targets = [Target(t, plans[wi].width, plans[wi].height) for t, wi in entries]
    remaining = {wi: plan.n_frames for wi, plan in enumerate(plans) if plan.n_frames}
    source = open_source(path, info, backend, threads=threads)
    source.warn_truncated = warn_truncated
    frames = source.read(targets, pixel_format=pixel_format)
    try:
        for (_, wi), frame in zip(entries, frames, strict=False):
            yield wi, frame
            remaining[wi] -= 1
            if remaining[wi] == 0:
                del remaining[wi]
                yield wi, None
        _warn_if_truncated(source)
    finally:
        # closed here, not left to the garbage collector: zip stops without exhausting the reader, and
        # a Ctrl-C arriving while a collected generator closes its file would be printed and lost
        close = getattr(frames, "close", None)
        if close is not None:
            close()
        source.close()
    for wi in sorted(remaining):  # truncated input: these windows end early
        yield wi, None


def collect_windows(
    path: str | os.PathLike[str],
    windows: Sequence[Window],
    plans: Sequence[SamplingPlan],
    events: Iterable[tuple[int, Frame | None]],
) -> Iterator[WindowFrames]:
    """``WindowFrames`` in window order from a ``stream_windows`` pass (see ``window_frames``)."""
    pending: dict[int, list[Frame]] = {}
    done: dict[int, WindowFrames | None] = {}
    next_out = 0
    for wi, frame in events:
        if frame is not None:
            pending.setdefault(wi, []).append(frame)
            continue
        done[wi] = window_frames(path, windows[wi], plans[wi], pending.pop(wi, []))
        while next_out in done:
            wf = done.pop(next_out)
            next_out += 1
            if wf is not None:
                yield wf


def window_frames(
    path: str | os.PathLike[str], window: Window, plan: SamplingPlan, frames: list[Frame]
) -> WindowFrames | None:
    """The window's frames as decoded: all of them, or when the file ended inside the window the ones
    that exist trimmed to an even count; None (with a warning) when fewer than 2 exist."""
    if len(frames) < plan.n_frames:
        frames = frames[: len(frames) - len(frames) % 2]
        if len(frames) < 2:
            logger.warning(
                "%s: window %d [%.1f, %.1f) has fewer than 2 decodable frames; skipped",
                path,
                window.index,
                window.start,
                window.end,
            )
            return None
    return WindowFrames(window, plan, frames)
