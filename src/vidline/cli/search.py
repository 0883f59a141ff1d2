"""``vidline search QUERY``: ranked full-text search over indexed events."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence

from vidline.cli.index import add_db_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="search indexed events by text",
        description="Search the local event index: ranked (bm25) matches of all query words in event "
        "labels and descriptions (stemmed, prefix-matched; any word when no event has all of them).",
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


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], max_width: int = 60) -> str:
    def clip(s: str) -> str:
        s = " ".join(str(s).split())
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    cells = [[clip(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
