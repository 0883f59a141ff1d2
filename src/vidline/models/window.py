"""Per-window work for the timeline: build the request, send it (shrinking once if too large), parse."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

from vidline.encode import X264_FAST_PRESET, X264_PRESET
from vidline.errors import PayloadTooLargeError, StalePayloadError
from vidline.log import logger
from vidline.models.base import Backend, ChatRequest, ImagePart, PreparedRequest, TextPart, VideoPart
from vidline.models.config import PayloadMode
from vidline.models.payload import (
    CHAT_TEMPLATE_TOKENS,
    DEFAULT_MODES,
    PAYLOAD_VERSION,
    EncodedVideo,
    EncodeOptions,
    Flavour,
    StreamSpec,
    estimate_payload_bytes,
    estimate_text_tokens,
    estimate_video_part_tokens,
    frames_sent,
    open_stream,
)
from vidline.models.prompts import PROMPT_VERSION, system_prompt_for, timeline_prompt
from vidline.types import Event, Frame, Usage, Window

if TYPE_CHECKING:
    from vidline.media.plan import SamplingPlan
    from vidline.media.sampler import WindowFrames


class Sent(NamedTuple):
    """What ``WindowAnalyzer.send`` got: the answer, and the payload it really sent when a too-large
    answer made it shrink (``frames`` and ``estimated_tokens`` are None otherwise)."""

    text: str
    usage: Usage | None
    time_scale: float
    frames: int | None = None
    estimated_tokens: int | None = None


def backend_flavour(backend: Backend) -> Flavour:
    """The payload flavour a backend sends (no I/O: an undetected OpenAI server counts as vLLM)."""
    if backend.name == "dashscope":
        return "dashscope"
    flavour = getattr(backend, "_flavour", None)
    return flavour if flavour else "vllm"


def backend_mode(backend: Backend) -> PayloadMode:
    return backend.config.mode or DEFAULT_MODES[backend_flavour(backend)]


def shrink_frames(frames: list[Frame]) -> list[Frame]:
    """Every other frame (an even count when more than 4 are kept); 4 frames or fewer are kept as
    they are. Never a repeated frame: the payload pads a short list itself, on the server's clock."""
    if len(frames) <= 4:
        return list(frames)
    kept = frames[::2]
    if len(kept) % 2 and len(kept) > 4:
        kept = kept[:-1]
    return kept


def smaller_request(request: ChatRequest) -> ChatRequest:
    """``request`` after a 413 (request too large): every video keeps every other frame (its clock
    follows the frames' real times) and is encoded smaller (``shrink`` + 1: smaller frames, lower
    quality); images and text are kept."""
    parts: list[TextPart | ImagePart | VideoPart] = []
    for part in request.parts:
        if isinstance(part, VideoPart):
            frames = shrink_frames(part.frames)
            fps = part.fps / 2 if part.fps and len(frames) < len(part.frames) else part.fps
            parts.append(VideoPart(frames=frames, fps=fps, origin=part.origin))
        else:
            parts.append(part)
    return ChatRequest(parts=parts, system=request.system, max_tokens=request.max_tokens,
                       json_mode=request.json_mode, mode=request.mode, shrink=request.shrink + 1)


def say_shrinking_once(backend: Backend, what: str, exc: BaseException) -> None:
    """The 413 fallback, said once per backend (a run) and kind of request, not once per window."""
    said: set[str] = backend.__dict__.setdefault("_said_413", set())
    if what not in said:
        said.add(what)
        logger.warning("%s: %s; retrying with smaller payloads (every other frame, smaller and lower quality) "
                       "for this and later requests that are too large", what, exc)


