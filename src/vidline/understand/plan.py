"""Which path a question takes: one request, or map (per-window captions) then reduce (pure).

Tokens are counted the way the payload will be sent (:class:`AskPayload`: server flavour and payload
mode, e.g. a generic OpenAI-compatible server gets one ``image_url`` per frame, without Qwen's temporal
merge, so each frame costs twice as much as in a video): the fit test, the frame budget, the caption
windows and the reported estimates all use ``vidline.models.payload.estimate_video_part_tokens``.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from vidline.errors import ConfigError, UnsupportedVideoError
from vidline.media.plan import (
    SamplingBudget,
    SamplingPlan,
    aspect_problem,
    estimate_image_tokens,
    image_size_for,
    plan_sampling,
)
from vidline.media.windows import max_frames_for, max_window_for, plan_windows
from vidline.types import Window

if TYPE_CHECKING:
    from vidline.models.base import Backend
    from vidline.models.config import ModelConfig, PayloadMode
    from vidline.models.payload import Flavour

PathName = Literal["single", "map-reduce"]
Strategy = Literal["auto", "single", "map-reduce"]

USEFUL_FPS = 0.5
DEFAULT_MAX_VISUAL_TOKENS = 24576
DEFAULT_WINDOW = 120.0
CAPTION_FPS = 1.0
CAPTION_TOKENS_PER_WINDOW = 200  # rough size of one window's caption, for the final request's estimate
VISION_MARKER_TOKENS = 2  # <|vision_start|> and <|vision_end|> around every image or video


def approx_text_tokens(text: str) -> int:
    """A rough text token count (about 4 characters per token, CJK 1 per character); no tokenizer."""
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
    return cjk + (len(text) - cjk + 3) // 4


@dataclass(frozen=True)
class AskPayload:
    """How the videos of a request will be sent, which decides what their frames cost.

    ``flavour``: the server flavour ("vllm", "generic", "dashscope-compat", or "dashscope" for the native
    API); ``mode``: "video" | "frames"; ``media_io_fps``: vLLM per-request fps (``ModelConfig``'s
    ``send_media_io_fps``); ``assumed``: the flavour was not known (no server contacted, URL not
    recognisable) and vLLM's, the documented self-hosted server, was assumed."""

    flavour: Flavour = "vllm"
    mode: PayloadMode = "video"
    media_io_fps: bool = True
    assumed: bool = False

    @classmethod
    def for_config(cls, config: ModelConfig | None) -> AskPayload:
        """What ``config`` will send, known without contacting the server (``assumed`` when it is not)."""
        from vidline.models.payload import DEFAULT_MODES

        if config is None:
            return cls(assumed=True)
        flavour: Flavour | None
        if config.backend == "dashscope":
            flavour = "dashscope"
        elif config.server != "auto":
            flavour = config.server
        else:
            from vidline.models.openai_backend import flavour_from_url

            flavour = flavour_from_url(config.base_url)
        known: Flavour = flavour or "vllm"
        return cls(known, config.mode or DEFAULT_MODES[known], config.send_media_io_fps, assumed=flavour is None)

    @classmethod
    def for_backend(cls, backend: Backend) -> AskPayload:
        """What ``backend`` will send, as far as it knows its server (call ``identify_server`` first)."""
        from vidline.models.window import backend_flavour, backend_mode

        known = backend.name == "dashscope" or getattr(backend, "_flavour", None) is not None
        return cls(backend_flavour(backend), backend_mode(backend), backend.config.send_media_io_fps,
                   assumed=not known)

    def video_tokens(self, n_frames: int, height: int, width: int) -> int:
        """Tokens of ``n_frames`` frames of ``height x width`` (as planned) in this payload, vision markers
        (and, for image lists, the timestamp text beside each frame) included."""
        from vidline.models.payload import EncodeOptions, estimate_video_part_tokens

        opts = EncodeOptions(media_io_fps=self.media_io_fps)
        return estimate_video_part_tokens(n_frames, height, width, self.flavour, self.mode, opts)

    @staticmethod
    def image_tokens(height: int, width: int) -> int:
        """Tokens of an image already resized to ``height x width`` (every flavour sends it as an image)."""
        return estimate_image_tokens(height, width) + VISION_MARKER_TOKENS

    def describe(self) -> str:
        return f"{self.flavour} server, {self.mode} mode" + (" (assumed)" if self.assumed else "")

    def to_dict(self) -> dict[str, Any]:
        return {"server": self.flavour, "mode": self.mode, "server_assumed": self.assumed}


