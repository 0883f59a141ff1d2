"""``vidline.ask`` / ``describe`` / ``chapters``: free-form questions about videos and images.

The flow (see docs/understand.md):

1. probe every input (videos via ``vidline.media.probe``, images via Pillow);
2. :func:`~vidline.understand.plan.plan_ask` decides *single request* vs *map-reduce*;
3. single: sample each video once (``sample_windows`` over one whole-video window), send videos and
   images with the question in one request;
4. map-reduce: caption every window (clip-relative timestamps) concurrently, through the same window
   cache as ``vidline timeline`` (``vidline.cache.WindowCache``), then rewrite each caption's times to
   absolute ones (:func:`~vidline.understand.times.rewrite_caption_times`) and send one text request
   answering the question from the captions;
5. the final request is streamed (:class:`~vidline.understand.stream.AnswerStream`) or sent whole.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

import numpy as np

from vidline.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    NoVideoStreamError,
    PayloadTooLargeError,
    VideoOpenError,
    VidlineError,
    require_number,
)
from vidline.log import logger
from vidline.models.config import ModelConfig, resolve_model_config
from vidline.types import Usage, VideoInfo, Window
from vidline.understand.chapters import Chapter, normalize_chapters, parse_chapters
from vidline.understand.plan import (
    DEFAULT_MAX_VISUAL_TOKENS,
    AskLimits,
    AskPayload,
    AskPlan,
    InputPlan,
    MediaInput,
    Strategy,
    approx_text_tokens,
    plan_ask,
)
from vidline.understand.stream import AnswerStream
from vidline.understand.times import find_time_references, format_clock, rewrite_caption_times

if TYPE_CHECKING:  # keeps ``import vidline.understand`` light
    from typing_extensions import Unpack

    from vidline.cache import WindowCache
    from vidline.models.base import Backend, ChatRequest, ChatResponse
    from vidline.progress import Progress

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CAPTION_MAX_TOKENS = 512
CAPTION_TASK_VERSION = 1  # bump when the caption request changes (it is part of the cache key)

TIME_INSTRUCTION = (
    "Whenever you say when something happens, give the time as MM:SS (or a range MM:SS-MM:SS) "
    "measured from the start of the video."
)
DESCRIBE_QUESTION = (
    "Describe the content of the whole video in chronological order. Start each part with its time "
    "range (MM:SS-MM:SS) from the start of the video, then say what is seen and what happens."
)
CHAPTERS_QUESTION = (
    "Divide the video into chapters, like YouTube chapters: consecutive parts that each show one scene "
    "or topic, with a short title each. Answer with a JSON list only, in this shape: "
    '[{"start": "MM:SS", "title": "short title"}]. The first chapter starts at 00:00.'
)

Source = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------------
# results


@dataclass
class Caption:
    """One map-step window caption. ``text`` is the model's raw (clip-relative) caption."""

    input: str
    window: Window
    text: str
    time_scale: float = 1.0
    usage: Usage | None = None
    status: str = "ok"  # ok | cached | failed
    error: str | None = None

    @property
    def absolute_text(self) -> str:
        """The caption with every time rewritten to seconds of the whole video."""
        return rewrite_caption_times(self.text, self.window.start, scale=self.time_scale)

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "window": self.window.index, "start": round(self.window.start, 3),
                "end": round(self.window.end, 3), "status": self.status, "error": self.error,
                "caption": self.absolute_text if self.status != "failed" else None,
                "usage": self.usage.to_dict() if self.usage else None}