class WindowAnalyzer:
    """Turns one window's frames into raw answer text and then into absolute events."""

    def __init__(self, backend: Backend, query: str | None) -> None:
        self.backend = backend
        self.query = query
        cfg = backend.config
        self.system = system_prompt_for(cfg.language, cfg.system_prompt)

    def prompt(self, duration: float | None) -> str:
        cfg = self.backend.config
        return timeline_prompt(self.query, duration=duration, language=cfg.language,
                               burned_timestamps=cfg.burn_timestamps)

    def identity(self) -> dict[str, object]:
        return {
            **self.backend.config.identity(),
            "query": self.query,
            "prompt": self.prompt(None),
            "system": self.system,
            "prompt_version": PROMPT_VERSION,
            "payload_version": PAYLOAD_VERSION,
        }

    def build_request(self, wf: WindowFrames) -> ChatRequest:
        video = VideoPart(frames=list(wf.frames), fps=float(wf.plan.fps), origin=wf.window.start)
        return self._request(wf.window, video)

    def _request(self, window: Window, video: VideoPart) -> ChatRequest:
        return ChatRequest(
            parts=[video, TextPart(self.prompt(window.duration))],
            system=self.system,
            max_tokens=self.backend.config.max_tokens,
            json_mode=True,
        )

    def estimate(self, wf_plan: SamplingPlan) -> tuple[int, int]:
        """(estimated prompt tokens, payload bytes) of the window's request, without encoding."""
        flavour = backend_flavour(self.backend)
        mode = backend_mode(self.backend)
        n, h, w = wf_plan.n_frames, wf_plan.height, wf_plan.width
        opts = EncodeOptions(media_io_fps=bool(getattr(self.backend, "sends_media_io_fps", True)))
        tokens = estimate_video_part_tokens(n, h, w, flavour, mode, opts, fps=float(wf_plan.fps))
        tokens += estimate_text_tokens(self.prompt(wf_plan.end - wf_plan.start))
        if self.system:
            tokens += estimate_text_tokens(self.system)
        return tokens + CHAT_TEMPLATE_TOKENS, estimate_payload_bytes(n, h, w, mode)

    def frames_sent(self, n_frames: int) -> int:
        """The distinct frames a payload of ``n_frames`` sampled frames carries to the server now (a
        frame list may be cut: DashScope's 512, vLLM's 32 after it refused per-request fps)."""
        opts_fps = bool(getattr(self.backend, "sends_media_io_fps", True))
        return frames_sent(n_frames, backend_flavour(self.backend), backend_mode(self.backend), media_io_fps=opts_fps)

    @property
    def pixel_format(self) -> str:
        """The frame layout to decode for this backend: planar yuv420p when the payload is an mp4 with
        nothing drawn on the frames (x264 takes it as is), else RGB."""
        cfg = self.backend.config
        return "yuv420p" if backend_mode(self.backend) == "video" and not cfg.burn_timestamps else "rgb24"

    def prepare(self, wf: WindowFrames, *, release: bool = True) -> PreparedRequest:
        """Encode the window's payload now (CPU only). With ``release`` the frames are dropped and
        only the encoded payload is kept until ``send``."""
        prepared = self.backend.prepare(self.build_request(wf))
        if release:
            prepared.release_media()
        return prepared

    def prepare_stream(self, window: Window, plan: SamplingPlan, frames: Iterable[Frame], *,
                       urgent: bool = False) -> PreparedRequest | None:
        """Encode the window's payload while its frames arrive, so the window's frames are never all
        held: x264 takes each frame as it is decoded (``video`` mode), or each frame is compressed to
        JPEG (``frames`` mode). Returns None, leaving ``frames`` untouched, when the backend cannot say
        how it will encode: the caller collects the frames and uses ``prepare``. Raises
        StalePayloadError when the streamed payload cannot be used (over the data-URI limit, frames
        missing, or a server fallback changed the encoding meanwhile): the caller decodes the window
        again and uses ``prepare``, which lowers the quality until the payload fits. ``urgent``: a
        request slot is waiting for this payload, so an mp4 is encoded with x264's fastest preset
        (about half the CPU, a larger clip of the same frames); so is every clip for a server on this
        machine or the local network (``Backend.nearby``), where the larger upload costs nothing."""
        spec = self.stream_spec(window, plan, urgent=urgent)
        if spec is None:
            return None
        stream = open_stream(spec)
        try:
            for frame in frames:
                stream.add(frame)
            if stream.n_frames == 0:
                raise StalePayloadError("no frame arrived for the streamed payload")
            encoded = stream.finish()
        finally:
            stream.close()
        return self.prepared_from(window, plan, encoded)

    def stream_spec(self, window: Window, plan: SamplingPlan, *, urgent: bool = False) -> StreamSpec | None:
        """How the window's payload is encoded while it is decoded, as the backend now sends it (see
        ``prepare_stream``); None when the backend cannot say in advance. A decode worker process
        encodes from it (``payload.open_stream``) and the run turns the result into a request with
        ``prepared_from``."""
        template = self._request(window, VideoPart(frames=[], fps=float(plan.fps), origin=window.start))
        encoding = self.backend.stream_encoding(template)
        if encoding is None:
            return None
        flavour, mode, opts = encoding
        fast = urgent or bool(getattr(self.backend, "nearby", False))
        return StreamSpec(float(plan.fps), window.start, flavour, mode, opts, plan.n_frames,
                          X264_FAST_PRESET if fast else X264_PRESET)

    def prepared_from(self, window: Window, plan: SamplingPlan, encoded: EncodedVideo | None) -> PreparedRequest:
        """The window's request around a payload streamed from ``stream_spec`` (it carries no frames).
        StalePayloadError when there is none (over the data-URI limit); a payload encoded for settings
        a fallback has changed since is refused when it is sent, and the window decoded again."""
        if encoded is None:
            raise StalePayloadError("the streamed payload is over the data-URI limit")
        video = VideoPart(frames=[], fps=float(plan.fps), origin=window.start, encoded=encoded)
        prepared = self.backend.prepare(self._request(window, video))
        prepared.release_media()
        return prepared

    def send(self, prepared: PreparedRequest,
             reload: Callable[[], WindowFrames] | None = None) -> Sent:
        """Send a prepared window; on a too-large answer shrink the payload (half the frames, smaller
        and lower-quality images) and retry once. ``reload`` decodes the window again when the frames
        were released and are needed (a shrink, or a payload outdated by a server fallback).
        Raises BackendError."""
        try:
            resp = self.backend.chat(prepared)
        except StalePayloadError:
            if reload is None:
                raise
            logger.debug("payload outdated by a server fallback: decoding the window again")
            return self.send(self.prepare(reload(), release=False))
        except PayloadTooLargeError as exc:
            request = prepared.request
            if prepared.released:
                if reload is None:
                    raise
                request = self.build_request(reload())
            video = request.parts[0]
            assert isinstance(video, VideoPart)
            logger.info("window at %.1f s: %s; retrying once with a smaller payload", video.origin, exc)
            say_shrinking_once(self.backend, "timeline windows", exc)
            smaller = smaller_request(request)
            resp = self.backend.chat(smaller)
            sent = smaller.parts[0]
            assert isinstance(sent, VideoPart)
            return Sent(resp.text, resp.usage, resp.time_scale, len(sent.frames), self.backend.estimate_tokens(smaller))
        return Sent(resp.text, resp.usage, resp.time_scale)

    def analyze(self, wf: WindowFrames) -> Sent:
        """Encode and send the window (``prepare`` + ``send`` with the frames kept)."""
        return self.send(self.prepare(wf, release=False))

    def to_events(self, text: str, window: Window, time_scale: float = 1.0) -> list[Event]:
        from vidline.parse import parse_answer, to_absolute

        raw = parse_answer(text, default_label=self.query or "")
        return to_absolute(raw, window, time_scale=time_scale, window_index=window.index)
