"""A local stand-in for vLLM / DashScope that really looks at the frames it receives.

Speaks ``GET /v1/models``, ``POST /v1/chat/completions`` (also under ``/compatible-mode/v1``) with
and without SSE streaming, and DashScope's native
``POST /api/v1/services/aigc/multimodal-generation/generation`` with and without SSE. It decodes
JPEG/PNG and mp4 data URLs, detects the coloured markers drawn by ``vidline.synth`` and answers
with the intervals it saw, in clip-relative seconds, as a real Qwen-VL would. Faults (401, 413, 429,
5xx, latency, dropped streams, context limit) are injectable. See docs/parsing.md.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.refserver import answers
from tests.refserver.media import (
    MediaError,
    MediaItem,
    Sample,
    b64decode,
    clip_rate,
    decode_image,
    decode_mp4,
    image_tokens,
    resample_mp4,
    split_data_url,
    text_tokens,
    timestamp_in_text,
    video_tokens,
)

DASHSCOPE_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
OPENAI_PATHS = {"/v1/chat/completions": "openai", "/compatible-mode/v1/chat/completions": "compat"}
MODELS_PATHS = ("/v1/models", "/compatible-mode/v1/models")
VLLM_MEDIA_IO_MESSAGE = (
    "Per-request media_io_kwargs are disabled by default because they can change multimodal media "
    "loading resource usage. Start the server with --trust-request-mm-kwargs only when clients are trusted."
)
VLLM_MM_PROCESSOR_MESSAGE = (
    "Per-request mm_processor_kwargs are disabled by default because they can change multimodal "
    "preprocessing resource usage. Start the server with --trust-request-mm-kwargs only when clients "
    "are trusted."
)
QWEN_DEFAULT_FPS = 2.0
COMPAT_FRAME_SPACING = 0.5
DASHSCOPE_MIN_FRAMES, DASHSCOPE_MAX_FRAMES = 4, 512

_FAULT_DEFAULTS: dict[str, Any] = {
    "latency": 0.0,
    "fail_rate": 0.0,
    "max_body_bytes": None,
    "rate_limit_first": 0,
    "retry_after": 0.1,
    "drop_stream_after": None,
    "stream_error_after": None,
    "context_limit": None,
    "chunk_delay": 0.0,
}
_SETTABLE = set(_FAULT_DEFAULTS) | {
    "api_key", "model", "trust_mm_kwargs", "styles", "strict_model", "jpeg_list_fps", "strict_vllm",
    "enforce_frame_limits",
}  # fmt: skip


@dataclass
class RecordedRequest:
    """What arrived at the server, and what it did about it (one per HTTP request)."""

    method: str
    path: str
    api: str  # "openai" | "compat" | "dashscope" | "models" | "other"
    status: int = 0
    model: str | None = None
    stream: bool = False
    body_bytes: int = 0
    headers: dict[str, str] = field(default_factory=dict)  # Authorization value replaced by "***"
    n_frames: int = 0  # video frames the model looked at (after any resampling), all videos
    n_images: int = 0
    fps_used: float | None = None  # the clock of the first video (None: no video, or text timestamps)
    time_source: str | None = None  # "pts" | "fps" | "default" | "text" | "none" (first visual item)
    media: list[str] = field(default_factory=list)  # sources, e.g. "openai.video_url.mp4"
    frame_times: list[float] = field(default_factory=list)  # clip times the model believed, all items
    frame_size: tuple[int, int] | None = None  # (width, height) received, first visual item
    prompt: str = ""  # all user text parts joined with newlines (timestamp parts excluded)
    system: str | None = None
    json_mode: bool = False
    media_io_kwargs: dict[str, Any] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # max_tokens, temperature, seed, ...
    kind: str | None = None  # "timeline" | "freeform" | "images" | "text"
    intervals: list[tuple[str, float, float]] = field(default_factory=list)  # what it saw
    answer: str | None = None
    style: str | None = None
    prompt_tokens: int = 0
    visual_tokens: int = 0  # Qwen visual tokens of everything received (videos + images)
    image_tokens: int = 0  # the images' share of visual_tokens
    completion_tokens: int = 0
    chunks_sent: int = 0
    fault: str | None = (
        None  # "auth" | "too_large" | "rate_limit" | "server_error" | "dropped" | "context" | ...
    )
    error: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    refserver: RefServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients that hang up (timeouts, dropped streams under test) are expected: no traceback noise
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class RefServer:
    """The reference server. Starts serving on 127.0.0.1 (free port) when constructed.

    Use as a context manager or call :meth:`stop`. All settings can be changed between requests
    with :meth:`configure`; :meth:`reset` clears the request log, counters and faults.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "sk-test",
        model: str = "qwen2.5-vl-ref",
        latency: float = 0.0,
        fail_rate: float = 0.0,
        seed: int = 0,
        max_body_bytes: int | None = None,
        rate_limit_first: int = 0,
        retry_after: float | None = 0.1,
        trust_mm_kwargs: bool = True,
        styles: Sequence[str] | None = None,
        drop_stream_after: int | None = None,
        stream_error_after: int | None = None,
        context_limit: int | None = None,
        chunk_delay: float = 0.0,
        strict_model: bool = True,
        strict_vllm: bool = False,
        jpeg_list_fps: float = 1.0,
        enforce_frame_limits: bool = True,
    ) -> None:
        self.api_key = api_key
        self.model = model
        self.latency = latency
        self.fail_rate = fail_rate
        self.seed = seed
        self.max_body_bytes = max_body_bytes
        self.rate_limit_first = rate_limit_first
        self.retry_after = retry_after
        self.trust_mm_kwargs = trust_mm_kwargs
        self.styles: tuple[str, ...] = self._check_styles(styles)
        self.drop_stream_after = drop_stream_after
        self.stream_error_after = stream_error_after
        self.in_flight = 0  # generation requests being handled right now
        self.max_in_flight = 0  # high-water mark of in_flight (for concurrency-limit tests)
        self.context_limit = context_limit
        self.chunk_delay = chunk_delay
        self.strict_model = strict_model
        self.strict_vllm = strict_vllm
        self.jpeg_list_fps = jpeg_list_fps
        self.enforce_frame_limits = enforce_frame_limits
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._generation_count = 0
        self._style_counter = 0
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.refserver = self
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.openai_base_url = self.url + "/v1"
        self.compat_base_url = self.url + "/compatible-mode/v1"
        self.dashscope_base_url = self.url + "/api/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name=f"refserver-{self.port}", daemon=True
        )
        self._thread.start()
        self._stopped = False

    # ---------------------------------------------------------------------------------- control

    @staticmethod
    def _check_styles(styles: Sequence[str] | None) -> tuple[str, ...]:
        if styles is None:
            return answers.STYLES
        if isinstance(styles, str):
            styles = [styles]
        bad = [s for s in styles if s not in answers.STYLES + answers.EXTRA_STYLES]
        if bad or not styles:
            raise ValueError(f"unknown answer styles {bad}; choose from {answers.STYLES}")
        return tuple(styles)

    def configure(self, **settings: Any) -> None:
        """Change faults or settings between requests (latency=, fail_rate=, rate_limit_first=, ...).

        Setting ``rate_limit_first`` restarts its count; setting ``seed`` reseeds the fault RNG."""
        with self._lock:
            for key, value in settings.items():
                if key == "seed":
                    self.seed = value
                    self._rng = random.Random(value)
                    continue
                if key not in _SETTABLE:
                    raise TypeError(f"RefServer.configure() got an unknown setting {key!r}")
                if key == "styles":
                    value = self._check_styles(value)
                if key == "rate_limit_first":
                    self._generation_count = 0
                setattr(self, key, value)

    def reset(self) -> None:
        """Clear the request log, counters and every fault (api_key, model and styles are kept)."""
        with self._lock:
            self.requests.clear()
            for key, value in _FAULT_DEFAULTS.items():
                setattr(self, key, value)
            self._generation_count = 0
            self._style_counter = 0
            self._rng = random.Random(self.seed)
            self.max_in_flight = self.in_flight

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RefServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RefServer({self.url}, model={self.model!r}, {len(self.requests)} requests)"

    # ---------------------------------------------------------------------------------- helpers

    @property
    def generation_requests(self) -> list[RecordedRequest]:
        """Recorded chat/generation requests (not /v1/models)."""
        with self._lock:
            return [r for r in self.requests if r.api in ("openai", "compat", "dashscope")]

    @property
    def last(self) -> RecordedRequest:
        with self._lock:
            return self.requests[-1]

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def _next_style(self) -> str:
        with self._lock:
            style = self.styles[self._style_counter % len(self.styles)]
            self._style_counter += 1
            return style

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _fault_roll(self) -> tuple[str | None, int]:
        """Decide rate limiting / random failure for one generation request."""
        with self._lock:
            n = self._generation_count
            self._generation_count += 1
            if n < self.rate_limit_first:
                return "rate_limit", 429
            if self.fail_rate and self._rng.random() < self.fail_rate:
                return "server_error", self._rng.choice((500, 502, 503))
        return None, 200

    def _snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {k: getattr(self, k) for k in _SETTABLE}


