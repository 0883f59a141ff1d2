"""Model I/O: backends (OpenAI-compatible, DashScope), payload shapes, prompts, per-window analysis."""

from __future__ import annotations

from vidline.errors import ConfigError
from vidline.models.base import Backend, ChatRequest, ChatResponse, ImagePart, TextPart, VideoPart
from vidline.models.config import ModelConfig, RetryPolicy, Timeout, resolve_model_config


def make_backend(config: ModelConfig) -> Backend:
    """The backend for ``config.backend`` ("openai" or "dashscope")."""
    if config.backend == "openai":
        from vidline.models.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if config.backend == "dashscope":
        from vidline.models.dashscope_backend import DashScopeBackend

        return DashScopeBackend(config)
    raise ConfigError(f"unknown model backend {config.backend!r}: choose openai or dashscope")


def __getattr__(name: str) -> object:
    if name == "WindowAnalyzer":
        from vidline.models.window import WindowAnalyzer

        return WindowAnalyzer
    raise AttributeError(f"module 'vidline.models' has no attribute {name!r}")


__all__ = [
    "Backend",
    "ChatRequest",
    "ChatResponse",
    "ImagePart",
    "ModelConfig",
    "RetryPolicy",
    "TextPart",
    "Timeout",
    "VideoPart",
    "WindowAnalyzer",
    "make_backend",
    "resolve_model_config",
]
