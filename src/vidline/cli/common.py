"""Arguments shared by the commands that talk to a model (timeline, ask, describe, chapters)."""

from __future__ import annotations

import argparse
import math

from vidline.models.config import ModelConfig, RetryPolicy, Timeout, resolve_model_config


def finite_float(value: str) -> float:
    """argparse type: a finite number (not nan, not inf)."""
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(f):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return f


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0."""
    f = finite_float(value)
    if f <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return f


def positive_int(value: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return n


def jpeg_quality(value: str) -> int:
    """argparse type: a JPEG quality, 1 to 100."""
    n = positive_int(value)
    if n > 100:
        raise argparse.ArgumentTypeError(f"must be 1-100, got {value}")
    return n


def utf8_text(value: str) -> str:
    """argparse type: text that is valid UTF-8 (a question typed in a Latin-1 terminal is not: the
    SDKs would fail on it only after the video was decoded)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("not valid UTF-8 text (check the terminal's encoding, e.g. LANG=C.UTF-8)") from None
    return value


def fps_arg(value: str) -> float | str:
    """argparse type for --fps: ``auto`` or a number > 0."""
    if value == "auto":
        return "auto"
    try:
        float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {value!r}") from None
    return positive_float(value)


def add_model_arguments(parser: argparse.ArgumentParser, *, allow_motion: bool = False) -> None:
    g = parser.add_argument_group("model")
    choices = ["auto", "openai", "dashscope"] + (["motion", "scenes"] if allow_motion else [])
    g.add_argument("--backend", choices=choices, default="auto",
                   help="model backend; auto uses a model when one is configured (flags or env)"
                   + (" and the offline motion detector otherwise; scenes: offline shot / slide changes"
                      if allow_motion else ""))
    g.add_argument("--base-url", help="server base URL (default: OPENAI_BASE_URL / DASHSCOPE_HTTP_BASE_URL)")
    g.add_argument("--api-key", help="API key (default: OPENAI_API_KEY / DASHSCOPE_API_KEY)")
    g.add_argument("--model", help="model name (default: the server's only model, when it serves one)")
    g.add_argument("--mode", choices=["video", "frames"], help="payload mode (default: per backend, see README)")
    g.add_argument("--server", choices=["auto", "vllm", "dashscope-compat", "generic"], default="auto",
                   help="OpenAI-compatible server flavour, decides how frame lists are sent")
    g.add_argument("--burn-timestamps", action="store_true", help="draw each frame's timestamp onto it")
    g.add_argument("--timeout", type=positive_float, default=180.0, help="seconds per request (default 180)")
    g.add_argument("--retries", type=int, default=4, help="retries per request (default 4)")
    g.add_argument("--max-tokens", type=int, default=1024, help="max answer tokens (default 1024)")
    g.add_argument("--system-prompt", type=utf8_text, help="system prompt to send")
    g.add_argument("--lang", help="answer language, e.g. en or zh")


def config_from_args(args: argparse.Namespace) -> ModelConfig | None:
    """The model configuration the flags (and env vars) describe; None when no model is configured."""
    return resolve_model_config(
        args.backend,
        base_url=args.base_url,
        api_key=args.api_key,
        model=args.model,
        mode=args.mode,
        server=args.server,
        burn_timestamps=args.burn_timestamps,
        timeout=Timeout(read=args.timeout),
        retry=RetryPolicy(max_retries=args.retries),
        concurrency=getattr(args, "concurrency", None) or 4,
        max_tokens=args.max_tokens,
        system_prompt=args.system_prompt,
        language=args.lang,
    )
