"""``vidline probe VIDEO [--json]``: what a video file is."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "probe", help="describe a video file (size, duration, fps, rotation, keyframes)"
    )
    p.add_argument("video", help="video file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidline.media.probe import probe

    info = probe(args.video)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    kf = f"{info.keyframe_interval:.3f} s" if info.keyframe_interval else "unknown"
    rows = [
        ("file", info.path),
        ("container", info.container),
        ("codec", info.codec),
        ("coded size", f"{info.width}x{info.height}"),
        (
            "display size",
            f"{info.display_width}x{info.display_height}"
            + (f" (rotation {info.rotation})" if info.rotation else "")
            + (f" (pixel aspect {info.sample_aspect_ratio.numerator}:{info.sample_aspect_ratio.denominator})"
               if info.sample_aspect_ratio != 1 else ""),
        ),
        ("duration", f"{info.duration:.3f} s" + (" (truncated: what decodes)" if info.truncated else "")),
        ("fps", f"{info.fps:.3f}" + (" (variable)" if info.is_vfr else "")),
        ("frames", f"~{info.frame_count}"),
        ("keyframe interval", kf),
        ("start offset", f"{info.start_time:.3f} s"),
        ("audio", "yes" if info.has_audio else "no"),
        ("size", f"{info.size_bytes} bytes"),
    ]
    for k, v in rows:
        print(f"{k:18} {v}")
    return 0
