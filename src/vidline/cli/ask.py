"""``vidline ask``, ``vidline describe`` and ``vidline chapters`` (thin layers over vidline.understand).

Output: the answer is streamed to stdout as the model writes when stdout is a terminal (or with
``--stream``); otherwise it is printed once complete. ``--no-stream`` sends a non-streaming request.
A stream that breaks is retried from scratch: ``[stream interrupted, retrying]`` goes to stderr, text
already shown is not repeated (or, if the retried answer differs, the answer is reprinted from its
start after a notice). When retries are exhausted the partial answer is ended with a newline and the
command fails with "answer incomplete" (exit code 3): a partial answer is never presented as complete.

Exit codes: 0 ok; 1 error; 2 bad options / no model; 3 answer incomplete; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vidline.cli.common import add_model_arguments, config_from_args, positive_float, positive_int, utf8_text
from vidline.cli.runtime import settle_imports
from vidline.errors import ConfigError

CHAPTER_FORMATS = ("youtube", "vtt", "json")


def _add_common(p: argparse.ArgumentParser, *, streaming: bool = True) -> None:
    add_model_arguments(p)
    g = p.add_argument_group("long videos (map-reduce)")
    g.add_argument("--strategy", choices=["auto", "single", "map-reduce"], default="auto",
                   help="auto: one request when the video fits at a useful fps, else captions per window "
                   "then a final request (default auto)")
    g.add_argument("--window", type=positive_float, metavar="SEC", help="caption window length (default 120)")
    g.add_argument("--min-fps", type=positive_float, metavar="F", dest="useful_fps",
                   help="lowest fps that still counts as fitting one request (default 0.5)")
    g.add_argument("--caption-fps", type=positive_float, metavar="F", help="sampling fps of caption windows (default 1)")
    g.add_argument("--budget-tokens", type=positive_int, metavar="N", dest="max_visual_tokens",
                   help="visual tokens one request may carry (default 24576)")
    g.add_argument("--max-frames", type=positive_int, metavar="N", help="frames one request may carry")
    g.add_argument("--concurrency", type=positive_int, default=4, metavar="N", help="caption requests in flight (default 4)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the caption cache")
    g.add_argument("--cache-dir", metavar="DIR", help="cache directory (default: VIDLINE_CACHE_DIR or the user "
                   "cache dir; shared with vidline timeline)")
    o = p.add_argument_group("output")
    if streaming:
        s = o.add_mutually_exclusive_group()
        s.add_argument("--stream", action="store_true", default=None,
                       help="stream the answer as it is written even when stdout is not a terminal")
        s.add_argument("--no-stream", action="store_false", dest="stream",
                       help="one non-streaming request; print the whole answer at the end")
        o.add_argument("--json", action="store_true",
                       help='print {"answer", "usage", "path", "inputs", ...} as JSON (no streaming)')
    o.add_argument("--dry-run", action="store_true", help="show the path (single / map-reduce) and token estimate; "
                   "contact no server")
    o.add_argument("--quiet", action="store_true", help="no progress bar for caption windows")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ask", help="ask a question about videos and/or images (answer streamed)",
        description="Answer a free-form question about one or more videos or images. Long videos are "
        "captioned window by window (cached, like timeline windows) and answered from the captions.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video or image file(s)")
    p.add_argument("question", type=utf8_text, help="the question (quote it)")
    _add_common(p)
    p.set_defaults(func=run_ask)

    d = subparsers.add_parser("describe", help="describe a whole video with timestamps",
                              description="A description of the whole video in chronological order, with "
                              "MM:SS timestamps.")
    d.add_argument("video", metavar="VIDEO")
    _add_common(d)
    d.set_defaults(func=run_describe)

    c = subparsers.add_parser("chapters", help="chapter marks (YouTube, WebVTT or JSON)",
                              description="Chapter marks for a video: YouTube '00:00 Title' lines (first at 00:00),"
                              " a WebVTT chapters track, or JSON [{start, end, title}].")
    c.add_argument("video", metavar="VIDEO")
    c.add_argument("--format", choices=CHAPTER_FORMATS,
                   help="output format (default: from -o's suffix, .vtt or .json; else youtube)")
    c.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout")
    c.add_argument("--min-length", type=positive_float, metavar="SEC",
                   help="shortest chapter (default min(10, duration/20)); shorter ones are merged")
    _add_common(c, streaming=False)
    c.set_defaults(func=run_chapters)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "strategy": args.strategy,
        "window": args.window,
        "useful_fps": args.useful_fps,
        "caption_fps": args.caption_fps,
        "max_visual_tokens": args.max_visual_tokens,
        "max_frames": args.max_frames,
    }


def _config(args: argparse.Namespace) -> Any:
    config = config_from_args(args)
    if config is None and not args.dry_run:
        raise ConfigError("no model configured: pass --base-url (and --api-key/--model), or set "
                          "OPENAI_BASE_URL/OPENAI_API_KEY or DASHSCOPE_API_KEY")
    return config


def _dry_run(args: argparse.Namespace, inputs: list[str], question: str, config: Any) -> int:
    from vidline.understand import dry_run

    plan = dry_run(inputs, question, config=config, **_options(args))
    if getattr(args, "json", False):
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(plan.to_text())
    return 0


def _answer(args: argparse.Namespace, inputs: list[str], question: str) -> int:
    from vidline.understand import Answer, IncompleteAnswerError, ask

    config = _config(args)
    if args.dry_run:
        return _dry_run(args, inputs, question, config)
    settle_imports(config)
    opts = _options(args)
    cache: bool | str = False if args.no_cache else (args.cache_dir or True)
    out = sys.stdout
    stream = bool(args.stream) if args.stream is not None else out.isatty()
    if args.json:
        stream = False
    progress = not args.quiet  # a caption progress bar, shown only when the map step runs
    if args.stream is False or args.json:
        answer = ask(inputs, question, config=config, stream=False, concurrency=args.concurrency, cache=cache,
                     progress=progress, **opts)
        assert isinstance(answer, Answer)
        if args.json:
            out.write(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False) + "\n")
        else:
            out.write(answer.text if answer.text.endswith("\n") else answer.text + "\n")
        out.flush()
        return 0

    shown = {"any": False, "nl": True}

    def emit(text: str) -> None:
        if text:
            out.write(text)
            out.flush()
            shown["any"] = True
            shown["nl"] = text.endswith("\n")

    def on_retry(n: int, exc: BaseException) -> None:
        if shown["any"] and stream:
            print(f"\n[stream interrupted, retrying ({n}): {exc}]", file=sys.stderr, flush=True)
        else:
            print(f"vidline: stream failed, retrying ({n}): {exc}", file=sys.stderr, flush=True)

    buffered: list[str] = []

    def on_restart(_delivered: str) -> None:
        buffered.clear()  # not streaming: only the final attempt's text is printed
        if stream and shown["any"]:
            emit("\n")
            print("[stream interrupted, retrying: the answer is reprinted from the start]",
                  file=sys.stderr, flush=True)

    chunks = ask(inputs, question, config=config, stream=True, concurrency=args.concurrency, cache=cache,
                 progress=progress, on_restart=on_restart, on_retry=on_retry, **opts)
    try:
        for chunk in chunks:
            if stream:
                emit(chunk)
            else:
                buffered.append(chunk)
    except (IncompleteAnswerError, KeyboardInterrupt):
        if stream and shown["any"] and not shown["nl"]:
            emit("\n")  # the partial answer ends its line (Ctrl-C, a stream that broke for good)
        raise
    if stream:
        if not shown["nl"]:
            emit("\n")
    else:
        text = getattr(chunks, "text", None) or "".join(buffered)
        emit(text if text.endswith("\n") else text + "\n")
    return 0


def run_ask(args: argparse.Namespace) -> int:
    question = args.question
    if Path(question).is_file() and Path(question).suffix:
        raise ConfigError(f"the question {question!r} is a file: give the question last, in quotes "
                          "(vidline ask VIDEO... \"QUESTION\")")
    missing = next((p for p in args.inputs if not Path(p).exists()), None)
    if missing is not None and " " in missing and not Path(missing).suffix:
        raise ConfigError(f"{missing}: no such file (the question goes last: vidline ask VIDEO... \"QUESTION\")")
    return _answer(args, list(args.inputs), question)


def run_describe(args: argparse.Namespace) -> int:
    from vidline.understand import DESCRIBE_QUESTION

    return _answer(args, [args.video], DESCRIBE_QUESTION)


def _chapter_format(output: str | None) -> str:
    suffix = Path(output).suffix.lower().lstrip(".") if output else ""
    return suffix if suffix in ("vtt", "json") else "youtube"


def _check_output(path: Path) -> None:
    """ConfigError naming ``path`` when a file cannot be written there."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give a file name for -o")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{path}: no such directory {parent}")


def run_chapters(args: argparse.Namespace) -> int:
    from vidline.understand import CHAPTERS_QUESTION, chapters, format_chapters

    config = _config(args)
    if args.dry_run:
        return _dry_run(args, [args.video], CHAPTERS_QUESTION, config)
    fmt = args.format or _chapter_format(args.output)
    if args.output:
        _check_output(Path(args.output))  # before the answer is paid for, not after
    settle_imports(config)
    cache: bool | str = False if args.no_cache else (args.cache_dir or True)
    marks = chapters(args.video, config=config, min_length=args.min_length, concurrency=args.concurrency,
                     cache=cache, progress=not args.quiet, **_options(args))
    text = format_chapters(marks, fmt)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0
