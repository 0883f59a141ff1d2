"""The offline ``motion`` backend: activity segments from frame differences. No model, no network.

Frames are decoded at a modest rate (default 4 fps) and downscaled (default 160 px wide). Each
sampled frame gets a *score*: the fraction of pixels that differ by more than ``pixel_delta``
(0-255) from

* ``method="background"`` (the default, like DVR-Scan's background subtraction): a background
  learned as a running average of the frames (each new frame weighs ``1 / (fps * background)``, so
  it adapts over ``background`` = 20 s). Something that arrives and then stays still (a parked car,
  a box put down) stays foreground until the background absorbs it (about 28 s for a strong
  contrast), so it is an event, not a one-sample blip; a moving object leaves no trail; light that
  changes slowly is absorbed. When it leaves, the spot where it stood differs from the background
  for a while too (a "ghost", as in DVR-Scan);
* ``method="diff"``: the previous sampled frame (frame differencing): only change counts, so an
  object that arrives and stays is one sample at its arrival and one at its departure.

The difference is taken per colour channel (the largest of R, G, B), because a saturated colour can
have almost the same luma as the background (pure greyscale would miss a red object on a grey
wall). A sample is *active* when its score is >= ``threshold``. With ``roi`` (regions ``x, y, w, h``,
fractions of the picture or pixels) only the pixels inside them are watched, and the score is the
fraction *of those* that changed. Active samples are turned into events exactly like DVR-Scan does:

1. consecutive active samples form a run; a run covers [time of the frame before its first active
   sample, time of its last active sample] (the change happened between those frames);
2. runs separated by at most ``merge_gap`` seconds are joined;
3. runs shorter than ``min_event`` seconds are dropped (a single flicker, a light switching);
4. each survivor is padded by ``pre`` / ``post`` seconds, clamped to the video, and padded events
   that now overlap are joined.

Events are labelled ``motion``; ``confidence`` is the event's peak score normalised to [0, 1] as
``peak / (peak + threshold)`` (0.5 right at the threshold, towards 1 for strong motion).

The segmentation (:func:`segment_scores`) is pure and table-tested; decoding is separate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from vidline.types import Event, Frame

MOTION_METHODS = ("background", "diff")


@dataclass(frozen=True)
class MotionParams:
    """DVR-Scan-like parameters of the motion detector (seconds unless noted)."""

    threshold: float = 0.01  # fraction of changed pixels that counts as motion
    min_event: float = 1.0  # shortest run of motion kept (before padding)
    merge_gap: float = 2.0  # runs this close are one event
    pre: float = 0.5  # padding before each event
    post: float = 0.5  # padding after each event
    fps: float = 4.0  # analysis frame rate
    width: int = 160  # analysis frame width (height keeps the aspect ratio)
    pixel_delta: int = 25  # per-pixel change (0-255) that counts as "changed"
    method: str = "background"  # "background" (running-average background) | "diff" (previous frame)
    background: float = 20.0  # seconds over which the background adapts (method "background")
    roi: tuple[tuple[float, float, float, float], ...] = ()  # regions watched (x, y, w, h); () = all

    def validate(self) -> None:
        from vidline.errors import ConfigError, require_number

        if self.method not in MOTION_METHODS:
            raise ConfigError(f"--motion-method must be one of {', '.join(MOTION_METHODS)}, got {self.method!r}")
        require_number("--threshold", self.threshold, above=0, maximum=1)
        require_number("background adaptation (s)", self.background, above=0)
        for name in ("min_event", "merge_gap", "pre", "post"):
            require_number(f"--{name.replace('_', '-')}", getattr(self, name), minimum=0)
        require_number("motion fps", self.fps, above=0, maximum=60)
        require_number("motion analysis width (px)", self.width, minimum=16, integer=True)
        check_roi(self.roi)


def frame_score(prev: np.ndarray, cur: np.ndarray, pixel_delta: int = 25) -> float:
    """Fraction of pixels that changed by more than ``pixel_delta`` in any channel (pure)."""
    diff = np.abs(cur.astype(np.int16) - prev.astype(np.int16))
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    return float((diff > pixel_delta).mean())


def score_frames(frames: Iterable[Frame], pixel_delta: int = 25) -> tuple[list[float], list[float]]:
    """(times, scores) for a stream of frames; the first frame scores 0 (nothing to compare)."""
    return pairwise_scores(frames, lambda prev, cur: frame_score(prev, cur, pixel_delta))


def background_scores(frames: Iterable[Frame], pixel_delta: int = 25, alpha: float = 0.0125,
                      ) -> tuple[list[float], list[float]]:
    """(times, scores) against a running-average background (``alpha``: a new frame's weight); the
    first frame is the first background and scores 0."""
    times: list[float] = []
    scores: list[float] = []
    bg: np.ndarray | None = None
    for fr in frames:
        img = fr.image.astype(np.float32)
        times.append(fr.t)
        if bg is None or bg.shape != img.shape:
            bg = img
            scores.append(0.0)
            continue
        diff = np.abs(img - bg)
        if diff.ndim == 3:
            diff = diff.max(axis=2)
        scores.append(float((diff > pixel_delta).mean()))
        bg += alpha * (img - bg)
    return times, scores


def pairwise_scores(frames: Iterable[Frame], measure: Callable[[np.ndarray, np.ndarray], float],
                    ) -> tuple[list[float], list[float]]:
    """(times, ``measure(previous image, image)``) for a stream of frames; the first scores 0."""
    times: list[float] = []
    scores: list[float] = []
    prev: np.ndarray | None = None
    for fr in frames:
        img = fr.image
        times.append(fr.t)
        scores.append(0.0 if prev is None or prev.shape != img.shape else measure(prev, img))
        prev = img
    return times, scores


def segment_scores(
    times: Sequence[float], scores: Sequence[float], params: MotionParams, *, duration: float | None = None
) -> list[Event]:
    """Turn per-sample motion scores into padded, merged ``motion`` events (pure; see module doc)."""
    if len(times) != len(scores):
        raise ValueError("times and scores must have the same length")
    end_of_video = duration if duration is not None else (times[-1] if times else 0.0)
    runs = _active_runs(times, scores, params.threshold)
    runs = _join_close(runs, params.merge_gap)
    runs = [r for r in runs if r[1] - r[0] >= params.min_event - 1e-9]
    padded = [(max(0.0, s - params.pre), min(end_of_video, e + params.post), peak) for s, e, peak in runs]
    padded = _join_close(padded, 0.0)
    return [
        Event(start=s, end=e, label="motion", description=None,
              confidence=round(peak / (peak + params.threshold), 3), windows=[])
        for s, e, peak in padded
        if e > s
    ]


def _active_runs(times: Sequence[float], scores: Sequence[float], threshold: float) -> list[tuple[float, float, float]]:
    runs: list[tuple[float, float, float]] = []
    start: float | None = None
    peak = 0.0
    last = 0.0
    for i, (t, sc) in enumerate(zip(times, scores, strict=True)):
        if sc >= threshold:
            if start is None:
                start = times[i - 1] if i > 0 else t
                peak = 0.0
            peak = max(peak, sc)
            last = t
        elif start is not None:
            runs.append((start, last, peak))
            start = None
    if start is not None:
        runs.append((start, last, peak))
    return runs


def _join_close(runs: list[tuple[float, float, float]], gap: float) -> list[tuple[float, float, float]]:
    out: list[tuple[float, float, float]] = []
    for s, e, p in sorted(runs):
        if out and s - out[-1][1] <= gap + 1e-9:
            ps, pe, pp = out[-1]
            out[-1] = (ps, max(pe, e), max(pp, p))
        else:
            out.append((s, e, p))
    return out


def analysis_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """(w, h) of the downscaled analysis frames: ``target_width`` wide (never upscaled), even sides."""
    w = min(target_width, width)
    h = max(2, round(height * w / max(1, width)))
    return max(2, w - w % 2), h - h % 2


Roi = tuple[float, float, float, float]


def regions(value: object) -> tuple[Roi, ...]:
    """``roi=`` as regions: one ``(x, y, w, h)`` or a sequence of them (checked by ``check_roi``)."""
    from vidline.errors import ConfigError

    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"roi must be (x, y, w, h) or a list of them, got {value!r}")
    items = [value] if value and not isinstance(value[0], (list, tuple)) else list(value)
    return tuple(tuple(r) for r in items)


def check_roi(roi: Sequence[Sequence[float]]) -> None:
    """ConfigError unless every region is four finite numbers ``x, y, w, h`` with ``w, h > 0``:
    fractions of the picture when all four are <= 1, else pixels of the displayed picture."""
    from vidline.errors import ConfigError, require_number

    for region in roi:
        if len(region) != 4:
            raise ConfigError(f"--roi needs x,y,w,h (four numbers), got {region!r}")
        for name, value in zip(("x", "y"), region[:2], strict=True):
            require_number(f"--roi {name}", value, minimum=0)
        for name, value in zip(("w", "h"), region[2:], strict=True):
            require_number(f"--roi {name}", value, above=0)


def roi_mask(roi: Sequence[Roi], size: tuple[int, int], src_size: tuple[int, int]) -> np.ndarray | None:
    """A boolean mask of the analysis frame (``size`` = w, h) that is True inside any region; regions
    are fractions of the picture (all four numbers <= 1) or pixels of the displayed picture
    (``src_size``). None when there is no region (the whole picture)."""
    if not roi:
        return None
    w, h = size
    mask = np.zeros((h, w), bool)
    for x, y, rw, rh in roi:
        if max(x, y, rw, rh) > 1:  # pixels of the displayed picture
            x, rw = x / src_size[0], rw / src_size[0]
            y, rh = y / src_size[1], rh / src_size[1]
        x0, y0 = int(np.floor(x * w)), int(np.floor(y * h))
        x1, y1 = int(np.ceil(min(1.0, x + rw) * w)), int(np.ceil(min(1.0, y + rh) * h))
        mask[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)] = True
    return mask


def analysis_frames(
    path: str | os.PathLike[str], fps: float, width: int, *, src_width: int, src_height: int, duration: float,
    on_frame: Callable[[float], None] | None = None, mask: np.ndarray | None = None,
) -> Iterable[Frame]:
    """Small RGB frames of ``path`` at ``fps``, ``width`` px wide (one streaming pass), for the
    offline detectors (motion, scenes). ``on_frame(t)`` is called for every frame (progress).
    ``mask`` (``roi_mask``): the pixels outside it are blanked, so they never change."""
    from vidline.media.plan import SamplingBudget
    from vidline.media.sampler import sample

    size = analysis_size(src_width, src_height, width)
    n_max = int(duration * fps) + 8
    budget = SamplingBudget(fps=fps, min_fps=fps, max_fps=fps, max_frames=max(4, n_max))
    frames: Iterable[Frame] = sample(path, budget, size=size)
    if mask is not None:
        frames = _blank_outside(frames, mask)
    return _tap(frames, on_frame) if on_frame is not None else frames


def _blank_outside(frames: Iterable[Frame], mask: np.ndarray) -> Iterator[Frame]:
    for fr in frames:
        if fr.image.shape[:2] == mask.shape:
            fr.image = np.where(mask[..., None] if fr.image.ndim == 3 else mask, fr.image, 0).astype(np.uint8)
        yield fr


def within_mask(scores: list[float], mask: np.ndarray | None) -> list[float]:
    """Per-picture scores (means over every pixel of frames blanked outside ``mask``) as means over
    the watched pixels only, so thresholds mean the same with a region as without."""
    if mask is None:
        return scores
    share = float(mask.mean()) or 1.0
    return [min(1.0, x / share) for x in scores]


def motion_scores(
    path: str | os.PathLike[str], params: MotionParams, *, src_width: int, src_height: int, duration: float,
    on_frame: Callable[[float], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Decode ``path`` at ``params.fps`` into small frames and score them (one streaming pass).

    ``on_frame(t)`` is called for every decoded frame (progress reporting).
    """
    mask = roi_mask(params.roi, analysis_size(src_width, src_height, params.width), (src_width, src_height))
    frames = analysis_frames(path, params.fps, params.width, src_width=src_width, src_height=src_height,
                             duration=duration, on_frame=on_frame, mask=mask)
    if params.method == "background":
        times, scores = background_scores(frames, params.pixel_delta,
                                          alpha=min(1.0, 1.0 / (params.fps * params.background)))
    else:
        times, scores = score_frames(frames, params.pixel_delta)
    return times, within_mask(scores, mask)


def _tap(frames: Iterable[Frame], callback: Callable[[float], None]) -> Iterator[Frame]:
    for fr in frames:
        callback(fr.t)
        yield fr


def detect_motion(
    path: str | os.PathLike[str],
    *,
    threshold: float = MotionParams.threshold,
    min_event: float = MotionParams.min_event,
    merge_gap: float = MotionParams.merge_gap,
    pre: float = MotionParams.pre,
    post: float = MotionParams.post,
    fps: float = MotionParams.fps,
    width: int = MotionParams.width,
    method: str = MotionParams.method,
    roi: Sequence[Roi] = (),
) -> list[Event]:
    """Motion events of a video file (absolute seconds), no model needed. ``roi``: regions watched
    (``x, y, w, h``: fractions of the picture, or pixels), like DVR-Scan's ``-roi``."""
    from vidline.media.probe import probe

    params = MotionParams(threshold=threshold, min_event=min_event, merge_gap=merge_gap, pre=pre, post=post,
                          fps=fps, width=width, method=method, roi=regions(roi))
    params.validate()
    info = probe(path)
    times, scores = motion_scores(path, params, src_width=info.display_width, src_height=info.display_height,
                                  duration=info.duration)
    return segment_scores(times, scores, params, duration=info.duration)
