"""``vidline search QUERY``: ranked full-text search over indexed events."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import unicodedata
from collections.abc import Sequence

from vidline.cli.index import add_db_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="search indexed events by text",
        description="Search the local event index: ranked (bm25) matches of all query words in event "
        "labels and descriptions (stemmed, prefix-matched; any word when no event has all of them). "
        "Chinese/Japanese/Korean words are found anywhere in the text, e.g. 码头 in 叉车进入码头.",
    )
    p.add_argument("query", nargs="?", default="", help='words to find, e.g. "forklift" (empty: list all)')
    add_db_argument(p)
    p.add_argument("--video", metavar="GLOB", help="only videos whose path or file name matches GLOB")
    p.add_argument("--after", metavar="T", help="only events ending after T (seconds or hh:mm:ss)")
    p.add_argument("--before", metavar="T", help="only events starting before T (seconds or hh:mm:ss)")
    p.add_argument("--label", help="only events with exactly this label (case-insensitive)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--limit", type=int, default=50, help="max results (default 50)")
    p.set_defaults(func=run)


FIELDS = ["video", "start", "end", "label", "snippet", "score", "description", "confidence", "query"]


def run(args: argparse.Namespace) -> int:
    from vidline.index import format_time, search

    hits = search(args.query, db=args.db, video_glob=args.video, after=args.after, before=args.before,
                  label=args.label, limit=args.limit)
    out = sys.stdout
    if args.format == "json":
        json.dump([h.to_dict() for h in hits], out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif args.format == "csv":
        w = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for h in hits:
            w.writerow(h.to_dict())
    else:
        if not hits:
            print("no matches", file=sys.stderr)
            return 0
        rows = [(h.video, format_time(h.start), format_time(h.end), h.label, h.snippet) for h in hits]
        print(format_table(["video", "start", "end", "label", "snippet"], rows))
    return 0


def display_width(s: str) -> int:
    """Terminal columns of ``s``: wide (CJK) and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], max_width: int = 60) -> str:
    def clip(s: str) -> str:
        s = " ".join(str(s).split())
        if display_width(s) <= max_width:
            return s
        while display_width(s) > max_width - 1:
            s = s[:-1]
        return s + "…"

    def pad(s: str, width: int) -> str:
        return s + " " * (width - display_width(s))

    cells = [[clip(c) for c in r] for r in rows]
    widths = [max([display_width(h)] + [display_width(r[i]) for r in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(pad(h, w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
