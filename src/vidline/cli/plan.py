"""``vidline plan VIDEO``: the windows, frames, frame size and estimated tokens of a run (no model calls)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from vidline.cli.common import finite_float, fps_arg, positive_int
from vidline.cli.sample import budget_from_args


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("plan", help="show the windows and token estimate for a video (no model calls)")
    p.add_argument("video", help="video file")
    p.add_argument("--window", type=finite_float, default=120.0, help="window length in seconds (default 120)")
    p.add_argument(
        "--overlap", type=finite_float, default=10.0, help="overlap between windows in seconds (default 10)"
    )
    p.add_argument("--fps", type=fps_arg, default="auto", help="sampling fps or 'auto' (default)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="frames per window at most")
    p.add_argument("--max-pixels", type=positive_int, default=None, help="pixels per frame at most")
    p.add_argument(
        "--backend", default="dashscope", choices=("dashscope", "openai"),
        help="limits of which server: dashscope|openai (default dashscope)"
    )
    p.add_argument("--mode", default=None, choices=("video", "frames"), help="payload mode: video|frames (default frames)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidline.log import logger
    from vidline.media.probe import probe
    from vidline.media.sampler import plan_windows_sampling
    from vidline.media.windows import max_frames_for, max_window_for, plan_windows, window_cap_note

    info = probe(args.video)
    max_window = max_window_for(args.mode, args.backend)
    note = window_cap_note(args.window, max_window)
    if note:
        logger.warning(note)
    windows = plan_windows(info.duration, args.window, args.overlap, max_window=max_window)
    budget = budget_from_args(args, default_max_frames=max_frames_for(args.backend))
    plans = plan_windows_sampling(info, windows, budget)
    rows = [
        {
            "index": w.index,
            "start": round(w.start, 3),
            "end": round(w.end, 3),
            "frames": p.n_frames,
            "fps": round(p.fps, 4),
            "width": p.width,
            "height": p.height,
            "tokens": p.tokens,
        }
        for w, p in zip(windows, plans, strict=False)
    ]
    total = sum(p.tokens for p in plans)
    if args.json:
        out = {
            "video": info.to_dict(),
            "window": args.window,
            "overlap": args.overlap,
            "max_window": max_window,
            "windows": rows,
            "total_frames": sum(p.n_frames for p in plans),
            "total_tokens": total,
        }
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{info.path}: {info.duration:.3f} s, {info.display_width}x{info.display_height}, {len(windows)} window(s)"
    )
    print(f"{'#':>4} {'start':>10} {'end':>10} {'frames':>6} {'fps':>7} {'size':>9} {'tokens':>8}")
    for r in rows:
        size = f"{r['width']}x{r['height']}"
        print(
            f"{r['index']:>4} {r['start']:>10.3f} {r['end']:>10.3f} {r['frames']:>6} {r['fps']:>7.3f} {size:>9} {r['tokens']:>8}"
        )
    print(f"total: {sum(p.n_frames for p in plans)} frames, ~{total} visual tokens")
    return 0