class Answer(str):
    """The answer text (a ``str``) with how it was produced; renders clickable times in notebooks."""

    question: str
    path: str
    inputs: list[str]
    usage: Usage | None
    plan: AskPlan | None
    captions: list[Caption]
    complete: bool

    def __new__(cls, text: str, *, question: str = "", path: str = "single", inputs: Sequence[str] = (),
                usage: Usage | None = None, plan: AskPlan | None = None,
                captions: Sequence[Caption] = (), complete: bool = True) -> Answer:
        obj = super().__new__(cls, text)
        obj.question = question
        obj.path = path
        obj.inputs = list(inputs)
        obj.usage = usage
        obj.plan = plan
        obj.captions = list(captions)
        obj.complete = complete
        return obj

    @property
    def text(self) -> str:
        return str.__str__(self)

    @property
    def citations(self) -> list[float]:
        """Every time (seconds) the answer mentions, in order of appearance."""
        return [t for _s, _e, t in find_time_references(self.text)]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "answer": self.text,
            "question": self.question,
            "usage": self.usage.to_dict() if self.usage else None,
            "path": self.path,
            "inputs": self.inputs,
            "complete": self.complete,
            "citations": [round(t, 3) for t in self.citations],
        }
        if self.plan is not None:
            d["estimated_tokens"] = self.plan.estimated_tokens
            d["reason"] = self.plan.reason
        if self.captions:
            d["captions"] = [c.to_dict() for c in self.captions]
        return d

    def to_html(self) -> str:
        video = next((p for p in self.inputs if Path(p).suffix.lower() not in IMAGE_EXTENSIONS), None)
        duration = None
        if self.plan is not None:
            duration = max((ip.input.duration for ip in self.plan.inputs), default=None) or None
        body = linkify(self.text, video, max_time=duration)
        q = f"<p><b>Q:</b> {html.escape(self.question)}</p>" if self.question else ""
        note = "" if self.complete else "<p><b>(incomplete answer)</b></p>"
        return f'<div class="vidline-answer">{q}<div style="white-space: pre-wrap">{body}</div>{note}</div>'

    def _repr_html_(self) -> str:
        return self.to_html()


def linkify(text: str, video: str | None = None, *, max_time: float | None = None) -> str:
    """HTML-escaped ``text`` with each time reference as an ``<a href="VIDEO#t=SECONDS">`` link.

    Uses ``vidline.export.html.linkify_times`` when the export module provides it (the same links as
    the timeline report); otherwise a built-in equivalent.
    """
    try:
        from vidline.export.html import linkify_times, video_href_for
    except ImportError:
        href = Path(video).resolve().as_uri() if video else None
    else:
        return linkify_times(text, video_href_for(video), max_time=max_time)
    out: list[str] = []
    pos = 0
    for start, end, seconds in find_time_references(text):
        if max_time is not None and seconds > max_time + 1e-6:
            continue
        t = f"{seconds:.3f}".rstrip("0").rstrip(".")
        label = html.escape(text[start:end])
        out.append(html.escape(text[pos:start]))
        out.append(f'<a class="t" href="{html.escape(href, quote=True)}#t={t}" data-t="{t}">{label}</a>'
                   if href else f'<span class="t" data-t="{t}">{label}</span>')
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>\n")


# --------------------------------------------------------------------------------------------------
# inputs


@dataclass
class LoadedInput:
    media: MediaInput
    info: VideoInfo | None = None


def probe_input(path: Source) -> LoadedInput:
    """Classify ``path`` as an image (by extension, else by Pillow) or a video (``vidline.probe``)."""
    p = Path(path)
    if not p.exists():
        raise VideoOpenError(p, "no such file")
    if p.is_dir():
        raise VideoOpenError(p, "is a directory")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return LoadedInput(_image_input(p))
    from vidline.media.probe import probe

    try:
        info = probe(p)
    except NoVideoStreamError:
        raise
    except VideoOpenError as exc:
        try:
            return LoadedInput(_image_input(p))
        except VideoOpenError:
            raise exc from None
    media = MediaInput(str(p), "video", info.display_width, info.display_height, info.duration, info.fps or None)
    return LoadedInput(media, info)


def _image_input(p: Path) -> MediaInput:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            w, h = im.size
            if _exif_rotated(im):
                w, h = h, w
    except (UnidentifiedImageError, OSError) as exc:
        raise VideoOpenError(p, "not a video or image file") from exc
    return MediaInput(str(p), "image", w, h)


def _exif_rotated(im: Any) -> bool:
    try:
        return int(im.getexif().get(0x0112, 1)) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - broken EXIF: treat as upright
        return False


def load_image(path: str) -> np.ndarray:
    """An upright RGB array of the image, resized by Qwen's image rule."""
    from PIL import Image, ImageOps

    from vidline.media.plan import image_size_for

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        h, w = image_size_for(im.height, im.width)
        if (w, h) != im.size:
            im = im.resize((w, h), Image.Resampling.BICUBIC)
        return np.asarray(im)


def _as_list(inputs: Source | Iterable[Source]) -> list[Source]:
    if isinstance(inputs, (str, os.PathLike)):
        return [inputs]
    return list(inputs)


# --------------------------------------------------------------------------------------------------
# options


