"""The backend interface: a prepared multimodal request in, raw answer text plus usage out."""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from vidline.errors import AuthenticationError, ServerUnreachableError, StalePayloadError, VidlineError
from vidline.log import logger
from vidline.models.config import ModelConfig, PayloadMode
from vidline.types import Frame, Usage

if TYPE_CHECKING:
    from vidline.models.payload import BuiltPayload, EncodedVideo, EncodeOptions, Flavour


@dataclass
class TextPart:
    text: str


@dataclass
class ImagePart:
    """One still image: an RGB uint8 array or already-encoded JPEG/PNG bytes."""

    image: np.ndarray | bytes


@dataclass
class VideoPart:
    """A window's sampled frames. ``origin`` is the window start: answers are relative to it.

    ``encoded``: the clip or frame list already encoded while the frames were decoded
    (``payload.StreamedVideo``, ``payload.StreamedFrames``; ``frames`` is then empty); used when the
    backend would encode it the same way."""

    frames: list[Frame]
    fps: float
    origin: float
    encoded: EncodedVideo | None = None


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
class PreparedRequest:
    """A request whose media is already encoded (``Backend.prepare``): sending it is I/O only.

    The timeline encodes each window right after decoding it and then drops the frames
    (``release_media``), so only small encoded payloads wait for a free request slot. ``settings``
    records what the payload was built for; if a server fallback changes that before it is sent
    (e.g. vLLM refusing ``media_io_kwargs``), the backend rebuilds it from ``request``, or raises
    ``StalePayloadError`` when the frames are gone, and the caller decodes them again.
    """

    request: ChatRequest
    payload: BuiltPayload
    settings: tuple[object, ...]
    released: bool = False

    def release_media(self) -> None:
        """Drop the video frames (the encoded payload stays)."""
        parts = [replace(p, frames=[]) if isinstance(p, VideoPart) else p for p in self.request.parts]
        self.request = replace(self.request, parts=parts)
        self.released = True


@dataclass
class ChatResponse:
    text: str
    usage: Usage | None
    model: str | None
    time_scale: float = 1.0  # multiply clip-relative times in ``text`` by this to get real seconds
    payload: str | None = None  # which payload shape was sent (e.g. "vllm/video-mp4+fps")
    extra: dict[str, object] = field(default_factory=dict)


def nearby_host(url: str | None) -> bool:
    """Whether ``url``'s host is this machine or a private network (loopback, RFC 1918 / 4193,
    link-local, ``localhost``, ``*.local``); False for public hosts, names that need a lookup, and no
    URL (an SDK's cloud default). Pure: no DNS."""
    import ipaddress
    from urllib.parse import urlsplit

    if not url:
        return False
    try:
        host = urlsplit(url if "//" in url else f"//{url}").hostname
    except ValueError:
        return False
    if not host:
        return False
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".local")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


