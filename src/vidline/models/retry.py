"""The one place where requests are retried: exponential backoff with jitter, honouring Retry-After.

Backends translate every SDK failure into a :class:`~vidline.errors.BackendError` with
:func:`error_for_status` / :func:`connection_error`; :func:`call_with_retries` then retries the
retryable ones (408, 409, 429, 5xx, connection errors and timeouts) and lets the rest through at
once (401/403 authentication, 413 / context too long, other 4xx).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import TypeVar

from vidline.errors import (
    AuthenticationError,
    BackendError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ServerUnreachableError,
    redact,
)
from vidline.log import logger
from vidline.models.config import RetryPolicy

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 409, 429})
MAX_RETRY_AFTER = 120.0

# What servers say when a prompt is too long (vLLM, DashScope, OpenAI) or a body/data URI too big.
_TOO_LARGE = re.compile(
    r"maximum context length|context length|too long|longer than the maximum|maximum model length"
    r"|range of input length|input length|max bytes|too large|exceed\w* (the )?(limit|max|size|length)",
    re.IGNORECASE,
)
MEDIA_IO_DISABLED = re.compile(r"media_io_kwargs are disabled|trust-request-mm-kwargs|media_io_kwargs", re.I)


# what servers say for a model they do not serve (vLLM: "The model `x` does not exist.", DashScope:
# 400 "Model not exist.", OpenAI: model_not_found)
NO_SUCH_MODEL = re.compile(r"model[^.]{0,80}(?:not exist|does not exist|not found)|model_not_found", re.I)

def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a ``Retry-After`` (or ``retry-after-ms``) header, or None."""
    if not headers:
        return None
    lower = {str(k).lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def error_for_status(
    status: int,
    message: str,
    *,
    secrets: tuple[str | None, ...] = (),
    retry_after: float | None = None,
    where: str = "",
) -> BackendError:
    """The BackendError for an HTTP status and the server's message (secrets redacted)."""
    message = redact(" ".join(str(message).split()), *secrets)
    if len(message) > 400:
        message = message[:400] + "..."
    prefix = f"{where}: " if where else ""
    err: BackendError
    if status in (401, 403):
        err = AuthenticationError(
            f"{prefix}authentication failed (HTTP {status}): check the API key / --api-key. Server said: {message}",
            status=status,
        )
    elif status == 413 or (status == 400 and _TOO_LARGE.search(message)):
        err = PayloadTooLargeError(f"{prefix}request too large (HTTP {status}): {message}", status=status)
    elif status == 429:
        err = RateLimitError(f"{prefix}rate limited (HTTP 429): {message}", status=status, retryable=True)
    elif status in RETRYABLE_STATUSES or status >= 500:
        err = ServerError(f"{prefix}server error (HTTP {status}): {message}", status=status, retryable=True)
    else:
        err = ServerError(f"{prefix}request rejected (HTTP {status}): {message}", status=status)
    setattr(err, "retry_after", retry_after)  # noqa: B010 - read back with getattr
    return err


def connection_error(exc: BaseException, *, secrets: tuple[str | None, ...] = (), where: str = "",
                     timeout: bool = False) -> ServerUnreachableError:
    what = "timed out" if timeout else "unreachable"
    detail = redact(" ".join(f"{type(exc).__name__}: {exc}".split()), *secrets)
    prefix = f"{where}: " if where else ""
    return ServerUnreachableError(f"{prefix}server {what} ({detail})", retryable=True)


def backoff_delay(attempt: int, policy: RetryPolicy, retry_after: float | None,
                  rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based)."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    delay = min(policy.backoff_max, policy.backoff_base * (2**attempt))
    return delay * (1.0 + policy.jitter * rng())


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str = "request",
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
    cancel: threading.Event | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying retryable BackendErrors with backoff. Once ``cancel``
    is set (Ctrl-C: the run stops sending), the last error is raised instead of waiting or retrying."""
    attempt = 0
    while True:
        try:
            return fn()
        except BackendError as exc:
            if not exc.retryable or attempt >= policy.max_retries or (cancel is not None and cancel.is_set()):
                if exc.retryable and attempt:
                    exc.args = (f"{exc.args[0] if exc.args else exc} (after {attempt + 1} attempts)",)
                raise
            delay = backoff_delay(attempt, policy, getattr(exc, "retry_after", None), rng)
            logger.info("%s failed (%s); retry %d/%d in %.2fs", what, exc, attempt + 1, policy.max_retries, delay)
            if cancel is not None and sleep is time.sleep:
                if cancel.wait(delay):
                    raise
            else:
                sleep(delay)
            attempt += 1