@dataclass
class AskOptions:
    strategy: Strategy = "auto"
    window: float | None = None
    useful_fps: float | None = None
    caption_fps: float | None = None
    max_visual_tokens: int | None = None
    max_frames: int | None = None
    concurrency: int | None = None
    cache: bool | str | os.PathLike[str] = True


def _resolve_config(config: ModelConfig | None, *, max_tokens: int | None, system_prompt: str | None,
                    lang: str | None, concurrency: int | None) -> ModelConfig:
    if config is None:
        config = resolve_model_config("auto")
        if config is None:
            raise ConfigError(
                "no model configured: pass config=ModelConfig(...) or set OPENAI_BASE_URL/OPENAI_API_KEY "
                "(vLLM, DashScope compatible mode) or DASHSCOPE_API_KEY")
    changes: dict[str, object] = {}
    if max_tokens is not None:
        changes["max_tokens"] = int(max_tokens)
    if system_prompt is not None:
        changes["system_prompt"] = system_prompt
    if lang is not None:
        changes["language"] = lang
    if concurrency is not None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        changes["concurrency"] = int(concurrency)
    return config.with_(**changes) if changes else config


# tokens of a request that are not its media: system prompt, question, instructions, chat template
TEXT_ALLOWANCE = 512


def _limits(config: ModelConfig | None, opts: AskOptions, mode: str | None,
            context_length: int | None = None, question: str = "") -> AskLimits:
    """The plan's limits; with the server's ``context_length`` (vLLM's ``max_model_len``) the visual
    tokens of one request are capped so that it, its text (the question and system prompt counted,
    plus ``TEXT_ALLOWANCE`` for instructions and the chat template) and the answer fit the server's
    context. ConfigError when the text alone does not."""
    visual = opts.max_visual_tokens
    if context_length and config is not None:
        text = approx_text_tokens(question) + approx_text_tokens(config.system_prompt or "")
        room = context_length - config.max_tokens - TEXT_ALLOWANCE - text
        if room <= 0:
            raise ConfigError(f"the question and system prompt (~{text} tokens) leave no room for the video in the "
                              f"server's context of {context_length} tokens with a {config.max_tokens}-token answer: "
                              "shorten them, or lower --max-tokens")
        visual = min(visual or DEFAULT_MAX_VISUAL_TOKENS, room)
    return AskLimits.for_backend(
        config.backend if config else None, mode,
        window=opts.window, useful_fps=opts.useful_fps, caption_fps=opts.caption_fps,
        max_visual_tokens=visual, max_frames=opts.max_frames,
    )


def _question_text(question: str, plan: AskPlan, *, lang: str | None) -> str:
    lines = [question.strip()]
    if any(ip.input.kind == "video" for ip in plan.inputs):
        lines.append(TIME_INSTRUCTION)
    if len(plan.inputs) > 1:
        lines.append("Refer to the inputs by their numbers (Video 1, Image 2, ...).")
    from vidline.models.prompts import language_name

    name = language_name(lang)
    if name:
        lines.append(f"Answer in {name}.")
    return "\n".join(lines)


def _system(config: ModelConfig) -> str | None:
    from vidline.models.prompts import system_prompt_for

    return system_prompt_for(config.language, config.system_prompt)


# --------------------------------------------------------------------------------------------------
# dry run


def dry_run(
    inputs: Source | Iterable[Source],
    question: str = "",
    *,
    config: ModelConfig | None = None,
    strategy: Strategy = "auto",
    window: float | None = None,
    useful_fps: float | None = None,
    caption_fps: float | None = None,
    max_visual_tokens: int | None = None,
    max_frames: int | None = None,
) -> AskPlan:
    """The plan :func:`ask` would follow (path, requests, token estimate); contacts no server.

    Tokens are counted as the payload will be sent to the configured server. When its flavour cannot
    be known without contacting it (``server="auto"`` and a URL that does not say), a vLLM server is
    assumed and the plan says so (``plan.payload.assumed``, ``plan.note``); ``ModelConfig(server=...,
    mode=...)`` (``--server`` / ``--mode``) choose."""
    if config is None:
        config = resolve_model_config("auto")
    opts = AskOptions(strategy=strategy, window=window, useful_fps=useful_fps, caption_fps=caption_fps,
                      max_visual_tokens=max_visual_tokens, max_frames=max_frames)
    loaded = [probe_input(p) for p in _as_list(inputs)]
    payload = AskPayload.for_config(config)
    return plan_ask([x.media for x in loaded], _limits(config, opts, payload.mode if config else None),
                    strategy=strategy, text=question, payload=payload)


