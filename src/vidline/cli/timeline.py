"""``vidline timeline VIDEO...``: one merged event timeline per video (a thin layer over vidline.analyze).

Exit codes: 0 ok; 1 error (one line on stderr; also when every window failed); 2 bad options / no
model for --query; 3 partial (some windows failed: listed on stderr, the timeline of the rest is
still written);
130 interrupted (answers already received stay in the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidline.cli import EXIT_PARTIAL
from vidline.cli.common import add_model_arguments, config_from_args, finite_float, fps_arg, utf8_text
from vidline.cli.runtime import settle_imports
from vidline.errors import BackendError, ConfigError, VidlineError
from vidline.timeline import FORMATS

if TYPE_CHECKING:
    from vidline.timeline import Timeline


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "timeline",
        help="find when things happen: one merged event timeline per video",
        description="Find events in a video (matching --query) with a vision-language model, or activity "
        "segments with the offline motion detector when no model is configured.",
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="video file(s) or folder(s) (folders are searched recursively for video files)")
    p.add_argument("--query", "-q", type=utf8_text, help="what to look for (needs a model); default: all notable events")
    add_model_arguments(p, allow_motion=True)
    g = p.add_argument_group("windows and sampling")
    g.add_argument("--window", type=finite_float, metavar="SEC", help="window length in seconds (default 120)")
    g.add_argument("--overlap", type=finite_float, metavar="SEC", help="overlap between windows (default 10)")
    g.add_argument("--fps", type=fps_arg, default="auto", metavar="auto|F", help="sampling fps (default auto)")
    g.add_argument("--max-frames", type=int, metavar="N", help="max frames per window")
    g.add_argument("--concurrency", type=int, default=4, metavar="N", help="requests in flight (default 4)")
    g.add_argument("--prefetch", type=int, default=None, metavar="N",
                   help="window payloads encoded ahead of a free request slot (default: as many as "
                   "--concurrency; each holds only its encoded payload, not its frames)")
    g.add_argument("--decoders", type=int, default=None, metavar="N",
                   help="parallel decoders, each over its own stretch of the video (default: one per CPU, "
                   "at most 2, with at least 4 windows each)")
    o = p.add_argument_group("output")
    o.add_argument("--format", choices=FORMATS, help="output format (default: from -o's suffix, else json)")
    o.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout")
    o.add_argument("--dry-run", action="store_true", help="print the plan and cost estimate; contact no server")
    o.add_argument("--price-per-1k", type=finite_float, metavar="PRICE", help="price per 1000 tokens for --dry-run")
    o.add_argument("--no-cache", action="store_true", help="neither read nor write the answer cache")
    o.add_argument("--cache-dir", metavar="DIR", help="answer cache directory (default: VIDLINE_CACHE_DIR "
                   "or the user cache dir)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument("--index", action="store_true", help="add each timeline to the event index (see vidline search)")
    o.add_argument("--db", metavar="PATH", help="event index database for --index (default: VIDLINE_DB or the "
                   "user data dir)")
    m = p.add_argument_group("motion backend (offline)")
    m.add_argument("--threshold", type=finite_float, help="fraction of changed pixels that is motion (default 0.01)")
    m.add_argument("--min-event", type=finite_float, metavar="SEC", help="shortest motion kept (default 1.0)")
    m.add_argument("--merge-gap", type=finite_float, metavar="SEC", help="join motion this close (default 2.0)")
    m.add_argument("--pre", type=finite_float, metavar="SEC", help="padding before each event (default 0.5)")
    m.add_argument("--post", type=finite_float, metavar="SEC", help="padding after each event (default 0.5)")
    m.add_argument("--roi", action="append", type=roi_arg, metavar="X,Y,W,H",
                   help="watch only this region (fractions of the picture, or pixels); repeat for several; "
                   "motion and scenes backends")
    m.add_argument("--motion-method", choices=("background", "diff"),
                   help="background: against a learned background, so what arrives and stays is motion "
                   "until absorbed (~28 s; default); diff: against the previous frame, change only")
    sc = p.add_argument_group("scenes backend (offline: shot cuts, slide changes)")
    sc.add_argument("--scene-threshold", type=finite_float, metavar="X",
                    help="least mean content change (0-1) of a cut (default 0.08)")
    sc.add_argument("--min-scene", type=finite_float, metavar="SEC", help="shortest scene (default 2.0)")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "backend": args.backend,
        "window": args.window,
        "overlap": args.overlap,
        "fps": args.fps,
        "max_frames": args.max_frames,
        "prefetch": args.prefetch,
        "decoders": args.decoders,
        "threshold": args.threshold,
        "min_event": args.min_event,
        "merge_gap": args.merge_gap,
        "pre": args.pre,
        "post": args.post,
        "motion_method": args.motion_method,
        "roi": args.roi,
        "scene_threshold": args.scene_threshold,
        "min_scene": args.min_scene,
    }


def roi_arg(value: str) -> tuple[float, float, float, float]:
    """argparse type for --roi: ``x,y,w,h`` (four finite numbers)."""
    parts = value.replace(" ", "").split(",")
    try:
        numbers = tuple(finite_float(p) for p in parts)
    except argparse.ArgumentTypeError:
        numbers = ()
    if len(numbers) != 4:
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H (four numbers), got {value!r}")
    return numbers


def _format_for(args: argparse.Namespace, output: Path | None) -> str:
    from vidline.timeline import format_for_output

    return format_for_output(output, args.format)


def _render(timeline: Timeline, fmt: str, out: Path | None = None) -> str:
    """The timeline as ``fmt``; an HTML report written to ``out`` links the video relative to it,
    as ``vidline export -o`` and ``Timeline.save`` do (a folder moved with its video keeps working)."""
    options = {"base_dir": out.parent if out is not None else None} if fmt == "html" else {}
    text = timeline.render(fmt, **options)
    return text if text.endswith("\n") else text + "\n"


def _output_names(videos: list[str]) -> dict[str, str]:
    """Each video's file name (without the format's suffix) below -o DIR in a several-video run: its
    path below the folder all the videos share (``day1/00``, ``day2/00``: two recordings of the same
    name never overwrite each other), with the video's extension kept where two videos differ only by
    it (``cam.mp4``, ``cam.mkv``)."""
    full = [os.path.abspath(v) for v in videos]
    base = os.path.commonpath([os.path.dirname(v) for v in full])
    rel = [os.path.relpath(v, base) for v in full]
    stems = [os.path.splitext(r)[0] for r in rel]
    uses: dict[str, set[str]] = {}
    for v, stem in zip(full, stems, strict=True):
        uses.setdefault(stem, set()).add(v)
    return {video: (r if len(uses[stem]) > 1 else stem)
            for video, r, stem in zip(videos, rel, stems, strict=True)}


def _output_path(args: argparse.Namespace, names: dict[str, str], video: str, fmt: str) -> Path | None:
    """-o PATH for one video; with several videos -o is a directory holding one file per video, named
    by ``names`` (``_output_names``)."""
    if not args.output:
        return None
    out = Path(args.output)
    return out if len(args.videos) == 1 else out / f"{names[video]}.{fmt}"


def _report_failures(timeline: Timeline, video: str) -> None:
    failed = timeline.failed_windows
    what = "every window failed" if len(failed) == len(timeline.windows) else "partial timeline"
    print(f"vidline: {video}: {len(failed)} of {len(timeline.windows)} windows failed ({what}):", file=sys.stderr)
    for w in failed:
        print(f"vidline:   window {w.index} [{w.start:.1f}-{w.end:.1f} s]: {w.error}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vidline.media.files import find_videos
    from vidline.pipeline import analyze, dry_run, select_model
    from vidline.progress import Progress

    args.videos = find_videos(args.videos)
    several = len(args.videos) > 1
    if several and args.output and Path(args.output).is_file():
        raise ConfigError("with several videos, -o must be a directory")
    if args.output and not several:
        _format_for(args, Path(args.output))  # an output format it cannot tell is said before any work
    elif args.output and several and Path(args.output).suffix.lower().lstrip(".") in FORMATS \
            and not Path(args.output).is_dir():
        from vidline.log import logger

        logger.warning("-o %s with %d videos is a folder (one file per video below it); give --format to "
                       "choose the files' format", args.output, len(args.videos))
    if several and not args.output and not args.dry_run and _format_for(args, None) != "json":
        raise ConfigError(f"with several videos, --format {args.format} writes one file per video: "
                          "give -o DIR (stdout takes a JSON array)")
    config = config_from_args(args)
    if config is None and args.dry_run and args.query and args.backend in ("auto", "openai", "dashscope"):
        # pricing a job comes before having a server: estimate for the documented self-hosted one
        from vidline.log import logger

        if args.backend == "auto":
            args.backend = "openai"
        config = config_from_args(args)
        logger.warning("no model configured: the dry run estimates for %s (pass --base-url, --server or "
                       "--backend dashscope to estimate for another)",
                       "DashScope" if args.backend == "dashscope" else "an OpenAI-compatible vLLM server")
    if config is not None:
        from vidline.log import logger
        from vidline.media.windows import max_window_for, window_cap_note

        note = window_cap_note(args.window, max_window_for(config.mode, config.backend))
        if note:
            logger.warning(note)
    else:  # decided (and said on stderr) once for the whole run, not once per video
        select_model(None, args.backend, args.query, {})
        args.backend = "scenes" if args.backend == "scenes" else "motion"
    if args.dry_run:
        return _run_dry(args, config, dry_run)
    settle_imports(config, background=True)
    cache: bool | str = False if args.no_cache else (args.cache_dir or True)
    partial = 0  # 0 ok, 1 some windows failed, 2 every window failed
    statuses: list[int] = []  # the same, per video that gave a timeline
    reports: list[tuple[Timeline, str]] = []  # failed windows, listed once the progress bar is closed
    stdout_docs: list[str] = []
    progress = Progress(enabled=not args.quiet)
    names = _output_names(args.videos) if several and args.output else {}
    indexed = 0
    failures: list[VidlineError] = []
    try:
        for video in args.videos:
            try:
                timeline = analyze(video, args.query, config=config, concurrency=args.concurrency, cache=cache,
                                   progress=progress, **_options(args))
            except BackendError:
                # the server or the key (AuthenticationError is one): every other video would fail too;
                # the timelines already made still go to stdout
                _flush_stdout(args, stdout_docs, several)
                raise
            except VidlineError as exc:
                if not several:
                    raise
                # in a folder run one bad recording must not lose the others
                message = str(exc) if video in str(exc) else f"{video}: {exc}"
                tqdm.write(f"vidline: error: {message}", file=sys.stderr)
                failures.append(exc)
                partial = max(partial, 1)
                continue
            status = _emit(args, names, video, timeline, stdout_docs)
            statuses.append(status)
            if status:
                reports.append((timeline, video))
            partial = max(partial, status)
            if args.index:
                indexed += _index(timeline, args.db)
    finally:
        progress.close()
        for failed_timeline, failed_video in reports:
            _report_failures(failed_timeline, failed_video)
    if args.index and not args.quiet:
        print(f"vidline: indexed {indexed} events from {len(args.videos)} video(s)", file=sys.stderr)
    _flush_stdout(args, stdout_docs, several)
    if len(failures) == len(args.videos):  # no video could be analysed (each said why)
        return 2 if all(isinstance(exc, ConfigError) for exc in failures) else 1
    if statuses and all(status == 2 for status in statuses):
        return 1  # no window of any video succeeded: a failure, not a partial result
    return EXIT_PARTIAL if partial else 0


def _index(timeline: Timeline, db: str | None) -> int:
    from vidline.index import index_timeline

    result = index_timeline(timeline, db)
    return int(result.n_events)


def _emit(args: argparse.Namespace, names: dict[str, str], video: str, timeline: Timeline,
          stdout_docs: list[str]) -> int:
    """Write one timeline; 0 complete, 1 partial, 2 every window failed (failed windows listed)."""
    fmt = _format_for(args, Path(args.output) if args.output and len(args.videos) == 1 else None)
    out = _output_path(args, names, video, fmt)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_render(timeline, fmt, out), encoding="utf-8")
    else:
        stdout_docs.append(timeline.to_json() if fmt == "json" else _render(timeline, fmt))
    if timeline.partial:
        return 2 if len(timeline.failed_windows) == len(timeline.windows) else 1
    return 0


def _flush_stdout(args: argparse.Namespace, docs: list[str], several: bool) -> None:
    """Stdout's document: with several videos always one JSON array (of the timelines that could be
    made, in order), whatever failed; nothing when -o took them."""
    if args.output:
        return
    if several:
        sys.stdout.write("[\n" + ",\n".join(docs) + "\n]\n" if docs else "[]\n")
    else:
        sys.stdout.write("".join(d if d.endswith("\n") else d + "\n" for d in docs))
    sys.stdout.flush()


def _run_dry(args: argparse.Namespace, config: Any, dry_run: Any) -> int:
    reports = [dry_run(video, args.query, config=config, price_per_1k=args.price_per_1k,
                       concurrency=args.concurrency, **_options(args))
               for video in args.videos]
    if args.format == "json":
        docs = [r.to_dict() for r in reports]
        text = json.dumps(docs[0] if len(docs) == 1 else docs, indent=2)
    else:
        text = "\n\n".join(r.to_text() for r in reports)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0
