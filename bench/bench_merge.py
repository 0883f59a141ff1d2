"""Merge accuracy and speed on a simulated hour: known events, overlapping windows, noisy reports.

Ground truth: N events with known [start, end) on a 60-minute video. Each 120 s window (10 s
overlap) reports every event it sees, clamped to the window, with boundary jitter, label
paraphrases, and occasional sloppy reports that bridge two nearby occurrences. We count events
found with temporal IoU >= 0.5, duplicates (two merged events matching one truth), and time.

    .venv/bin/python bench/bench_merge.py [--events 300] [--jitter 0.5] [--sloppy 0.1] [--seed 0]
        [--window 120] [--overlap 10]
"""

from __future__ import annotations

import argparse
import random
import time

from vidline.merge import MergeParams, merge_events, normalize_label
from vidline.types import Event

PARAPHRASES = {
    "red square": ["red square", "Red square.", "a red square", "the red squares"],
    "green circle": ["green circle", "A green circle", "green circles"],
    "person walking": ["person walking", "a person walks", "Person walking."],
    "blue car": ["blue car", "a blue car", "Blue car"],
}


def truth_events(rng: random.Random, n: int, duration: float) -> list[tuple[str, float, float]]:
    out: list[tuple[str, float, float]] = []
    last_end: dict[str, float] = {}
    t = 0.0
    while len(out) < n and t < duration - 5:
        label = rng.choice(list(PARAPHRASES))
        t += rng.uniform(2, 2 * duration / n)
        start = max(t, last_end.get(label, -10) + rng.uniform(3, 8))  # same label: real gap >= 3 s
        end = min(start + rng.uniform(2, 40), duration)
        if end - start < 1:
            continue
        out.append((label, start, end))
        last_end[label] = end
    return out


def simulate(
    rng: random.Random,
    truth: list[tuple[str, float, float]],
    duration: float,
    jitter: float,
    sloppy: float,
    window: float = 120.0,
    overlap: float = 10.0,
) -> list[Event]:
    hits: list[Event] = []
    starts = []
    s = 0.0
    while s < duration:
        starts.append(s)
        s += window - overlap
    for wi, ws in enumerate(starts):
        we = min(ws + window, duration)
        seen = [(lab, max(a, ws), min(b, we)) for lab, a, b in truth if a < we and b > ws]
        seen = [(lab, a, b) for lab, a, b in seen if b - a > 0.5]
        i = 0
        while i < len(seen):
            lab, a, b = seen[i]
            # sloppy: glue this occurrence and the next of the same label into one report
            nxt = next((j for j in range(i + 1, len(seen)) if seen[j][0] == lab), None)
            if nxt is not None and rng.random() < sloppy and seen[nxt][1] - b < 10:
                b = seen[nxt][2]
                seen.pop(nxt)
            a2 = a if a == ws else a + rng.uniform(-jitter, jitter)
            b2 = b if b == we else b + rng.uniform(-jitter, jitter)
            hits.append(
                Event(max(ws, a2), min(we, b2), rng.choice(PARAPHRASES[lab]), None, rng.random(), [wi])
            )
            i += 1
    return hits


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def naive_merge(hits: list[Event], gap: float = 1.0) -> list[Event]:
    """Baseline: per normalised label, sweep by start and grow the current interval."""
    out: list[Event] = []
    by: dict[str, list[Event]] = {}
    for h in hits:
        by.setdefault(normalize_label(h.label), []).append(h)
    for evs in by.values():
        evs.sort(key=lambda e: e.start)
        cur = Event(evs[0].start, evs[0].end, evs[0].label, windows=list(evs[0].windows))
        for e in evs[1:]:
            if e.start <= cur.end + gap:
                cur.end = max(cur.end, e.end)
                cur.windows = sorted(set(cur.windows) | set(e.windows))
            else:
                out.append(cur)
                cur = Event(e.start, e.end, e.label, windows=list(e.windows))
        out.append(cur)
    return sorted(out, key=lambda e: e.start)


def score(truth: list[tuple[str, float, float]], merged: list[Event]) -> tuple[int, int]:
    found = dup = 0
    for lab, a, b in truth:
        matches = [
            e
            for e in merged
            if normalize_label(e.label) == normalize_label(lab) and iou((a, b), (e.start, e.end)) >= 0.5
        ]
        found += bool(matches)
        dup += max(0, len(matches) - 1)
    return found, dup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--jitter", type=float, default=0.5)
    ap.add_argument("--sloppy", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--window", type=float, default=120.0)
    ap.add_argument("--overlap", type=float, default=10.0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    duration = 3600.0
    truth = truth_events(rng, args.events, duration)
    hits = simulate(rng, truth, duration, args.jitter, args.sloppy, args.window, args.overlap)
    t0 = time.perf_counter()
    merged = merge_events(hits, MergeParams())
    dt = time.perf_counter() - t0
    found, dup = score(truth, merged)
    print(f"truth events {len(truth)}, window hits {len(hits)}, merged events {len(merged)}")
    print(
        f"merge_events: found (IoU>=0.5) {found}/{len(truth)} = {found / len(truth):.1%}; duplicates {dup}; "
        f"{dt * 1000:.1f} ms"
    )
    naive = naive_merge(hits)
    found, dup = score(truth, naive)
    print(
        f"naive sweep:  found (IoU>=0.5) {found}/{len(truth)} = {found / len(truth):.1%}; duplicates {dup}; "
        f"{len(naive)} events"
    )


if __name__ == "__main__":
    main()
