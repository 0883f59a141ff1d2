"""DashScope's native API through the ``dashscope`` SDK (``MultiModalConversation``).

Notes from the SDK source (dashscope 2.x):

* Base URL: ``base_address=`` per call wins over ``dashscope.base_http_api_url`` (read on every
  call; initialised from ``DASHSCOPE_HTTP_BASE_URL`` at import). We always pass ``base_address``
  (config.base_url, else ``DASHSCOPE_HTTP_BASE_URL``, else the SDK default), so nothing global is
  mutated.
* ``_preprocess_messages`` uploads any ``file://`` or existing local path in ``image``/``video``/
  ``text`` items to OSS; ``data:`` URIs are left untouched. vidline only ever sends data URIs.
* Failures come back as responses with ``status_code``/``code``/``message`` (not exceptions);
  network problems raise ``requests`` exceptions. Both are translated to BackendError here.
* Streaming: ``stream=True, incremental_output=True`` (SSE, ``X-DashScope-SSE: enable``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import requests

from vidline.errors import BackendError, ConfigError, ServerError, ServerUnreachableError, redact
from vidline.models.base import Backend, ChatRequest, ChatResponse, PreparedRequest
from vidline.models.config import ModelConfig, PayloadMode
from vidline.models.payload import (
    DEFAULT_MODES,
    BuiltPayload,
    EncodeOptions,
    Flavour,
    build_dashscope,
    estimate_request_tokens,
)
from vidline.models.retry import call_with_retries, connection_error, error_for_status, parse_retry_after
from vidline.types import Usage

DEFAULT_DASHSCOPE_MODEL = "qwen-vl-max"


class DashScopeBackend(Backend):
    name = "dashscope"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        import dashscope

        self._dashscope = dashscope
        self.api_key = config.api_key or os.environ.get("DASHSCOPE_API_KEY")
        if not self.api_key:
            raise ConfigError("no DashScope API key: set DASHSCOPE_API_KEY or pass --api-key")
        self.base_url = (config.base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL")
                         or dashscope.base_http_api_url)
        self.model = config.model or DEFAULT_DASHSCOPE_MODEL
        self.last_usage: Usage | None = None

    @property
    def default_mode(self) -> PayloadMode:
        return DEFAULT_MODES["dashscope"]

    def _secrets(self) -> tuple[str | None, ...]:
        return (self.api_key,)

    def encode_options(self, request: ChatRequest) -> EncodeOptions:
        return EncodeOptions.for_shrink(request.shrink, max_data_uri_bytes=self.config.max_data_uri_bytes,
                                        burn_timestamps=self.config.burn_timestamps)

    def stream_encoding(self, request: ChatRequest) -> tuple[Flavour, PayloadMode, EncodeOptions] | None:
        return "dashscope", self.effective_mode(request), self.encode_options(request)

    def build(self, request: ChatRequest) -> BuiltPayload:
        return build_dashscope(request, self.effective_mode(request), self.encode_options(request))

    def _call_kwargs(self, request: ChatRequest, payload: BuiltPayload) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": payload.messages,
            "api_key": self.api_key,
            "base_address": self.base_url,
            "max_tokens": request.max_tokens or self.config.max_tokens,
            "temperature": self.config.temperature,
            "seed": self.config.seed,
            "result_format": "message",
            "request_timeout": self.config.timeout.read,
        }

    def _error(self, resp: Any) -> BackendError:
        status = int(resp.status_code or 500)
        msg = f"{resp.code or ''}: {resp.message or ''}".strip(": ")
        return error_for_status(status, msg, secrets=self._secrets(),
                                retry_after=parse_retry_after(getattr(resp, "headers", None)), where="dashscope")

    def _translate_exc(self, exc: Exception) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        at = f"dashscope at {self.base_url}" if self.base_url else "dashscope"
        if isinstance(exc, requests.exceptions.Timeout):
            return connection_error(exc, secrets=self._secrets(), where=at, timeout=True)
        if isinstance(exc, requests.exceptions.ConnectionError):
            return connection_error(exc, secrets=self._secrets(), where=at)
        return ServerError(redact(f"dashscope: {type(exc).__name__}: {exc}", *self._secrets()))

    def _send(self, kwargs: dict[str, Any]) -> Any:
        from dashscope import MultiModalConversation

        def once() -> Any:
            try:
                resp: Any = MultiModalConversation.call(**kwargs)
            except Exception as exc:
                raise self._translate_exc(exc) from exc
            if not kwargs.get("stream") and resp.status_code != HTTPStatus.OK:
                raise self._error(resp)
            return resp

        return call_with_retries(once, self.config.retry, what="dashscope request", cancel=self.cancelled)

    def chat(self, request: ChatRequest | PreparedRequest) -> ChatResponse:
        request, payload = self.payload_for(request)
        resp = self._send(self._call_kwargs(request, payload))
        text = _response_text(resp)
        usage = _usage(resp)
        self.last_usage = usage
        self.last_time_scales = payload.time_scales
        return ChatResponse(text=text, usage=usage, model=self.model, time_scale=payload.time_scale,
                            payload=payload.shape,
                            extra={"media_bytes": payload.media_bytes, "estimated_visual_tokens": payload.visual_tokens})

    def chat_stream(self, request: ChatRequest | PreparedRequest) -> Iterator[str]:
        """Text deltas (SSE, incremental output); opening is retried, a drop mid-answer raises."""
        from dashscope import MultiModalConversation

        request, payload = self.payload_for(request)
        self.last_time_scale = payload.time_scale or 1.0
        self.last_time_scales = payload.time_scales
        kwargs = {**self._call_kwargs(request, payload), "stream": True, "incremental_output": True}
        self.last_usage = None
        received = 0
        finished = False

        def open_stream() -> tuple[Any, Iterator[Any]]:
            # the SDK sends the HTTP request lazily, on the first next()
            try:
                gen: Any = MultiModalConversation.call(**kwargs)
                it = iter(gen)
                head = next(it, None)
            except Exception as exc:
                raise self._translate_exc(exc) from exc
            if head is not None and head.status_code != HTTPStatus.OK:
                raise self._error(head)
            return head, it

        first, iterator = call_with_retries(open_stream, self.config.retry, what="dashscope stream",
                                            cancel=self.cancelled)
        try:
            chunk = first
            while chunk is not None:
                if chunk.status_code != HTTPStatus.OK:
                    raise self._error(chunk)
                delta = _response_text(chunk)
                if delta:
                    received += len(delta)
                    yield delta
                u = _usage(chunk)
                if u is not None:
                    self.last_usage = u
                if _finish_reason(chunk) not in (None, "", "null"):
                    finished = True
                chunk = next(iterator, None)
        except BackendError as exc:
            raise type(exc)(f"dashscope stream failed after {received} characters: {exc}", status=exc.status) from exc
        except Exception as exc:
            raise ServerUnreachableError(redact(
                f"dashscope: stream dropped after {received} characters ({type(exc).__name__}: {exc})",
                *self._secrets())) from exc
        if not finished:
            raise ServerUnreachableError(f"dashscope: stream ended without finishing after {received} characters")

    def list_models(self) -> list[str]:
        return [self.model]

    def estimate_tokens(self, request: ChatRequest) -> int:
        return estimate_request_tokens(request, "dashscope", self.effective_mode(request), self.encode_options(request))


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    try:
        return obj[key]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, key, None)


def _first_choice(resp: Any) -> Any:
    choices = _get(_get(resp, "output"), "choices")
    return choices[0] if choices else None


def _response_text(resp: Any) -> str:
    choice = _first_choice(resp)
    if choice is None:
        out = _get(resp, "output")
        return str(_get(out, "text") or "")
    content = _get(_get(choice, "message"), "content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(_get(c, "text") or "") for c in content if _get(c, "text"))
    return ""


def _finish_reason(resp: Any) -> str | None:
    choice = _first_choice(resp)
    fr = _get(choice, "finish_reason") if choice is not None else _get(_get(resp, "output"), "finish_reason")
    return None if fr is None else str(fr)


def _usage(resp: Any) -> Usage | None:
    u = _get(resp, "usage")
    if not u:
        return None
    try:
        inp = _get(u, "input_tokens")
        out = _get(u, "output_tokens")
    except Exception:  # pragma: no cover
        return None
    if inp is None and out is None:
        return None
    return Usage(int(inp or 0), int(out or 0))
