"""`vidline ask` on a long video through the reference server: map-reduce wall time, cache re-use,
time-to-first-chunk when streaming, and whether the cited times match the generated ground truth.

A synthetic video (default 20 min, 160x120, 2 fps, a coloured marker every ~2 minutes) is asked
"which shapes appear and when?". The reference server answers from what it sees, with a fixed
latency per request. Reported: the path and plan, cold wall time, warm (all captions cached) wall
time, time to the first streamed chunk, and the largest error between a cited time and the truth.

    .venv/bin/python bench/bench_understand.py [--minutes 20] [--latency 0.5] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.refserver import RefServer  # noqa: E402

from vidline.models.config import ModelConfig, RetryPolicy  # noqa: E402
from vidline.synth import MARKER_STYLES, Marker, make_video  # noqa: E402
from vidline.understand import ask, dry_run, find_time_references  # noqa: E402


def markers_for(duration: float) -> list[Marker]:
    labels = list(MARKER_STYLES)
    out = []
    t, i = 45.0, 0
    while t + 20 < duration:
        out.append(Marker(labels[i % len(labels)], t, t + 20.0))
        t += 125.0
        i += 1
    return out


def max_citation_error(text: str, markers: list[Marker]) -> tuple[float, int]:
    """(largest distance of a cited time from its marker's interval, markers never cited)."""
    worst, missing = 0.0, 0
    sentences = text.replace(". ", ".\n").splitlines()
    for m in markers:
        times = [t for s in sentences if m.label in s for _a, _b, t in find_time_references(s)
                 if abs(t - m.start) < 90 or abs(t - m.end) < 90]
        if not times:
            missing += 1
            continue
        worst = max(worst, abs(min(times) - m.start), abs(max(times) - m.end))
    return worst, missing


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    duration = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "long.mp4"
        markers = markers_for(duration)
        t0 = time.perf_counter()
        make_video(video, duration=duration, fps=2, size=(160, 120), markers=markers, gop=20)
        print(f"video: {args.minutes:g} min, {len(markers)} markers, generated in {time.perf_counter() - t0:.1f} s")
        with RefServer(latency=args.latency) as srv:
            cfg = ModelConfig(backend="dashscope", base_url=srv.dashscope_base_url, api_key="sk-test",
                              model="qwen2.5-vl-ref", concurrency=args.concurrency,
                              retry=RetryPolicy(max_retries=2, backoff_base=0.05))
            plan = dry_run(video, "which shapes appear and when?", config=cfg)
            print(plan.to_text())
            cache = Path(tmp) / "cache"
            t0 = time.perf_counter()
            answer = ask(video, "which shapes appear and when?", config=cfg, cache=cache)
            cold = time.perf_counter() - t0
            n_req = len([r for r in srv.requests if r.api == "dashscope"])
            worst, missing = max_citation_error(str(answer), markers)
            print(f"cold: {cold:.2f} s wall, {n_req} requests ({len(answer.captions)} captions + final), "
                  f"usage {answer.usage}")
            print(f"citations: largest error vs ground truth {worst:.2f} s, markers not cited: {missing}")
            srv.reset()
            srv.configure(latency=args.latency)  # reset() clears faults, latency included
            t0 = time.perf_counter()
            s = ask(video, "which shapes appear and when?", config=cfg, cache=cache, stream=True)
            first = None
            for _chunk in s:
                if first is None:
                    first = time.perf_counter() - t0
            warm = time.perf_counter() - t0
            n_req = len([r for r in srv.requests if r.api == "dashscope"])
            print(f"warm (captions cached) + streamed: {warm:.2f} s wall, first chunk after {first:.2f} s, "
                  f"{n_req} request(s)")
            floor = len(answer.captions) / args.concurrency * args.latency + args.latency
            print(f"request floor (windows/concurrency x latency + final): {floor:.2f} s")


if __name__ == "__main__":
    main()