ASSUMED_PAYLOAD = AskPayload(assumed=True)


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

    def caption_budget(self, max_tokens: int | None = None) -> SamplingBudget:
        top = min(self.caption_fps, self.max_fps)
        return SamplingBudget(fps="auto", min_fps=min(0.1, top), max_fps=top, max_frames=self.max_frames,
                              max_tokens=self.max_visual_tokens if max_tokens is None else max_tokens)


@dataclass(frozen=True)
class InputPlan:
    input: MediaInput
    sampling: SamplingPlan | None = None  # single path: the video's frames
    budget: SamplingBudget | None = None  # the budget that produced ``sampling`` / ``window_plans``
    image_size: tuple[int, int] | None = None  # images: (h, w) after Qwen's image rule
    windows: tuple[Window, ...] = ()  # map-reduce: the video's caption windows
    window_plans: tuple[SamplingPlan, ...] = ()
    visual_tokens: int = 0  # in the single request / the final request (images), as the payload sends them
    caption_tokens: int = 0  # map step: tokens of all caption requests
    window_tokens: tuple[int, ...] = ()  # map step: visual tokens of each caption window, as sent

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.input.path, "kind": self.input.kind}
        if self.input.kind == "video":
            d["duration"] = round(self.input.duration, 3)
        if self.sampling is not None:
            s = self.sampling
            d.update(fps=round(s.fps, 4), frames=s.n_frames, frame_size=[s.width, s.height], tokens=self.visual_tokens)
        if self.image_size is not None:
            d.update(image_size=[self.image_size[1], self.image_size[0]], tokens=self.visual_tokens)
        if self.windows:
            d["windows"] = [
                {"index": w.index, "start": round(w.start, 3), "end": round(w.end, 3), "frames": p.n_frames,
                 "fps": round(p.fps, 4), "frame_size": [p.width, p.height], "tokens": t}
                for w, p, t in zip(self.windows, self.window_plans, self.window_tokens, strict=True)
            ]
        return d


@dataclass(frozen=True)
class AskPlan:
    path: PathName
    inputs: tuple[InputPlan, ...]
    reason: str
    text_tokens: int = 0  # approximate tokens of the question and instructions
    limits: AskLimits = field(default_factory=AskLimits)
    payload: AskPayload = ASSUMED_PAYLOAD  # how videos are sent (what the estimates assume)

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

    @property
    def note(self) -> str | None:
        """Said when the estimate rests on an assumed server flavour."""
        if not self.payload.assumed:
            return None
        return (f"server flavour unknown without contacting the server: assumed {self.payload.flavour} "
                f"({self.payload.mode} mode); choose with --server vllm|generic|dashscope-compat and "
                "--mode video|frames (a generic OpenAI-compatible server gets one image per frame, "
                "about twice the tokens)")

    def to_text(self) -> str:
        """A human-readable summary (``vidline ask --dry-run``)."""
        n_windows = sum(len(ip.windows) for ip in self.inputs)
        lines = [f"path: {self.path} ({self.reason})"]
        if n_windows:
            lines.append(f"requests: {self.n_requests} ({n_windows} caption windows + 1 final request)")
        else:
            lines.append("requests: 1")
        lines.append(f"payload: {self.payload.describe()}")
        if self.note:
            lines.append(f"note: {self.note}")
        lines.append(f"estimated input tokens: {self.estimated_tokens} (final request ~{self.final_tokens})")
        for ip in self.inputs:
            item = ip.input
            if item.kind == "image":
                h, w = ip.image_size or (item.height, item.width)
                lines.append(f"  {item.path}: image {item.width}x{item.height} -> {w}x{h}, {ip.visual_tokens} tokens")
            elif ip.sampling is not None:
                sp = ip.sampling
                lines.append(f"  {item.path}: video {item.duration:.1f} s -> {sp.n_frames} frames at {sp.fps:.2f} fps, "
                             f"{sp.width}x{sp.height}, {ip.visual_tokens} tokens")
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
            **self.payload.to_dict(),
            "note": self.note,
            "inputs": [ip.to_dict() for ip in self.inputs],
        }


