"""Benchmark of `vidline timeline` end to end against the reference server.

A generated video (default 60 min, 320x240, 10 fps; `--size 1280x720 --video-fps 25` for a camera's
720p stream) with known marker events, a static stretch and events that cross window boundaries.
For each latency L the CLI runs in a subprocess (so its peak RSS is its own) against the reference
server (in this process) answering after L seconds.

Targets (issue 4):
  wall time <= 1.1 x max(decode floor, n_windows x L / concurrency)
  peak RSS  <= 300 MB
  every known event found with IoU >= 0.5, none twice, nothing in the static stretch.

The decode floor is the time of the same streaming decode (media.sample_windows over the same
windows and budget) with no requests, measured in a subprocess too: the fastest of its four set-ups
(RGB or planar YUV frames, automatic decoder threads or one), so the pipeline is held to the best
decode the sampler can do, not to the one it happens to use.

The timeline decodes in two lanes by default on two CPUs (contiguous stretches of the video; on
Linux each lane is a forked worker process that also encodes its windows), so the table also gives
the **2-lane floor**: the same two decoders (threads) with nothing else to do, and the ratio against
it. Peak RSS is summed over the run's process tree (sampled every 50 ms; shared pages counted once per
process, an over-count), next to the tree's summed PSS. Against the single-decoder floor the pipeline can be
faster than "the decode"; against the 2-lane floor it pays for its encoding on the same CPUs.

The table also gives `bound`, the least wall time any client that decodes the video with two lanes
could reach even with no start-up cost: max(floor2 + L, floor2 * c/n + n * L/c) (the last window's
request starts when the decode ends; the c request slots start filling only once the first c windows
are decoded).

    .venv/bin/python bench/pipeline.py --minutes 60 --latency 0.2 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

DATA = ROOT / "bench" / "data"

# (label, start, end) in seconds for a 60-minute video; scaled for other lengths.
EVENTS_60 = [
    ("red square", 30, 75),
    ("green circle", 95, 150),  # across the first window boundary
    ("blue triangle", 300, 330),
    ("red square", 600, 660),  # same label again, far away: must stay a separate event
    ("yellow square", 1000, 1130),  # longer than a window's stride: reported by 2+ windows
    ("magenta circle", 1500, 1530),
    ("cyan triangle", 1800, 1900),
    ("green circle", 2000, 2040),
    ("blue triangle", 2150, 2250),
    # 2400-3300: static stretch, nothing happens
    ("red square", 3400, 3450),
    ("magenta circle", 3500, 3590),
]
STATIC_60 = (2400.0, 3300.0)


def scaled(minutes: float) -> tuple[list[tuple[str, float, float]], tuple[float, float]]:
    k = minutes / 60.0
    return [(lab, s * k, e * k) for lab, s, e in EVENTS_60], (STATIC_60[0] * k, STATIC_60[1] * k)


def ensure_video(minutes: float, fps: float, size: tuple[int, int]) -> Path:
    from vidline.synth import Marker, make_video

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"bench_{minutes:g}min_{size[0]}x{size[1]}_{fps:g}fps.mp4"
    if path.exists():
        return path
    events, _ = scaled(minutes)
    markers = [Marker(lab, s, e, x=0.3 + 0.4 * (i % 2), y=0.5) for i, (lab, s, e) in enumerate(events)]
    t0 = time.monotonic()
    tmp = path.with_suffix(".tmp.mp4")
    make_video(tmp, duration=minutes * 60.0, fps=fps, size=size, markers=markers, gop=int(fps * 4))
    os.replace(tmp, path)
    print(f"generated {path.name} in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return path


def lower_bound(floor: float, latency: float, n_windows: int, concurrency: int) -> float:
    """The least wall time any one-pass client could reach (no start-up cost at all): the last window's
    request starts when the decode ends and takes L; and the c request slots only start filling once
    the first c windows are decoded (~c/n of the decode), then need n*L/c."""
    return max(floor + latency, floor * concurrency / n_windows + n_windows * latency / concurrency)


LAST_CPU = [0.0]
LAST_PSS = [0.0]  # the last run's peak PSS summed over its process tree (MB)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the timeline's decode worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _tree_memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB summed over ``pid``'s process tree now. The RSS sum counts the pages that
    forked workers share with the run once per process (an over-count); PSS splits them."""
    rss = pss = 0.0
    page = os.sysconf("SC_PAGE_SIZE")
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                rss += int(f.read().split()[1]) * page / 2**20
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) / 1024
                        break
        except (OSError, IndexError, ValueError):
            continue
    return rss, pss


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, str, str]:
    """(wall s, peak RSS MB, exit code, stdout, stderr) of one subprocess. Peak RSS is the larger of
    wait4's (the biggest single process) and the peak of the RSS summed over the process tree (the
    run and its decode workers, sampled every 50 ms), so forked workers cannot hide memory.

    The subprocess's CPU seconds (user + sys, its workers included) are left in LAST_CPU[0], the
    tree's peak PSS in LAST_PSS[0]."""
    import threading

    peak = [0.0, 0.0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                rss, pss = _tree_memory(proc.pid)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        done.set()
        sampler.join()
        LAST_CPU[0] = usage.ru_utime + usage.ru_stime
        LAST_PSS[0] = peak[1]
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, max(usage.ru_maxrss / 1024.0, peak[0]), proc.returncode, out.read().decode(), err.read().decode()


DECODE_SNIPPET = """
import sys, time
from vidline.media.probe import probe
from vidline.media.sampler import sample_windows
from vidline.models.config import ModelConfig
from vidline.pipeline import RunOptions, make_budget, plan_windows_for
path, window, overlap, fps, backend = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
pixel_format, threads = sys.argv[6], (None if sys.argv[7] == "auto" else int(sys.argv[7]))
lanes = int(sys.argv[8])
opts = RunOptions(window=window, overlap=overlap, fps=fps if fps == "auto" else float(fps))
info = probe(path)
cfg = ModelConfig(backend)
windows = plan_windows_for(info, cfg, opts)
counts = []

def decode(part):
    n = 0
    for wf in sample_windows(path, part, make_budget(opts, backend), info=info, pixel_format=pixel_format,
                             threads=threads):
        n += len(wf.frames)
    counts.append(n)

if lanes == 1:
    decode(windows)
else:  # the timeline's decode lanes: contiguous stretches of the video, one decoder thread each
    import threading
    from types import SimpleNamespace
    from vidline.pipeline import decode_lanes
    parts = decode_lanes([SimpleNamespace(window=w) for w in windows], lanes)
    workers = [threading.Thread(target=decode, args=([j.window for j in part],)) for part in parts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
print(len(windows), sum(counts))
"""


class LatencyServer:
    """A minimal OpenAI-compatible chat server that reads the request, waits L seconds and answers
    "no events". It measures the pipeline's orchestration (decode overlapping requests) without the
    reference server's perception CPU, which shares this machine's two cores with the client."""

    def __init__(self, latency: float) -> None:
        import http.server
        import threading

        outer = self
        self.latency = latency
        self.count = 0
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as real servers (uvicorn) set it: the headers and the body are two writes, and
            # Nagle held the second until the client's delayed ACK (+40 ms per answer; fixed 2026-11-23)
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(outer.latency)
                with outer._lock:
                    outer.count += 1
                body = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": "latency",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": '{"events": []}'}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.openai_base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> LatencyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def check_events(doc: dict[str, Any], truth: list[tuple[str, float, float]],
                 static: tuple[float, float]) -> dict[str, Any]:
    events = [(e["label"], e["start"], e["end"]) for e in doc["events"]]
    matched: dict[int, list[tuple[str, float, float]]] = {i: [] for i in range(len(truth))}
    spurious = []
    for ev in events:
        best = max(range(len(truth)), key=lambda i: iou(ev[1:], truth[i][1:]) if truth[i][0] == ev[0] else -1)
        if truth[best][0] == ev[0] and iou(ev[1:], truth[best][1:]) > 0:
            matched[best].append(ev)
        else:
            spurious.append(ev)
    ious = [max((iou(ev[1:], truth[i][1:]) for ev in matched[i]), default=0.0) for i in range(len(truth))]
    dups = sum(max(0, len(m) - 1) for m in matched.values())
    in_static = [ev for ev in events if ev[1] < static[1] and ev[2] > static[0]]
    return {"min_iou": round(min(ious), 3), "ious": [round(x, 3) for x in ious], "duplicates": dups,
            "spurious": len(spurious), "static_events": len(in_static), "n_events": len(events),
            "failed_windows": sum(1 for w in doc["windows"] if w["status"] == "failed")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--latency", type=float, nargs="+", default=[0.2, 3.0],
                    help="latencies for the orchestration runs (latency-only server)")
    ap.add_argument("--perception-latency", type=float, nargs="*", default=[0.2],
                    help="latencies for the perception runs (reference server)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--prefetch", type=int, default=None,
                    help="payloads encoded ahead of a free request slot (default: vidline's, = concurrency)")
    ap.add_argument("--window", type=float, default=125.0)
    ap.add_argument("--overlap", type=float, default=10.0)
    ap.add_argument("--fps", default="1", help="sampling fps per window (default 1)")
    ap.add_argument("--mode", choices=["video", "frames"], default="video")
    ap.add_argument("--server", default="vllm", help="OpenAI-compatible flavour to assume (default vllm)")
    ap.add_argument("--video-fps", type=float, default=10.0, help="frame rate of the generated video (default 10)")
    ap.add_argument("--size", default="320x240", help="WxH of the generated video (default 320x240)")
    ap.add_argument("--decoders", type=int, default=None, help="vidline timeline --decoders (default: auto)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="repeat the latency runs, each right after a fresh floor measurement (default 1)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    from tests.refserver import RefServer

    width, height = (int(x) for x in args.size.lower().split("x"))
    video = ensure_video(args.minutes, args.video_fps, (width, height))
    truth, static = scaled(args.minutes)
    py = sys.executable
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DASHSCOPE_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    # the floor and the CLI both run with Python's normal bytecode cache (this sandbox exports
    # PYTHONDONTWRITEBYTECODE=1, which would recompile vidline's modules on every start)
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def decode(pixel_format: str, threads: str, lanes: int = 1) -> tuple[float, float, str]:
        """(wall s, CPU s, stdout) of the streaming decode alone, in its own subprocess."""
        wall, _rss, code, out, err = run_measured(
            [py, "-c", DECODE_SNIPPET, str(video), str(args.window), str(args.overlap), args.fps, "openai",
             pixel_format, threads, str(lanes)], env)
        if code != 0:
            raise SystemExit(err)
        return wall, LAST_CPU[0], out

    # the decode floor: the fastest of the sampler's set-ups (RGB or planar YUV output; FFmpeg's
    # automatic threads or one decoding thread), each a subprocess doing only the streaming decode
    floors: dict[str, tuple[float, float]] = {}
    for pixel_format in ("rgb24", "yuv420p"):
        for threads in ("auto", "1"):
            wall, cpu, out = decode(pixel_format, threads)
            floors[f"{pixel_format}/threads={threads}"] = (wall, cpu)
            print(f"decode {pixel_format} threads={threads}: {wall:.1f} s ({cpu:.1f} CPU-s)", file=sys.stderr)
    n_windows, n_frames = (int(x) for x in out.split())
    best = min(floors, key=lambda k: floors[k][0])
    decode_floor, decode_cpu = floors[best]
    # the floor of the timeline's own decode: two lanes (one decoder thread per CPU), nothing else
    lanes_floor, lanes_cpu, lanes_out = decode("yuv420p", "1", 2)
    assert lanes_out.split() == out.split(), (lanes_out, out)  # the same frames
    print(f"decode yuv420p threads=1, 2 lanes: {lanes_floor:.1f} s ({lanes_cpu:.1f} CPU-s)", file=sys.stderr)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", file=sys.stderr)
    print(f"decode floor: {decode_floor:.1f} s ({decode_cpu:.1f} CPU-s, {best}) for {n_windows} windows / "
          f"{n_frames} frames", file=sys.stderr)

    def cli(url: str, out_path: Path) -> list[str]:
        return [py, "-m", "vidline", "timeline", str(video), "--base-url", url,
                "--api-key", "sk-test", "--model", "qwen2.5-vl-ref", "--mode", args.mode, "--server", args.server,
                "--window", str(args.window), "--overlap", str(args.overlap), "--fps", args.fps,
                "--concurrency", str(args.concurrency), "--no-cache", "--quiet", "-o", str(out_path),
                *(["--prefetch", str(args.prefetch)] if args.prefetch is not None else []),
                *(["--decoders", str(args.decoders)] if args.decoders is not None else [])]

    def floor_now() -> tuple[float, float]:
        """The best single-decoder set-up's floor and the two-lane floor, measured again right before a
        pipeline run (this VM's speed drifts by 10-30 % over minutes, so each ratio compares runs made
        back to back)."""
        pixel_format, threads = best.split("/threads=")
        return decode(pixel_format, threads)[0], decode("yuv420p", "1", 2)[0]

    results: list[dict[str, Any]] = []
    # 1. orchestration: wall time and memory against a server that only waits L seconds
    for rep in range(args.repeat):
        for latency in args.latency:
            floor, floor2 = ((decode_floor, lanes_floor) if rep == 0 and latency == args.latency[0]
                             else floor_now())
            with LatencyServer(latency) as server, tempfile.TemporaryDirectory() as tmp:
                wall, rss, code, _out, err = run_measured(cli(server.openai_base_url, Path(tmp) / "t.json"), env)
                if code not in (0, 3):
                    print(err, file=sys.stderr)
                    return 1
                target = 1.1 * max(floor, n_windows * latency / args.concurrency)
                target2 = 1.1 * max(floor2, n_windows * latency / args.concurrency)
                bound = lower_bound(floor2, latency, n_windows, args.concurrency)
                row = {"server": "latency-only", "latency": latency, "wall": round(wall, 1),
                       "target": round(target, 1), "ratio": round(wall / max(floor, n_windows * latency / args.concurrency), 3),
                       "floor2": round(floor2, 1),
                       "ratio2": round(wall / max(floor2, n_windows * latency / args.concurrency), 3),
                       "bound": round(bound, 1),
                       "wall_ok": wall <= target, "wall_ok2": wall <= target2, "cpu_s": round(LAST_CPU[0], 1), "load": round(os.getloadavg()[0], 1),
                       "peak_rss_mb": round(rss), "peak_pss_mb": round(LAST_PSS[0]), "rss_ok": rss <= 300,
                       "requests": server.count,
                       "decode_floor": round(floor, 1), "n_windows": n_windows}
                results.append(row)
                print(f"latency-only L={latency:g}s: wall {wall:.1f} s (floor {floor:.1f}, 2-lane floor {floor2:.1f}, "
                      f"target {target:.1f}), "
                      f"CPU {LAST_CPU[0]:.1f} s, peak RSS {rss:.0f} MB (PSS {LAST_PSS[0]:.0f}), {server.count} requests", file=sys.stderr)
    # 2. perception: the reference server really looks at every frame (its CPU shares this machine)
    for latency in args.perception_latency:
        with RefServer(latency=latency) as server, tempfile.TemporaryDirectory() as tmp:
            out_path = Path(tmp) / "timeline.json"
            wall, rss, code, _out, err = run_measured(cli(server.openai_base_url, out_path), env)
            if code not in (0, 3):
                print(err, file=sys.stderr)
                return 1
            doc = json.loads(out_path.read_text())
            check = check_events(doc, truth, static)
            row = {"server": "refserver", "latency": latency, "wall": round(wall, 1), "target": None,
                   "cpu_s": round(LAST_CPU[0], 1), "load": round(os.getloadavg()[0], 1),
                   "peak_rss_mb": round(rss), "peak_pss_mb": round(LAST_PSS[0]), "rss_ok": rss <= 300,
                   "requests": len(server.generation_requests),
                   "decode_floor": round(decode_floor, 1), "n_windows": n_windows, **check}
            row["events_ok"] = check["min_iou"] >= 0.5 and not check["duplicates"] and not check["static_events"]
            results.append(row)
            print(f"refserver L={latency:g}s: wall {wall:.1f} s, CPU {LAST_CPU[0]:.1f} s, peak RSS {rss:.0f} MB, "
                  f"min IoU {check['min_iou']}, duplicates {check['duplicates']}, static {check['static_events']}, "
                  f"spurious {check['spurious']}, failed windows {check['failed_windows']}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    import statistics
    print(f"video: {video.name}, {n_windows} windows, {n_frames} frames sampled, concurrency {args.concurrency}, prefetch {args.prefetch if args.prefetch is not None else 'default'}, "
          f"decode floor {decode_floor:.1f} s ({decode_cpu:.1f} CPU-s, {best}; "
          + ", ".join(f"{k} {w:.1f} s" for k, (w, _c) in floors.items())
          + f"), two-lane decode floor {lanes_floor:.1f} s ({lanes_cpu:.1f} CPU-s)\n")
    print("| server | L (s) | floor (s) | 2-lane floor (s) | wall (s) | wall / max(floor, nL/c) | "
          "wall / max(2-lane floor, nL/c) | bound (s) | client CPU (s) | load avg | "
          "peak RSS (MB) | peak PSS (MB) | min IoU | dup | static | ok (floor / 2-lane floor) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        perception = r["server"] == "refserver"
        if perception:
            ok = "yes" if r["rss_ok"] and r["events_ok"] else "NO"
        else:
            ok = " / ".join("yes" if r["rss_ok"] and r[k] else "NO" for k in ("wall_ok", "wall_ok2"))
        print(f"| {r['server']} | {r['latency']:g} | {r['decode_floor']} | {r.get('floor2', '-')} | {r['wall']} | "
              f"{r.get('ratio', '-')} | {r.get('ratio2', '-')} | {r.get('bound', '-')} | "
              f"{r['cpu_s']} | {r['load']} | {r['peak_rss_mb']} | {r.get('peak_pss_mb', '-')} | {r.get('min_iou', '-')} | "
              f"{r.get('duplicates', '-')} | {r.get('static_events', '-')} | {ok} |")
    for latency in args.latency:
        rows = [r for r in results if r["server"] == "latency-only" and r["latency"] == latency]
        for key, ok_key, name in (("ratio", "wall_ok", "floor"), ("ratio2", "wall_ok2", "2-lane floor")):
            ratios = [r[key] for r in rows]
            met = sum(1 for r in rows if r[ok_key])
            print(f"\nL = {latency:g} s: wall / max({name}, nL/c) median {statistics.median(ratios):.3f} "
                  f"(runs: {', '.join(f'{x:.3f}' for x in ratios)}); within 1.1x in {met} of {len(ratios)}", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
