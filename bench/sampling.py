"""Frame-sampling benchmark: vidline's sampler against the ffmpeg floor, keyframes-only, decord, qwen-vl-utils.

Generates (or reuses) bench/data/bench_<minutes>min_720p30.mp4: 1280x720, 30 fps, H.264 with x264's
default GOP (ffmpeg testsrc2 when ffmpeg is installed, otherwise PyAV). Every method runs in its own
subprocess; CPU seconds (user + sys) and peak RSS come from that child's rusage (os.wait4).

    .venv/bin/python bench/sampling.py                   # the full 60-minute video
    .venv/bin/python bench/sampling.py --minutes 5       # shorter, same comparisons
    .venv/bin/python bench/sampling.py --minutes 5 --out bench/results/sampling.md
    .venv/bin/python bench/sampling.py --minutes 2 --gop 30   # keyframe every second: sparse targets

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
FPS_LEVELS = (2.0, 1.0, 0.25, 0.1)


# ---------------------------------------------------------------- video generation
def ensure_video(minutes: float, gop: int | None = None) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    tag = f"{minutes:g}".replace(".", "p")
    gop_tag = f"_gop{gop}" if gop else ""
    path = DATA / f"bench_{tag}min_720p30{gop_tag}.mp4"
    if path.exists() and path.stat().st_size > 0:
        return path
    seconds = minutes * 60
    tmp = path.with_suffix(".part.mp4")
    ffmpeg = shutil.which("ffmpeg")
    t0 = time.time()
    if ffmpeg:
        cmd = [
            ffmpeg, "-y", "-loglevel", "error", "-f", "lavfi",
            "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
            "-c:v", "libx264", "-pix_fmt", "yuv420p",
            *(["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"] if gop else []),
            str(tmp),
        ]  # fmt: skip
        print("generating:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    else:
        print(f"generating {path.name} with PyAV (no ffmpeg found)", file=sys.stderr)
        _generate_pyav(tmp, seconds, gop)
    tmp.rename(path)
    print(f"generated {path} in {time.time() - t0:.0f} s", file=sys.stderr)
    return path


def _generate_pyav(path: Path, seconds: float, gop: int | None = None) -> None:
    from fractions import Fraction

    import av
    import numpy as np

    w, h, fps = 1280, 720, 30
    base = np.zeros((h, w, 3), dtype=np.uint8)
    xx = np.arange(w, dtype=np.uint16)
    base[:] = (np.stack([xx % 256, (xx * 3) % 256, (255 - xx % 256)], axis=1)[None, :, :]).astype(np.uint8)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if gop:
            s.codec_context.gop_size = gop
            s.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i in range(int(seconds * fps)):
            img = np.roll(base, i * 4, axis=1)
            img[(i * 3) % h : (i * 3) % h + 40, :, :] = 255  # a moving bar
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


# ---------------------------------------------------------------- workers (run in child processes)
def worker(method: str, video: str, fps: float | None) -> dict[str, object]:
    """Runs inside the child. Prints a JSON line with frames produced."""
    n = 0
    if method.startswith("vidline"):
        from vidline.media.backends.pyav import PyAVSource
        from vidline.media.plan import SamplingBudget
        from vidline.media.probe import probe
        from vidline.media.sampler import plan_for
        from vidline.media.source import Target

        info = probe(video)
        if method == "vidline-keyframes":
            src = PyAVSource(video, info)
            for _ in src.keyframes(size=(448, 252)):
                n += 1
            return {"frames": n, "stats": src.stats}
        assert fps is not None
        strategy = {"vidline": "auto", "vidline-sequential": "sequential", "vidline-seek-every": "seek"}[
            method
        ]
        budget = SamplingBudget(fps=fps, max_fps=max(fps, 2.0), max_frames=10**7, min_fps=min(fps, 0.1))
        plan = plan_for(info, budget)
        src = PyAVSource(video, info, strategy=strategy)
        for _ in src.read([Target(t, plan.width, plan.height) for t in plan.timestamps]):
            n += 1
        return {"frames": n, "stats": src.stats, "size": [plan.width, plan.height]}
    if method == "decord":
        import decord
        import numpy as np

        vr = decord.VideoReader(video, ctx=decord.cpu(0))
        assert fps is not None
        idx = np.arange(0, len(vr), vr.get_avg_fps() / fps).round().astype(int)
        idx = idx[idx < len(vr)]
        for k in range(0, len(idx), 256):
            batch = vr.get_batch(idx[k : k + 256].tolist()).asnumpy()
            n += len(batch)
            del batch
        return {"frames": n}
    if method == "qwen-vl-utils":
        from qwen_vl_utils import fetch_video  # type: ignore[import-not-found]

        video_tensor = fetch_video({"video": video})
        return {"frames": int(video_tensor.shape[0])}
    if method == "qwen-vl-utils-emulated":
        # qwen-vl-utils' decord path without torch: 768 evenly spaced indices (its default
        # FPS_MAX_FRAMES at 2 fps on long videos) fetched in ONE get_batch call.
        import decord
        import numpy as np

        vr = decord.VideoReader(video, ctx=decord.cpu(0))
        total = len(vr)
        nframes = min(768, int(total / vr.get_avg_fps() * 2.0)) // 2 * 2
        idx = np.linspace(0, total - 1, nframes).round().astype(int).tolist()
        batch = vr.get_batch(idx).asnumpy()
        return {"frames": int(batch.shape[0])}
    raise SystemExit(f"unknown method {method}")


# ---------------------------------------------------------------- driver
def _count_keyframes(video: Path) -> int | None:
    import av

    with av.open(str(video)) as c:
        entries = c.streams.video[0].index_entries
        return sum(1 for e in entries if e.is_keyframe) if len(entries) else None


def measure(cmd: list[str]) -> dict[str, object]:
    """Run ``cmd`` as a child; CPU seconds and peak RSS of that child only (os.wait4)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "code": proc.returncode,
        "cpu": ru.ru_utime + ru.ru_stime,
        "rss_mb": ru.ru_maxrss / 1024.0,  # Linux: KiB
        "wall": time.time() - t0,
        "out": out,
        "err": err[-400:],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the generated video (default 60)")
    ap.add_argument("--gop", type=int, default=None, help="keyframe interval in frames (default: x264's 250)")
    ap.add_argument("--video", default=None, help="use this video instead of generating one")
    ap.add_argument("--out", default=None, help="write the markdown table here as well")
    ap.add_argument("--qwen-python", default=None,
                    help="a Python that has qwen-vl-utils (with torch, torchvision, decord) installed, e.g. a "
                    "separate venv; default: this one")
    ap.add_argument("--skip", default="", help="comma-separated methods to skip (e.g. decord,qwen-vl-utils)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--fps", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.video, args.fps)))
        return 0

    video = Path(args.video) if args.video else ensure_video(args.minutes, args.gop)
    sys.path.insert(0, str(ROOT / "src"))
    from vidline.media.probe import probe

    info = probe(video)
    skip = set(filter(None, args.skip.split(",")))
    py = sys.executable
    me = str(Path(__file__).resolve())
    ffmpeg = shutil.which("ffmpeg")

    rows: list[dict[str, object]] = []

    def record(name: str, fps: float | None, cmd: list[str], frames: int | None = None) -> None:
        if name in skip:
            return
        print(f"running {name} fps={fps} ...", file=sys.stderr, flush=True)
        r = measure(cmd)
        if r["code"] != 0:
            rows.append({"method": name, "fps": fps, "error": str(r["err"]).strip().splitlines()[-1:]})
            print(f"  failed: {r['err']}", file=sys.stderr)
            return
        if frames is None:
            try:
                frames = int(json.loads(str(r["out"]).strip().splitlines()[-1])["frames"])
            except (ValueError, IndexError, KeyError):
                frames = None
        rows.append(
            {"method": name, "fps": fps, "frames": frames, **{k: r[k] for k in ("cpu", "rss_mb", "wall")}}
        )
        print(f"  cpu {r['cpu']:.1f} s, rss {r['rss_mb']:.0f} MB, wall {r['wall']:.1f} s", file=sys.stderr)

    def w(method: str, fps: float | None = None) -> list[str]:
        cmd = [py, me, "--worker", method, "--video", str(video)]
        return cmd + (["--fps", str(fps)] if fps is not None else [])

    if ffmpeg:
        record(
            "ffmpeg -f null (floor)",
            None,
            [ffmpeg, "-v", "error", "-threads", "2", "-i", str(video), "-f", "null", "-"],
            info.frame_count,
        )
        record(
            "ffmpeg -skip_frame nokey",
            None,
            [
                ffmpeg,
                "-v",
                "error",
                "-skip_frame",
                "nokey",
                "-threads",
                "2",
                "-i",
                str(video),
                "-f",
                "null",
                "-",
            ],
            _count_keyframes(video),
        )
    for fps in FPS_LEVELS:
        record("vidline", fps, w("vidline", fps))
    record("vidline-sequential", 0.1, w("vidline-sequential", 0.1))
    record("vidline-keyframes", None, w("vidline-keyframes"))
    try:
        import decord  # noqa: F401

        for fps in (1.0, 0.1):
            record("decord", fps, w("decord", fps))
        record("qwen-vl-utils-emulated", None, w("qwen-vl-utils-emulated"))
    except ImportError:
        rows.append({"method": "decord", "fps": None, "error": ["decord not installed"]})
    qpy = args.qwen_python or py
    has_qwen = subprocess.run([qpy, "-c", "import qwen_vl_utils"], capture_output=True).returncode == 0
    if has_qwen:
        os.environ.setdefault("FORCE_QWENVL_VIDEO_READER", "decord")
        record("qwen-vl-utils", None, [qpy, me, "--worker", "qwen-vl-utils", "--video", str(video)])
    else:
        rows.append(
            {"method": "qwen-vl-utils", "fps": None, "error": ["not installed (needs torch/torchvision)"]}
        )

    floor = next(
        (r["cpu"] for r in rows if str(r["method"]).startswith("ffmpeg -f null") and "cpu" in r), None
    )
    if floor is None:  # no ffmpeg: use vidline's sequential full pass as the floor
        floor = next((r["cpu"] for r in rows if r["method"] == "vidline-sequential" and "cpu" in r), None)
    lines = [
        f"Video: {video.name}: {info.duration:.0f} s, {info.width}x{info.height}, {info.fps:.2f} fps, "
        f"{info.codec}, keyframe every {info.keyframe_interval or 0:.2f} s, {info.size_bytes / 1e6:.0f} MB",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| method | fps | frames out | CPU s | CPU × floor | peak RSS MB | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['fps'] or '–'} | – | – | – | – | {' '.join(r['error'])} |")  # type: ignore[arg-type]
            continue
        ratio = f"{float(r['cpu']) / float(floor):.2f}" if floor else "–"  # type: ignore[arg-type]
        lines.append(
            f"| {r['method']} | {r['fps'] if r['fps'] is not None else '–'} | {r['frames']} | "
            f"{float(r['cpu']):.1f} | {ratio} | {float(r['rss_mb']):.0f} | {float(r['wall']):.1f} |"  # type: ignore[arg-type]
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