class Backend(abc.ABC):
    """One model server. Implementations retry, time out and translate errors themselves."""

    name: str = "?"
    #: set by ``chat_stream`` once the payload is built (before the first delta is yielded): multiply
    #: clip-relative times in the streamed text by this to get real seconds (see ChatResponse.time_scale)
    last_time_scale: float = 1.0
    last_time_scales: tuple[float, ...] = ()  # each video part's, of the last request built

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        #: set by ``cancel()``: no more retries or backoff waits (requests already sent still finish)
        self.cancelled = threading.Event()

    @property
    def nearby(self) -> bool:
        """Whether the server is on this machine or the local network (``nearby_host``): its uploads
        cost next to nothing, so a clip is encoded for the least CPU rather than the fewest bytes."""
        return nearby_host(self.config.base_url)

    def cancel(self) -> None:
        """Stop retrying (Ctrl-C: the run stops sending): a failing request fails now instead of
        waiting out its backoff and trying again."""
        self.cancelled.set()

    @abc.abstractmethod
    def chat(self, request: ChatRequest | PreparedRequest) -> ChatResponse:
        """Send one request (or a prepared one); retries, timeouts and error translation included."""

    @abc.abstractmethod
    def build(self, request: ChatRequest) -> BuiltPayload:
        """Encode the request's media into this server's request body (CPU only, no I/O once the
        server flavour is known)."""

    def payload_settings(self, request: ChatRequest) -> tuple[object, ...]:
        """What a payload built now for ``request`` depends on besides the request itself."""
        return (self.effective_mode(request), request.shrink)

    def prepare(self, request: ChatRequest) -> PreparedRequest:
        """Encode now, send later with ``chat(prepared)``. The settings are read before and after the
        build, so a fallback switched by another thread meanwhile cannot mislabel the payload."""
        for _ in range(3):
            settings = self.payload_settings(request)
            payload = self.build(request)
            if self.payload_settings(request) == settings:
                break
        return PreparedRequest(request, payload, settings)

    def stream_encoding(self, request: ChatRequest) -> tuple[Flavour, PayloadMode, EncodeOptions] | None:
        """(flavour, payload mode, options) ``request``'s video part is encoded with, so it can be
        encoded while its frames are decoded (``payload.StreamedVideo``: an mp4, one frame at a time
        into x264; ``payload.StreamedFrames``: a frame list, one JPEG at a time); None when the
        backend cannot say in advance."""
        return None

    @staticmethod
    def without_payload(item: ChatRequest | PreparedRequest) -> ChatRequest:
        """The request to build afresh instead of ``item``'s prepared payload (outdated, or refused by
        the server); StalePayloadError when its frames were released: the caller decodes the window
        again."""
        if isinstance(item, PreparedRequest):
            if item.released:
                raise StalePayloadError("the prepared payload cannot be sent and its frames were released")
            return item.request
        return item

    def payload_for(self, item: ChatRequest | PreparedRequest) -> tuple[ChatRequest, BuiltPayload]:
        """The request and the payload to send for it: the prepared one while it still matches the
        backend's settings, else a fresh build (see ``without_payload``)."""
        if isinstance(item, PreparedRequest) and item.settings == self.payload_settings(item.request):
            return item.request, item.payload
        request = self.without_payload(item)
        return request, self.build(request)

    @abc.abstractmethod
    def chat_stream(self, request: ChatRequest) -> Iterator[str]:
        """Text deltas as the model writes; raises BackendError on failure."""

    def identify_server(self) -> bool:
        """Find out (with I/O if needed) what the server is, so payload shapes and estimates are exact.

        True when the backend now knows; the default backends need no detection."""
        return False

    def context_length(self) -> int | None:
        """The served model's context window in tokens when the server says (vLLM's ``max_model_len``
        in ``GET /v1/models``); None when unknown. The default backends do not know it."""
        return None

    #: set when asking the server about itself (``GET /v1/models``) found it unreachable
    unreachable: ServerUnreachableError | None = None

    def server_facts(self) -> dict[str, object]:
        """What the backend found out about its server so far, without I/O (served model, flavour,
        context length), for ``assume_server_facts`` in a later run; {} when nothing."""
        return {}

    def assume_server_facts(self, facts: dict[str, object]) -> None:  # noqa: B027 - optional hook
        """Take ``server_facts`` from an earlier run as known (the server is unreachable now), so
        that plans and cache keys come out as they did then. Nothing the config sets is overridden."""

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

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Get ready to send (import the SDK, make the client) ahead of the first request; a run calls
        it in a thread while it decodes. Never raises: a failure is left for the first request."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (optional)."""


# What a backend's warm-up (its SDK's import) runs inside: nothing by default; the CLI, which owns its
# process, sets one that pauses the garbage collector and freezes what the import made
# (``vidline.cli.runtime.settle_imports``)
_import_guard: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext


def set_import_guard(guard: Callable[[], contextlib.AbstractContextManager[object]] | None) -> None:
    """Run every later ``warm_up_in_background`` inside ``guard()`` (None: inside nothing)."""
    global _import_guard
    _import_guard = guard or contextlib.nullcontext


def warm_up_in_background(backend: object) -> threading.Thread | None:
    """Start ``backend.warm_up()`` (the SDK's import, the client) in a daemon thread, so that it overlaps
    the run's decoding; None when the backend has nothing to warm up. Call it after probing: a
    demuxer's many short GIL releases wait behind an import running beside them."""
    warm_up = getattr(backend, "warm_up", None)
    if not callable(warm_up):
        return None
    guard = _import_guard

    def run() -> None:
        with guard():
            warm_up()

    thread = threading.Thread(target=run, name="vidline-warm-up", daemon=True)
    thread.start()
    return thread


def detect_server(backend: object) -> bool:
    """Let ``backend`` find out what its server is (``Backend.identify_server``: one GET /v1/models for
    an OpenAI-compatible server whose flavour the config leaves open), so payload shapes, plans and
    estimates match what is really sent. True when detected. A wrong key or an unreachable server
    raises here, as it would at the first request; other failures leave the no-I/O guess (vLLM) in
    place. Anything without ``identify_server`` (a test double) is False."""
    identify = getattr(backend, "identify_server", None)
    if identify is None:
        return False
    try:
        return bool(identify())
    except (AuthenticationError, ServerUnreachableError):
        raise
    except VidlineError as exc:
        logger.debug("could not detect the server flavour: %s", exc)
        return False


def keyed_model(backend: object, configured: str | None) -> str | None:
    """The model a cache key names: the configured one, else the one the server serves (``model``:
    one GET /v1/models, asked once per backend), so a server that now serves another model does not
    hand back the old one's answers. None when the server cannot say (unreachable, several models);
    a wrong key raises."""
    if configured:
        return configured
    try:
        served = getattr(backend, "model", None)
    except AuthenticationError:
        raise
    except VidlineError as exc:
        logger.debug("no served model name for the cache key: %s", exc)
        return None
    return served if isinstance(served, str) else None
