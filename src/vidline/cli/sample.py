"""``vidline sample VIDEO --fps F|auto --out DIR``: write sampled frames as JPEGs plus frames.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vidline.cli.common import finite_float, fps_arg, jpeg_quality, positive_int
from vidline.errors import ConfigError


def budget_from_args(args: argparse.Namespace, *, default_max_frames: int | None = None) -> Any:
    from vidline.media.plan import SamplingBudget

    kwargs: dict[str, Any] = {"fps": args.fps}
    if isinstance(args.fps, float) and args.fps > 2.0:
        kwargs["max_fps"] = args.fps
    max_frames = getattr(args, "max_frames", None) or default_max_frames
    if max_frames:
        kwargs["max_frames"] = max_frames
    if getattr(args, "max_pixels", None):
        kwargs["max_pixels"] = args.max_pixels
        kwargs["min_pixels"] = min(args.max_pixels, SamplingBudget.min_pixels)
    return SamplingBudget(**kwargs)


def frame_filename(t: float) -> str:
    """``000012.500.jpg`` for t = 12.5 s."""
    return f"{t:010.3f}.jpg"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sample", help="write sampled frames (JPEG) and frames.json")
    p.add_argument("video", help="video file")
    p.add_argument("--fps", type=fps_arg, default="auto", help="sampling fps or 'auto' (default)")
    p.add_argument("--start", type=finite_float, default=None, help="start time in seconds")
    p.add_argument("--end", type=finite_float, default=None, help="end time in seconds")
    p.add_argument("--max-frames", type=positive_int, default=None, help="frames at most")
    p.add_argument("--max-pixels", type=positive_int, default=None, help="pixels per frame at most")
    p.add_argument("--keyframes", action="store_true", help="keyframes only (fast, coarse)")
    p.add_argument("--backend", default="pyav", choices=["pyav", "decord"], help="decoder (default pyav)")
    p.add_argument("--quality", type=jpeg_quality, default=90, help="JPEG quality, 1-100 (default 90)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from vidline.media.probe import probe
    from vidline.media.sampler import plan_for, sample

    info = probe(args.video)
    budget = budget_from_args(args)
    plan = plan_for(info, budget, start=args.start, end=args.end)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out}: {exc.strerror}") from exc
    entries = []
    written: set[str] = set()
    for frame in sample(
        args.video,
        budget,
        start=args.start,
        end=args.end,
        backend=args.backend,
        keyframes_only=args.keyframes,
        info=info,
    ):
        name = frame_filename(frame.t)
        if name not in written:
            Image.fromarray(frame.rgb()).save(out / name, quality=args.quality)
            written.add(name)
        w, h = frame.size
        entries.append(
            {
                "t": round(frame.t, 6),
                "pts": frame.pts,
                "time_base": str(frame.time_base) if frame.time_base is not None else None,
                "width": w,
                "height": h,
                "file": name,
            }
        )
    manifest = {
        "video": info.path,
        "start": plan.start,
        "end": plan.end,
        "fps": None if args.keyframes else round(plan.fps, 6),
        "keyframes_only": bool(args.keyframes),
        "frames": entries,
    }
    (out / "frames.json").write_text(json.dumps(manifest, indent=2))
    print(f"{len(entries)} frames ({len(written)} files) -> {out}")
    return 0
