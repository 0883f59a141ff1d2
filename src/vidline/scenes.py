"""The offline ``scenes`` backend: shot cuts and slide changes from frame content. No model, no network.

Frames are decoded at a modest rate (default 4 fps) and downscaled (default 160 px wide), like the
``motion`` backend. Each sampled frame gets a *content change*: the mean, over its pixels, of the
largest per-channel difference from the previous sampled frame, from 0 (identical) to 1 (black to
white everywhere). A cut is where that change is both

1. at least ``threshold`` (default 0.08: about a fifth of the picture changing completely), and
2. at least ``ratio`` times the mean change of the two samples on either side (default 3): a pan, a
   zoom or a crowd changes every frame a lot, a cut changes one frame much more than its
   neighbours (PySceneDetect's adaptive rule);

and at least ``min_scene`` seconds after the previous cut (default 2 s; a flash gives one cut, not
two). With ``roi`` (regions ``x, y, w, h``) only those pixels count (the slide area of a lecture
recorded with the speaker beside it). The cut's time is the first sample of the new scene, so it is known to within one sample
(1 / ``fps`` s).

The cuts split the video into ``scene`` events covering it from 0 to its end, numbered in their
``description`` ("scene 3 of 12"). An event's ``confidence`` is the strength of the cut that starts
it, ``change / (change + threshold)`` (0.5 right at the threshold); the first scene has none. For a
lecture or a screen recording the scenes are its slides or screens; for edited video, its shots.

:func:`find_cuts` and :func:`scene_events` are pure and table-tested; decoding is separate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vidline.types import Event

NEIGHBOURS = 2  # samples on each side whose mean change a cut must exceed ``ratio`` times


@dataclass(frozen=True)
class SceneParams:
    """Parameters of the scene-cut detector (seconds unless noted)."""

    threshold: float = 0.08  # least mean content change (0-1) of a cut
    ratio: float = 3.0  # ... and this many times the change around it
    min_scene: float = 2.0  # shortest scene: a cut closer than this to the previous one is dropped
    fps: float = 4.0  # analysis frame rate
    width: int = 160  # analysis frame width (height keeps the aspect ratio)
    roi: tuple[tuple[float, float, float, float], ...] = ()  # regions watched (x, y, w, h); () = all

    def validate(self) -> None:
        from vidline.errors import require_number
        from vidline.motion import check_roi

        check_roi(self.roi)

        require_number("--scene-threshold", self.threshold, above=0, maximum=1)
        require_number("scene ratio", self.ratio, minimum=1)
        require_number("--min-scene", self.min_scene, minimum=0)
        require_number("scene fps", self.fps, above=0, maximum=60)
        require_number("scene analysis width (px)", self.width, minimum=16, integer=True)


def content_change(prev: np.ndarray, cur: np.ndarray) -> float:
    """Mean over pixels of the largest per-channel difference, 0-1 (pure)."""
    diff = np.abs(cur.astype(np.int16) - prev.astype(np.int16))
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    return float(diff.mean()) / 255.0


def find_cuts(times: Sequence[float], changes: Sequence[float], params: SceneParams) -> list[tuple[float, float]]:
    """``(time, change)`` of every cut, in order (pure; see the module doc). ``changes[i]`` is the
    content change from sample ``i - 1`` to sample ``i`` (``changes[0]`` is ignored)."""
    if len(times) != len(changes):
        raise ValueError("times and changes must have the same length")
    cuts: list[tuple[float, float]] = []
    last = times[0] if times else 0.0  # the start of the current scene
    for i in range(1, len(changes)):
        change = changes[i]
        if change < params.threshold:
            continue
        around = [changes[j] for j in range(max(1, i - NEIGHBOURS), min(len(changes), i + NEIGHBOURS + 1)) if j != i]
        if around and change < params.ratio * (sum(around) / len(around)):
            continue
        if times[i] - last < params.min_scene - 1e-9:
            continue
        cuts.append((times[i], change))
        last = times[i]
    return cuts


def scene_events(cuts: Sequence[tuple[float, float]], duration: float, params: SceneParams) -> list[Event]:
    """The scenes between ``cuts`` from 0 to ``duration``, as ``scene`` events (pure)."""
    bounds = [0.0] + [t for t, _c in cuts if 0.0 < t < duration] + [duration]
    strengths: list[float | None] = [None] + [c for t, c in cuts if 0.0 < t < duration]
    n = len(bounds) - 1
    events: list[Event] = []
    for k in range(n):
        strength = strengths[k]
        confidence = None if strength is None else round(strength / (strength + params.threshold), 3)
        events.append(Event(start=bounds[k], end=bounds[k + 1], label="scene", description=f"scene {k + 1} of {n}",
                            confidence=confidence, windows=[0]))
    return [e for e in events if e.end > e.start]


def scene_changes(
    path: str | os.PathLike[str], params: SceneParams, *, src_width: int, src_height: int, duration: float,
    on_frame: Callable[[float], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Decode ``path`` at ``params.fps`` into small frames and measure each one's content change (one
    streaming pass). ``on_frame(t)`` is called for every decoded frame (progress reporting)."""
    from vidline.motion import analysis_frames, analysis_size, pairwise_scores, roi_mask, within_mask

    mask = roi_mask(params.roi, analysis_size(src_width, src_height, params.width), (src_width, src_height))
    frames = analysis_frames(path, params.fps, params.width, src_width=src_width, src_height=src_height,
                             duration=duration, on_frame=on_frame, mask=mask)
    times, changes = pairwise_scores(frames, content_change)
    return times, within_mask(changes, mask)


def detect_scenes(
    path: str | os.PathLike[str],
    *,
    threshold: float = SceneParams.threshold,
    min_scene: float = SceneParams.min_scene,
    fps: float = SceneParams.fps,
    width: int = SceneParams.width,
    roi: Sequence[tuple[float, float, float, float]] = (),
) -> list[Event]:
    """Scene events of a video file (absolute seconds), no model needed. ``roi``: regions watched
    (``x, y, w, h``: fractions of the picture, or pixels), as for ``detect_motion``."""
    from vidline.media.probe import probe
    from vidline.motion import regions

    params = SceneParams(threshold=threshold, min_scene=min_scene, fps=fps, width=width, roi=regions(roi))
    params.validate()
    info = probe(path)
    times, changes = scene_changes(path, params, src_width=info.display_width, src_height=info.display_height,
                                   duration=info.duration)
    return scene_events(find_cuts(times, changes, params), info.duration, params)
