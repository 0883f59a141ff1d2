"""The backend interface: a prepared multimodal request in, raw answer text plus usage out."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from vidline.models.config import ModelConfig, PayloadMode
from vidline.types import Frame, Usage


@dataclass
class TextPart:
    text: str


@dataclass
class ImagePart:
    """One still image: an RGB uint8 array or already-encoded JPEG/PNG bytes."""

    image: np.ndarray | bytes


@dataclass
class VideoPart:
    """A window's sampled frames. ``origin`` is the window start: answers are relative to it."""

    frames: list[Frame]
    fps: float
    origin: float


Part = TextPart | ImagePart | VideoPart


@dataclass
class ChatRequest:
    parts: list[TextPart | ImagePart | VideoPart]
    system: str | None = None
    max_tokens: int | None = None
    json_mode: bool = False
    mode: PayloadMode | None = None
    shrink: int = 0  # >0: payload already shrunk this many times (smaller frames / lower quality)

    @property
    def videos(self) -> list[VideoPart]:
        return [p for p in self.parts if isinstance(p, VideoPart)]

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.parts if isinstance(p, TextPart))


@dataclass
class ChatResponse:
    text: str
    usage: Usage | None
    model: str | None
    time_scale: float = 1.0  # multiply clip-relative times in ``text`` by this to get real seconds
    payload: str | None = None  # which payload shape was sent (e.g. "vllm/video-mp4+fps")
    extra: dict[str, object] = field(default_factory=dict)


class Backend(abc.ABC):
    """One model server. Implementations retry, time out and translate errors themselves."""

    name: str = "?"
    #: set by ``chat_stream`` once the payload is built (before the first delta is yielded): multiply
    #: clip-relative times in the streamed text by this to get real seconds (see ChatResponse.time_scale)
    last_time_scale: float = 1.0

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def chat(self, request: ChatRequest) -> ChatResponse:
        """Send one request; retries, timeouts and error translation included."""

    @abc.abstractmethod
    def chat_stream(self, request: ChatRequest) -> Iterator[str]:
        """Text deltas as the model writes; raises BackendError on failure."""

    def identify_server(self) -> bool:
        """Find out (with I/O if needed) what the server is, so payload shapes and estimates are exact.

        True when the backend now knows; the default backends need no detection."""
        return False

    @abc.abstractmethod
    def list_models(self) -> list[str]:
        """Model names the server serves."""

    @abc.abstractmethod
    def estimate_tokens(self, request: ChatRequest) -> int:
        """Visual tokens (exact, Qwen rules) plus an approximate text count; no I/O."""

    @property
    def default_mode(self) -> PayloadMode:
        return "video"

    def effective_mode(self, request: ChatRequest) -> PayloadMode:
        return request.mode or self.config.mode or self.default_mode

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (optional)."""