# --------------------------------------------------------------------------------------------------
# the engine


class _Run:
    def __init__(self, loaded: list[LoadedInput], question: str, config: ModelConfig, opts: AskOptions,
                 backend: Backend | None = None) -> None:
        from vidline.models import make_backend
        from vidline.models.base import detect_server

        self.loaded = loaded
        self.question = question
        self.config = config
        self.opts = opts
        self.backend: Backend = backend if backend is not None else make_backend(config)
        detect_server(self.backend)  # the plan counts tokens as the payload for this server is sent
        self.payload = AskPayload.for_backend(self.backend)
        self.mode = self.payload.mode
        limits = _limits(config, opts, self.mode, self.backend.context_length(), question)
        self.plan = plan_ask([x.media for x in loaded], limits,
                             strategy=opts.strategy, text=question, payload=self.payload)
        if opts.strategy == "auto" and self.plan.path == "single" and _one_clock_for_several(self.plan):
            # one clock for the whole request (vLLM's per-request fps, DashScope compatible mode's frame
            # lists) cannot time videos sampled at different rates: each is captioned on its own clock
            mapped = plan_ask([x.media for x in loaded], limits, strategy="map-reduce", text=question,
                              payload=self.payload)
            self.plan = replace(mapped, reason="several videos at different frame rates on a server that keeps "
                                               "one clock per request: each video is captioned on its own")
        self.captions: list[Caption] = []
        self.map_usage = Usage()

    # -- single --------------------------------------------------------------------------------
    def single_request(self) -> ChatRequest:
        from vidline.media.sampler import sample_windows
        from vidline.models.base import ChatRequest, ImagePart, TextPart, VideoPart

        parts: list[TextPart | ImagePart | VideoPart] = []
        many = len(self.plan.inputs) > 1
        for k, (ip, item) in enumerate(zip(self.plan.inputs, self.loaded, strict=True), 1):
            name = Path(ip.input.path).name
            if ip.input.kind == "image":
                if many:
                    parts.append(TextPart(f"Image {k} ({name}):"))
                parts.append(ImagePart(load_image(ip.input.path)))
                continue
            assert ip.budget is not None and item.info is not None
            if many:
                parts.append(TextPart(f"Video {k} ({name}, {format_clock(ip.input.duration)} long):"))
            whole = Window(0, 0.0, ip.input.duration)
            wf = next(iter(sample_windows(ip.input.path, [whole], ip.budget, info=item.info)))
            parts.append(VideoPart(frames=list(wf.frames), fps=wf.fps, origin=0.0))
        parts.append(TextPart(_question_text(self.question, self.plan, lang=self.config.language)))
        return ChatRequest(parts=parts, system=_system(self.config), max_tokens=self.config.max_tokens)

    # -- map -----------------------------------------------------------------------------------
    def run_map(self, progress: Progress) -> None:
        # captions do not depend on the user's system prompt, language or answer budget, so they are
        # shared between questions (and the cache key says so)
        caption_config = self.config.with_(system_prompt=None, language=None, max_tokens=CAPTION_MAX_TOKENS)
        cap_backend = self.backend
        cache = self._cache()
        for ip, item in zip(self.plan.inputs, self.loaded, strict=True):
            if ip.windows:
                progress.add_total(len(ip.windows))
                self.captions += self._caption_video(ip, item, cap_backend, caption_config, cache, progress)
        failed = [c for c in self.captions if c.status == "failed"]
        if failed:
            first = failed[0]
            raise MapStepError(
                f"{len(failed)} of {len(self.captions)} caption windows failed (first: window {first.window.index} "
                f"[{format_clock(first.window.start)}-{format_clock(first.window.end)}]: {first.error}); "
                "the captions that worked are cached: re-run to retry only the failed windows",
                failed=failed)
        self.map_usage = sum((c.usage for c in self.captions if c.usage and c.status == "ok"), Usage())

    def _cache(self) -> WindowCache | None:
        from vidline.cache import WindowCache, resolve_cache_dir

        root = resolve_cache_dir(self.opts.cache)
        return WindowCache(root) if root is not None else None

    def _caption_video(self, ip: InputPlan, item: LoadedInput, backend: Backend, cfg: ModelConfig,
                       cache: WindowCache | None, progress: Progress) -> list[Caption]:
        from vidline.cache import CachedAnswer, cache_key, video_fingerprint
        from vidline.media.sampler import sample_windows
        from vidline.models.base import ChatRequest, TextPart, VideoPart, keyed_model
        from vidline.models.payload import PAYLOAD_VERSION
        from vidline.models.prompts import PROMPT_VERSION, caption_prompt

        assert item.info is not None and ip.budget is not None
        path = ip.input.path
        results: dict[int, Caption] = {}
        prompts = {w.index: caption_prompt(duration=w.duration) for w in ip.windows}
        identity = {**cfg.identity(), "model": keyed_model(backend, cfg.model), "task": "caption",
                    "task_version": CAPTION_TASK_VERSION, "prompt_version": PROMPT_VERSION,
                    "payload_version": PAYLOAD_VERSION}
        keys: dict[int, str] = {}
        if cache is not None:
            fp = video_fingerprint(path, item.info.duration)
            for w, p in zip(ip.windows, ip.window_plans, strict=True):
                keys[w.index] = cache_key(fingerprint=fp, start=w.start, end=w.end, fps=p.fps, width=p.width,
                                          height=p.height, n_frames=p.n_frames, mode=self.mode,
                                          identity=identity, prompt=prompts[w.index])
                hit = cache.get(keys[w.index])
                if hit is not None:
                    results[w.index] = Caption(path, w, hit.text, hit.time_scale, hit.usage, status="cached")
                    progress.advance(status="cached")
        missing = [w for w in ip.windows if w.index not in results]
        if missing:
            logger.info("%s: captioning %d of %d windows", path, len(missing), len(ip.windows))
            concurrency = max(1, cfg.concurrency)
            gate = threading.BoundedSemaphore(concurrency + 2)
            stop = threading.Event()
            fatal: list[BaseException] = []
            lock = threading.Lock()

            def work(wf: Any) -> None:
                w: Window = wf.window
                try:
                    if stop.is_set():
                        return
                    req = ChatRequest(parts=[VideoPart(frames=list(wf.frames), fps=wf.fps, origin=w.start),
                                             TextPart(prompts[w.index])], max_tokens=CAPTION_MAX_TOKENS)
                    del wf
                    resp = _chat_fitting(backend, req, "caption windows")
                except AuthenticationError as exc:
                    with lock:
                        fatal.append(exc)
                    stop.set()
                    return
                except VidlineError as exc:
                    cap = Caption(path, w, "", status="failed", error=str(exc))
                    with lock:
                        results[w.index] = cap
                    progress.advance(status="failed")
                    return
                if cache is not None:
                    cache.put(keys[w.index], CachedAnswer(text=resp.text, usage=resp.usage,
                                                          time_scale=resp.time_scale))
                with lock:
                    results[w.index] = Caption(path, w, resp.text, resp.time_scale, resp.usage)
                u = resp.usage
                progress.advance(tokens=(u.prompt_tokens + u.completion_tokens) if u else 0)

            pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="vidline-caption")
            futures: list[Future[None]] = []
            try:
                for wf in sample_windows(path, missing, ip.budget, info=item.info):
                    gate.acquire()
                    if stop.is_set():
                        gate.release()
                        break
                    fut = pool.submit(work, wf)
                    fut.add_done_callback(lambda _f: gate.release())
                    futures.append(fut)
                    del wf
                for fut in futures:
                    fut.result()
            except BaseException:
                stop.set()
                cancel = getattr(backend, "cancel", None)
                if callable(cancel):  # Ctrl-C stops sending: no retry of a failing caption window either
                    cancel()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            if fatal:
                raise fatal[0]
        out = []
        for w in ip.windows:
            out.append(results.get(w.index) or Caption(path, w, "", status="failed", error="window was not decoded"))
        return out

    # -- reduce --------------------------------------------------------------------------------
    def reduce_request(self) -> ChatRequest:
        from vidline.models.base import ChatRequest, ImagePart, TextPart, VideoPart

        parts: list[TextPart | ImagePart | VideoPart] = []
        many = len(self.plan.inputs) > 1
        intro = ("Below are timestamped captions of consecutive parts of the video"
                 + ("s" if sum(ip.input.kind == "video" for ip in self.plan.inputs) > 1 else "")
                 + ", written by someone who watched them. All times are MM:SS from the start of the video.")
        parts.append(TextPart(intro))
        for k, ip in enumerate(self.plan.inputs, 1):
            name = Path(ip.input.path).name
            if ip.input.kind == "image":
                parts.append(TextPart(f"Image {k} ({name}):"))
                parts.append(ImagePart(load_image(ip.input.path)))
                continue
            label = f"Video {k} ({name}" if many else f"Video ({name}"
            lines = [f"{label}, {format_clock(ip.input.duration)} long):"]
            for c in self.captions:
                if c.input != ip.input.path:
                    continue
                lines.append(f"[{format_clock(c.window.start)}-{format_clock(c.window.end)}]")
                lines.append(c.absolute_text.strip() or "(nothing notable)")
            parts.append(TextPart("\n".join(lines)))
        question = _question_text(self.question, self.plan, lang=self.config.language)
        parts.append(TextPart("Question: " + question + "\nAnswer from the captions above."))
        return ChatRequest(parts=parts, system=_system(self.config), max_tokens=self.config.max_tokens)

    def inputs(self) -> list[str]:
        return [ip.input.path for ip in self.plan.inputs]

    def answer(self, text: str, usage: Usage | None, *, complete: bool = True) -> Answer:
        total = self.map_usage + usage if usage else (self.map_usage if self.captions else None)
        return Answer(text, question=self.question, path=self.plan.path, inputs=self.inputs(), usage=total,
                      plan=self.plan, captions=self.captions, complete=complete)


