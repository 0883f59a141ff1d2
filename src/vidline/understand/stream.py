"""Streaming an answer with retries from scratch, without ever showing text twice.

A stream that breaks mid-answer (connection drop, 5xx) is retried from scratch, up to
``RetryPolicy.max_retries`` times with backoff. The consumer sees each character once:

* While the new attempt repeats what was already delivered (the usual case: requests run at
  temperature 0 with a fixed seed), that prefix is swallowed and the stream continues seamlessly
  where it broke.
* If the new attempt *diverges* from the delivered text, ``on_restart(delivered_text)`` is called
  (the CLI prints ``[stream interrupted, retrying]`` on stderr and a separator) and the new attempt
  is then delivered from its beginning. Without an ``on_restart`` callback the stream raises
  :class:`IncompleteAnswerError` instead, since it cannot take back text it has yielded.
* When retries are exhausted (or the error is not retryable) :class:`IncompleteAnswerError` is
  raised, carrying the partial text. A partial answer is never presented as complete: ``complete``
  stays False and ``text`` is only set once the model finished.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

from vidline.errors import (
    AuthenticationError,
    BackendError,
    PayloadTooLargeError,
    ServerUnreachableError,
)
from vidline.log import logger
from vidline.models.config import RetryPolicy

_TRANSPORT_MODULES = ("httpx", "httpcore", "openai", "requests", "urllib3", "http", "aiohttp", "dashscope", "ssl")


class IncompleteAnswerError(BackendError):
    """The answer stream broke and could not be completed; ``partial`` holds what arrived."""

    exit_code = 3

    def __init__(self, message: str, *, partial: str = "", status: int | None = None) -> None:
        super().__init__(message, status=status, retryable=False)
        self.partial = partial


def _retryable(exc: BaseException, *, got_text: bool) -> bool:
    """Whether a failed attempt is worth another one from scratch.

    Backends already retry *opening* a stream (``call_with_retries``), so an error that is still marked
    retryable and came before any text of this attempt is final. A drop mid-answer (connection lost,
    stream ended without finishing, 5xx/408/409/429 while streaming) is retried.
    """
    if isinstance(exc, (IncompleteAnswerError, AuthenticationError, PayloadTooLargeError)):
        return False
    if isinstance(exc, BackendError):
        if exc.retryable and not got_text:
            return False
        if isinstance(exc, ServerUnreachableError) or exc.retryable:
            return True
        return exc.status is not None and (exc.status >= 500 or exc.status in (408, 409, 429))
    mod = type(exc).__module__.split(".")[0]
    return isinstance(exc, (OSError, TimeoutError)) or mod in _TRANSPORT_MODULES


class AnswerStream:
    """An iterator of text chunks over ``attempt()`` streams, retried from scratch on failure."""

    def __init__(
        self,
        attempt: Callable[[], Iterator[str]],
        *,
        retry: RetryPolicy | None = None,
        on_restart: Callable[[str], None] | None = None,
        on_complete: Callable[[str], None] | None = None,
        on_retry: Callable[[int, BaseException], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._attempt = attempt
        self._retry = retry or RetryPolicy()
        self._on_restart = on_restart
        self._on_complete = on_complete
        self._on_retry = on_retry
        self._sleep = sleep
        self._gen = self._run()
        self.complete = False
        self.text: str | None = None  # the whole answer, once complete
        self.delivered = ""  # what the consumer has been given so far
        self.restarts = 0  # attempts that failed mid-way and were retried

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def read(self) -> str:
        """Consume the rest of the stream and return the whole answer."""
        for _ in self:
            pass
        assert self.text is not None
        return self.text

    def _run(self) -> Iterator[str]:
        failures = 0
        while True:
            current = ""
            replaying = bool(self.delivered)
            try:
                for delta in self._attempt():
                    if not delta:
                        continue
                    current += delta
                    if replaying:
                        if len(current) <= len(self.delivered) and self.delivered.startswith(current):
                            continue  # the retry repeats what the consumer already has
                        if current.startswith(self.delivered):
                            replaying = False
                            new, self.delivered = current[len(self.delivered):], current
                            yield new
                            continue
                        self._diverged(current)
                        replaying = False
                        self.delivered = current
                        yield current
                        continue
                    self.delivered = current
                    yield delta
                if replaying and current != self.delivered:
                    # the retry finished shorter than (or different from) what was shown already
                    self._diverged(current)
                    self.delivered = current
                    if current:
                        yield current
            except IncompleteAnswerError:
                raise
            except Exception as exc:
                if not _retryable(exc, got_text=bool(current)):
                    if isinstance(exc, BackendError) and not self.delivered:
                        raise
                    raise IncompleteAnswerError(
                        f"answer incomplete: {exc}", partial=self.delivered,
                        status=getattr(exc, "status", None)) from exc
                if failures >= self._retry.max_retries:
                    raise IncompleteAnswerError(
                        f"answer incomplete: the stream failed {failures + 1} times ({exc})",
                        partial=self.delivered, status=getattr(exc, "status", None)) from exc
                delay = min(self._retry.backoff_max, self._retry.backoff_base * (2**failures))
                delay *= 1.0 + self._retry.jitter * random.random()
                retry_after = getattr(exc, "retry_after", None)
                if isinstance(retry_after, (int, float)):
                    delay = float(retry_after)
                failures += 1
                if self.delivered:
                    self.restarts += 1
                logger.info("answer stream failed after %d characters (%s); retry %d/%d in %.2fs",
                            len(current), exc, failures, self._retry.max_retries, delay)
                if self._on_retry is not None:
                    self._on_retry(failures, exc)
                self._sleep(delay)
                continue
            self.complete = True
            self.text = current
            if self._on_complete is not None:
                self._on_complete(current)
            return

    def _diverged(self, current: str) -> None:
        if self._on_restart is None:
            raise IncompleteAnswerError(
                "answer incomplete: the stream broke and the retried answer differs from the text "
                "already streamed (pass on_restart= to receive a restarted answer)",
                partial=self.delivered)
        logger.info("retried answer differs from the streamed text; restarting the output")
        self._on_restart(self.delivered)
