"""The vidline exception tree. Every error the library raises on purpose derives from VidlineError.

    VidlineError
    ├── ConfigError              bad options or missing configuration (no model, bad flag values)
    ├── VideoError               anything about an input file
    │   ├── VideoOpenError       cannot open: missing path, directory, 0-byte, not a media file
    │   │   └── NoVideoStreamError   a media file without a video stream (audio-only)
    │   └── DecodeError          decoding failed past the point of recovery
    ├── BackendError             talking to a model server (attributes: status, retryable)
    │   ├── ServerUnreachableError   connection refused / DNS / timeout after retries
    │   ├── AuthenticationError  401 / 403: fails fast, never retried
    │   ├── RateLimitError       429 after retries
    │   ├── PayloadTooLargeError 413 or context-length answers
    │   ├── StalePayloadError    a pre-encoded payload that can no longer be sent (handled inside)
    │   └── ServerError          5xx after retries, other unexpected statuses
    ├── AnswerParseError         a model answer that cannot be parsed into events
    └── CacheError               cache directory unusable

Errors are translated at the boundary (``raise ... from exc``) and their ``str()`` is a single line
suitable for a CLI message. API keys never appear in messages.
"""

from __future__ import annotations

import math
import numbers


def _restore(cls: type[VidlineError], args: tuple[object, ...], state: dict[str, object]) -> VidlineError:
    """Unpickle a ``VidlineError`` without calling its subclass's ``__init__`` (whose arguments differ
    from ``args``)."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class VidlineError(Exception):
    """Base class of every error vidline raises on purpose. Picklable with its attributes (a decode
    worker process hands its errors to the run)."""

    exit_code: int = 1

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))

    def __str__(self) -> str:
        # Always one line: the CLI prints str(exc) as its only output on error.
        return " ".join(super().__str__().split())


class ConfigError(VidlineError):
    exit_code = 2


class VideoError(VidlineError):
    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VideoOpenError(VideoError):
    pass


class NoVideoStreamError(VideoOpenError):
    pass


class DecodeError(VideoError):
    pass


class UnsupportedVideoError(VideoError):
    """A readable video that a model cannot take (a frame over Qwen's 200:1 aspect limit)."""


class BackendError(VidlineError):
    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        self.status = status
        self.retryable = retryable
        super().__init__(message)


class ServerUnreachableError(BackendError):
    pass


class AuthenticationError(BackendError):
    pass


class RateLimitError(BackendError):
    pass


class PayloadTooLargeError(BackendError):
    pass


class StalePayloadError(BackendError):
    """A payload encoded ahead of time cannot be sent (a fallback changed the shape, or a clip
    streamed while decoding is over the data-URI limit) and its frames are gone: the caller decodes
    the window again and rebuilds it."""


class ServerError(BackendError):
    pass


class AnswerParseError(VidlineError):
    def __init__(self, message: str, *, raw: str = "") -> None:
        self.raw = raw
        super().__init__(message)


class CacheError(VidlineError):
    pass


def require_number(name: str, value: object, *, minimum: float | None = None, above: float | None = None,
                   maximum: float | None = None, integer: bool = False) -> None:
    """ConfigError naming ``name`` unless ``value`` is a finite real number (a whole one with
    ``integer``; numpy scalars count, bool does not) that is ``>= minimum``, ``> above`` and
    ``<= maximum``."""
    ok = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if ok and not isinstance(value, bool) and math.isfinite(value):  # type: ignore[arg-type]
        number = float(value)  # type: ignore[arg-type]
        if ((minimum is None or number >= minimum) and (above is None or number > above)
                and (maximum is None or number <= maximum)):
            return
    rule = " and ".join(b for b in (f">= {minimum:g}" if minimum is not None else "",
                                    f"> {above:g}" if above is not None else "",
                                    f"<= {maximum:g}" if maximum is not None else "") if b)
    kind = "a whole number" if integer else "a finite number"
    raise ConfigError(f"{name} must be {rule} ({kind}), got {value!r}" if rule else f"{name} must be {kind}, got {value!r}")


def redact(text: str, *secrets: str | None) -> str:
    """Replace every occurrence of each non-empty secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