def _text_argument(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{name} is not valid UTF-8 text (undecodable bytes from the terminal?)") from None
    return value


def _check_ask_arguments(question: object, *, system_prompt: object, max_tokens: object, window: object,
                         useful_fps: object, caption_fps: object, max_visual_tokens: object, max_frames: object,
                         concurrency: object, cache: object) -> None:
    """ConfigError naming the argument, before anything is probed, decoded or sent."""
    if not _text_argument("question", question).strip():
        raise ConfigError("the question is empty")
    if system_prompt is not None:
        _text_argument("system_prompt", system_prompt)
    for name, value, rule in (("max_tokens", max_tokens, {"minimum": 1, "integer": True}),
                              ("max_visual_tokens", max_visual_tokens, {"minimum": 1, "integer": True}),
                              ("max_frames", max_frames, {"minimum": 2, "integer": True}),
                              ("concurrency", concurrency, {"minimum": 1, "integer": True}),
                              ("window", window, {"above": 0}), ("useful_fps", useful_fps, {"above": 0}),
                              ("caption_fps", caption_fps, {"above": 0})):
        if value is not None:
            require_number(name, value, **rule)  # type: ignore[arg-type]
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise ConfigError(f"cache must be True, False or a directory, got {cache!r}")


def _chat_fitting(backend: Backend, request: ChatRequest, what: str) -> ChatResponse:
    """``backend.chat(request)``; after a 413 (request too large: a proxy's body limit) once more with
    a smaller payload (``smaller_request``), as timeline windows are."""
    from vidline.models.window import say_shrinking_once, smaller_request

    try:
        return backend.chat(request)
    except PayloadTooLargeError as exc:
        say_shrinking_once(backend, what, exc)
        return backend.chat(smaller_request(request))


def _one_clock_for_several(plan: AskPlan) -> bool:
    """Whether ``plan`` sends several videos, sampled at different rates, in a payload whose clock is
    one for the whole request."""
    if not _differ([ip.sampling.fps for ip in plan.inputs if ip.sampling is not None]):
        return False
    p = plan.payload
    return (p.mode == "frames" and p.flavour in ("vllm", "dashscope-compat")) or (
        p.flavour == "vllm" and not p.media_io_fps)


def _mixed_clocks(backend: Backend) -> bool:
    """Whether the last request's videos ended up on different clocks (a server fallback during the
    request: vLLM refusing per-request fps retimes every video by its own rate)."""
    return _differ(tuple(getattr(backend, "last_time_scales", ()) or ()))


def _differ(values: Sequence[float]) -> bool:
    """Whether positive ``values`` (frame rates, time scales) differ by more than 1 %: one clock
    cannot time them all."""
    return len(values) > 1 and max(values) > 1.01 * min(values)


class MapStepError(BackendError):
    """Some caption windows failed after their retries; the answer would be partial, so none is given."""

    def __init__(self, message: str, *, failed: Sequence[Caption] = ()) -> None:
        super().__init__(message, retryable=False)
        self.failed = list(failed)


class AskStream(AnswerStream):
    """``ask(..., stream=True)``: iterate for text chunks; ``answer`` is the :class:`Answer` once complete."""

    answer: Answer | None = None


# --------------------------------------------------------------------------------------------------
# public API


class AskKeywords(TypedDict, total=False):
    """The keyword options of :func:`ask` besides ``config`` and ``stream`` (for its typed overloads)."""

    max_tokens: int | None
    system_prompt: str | None
    lang: str | None
    strategy: Strategy
    window: float | None
    useful_fps: float | None
    caption_fps: float | None
    max_visual_tokens: int | None
    max_frames: int | None
    concurrency: int | None
    cache: bool | str | os.PathLike[str]
    progress: bool | Progress
    on_restart: Callable[[str], None] | None
    on_retry: Callable[[int, BaseException], None] | None
    backend: Backend | None


@overload
def ask(inputs: Source | Iterable[Source], question: str, *, config: ModelConfig | None = None,
        stream: Literal[False] = False, **options: Unpack[AskKeywords]) -> Answer: ...


@overload
def ask(inputs: Source | Iterable[Source], question: str, *, config: ModelConfig | None = None,
        stream: Literal[True], **options: Unpack[AskKeywords]) -> AskStream: ...


@overload
def ask(inputs: Source | Iterable[Source], question: str, *, config: ModelConfig | None = None,
        stream: bool = False, **options: Unpack[AskKeywords]) -> Answer | AskStream: ...


def ask(
    inputs: Source | Iterable[Source],
    question: str,
    *,
    config: ModelConfig | None = None,
    stream: bool = False,
    max_tokens: int | None = None,
    system_prompt: str | None = None,
    lang: str | None = None,
    strategy: Strategy = "auto",
    window: float | None = None,
    useful_fps: float | None = None,
    caption_fps: float | None = None,
    max_visual_tokens: int | None = None,
    max_frames: int | None = None,
    concurrency: int | None = None,
    cache: bool | str | os.PathLike[str] = True,
    progress: bool | Progress = False,
    on_restart: Callable[[str], None] | None = None,
    on_retry: Callable[[int, BaseException], None] | None = None,
    backend: Backend | None = None,
) -> Answer | AskStream:
    """Answer ``question`` about one or more videos and/or images.

    Returns an :class:`Answer` (a ``str`` with ``usage``, ``path``, ``captions``...), or with
    ``stream=True`` an :class:`AskStream` yielding text chunks as the model writes them (its
    ``answer`` attribute holds the :class:`Answer` once the stream completed). Long videos go through
    map-reduce (captions per window, cached like timeline windows, then one final request); see
    docs/understand.md for the rule. Raises :class:`~vidline.understand.stream.IncompleteAnswerError`
    when a stream breaks and cannot be completed, and :class:`MapStepError` when caption windows fail.
    """
    _check_ask_arguments(question, system_prompt=system_prompt, max_tokens=max_tokens, window=window,
                         useful_fps=useful_fps, caption_fps=caption_fps, max_visual_tokens=max_visual_tokens,
                         max_frames=max_frames, concurrency=concurrency, cache=cache)
    config = _resolve_config(config, max_tokens=max_tokens, system_prompt=system_prompt, lang=lang,
                             concurrency=concurrency)
    opts = AskOptions(strategy=strategy, window=window, useful_fps=useful_fps, caption_fps=caption_fps,
                      max_visual_tokens=max_visual_tokens, max_frames=max_frames, cache=cache)
    loaded = [probe_input(p) for p in _as_list(inputs)]
    if not loaded:
        raise ConfigError("nothing to ask about: give at least one video or image")
    run = _Run(loaded, question, config, opts, backend)
    logger.info("ask: %s path (%s); ~%d tokens", run.plan.path, run.plan.reason, run.plan.estimated_tokens)

    def mapped(current: _Run) -> tuple[_Run, ChatRequest]:
        """``current`` through its map step: the run and its final (reduce) request."""
        from vidline.progress import Progress

        reporter = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress), desc="captions")
        try:
            current.run_map(reporter)
        finally:
            if reporter is not progress:
                reporter.close()
        return current, current.reduce_request()

    def as_map_reduce() -> tuple[_Run, ChatRequest]:
        """The question again, map-reduce: the single request's videos came back on different clocks."""
        logger.warning("the server timed the videos of one request by different clocks (it refused per-request "
                       "fps): asking again from per-video captions, so that every time cited is right")
        return mapped(_Run(loaded, question, config, replace(opts, strategy="map-reduce"), run.backend))

    if run.plan.path == "map-reduce":
        run, request = mapped(run)
    else:
        request = run.single_request()
    if stream:
        holder: list[AskStream] = []
        current = [run]

        def done(text: str) -> None:
            usage = getattr(run.backend, "last_usage", None)
            holder[0].answer = current[0].answer(text, usage if isinstance(usage, Usage) else None)

        def fallback() -> Iterator[str]:
            current[0], reduce = as_map_reduce()
            return current[0].backend.chat_stream(reduce)

        s = AskStream(lambda: _rescaled_stream(run.backend, request, single=run.plan.path == "single",
                                               fallback=fallback),
                      retry=config.retry, on_restart=on_restart, on_complete=done, on_retry=on_retry)
        holder.append(s)
        return s
    resp = _chat_fitting(run.backend, request, "the question's request")
    text = resp.text
    if run.plan.path == "single" and _mixed_clocks(run.backend):
        run, request = as_map_reduce()
        resp = _chat_fitting(run.backend, request, "the question's request")
        text = resp.text
    elif run.plan.path == "single" and abs(resp.time_scale - 1.0) > 1e-6:
        text = rewrite_caption_times(text, 0.0, scale=resp.time_scale)
    return run.answer(text, resp.usage)