def fit_plan(
    start: float,
    end: float,
    make_budget: Callable[[int], SamplingBudget],
    max_tokens: int,
    item: MediaInput,
    payload: AskPayload,
) -> tuple[SamplingBudget, SamplingPlan, int]:
    """(budget, plan, tokens as sent) of ``[start, end)`` with the most frames whose tokens *as sent*
    fit ``max_tokens``.

    ``plan_sampling`` caps a clip by Qwen's video formula (``SamplingBudget.max_tokens``); the payload
    can cost more (a generic server's image list: no temporal merge, about twice as much) or slightly
    else (vision markers, even frame counts, DashScope's 4-frame minimum). So the budget's cap is the
    largest one whose plan fits once counted as sent (the plan grows with the cap: a binary search).
    The budget reproduces the plan (the sampler plans again from it). When even the smallest plan
    (the ``min_fps`` floor) does not fit, that one is returned and the caller sees it is over."""

    def attempt(cap: int) -> tuple[SamplingBudget, SamplingPlan, int]:
        budget = make_budget(cap)
        sp = plan_sampling(start, end, budget, src_width=item.width, src_height=item.height, src_fps=item.fps)
        return budget, sp, payload.video_tokens(sp.n_frames, sp.height, sp.width)

    max_tokens = max(1, max_tokens)
    best = attempt(max_tokens)
    if best[2] <= max_tokens:
        return best
    lo, hi = 1, max_tokens - 1
    best = attempt(lo)
    if best[2] > max_tokens:
        return best
    while lo < hi:  # invariant: attempt(lo) fits
        mid = (lo + hi + 1) // 2
        got = attempt(mid)
        if got[2] <= max_tokens:
            lo, best = mid, got
        else:
            hi = mid - 1
    return best


def plan_ask(
    inputs: Sequence[MediaInput],
    limits: AskLimits = AskLimits(),
    *,
    strategy: Strategy = "auto",
    text: str = "",
    payload: AskPayload = ASSUMED_PAYLOAD,
) -> AskPlan:
    """Decide single vs map-reduce for ``inputs`` and plan every request (see the module docstring).

    ``payload`` says how videos will be sent (server flavour and mode): tokens are counted that way."""
    if not inputs:
        raise ConfigError("nothing to ask about: give at least one video or image")
    if strategy not in ("auto", "single", "map-reduce"):
        raise ConfigError(f"unknown strategy {strategy!r}: choose auto, single or map-reduce")
    for item in inputs:
        problem = aspect_problem(item.width, item.height, "frames" if item.kind == "video" else "pixels")
        if problem is not None:
            raise UnsupportedVideoError(item.path, problem)
    text_tokens = approx_text_tokens(text) + 60
    image_plans: dict[int, InputPlan] = {}
    for i, item in enumerate(inputs):
        if item.kind == "image":
            h, w = image_size_for(item.height, item.width)
            image_plans[i] = InputPlan(item, image_size=(h, w), visual_tokens=payload.image_tokens(h, w))
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
            budget, sp, tokens = fit_plan(0.0, item.duration, limits.single_budget, share, item, payload)
            single[i] = InputPlan(item, sampling=sp, budget=budget, visual_tokens=tokens)
            src_limited = bool(item.fps) and sp.n_frames >= item.duration * (item.fps or 0) - 2
            if limits.max_clip_seconds is not None and item.duration > limits.max_clip_seconds + 1e-6:
                single_ok = False
                reason = (f"{item.path} is {item.duration:.0f} s, longer than one request may cover "
                          f"({limits.max_clip_seconds:.0f} s)")
            elif sp.fps < limits.useful_fps - 1e-9 and not src_limited:
                single_ok = False
                reason = f"{item.path} would get only {sp.fps:.2f} fps in one request (< {limits.useful_fps:g})"
            elif sp.n_frames > limits.max_frames or tokens > max(share, 1):
                single_ok = False
                reason = (f"{item.path} needs {sp.n_frames} frames / {tokens} tokens at "
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
            plans.append(_caption_plan(item, limits, payload))
    return AskPlan(path=path, inputs=tuple(plans), reason=reason, text_tokens=text_tokens, limits=limits,
                   payload=payload)


def _caption_plan(item: MediaInput, limits: AskLimits, payload: AskPayload) -> InputPlan:
    """Map step: the video's caption windows, one budget for all (the sampler decodes them in one pass)
    whose every window fits ``max_visual_tokens`` as sent."""
    windows = plan_windows(item.duration, window=limits.window, overlap=0.0, max_window=limits.max_clip_seconds)
    # windows are equal but for (maybe) the last: size the budget on each distinct length, keep the lowest cap
    caps = []
    for length in sorted({round(w.duration, 6) for w in windows}):
        budget, _sp, _tokens = fit_plan(0.0, length, limits.caption_budget, limits.max_visual_tokens, item, payload)
        caps.append(budget.max_tokens if budget.max_tokens is not None else limits.max_visual_tokens)
    budget = limits.caption_budget(min(caps))
    wplans = tuple(plan_sampling(w.start, w.end, budget, src_width=item.width, src_height=item.height,
                                 src_fps=item.fps) for w in windows)
    tokens = tuple(payload.video_tokens(p.n_frames, p.height, p.width) for p in wplans)
    caption_text = 80 * len(windows)
    return InputPlan(item, budget=budget, windows=tuple(windows), window_plans=wplans,
                     caption_tokens=sum(tokens) + caption_text, window_tokens=tokens)
