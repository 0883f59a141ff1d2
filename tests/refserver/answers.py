"""How the reference "model" answers: intervals from what it saw, in rotating answer styles.

Pure functions (no I/O) so the answers are easy to reason about in tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from tests.refserver.media import MediaItem, Sample
from vidline.parse import RawEvent, format_timestamp
from vidline.synth import MARKER_STYLES

STYLES: tuple[str, ...] = ("json_fenced", "json_events", "qwen_prose", "mmss_lines", "srt")
# chosen only when asked for (configure(styles=["gibberish"])): what a random-weight model writes
EXTRA_STYLES: tuple[str, ...] = ("gibberish",)
"""Timeline answer styles, used in rotation:

- ``json_fenced``: ```json fenced list of {"start_time": "mm:ss.ff", "end_time", "description"} (Qwen cookbook)
- ``json_events``: {"events": [{"start": 2.0, "end": 4.0, "label": ...}]}
- ``qwen_prose``: "The given query happens in 2.0 - 4.0 seconds." (only for exactly one event of a named
  query; otherwise the next style is used)
- ``mmss_lines``: "00:02 - 00:04: red square" lines
- ``srt``: "00:00:02.000 --> 00:00:04.000 red square" lines
"""

CHINESE_NAMES: dict[str, str] = {
    "红色方块": "red square", "红色正方形": "red square", "红方块": "red square",
    "绿色圆": "green circle", "绿圆": "green circle",
    "蓝色三角": "blue triangle", "蓝三角": "blue triangle",
    "黄色方块": "yellow square", "黄色正方形": "yellow square",
    "品红色圆": "magenta circle", "洋红色圆": "magenta circle",
    "青色三角": "cyan triangle",
}  # fmt: skip


@dataclass(frozen=True)
class Interval:
    label: str
    start: float
    end: float


def build_intervals(samples: Sequence[Sample], step: float | None) -> list[Interval]:
    """Per label: runs of consecutive samples showing it; start = first time seen, end = last time
    seen + one frame spacing (the time of the next sample, or ``step`` after the last one)."""
    ordered = sorted(samples, key=lambda s: s.t)
    if not ordered:
        return []
    if step is None or step <= 0:
        diffs = sorted(b.t - a.t for a, b in zip(ordered, ordered[1:], strict=False) if b.t > a.t)
        step = diffs[len(diffs) // 2] if diffs else 0.5
    out: list[Interval] = []
    labels = sorted({lab for s in ordered for lab in s.labels}, key=list(MARKER_STYLES).index)
    for label in labels:
        start: float | None = None
        last: float | None = None
        for s in ordered:
            if label in s.labels:
                if start is None:
                    start = s.t
                last = s.t
            elif start is not None and last is not None:
                out.append(Interval(label, start, s.t))
                start = last = None
        if start is not None and last is not None:
            out.append(Interval(label, start, last + step))
    out.sort(key=lambda i: (i.start, i.label))
    return out


def intervals_for(items: Sequence[MediaItem]) -> list[Interval]:
    """Intervals per video item; all timed images together form one more sequence."""
    out: list[Interval] = []
    images = [it for it in items if it.kind == "image" and it.time_source != "none"]
    for item in items:
        if item.kind != "image":
            out.extend(build_intervals(item.samples, item.step))
    if images:
        out.extend(build_intervals([s for it in images for s in it.samples], images[0].step))
    out.sort(key=lambda i: (i.start, i.label))
    return out


def named_labels(prompt: str) -> list[str]:
    """Marker labels the prompt names (the query), e.g. "red square"."""
    low = prompt.lower()
    found = [label for label in MARKER_STYLES if label in low]
    for zh, label in CHINESE_NAMES.items():
        if zh in prompt and label not in found:
            found.append(label)
    return found


def wants_timeline(prompt: str, json_mode: bool) -> bool:
    """A timeline request asks for JSON with start/end times (or sets a JSON response format)."""
    low = prompt.lower()
    return json_mode or ("json" in low and any(w in low for w in ("start", "end", "event", "timestamp")))


def wants_caption_lines(prompt: str) -> bool:
    """vidline's caption prompt asks for `12.5s - 15.0s: description` lines."""
    low = prompt.lower()
    return "timestamped lines" in low or "s: description`" in low


def is_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def clock(t: float) -> str:
    """00:02, 00:02.5, 1:02:03 -- fractional seconds only when needed."""
    t = max(0.0, round(t, 3))
    hours, rem = divmod(t, 3600)
    minutes, seconds = divmod(rem, 60)
    sec = f"{seconds:06.3f}".rstrip("0").rstrip(".") if seconds != int(seconds) else f"{int(seconds):02d}"
    if len(sec.split(".")[0]) < 2:
        sec = "0" + sec
    if hours:
        return f"{int(hours)}:{int(minutes):02d}:{sec}"
    return f"{int(minutes):02d}:{sec}"