def _rescaled_stream(backend: Backend, request: ChatRequest, *, single: bool,
                     fallback: Callable[[], Iterator[str]] | None = None) -> Iterator[str]:
    """``backend.chat_stream`` whose times are real seconds.

    When the server keeps its own clock for the media (``last_time_scale`` != 1, e.g. vLLM without
    per-request fps), times in the text need rescaling; a time can be split across deltas, so the
    answer is then collected and yielded once, rewritten, instead of streamed piece by piece. When the
    videos of one request came back on different clocks, no rescale fits the answer: it is dropped
    unseen and ``fallback`` (map-reduce) streams the answer instead.
    """
    deltas = backend.chat_stream(request)
    try:
        first = next(deltas, None)  # the payload is built (and the scale known) before the first delta
    except PayloadTooLargeError as exc:
        from vidline.models.window import say_shrinking_once, smaller_request

        say_shrinking_once(backend, "the question's request", exc)
        deltas = backend.chat_stream(smaller_request(request))
        first = next(deltas, None)
    if single and fallback is not None and _mixed_clocks(backend):
        close = getattr(deltas, "close", None)
        if callable(close):
            close()
        yield from fallback()
        return
    scale = backend.last_time_scale
    if single and abs(scale - 1.0) > 1e-6:
        text = (first or "") + "".join(deltas)
        yield rewrite_caption_times(text, 0.0, scale=scale)
        return
    if first is not None:
        yield first
    yield from deltas


