"""``vidline clip`` (one range) and ``vidline clips`` (one file per timeline event)."""

from __future__ import annotations

import argparse
import sys

from vidline.cli.common import finite_float
from vidline.index import format_time, parse_time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "clip",
        help="cut one clip out of a video",
        description="Cut [START, END) out of VIDEO. Stream copy by default (fast, lossless, starts at the "
        "keyframe at/before START); --reencode for a frame-exact cut (H.264).",
    )
    p.add_argument("video", metavar="VIDEO")
    p.add_argument("--start", required=True, help="start time (seconds or hh:mm:ss.ms)")
    p.add_argument("--end", required=True, help="end time (seconds or hh:mm:ss.ms)")
    p.add_argument("-o", "--output", required=True, help="output file (.mp4, .mkv, .mov)")
    p.add_argument("--reencode", action="store_true", help="re-encode for a frame-exact cut")
    p.add_argument("--no-audio", action="store_true", help="drop audio streams")
    p.set_defaults(func=run_clip)

    q = subparsers.add_parser(
        "clips",
        help="write one clip per event of a saved timeline",
        description="Write one clip per event of TIMELINE.json into --out. File names carry the times: "
        "<video>_00-01-02.500_00-01-05.000_<label>.mp4.",
    )
    q.add_argument("timeline", metavar="TIMELINE.json")
    q.add_argument("--out", required=True, help="output directory")
    q.add_argument("--pad", type=finite_float, default=0.0, help="seconds added before and after each event")
    q.add_argument("--reencode", action="store_true", help="re-encode for frame-exact cuts")
    q.add_argument("--label", help="only events whose label contains this text (case-insensitive)")
    q.add_argument("--video", help="the source video (default: the path stored in the timeline)")
    q.set_defaults(func=run_clips)


def run_clip(args: argparse.Namespace) -> int:
    from vidline.clips import extract_clip

    res = extract_clip(args.video, parse_time(args.start), parse_time(args.end), args.output,
                       reencode=args.reencode, audio=not args.no_audio)
    note = "" if args.reencode else f" (requested start {format_time(res.requested_start)})"
    print(f"{res.path}  {format_time(res.start)} - {format_time(res.end)}  {res.frames} frames{note}")
    return 0


def run_clips(args: argparse.Namespace) -> int:
    from vidline.clips import extract_event_clips

    results = extract_event_clips(args.timeline, args.out, pad=args.pad, reencode=args.reencode,
                                  label=args.label, video=args.video)
    for res in results:
        print(f"{res.path}  {format_time(res.start)} - {format_time(res.end)}  {res.frames} frames")
    print(f"{len(results)} clips written to {args.out}", file=sys.stderr)
    return 0