# ------------------------------------------------------------------------------------------------
# request understanding


class BadRequest(Exception):
    def __init__(
        self, message: str, *, status: int = 400, code: str = "InvalidParameter", fault: str | None = None
    ):
        self.status = status
        self.code = code
        self.fault = fault
        super().__init__(message)


@dataclass
class Understood:
    items: list[MediaItem]
    prompt: str
    system: str | None
    labels: list[str] = field(default_factory=list)  # timestamp text parts ("Frame at t=12.50s:"): billed


def _openai_items(body: dict[str, Any], api: str, cfg: dict[str, Any]) -> Understood:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    mio = body.get("media_io_kwargs") or {}
    video_kwargs = mio.get("video", {}) if isinstance(mio, dict) else {}
    fps_override = video_kwargs.get("fps") if isinstance(video_kwargs, dict) else None
    if fps_override is not None:
        try:
            fps_override = float(fps_override)
        except (TypeError, ValueError) as exc:
            raise BadRequest("media_io_kwargs.video.fps must be a number") from exc
        if fps_override <= 0:
            raise BadRequest("media_io_kwargs.video.fps must be positive")
    items: list[MediaItem] = []
    texts: list[str] = []
    labels: list[str] = []
    system: str | None = None
    for msg in messages:
        if not isinstance(msg, dict):
            raise BadRequest("each message must be an object")
        role = msg.get("role")
        content = msg.get("content")
        if role == "system":
            system = (
                content
                if isinstance(content, str)
                else " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
            )
            continue
        if role != "user":
            if isinstance(content, str):
                texts.append(content)
            continue
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise BadRequest("message content must be a string or a list of parts")
        pending_time: float | None = None
        for part in content:
            if not isinstance(part, dict):
                raise BadRequest("each content part must be an object")
            ptype = part.get("type")
            if ptype == "text":
                text = str(part.get("text", ""))
                pending_time = timestamp_in_text(text)
                (texts if pending_time is None else labels).append(text)
                continue
            if ptype == "image_url":
                iu = part.get("image_url")
                url = iu.get("url") if isinstance(iu, dict) else iu
                items.append(_image_item(str(url), "openai.image_url", pending_time))
            elif ptype == "video_url":
                vu = part.get("video_url")
                url = vu.get("url") if isinstance(vu, dict) else vu
                if isinstance(url, list):
                    raise BadRequest("video_url.url must be a string, not a list")
                items.append(_video_url_item(str(url), fps_override, cfg))
            elif ptype == "video":
                if api == "openai" and cfg["strict_vllm"]:
                    raise BadRequest("Unknown part type: video")
                frames = part.get("video")
                if not isinstance(frames, list):
                    raise BadRequest('"video" parts must hold a list of frame URLs')
                items.append(_frame_list_item(frames, "openai.video", COMPAT_FRAME_SPACING, "default", cfg))
            else:
                raise BadRequest(f"Unknown part type: {ptype}")
            pending_time = None
    _finish_image_clock(items)
    return Understood(items, "\n".join(t for t in texts if t.strip()), system, labels)