def _num(t: float) -> float:
    return round(t, 3)


def _mmss_ff(t: float) -> str:
    minutes, seconds = divmod(round(t, 2), 60)
    return f"{int(minutes):02d}:{seconds:05.2f}"


def timeline_answer(intervals: Sequence[Interval], style: str, *, query_named: bool) -> tuple[str, str]:
    """(answer text, style actually used)."""
    if style == "qwen_prose" and not (query_named and len(intervals) == 1):
        style = "mmss_lines"
    if style == "gibberish":
        return '{"{" lorem', style
    if style == "json_fenced":
        if not intervals:
            return "```json\n[]\n```", style
        items = [
            {"start_time": _mmss_ff(i.start), "end_time": _mmss_ff(i.end), "description": i.label}
            for i in intervals
        ]
        return "```json\n" + json.dumps(items, indent=2, ensure_ascii=False) + "\n```", style
    if style == "json_events":
        events = [{"start": _num(i.start), "end": _num(i.end), "label": i.label} for i in intervals]
        return json.dumps({"events": events}, ensure_ascii=False), style
    if not intervals:
        return "No matching events.", style
    if style == "qwen_prose":
        i = intervals[0]
        return f"The given query happens in {i.start:.1f} - {i.end:.1f} seconds.", style
    if style == "srt":
        lines = [f"{format_timestamp(i.start)} --> {format_timestamp(i.end)} {i.label}" for i in intervals]
        return "\n".join(lines), style
    lines = [f"{clock(i.start)} - {clock(i.end)}: {i.label}" for i in intervals]
    return "\n".join(lines), "mmss_lines"


def prose_answer(
    intervals: Sequence[Interval],
    *,
    chinese: bool = False,
    caption_lines: bool = False,
    query: Sequence[str] = (),
) -> str:
    """Free-form answer from what was seen: "From 00:02 to 00:04 a red square is visible." ..."""
    if not intervals:
        if query:
            names = " or ".join(query)
            return f"视频中没有出现 {names}。" if chinese else f"No {names} is visible in the video."
        return (
            "视频是灰色背景，没有出现彩色图形。"
            if chinese
            else "The video shows a plain grey background; no coloured shapes are visible."
        )
    if caption_lines:
        return "\n".join(f"{_secs(i.start)}s - {_secs(i.end)}s: a {i.label} is visible" for i in intervals)
    if chinese:
        return "".join(f"从 {clock(i.start)} 到 {clock(i.end)} 可以看到 {i.label}。" for i in intervals)
    return " ".join(f"From {clock(i.start)} to {clock(i.end)} a {i.label} is visible." for i in intervals)


def _secs(t: float) -> str:
    return f"{t:.3f}".rstrip("0").rstrip(".") if t != int(t) else f"{t:.1f}"


def images_answer(items: Sequence[MediaItem], *, chinese: bool = False) -> str:
    """Answer about images without timestamps: what each image shows."""
    parts = []
    images = [it for it in items if it.kind == "image"]
    for n, item in enumerate(images, 1):
        labels = sorted({lab for s in item.samples for lab in s.labels})
        if chinese:
            what = "、".join(labels) if labels else "灰色背景"
            parts.append(f"图 {n}：{what}。" if len(images) > 1 else f"图片中是：{what}。")
        else:
            what = " and ".join(f"a {lab}" for lab in labels) if labels else "only a plain grey background"
            parts.append(f"Image {n} shows {what}." if len(images) > 1 else f"The image shows {what}.")
    return " ".join(parts)


def intervals_from_text(text: str) -> list[Interval]:
    """Events mentioned in text (the reduce step of map-reduce sends captions, no media)."""
    from vidline.parse import _prose_events, _scan_json_values  # noqa: PLC0415 - internal helpers

    found: list[RawEvent] = []
    json_events = _scan_json_values(text)
    if json_events:
        found.extend(json_events)
    found.extend(_prose_events(text))
    out: list[Interval] = []
    for ev in found:
        for label in named_labels(ev.label or ""):
            if ev.end >= ev.start:
                out.append(Interval(label, ev.start, ev.end))
    return merge_intervals(out)


def merge_intervals(intervals: Sequence[Interval], gap: float = 1.0) -> list[Interval]:
    by_label: dict[str, list[Interval]] = {}
    for i in sorted(intervals, key=lambda x: (x.label, x.start)):
        runs = by_label.setdefault(i.label, [])
        if runs and i.start <= runs[-1].end + gap:
            runs[-1] = Interval(i.label, runs[-1].start, max(runs[-1].end, i.end))
        else:
            runs.append(i)
    out = [i for runs in by_label.values() for i in runs]
    out.sort(key=lambda i: (i.start, i.label))
    return out
