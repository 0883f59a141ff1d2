"""OpenAI-compatible servers (vLLM, DashScope compatible mode, others) through the ``openai`` SDK.

The SDK's own retries are off (``max_retries=0``): :mod:`vidline.models.retry` does them. The
server flavour decides how frame lists are sent (:mod:`vidline.models.payload`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from vidline.errors import BackendError, ConfigError, ServerError, ServerUnreachableError, redact
from vidline.log import logger
from vidline.models.base import Backend, ChatRequest, ChatResponse, PreparedRequest
from vidline.models.config import ModelConfig, PayloadMode
from vidline.models.payload import (
    DEFAULT_MODES,
    BuiltPayload,
    EncodeOptions,
    Flavour,
    build_openai,
    estimate_request_tokens,
)
from vidline.models.retry import (
    MEDIA_IO_DISABLED,
    NO_SUCH_MODEL,
    call_with_retries,
    connection_error,
    error_for_status,
    parse_retry_after,
)
from vidline.types import Usage

if TYPE_CHECKING:
    import openai

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the SDK's, when neither --base-url nor OPENAI_BASE_URL says
_RESPONSE_FORMAT_REJECTED = ("response_format", "json_object", "guided", "structured output")


class _MediaIoRejected(BackendError):
    """vLLM without --trust-request-mm-kwargs refused extra_body media_io_kwargs (HTTP 400)."""


class _ResponseFormatRejected(BackendError):
    pass


def _sdk() -> Any:
    """The ``openai`` module, imported on first use: the SDK takes ~0.5 s to import (its types and
    aiohttp), which ``OpenAIBackend.warm_up`` moves off a run's critical path (it overlaps decoding)."""
    import openai

    return openai


def _caught() -> tuple[type[Exception], ...]:
    """What ``_call`` and a stream translate: BackendError, and the SDK's errors once the SDK is loaded
    (an SDK error implies it is). Never imports: an ``except`` clause that imported the SDK would
    re-run an import that Ctrl-C had just interrupted, and its error would replace the interrupt."""
    err = getattr(sys.modules.get("openai"), "OpenAIError", None)
    return (err, BackendError) if isinstance(err, type) and issubclass(err, Exception) else (BackendError,)


