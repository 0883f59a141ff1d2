"""Settings objects for talking to a model server (pure data, no I/O)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from vidline.errors import ConfigError, require_number

BackendName = Literal["openai", "dashscope"]
PayloadMode = Literal["video", "frames"]
ServerFlavour = Literal["auto", "vllm", "dashscope-compat", "generic"]

DASHSCOPE_DATA_URI_LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True)
class Timeout:
    """Per-request timeouts in seconds."""

    connect: float = 10.0
    read: float = 180.0

    def __post_init__(self) -> None:
        require_number("timeout.connect", self.connect, above=0)
        require_number("timeout.read", self.read, above=0)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and jitter; ``Retry-After`` wins when the server sends it."""

    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.25  # fraction of the delay added at random

    def __post_init__(self) -> None:
        require_number("retries", self.max_retries, minimum=0, integer=True)
        require_number("backoff_base", self.backoff_base, minimum=0)
        require_number("backoff_max", self.backoff_max, minimum=0)
        require_number("jitter", self.jitter, minimum=0)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to reach one model. ``api_key`` is never logged or serialised."""

    backend: BackendName
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    mode: PayloadMode | None = None  # None: the backend's default (see README's matrix)
    server: ServerFlavour = "auto"  # how an OpenAI-compatible server wants frame lists
    burn_timestamps: bool = False
    timeout: Timeout = field(default_factory=Timeout)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 4
    max_tokens: int = 1024
    temperature: float = 0.0
    seed: int = 1234
    send_media_io_fps: bool = True  # vLLM: extra_body media_io_kwargs.video.fps (falls back on 400)
    max_data_uri_bytes: int = DASHSCOPE_DATA_URI_LIMIT
    system_prompt: str | None = None
    language: str | None = None

    def __post_init__(self) -> None:
        """Refuse settings the requests could not honour (a mistyped mode would send no media at all):
        ``ConfigError`` naming the field. A bare number of seconds for ``timeout`` is the read timeout."""
        for name, kind in (("backend", BackendName), ("mode", PayloadMode), ("server", ServerFlavour)):
            value = getattr(self, name)
            if not (value is None and name == "mode") and value not in get_args(kind):
                choices = ", ".join(repr(c) for c in get_args(kind))
                raise ConfigError(f"{name} must be one of {choices}, not {value!r}")
        for name in ("base_url", "api_key", "model", "system_prompt", "language"):
            if not isinstance(getattr(self, name), (str, type(None))):
                raise ConfigError(f"{name} must be a string, not {type(getattr(self, name)).__name__}")
        given = timeout = self.timeout
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            timeout = Timeout(read=float(timeout))
            object.__setattr__(self, "timeout", timeout)
        if not isinstance(timeout, Timeout):
            raise ConfigError(f"timeout must be a positive number of seconds or a Timeout, got {given!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy, got {self.retry!r}")
        for name in ("concurrency", "max_tokens", "max_data_uri_bytes"):
            require_number(name, getattr(self, name), minimum=1, integer=True)
        require_number("temperature", self.temperature, minimum=0)
        require_number("seed", self.seed, integer=True)

    def with_(self, **changes: object) -> ModelConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    def identity(self) -> dict[str, object]:
        """What distinguishes answers of this model (for cache keys); excludes secrets and timeouts."""
        return {
            "backend": self.backend,
            "base_url": self.base_url,
            "model": self.model,
            "mode": self.mode,
            "server": self.server,
            "burn_timestamps": self.burn_timestamps,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "system_prompt": self.system_prompt,
            "language": self.language,
        }


def resolve_model_config(
    backend: str = "auto",
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    env: Mapping[str, str] | None = None,
    **options: object,
) -> ModelConfig | None:
    """Pick the model backend from flags, falling back to the SDKs' own env vars.

    Returns ``None`` when ``backend`` is ``"auto"`` and no model is configured (the caller then uses
    the offline ``motion`` backend), or when ``backend`` is an offline one (``"motion"``, ``"scenes"``).
    """
    env = os.environ if env is None else env
    if backend in ("motion", "scenes"):
        return None
    if backend not in ("auto", "openai", "dashscope"):
        raise ConfigError(f"unknown backend {backend!r}: choose auto, openai, dashscope, motion or scenes")
    if backend == "auto":
        if base_url or api_key:
            backend = "dashscope" if (base_url and "/api/v1" in base_url and "compatible" not in base_url) else "openai"
        elif env.get("OPENAI_BASE_URL"):
            backend = "openai"
        # OPENAI_API_KEY alone is no Qwen-VL server: it points at api.openai.com, and many shells
        # export it for other tools; a model needs OPENAI_BASE_URL (or --base-url) too
        elif env.get("DASHSCOPE_API_KEY") or env.get("DASHSCOPE_HTTP_BASE_URL"):
            backend = "dashscope"
        elif model:  # a model name alone says nothing about the server: env first, then OpenAI
            backend = "openai"
        else:
            return None
    if backend == "openai":
        base_url = base_url or env.get("OPENAI_BASE_URL")
        api_key = api_key or env.get("OPENAI_API_KEY")
    else:
        base_url = base_url or env.get("DASHSCOPE_HTTP_BASE_URL")
        api_key = api_key or env.get("DASHSCOPE_API_KEY")
    return ModelConfig(backend=backend, base_url=base_url, api_key=api_key, model=model, **options)  # type: ignore[arg-type]
