"""``vidline export TIMELINE.json --format csv|srt|vtt|html|json [-o PATH]``: convert a saved timeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vidline.cli.common import finite_float
from vidline.timeline import FORMATS


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="convert a saved timeline JSON to CSV, SRT, WebVTT, an HTML report or JSON",
        description="Convert a timeline saved by `vidline timeline` (JSON) to another format. "
        "The format defaults to the suffix of -o, else json. Without -o the result goes to stdout.",
    )
    p.add_argument("timeline", help="timeline JSON file ('-' reads stdin)")
    p.add_argument(
        "--format", "-f", choices=FORMATS, help="output format (default: from -o's suffix, else json)"
    )
    p.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout")
    p.add_argument("--video", metavar="PATH", help="the video, when it has moved since the timeline was made")
    p.add_argument("--no-thumbnails", action="store_true", help="HTML: no frame thumbnails (faster)")
    p.add_argument("--label", metavar="TEXT", help="only events whose label contains TEXT (case-insensitive)")
    p.add_argument("--min-confidence", type=finite_float, metavar="C", help="only events with confidence >= C")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidline.index import resolve_video_path
    from vidline.timeline import Timeline, format_for_output

    fmt = format_for_output(args.output, args.format)  # before reading: a bad -o is said at once

    timeline = Timeline.from_json(sys.stdin.read()) if args.timeline == "-" else Timeline.load(args.timeline)
    if args.video:
        timeline.video["path"] = args.video
    elif timeline.video.get("path") and args.timeline != "-":  # found beside the timeline file, too
        timeline.video["path"] = resolve_video_path(str(timeline.video["path"]), args.timeline)
    if args.label is not None or args.min_confidence is not None:
        timeline = timeline.filter(args.label, min_confidence=args.min_confidence)
    out = Path(args.output) if args.output else None
    options: dict[str, Any] = {}
    if fmt == "html":
        options["thumbnails"] = not args.no_thumbnails
    if out is not None:
        timeline.save(out, fmt, **options)
        print(f"vidline: wrote {out} ({len(timeline.events)} events, {fmt})", file=sys.stderr)
        return 0
    text = timeline.render(fmt, **options)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    sys.stdout.flush()
    return 0
