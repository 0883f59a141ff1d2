"""``vidline index TIMELINE.json... [--db PATH]``: add saved timelines to the local event index."""

from __future__ import annotations

import argparse
import sys


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="index database (default: $VIDLINE_DB or the user data dir)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index",
        help="add saved timelines to the local event index",
        description="Add saved timeline JSON files to the local event index (SQLite). Idempotent: "
        "indexing the same run twice stores it once.",
    )
    p.add_argument("timelines", nargs="+", metavar="TIMELINE.json")
    add_db_argument(p)
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidline.index import EventIndex

    with EventIndex(args.db) as idx:
        for path in args.timelines:
            res = idx.add_timeline(path, source=path)
            if not args.quiet:
                print(f"{res.status:9s} {res.n_events:6d} events  {res.video}  ({path})")
        if not args.quiet:
            s = idx.stats()
            print(f"index {idx.path}: {s['videos']} videos, {s['runs']} runs, {s['events']} events",
                  file=sys.stderr)
    return 0
