"""``vidline index TIMELINE.json... [--db PATH]``: add saved timelines to the local event index."""

from __future__ import annotations

import argparse
import json
import sys


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="index database (default: $VIDLINE_DB or the user data dir)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index",
        help="add saved timelines to the local event index",
        description="Add saved timeline JSON files to the local event index (SQLite). A file may hold "
        "one timeline or a JSON array of them (what `vidline timeline A B` prints); '-' reads stdin. "
        "Idempotent: indexing the same run twice stores it once. A file that cannot be indexed is "
        "reported in one line and the others are still indexed (exit 2). --prune forgets the videos "
        "whose file no longer exists (deleted, or moved and indexed again under the new path).",
    )
    p.add_argument("timelines", nargs="*", metavar="TIMELINE.json", help="timeline JSON file ('-' reads stdin)")
    p.add_argument("--prune", action="store_true", help="forget videos whose file no longer exists")
    add_db_argument(p)
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidline.errors import ConfigError, VidlineError
    from vidline.index import EventIndex, IndexResult, timeline_dicts

    if not args.timelines and not args.prune:
        raise ConfigError("give timeline JSON files to index, or --prune")
    code = 0
    with EventIndex(args.db) as idx:
        for path in args.timelines:
            name = "stdin" if path == "-" else path
            try:
                results: list[IndexResult]
                if path == "-":
                    try:
                        data = json.loads(sys.stdin.read())
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        raise ConfigError(f"stdin: not a timeline JSON document ({exc})") from exc
                    # no source file: relative video paths are taken from the current directory
                    results = [idx.add_timeline(d) for d in timeline_dicts(data, "stdin")]
                else:
                    results = idx.add_timeline_file(path)
            except VidlineError as exc:
                # one line, and the other files are still indexed
                print(f"vidline: error: {exc}", file=sys.stderr)
                code = max(code, exc.exit_code)
                continue
            if not args.quiet:
                for res in results:
                    print(f"{res.status:9s} {res.n_events:6d} events  {res.video}  ({name})")
        if args.prune:
            for video, n in idx.prune():
                if not args.quiet:
                    print(f"{'removed':9s} {n:6d} events  {video}  (file gone)")
        if not args.quiet:
            s = idx.stats()
            print(f"index {idx.path}: {s['videos']} videos, {s['runs']} runs, {s['events']} events",
                  file=sys.stderr)
    return code
