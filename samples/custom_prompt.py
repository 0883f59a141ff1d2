"""Ask a model a different question about a video and get structured (JSON) events back.

    OPENAI_BASE_URL=http://localhost:8000/v1 OPENAI_API_KEY=sk-... \
        .venv/bin/python samples/custom_prompt.py [VIDEO] [QUESTION]

Uses ``vidline.analyze(video, query=QUESTION)``: the video is cut into windows, each window is sent
to the model with the question, and the answers are parsed, offset to absolute time and merged into
one timeline. The result is printed as JSON: one object per event, with times in seconds and as
hh:mm:ss.mmm.

The model comes from ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` (a self-hosted vLLM, or any
OpenAI-compatible server) or ``DASHSCOPE_API_KEY``; ``VIDLINE_MODEL`` picks the model name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vidline.errors import VidlineError
from vidline.index import format_time
from vidline.models.config import resolve_model_config
from vidline.pipeline import analyze

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", type=Path, default=HERE / "shapes.mp4")
    ap.add_argument("question", nargs="?", default="When is a red square or a green circle visible?")
    ap.add_argument("--label", help="keep only events whose label contains this text")
    args = ap.parse_args()

    model = os.environ.get("VIDLINE_MODEL")
    if resolve_model_config("auto", model=model) is None:
        print("no model configured: set OPENAI_BASE_URL and OPENAI_API_KEY (or DASHSCOPE_API_KEY)",
              file=sys.stderr)
        return 2
    try:
        timeline = analyze(args.video, args.question, cache=False, model=model)
    except VidlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    events = [e for e in timeline.events if not args.label or args.label.lower() in e.label.lower()]
    result = {
        "video": str(args.video),
        "question": args.question,
        "model": timeline.model,
        "events": [
            {"label": e.label, "start": round(e.start, 3), "end": round(e.end, 3),
             "start_time": format_time(e.start), "end_time": format_time(e.end),
             "description": e.description, "confidence": e.confidence}
            for e in events
        ],
        "failed_windows": [w.index for w in timeline.failed_windows],
        "usage": timeline.usage.to_dict(),
    }
    print(json.dumps(result, indent=2))
    return 3 if timeline.partial else 0


if __name__ == "__main__":
    sys.exit(main())
