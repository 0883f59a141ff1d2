"""Scripted event search over a folder of recordings.

    .venv/bin/python samples/search_folder.py [FOLDER] [QUERY] [--db PATH] [--ask TEXT]

Analyses every video in FOLDER (default: this samples/ folder) with ``vidline.analyze``, indexes the
timelines in a local event index, searches QUERY and prints a table of matches.

The model comes from the usual environment variables (``OPENAI_BASE_URL`` + ``OPENAI_API_KEY``, or
``DASHSCOPE_API_KEY``; ``VIDLINE_MODEL`` picks the model name). With none set, the offline motion
backend is used and every event is labelled "motion", so the default QUERY is "motion" then.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from vidline.errors import ConfigError
from vidline.index import EventIndex, format_time
from vidline.media.files import find_videos
from vidline.models.config import resolve_model_config
from vidline.pipeline import analyze

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=HERE)
    ap.add_argument("query", nargs="?", help="words to search (default: 'square' with a model, else 'motion')")
    ap.add_argument("--db", help="index database (default: a temporary one)")
    ap.add_argument("--ask", help="a question for the model (default: list all events)")
    args = ap.parse_args()

    model = os.environ.get("VIDLINE_MODEL")
    has_model = resolve_model_config("auto", model=model) is not None
    query = args.query or ("square" if has_model else "motion")
    try:
        videos = [Path(v) for v in find_videos([args.folder])]
    except ConfigError as exc:
        print(f"search_folder: {exc}", file=sys.stderr)
        return 1

    tmp = tempfile.TemporaryDirectory()
    db = args.db or os.path.join(tmp.name, "index.db")
    with EventIndex(db) as index:
        for video in videos:
            timeline = analyze(video, args.ask if has_model else None, cache=False, model=model)
            res = index.add_timeline(timeline)
            print(f"{video.name}: {len(timeline.events)} events ({timeline.backend}, {res.status})",
                  file=sys.stderr)
        hits = index.search(query)

    print(f"\n{len(hits)} matches for {query!r}:")
    print(f"{'video':14s} {'start':>12s} {'end':>12s}  {'label':16s} snippet")
    for h in hits:
        print(f"{Path(h.video).name:14s} {format_time(h.start):>12s} {format_time(h.end):>12s}  "
              f"{h.label:16s} {h.snippet}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
