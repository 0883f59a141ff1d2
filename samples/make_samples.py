"""Regenerate the committed sample videos (deterministically) and their ground truth.

    .venv/bin/python samples/make_samples.py            # writes samples/*.mp4 and samples/samples.json
    .venv/bin/python samples/make_samples.py --check    # regenerate in a temp dir, compare

The videos are drawn with ``vidline.synth.render_frame`` (coloured shapes on a grey wall) and encoded
with libx264 single-threaded. The same PyAV/FFmpeg build on the same CPU gives the same bytes; on
another CPU x264's float rate control may shift a few blocks by a level or two, so ``--check`` accepts
a regenerated video whose frames, times and pictures match (pixels within 8 levels, mean difference
under 0.05): a changed drawing, time or marker differs by far more.

- ``dock.mp4``   48 s, 320x240, 10 fps: four shapes cross the frame during known intervals, with static
                 stretches between. ``vidline timeline samples/dock.mp4`` (offline motion backend)
                 finds the four crossings.
- ``shapes.mp4`` 20 s, 320x240, 10 fps: shapes that appear, overlap and leave; for model demos
                 ("when is the red square visible?").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vidline.synth import Marker, frame_times, render_frame

HERE = Path(__file__).resolve().parent

SAMPLES: dict[str, dict] = {
    "dock.mp4": {
        "duration": 48.0, "fps": 10, "size": (320, 240), "gop": 20,
        "description": "four shapes cross a static scene, one at a time",
        "markers": [
            Marker("yellow square", 4.0, 11.0, x=0.1, y=0.55, size=0.22, dx=0.1),
            Marker("red square", 17.0, 22.0, x=0.2, y=0.4, size=0.2, dx=0.12),
            Marker("green circle", 28.0, 34.5, x=0.15, y=0.6, size=0.25, dx=0.1),
            Marker("blue triangle", 40.0, 44.0, x=0.3, y=0.5, size=0.25, dx=0.12),
        ],
    },
    "shapes.mp4": {
        "duration": 20.0, "fps": 10, "size": (320, 240), "gop": 20,
        "description": "shapes appear, overlap in time and leave",
        "markers": [
            Marker("red square", 2.0, 6.0, x=0.25, y=0.35, size=0.22),
            Marker("green circle", 5.0, 9.0, x=0.7, y=0.6, size=0.25),
            Marker("blue triangle", 11.0, 15.0, x=0.2, y=0.5, size=0.25, dx=0.05),
            Marker("magenta circle", 16.5, 19.0, x=0.6, y=0.4, size=0.2),
        ],
    },
}


def write_video(path: Path, *, duration: float, fps: int, size: tuple[int, int], gop: int,
                markers: list[Marker]) -> None:
    width, height = size
    tb = Fraction(1, 90000)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        out.metadata.clear()
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1  # multi-threaded x264 output depends on the CPU count
        stream.options = {
            "crf": "30", "preset": "medium", "tune": "stillimage",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1",
        }
        for t in frame_times(duration, fps):
            frame = av.VideoFrame.from_ndarray(render_frame(float(t), width, height, markers), format="rgb24")
            frame.pts = int(t / tb)
            frame.time_base = tb
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def ground_truth() -> dict:
    return {
        name: {
            "duration": spec["duration"], "fps": spec["fps"], "width": spec["size"][0],
            "height": spec["size"][1], "keyframe_interval": spec["gop"] / spec["fps"],
            "description": spec["description"],
            "markers": [asdict(m) for m in spec["markers"]],
        }
        for name, spec in SAMPLES.items()
    }


def generate(out_dir: Path) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, spec in SAMPLES.items():
        path = out_dir / name
        write_video(path, duration=spec["duration"], fps=spec["fps"], size=spec["size"], gop=spec["gop"],
                    markers=spec["markers"])
        digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out_dir / "samples.json").write_text(json.dumps(ground_truth(), indent=2) + "\n")
    return digests


def same_pictures(a: Path, b: Path) -> bool:
    """Whether two encodings show the same frames at the same times (up to x264's small drift)."""
    import av

    def frames(path: Path) -> list[tuple[int | None, Any]]:
        with av.open(str(path)) as c:
            return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]

    return frames_match(frames(a), frames(b))


def frames_match(fa: list[tuple[int | None, Any]], fb: list[tuple[int | None, Any]]) -> bool:
    """``same_pictures`` on decoded (pts, RGB array) lists: same count, same times, pixels within 8
    levels with a mean difference under 0.05."""
    import numpy as np

    if len(fa) != len(fb):
        return False
    for (pa, ia), (pb, ib) in zip(fa, fb, strict=True):
        if pa != pb or ia.shape != ib.shape:
            return False
        diff = np.abs(ia.astype(np.int16) - ib.astype(np.int16))
        if int(diff.max()) > 8 or float(diff.mean()) >= 0.05:
            return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE, help="output directory (default: samples/)")
    ap.add_argument("--check", action="store_true", help="regenerate in a temp dir and compare with --out")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(Path(tmp))
            bad = [n for n, h in fresh.items()
                   if not (args.out / n).exists()
                   or (hashlib.sha256((args.out / n).read_bytes()).hexdigest() != h
                       and not same_pictures(args.out / n, Path(tmp) / n))]
            if (args.out / "samples.json").read_text() != (Path(tmp) / "samples.json").read_text():
                bad.append("samples.json")
        print("samples differ: " + ", ".join(bad) if bad else "samples up to date")
        return 1 if bad else 0
    for name, digest in generate(args.out).items():
        size = (args.out / name).stat().st_size
        print(f"{args.out / name}: {size / 1024:.0f} KiB sha256 {digest[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