def _dashscope_items(body: dict[str, Any], cfg: dict[str, Any]) -> Understood:
    inp = body.get("input")
    messages = inp.get("messages") if isinstance(inp, dict) else None
    if not isinstance(messages, list) or not messages:
        raise BadRequest("input.messages must be a non-empty list")
    items: list[MediaItem] = []
    texts: list[str] = []
    labels: list[str] = []
    system: str | None = None
    for msg in messages:
        if not isinstance(msg, dict):
            raise BadRequest("each message must be an object")
        role = msg.get("role")
        content = msg.get("content")
        parts = [{"text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise BadRequest("message content must be a string or a list")
        if role == "system":
            system = " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
            continue
        pending_time: float | None = None
        for part in parts:
            if not isinstance(part, dict):
                raise BadRequest("each content item must be an object")
            if "text" in part:
                text = str(part["text"])
                pending_time = timestamp_in_text(text)
                (texts if pending_time is None else labels).append(text)
                continue
            if "image" in part:
                items.append(_image_item(str(part["image"]), "dashscope.image", pending_time))
            elif "video" in part:
                video = part["video"]
                fps = part.get("fps")
                if fps is not None:
                    try:
                        fps = float(fps)
                    except (TypeError, ValueError) as exc:
                        raise BadRequest("fps must be a number") from exc
                    if not 0.1 <= fps <= 10:
                        raise BadRequest("The fps must be in range [0.1, 10].")
                if isinstance(video, list):
                    spacing = 1.0 / fps if fps else 1.0 / QWEN_DEFAULT_FPS
                    items.append(
                        _frame_list_item(
                            video, "dashscope.video_list", spacing, "fps" if fps else "default", cfg
                        )
                    )
                else:
                    mtype, payload = _data_url(str(video))
                    if not mtype.startswith("video/"):
                        raise BadRequest(f"unsupported video data type {mtype}")
                    items.append(
                        _mp4_item(b64decode(payload), "dashscope.video_mp4", fps or QWEN_DEFAULT_FPS, "pts")
                    )
            else:
                raise BadRequest(f"unsupported content item {sorted(part)}")
            pending_time = None
    _finish_image_clock(items)
    return Understood(items, "\n".join(t for t in texts if t.strip()), system, labels)


def _data_url(url: str) -> tuple[str, str]:
    try:
        return split_data_url(url)
    except MediaError as exc:
        raise BadRequest(str(exc)) from exc


def _image_item(url: str, source: str, t: float | None) -> MediaItem:
    mtype, payload = _data_url(url)
    if not mtype.startswith("image/"):
        raise BadRequest(f"image part has data type {mtype}")
    try:
        labels, w, h = decode_image(b64decode(payload))
    except MediaError as exc:
        raise BadRequest(str(exc)) from exc
    item = MediaItem("image", source, [Sample(t if t is not None else 0.0, labels)], w, h)
    item.time_source = "text" if t is not None else "none"
    item.tokens = image_tokens(h, w)
    return item


def _finish_image_clock(items: list[MediaItem]) -> None:
    """Images without written timestamps, in a list of several: Qwen's default 2 fps spacing."""
    images = [it for it in items if it.kind == "image"]
    if len(images) < 2:
        return
    if all(it.time_source == "none" for it in images):
        for n, it in enumerate(images):
            it.samples[0].t = n / QWEN_DEFAULT_FPS
            it.time_source = "default"
            it.fps_used = QWEN_DEFAULT_FPS
            it.step = 1 / QWEN_DEFAULT_FPS
    elif all(it.time_source == "text" for it in images):
        times = sorted(it.samples[0].t for it in images)
        diffs = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
        step = diffs[len(diffs) // 2] if diffs else 1 / QWEN_DEFAULT_FPS
        for it in images:
            it.step = step


def _video_url_item(url: str, fps_override: float | None, cfg: dict[str, Any]) -> MediaItem:
    mtype, payload = _data_url(url)
    if mtype == "video/jpeg":
        fps = fps_override or cfg["jpeg_list_fps"]
        frames = [f"data:image/jpeg;base64,{p}" for p in payload.split(",") if p]
        item = _frame_list_item(
            frames,
            "openai.video_url.jpeg_list",
            1.0 / fps,
            "fps" if fps_override else "default",
            cfg,
            limits=False,
        )
        return item
    if not mtype.startswith("video/"):
        raise BadRequest(f"video_url has data type {mtype}")
    return _mp4_item(
        b64decode(payload), f"openai.video_url.{mtype.split('/')[1]}", fps_override or QWEN_DEFAULT_FPS, "pts"
    )


def _mp4_item(data: bytes, source: str, fps: float, time_source: str) -> MediaItem:
    try:
        frames, w, h = decode_mp4(data)
    except MediaError as exc:
        raise BadRequest(str(exc)) from exc
    samples = resample_mp4(frames, fps)
    rate = clip_rate(frames)
    if rate and len(samples) == len(frames) and fps > rate:  # every frame kept: the clip's own clock
        fps = rate
    item = MediaItem("mp4", source, samples, w, h, fps_used=fps, time_source=time_source, step=1.0 / fps)
    item.tokens = video_tokens(len(samples), h, w)
    return item


def _frame_list_item(
    urls: list[Any],
    source: str,
    spacing: float,
    time_source: str,
    cfg: dict[str, Any],
    *,
    limits: bool = True,
) -> MediaItem:
    if (
        limits
        and cfg["enforce_frame_limits"]
        and not DASHSCOPE_MIN_FRAMES <= len(urls) <= DASHSCOPE_MAX_FRAMES
    ):
        raise BadRequest(
            f"The number of frames of a video list must be between {DASHSCOPE_MIN_FRAMES} and "
            f"{DASHSCOPE_MAX_FRAMES}, got {len(urls)}."
        )
    samples: list[Sample] = []
    w = h = 0
    for n, url in enumerate(urls):
        mtype, payload = _data_url(str(url))
        if not mtype.startswith("image/"):
            raise BadRequest(f"frame {n} has data type {mtype}")
        try:
            labels, w, h = decode_image(b64decode(payload))
        except MediaError as exc:
            raise BadRequest(str(exc)) from exc
        samples.append(Sample(round(n * spacing, 6), labels))
    item = MediaItem(
        "frames", source, samples, w, h, fps_used=1.0 / spacing, time_source=time_source, step=spacing
    )
    item.tokens = video_tokens(len(samples), h, w)
    return item


# ------------------------------------------------------------------------------------------------
# answering


def _answer(server: RefServer, und: Understood, json_mode: bool, rec: RecordedRequest) -> str:
    prompt = und.prompt
    full_text = "\n".join(x for x in (und.system, prompt) if x)
    query = answers.named_labels(prompt)
    chinese = answers.is_chinese(prompt)
    timeline = answers.wants_timeline(full_text, json_mode)
    only_images = bool(und.items) and all(it.kind == "image" for it in und.items)
    untimed = all(it.time_source in ("none", "default") for it in und.items)
    if only_images and untimed and not timeline:
        rec.kind = "images"
        rec.intervals = []
        return answers.images_answer(und.items, chinese=chinese)
    intervals = answers.intervals_for(und.items) if und.items else answers.intervals_from_text(prompt)
    rec.intervals = [(i.label, i.start, i.end) for i in intervals]
    if query:
        intervals = [i for i in intervals if i.label in query]
    if timeline:
        rec.kind = "timeline"
        style = server._next_style()
        text, used = answers.timeline_answer(intervals, style, query_named=bool(query))
        rec.style = used
        return text
    rec.kind = "freeform" if und.items else "text"
    if not und.items and not rec.intervals:
        return (
            "我没有收到任何视频或图片。"
            if chinese
            else "I did not receive any video or image, and the text mentions no shapes."
        )
    return answers.prose_answer(
        intervals, chinese=chinese, caption_lines=answers.wants_caption_lines(prompt), query=query
    )


# ------------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as real servers (uvicorn) set it: the headers and the body are two writes, and
    # Nagle held the second until the client's delayed ACK (+40 ms per answer on a kept-alive connection)
    disable_nagle_algorithm = True
    server_version = "vidline-refserver/1.0"
    timeout = 60
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
        pass

    @property
    def ref(self) -> RefServer:
        return self.server.refserver

    # ---- plumbing

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        chunks = []
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _headers_for_log(self, api_key: str | None) -> dict[str, str]:
        out = {}
        for k, v in self.headers.items():
            if k.lower() == "authorization" or (api_key and api_key in v):
                v = "***"
            out[k] = v
        return out

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self, api_key: str | None) -> bool:
        if api_key is None:
            return True
        auth = self.headers.get("Authorization", "")
        return auth == f"Bearer {api_key}"

    def _error(
        self,
        api: str,
        status: int,
        message: str,
        *,
        code: str | int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if api == "dashscope":
            body: dict[str, Any] = {
                "code": code or _dashscope_code(status),
                "message": message,
                "request_id": str(uuid.uuid4()),
            }
        else:
            body = {
                "error": {
                    "message": message,
                    "type": _openai_type(status),
                    "param": None,
                    "code": code or status,
                }
            }
        self._send_json(status, body, headers)

    # ---- verbs

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        ref = self.ref
        cfg = ref._snapshot()
        rec = RecordedRequest(
            "GET",
            self.path,
            "models" if self.path.rstrip("/") in MODELS_PATHS else "other",
            headers=self._headers_for_log(cfg["api_key"]),
        )
        ref._record(rec)
        try:
            if cfg["latency"]:
                time.sleep(cfg["latency"])
            if rec.api != "models":
                rec.status = 404
                rec.error = "not found"
                if self.path.startswith("/api/v1/uploads"):
                    rec.error = "file upload attempted (the client sent a local path, not a data URI)"
                    self._error(
                        "dashscope",
                        400,
                        "the reference server does not accept file uploads; send data URIs",
                        code="InvalidParameter",
                    )
                    rec.status = 400
                else:
                    self._error("openai", 404, f"no route for GET {self.path}")
                return
            if not self._authorized(cfg["api_key"]):
                rec.status, rec.fault = 401, "auth"
                self._error("openai", 401, "Incorrect API key provided.", code="invalid_api_key")
                return
            data = [
                {
                    "id": cfg["model"],
                    "object": "model",
                    "created": 1700000000,
                    "owned_by": "vidline-refserver",
                    "root": cfg["model"],
                    "parent": None,
                    "max_model_len": cfg["context_limit"] or 32768,
                }
            ]
            rec.status = 200
            self._send_json(200, {"object": "list", "data": data})
        except OSError as exc:
            rec.error = rec.error or f"client went away: {exc}"

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        ref = self.ref
        path = self.path.split("?", 1)[0].rstrip("/")
        api = "dashscope" if path == DASHSCOPE_PATH else OPENAI_PATHS.get(path, "other")
        cfg = ref._snapshot()
        body_bytes = self._read_body()
        rec = RecordedRequest(
            "POST", self.path, api, body_bytes=len(body_bytes), headers=self._headers_for_log(cfg["api_key"])
        )
        # recorded on arrival and filled in place: every field is set before the bytes the client
        # waits for are written, so a test reading ``server.last`` after a call sees the final record
        ref._record(rec)
        ref._enter()
        try:
            self._handle_post(ref, api, cfg, body_bytes, rec)
        except (BrokenPipeError, ConnectionResetError) as exc:
            rec.error = rec.error or f"client went away: {exc}"
        except Exception as exc:  # a bug in the server: answer 500 and record it
            rec.status = 500
            rec.error = f"refserver bug: {type(exc).__name__}: {exc}"
            with contextlib.suppress(OSError):
                self._error(api, 500, rec.error)
        finally:
            ref._leave()

    def _handle_post(
        self, ref: RefServer, api: str, cfg: dict[str, Any], raw: bytes, rec: RecordedRequest
    ) -> None:
        if api == "other":
            rec.status = 404
            self._error("openai", 404, f"no route for POST {self.path}")
            return
        if cfg["latency"]:
            time.sleep(cfg["latency"])
        if not self._authorized(cfg["api_key"]):
            rec.status, rec.fault = 401, "auth"
            if api == "dashscope":
                self._error(api, 401, "Invalid API-key provided.", code="InvalidApiKey")
            else:
                self._error(api, 401, "Incorrect API key provided.", code="invalid_api_key")
            return
        if cfg["max_body_bytes"] is not None and len(raw) > cfg["max_body_bytes"]:
            rec.status, rec.fault = 413, "too_large"
            self._error(
                api,
                413,
                f"Request body of {len(raw)} bytes exceeds the limit of {cfg['max_body_bytes']} bytes.",
                code="RequestTooLarge" if api == "dashscope" else None,
            )
            return
        fault, status = ref._fault_roll()
        if fault == "rate_limit":
            rec.status, rec.fault = 429, fault
            headers = (
                {"Retry-After": _fmt_seconds(cfg["retry_after"])} if cfg["retry_after"] is not None else {}
            )
            if api == "dashscope":
                self._error(
                    api,
                    429,
                    "Requests rate limit exceeded, please try again later.",
                    code="Throttling.RateQuota",
                    headers=headers,
                )
            else:
                self._error(
                    api,
                    429,
                    "Rate limit reached for requests. Please retry later.",
                    code="rate_limit_exceeded",
                    headers=headers,
                )
            return
        if fault == "server_error":
            rec.status, rec.fault = status, fault
            self._error(
                api,
                status,
                "The server had an error while processing your request (injected fault).",
                code="InternalError" if api == "dashscope" else None,
            )
            return
        try:
            body = json.loads(raw.decode("utf-8"))
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
        except (UnicodeDecodeError, ValueError) as exc:
            rec.status = 400
            rec.error = f"invalid JSON body: {exc}"
            self._error(api, 400, rec.error)
            return
        rec.model = body.get("model")
        if api == "dashscope":
            stream = self.headers.get("X-DashScope-SSE", "").lower() == "enable"
            params = body.get("parameters") or {}
            rec.parameters = dict(params)
            json_mode = (params.get("response_format") or {}).get("type") == "json_object"
        else:
            stream = bool(body.get("stream"))
            rec.parameters = {
                k: body[k]
                for k in (
                    "max_tokens",
                    "max_completion_tokens",
                    "temperature",
                    "seed",
                    "top_p",
                    "stream_options",
                    "response_format",
                    "mm_processor_kwargs",
                )
                if k in body
            }
            json_mode = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
            rec.media_io_kwargs = body.get("media_io_kwargs")
        rec.stream = stream
        rec.json_mode = json_mode
        if cfg["strict_model"] and rec.model != cfg["model"]:
            rec.status = 404 if api != "dashscope" else 400
            if api == "dashscope":
                self._error(api, 400, "Model not exist.", code="InvalidParameter")
            else:
                self._error(api, 404, f"The model `{rec.model}` does not exist.", code=404)
            rec.error = f"unknown model {rec.model!r}"
            return
        if api == "openai" and not cfg["trust_mm_kwargs"]:
            if body.get("media_io_kwargs"):
                rec.status, rec.fault, rec.error = 400, "media_io_kwargs", VLLM_MEDIA_IO_MESSAGE
                self._error(api, 400, VLLM_MEDIA_IO_MESSAGE, code=400)
                return
            if body.get("mm_processor_kwargs"):
                rec.status, rec.fault, rec.error = 400, "mm_processor_kwargs", VLLM_MM_PROCESSOR_MESSAGE
                self._error(api, 400, VLLM_MM_PROCESSOR_MESSAGE, code=400)
                return
        try:
            und = _dashscope_items(body, cfg) if api == "dashscope" else _openai_items(body, api, cfg)
        except BadRequest as exc:
            rec.status, rec.error = exc.status, str(exc)
            self._error(api, exc.status, str(exc), code=exc.code if api == "dashscope" else None)
            return
        self._fill_media(rec, und)
        visual = sum(it.tokens for it in und.items)
        text_toks = (text_tokens(und.prompt) + text_tokens(und.system or "") + sum(map(text_tokens, und.labels))
                     + 2 * len(und.items) + 8)
        rec.visual_tokens = visual
        rec.image_tokens = sum(it.tokens for it in und.items if it.kind == "image")
        rec.prompt_tokens = visual + text_toks
        max_out = int(rec.parameters.get("max_tokens") or rec.parameters.get("max_completion_tokens") or 0)
        if cfg["context_limit"] is not None and rec.prompt_tokens + max_out > cfg["context_limit"]:
            rec.status, rec.fault = 400, "context"
            if api == "dashscope":
                msg = f"Range of input length should be [1, {cfg['context_limit']}]"
                self._error(api, 400, msg, code="InvalidParameter")
            else:
                msg = (
                    f"This model's maximum context length is {cfg['context_limit']} tokens. However, you "
                    f"requested {rec.prompt_tokens + max_out} tokens ({rec.prompt_tokens} in the messages, "
                    f"{max_out} in the completion). Please reduce the length of the messages or completion."
                )
                self._error(api, 400, msg, code=400)
            rec.error = msg
            return
        text = _answer(ref, und, json_mode, rec)
        rec.answer = text
        rec.completion_tokens = max(1, (len(text) + 3) // 4)
        if stream:
            if api == "dashscope":
                incremental = bool((body.get("parameters") or {}).get("incremental_output"))
                self._stream(rec, cfg, _dashscope_events(text, rec, incremental))
            else:
                opts = body.get("stream_options") or {}
                self._stream(rec, cfg, _openai_chunks(text, rec, bool(opts.get("include_usage"))))
        else:
            rec.status = 200
            if api == "dashscope":
                self._send_json(200, _dashscope_body(text, rec, "stop"))
            else:
                self._send_json(200, _openai_body(text, rec))

    @staticmethod
    def _fill_media(rec: RecordedRequest, und: Understood) -> None:
        rec.prompt = und.prompt
        rec.system = und.system
        rec.media = [it.source for it in und.items]
        rec.n_frames = sum(it.n_frames for it in und.items if it.kind != "image")
        rec.n_images = sum(1 for it in und.items if it.kind == "image")
        rec.frame_times = [s.t for it in und.items for s in it.samples]
        if und.items:
            first = und.items[0]
            rec.time_source = first.time_source
            rec.frame_size = (first.width, first.height)
            videos = [it for it in und.items if it.kind != "image"]
            rec.fps_used = videos[0].fps_used if videos else first.fps_used

    def _stream(self, rec: RecordedRequest, cfg: dict[str, Any], events: Iterator[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        rec.status = 200
        drop_after = cfg["drop_stream_after"]
        error_after = cfg["stream_error_after"]
        for event in events:
            if error_after is not None and rec.chunks_sent >= error_after:
                rec.fault = "stream_error"
                for data in (_stream_error_event(rec), "data: [DONE]\n\n" if rec.api != "dashscope" else ""):
                    if data:
                        raw = data.encode("utf-8")
                        rec.chunks_sent += 1
                        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                return
            if drop_after is not None and rec.chunks_sent >= drop_after:
                rec.fault = "dropped"
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            payload = event.encode("utf-8")
            rec.chunks_sent += 1
            self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            self.wfile.flush()
            if cfg["chunk_delay"]:
                time.sleep(cfg["chunk_delay"])
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _stream_error_event(rec: RecordedRequest) -> str:
    message = "The server had an error while streaming the answer (injected fault)."
    if rec.api == "dashscope":
        body = {"code": "InternalError", "message": message, "request_id": rec.request_id}
        return f"id:{rec.chunks_sent + 1}\nevent:error\n:HTTP_STATUS/500\nstatus:500\ndata:{json.dumps(body)}\n\n"
    body_o = {"error": {"message": message, "type": "server_error", "param": None, "code": 500}}
    return "data: " + json.dumps(body_o) + "\n\n"


def _fmt_seconds(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _dashscope_code(status: int) -> str:
    return {
        400: "InvalidParameter",
        401: "InvalidApiKey",
        404: "ModelNotFound",
        413: "RequestTooLarge",
        429: "Throttling.RateQuota",
    }.get(status, "InternalError")


def _openai_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "BadRequestError" if status == 400 else "invalid_request_error"


def _pieces(text: str, size: int = 12) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _openai_usage(rec: RecordedRequest) -> dict[str, int]:
    return {
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "total_tokens": rec.prompt_tokens + rec.completion_tokens,
    }


def _openai_body(text: str, rec: RecordedRequest) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": rec.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "tool_calls": []},
                "logprobs": None,
                "finish_reason": "stop",
                "stop_reason": None,
            }
        ],
        "usage": _openai_usage(rec),
    }


def _openai_chunks(text: str, rec: RecordedRequest, include_usage: bool) -> Iterator[str]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())

    def chunk(
        delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None, choices: bool = True
    ) -> str:
        obj: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": rec.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if choices
            else [],
        }
        if include_usage:
            obj["usage"] = usage
        return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    for piece in _pieces(text):
        yield chunk({"content": piece}, None)
    yield chunk({}, "stop")
    if include_usage:
        yield chunk({}, None, _openai_usage(rec), choices=False)
    yield "data: [DONE]\n\n"


def _dashscope_usage(rec: RecordedRequest, output_tokens: int) -> dict[str, Any]:
    video_toks = rec.visual_tokens - rec.image_tokens
    usage: dict[str, Any] = {
        "input_tokens": rec.prompt_tokens,
        "output_tokens": output_tokens,
        "total_tokens": rec.prompt_tokens + output_tokens,
    }
    details: dict[str, int] = {"text_tokens": rec.prompt_tokens - rec.visual_tokens}
    if video_toks:
        usage["video_tokens"] = details["video_tokens"] = video_toks
    if rec.image_tokens:
        usage["image_tokens"] = details["image_tokens"] = rec.image_tokens
    usage["input_tokens_details"] = details
    return usage


def _dashscope_body(
    text: str, rec: RecordedRequest, finish: str, output_tokens: int | None = None
) -> dict[str, Any]:
    out_toks = rec.completion_tokens if output_tokens is None else output_tokens
    return {
        "output": {
            "choices": [
                {"finish_reason": finish, "message": {"role": "assistant", "content": [{"text": text}]}}
            ]
        },
        "usage": _dashscope_usage(rec, out_toks),
        "request_id": rec.request_id,
    }


def _dashscope_events(text: str, rec: RecordedRequest, incremental: bool) -> Iterator[str]:
    pieces = _pieces(text)
    sent = ""
    for n, piece in enumerate(pieces, 1):
        sent += piece
        last = n == len(pieces)
        payload = _dashscope_body(
            piece if incremental else sent,
            rec,
            "stop" if last else "null",
            output_tokens=max(1, (len(sent) + 3) // 4),
        )
        yield f"id:{n}\nevent:result\n:HTTP_STATUS/200\ndata:{json.dumps(payload, ensure_ascii=False)}\n\n"
