"""Which path a question takes: one request, or map (per-window captions) then reduce (pure).

**Single request** when every video fits one request *at a useful fps*: at least ``useful_fps``
(0.5 frames per second by default, i.e. a frame every 2 s) within ``max_frames`` frames (768 for
OpenAI-compatible servers, 512 for DashScope) and ``max_visual_tokens`` visual tokens for all inputs
together (24576 by default, leaving room for text in a 32k context), and no video longer than the
provider's clip limit (10 min for Qwen2.5-VL). Frames shrink to Qwen's minimum size before the fps
drops (``vidline.media.plan``'s auto rule).

**Map-reduce** otherwise: each video is cut into contiguous windows (``window`` seconds, 120 by
default, capped by the provider's clip limit), every window is captioned with timestamps at up to
``caption_fps`` (1.0), and one final text request answers from the captions. Images always go into
the final request as images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vidline.errors import ConfigError
from vidline.media.plan import (
    SamplingBudget,
    SamplingPlan,
    estimate_image_tokens,
    image_size_for,
    plan_sampling,
)
from vidline.media.windows import max_frames_for, max_window_for, plan_windows
from vidline.types import Window

PathName = Literal["single", "map-reduce"]
Strategy = Literal["auto", "single", "map-reduce"]

USEFUL_FPS = 0.5
DEFAULT_MAX_VISUAL_TOKENS = 24576
DEFAULT_WINDOW = 120.0
CAPTION_FPS = 1.0
CAPTION_TOKENS_PER_WINDOW = 200  # rough size of one window's caption, for the final request's estimate


def approx_text_tokens(text: str) -> int:
    """A rough text token count (about 4 characters per token, CJK 1 per character); no tokenizer."""
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
    return cjk + (len(text) - cjk + 3) // 4


@dataclass(frozen=True)
class MediaInput:
    """One input as probed: a video (upright size and duration) or a still image."""

    path: str
    kind: Literal["video", "image"]
    width: int
    height: int
    duration: float = 0.0
    fps: float | None = None  # source frame rate, caps the frame count


@dataclass(frozen=True)
class AskLimits:
    useful_fps: float = USEFUL_FPS
    max_fps: float = 2.0
    max_frames: int = 768
    max_visual_tokens: int = DEFAULT_MAX_VISUAL_TOKENS
    max_clip_seconds: float | None = 600.0
    window: float = DEFAULT_WINDOW
    caption_fps: float = CAPTION_FPS

    @classmethod
    def for_backend(cls, backend: str | None, mode: str | None, **overrides: Any) -> AskLimits:
        """Limits of ``backend`` ("openai" | "dashscope" | None) in payload ``mode``; ``None`` overrides ignored."""
        base: dict[str, Any] = {}
        if backend:
            base["max_frames"] = max_frames_for(backend)
            base["max_clip_seconds"] = max_window_for(mode, backend)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def single_budget(self, max_tokens: int) -> SamplingBudget:
        return SamplingBudget(fps="auto", min_fps=min(self.useful_fps, self.max_fps), max_fps=self.max_fps,
                              max_frames=self.max_frames, max_tokens=max_tokens)

    def caption_budget(self) -> SamplingBudget:
        top = min(self.caption_fps, self.max_fps)
        return SamplingBudget(fps="auto", min_fps=min(0.1, top), max_fps=top, max_frames=self.max_frames,
                              max_tokens=self.max_visual_tokens)


@dataclass(frozen=True)
class InputPlan:
    input: MediaInput
    sampling: SamplingPlan | None = None  # single path: the video's frames
    budget: SamplingBudget | None = None  # the budget that produced ``sampling`` / ``window_plans``
    image_size: tuple[int, int] | None = None  # images: (h, w) after Qwen's image rule
    windows: tuple[Window, ...] = ()  # map-reduce: the video's caption windows
    window_plans: tuple[SamplingPlan, ...] = ()
    visual_tokens: int = 0  # in the single request / the final request (images)
    caption_tokens: int = 0  # map step: visual tokens of all caption requests

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.input.path, "kind": self.input.kind}
        if self.input.kind == "video":
            d["duration"] = round(self.input.duration, 3)
        if self.sampling is not None:
            s = self.sampling
            d.update(fps=round(s.fps, 4), frames=s.n_frames, frame_size=[s.width, s.height], tokens=s.tokens)
        if self.image_size is not None:
            d.update(image_size=[self.image_size[1], self.image_size[0]], tokens=self.visual_tokens)
        if self.windows:
            d["windows"] = [
                {"index": w.index, "start": round(w.start, 3), "end": round(w.end, 3), "frames": p.n_frames,
                 "fps": round(p.fps, 4), "frame_size": [p.width, p.height], "tokens": p.tokens}
                for w, p in zip(self.windows, self.window_plans, strict=True)
            ]
        return d


@dataclass(frozen=True)
class AskPlan:
    path: PathName
    inputs: tuple[InputPlan, ...]
    reason: str
    text_tokens: int = 0  # approximate tokens of the question and instructions
    limits: AskLimits = field(default_factory=AskLimits)

    @property
    def n_requests(self) -> int:
        return 1 + sum(len(ip.windows) for ip in self.inputs)

    @property
    def final_tokens(self) -> int:
        """Estimated input tokens of the request that produces the answer."""
        visual = sum(ip.visual_tokens for ip in self.inputs)
        captions = CAPTION_TOKENS_PER_WINDOW * sum(len(ip.windows) for ip in self.inputs)
        return visual + captions + self.text_tokens

    @property
    def estimated_tokens(self) -> int:
        """Estimated input tokens of every request together (map step + final)."""
        return self.final_tokens + sum(ip.caption_tokens for ip in self.inputs)

    def to_text(self) -> str:
        """A human-readable summary (``vidline ask --dry-run``)."""
        n_windows = sum(len(ip.windows) for ip in self.inputs)
        lines = [f"path: {self.path} ({self.reason})"]
        if n_windows:
            lines.append(f"requests: {self.n_requests} ({n_windows} caption windows + 1 final request)")
        else:
            lines.append("requests: 1")
        lines.append(f"estimated input tokens: {self.estimated_tokens} (final request ~{self.final_tokens})")
        for ip in self.inputs:
            item = ip.input
            if item.kind == "image":
                h, w = ip.image_size or (item.height, item.width)
                lines.append(f"  {item.path}: image {item.width}x{item.height} -> {w}x{h}, {ip.visual_tokens} tokens")
            elif ip.sampling is not None:
                sp = ip.sampling
                lines.append(f"  {item.path}: video {item.duration:.1f} s -> {sp.n_frames} frames at {sp.fps:.2f} fps, "
                             f"{sp.width}x{sp.height}, {sp.tokens} tokens")
            else:
                frames = sum(p.n_frames for p in ip.window_plans)
                size = f"{ip.window_plans[0].width}x{ip.window_plans[0].height}" if ip.window_plans else "?"
                lines.append(f"  {item.path}: video {item.duration:.1f} s -> {len(ip.windows)} windows of "
                             f"~{item.duration / max(1, len(ip.windows)):.1f} s, {frames} frames in all, {size}, "
                             f"{ip.caption_tokens} caption tokens")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "reason": self.reason,
            "requests": self.n_requests,
            "estimated_tokens": self.estimated_tokens,
            "final_request_tokens": self.final_tokens,
            "useful_fps": self.limits.useful_fps,
            "max_visual_tokens": self.limits.max_visual_tokens,
            "inputs": [ip.to_dict() for ip in self.inputs],
        }


def plan_ask(
    inputs: Sequence[MediaInput],
    limits: AskLimits = AskLimits(),
    *,
    strategy: Strategy = "auto",
    text: str = "",
) -> AskPlan:
    """Decide single vs map-reduce for ``inputs`` and plan every request (see the module docstring)."""
    if not inputs:
        raise ConfigError("nothing to ask about: give at least one video or image")
    if strategy not in ("auto", "single", "map-reduce"):
        raise ConfigError(f"unknown strategy {strategy!r}: choose auto, single or map-reduce")
    text_tokens = approx_text_tokens(text) + 60
    image_plans: dict[int, InputPlan] = {}
    for i, item in enumerate(inputs):
        if item.kind == "image":
            h, w = image_size_for(item.height, item.width)
            image_plans[i] = InputPlan(item, image_size=(h, w), visual_tokens=estimate_image_tokens(h, w))
    image_tokens = sum(p.visual_tokens for p in image_plans.values())
    videos = [i for i, item in enumerate(inputs) if item.kind == "video"]

    single_ok = True
    reason = "no video: images go in one request"
    single: dict[int, InputPlan] = {}
    if videos:
        share = max(0, limits.max_visual_tokens - image_tokens) // len(videos)
        reason = (f"every video fits one request at >= {limits.useful_fps:g} fps within "
                  f"{limits.max_frames} frames and {limits.max_visual_tokens} visual tokens")
        for i in videos:
            item = inputs[i]
            if item.duration <= 0:
                raise ConfigError(f"{item.path}: video has no duration")
            budget = limits.single_budget(max(share, 1))
            sp = plan_sampling(0.0, item.duration, budget, src_width=item.width, src_height=item.height,
                               src_fps=item.fps)
            single[i] = InputPlan(item, sampling=sp, budget=budget, visual_tokens=sp.tokens)
            src_limited = bool(item.fps) and sp.n_frames >= item.duration * (item.fps or 0) - 2
            if limits.max_clip_seconds is not None and item.duration > limits.max_clip_seconds + 1e-6:
                single_ok = False
                reason = (f"{item.path} is {item.duration:.0f} s, longer than one request may cover "
                          f"({limits.max_clip_seconds:.0f} s)")
            elif sp.fps < limits.useful_fps - 1e-9 and not src_limited:
                single_ok = False
                reason = f"{item.path} would get only {sp.fps:.2f} fps in one request (< {limits.useful_fps:g})"
            elif sp.n_frames > limits.max_frames or sp.tokens > max(share, 1):
                single_ok = False
                reason = (f"{item.path} needs {sp.n_frames} frames / {sp.tokens} tokens at "
                          f"{limits.useful_fps:g} fps, over the limits ({limits.max_frames} frames, {share} tokens)")
    path: PathName
    if strategy == "single":
        path = "single"
        if not single_ok:
            reason = "forced single request (" + reason + ")"
    elif strategy == "map-reduce" and videos:
        path = "map-reduce"
        reason = "forced map-reduce"
    else:
        path = "single" if single_ok else "map-reduce"

    plans: list[InputPlan] = []
    for i, item in enumerate(inputs):
        if i in image_plans:
            plans.append(image_plans[i])
        elif path == "single":
            plans.append(single[i])
        else:
            windows = plan_windows(item.duration, window=limits.window, overlap=0.0,
                                   max_window=limits.max_clip_seconds)
            budget = limits.caption_budget()
            wplans = tuple(plan_sampling(w.start, w.end, budget, src_width=item.width, src_height=item.height)
                           for w in windows)
            caption_text = 80 * len(windows)
            plans.append(InputPlan(item, budget=budget, windows=tuple(windows), window_plans=wplans,
                                   caption_tokens=sum(p.tokens for p in wplans) + caption_text))
    return AskPlan(path=path, inputs=tuple(plans), reason=reason, text_tokens=text_tokens, limits=limits)
