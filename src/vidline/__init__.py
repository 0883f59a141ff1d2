"""vidline: find when things happen in long videos by asking vision-language models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidline.errors import (
    AnswerParseError,
    AuthenticationError,
    BackendError,
    CacheError,
    ConfigError,
    DecodeError,
    NoVideoStreamError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ServerUnreachableError,
    VideoError,
    VideoOpenError,
    VidlineError,
)
from vidline.log import logger

__version__ = "0.1.0"

# Public API that lives in heavier modules, imported on first use (PEP 562) so that
# ``import vidline`` stays cheap and the CLI starts fast.
_LAZY: dict[str, str] = {
    "Event": "vidline.types",  # numpy: not imported before the CLI can take Ctrl-C (vidline._console)
    "Frame": "vidline.types",
    "Usage": "vidline.types",
    "VideoInfo": "vidline.types",
    "Window": "vidline.types",
    "probe": "vidline.media.probe",
    "plan_sampling": "vidline.media.plan",
    "SamplingBudget": "vidline.media.plan",
    "SamplingPlan": "vidline.media.plan",
    "smart_resize": "vidline.media.plan",
    "estimate_video_tokens": "vidline.media.plan",
    "estimate_image_tokens": "vidline.media.plan",
    "plan_windows": "vidline.media.windows",
    "find_videos": "vidline.media.files",
    "sample": "vidline.media.sampler",
    "sample_windows": "vidline.media.sampler",
    "ModelConfig": "vidline.models.config",
    "Timeout": "vidline.models.config",
    "RetryPolicy": "vidline.models.config",
    "resolve_model_config": "vidline.models.config",
    "parse_answer": "vidline.parse",
    "merge_events": "vidline.merge",
    "Timeline": "vidline.timeline",
    "analyze": "vidline.pipeline",
    "EventIndex": "vidline.index",
    "search": "vidline.index",
    "extract_clip": "vidline.clips",
    "ask": "vidline.understand",
    "describe": "vidline.understand",
    "chapters": "vidline.understand",
}

if TYPE_CHECKING:  # what type checkers see of the lazy names above (kept in step by a test)
    from vidline.clips import extract_clip
    from vidline.index import EventIndex, search
    from vidline.media.files import find_videos
    from vidline.media.plan import (
        SamplingBudget,
        SamplingPlan,
        estimate_image_tokens,
        estimate_video_tokens,
        plan_sampling,
        smart_resize,
    )
    from vidline.media.probe import probe
    from vidline.media.sampler import sample, sample_windows
    from vidline.media.windows import plan_windows
    from vidline.merge import merge_events
    from vidline.models.config import ModelConfig, RetryPolicy, Timeout, resolve_model_config
    from vidline.parse import parse_answer
    from vidline.pipeline import analyze
    from vidline.timeline import Timeline
    from vidline.types import Event, Frame, Usage, VideoInfo, Window
    from vidline.understand.api import ask, chapters, describe


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'vidline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


# every public name, the lazy ones included (spelled out so that type checkers and linters see the
# re-exports; a test keeps it in step with _LAZY)
__all__ = [
    "AnswerParseError",
    "AuthenticationError",
    "BackendError",
    "CacheError",
    "ConfigError",
    "DecodeError",
    "Event",
    "EventIndex",
    "Frame",
    "ModelConfig",
    "NoVideoStreamError",
    "PayloadTooLargeError",
    "RateLimitError",
    "RetryPolicy",
    "SamplingBudget",
    "SamplingPlan",
    "ServerError",
    "ServerUnreachableError",
    "Timeline",
    "Timeout",
    "Usage",
    "VideoError",
    "VideoInfo",
    "VideoOpenError",
    "VidlineError",
    "Window",
    "analyze",
    "ask",
    "chapters",
    "describe",
    "estimate_image_tokens",
    "estimate_video_tokens",
    "extract_clip",
    "find_videos",
    "logger",
    "merge_events",
    "parse_answer",
    "plan_sampling",
    "plan_windows",
    "probe",
    "resolve_model_config",
    "sample",
    "sample_windows",
    "search",
    "smart_resize",
    "__version__",
]