def _one_video(path: object, what: str) -> Source:
    """``path`` when it is one video file; ConfigError (``ask`` takes several inputs and images)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"{what}() takes one video path, got {type(path).__name__}: use ask() for several inputs")
    if probe_input(path).media.kind != "video":
        raise ConfigError(f"{path}: {what}() needs a video, not an image: use ask() for images")
    return path


def describe(path: Source, *, config: ModelConfig | None = None, stream: bool = False,
             **options: Any) -> Answer | AskStream:
    """A description of the whole video in chronological order, with MM:SS timestamps."""
    return ask([_one_video(path, "describe")], DESCRIBE_QUESTION, config=config, stream=stream, **options)


def chapters(path: Source, *, config: ModelConfig | None = None, min_length: float | None = None,
             **options: Any) -> list[Chapter]:
    """Chapter marks for the video: ordered, first at 0, each ending where the next starts."""
    if min_length is not None:
        require_number("min_length", min_length, minimum=0)
    options.pop("stream", None)
    answer = ask([_one_video(path, "chapters")], CHAPTERS_QUESTION, config=config, stream=False, **options)
    assert isinstance(answer, Answer)
    duration = next((ip.input.duration for ip in answer.plan.inputs), 0.0) if answer.plan else 0.0
    return chapters_from_text(answer.text, duration, min_length=min_length)


def chapters_from_text(text: str, duration: float, *, min_length: float | None = None) -> list[Chapter]:
    """Parse a model's chapter answer (JSON or ``00:00 Title`` lines) and normalise it."""
    return normalize_chapters(parse_chapters(text), duration, min_length=min_length)