def flavour_from_url(base_url: str | None) -> Flavour | None:
    """Flavour implied by the URL alone (no I/O): DashScope compatible mode, else unknown."""
    if base_url and "compatible-mode" in base_url:
        return "dashscope-compat"
    return None


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, config: ModelConfig, *, client: openai.OpenAI | None = None) -> None:
        super().__init__(config)
        self._client_obj: openai.OpenAI | None = client  # made on first use (``_client``)
        self._injected = client is not None  # a caller's client: every request goes through it
        self._client_lock = threading.Lock()
        self._lock = threading.Lock()
        self._model: str | None = config.model
        self._flavour: Flavour | None = None if config.server == "auto" else config.server
        if self._flavour is None:
            self._flavour = flavour_from_url(config.base_url)
        self._models_cache: list[Any] | None = None
        self._assumed_context: int | None = None  # from an earlier run (assume_server_facts)
        self._media_io_ok = config.send_media_io_fps
        self._response_format_ok = True
        self.last_usage: Usage | None = None

    @property
    def _client(self) -> openai.OpenAI:
        """The SDK client, made (and the SDK imported) on first use, by whichever thread comes first."""
        client = self._client_obj
        if client is None:
            with self._client_lock:
                if self._client_obj is None:
                    self._client_obj = self._make_client()
                client = self._client_obj
        return client

    def _make_client(self) -> openai.OpenAI:
        sdk = _sdk()
        config = self.config
        kwargs: dict[str, Any] = {
            "api_key": config.api_key or "EMPTY",
            "max_retries": 0,
            "timeout": sdk.Timeout(config.timeout.read, connect=config.timeout.connect),
        }
        if config.base_url:
            kwargs["base_url"] = config.base_url
        try:
            return sdk.OpenAI(**kwargs)
        except sdk.OpenAIError as exc:
            raise ConfigError(redact(f"cannot create the OpenAI client: {exc}", config.api_key)) from exc

    def warm_up(self) -> None:
        """Import the SDK and make the client now (a run calls this in a thread while it decodes).
        A failure is left for the first request to report."""
        try:
            self._client  # noqa: B018 - made on first use
        except Exception as exc:  # noqa: BLE001 - said by the first request
            logger.debug("openai client not made ahead: %s", exc)

    # -- discovery ---------------------------------------------------------------------------

    def _secrets(self) -> tuple[str | None, ...]:
        return (self.config.api_key,)

    def _translate(self, exc: Exception) -> BackendError:
        if isinstance(exc, BackendError):  # already ours (GET /models)
            return exc
        where = "openai"
        openai = _sdk()
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc.status_code, _error_message(exc), exc.response.headers)
        url = str(getattr(self._client_obj, "base_url", "") or self.config.base_url or "").rstrip("/")
        at = f"{where} at {url}" if url else where  # a typo'd URL, or the SDK's default, is named
        if isinstance(exc, openai.APITimeoutError):
            return connection_error(exc, secrets=self._secrets(), where=at, timeout=True)
        if isinstance(exc, openai.APIConnectionError):
            return connection_error(exc, secrets=self._secrets(), where=at)
        if isinstance(exc, openai.APIError) and isinstance(exc.body, dict):
            # an error event inside a stream (vLLM: {"error": {"message", "type", "code": 500}}): no HTTP
            # status of its own, so its code says what it is; a server error when it says nothing
            code = exc.body.get("code")
            status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else 500
            return error_for_status(status, exc.message, secrets=self._secrets(), where=where)
        return ServerError(redact(f"{where}: unexpected {type(exc).__name__}: {exc}", *self._secrets()))

    def _status_error(self, status: int, msg: str, headers: Any) -> BackendError:
        """The BackendError of an HTTP error answer (a request's, or ``GET /models``')."""
        if status == 400 and MEDIA_IO_DISABLED.search(msg):
            return _MediaIoRejected(redact(msg, *self._secrets()), status=400)
        if status == 400 and any(k in msg.lower() for k in _RESPONSE_FORMAT_REJECTED):
            return _ResponseFormatRejected(redact(msg, *self._secrets()), status=400)
        base = (self.config.base_url or "").rstrip("/")
        if status == 404 and base and not base.endswith("/v1"):
            msg += f" (is {base} missing /v1? OpenAI-compatible servers serve /v1/chat/completions)"
        elif status in (400, 404) and NO_SUCH_MODEL.search(msg):
            msg += self._served_models_hint()
        return error_for_status(status, msg, secrets=self._secrets(), retry_after=parse_retry_after(headers),
                                where="openai")

    def _served_models_hint(self) -> str:
        """`` (the server serves: a, b)`` after a "no such model" answer (one GET, one attempt), or ""."""
        try:
            if self._models_cache is None:
                self._models_cache = self._get_models()
            names = [str(m.id) for m in self._models_cache]
        except Exception:  # noqa: BLE001 - only a hint: no list, no hint
            return ""
        return f" (the server serves: {', '.join(names[:10])}; choose with --model)" if names else ""

    def _call(self, fn: Any, what: str, *, retry: bool = True) -> Any:
        def once() -> Any:
            try:
                return fn()
            except _caught() as exc:
                raise self._translate(exc) from exc
        return call_with_retries(once, self.config.retry, what=what, cancel=self.cancelled) if retry else once()

    def _list_raw(self, *, retry: bool = True) -> list[Any]:
        """``GET /v1/models`` (asked once, then kept); ``retry=False``: one attempt, for what is only
        nice to know (a server that fails it is not waited for)."""
        if self._models_cache is None:
            try:
                models = self._call(self._get_models, "GET /models", retry=retry)
            except ServerUnreachableError as exc:
                self.unreachable = exc
                raise
            self._models_cache = models
            self.unreachable = None
        return self._models_cache

    def _get_models(self) -> list[Any]:
        """``GET {base_url}/models``' entries (``id``, ``owned_by``, vLLM's ``max_model_len``...), asked
        with the standard library: what a run asks before its first request (the model, the server's
        flavour, its context) then does not wait for the SDK's ~0.5-s import, which overlaps decoding
        instead. Errors are translated as the SDK's are. A client given to the backend is asked instead."""
        if self._injected:  # the caller's client (its transport, headers, proxies) asks
            page = self._client.models.list()
            return list(page.data if hasattr(page, "data") else page)
        import json
        import urllib.error
        import urllib.request

        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        request = urllib.request.Request(f"{base}/models", headers={
            "Authorization": f"Bearer {self.config.api_key or 'EMPTY'}", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout.read) as answer:  # noqa: S310 - http(s) base URL
                body = answer.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            raise self._status_error(exc.code, _message_of(text) or f"HTTP {exc.code}", exc.headers) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, DNS, timeout, a bad URL
            reason = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException) else exc
            timeout = isinstance(reason, TimeoutError) or "timed out" in str(reason)
            raise connection_error(reason, secrets=self._secrets(), where=f"openai at {base}", timeout=timeout) from exc
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ServerError(f"openai at {base}: GET /models did not answer JSON") from exc
        data = doc.get("data") if isinstance(doc, dict) else doc
        return [SimpleNamespace(**entry) for entry in data or () if isinstance(entry, dict) and "id" in entry]

    def list_models(self) -> list[str]:
        return [str(m.id) for m in self._list_raw()]

    @property
    def sends_media_io_fps(self) -> bool:
        """Whether requests still carry vLLM's per-request fps (False once the server refused it: its
        defaults then apply, e.g. a 32-frame cut of JPEG lists, which the estimates follow)."""
        return self._media_io_ok

    def context_length(self) -> int | None:
        """``max_model_len`` of the configured (or the only) model in ``GET /v1/models``: vLLM says it,
        and servers built like it (one GET when the flavour was given, not detected); DashScope's
        compatible mode is not asked. None when unknown."""
        if self._assumed_context is not None:
            return self._assumed_context
        # vLLM says it; so do other servers built like it (SGLang, a vLLM behind a proxy that hides
        # owned_by): a generic server's list is read too. DashScope's compatible mode says nothing
        if self._flavour == "dashscope-compat" or (self._flavour is None and self._models_cache is None):
            return None
        try:
            entries = self._list_raw(retry=False)  # nice to know: a server that fails it is not waited for
        except BackendError as exc:
            logger.debug("no model list for the context length: %s", exc)
            return None
        wanted = self._model or self.config.model
        chosen = [m for m in entries if str(m.id) == wanted] if wanted else entries
        if len(chosen) != 1:
            return None
        extra = getattr(chosen[0], "model_extra", None) or {}
        value = getattr(chosen[0], "max_model_len", None) or extra.get("max_model_len")
        return int(value) if isinstance(value, int) and value > 0 else None

    def server_facts(self) -> dict[str, object]:
        facts: dict[str, object] = {"flavour": self._flavour, "model": self._model}
        if self._models_cache is not None or self._assumed_context is not None:
            facts["context_length"] = self.context_length()  # known: no request
        return facts

    def assume_server_facts(self, facts: dict[str, object]) -> None:
        with self._lock:
            flavour, model, context = facts.get("flavour"), facts.get("model"), facts.get("context_length")
            if self._flavour is None and flavour in ("vllm", "generic", "dashscope-compat"):
                self._flavour = flavour
            if self._model is None and isinstance(model, str) and model:
                self._model = model
            if isinstance(context, int) and context > 0 and self._models_cache is None:
                self._assumed_context = context

    @property
    def model(self) -> str:
        """The configured model, else the server's only model (GET /v1/models)."""
        with self._lock:
            if self._model is None:
                names = self.list_models()
                if len(names) != 1:
                    listing = ", ".join(names) if names else "none"
                    raise ConfigError(f"the server serves {len(names)} models ({listing}): choose one with --model")
                self._model = names[0]
                logger.info("using the server's only model %s", self._model)
            return self._model

    @property
    def flavour(self) -> Flavour:
        """vllm / dashscope-compat / generic: from config, the URL, or GET /v1/models owned_by."""
        with self._lock:
            if self._flavour is None:
                try:
                    owners = {str(getattr(m, "owned_by", "") or "").lower() for m in self._list_raw()}
                except BackendError as exc:
                    if isinstance(exc, ServerError) and exc.status in (404, 405):
                        owners = set()
                    else:
                        raise
                self._flavour = "vllm" if "vllm" in owners else "generic"
                logger.info("server flavour: %s", self._flavour)
            return self._flavour

    def identify_server(self) -> bool:
        self.flavour  # noqa: B018 - resolves it (one GET /v1/models when the config leaves it open)
        return True

    @property
    def default_mode(self) -> PayloadMode:
        return DEFAULT_MODES[self._flavour or "vllm"]

    def mode_for(self, request: ChatRequest) -> PayloadMode:
        return request.mode or self.config.mode or DEFAULT_MODES[self.flavour]

    # -- requests ----------------------------------------------------------------------------

    def encode_options(self, request: ChatRequest) -> EncodeOptions:
        return EncodeOptions.for_shrink(
            request.shrink,
            max_data_uri_bytes=self.config.max_data_uri_bytes,
            burn_timestamps=self.config.burn_timestamps,
            media_io_fps=self._media_io_ok,
        )

    def stream_encoding(self, request: ChatRequest) -> tuple[Flavour, PayloadMode, EncodeOptions] | None:
        return self.flavour, self.mode_for(request), self.encode_options(request)

    def build(self, request: ChatRequest) -> BuiltPayload:
        return build_openai(request, self.flavour, self.mode_for(request), self.encode_options(request))

    def payload_settings(self, request: ChatRequest) -> tuple[object, ...]:
        return (self.flavour, self.mode_for(request), request.shrink, self._media_io_ok)

    def _kwargs(self, request: ChatRequest, payload: BuiltPayload) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": payload.messages,
            "max_tokens": request.max_tokens or self.config.max_tokens,
            "temperature": self.config.temperature,
            "seed": self.config.seed,
        }
        if request.json_mode and self._response_format_ok:
            kwargs["response_format"] = {"type": "json_object"}
        if payload.extra_body:
            kwargs["extra_body"] = payload.extra_body
        return kwargs

    def _with_fallbacks(self, item: ChatRequest | PreparedRequest, send: Any) -> tuple[Any, BuiltPayload]:
        """Build (or take the prepared payload) and send; on vLLM's media_io 400 or a response_format
        400, adapt and resend.

        The fallbacks are remembered for the rest of the run (this backend instance) and are safe when
        several threads hit the same refusal at once: each resends what it sent, minus the refused part.
        A prepared payload whose frames were released and that the media_io fallback outdates raises
        StalePayloadError (the caller decodes the window again)."""
        for _ in range(3):
            request, payload = self.payload_for(item)
            kwargs = self._kwargs(request, payload)
            try:
                return send(kwargs), payload
            except _MediaIoRejected:
                if "media_io_kwargs" not in payload.extra_body:
                    raise
                if self._media_io_ok:
                    logger.warning("server refuses per-request media_io_kwargs (start vLLM with "
                                   "--trust-request-mm-kwargs to send the real fps); falling back to its "
                                   "default sampling with retimed clips for the rest of this run")
                self._media_io_ok = False
                item = self.without_payload(item)  # never resend a refused payload
            except _ResponseFormatRejected:
                if "response_format" not in kwargs:
                    raise
                if self._response_format_ok:
                    logger.warning("server refuses response_format json_object; asking for JSON in the prompt only")
                self._response_format_ok = False
        raise ServerError("openai: request kept being rejected")

    def chat(self, request: ChatRequest | PreparedRequest) -> ChatResponse:
        def send(kwargs: dict[str, Any]) -> Any:
            return self._call(lambda: self._client.chat.completions.create(**kwargs), "chat request")

        resp, payload = self._with_fallbacks(request, send)
        text = ""
        if resp.choices:
            text = resp.choices[0].message.content or ""
        usage = None
        if resp.usage is not None:
            usage = Usage(int(resp.usage.prompt_tokens or 0), int(resp.usage.completion_tokens or 0))
        self.last_usage = usage
        self.last_time_scales = payload.time_scales
        return ChatResponse(text=text, usage=usage, model=getattr(resp, "model", None) or self._model,
                            time_scale=payload.time_scale, payload=payload.shape,
                            extra={"media_bytes": payload.media_bytes, "estimated_visual_tokens": payload.visual_tokens})

    def chat_stream(self, request: ChatRequest | PreparedRequest) -> Iterator[str]:
        """Text deltas; opening the stream is retried, a drop mid-answer raises ServerUnreachableError."""

        def send(kwargs: dict[str, Any]) -> Any:
            kwargs = {**kwargs, "stream": True, "stream_options": {"include_usage": True}}
            return self._call(lambda: self._client.chat.completions.create(**kwargs), "chat stream")

        stream, payload = self._with_fallbacks(request, send)
        self.last_time_scale = payload.time_scale or 1.0
        self.last_time_scales = payload.time_scales
        self.last_usage = None
        finished = False
        received = 0
        try:
            for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    u = chunk.usage
                    self.last_usage = Usage(int(u.prompt_tokens or 0), int(u.completion_tokens or 0))
                for choice in chunk.choices or []:
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        received += len(delta)
                        yield delta
                    if choice.finish_reason:
                        finished = True
        except _caught() as exc:
            err = self._translate(exc)
            raise type(err)(f"stream failed after {received} characters: {err}", status=err.status) from exc
        except Exception as exc:  # httpx errors surface raw while iterating a stream
            raise ServerUnreachableError(
                redact(f"openai: stream dropped after {received} characters ({type(exc).__name__}: {exc})",
                       *self._secrets())) from exc
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if not finished:
            raise ServerUnreachableError(f"openai: stream ended without finishing after {received} characters")

    def estimate_tokens(self, request: ChatRequest) -> int:
        flavour: Flavour = self._flavour or "vllm"
        mode = request.mode or self.config.mode or DEFAULT_MODES[flavour]
        return estimate_request_tokens(request, flavour, mode, self.encode_options(request))

    def close(self) -> None:
        if self._client_obj is not None:  # never made: nothing to close
            self._client_obj.close()


def _body_message(body: Any) -> str | None:
    """The message of an error answer's JSON body (``{"error": {"message": ...}}``, ``{"message": ...}``)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg")
            if msg:
                return str(msg)
        elif isinstance(err, str):
            return err
        if "message" in body:
            return str(body["message"])
    return None


def _message_of(text: str) -> str:
    """The message of an error answer's body text (JSON or not)."""
    import json

    try:
        return _body_message(json.loads(text)) or text.strip()
    except ValueError:
        return text.strip()


def _error_message(exc: openai.APIStatusError) -> str:
    msg = _body_message(exc.body)
    if msg is not None:
        return msg
    try:
        text = exc.response.text
    except Exception:  # pragma: no cover - streamed bodies
        text = ""
    return text or str(exc.message)
